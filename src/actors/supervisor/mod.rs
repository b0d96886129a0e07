//! `ChannelSupervisor`: starts one `ChannelActor` per enabled channel, spread over one arbiter per
//! core, takes the control messages, and restarts a channel actor that stopped on a failure.
//!
//! It is the only writer of channel configuration: each change is stored (and flushed) first, then
//! applied to the running actors, so an answer to the operator means the change survives a crash.
//!
//! Replacing a channel's actor is safe at any moment: the new actor claims a new generation from
//! the channel's runtime, and its first cycle waits until the old actor's cycle ended (see
//! [`crate::ingest::runtime`]). One mailbox (tenant, app, mailbox, folder) is one channel: a second
//! add of it is refused, naming the first.
//!
//! Cluster mode: every node knows every channel (the index, the board), but runs only those of
//! the shards it holds; the lease keeper tells it what it adopted and lost ([`ShardsAdopted`],
//! [`ShardsReleased`]). A change stored by any node reaches the others as a
//! [`crate::store::cluster::Notice`] ([`ClusterNotice`]): the owner restarts the channel if its
//! configuration changed, and reads its tokens afresh if its grant changed. The tables are the
//! truth: after a lost notice connection everything is reconciled from them.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};

mod cluster;
mod start;

pub use start::Arrival;
use start::{ACTOR_MAILBOX, Batches, Launch, Premade, START_BATCH};

use crate::actors::channel::ChannelActor;
use crate::actors::deps::Deps;
use crate::actors::messages::*;
use crate::cluster::shard_of;
use crate::domain::{ChannelId, ChannelStatus};
use crate::events;
use crate::rate_limit::MailboxKey;
use crate::status::ChannelView;
use crate::store::ChannelRecord;
use crate::store::cluster::Notice;

/// What makes two channels the same mailbox (tenant, app, mailbox, folder, case-insensitive):
/// inboxd refuses a second channel of it. Held for every channel, so it is a 128-bit keyed digest
/// of the four lower-cased names (two SipHash-1-3 with keys drawn at the process' start), not four
/// strings: 16 bytes instead of ~150, and no allocation to make one. Two mailboxes share a digest
/// with a probability of about n²/2¹²⁹ (10⁻²⁷ at a million channels), and the keys are secret, so
/// no input can be chosen to collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct MailboxIdentity(u128);

impl MailboxIdentity {
    fn of(record: &ChannelRecord) -> Self {
        Self::new(
            record.tenant_id.as_str(),
            record.client_id.as_str(),
            record.mailbox.as_str(),
            record.folder.as_str(),
        )
    }

    fn new(tenant: &str, client_id: &str, mailbox: &str, folder: &str) -> Self {
        use std::hash::{BuildHasher, Hasher};
        static KEYS: std::sync::LazyLock<[std::collections::hash_map::RandomState; 2]> =
            std::sync::LazyLock::new(Default::default);
        let [first, second] = &*KEYS;
        let mut high = first.build_hasher();
        let mut low = second.build_hasher();
        let mut buffer = [0u8; 64];
        for part in [tenant, client_id, mailbox, folder] {
            // The length first, so that the parts' boundaries are part of what is hashed.
            high.write_usize(part.len());
            low.write_usize(part.len());
            for chunk in part.as_bytes().chunks(buffer.len()) {
                let lower = &mut buffer[..chunk.len()];
                lower.copy_from_slice(chunk);
                lower.make_ascii_lowercase();
                high.write(lower);
                low.write(lower);
            }
        }
        MailboxIdentity((u128::from(high.finish()) << 64) | u128::from(low.finish()))
    }
}

/// The supervisor of every channel actor.
pub struct ChannelSupervisor {
    deps: Arc<Deps>,
    /// One arbiter (thread) per core; a channel always runs on the same one.
    arbiters: Vec<ArbiterHandle>,
    /// The running channel actors, with their incarnation number. A failed actor reports
    /// `ChannelFailed` and is restarted from the store if it is still the current incarnation.
    actors: HashMap<ChannelId, (Addr<ChannelActor>, u64)>,
    /// Every channel's mailbox, to refuse a second channel of one.
    mailboxes: HashMap<MailboxIdentity, ChannelId>,
    /// The channels loaded at start-up, started in `started`.
    initial: Vec<Arrival>,
    stopping: bool,
    /// This supervisor's own address, handed to channel actors for `ChannelFailed`.
    me: Option<Arc<Recipient<ChannelFailed>>>,
    /// What each running actor was started with (cluster mode: a change stored by another node
    /// restarts the actor only if it differs).
    started_with: HashMap<ChannelId, Started>,
}

