//! The actor runtime: who owns what, and who sends what to whom.
//!
//! ```text
//!  admin API / CLI / OAuth callback
//!          │ control messages (messages.rs)
//!          ▼
//!  ChannelSupervisor ── starts, stops, restarts ──► ChannelActor × N   (spread over one arbiter per core)
//!          │                                          │ owns: token set, poll timer, backoff
//!          │ loads channels from the store            │ Graph + token calls through the shared limiters
//!          ▼                                          ▼ Processor handle (awaits the ack)
//!       store ◄────────── ledger, tokens ──────── processor core ──► sink (JSONL | webhook)
//! ```
//!
//! - [`ChannelSupervisor`](supervisor::ChannelSupervisor) is the only writer of channel
//!   configuration: every add, update, enable, disable and remove goes through it as a message, so
//!   two operators cannot race each other, and nothing restarts.
//! - [`ChannelActor`](channel::ChannelActor) owns one channel: its tokens, its timer, its backoff.
//!   It never blocks its arbiter: network calls and fsyncs run in futures and blocking tasks.
//! - [`ProcessorActor`](processor::ProcessorActor) hands mail to the sink and acknowledges each
//!   message only after the sink accepted it durably; the channel then marks it read. Channels
//!   reach it through its [`Processor`](processor::Processor) handle (no mailbox round-trip); the
//!   actor owns the lifecycle (the JSONL writer thread, the checkpoint task, `Terminate`).
//! - [`Housekeeper`](housekeeping::Housekeeper) prunes the ledger past its retention and brings
//!   the store back after a write error (a full disk), so the channels resume on their own.
//! - The [`StatusBoard`](crate::status::StatusBoard) is the read model the API and status page
//!   read: each channel's current actor publishes its row (the supervisor while none runs).
//! - What a cycle does is [`crate::ingest`]'s; an actor only schedules it. A channel's invariants
//!   (one cycle at a time, its tokens, its floors) live in its runtime, not in the actor, so
//!   actors can be replaced at any moment.

pub mod channel;
pub mod deps;
pub mod housekeeping;
pub mod messages;
pub mod processor;
pub mod supervisor;
