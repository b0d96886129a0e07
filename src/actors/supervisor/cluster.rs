//! The supervisor's cluster side (cluster mode only): adopting and releasing shards on the lease
//! keeper's word, applying what other nodes stored (notices, and the periodic reconcile from the
//! tables), and the keeper's [`Members`] view of the supervisor.

use actix::prelude::*;

use super::{ChannelSupervisor, MailboxIdentity, Started};
use crate::actors::messages::*;
use crate::cluster::{Members, shard_of};
use crate::domain::ChannelId;

use crate::store::ChannelRecord;
use crate::store::cluster::Notice;

/// How often, in cluster mode, every channel is reconciled from the store even without a notice.
pub(super) const RECONCILE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl ChannelSupervisor {
    /// Applies a channel's stored record (cluster mode): index, board, and the actor if this node
    /// runs it. `None`: the channel was removed.
    fn apply_stored(&mut self, id: ChannelId, stored: Option<ChannelRecord>) {
        let Some(record) = stored else {
            self.unindex(id);
            self.stop_channel(id);
            self.deps.board.remove(id);
            self.deps.ingest.runtimes.remove(id);
            if let Some(ownership) = &self.deps.ingest.cluster {
                ownership.forget(id);
            }
            return;
        };
        self.unindex(id);
        self.mailboxes.insert(MailboxIdentity::of(&record), id);
        let runs_here = self.runs_here(&record);
        let now = Started::of(&record);
        let running = self.started_with.get(&id).copied();
        match running {
            Some(was) if runs_here && was == now => {
                // Its own run-time write, or another node's view of it: nothing to restart.
            }
            Some(was) if runs_here => {
                if was.grant != now.grant {
                    // A new grant (or none) is in the store: read it, drop the old one.
                    self.deps.ingest.runtimes.get(id).new_grant();
                }
                let runtime = self.deps.ingest.runtimes.get(id);
                runtime.reset_mode();
                self.put_view(&record);
                self.stop_channel(id);
                self.start_channel(record, true);
            }
            _ => {
                if !runs_here {
                    self.stop_channel(id);
                }
                self.put_view(&record);
                if runs_here && !self.actors.contains_key(&id) {
                    self.start_channel(record, false);
                }
            }
        }
    }

    /// Forgets the mailbox the board shows for channel `id` (before its record changes or goes).
    fn unindex(&mut self, id: ChannelId) {
        if let Some(view) = self.deps.board.get(id) {
            let identity = MailboxIdentity::new(
                view.tenant_id.as_str(),
                view.client_id.as_str(),
                view.mailbox.as_str(),
                view.folder.as_str(),
            );
            if self.mailboxes.get(&identity) == Some(&id) {
                self.mailboxes.remove(&identity);
            }
        }
    }

    /// Shows a record on the board, keeping the day's count.
    fn put_view(&self, record: &ChannelRecord) {
        let mut view = self.view_of(record);
        if let Some(old) = self.deps.board.get(record.id) {
            view.messages_today = old.messages_today;
            view.messages_day = old.messages_day;
        }
        self.deps.board.put(view);
    }

    /// Reconciles every channel with the store (cluster mode).
    fn reconcile(&mut self) {
        // Apps rotated on another node: their expiry dates (the credential itself is read per
        // token request).
        if let Err(err) = self.deps.ingest.apps.reload() {
            tracing::warn!(error = %err, "Could not read the apps to reconcile; trying again later.");
        }
        let records = match self.deps.ingest.store.list_channels() {
            Ok(records) => records,
            Err(err) => {
                tracing::warn!(error = %err, "Could not read the channels to reconcile; trying again later.");
                return;
            }
        };
        let present: std::collections::HashSet<ChannelId> = records.iter().map(|r| r.id).collect();
        let gone: Vec<ChannelId> = self
            .deps
            .board
            .ids()
            .into_iter()
            .filter(|id| !present.contains(id))
            .collect();
        for id in gone {
            self.apply_stored(id, None);
        }
        for record in records {
            self.apply_stored(record.id, Some(record));
        }
    }
}

impl Handler<ShardsAdopted> for ChannelSupervisor {
    type Result = ();

