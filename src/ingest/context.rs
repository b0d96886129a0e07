//! The context every cycle runs on: the store and its ledger, the clients of Microsoft (one per
//! arbiter), the limiters with their `Retry-After` floors, the channels' run-time state, the
//! settings channels run by, and the counters. Built once at start-up; shared by `Arc`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::cluster::Ownership;
use crate::events::Events;
use crate::graph::GraphClient;
use crate::imap::ImapClient;
use crate::ingest::apps::AppDirectory;
use crate::ingest::ledger::Ledger;
use crate::ingest::runtime::Runtimes;
use crate::oauth::OAuthClient;
use crate::rate_limit::{MailboxKey, RateLimiters};
use crate::retry::BackoffPolicy;
use crate::stats::Stats;
use crate::store::{Store, StoreError};

/// How channels run, taken from the settings once.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Time between two polls of a channel.
    pub interval: Duration,
    /// Random spread added to each channel's first poll.
    pub jitter: Duration,
    /// `$top` per page.
    pub page_size: u32,
    /// Most messages one poll takes before handing over (the rest follow at once).
    pub max_messages_per_poll: u32,
    /// Refresh the access token this long before it expires.
    pub token_refresh_margin: Duration,
    /// Spread of the refresh margin across channels.
    pub token_refresh_jitter: Duration,
    /// Backoff of a failing channel (and of a failing refresh while the access token is valid).
    pub backoff: BackoffPolicy,
    /// Failures of one message before it is quarantined.
    pub max_delivery_attempts: u32,
    /// Attachment content above this size is left out.
    pub max_attachment_bytes: u64,
    /// How channels find new mail, unless a channel says otherwise.
    pub mode: crate::domain::PollMode,
}

/// The shared context of the ingestion pipeline.
pub struct Ingest {
    /// The store.
    pub store: Store,
    /// The per-message ledger (in the store).
    pub ledger: Ledger,
    /// One Graph client per arbiter (each with its own connection pool), so that a channel's
    /// requests run on connections its own thread drives, with no wake-up of another arbiter.
    pub graphs: Vec<GraphClient>,
    /// The identity platform clients, one per arbiter like `graphs`.
    pub oauths: Vec<OAuthClient>,
    /// The limiters and the per-(app, mailbox) gates.
    pub limiters: RateLimiters,
    /// Each channel's run-time state, outliving its actors.
    pub runtimes: Runtimes,
    /// How channels run.
    pub run: RunSettings,
    /// Counters the bench, the tests and the status page read.
    pub stats: Stats,
    /// Cluster mode: the shards this node holds. `None` on a single node (every channel is ours).
    pub cluster: Option<Arc<Ownership>>,
    /// Where channel events go (log, history, event webhook).
    pub events: Arc<Events>,
    /// The IMAP client of channels on the IMAP transport (Exchange Online of the global cloud
    /// until [`with_imap`](Self::with_imap) names another server).
    pub imap: ImapClient,
    /// The apps channels sign in with: credentials per token request, expiries in memory.
    pub apps: AppDirectory,
}