/// What a channel actor was started from, as far as a change of it matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Started {
    /// The configuration (everything an operator edits).
    config: u64,
    /// The grant: a change means new tokens are in the store.
    grant: u64,
}

impl Started {
    fn of(record: &ChannelRecord) -> Self {
        use std::hash::{Hash, Hasher};
        let mut config = std::collections::hash_map::DefaultHasher::new();
        (
            record.tenant_id.as_str(),
            record.client_id.as_str(),
            record.mailbox.as_str(),
            record.folder.as_str(),
            record.enabled,
            record.poll_mode,
            record.updated_at,
        )
            .hash(&mut config);
        let mut grant = std::collections::hash_map::DefaultHasher::new();
        (
            record.activated_at,
            record.status == ChannelStatus::AwaitingAuthorization,
        )
            .hash(&mut grant);
        Started {
            config: config.finish(),
            grant: grant.finish(),
        }
    }
}

impl ChannelSupervisor {
    /// A supervisor that will start `channels` (as loaded from the store) on `arbiters`.
    pub fn new(deps: Arc<Deps>, arbiters: Vec<ArbiterHandle>, channels: Vec<Arrival>) -> Self {
        ChannelSupervisor {
            deps,
            arbiters,
            actors: HashMap::new(),
            mailboxes: HashMap::new(),
            initial: channels,
            stopping: false,
            me: None,
            started_with: HashMap::new(),
        }
    }

    /// Whether this node runs `record` (always on a single node). Records its shard.
    fn runs_here(&self, record: &ChannelRecord) -> bool {
        match &self.deps.ingest.cluster {
            None => true,
            Some(ownership) => {
                let shard = shard_of(record);
                ownership.assign(record.id, shard);
                ownership.holds(shard)
            }
        }
    }

    /// Whether this node runs the channel `id` now.
    fn owns(&self, id: ChannelId) -> bool {
        self.deps
            .ingest
            .cluster
            .as_ref()
            .is_none_or(|ownership| ownership.runs(id))
    }

    /// Tells the other nodes (cluster mode); answers whether it was sent.
    fn tell_others(&self, notice: &Notice) -> Result<(), ControlError> {
        match &self.deps.coordination {
            Some(coordination) => coordination
                .notify(notice)
                .map_err(|err| ControlError::Store(err.to_string())),
            None => Ok(()),
        }
    }

    /// Starts (or restarts) one channel's actor, if it runs here.
    fn start_channel(&mut self, record: ChannelRecord, poll_now: bool) {
        if let Some((lane, launch)) = self.prepare(record, poll_now) {
            self.launch(lane, vec![launch]);
        }
    }

    /// Starts the actors of many channels (at start-up, on adopting shards): one message per
    /// arbiter per [`START_BATCH`] channels instead of one per channel.
    /// `each` is applied to every record first (whether its actor starts here or not).
    fn start_channels(
        &mut self,
        records: impl IntoIterator<Item = ChannelRecord>,
        poll_now: bool,
        mut each: impl FnMut(&mut Self, &ChannelRecord),
    ) {
        let mut batches = Batches::new(self.arbiters.len(), START_BATCH);
        for record in records {
            each(self, &record);
            if let Some((lane, launch)) = self.prepare(record, poll_now)
                && let Some(full) = batches.push(lane, launch)
            {
                self.launch(lane, full);
            }
        }
        for (lane, batch) in batches.finish() {
            self.launch(lane, batch);
        }
    }

    /// Everything of starting `record`'s actor but the start itself: the actor's address (its
    /// mailbox, which holds messages until the actor runs), the old incarnation told to stop, a
    /// new generation claimed. Answers the arbiter to start it on, or `None` when it does not run
    /// here.
    fn prepare(&mut self, record: ChannelRecord, poll_now: bool) -> Option<(usize, Launch)> {
        let started = Started::of(&record);
        self.prepare_with(record, poll_now, started, None)
    }

