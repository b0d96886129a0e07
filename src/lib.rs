//! inboxd turns Outlook / Microsoft 365 mailboxes into a reliable stream of processed mail.
//!
//! Reading order for a newcomer (docs/ARCHITECTURE.md has the full map):
//! - [`domain`]: validated values and secret types; no I/O.
//! - [`catalogue`]: every error an operator can meet, its channel status, retry policy and remedy.

pub mod catalogue;
pub mod domain;