    fn handle(&mut self, msg: ShardsAdopted, ctx: &mut Context<Self>) {
        let records = match self.deps.ingest.store.list_channels() {
            Ok(records) => records,
            Err(err) => {
                tracing::warn!(error = %err, "Could not read the channels of adopted shards; trying again in a second.");
                ctx.run_later(std::time::Duration::from_secs(1), move |act, ctx| {
                    // Only what is still held: the keeper may have lost some meanwhile.
                    let held: Vec<u32> = match &act.deps.ingest.cluster {
                        Some(ownership) => {
                            msg.0.into_iter().filter(|s| ownership.holds(*s)).collect()
                        }
                        None => Vec::new(),
                    };
                    if !held.is_empty() && !act.stopping {
                        ctx.notify(ShardsAdopted(held));
                    }
                });
                return;
            }
        };
        let wanted: std::collections::HashSet<u32> = msg.0.into_iter().collect();
        // The floors the previous owner received hold here too.
        if let Err(err) = self.deps.ingest.load_floors() {
            tracing::warn!(error = %err, "Could not read the throttling floors of adopted shards.");
        }
        let mut started = 0usize;
        let adopted = records
            .into_iter()
            .filter(|record| wanted.contains(&shard_of(record)));
        self.start_channels(adopted, false, |act, record| {
            // Whatever this node cached of the channel before is stale: another node ran it.
            let runtime = act.deps.ingest.runtimes.get(record.id);
            runtime.new_grant();
            runtime.reset_mode();
            act.mailboxes.insert(MailboxIdentity::of(record), record.id);
            act.put_view(record);
            if record.enabled {
                started += 1;
            }
        });
        tracing::info!(
            shards = wanted.len(),
            channels = started,
            "Channels of adopted shards started."
        );
    }
}

impl Handler<ShardsReleased> for ChannelSupervisor {
    type Result = ();

    fn handle(&mut self, msg: ShardsReleased, _: &mut Context<Self>) {
        if let Some(ownership) = self.deps.ingest.cluster.clone() {
            let channels = ownership.channels_of(&msg.shards);
            let mut stopped = 0usize;
            for id in channels {
                if self.actors.contains_key(&id) {
                    stopped += 1;
                }
                self.stop_channel(id);
            }
            tracing::info!(
                shards = msg.shards.len(),
                channels = stopped,
                "Channels of released shards stopped."
            );
        }
        if let Some(done) = msg.done {
            let _ = done.send(());
        }
    }
}

impl Handler<ClusterNotice> for ChannelSupervisor {
    type Result = ();

    fn handle(&mut self, msg: ClusterNotice, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        match msg.0 {
            Notice::ChannelChanged(id) => match self.deps.ingest.store.get_channel(id) {
                Ok(stored) => {
                    if let Some(record) = &stored {
                        // A rotation elsewhere restarts the app's blocked channels through this
                        // notice: take the app's new expiry along.
                        self.deps.ingest.apps.refresh(record);
                    }
                    self.apply_stored(id, stored)
                }
                Err(err) => {
                    tracing::warn!(channel = %id, error = %err, "Could not read a changed channel; the next reconcile applies it.")
                }
            },
            Notice::PollNow(id) => {
                if self.owns(id) {
                    ctx.notify(PollNow { id });
                }
            }
            Notice::Backfill(id, since) => {
                if self.owns(id) {
                    ctx.notify(Backfill { id, since });
                }
            }
            Notice::ReplayQuarantine(id) => {
                if self.owns(id) {
                    ctx.notify(ReplayQuarantine { id });
                }
            }
            Notice::Resync => self.reconcile(),
        }
    }
}

/// The lease keeper tells the supervisor what this node adopted and lost.
impl Members for Addr<ChannelSupervisor> {
    fn adopt(&self, shards: Vec<u32>) {
        self.do_send(ShardsAdopted(shards));
    }

    fn release(&self, shards: Vec<u32>, wait: std::time::Duration) {
        let (done, stopped) = std::sync::mpsc::channel();
        self.do_send(ShardsReleased {
            shards,
            done: Some(done),
        });
        if !wait.is_zero() {
            let _ = stopped.recv_timeout(wait);
        }
    }
}