    /// [`prepare`](Self::prepare) with the record's fingerprint made, and its actor's mailbox and
    /// run-time state made ahead if `premade` (the run-time state is used only if the channel has
    /// none yet).
    fn prepare_with(
        &mut self,
        record: ChannelRecord,
        poll_now: bool,
        started: Started,
        premade: Option<Premade>,
    ) -> Option<(usize, Launch)> {
        if !self.runs_here(&record)
            || !record.enabled
            || self.stopping
            || self.arbiters.is_empty()
            || self.me.is_none()
        {
            return None;
        }
        let id = record.id;
        if let Some((old, _)) = self.actors.remove(&id) {
            old.do_send(Shutdown);
        }
        // The new incarnation fences the old one off; its first cycle waits for the old cycle.
        let runtimes = &self.deps.ingest.runtimes;
        let (runtime, sender, receiver) = match premade {
            Some(made) => (
                runtimes.get_or_adopt(id, made.runtime),
                made.sender,
                made.receiver,
            ),
            None => {
                let (sender, receiver) = actix::dev::channel::channel(ACTOR_MAILBOX);
                (runtimes.get(id), sender, receiver)
            }
        };
        let generation = runtime.claim();
        self.started_with.insert(id, started);
        let lane = (id.stable_hash() % self.arbiters.len() as u64) as usize;
        self.actors.insert(id, (Addr::new(sender), generation));
        Some((
            lane,
            Launch {
                receiver,
                record,
                poll_now,
                runtime,
                generation,
            },
        ))
    }

    /// Starts prepared actors on arbiter `lane`, in one message to it.
    fn launch(&self, lane: usize, batch: Vec<Launch>) {
        let (Some(me), Some(arbiter)) = (self.me.clone(), self.arbiters.get(lane)) else {
            return;
        };
        let deps = Arc::clone(&self.deps);
        arbiter.spawn_fn(move || {
            for launch in batch {
                let actor = ChannelActor::new(
                    Arc::clone(&deps),
                    launch.record,
                    launch.poll_now,
                    Arc::clone(&me),
                    launch.runtime,
                    launch.generation,
                );
                actix_rt::spawn(Context::with_receiver(launch.receiver).into_future(actor));
            }
        });
    }

    fn stop_channel(&mut self, id: ChannelId) {
        if let Some((addr, _)) = self.actors.remove(&id) {
            addr.do_send(Shutdown);
        }
        self.started_with.remove(&id);
        // Whatever the stopped actor still had waiting does not start.
        self.deps.ingest.runtimes.get(id).claim();
    }

    /// The channel other than `except` that already listens to `record`'s mailbox, if any.
    fn duplicate_of(&self, record: &ChannelRecord, except: Option<ChannelId>) -> Option<ChannelId> {
        self.mailboxes
            .get(&MailboxIdentity::of(record))
            .copied()
            .filter(|id| Some(*id) != except)
    }

    fn record(&self, id: ChannelId) -> Result<ChannelRecord, ControlError> {
        self.deps
            .ingest
            .store
            .get_channel(id)
            .map_err(|err| ControlError::Store(err.to_string()))?
            .ok_or(ControlError::NotFound(id))
    }

    /// The board's view of a stored channel, with its app's credential expiry.
    fn view_of(&self, record: &ChannelRecord) -> ChannelView {
        let mut view = ChannelView::from_record(record);
        view.credential_expiry = self.deps.ingest.apps.expiry(record);
        view
    }

    /// Stores a record durably, then applies `then` on the actor's side.
    fn store_then<T: 'static>(
        &mut self,
        record: ChannelRecord,
        then: impl FnOnce(&mut Self, ChannelRecord) -> Result<T, ControlError> + 'static,
    ) -> ResponseActFuture<Self, Result<T, ControlError>> {
        if self.stopping {
            return Box::pin(fut::ready(Err(ControlError::ShuttingDown)));
        }
        if let Err(err) = self.deps.ingest.store.put_channel(&record) {
            return Box::pin(fut::ready(Err(ControlError::Store(err.to_string()))));
        }
        let store = self.deps.ingest.store.clone();
        Box::pin(
            async move { store.flush_async().await }
                .into_actor(self)
                .map(move |flushed, act, _| {
                    flushed.map_err(|err| ControlError::Store(err.to_string()))?;
                    then(act, record)
                }),
        )
    }
}

