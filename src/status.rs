//! The status board: the read model of every channel's state that the admin API and the status
//! page read. Each row is written by its channel's current actor (or by the supervisor while no
//! actor runs); nothing here holds a secret.

use chrono::{DateTime, Utc};
use dashmap::DashMap;

use crate::domain::{
    ChannelId, ChannelStatus, ClientId, CredentialKind, Folder, Mailbox, TenantId,
};
use crate::store::{ChannelRecord, LastError};

/// One channel as the API and the status page show it. Never holds a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelView {
    /// The configuration, without secrets.
    pub id: ChannelId,
    /// Display name (shared with the record).
    pub name: std::sync::Arc<str>,
    /// Tenant (the record's own string, shared: a row holds no copy).
    pub tenant_id: TenantId,
    /// App (shared with the record).
    pub client_id: ClientId,
    /// Mailbox (shared with the record).
    pub mailbox: Mailbox,
    /// Folder (shared with the record).
    pub folder: Folder,
    /// The channel's own poll mode, if it overrides `polling.mode`.
    pub poll_mode: Option<crate::domain::PollMode>,
    /// How the channel reaches its mailbox.
    pub transport: crate::domain::Transport,
    /// Enabled by the operator.
    pub enabled: bool,
    /// Status.
    pub status: ChannelStatus,
    /// The last error, with its remedy. Boxed, like `warning`: most channels have neither, and
    /// every channel has a row, so a row without them is ~270 bytes smaller.
    pub last_error: Option<Box<LastError>>,
    /// A problem that does not stop the channel yet, with its remedy: the identity platform
    /// refuses to refresh while the access token is still valid, so polling goes on until it
    /// expires.
    pub warning: Option<Box<LastError>>,
    /// Cluster mode: the node that runs the channel, filled in when the view is read (`None` on a
    /// single node).
    pub node: Option<String>,
    /// When it last polled.
    pub last_poll_at: Option<DateTime<Utc>>,
    /// When it last polled successfully.
    pub last_success_at: Option<DateTime<Utc>>,
    /// When it polls next.
    pub next_poll_at: Option<DateTime<Utc>>,
    /// The expiry of the app's credential (a secret's if given, a certificate's always), with its
    /// kind; filled by the supervisor from the app directory.
    pub credential_expiry: Option<(CredentialKind, DateTime<Utc>)>,
    /// Failed cycles in a row (the current backoff episode; 0 once a cycle succeeds).
    pub attempts: u32,
    /// Messages delivered today (UTC).
    pub messages_today: u64,
    /// The day `messages_today` counts.
    pub messages_day: Option<chrono::NaiveDate>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

impl ChannelView {
    /// The view of a stored channel before its actor reported anything.
    pub fn from_record(record: &ChannelRecord) -> Self {
        ChannelView {
            id: record.id,
            name: record.name.clone(),
            tenant_id: record.tenant_id.clone(),
            client_id: record.client_id.clone(),
            mailbox: record.mailbox.clone(),
            folder: record.folder.clone(),
            poll_mode: record.poll_mode,
            transport: record.transport,
            enabled: record.enabled,
            status: record.status,
            last_error: record.last_error.clone(),
            warning: None,
            node: None,
            last_poll_at: record.last_poll_at,
            last_success_at: record.last_success_at,
            next_poll_at: None,
            credential_expiry: None,
            attempts: 0,
            messages_today: 0,
            messages_day: None,
            created_at: record.created_at,
        }
    }

    /// Whole days until the app's credential expires (negative once expired).
    pub fn secret_days_left(&self, now: DateTime<Utc>) -> Option<i64> {
        self.credential_expiry.map(|(_, at)| (at - now).num_days())
    }

    /// When the app's credential expires, if known.
    pub fn credential_expires_at(&self) -> Option<DateTime<Utc>> {
        self.credential_expiry.map(|(_, at)| at)
    }
}

