//! inboxd turns Outlook / Microsoft 365 mailboxes into a reliable stream of processed mail.
//!
//! Reading order for a newcomer (docs/ARCHITECTURE.md has the full map):
//! - [`domain`]: validated values and secret types; no I/O.

pub mod cli;
pub mod domain;
pub mod graph;
pub mod rate_limit;
pub mod retry;
pub mod telemetry;
