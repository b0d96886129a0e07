//! inboxd turns Outlook / Microsoft 365 mailboxes into a reliable stream of processed mail.
//!
//! Reading order for a newcomer (docs/ARCHITECTURE.md has the full map):
//! - [`domain`]: validated values and secret types; no I/O.
//! - [`sim`]: the simulator of Microsoft's identity platform and Graph mail API (tests, benches, demos).

pub mod domain;
pub mod sim;