impl Actor for ChannelSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        self.me = Some(Arc::new(ctx.address().recipient()));
        let arrivals = std::mem::take(&mut self.initial);
        let count = arrivals.len();
        let begun = std::time::Instant::now();
        self.mailboxes.reserve(count);
        self.actors.reserve(count);
        self.started_with.reserve(count);
        let mut batches = Batches::new(self.arbiters.len(), START_BATCH);
        for arrival in arrivals {
            let Arrival {
                record,
                mut row,
                identity,
                started,
                premade,
            } = arrival;
            row.credential_expiry = self.deps.ingest.apps.expiry(&record);
            self.deps.board.put_row(row);
            self.mailboxes.insert(identity, record.id);
            if let Some((lane, launch)) = self.prepare_with(record, false, started, premade)
                && let Some(full) = batches.push(lane, launch)
            {
                self.launch(lane, full);
            }
        }
        for (lane, batch) in batches.finish() {
            self.launch(lane, batch);
        }
        tracing::info!(
            channels = count,
            running = self.actors.len(),
            elapsed_ms = begun.elapsed().as_millis() as u64,
            "Channels scheduled."
        );
        if let Some(coordination) = self.deps.coordination.clone() {
            match coordination.listen() {
                Ok(mut notices) => {
                    let me = ctx.address();
                    actix_rt::spawn(async move {
                        while let Some(notice) = notices.recv().await {
                            if me.try_send(ClusterNotice(notice)).is_err() && !me.connected() {
                                break;
                            }
                        }
                    });
                }
                Err(err) => {
                    tracing::error!(error = %err, "Could not listen for changes from the other nodes; they reach this node by the periodic reconcile only.")
                }
            }
            // The tables are the truth: a notice lost on the way is made up for here.
            ctx.run_interval(cluster::RECONCILE_EVERY, |_, ctx| {
                ctx.notify(ClusterNotice(Notice::Resync))
            });
        }
        // Keep limiter memory bounded as channels come and go: on a blocking thread, as walking
        // a million keys would hold up this actor (hot-adds, edits) for half a second.
        ctx.run_interval(std::time::Duration::from_secs(600), |act, _| {
            let deps = Arc::clone(&act.deps);
            drop(actix_rt::task::spawn_blocking(move || {
                deps.ingest.limiters.shrink()
            }));
        });
    }
}

impl Handler<AddChannel> for ChannelSupervisor {
    type Result = ResponseActFuture<Self, Result<ChannelView, ControlError>>;

    fn handle(&mut self, msg: AddChannel, _: &mut Context<Self>) -> Self::Result {
        match self.deps.ingest.store.get_channel(msg.record.id) {
            Ok(Some(_)) => return Box::pin(fut::ready(Err(ControlError::Exists(msg.record.id)))),
            Ok(None) => {}
            Err(err) => return Box::pin(fut::ready(Err(ControlError::Store(err.to_string())))),
        }
        if let Some(existing) = self.duplicate_of(&msg.record, None) {
            return Box::pin(fut::ready(Err(ControlError::Duplicate(existing))));
        }
        let mut record = msg.record;
        // Claimed before the write, so a second add of the same mailbox racing this one is refused.
        self.mailboxes
            .insert(MailboxIdentity::of(&record), record.id);
        record.status = if record.enabled {
            ChannelStatus::AwaitingAuthorization
        } else {
            ChannelStatus::Disabled
        };
        let identity = MailboxIdentity::of(&record);
        let id = record.id;
        let added = self.store_then(record, |act, record| {
            let view = act.view_of(&record);
            act.deps.board.put(view.clone());
            act.start_channel(record, true);
            Ok(view)
        });
        Box::pin(added.map(move |result, act, _| {
            if result.is_err() && act.mailboxes.get(&identity) == Some(&id) {
                act.mailboxes.remove(&identity);
            }
            result
        }))
    }
}

impl Handler<UpdateChannel> for ChannelSupervisor {
    type Result = ResponseActFuture<Self, Result<ChannelView, ControlError>>;

