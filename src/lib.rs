//! inboxd turns Outlook / Microsoft 365 mailboxes into a reliable stream of processed mail.
//!
//! Reading order for a newcomer (docs/ARCHITECTURE.md has the full map):
//! - [`domain`]: validated values and secret types; no I/O.
//! - [`config`]: `config/inboxd.toml` + `INBOXD_<SECTION>__<KEY>` → validated `Settings`, once.
//! - [`startup`]: builds the daemon from the settings; `main` and the tests both call it.
//! - [`ingest`]: the mail path: the cycle, the ledger, token refresh, each channel's run-time state.
//! - [`actors`]: the supervisor, one actor per channel (its schedule), the processor.
//! - [`status`] and [`stats`]: the read model of every channel, and the counters.
//! - [`oauth`] and [`graph`]: the two clients of Microsoft; nothing else calls Microsoft.
//! - [`retry`] and [`rate_limit`]: when a request may be sent.
//! - [`sink`]: where processed mail goes (JSONL file or webhook).
//! - [`store`]: the only module that touches sled; secrets encrypted at rest.
//! - [`catalogue`]: every error an operator can meet, its channel status, retry policy and remedy.
//! - [`control`]: the operations an operator asks for (add, change, authorize, poll, replay, …),
//!   once for every front end; the authorization service.
//! - [`http`]: the front end: the admin API, the OAuth callback, the status page, `/metrics`.
//! - [`sim`]: the simulator of Microsoft's identity platform and Graph that tests, benches and the
//!   demo stand on.
//! - [`cli`] and [`telemetry`]: the command line and logging.

pub mod actors;
pub mod admin_client;
pub mod catalogue;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod demo;
pub mod domain;
pub mod events;
pub mod graph;
pub mod http;
pub mod imap;
pub mod ingest;
pub mod oauth;
pub mod rate_limit;
pub mod retry;
pub mod sim;
pub mod sink;
pub mod startup;
pub mod stats;
pub mod status;
pub mod store;
pub mod telemetry;

/// The allocator of every binary built on this crate (the daemon, its tests and benches):
/// jemalloc. glibc's malloc took a third of the daemon's CPU while ingesting (`_int_malloc`,
/// `malloc_consolidate` and `_int_free` on pages of 50 messages; docs/benchmarks.md) and kept
/// per-thread arenas fragmented. The load bench's heap profile (`dhat-heap`) brings its own.
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
