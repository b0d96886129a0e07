//! Conformance tests of the Microsoft simulator (`inboxd::sim`) over real HTTP and IMAP: every
//! identity, Graph, IMAP, batch, throttling, fault and control behaviour, checked for status,
//! headers and body shape against reference/microsoft-protocol.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod batch;
mod control;
mod delta;
mod faults;
mod folders;
mod graph;
mod identity;
mod identity_v2;
mod imap;
mod patch;
mod refresh_reuse;
mod request_ids;
mod support;
mod throttle;