    fn handle(&mut self, msg: UpdateChannel, _: &mut Context<Self>) -> Self::Result {
        let id = msg.record.id;
        let current = match self.record(id) {
            Ok(current) => current,
            Err(err) => return Box::pin(fut::ready(Err(err))),
        };
        if let Some(existing) = self.duplicate_of(&msg.record, Some(id)) {
            return Box::pin(fut::ready(Err(ControlError::Duplicate(existing))));
        }
        let mut record = msg.record;
        record.updated_at = Utc::now();
        if msg.reauthorize {
            // First fence off the old grant, so a refresh still in flight cannot write it back.
            self.deps.ingest.runtimes.get(id).new_grant();
            if let Err(err) = self.deps.ingest.store.delete_tokens(id) {
                return Box::pin(fut::ready(Err(ControlError::Store(err.to_string()))));
            }
            record.status = if record.enabled {
                ChannelStatus::AwaitingAuthorization
            } else {
                ChannelStatus::Disabled
            };
            record.last_error = None;
            record.activated_at = current.activated_at;
        } else if (current.tenant_id != record.tenant_id
            || current.client_id != record.client_id
            || current.transport != record.transport)
            && matches!(
                current.status,
                ChannelStatus::Blocked | ChannelStatus::NeedsReauthorization
            )
        {
            // Another app (or the other transport) may be exactly what the last error asked for:
            // try again at once.
            record.status = ChannelStatus::BackingOff;
        }
        if current.mailbox != record.mailbox || current.folder != record.folder {
            // The delta link belongs to the old folder: the next round starts afresh (the ledger
            // keeps anything from being delivered twice).
            if let Err(err) = self.deps.ingest.store.reset_cursor(id) {
                return Box::pin(fut::ready(Err(ControlError::Store(err.to_string()))));
            }
        }
        let reauthorize = msg.reauthorize;
        let old_identity = MailboxIdentity::of(&current);
        let previous = current.status;
        self.store_then(record, move |act, record| {
            if previous != record.status {
                act.deps.ingest.events.emit(
                    record.id,
                    record.mailbox.as_str(),
                    events::status_changed(previous, record.status, None),
                );
            }
            if act.mailboxes.get(&old_identity) == Some(&record.id) {
                act.mailboxes.remove(&old_identity);
            }
            act.mailboxes
                .insert(MailboxIdentity::of(&record), record.id);
            let runtime = act.deps.ingest.runtimes.get(record.id);
            if reauthorize {
                // Anything the old grant's cycle cached meanwhile is dropped too.
                runtime.new_grant();
            }
            // Perhaps another folder: try the delta query again.
            runtime.reset_mode();
            let mut view = act.view_of(&record);
            if let Some(old) = act.deps.board.get(record.id) {
                view.messages_today = old.messages_today;
                view.messages_day = old.messages_day;
            }
            act.deps.board.put(view.clone());
            act.stop_channel(record.id);
            act.start_channel(record, true);
            Ok(view)
        })
    }
}

impl Handler<RemoveChannel> for ChannelSupervisor {
    type Result = Result<(), ControlError>;

    fn handle(&mut self, msg: RemoveChannel, _: &mut Context<Self>) -> Self::Result {
        let record = self.record(msg.id)?;
        // Stop first, so the actor writes nothing after the delete.
        self.stop_channel(msg.id);
        self.deps
            .ingest
            .store
            .delete_channel(msg.id)
            .map_err(|err| ControlError::Store(err.to_string()))?;
        self.deps.board.remove(msg.id);
        let identity = MailboxIdentity::of(&record);
        if self.mailboxes.get(&identity) == Some(&msg.id) {
            self.mailboxes.remove(&identity);
        }
        self.deps.ingest.runtimes.remove(msg.id);
        self.deps.ingest.ledger.forget(msg.id);
        if let Some(ownership) = &self.deps.ingest.cluster {
            ownership.forget(msg.id);
        }
        let store = self.deps.ingest.store.clone();
        actix_rt::spawn(async move {
            if let Err(err) = store.flush_async().await {
                tracing::warn!(error = %err, "Could not flush the store after removing a channel.");
            }
        });
        tracing::info!(channel = %msg.id, "Channel removed.");
        Ok(())
    }
}

impl Handler<AppCredentialChanged> for ChannelSupervisor {
    type Result = ResponseActFuture<Self, Result<usize, ControlError>>;

