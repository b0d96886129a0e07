//! inboxd turns Outlook / Microsoft 365 mailboxes into a reliable stream of processed mail.
//!
//! Reading order for a newcomer (docs/ARCHITECTURE.md has the full map):
//! - [`domain`]: validated values and secret types; no I/O.
//! - [`store`]: durable state (sled), secrets encrypted at rest; the only module that imports sled.

pub mod domain;
pub mod store;
