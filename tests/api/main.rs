//! One integration binary: the daemon, started through the same `Application::build` as `main`,
//! against the simulator over real HTTP on 127.0.0.1. Every test gets its own simulator, store and
//! sink.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Shared fixtures: a world of simulator + daemon, mailboxes, waiting helpers.
mod helpers;

/// The admin API's validation and authentication.
mod admin_api;
/// Apps: one credential per app registration, rotated once for all its channels (issue 16).
mod apps;
/// The OAuth flow, the callback's refusals, the token lifecycle and the error catalogue (issue 4).
mod authorization;
/// Kill the daemon with SIGKILL while mail flows; nothing is lost or doubled (issue 6).
mod crash;
/// Faults injected through the simulator while mail flows (issue 9).
mod faults;
/// Mail ingestion with its guarantees (issue 6).
mod ingestion;
/// `/metrics` by Prometheus' conventions (issue 16).
mod metrics;
/// A channel's guarantees across actor replacement: edits, disable + enable, "Poll now", a
/// second channel on one mailbox, an identity platform that is down (issue 12).
mod replacement;
/// The actor runtime: hot control, throttling, restarts, scale (issue 5).
mod runtime;
/// The admin surface against an attacker: bearer-only API, the failed-attempt block.
mod security;

/// Delta sync: read-before-poll mail, expired sync states, removals, restarts mid-round (issue 14).
mod delta;

/// The IMAP transport: authorization for Exchange Online, ingestion and \Seen over IMAP, a refused
/// sign-in, moving a channel between transports (issue 17).
mod imap;