    fn handle(&mut self, msg: AppCredentialChanged, _: &mut Context<Self>) -> Self::Result {
        if self.stopping {
            return Box::pin(fut::ready(Err(ControlError::ShuttingDown)));
        }
        let store = &self.deps.ingest.store;
        let channels = match store.list_channels() {
            Ok(channels) => channels,
            Err(err) => return Box::pin(fut::ready(Err(ControlError::Store(err.to_string())))),
        };
        let of_app: Vec<ChannelRecord> = channels
            .into_iter()
            .filter(|r| r.app_key() == msg.app)
            .collect();
        // Every view shows the new expiry.
        if let Some(first) = of_app.first() {
            let expiry = self.deps.ingest.apps.expiry(first);
            for record in &of_app {
                self.deps
                    .board
                    .update(record.id, |row| row.credential_expiry = expiry);
            }
        }
        // Blocked or waiting for a sign-in because of the old credential: try the new one now. An
        // active channel simply uses it with its next token request.
        let waiting: Vec<ChannelRecord> = of_app
            .into_iter()
            .filter(|r| {
                r.enabled
                    && matches!(
                        r.status,
                        ChannelStatus::Blocked | ChannelStatus::NeedsReauthorization
                    )
                    && r.last_error.as_deref().is_some_and(is_credential_error)
            })
            .collect();
        let now = Utc::now();
        let mut retried = Vec::with_capacity(waiting.len());
        for mut record in waiting {
            let previous = record.status;
            record.status = ChannelStatus::BackingOff;
            record.updated_at = now;
            if let Err(err) = store.put_channel(&record) {
                return Box::pin(fut::ready(Err(ControlError::Store(err.to_string()))));
            }
            retried.push((previous, record));
        }
        let store = store.clone();
        Box::pin(
            async move { store.flush_async().await }
                .into_actor(self)
                .map(move |flushed, act, _| {
                    flushed.map_err(|err| ControlError::Store(err.to_string()))?;
                    let count = retried.len();
                    for (previous, record) in retried {
                        act.deps.ingest.events.emit(
                            record.id,
                            record.mailbox.as_str(),
                            events::status_changed(previous, record.status, None),
                        );
                        let mut view = act.view_of(&record);
                        if let Some(old) = act.deps.board.get(record.id) {
                            view.messages_today = old.messages_today;
                            view.messages_day = old.messages_day;
                        }
                        act.deps.board.put(view);
                        act.stop_channel(record.id);
                        act.start_channel(record, true);
                    }
                    Ok(count)
                }),
        )
    }
}

/// Whether a channel's last error is one a new app credential can fix: the identity platform's
/// refusal of the client, or inboxd's own expiry and missing-app checks.
fn is_credential_error(error: &crate::store::LastError) -> bool {
    use crate::catalogue::codes;
    matches!(
        error.code.as_str(),
        codes::SECRET_EXPIRED | codes::CERTIFICATE_EXPIRED | codes::APP_MISSING
    ) || (error.source == crate::store::ErrorSource::IdentityPlatform
        && matches!(
            error.code.as_str(),
            "AADSTS7000215"
                | "AADSTS7000222"
                | "AADSTS7000218"
                | "AADSTS700027"
                | "AADSTS700023"
                | "AADSTS50012"
                | "invalid_client"
        ))
}

impl Handler<SetEnabled> for ChannelSupervisor {
    type Result = ResponseActFuture<Self, Result<ChannelView, ControlError>>;

    fn handle(&mut self, msg: SetEnabled, _: &mut Context<Self>) -> Self::Result {
        let mut record = match self.record(msg.id) {
            Ok(record) => record,
            Err(err) => return Box::pin(fut::ready(Err(err))),
        };
        let previous = record.status;
        record.enabled = msg.enabled;
        record.updated_at = Utc::now();
        if msg.enabled {
            let has_tokens = self
                .deps
                .ingest
                .store
                .get_tokens(msg.id)
                .map(|t| t.is_some())
                .unwrap_or(false);
            if record.status == ChannelStatus::Disabled {
                record.status = if has_tokens {
                    ChannelStatus::Active
                } else {
                    ChannelStatus::AwaitingAuthorization
                };
                record.last_error = None;
            }
        } else {
            record.status = ChannelStatus::Disabled;
        }
        self.store_then(record, move |act, record| {
            let mut view = act.view_of(&record);
            if let Some(old) = act.deps.board.get(record.id) {
                view.messages_today = old.messages_today;
                view.messages_day = old.messages_day;
                view.last_success_at = old.last_success_at;
            }
            act.deps.board.put(view.clone());
            if previous != record.status {
                act.deps.ingest.events.emit(
                    record.id,
                    record.mailbox.as_str(),
                    events::status_changed(previous, record.status, None),
                );
            }
            if record.enabled {
                act.start_channel(record, true);
            } else {
                act.stop_channel(record.id);
            }
            Ok(view)
        })
    }
}

