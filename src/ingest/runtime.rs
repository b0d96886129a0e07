//! Each channel's run-time state that outlives its actors. An actor is replaced whenever the
//! operator edits, disables and enables, re-authorizes or polls a halted channel, and on a
//! failure; the channel's invariants must hold across all of it, so they live here, keyed by the
//! channel, not in the actor:
//!
//! - **One cycle at a time**: a cycle runs under the channel's [`Turn`]. A new actor's first cycle
//!   waits until the previous actor's cycle ended.
//! - **The incarnation fence**: the supervisor claims a new generation for each actor it starts;
//!   a cycle of an older generation that was still waiting for its turn does not start, and an old
//!   actor's reports are dropped.
//! - **The token set**: the newest access token is held here, and the newest refresh token while
//!   its write failed; once the store holds it, it is read back from the store for the next
//!   refresh (hourly), so a million channels do not keep a million refresh tokens in memory. A new
//!   actor never refreshes with a refresh token that was already rotated out, and a refresh runs
//!   under the turn, so one refresh token is used once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use dashmap::DashMap;

use chrono::{DateTime, Utc};

use crate::domain::ChannelId;
use crate::domain::secret::CompactAccessToken;
use crate::retry::Backoff;
use crate::store::{LastError, Store, StoreError, TokenSet};

/// The run-time state of every channel.
#[derive(Debug, Default)]
pub struct Runtimes {
    channels: DashMap<ChannelId, Arc<ChannelRuntime>>,
}

impl Runtimes {
    /// The state of one channel, made on first use.
    pub fn get(&self, id: ChannelId) -> Arc<ChannelRuntime> {
        if let Some(runtime) = self.channels.get(&id) {
            return Arc::clone(&runtime);
        }
        Arc::clone(&self.channels.entry(id).or_default())
    }

    /// The state of one channel, `fresh` (made by the caller off its own thread) if it has none
    /// yet: one look-up and no allocation.
    pub fn get_or_adopt(&self, id: ChannelId, fresh: Arc<ChannelRuntime>) -> Arc<ChannelRuntime> {
        Arc::clone(&self.channels.entry(id).or_insert(fresh))
    }

    /// Forgets a removed channel.
    pub fn remove(&self, id: ChannelId) {
        self.channels.remove(&id);
    }

    /// Writes every token set whose write failed earlier (at shutdown). Answers how many are
    /// still unsaved.
    pub fn save_unsaved(&self, store: &Store) -> usize {
        let mut left = 0;
        for entry in &self.channels {
            let mut cell = entry.value().tokens.lock();
            let Some(unsaved) = &cell.unsaved else {
                continue;
            };
            match store.put_tokens(*entry.key(), unsaved) {
                Ok(()) => cell.unsaved = None,
                Err(err) => {
                    left += 1;
                    tracing::error!(channel = %entry.key(), error = %err, "A rotated refresh token could not be saved at shutdown; if the channel asks for authorization after the restart, authorize it again.");
                }
            }
        }
        left
    }
}

/// One channel's run-time state.
#[derive(Debug, Default)]
pub struct ChannelRuntime {
    turn: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    tokens: parking_lot::Mutex<TokenCell>,
    /// Graph refused the delta query on the channel's folder: it polls unread mail (until the
    /// next start), with this warning.
    delta_refused: parking_lot::Mutex<Option<Box<LastError>>>,
    /// Messages an operator released from quarantine, fetched by id by the next cycle (a delta
    /// round would not show them again: they did not change). Boxed, like the warning and the
    /// backfill: nearly every channel has none, and a pointer is 16 bytes less than a `Vec`.
    #[allow(
        clippy::box_collection,
        reason = "the box is the point: an absent queue costs a null pointer, not an empty Vec"
    )]
    replays: parking_lot::Mutex<Option<Box<Vec<String>>>>,
    /// A backfill an operator asked for, and where it stands.
    backfill: parking_lot::Mutex<Option<Box<Backfill>>>,
}

/// A backfill: every message received since a date that was never delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backfill {
    /// Mail received at or after this is looked at.
    pub since: chrono::DateTime<chrono::Utc>,
    /// The page to go on from, when a cycle stopped part-way.
    pub next_link: Option<String>,
    /// Messages delivered so far.
    pub delivered: u64,
}

/// The right to run one cycle of a channel; the next cycle starts when it is dropped.
#[derive(Debug)]
pub struct Turn<'a> {
    _held: tokio::sync::MutexGuard<'a, ()>,
}