/// Every channel's current view; each row is written by its channel's actor (or the supervisor
/// while no actor runs) and read by anyone.
///
/// Rows are boxed: the map's table then holds a pointer per slot, not a whole `ChannelView`, so its
/// spare capacity (a hash table is up to half empty after it grows) costs 16 bytes a slot instead
/// of a row's size — several hundred bytes per channel at 100,000 channels.
///
/// The map has many shards: a `/metrics` scrape walks every row under each shard's read lock, and
/// an actor publishing its row waits for the walk of that shard; at a million channels dashmap's
/// default (4 × cores) would make that a walk of ~125,000 rows.
#[derive(Debug)]
pub struct StatusBoard {
    rows: DashMap<ChannelId, Box<ChannelView>>,
}

/// Shards of the board's map (a power of two).
const BOARD_SHARDS: usize = 1024;

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard::with_capacity(0)
    }
}

impl StatusBoard {
    /// A board sized for `channels` rows, so that filling it at start-up never regrows its table.
    pub fn with_capacity(channels: usize) -> Self {
        StatusBoard {
            rows: DashMap::with_capacity_and_shard_amount(channels, BOARD_SHARDS),
        }
    }

    /// Inserts or replaces a row.
    pub fn put(&self, view: ChannelView) {
        self.put_row(Box::new(view));
    }

    /// Adds or replaces a row made (boxed) elsewhere.
    pub fn put_row(&self, row: Box<ChannelView>) {
        self.rows.insert(row.id, row);
    }

    /// Changes a row in place.
    pub fn update(&self, id: ChannelId, change: impl FnOnce(&mut ChannelView)) {
        if let Some(mut row) = self.rows.get_mut(&id) {
            change(row.value_mut());
        }
    }

    /// Removes a row.
    pub fn remove(&self, id: ChannelId) {
        self.rows.remove(&id);
    }

    /// One row.
    pub fn get(&self, id: ChannelId) -> Option<ChannelView> {
        self.rows
            .get(&id)
            .map(|row| ChannelView::clone(row.value()))
    }

    /// Every channel's id.
    pub fn ids(&self) -> Vec<ChannelId> {
        self.rows.iter().map(|row| *row.key()).collect()
    }

    /// How many channels.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Calls `visit` with every row in place, in no particular order: no copy, no sort (what a
    /// `/metrics` scrape needs at a million channels). Each shard of the map is read-locked while
    /// it is visited, so `visit` must not write to the board.
    pub fn for_each(&self, mut visit: impl FnMut(&ChannelView)) {
        for row in &self.rows {
            visit(row.value());
        }
    }

    /// Rows matching `keep`, sorted by name then id, `limit` of them after skipping `offset`;
    /// with the total number that matched.
    pub fn page(
        &self,
        keep: impl Fn(&ChannelView) -> bool,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<ChannelView>) {
        let mut matched: Vec<ChannelView> = self
            .rows
            .iter()
            .filter(|row| keep(row.value()))
            .map(|row| ChannelView::clone(row.value()))
            .collect();
        matched.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        let total = matched.len();
        let rows = matched.into_iter().skip(offset).take(limit).collect();
        (total, rows)
    }

    /// How many rows `keep` keeps, copying none.
    pub fn count_where(&self, keep: impl Fn(&ChannelView) -> bool) -> usize {
        self.rows.iter().filter(|row| keep(row.value())).count()
    }

    /// Visits every row in no particular order, copying none.
    pub fn visit(&self, mut each: impl FnMut(&ChannelView)) {
        for row in self.rows.iter() {
            each(row.value());
        }
    }

    /// How many channels are in each status.
    pub fn counts(&self) -> Vec<(ChannelStatus, usize)> {
        let mut counts = [0usize; 6];
        for row in &self.rows {
            if let Some(index) = ChannelStatus::ALL.iter().position(|s| *s == row.status) {
                counts[index] += 1;
            }
        }
        ChannelStatus::ALL.iter().copied().zip(counts).collect()
    }
}