impl Handler<AuthorizationCompleted> for ChannelSupervisor {
    type Result = ResponseActFuture<Self, Result<(), ControlError>>;

    fn handle(&mut self, msg: AuthorizationCompleted, _: &mut Context<Self>) -> Self::Result {
        let mut record = match self.record(msg.id) {
            Ok(record) => record,
            Err(err) => return Box::pin(fut::ready(Err(err))),
        };
        let now = Utc::now();
        record.activated_at.get_or_insert(now);
        record.updated_at = now;
        record.last_error = None;
        record.status = if record.enabled {
            ChannelStatus::Active
        } else {
            ChannelStatus::Disabled
        };
        // The callback stored a new grant: the runtime reads it, and drops any refresh of the old.
        self.deps.ingest.runtimes.get(msg.id).new_grant();
        self.store_then(record, |act, record| {
            act.deps.board.update(record.id, |row| {
                row.status = record.status;
                row.last_error = None;
                row.warning = None;
            });
            tracing::info!(channel = %record.id, mailbox = %record.mailbox, "Channel authorized.");
            act.deps.ingest.events.emit(
                record.id,
                record.mailbox.as_str(),
                events::about("channel.authorized", record.status, None),
            );
            act.start_channel(record, true);
            Ok(())
        })
    }
}

impl Handler<PollNow> for ChannelSupervisor {
    type Result = Result<DateTime<Utc>, ControlError>;

    fn handle(&mut self, msg: PollNow, _: &mut Context<Self>) -> Self::Result {
        let record = self.record(msg.id)?;
        if !record.enabled {
            return Err(ControlError::Invalid(format!(
                "channel {} is disabled: enable it first (`inboxd channel enable {}`)",
                msg.id, msg.id
            )));
        }
        if !self.runs_here(&record) {
            // Another node runs it: tell it (it answers to the floors it knows).
            self.tell_others(&Notice::PollNow(msg.id))?;
            return Ok(Utc::now());
        }
        // Never before the mailbox's `Retry-After`: the answer says when the poll will happen.
        let key = MailboxKey::of(&record.client_id, &record.mailbox);
        let now = Utc::now();
        let at = self
            .deps
            .ingest
            .limiters
            .floor(&key)
            .map_or(now, |floor| floor.max(now));
        match self.actors.get(&msg.id) {
            Some((addr, _)) => addr.do_send(Poke),
            // Not running (a refused grant halted it): start it and let it try now.
            None => self.start_channel(record, true),
        }
        Ok(at)
    }
}

impl Handler<Backfill> for ChannelSupervisor {
    type Result = Result<DateTime<Utc>, ControlError>;

    fn handle(&mut self, msg: Backfill, _: &mut Context<Self>) -> Self::Result {
        let record = self.record(msg.id)?;
        let now = Utc::now();
        if msg.since > now {
            return Err(ControlError::Invalid(format!(
                "the backfill date {} is in the future: give a date in the past, e.g. --since {}",
                msg.since.to_rfc3339(),
                (now - chrono::Duration::days(7)).format("%Y-%m-%d")
            )));
        }
        if !record.enabled {
            return Err(ControlError::Invalid(format!(
                "channel {} is disabled: enable it first (`inboxd channel enable {}`)",
                msg.id, msg.id
            )));
        }
        if !self.runs_here(&record) {
            self.tell_others(&Notice::Backfill(msg.id, msg.since))?;
            tracing::info!(channel = %msg.id, since = %msg.since, "Backfill requested from the node that runs the channel.");
            return Ok(now);
        }
        self.deps
            .ingest
            .runtimes
            .get(msg.id)
            .request_backfill(msg.since);
        tracing::info!(channel = %msg.id, since = %msg.since, "Backfill requested.");
        let key = MailboxKey::of(&record.client_id, &record.mailbox);
        let at = self
            .deps
            .ingest
            .limiters
            .floor(&key)
            .map_or(now, |floor| floor.max(now));
        match self.actors.get(&msg.id) {
            Some((addr, _)) => addr.do_send(Poke),
            None => self.start_channel(record, true),
        }
        Ok(at)
    }
}

impl Handler<ReplayQuarantine> for ChannelSupervisor {
    type Result = Result<usize, ControlError>;