thread_local! {
    /// Which arbiter this thread is (0 on threads that are not arbiters).
    static LANE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as arbiter `lane` (called once on each arbiter at start-up).
pub fn set_lane(lane: usize) {
    LANE.with(|cell| cell.set(lane));
}

impl Ingest {
    /// The context of `store` with these clients, limits and settings.
    pub fn new(
        store: Store,
        graphs: Vec<GraphClient>,
        oauths: Vec<OAuthClient>,
        limiters: RateLimiters,
        run: RunSettings,
    ) -> Self {
        Ingest {
            ledger: Ledger::new(store.clone()),
            graphs,
            oauths,
            limiters,
            runtimes: Runtimes::default(),
            run,
            stats: Stats::default(),
            cluster: None,
            events: Arc::new(Events::new(store.clone(), 20)),
            imap: ImapClient::new(
                crate::imap::ImapEndpoint::tls("outlook.office365.com"),
                Duration::from_secs(30),
                2,
            ),
            apps: AppDirectory::new(store.clone()),
            store,
        }
    }

    /// The same context reaching IMAP channels' mailboxes through `imap`.
    pub fn with_imap(mut self, imap: ImapClient) -> Self {
        self.imap = imap;
        self
    }

    /// The same context reporting channel events to `events`.
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = Arc::new(events);
        self
    }

    /// The same context in cluster mode: channels run only while this node holds their shard.
    pub fn in_cluster(mut self, ownership: Arc<Ownership>) -> Self {
        self.cluster = Some(ownership);
        self
    }

    /// Whether this node may act for `channel` now: always on a single node; in cluster mode while
    /// it holds the channel's shard and its lease deadline has not passed. Checked before every
    /// side effect (token refresh, hand-over to the sink, mark-read).
    pub fn may_act(&self, channel: crate::domain::ChannelId) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|ownership| ownership.may_act(channel))
    }

    /// The Graph client of the current arbiter (`new` is given at least one).
    pub fn graph(&self) -> &GraphClient {
        let lane = LANE.with(std::cell::Cell::get);
        &self.graphs[lane % self.graphs.len().max(1)]
    }

    /// The identity platform client of the current arbiter.
    pub fn oauth(&self) -> &OAuthClient {
        let lane = LANE.with(std::cell::Cell::get);
        &self.oauths[lane % self.oauths.len().max(1)]
    }

    /// Raises a mailbox's `Retry-After` floor to `retry_after` from now and makes it durable
    /// before returning, so that neither another actor nor a restarted daemon sends a request to
    /// the mailbox before it passes.
    pub async fn raise_floor(
        &self,
        key: &MailboxKey,
        retry_after: Duration,
    ) -> Result<DateTime<Utc>, StoreError> {
        let until = Utc::now() + chrono::Duration::from_std(retry_after).unwrap_or_default();
        if !self.limiters.raise_floor(key, until) {
            return Ok(until);
        }
        metrics::counter!("inboxd_throttle_floors_total").increment(1);
        let store = self.store.clone();
        let stored_key = key.stored();
        match tokio::task::spawn_blocking(move || store.put_floor(&stored_key, until)).await {
            Ok(result) => result.map(|()| until),
            Err(err) => Err(StoreError::Io {
                source: std::io::Error::other(format!("the floor write failed: {err}")),
            }),
        }
    }

    /// Loads the floors a previous run persisted into the limiters, after forgetting the ones
    /// that have passed. Answers how many are still ahead.
    pub fn load_floors(&self) -> Result<usize, StoreError> {
        let now = Utc::now();
        self.store.prune_floors(now)?;
        let mut ahead = 0;
        for (key, until) in self.store.list_floors()? {
            if until > now {
                self.limiters
                    .raise_floor(&MailboxKey::from_stored(&key), until);
                ahead += 1;
            }
        }
        Ok(ahead)
    }
}

/// Shared by `Arc` between the actors, the HTTP layer and the housekeeper.
pub type SharedIngest = Arc<Ingest>;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::domain::secret::MasterKey;
    use crate::rate_limit::Limits;

    fn run() -> RunSettings {
        RunSettings {
            interval: Duration::from_secs(120),
            jitter: Duration::ZERO,
            page_size: 50,
            max_messages_per_poll: 500,
            token_refresh_margin: Duration::from_secs(300),
            token_refresh_jitter: Duration::ZERO,
            backoff: BackoffPolicy::default(),
            max_delivery_attempts: 5,
            max_attachment_bytes: 1 << 20,
            mode: crate::domain::PollMode::Delta,
        }
    }

    fn ingest(store: &Store) -> Ingest {
        Ingest::new(
            store.clone(),
            Vec::new(),
            Vec::new(),
            RateLimiters::new(Limits::default()),
            run(),
        )
    }

    #[actix_rt::test]
    async fn a_retry_after_outlives_the_process_that_received_it() {
        let store = Store::in_memory(MasterKey::generate()).unwrap();
        let key = MailboxKey::new("app", "held@contoso.com");
        let first = ingest(&store);
        let until = first
            .raise_floor(&key, Duration::from_secs(20))
            .await
            .unwrap();
        assert!(first.limiters.floor(&key).is_some());
        // A new process on the same store: the floor is back before anything polls.
        let second = ingest(&store);
        assert_eq!(second.load_floors().unwrap(), 1);
        assert_eq!(
            second.limiters.floor(&key).map(|f| f.timestamp_millis()),
            Some(until.timestamp_millis())
        );
        // A floor that passed is forgotten.
        store
            .put_floor(
                "app/old@contoso.com",
                Utc::now() - chrono::Duration::seconds(1),
            )
            .unwrap();
        assert_eq!(ingest(&store).load_floors().unwrap(), 1);
        assert!(store.get_floor("app/old@contoso.com").unwrap().is_none());
    }
}