/// The token set as the cycles see it.
#[derive(Debug, Default)]
struct TokenCell {
    /// Read from the store (`set` is what it holds, or newer).
    loaded: bool,
    /// Shared with the cycles that use it: a poll takes a reference, not a copy of the token.
    set: Option<Arc<CachedTokens>>,
    /// The whole set (with its refresh token) while it is newer than the store's copy: its write
    /// failed, and is tried again first. `None` once the store holds it.
    unsaved: Option<Box<TokenSet>>,
    /// Bumped by a new authorization: a refresh of the old grant that ends afterwards is dropped.
    grant: u64,
    /// A refresh failed while the access token was still valid (boxed: rare, and every channel
    /// has a cell).
    problem: Option<Box<RefreshProblem>>,
}

/// A refresh that keeps failing while the access token is still valid.
#[derive(Debug)]
struct RefreshProblem {
    warning: LastError,
    backoff: Backoff,
    next_try: Instant,
}

/// What a channel keeps of its token set between cycles: what a cycle polls and decides with.
/// The refresh token is not kept once the store holds it (a refresh reads it back): Microsoft's are
/// about 1 KB, held for an hour to be used once.
#[derive(Debug)]
pub struct CachedTokens {
    /// The current access token, packed (about three quarters of its text).
    pub access_token: CompactAccessToken,
    /// When it expires.
    pub access_expires_at: DateTime<Utc>,
    /// Whether it is for IMAP (Exchange Online's `IMAP.AccessAsUser.All`), not for Graph.
    pub imap: bool,
}

impl CachedTokens {
    /// What is kept of `set`.
    pub fn of(set: &TokenSet) -> Self {
        CachedTokens {
            access_token: CompactAccessToken::of(&set.access_token),
            access_expires_at: set.access_expires_at,
            imap: crate::ingest::tokens::is_imap_scope(&set.scope),
        }
    }
}

/// The tokens a cycle starts with.
#[derive(Debug, Clone)]
pub struct HeldTokens {
    /// The newest access token (shared with the channel's cell).
    pub set: Arc<CachedTokens>,
    /// The whole newest set, when it must be written before anything else (an earlier write
    /// failed); `None` when the store holds it.
    pub unsaved: Option<TokenSet>,
    /// The grant it belongs to (see [`ChannelRuntime::install`]).
    pub grant: u64,
}

