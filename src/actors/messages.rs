//! Every message that crosses an actor boundary, in one place. Commands are imperative,
//! notifications past tense.

use actix::prelude::*;

use chrono::{DateTime, Utc};

use crate::domain::ChannelId;
use crate::status::ChannelView;
use crate::store::ChannelRecord;

/// Why a control message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No channel has this id.
    #[error("no channel has the id {0}: `inboxd channel list` shows the ids")]
    NotFound(ChannelId),
    /// A channel with this id exists already.
    #[error("a channel with the id {0} exists already")]
    Exists(ChannelId),
    /// Another channel listens to this mailbox (tenant, app, mailbox, folder) already.
    #[error(
        "channel {0} listens to this mailbox already (same tenant, app, mailbox and folder): change that channel, or remove it first"
    )]
    Duplicate(ChannelId),
    /// The store could not record the change; nothing changed.
    #[error("the change could not be stored, nothing changed: {0}")]
    Store(String),
    /// The request was not valid.
    #[error("{0}")]
    Invalid(String),
    /// The daemon is shutting down.
    #[error("inboxd is shutting down")]
    ShuttingDown,
}

/// Add a channel (already validated) and start polling it once authorized.
#[derive(Message)]
#[rtype(result = "Result<ChannelView, ControlError>")]
pub struct AddChannel {
    /// The new channel.
    pub record: ChannelRecord,
}

/// Replace a channel's configuration. When `reauthorize` is set (tenant or app changed), its
/// tokens are dropped and it waits for a new authorization.
#[derive(Message)]
#[rtype(result = "Result<ChannelView, ControlError>")]
pub struct UpdateChannel {
    /// The channel as it should be.
    pub record: ChannelRecord,
    /// Drop the tokens: the grant belongs to another tenant or app.
    pub reauthorize: bool,
}

/// Remove a channel and everything stored for it.
#[derive(Message)]
#[rtype(result = "Result<(), ControlError>")]
pub struct RemoveChannel {
    /// The channel.
    pub id: ChannelId,
}

/// Enable or disable a channel.
#[derive(Message)]
#[rtype(result = "Result<ChannelView, ControlError>")]
pub struct SetEnabled {
    /// The channel.
    pub id: ChannelId,
    /// On or off.
    pub enabled: bool,
}

/// An app's credential was replaced (already stored): its channels that wait for a person because
/// of an error try again at once with it. Answers how many channels that was.
#[derive(Message)]
#[rtype(result = "Result<usize, ControlError>")]
pub struct AppCredentialChanged {
    /// The app.
    pub app: crate::store::AppKey,
}

/// The OAuth callback stored a fresh token set for this channel: start (or restart) it now.
#[derive(Message)]
#[rtype(result = "Result<(), ControlError>")]
pub struct AuthorizationCompleted {
    /// The channel.
    pub id: ChannelId,
}

/// Poll a channel now instead of at its next tick. Answers when the poll will happen: now, or when
/// the mailbox's `Retry-After` from Microsoft has passed (a poll never undercuts it).
#[derive(Message)]
#[rtype(result = "Result<DateTime<Utc>, ControlError>")]
pub struct PollNow {
    /// The channel.
    pub id: ChannelId,
}

/// Deliver every message received since `since` that was never delivered, read or not (after an
/// outage, or mail read before an unread-mode poll). Answers when it starts (never before the
/// mailbox's `Retry-After`).
#[derive(Message)]
#[rtype(result = "Result<DateTime<Utc>, ControlError>")]
pub struct Backfill {
    /// The channel.
    pub id: ChannelId,
    /// Mail received at or after this is looked at.
    pub since: DateTime<Utc>,
}

/// Deliver a channel's quarantined messages again; answers how many were released.
#[derive(Message)]
#[rtype(result = "Result<usize, ControlError>")]
pub struct ReplayQuarantine {
    /// The channel.
    pub id: ChannelId,
}

/// Stop every channel (graceful shutdown): no new polls start. Answers once every actor was told;
/// running cycles finish on their own (`Application` waits for them up to the grace period).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAll;

/// Sent by a channel actor to itself or by the supervisor: poll now (internal).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Poke;

/// Tells a channel actor to stop for good.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Makes a channel actor fail as if a bug had stopped it, to prove the supervisor restarts it.
/// A test hook: only with the `test-hooks` feature, never in the product binary.
#[cfg(feature = "test-hooks")]
#[derive(Message)]
#[rtype(result = "()")]
pub struct SimulateFailure;

/// Makes one channel's actor fail as if a bug had stopped it (tests prove that the supervisor
/// restarts it and it carries on). Answers whether the channel had an actor. A test hook: only
/// with the `test-hooks` feature, never in the product binary.
#[cfg(feature = "test-hooks")]
#[derive(Message)]
#[rtype(result = "bool")]
pub struct FailChannel(pub ChannelId);

/// A channel actor stopped on a failure; the supervisor restarts it from the store.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ChannelFailed {
    /// The channel.
    pub id: ChannelId,
    /// The incarnation that failed (a newer one may already run).
    pub generation: u64,
}

/// Ends an actor once its work is done (the last step of a shutdown): the supervisor stops, the
/// processor drains its queue and stops its background tasks.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Terminate;

/// Cluster mode: this node now holds these shards; start their channels from the store.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ShardsAdopted(pub Vec<u32>);

/// Cluster mode: this node no longer holds these shards; stop their channels, then answer on
/// `done` (the lease keeper waits for it before it hands the shards back).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ShardsReleased {
    /// The shards.
    pub shards: Vec<u32>,
    /// Answered once their channels were told to stop.
    pub done: Option<std::sync::mpsc::Sender<()>>,
}

/// Cluster mode: what another node (or this one) announced through the store.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClusterNotice(pub crate::store::cluster::Notice);

/// A sign-in for this channel failed (the user declined, a policy refused, the code could not be
/// redeemed): record it on the channel and report it as an event.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SignInFailed {
    /// The channel.
    pub id: ChannelId,
    /// What failed, with its remedy.
    pub error: crate::store::LastError,
}
