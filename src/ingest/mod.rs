//! Ingestion: the one home of the mail path, from "what is new in this mailbox" to "marked read".
//!
//! ```text
//!  ChannelActor (schedule) ──run_cycle──► cycle: turn ─► token ─► list ─► ledger.sort ─► attachments
//!                                                                              │
//!      mark read ($batch ≤ 20) ◄── acks ◄── Processor (sink, ledger.record_delivered) ◄── hand over
//! ```
//!
//! - [`ledger`]: the per-message ledger and its typed transitions; the only writer of entries.
//! - [`cycle`]: one poll as plain async functions over a small [`Ingest`] context and a
//!   [`Handover`](cycle::Handover), testable without actix: the turn, the token, the permits, and
//!   settling what was found (ledger, attachments, hand-over, mark read).
//! - [`sources`]: where a cycle finds mail: the unread list, delta rounds, backfills, replays.
//! - [`imap_source`]: the same for channels on the IMAP transport: one connection per cycle, the
//!   (UIDVALIDITY, settled UID) cursor, `BODY.PEEK[]`, `\Seen` only after the acknowledgement.
//! - [`tokens`]: the access token a cycle uses: refresh ahead of expiry, single-flight per grant,
//!   the rotated refresh token durable before use; a failing refresh does not stop polling while the
//!   access token is valid.
//! - [`runtime`]: each channel's run-time state that outlives its actors: one cycle at a time (a
//!   new actor waits for the old one's cycle), the token set, the incarnation fence.
//! - [`failure`]: why a cycle failed, and what an operator is told.
//! - [`recovery`]: the JSONL sink's crash recovery (lines written but not recorded in the ledger).
//!
//! Invariants (docs/ARCHITECTURE.md lists them with the rest):
//! - One cycle per channel at a time, across actor replacement.
//! - No Graph request to an (app, mailbox) before its `Retry-After` floor, at most 4 in flight.
//! - One refresh per refresh token; the rotated refresh token is durable before the new access
//!   token is used.
//! - Mail is marked read only after the processor acknowledged it, and the processor acknowledges
//!   only mail whose delivery the ledger recorded.

pub mod apps;
pub mod context;
pub mod cycle;
pub mod failure;
pub mod imap_source;
pub mod ledger;
pub mod recovery;
pub mod runtime;
pub mod sources;
#[cfg(test)]
pub(crate) mod test_support;
pub mod tokens;

pub use context::{Ingest, RunSettings, set_lane};
pub use ledger::Ledger;
