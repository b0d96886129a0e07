//! inboxd's test kit, a dev-only crate (never part of the product binary): a daemon started on a
//! temporary store against the simulator, with helpers for the admin API and the OAuth flow
//! ([`daemon`]); channels seeded straight into a store ([`seed`]); the simulator as a child process
//! and this process's memory ([`process`]); a throw-away PostgreSQL database per test ([`pg`]); app
//! certificates with a chosen expiry ([`certificate`]); a raw IMAP client ([`imap`]); a real Dovecot
//! validating OAuth2 tokens by introspection ([`dovecot`]). Everything binds 127.0.0.1 on a free port; nothing
//! leaves the machine. Depending on it turns on inboxd's `test-hooks` feature for the tests and
//! benches that use those hooks.

pub mod certificate;
pub mod daemon;
pub mod dovecot;
pub mod imap;
pub mod pg;
pub mod pg_server;
pub mod process;
pub mod seed;

pub use certificate::{certificate, certificate_pem};
pub use daemon::{TestDaemon, daemon_env, eventually, free_port};
pub use dovecot::Dovecot;
pub use imap::ImapClient;
pub use pg::PgTestDb;
pub use pg_server::PgServer;
pub use process::{SimProcess, resident_bytes};
pub use seed::seed_channels;
