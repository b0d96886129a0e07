//! inboxd turns Outlook / Microsoft 365 mailboxes into a reliable stream of processed mail.
//!
//! Reading order for a newcomer (docs/ARCHITECTURE.md has the full map):
//! - [`domain`]: validated values and secret types; no I/O.
//! - [`catalogue`]: every error an operator can meet, its channel status, retry policy and remedy.
//! - [`oauth`] and [`graph`]: the two clients of Microsoft; nothing else calls Microsoft.
//! - [`retry`] and [`rate_limit`]: when a request may be sent.
//! - [`cli`] and [`telemetry`]: the command line and logging.
//! - [`sink`]: where processed mail goes (JSONL file or webhook).

pub mod catalogue;
pub mod cli;
pub mod domain;
pub mod graph;
pub mod oauth;
pub mod rate_limit;
pub mod retry;
pub mod sink;
pub mod telemetry;