    fn handle(&mut self, msg: ReplayQuarantine, _: &mut Context<Self>) -> Self::Result {
        let record = self.record(msg.id)?;
        if !self.runs_here(&record) {
            // The owner releases and delivers them (its runtime queues the replay): answer how
            // many are quarantined now, and tell it.
            let count = self
                .deps
                .ingest
                .ledger
                .quarantined(msg.id, usize::MAX)
                .map_err(|err| ControlError::Store(err.to_string()))?
                .len();
            self.tell_others(&Notice::ReplayQuarantine(msg.id))?;
            tracing::info!(channel = %msg.id, count, "Quarantined messages: the node that runs the channel releases them.");
            return Ok(count);
        }
        let ids = self
            .deps
            .ingest
            .ledger
            .release_quarantine(msg.id)
            .map_err(|err| ControlError::Store(err.to_string()))?;
        let released = ids.len();
        self.deps.ingest.runtimes.get(msg.id).queue_replay(ids);
        if let Some((addr, _)) = self.actors.get(&msg.id) {
            addr.do_send(Poke);
        }
        tracing::info!(channel = %msg.id, count = released, "Quarantined messages released for delivery.");
        Ok(released)
    }
}

impl Handler<StopAll> for ChannelSupervisor {
    type Result = ();

    fn handle(&mut self, _: StopAll, _: &mut Context<Self>) {
        self.stopping = true;
        for (_, (addr, _)) in self.actors.drain() {
            addr.do_send(Shutdown);
        }
    }
}

/// A test hook (feature `test-hooks`): makes one channel's actor fail.
#[cfg(feature = "test-hooks")]
impl Handler<FailChannel> for ChannelSupervisor {
    type Result = bool;

    fn handle(&mut self, msg: FailChannel, _: &mut Context<Self>) -> bool {
        match self.actors.get(&msg.0) {
            Some((addr, _)) => {
                addr.do_send(SimulateFailure);
                true
            }
            None => false,
        }
    }
}

/// How long a failed channel actor rests before it is restarted.
const RESTART_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

impl Handler<ChannelFailed> for ChannelSupervisor {
    type Result = ();

    fn handle(&mut self, msg: ChannelFailed, ctx: &mut Context<Self>) {
        let current = self
            .actors
            .get(&msg.id)
            .is_some_and(|(_, generation)| *generation == msg.generation);
        if !current || self.stopping {
            return;
        }
        self.actors.remove(&msg.id);
        self.deps
            .ingest
            .stats
            .restarts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("inboxd_channel_restarts_total").increment(1);
        ctx.run_later(RESTART_DELAY, move |act, _| {
            if act.actors.contains_key(&msg.id) {
                return;
            }
            match act.deps.ingest.store.get_channel(msg.id) {
                Ok(Some(record)) => {
                    tracing::warn!(channel = %msg.id, "Channel actor restarted from the store.");
                    act.start_channel(record, true);
                }
                Ok(None) => {}
                Err(err) => tracing::error!(channel = %msg.id, error = %err, "Could not restart a channel: its record is unreadable."),
            }
        });
    }
}

impl Handler<Terminate> for ChannelSupervisor {
    type Result = ();

    fn handle(&mut self, _: Terminate, ctx: &mut Context<Self>) {
        self.stopping = true;
        for (_, (addr, _)) in self.actors.drain() {
            addr.do_send(Shutdown);
        }
        ctx.stop();
    }
}

impl Handler<SignInFailed> for ChannelSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: SignInFailed, _: &mut Context<Self>) -> Self::Result {
        let mut record = match self.record(msg.id) {
            Ok(record) => record,
            // Removed meanwhile: nothing to record it on.
            Err(_) => return Box::pin(fut::ready(())),
        };
        // The status stays (a channel awaiting its authorization still awaits it; one that runs
        // on an older grant keeps running); the error is shown until the next success.
        record.last_error = Some(Box::new(msg.error.clone()));
        let error = msg.error;
        Box::pin(
            self.store_then(record, move |act, record| {
                act.deps.board.update(record.id, |row| row.last_error = Some(Box::new(error.clone())));
                act.deps.ingest.events.emit(
                    record.id,
                    record.mailbox.as_str(),
                    events::about("channel.sign_in_failed", record.status, Some(&error)),
                );
                Ok(())
            })
            .map(|result, _, _| {
                if let Err(err) = result {
                    tracing::warn!(error = %err, "Could not record a failed sign-in on its channel.");
                }
            }),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
