//! inboxd turns Outlook / Microsoft 365 mailboxes into a reliable stream of processed mail.
//!
//! Reading order for a newcomer (docs/ARCHITECTURE.md has the full map):
//! - [`domain`]: validated values and secret types; no I/O.
//! - [`config`]: `config/inboxd.toml` + `INBOXD_<SECTION>__<KEY>` → validated `Settings`, once.

pub mod config;
pub mod domain;