impl ChannelRuntime {
    /// Starts a new incarnation (a new actor) and answers its generation.
    pub fn claim(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Whether `generation` is the newest incarnation.
    pub fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Acquire) == generation
    }

    /// Waits for the channel's turn; `None` when a newer incarnation took over meanwhile (the
    /// caller is fenced off and must not start a cycle).
    pub async fn turn(&self, generation: u64) -> Option<Turn<'_>> {
        let held = self.turn.lock().await;
        self.is_current(generation).then_some(Turn { _held: held })
    }

    /// Whether a cycle (of any incarnation) runs now.
    pub fn is_busy(&self) -> bool {
        self.turn.try_lock().is_err()
    }

    /// Whether the channel has a token set (reading the store the first time).
    pub fn has_tokens(&self, store: &Store, id: ChannelId) -> Result<bool, StoreError> {
        Ok(self.tokens(store, id)?.is_some())
    }

    /// The newest token set (reading the store the first time).
    pub fn tokens(&self, store: &Store, id: ChannelId) -> Result<Option<HeldTokens>, StoreError> {
        let mut cell = self.tokens.lock();
        if !cell.loaded {
            cell.set = store
                .get_tokens(id)?
                .map(|set| Arc::new(CachedTokens::of(&set)));
            cell.loaded = true;
            cell.unsaved = None;
        }
        Ok(cell.set.clone().map(|set| HeldTokens {
            set,
            unsaved: cell.unsaved.as_deref().cloned(),
            grant: cell.grant,
        }))
    }

    /// A new grant was stored (an authorization) or the tokens were dropped: the next cycle reads
    /// the store again, and a refresh of the old grant still in flight is dropped.
    pub fn new_grant(&self) {
        let mut cell = self.tokens.lock();
        cell.loaded = false;
        cell.set = None;
        cell.unsaved = None;
        cell.problem = None;
        cell.grant += 1;
    }

    /// Installs a refreshed set of grant `grant`; `saved` tells whether the store holds it.
    /// Answers false (and keeps nothing) when a new grant replaced that one meanwhile.
    pub fn install(&self, grant: u64, set: TokenSet, saved: bool) -> bool {
        let mut cell = self.tokens.lock();
        if cell.grant != grant {
            return false;
        }
        cell.set = Some(Arc::new(CachedTokens::of(&set)));
        cell.loaded = true;
        if saved {
            cell.unsaved = None;
            cell.problem = None;
        } else {
            cell.unsaved = Some(Box::new(set));
        }
        true
    }

    /// Whether `grant` is still the channel's grant.
    pub fn is_grant(&self, grant: u64) -> bool {
        self.tokens.lock().grant == grant
    }

    /// The set of grant `grant` is in the store now.
    pub fn saved(&self, grant: u64) {
        let mut cell = self.tokens.lock();
        if cell.grant == grant {
            cell.unsaved = None;
        }
    }

    /// Whether a refresh may be tried now (a failing one waits for its backoff).
    pub fn may_refresh(&self, now: Instant) -> bool {
        self.tokens
            .lock()
            .problem
            .as_ref()
            .is_none_or(|p| p.next_try <= now)
    }

    /// A refresh failed while the access token is still valid: keep the warning, and try again
    /// after the next step of `backoff`'s schedule.
    pub fn refresh_failed(
        &self,
        warning: LastError,
        policy: crate::retry::BackoffPolicy,
        retry_after: Option<std::time::Duration>,
        now: Instant,
    ) {
        let mut cell = self.tokens.lock();
        let problem = cell.problem.get_or_insert_with(|| {
            Box::new(RefreshProblem {
                warning: warning.clone(),
                backoff: Backoff::new(policy),
                next_try: now,
            })
        });
        problem.warning = warning;
        problem.next_try = now + problem.backoff.next_delay(retry_after);
    }

    /// The problem to show beside a working channel, if any: the identity platform refusing a
    /// refresh while the access token still works, or a folder that refuses the delta query.
    pub fn warning(&self) -> Option<LastError> {
        self.tokens
            .lock()
            .problem
            .as_ref()
            .map(|p| p.warning.clone())
            .or_else(|| self.delta_refused.lock().as_deref().cloned())
    }

    /// Whether the folder refused the delta query (the channel polls unread mail).
    pub fn delta_refused(&self) -> bool {
        self.delta_refused.lock().is_some()
    }

    /// The folder refused the delta query: poll unread mail from now on, with this warning.
    pub fn refuse_delta(&self, warning: LastError) {
        *self.delta_refused.lock() = Some(Box::new(warning));
    }

    /// Asks for a backfill from `since` (an earlier date replaces a later one still running).
    pub fn request_backfill(&self, since: chrono::DateTime<chrono::Utc>) {
        let mut backfill = self.backfill.lock();
        match backfill.as_mut() {
            Some(running) if running.since <= since => {}
            _ => {
                *backfill = Some(Box::new(Backfill {
                    since,
                    next_link: None,
                    delivered: 0,
                }))
            }
        }
    }

    /// The backfill to work on, if any.
    pub fn backfill(&self) -> Option<Backfill> {
        self.backfill.lock().as_deref().cloned()
    }

    /// Records a backfill's progress (`None` once it is done).
    pub fn set_backfill(&self, backfill: Option<Backfill>) {
        *self.backfill.lock() = backfill.map(Box::new);
    }

    /// Queues messages released from quarantine for the next cycle.
    pub fn queue_replay(&self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        self.replays
            .lock()
            .get_or_insert_with(Box::default)
            .extend(ids);
    }

    /// Takes the queued replays.
    pub fn take_replays(&self) -> Vec<String> {
        self.replays
            .lock()
            .take()
            .map(|ids| *ids)
            .unwrap_or_default()
    }

    /// Puts back replays a cycle could not finish, ahead of any queued since.
    pub fn requeue_replays(&self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let mut replays = self.replays.lock();
        let mut all = ids;
        if let Some(later) = replays.take() {
            all.extend(*later);
        }
        *replays = Some(Box::new(all));
    }

    /// The channel's configuration changed (perhaps its folder): try the delta query again.
    pub fn reset_mode(&self) {
        *self.delta_refused.lock() = None;
    }

    /// Forgets a refresh problem (the grant works again, or it is now a failure of its own).
    pub fn clear_warning(&self) {
        self.tokens.lock().problem = None;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[actix_rt::test]
    async fn a_new_incarnation_waits_for_the_old_cycle_and_fences_it_off() {
        let runtime = Arc::new(ChannelRuntime::default());
        let old = runtime.claim();
        let turn = runtime.turn(old).await.unwrap();
        let new = runtime.claim();
        assert!(!runtime.is_current(old));
        let waiting = {
            let runtime = Arc::clone(&runtime);
            actix_rt::spawn(async move { runtime.turn(new).await.is_some() })
        };
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the new cycle started before the old one ended"
        );
        assert!(runtime.is_busy());
        drop(turn);
        assert!(waiting.await.unwrap());
        // The old incarnation cannot start another cycle.
        assert!(runtime.turn(old).await.is_none());
    }

    #[test]
    fn replays_put_back_go_first_and_none_is_lost() {
        let runtime = ChannelRuntime::default();
        assert!(runtime.take_replays().is_empty());
        runtime.queue_replay(vec!["a".into(), "b".into()]);
        let taken = runtime.take_replays();
        assert_eq!(taken, ["a", "b"]);
        assert!(
            runtime.take_replays().is_empty(),
            "a replay was taken twice"
        );
        runtime.queue_replay(vec!["c".into()]);
        runtime.requeue_replays(taken);
        runtime.requeue_replays(Vec::new());
        runtime.queue_replay(Vec::new());
        assert_eq!(runtime.take_replays(), ["a", "b", "c"]);
    }

    #[test]
    fn a_runtime_made_ahead_is_adopted_only_by_a_channel_without_one() {
        let runtimes = Runtimes::default();
        let id = ChannelId::generate();
        // A channel that ran before keeps its state: its incarnations stay fenced.
        let running = runtimes.get(id);
        let first = running.claim();
        let kept = runtimes.get_or_adopt(id, Arc::default());
        assert!(
            Arc::ptr_eq(&kept, &running),
            "the made-ahead state replaced the live one"
        );
        assert!(kept.is_current(first));
        assert_eq!(kept.claim(), first + 1);
        // A channel without one takes the one made ahead, and later look-ups find it.
        let other = ChannelId::generate();
        let fresh = Arc::new(ChannelRuntime::default());
        let adopted = runtimes.get_or_adopt(other, Arc::clone(&fresh));
        assert!(Arc::ptr_eq(&adopted, &fresh));
        assert!(Arc::ptr_eq(&runtimes.get(other), &fresh));
    }

    fn set(tag: &str) -> TokenSet {
        TokenSet {
            access_token: crate::domain::secret::AccessToken::new(format!("access-{tag}")).unwrap(),
            access_expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            refresh_token: crate::domain::secret::RefreshToken::new(format!("refresh-{tag}"))
                .unwrap(),
            scope: "offline_access https://outlook.office.com/IMAP.AccessAsUser.All".into(),
            obtained_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn the_refresh_token_is_held_only_while_its_write_failed() {
        let store = Store::in_memory(crate::domain::secret::MasterKey::generate()).unwrap();
        let id = ChannelId::generate();
        store.put_tokens(id, &set("stored")).unwrap();
        let runtimes = Runtimes::default();
        let runtime = runtimes.get(id);
        // Read from the store: the access token and what it is for, no refresh token.
        let held = runtime.tokens(&store, id).unwrap().unwrap();
        assert_eq!(held.set.access_token.expose().as_str(), "access-stored");
        assert!(held.set.imap);
        assert!(held.unsaved.is_none());
        // A rotated set whose write failed is held whole, and written first by the next cycle.
        assert!(runtime.install(held.grant, set("rotated"), false));
        let held = runtime.tokens(&store, id).unwrap().unwrap();
        assert_eq!(held.set.access_token.expose().as_str(), "access-rotated");
        let unsaved = held.unsaved.clone().unwrap();
        assert_eq!(unsaved.refresh_token.expose(), "refresh-rotated");
        assert_eq!(runtimes.save_unsaved(&store), 0);
        assert_eq!(
            store
                .get_tokens(id)
                .unwrap()
                .unwrap()
                .refresh_token
                .expose(),
            "refresh-rotated"
        );
        // Once stored, only the access token stays.
        assert!(
            runtime
                .tokens(&store, id)
                .unwrap()
                .unwrap()
                .unsaved
                .is_none()
        );
        assert!(runtime.install(held.grant, set("next"), true));
        let held = runtime.tokens(&store, id).unwrap().unwrap();
        assert_eq!(held.set.access_token.expose().as_str(), "access-next");
        assert!(held.unsaved.is_none());
        // A set of an older grant is not installed.
        runtime.new_grant();
        assert!(!runtime.install(held.grant, set("old"), false));
    }
}
