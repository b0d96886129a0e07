//! Request counters of the simulator: requests per endpoint and IMAP command (globally and per mailbox), reuses of
//! rotated-out refresh tokens (globally and per user's mailbox), and the list of requests that arrived
//! before a `Retry-After` the simulator had handed out had passed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use parking_lot::Mutex;
use serde::Serialize;

/// The endpoints the simulator counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Authorize,
    Token,
    OpenidConfiguration,
    Keys,
    GetFolder,
    ListMessages,
    Delta,
    GetMessage,
    PatchMessage,
    ListAttachments,
    Batch,
    BatchItem,
    Other,
    ImapAuthenticate,
    ImapSelect,
    ImapList,
    ImapSearch,
    ImapFetch,
    ImapStore,
    ImapOther,
}

/// Every endpoint, in counter order.
pub const ALL: [Endpoint; 20] = [
    Endpoint::Authorize,
    Endpoint::Token,
    Endpoint::OpenidConfiguration,
    Endpoint::Keys,
    Endpoint::GetFolder,
    Endpoint::ListMessages,
    Endpoint::Delta,
    Endpoint::GetMessage,
    Endpoint::PatchMessage,
    Endpoint::ListAttachments,
    Endpoint::Batch,
    Endpoint::BatchItem,
    Endpoint::Other,
    Endpoint::ImapAuthenticate,
    Endpoint::ImapSelect,
    Endpoint::ImapList,
    Endpoint::ImapSearch,
    Endpoint::ImapFetch,
    Endpoint::ImapStore,
    Endpoint::ImapOther,
];

impl Endpoint {
    /// The name used in counters and fault filters.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Authorize => "authorize",
            Endpoint::Token => "token",
            Endpoint::OpenidConfiguration => "openid_configuration",
            Endpoint::Keys => "keys",
            Endpoint::GetFolder => "get_folder",
            Endpoint::ListMessages => "list_messages",
            Endpoint::Delta => "delta",
            Endpoint::GetMessage => "get_message",
            Endpoint::PatchMessage => "patch_message",
            Endpoint::ListAttachments => "list_attachments",
            Endpoint::Batch => "batch",
            Endpoint::BatchItem => "batch_item",
            Endpoint::Other => "other",
            Endpoint::ImapAuthenticate => "imap_authenticate",
            Endpoint::ImapSelect => "imap_select",
            Endpoint::ImapList => "imap_list",
            Endpoint::ImapSearch => "imap_search",
            Endpoint::ImapFetch => "imap_fetch",
            Endpoint::ImapStore => "imap_store",
            Endpoint::ImapOther => "imap_other",
        }
    }

    /// Whether this is an IMAP command (fault filter `imap`).
    pub fn is_imap(self) -> bool {
        matches!(
            self,
            Endpoint::ImapAuthenticate
                | Endpoint::ImapSelect
                | Endpoint::ImapList
                | Endpoint::ImapSearch
                | Endpoint::ImapFetch
                | Endpoint::ImapStore
                | Endpoint::ImapOther
        )
    }

    /// Whether this is a Graph endpoint (fault filter `graph`).
    pub fn is_graph(self) -> bool {
        !matches!(
            self,
            Endpoint::Authorize
                | Endpoint::Token
                | Endpoint::OpenidConfiguration
                | Endpoint::Keys
                | Endpoint::Other
        ) && !self.is_imap()
    }

    fn index(self) -> usize {
        ALL.iter().position(|e| *e == self).unwrap_or(ALL.len() - 1)
    }
}

/// A request that arrived before its `Retry-After` had passed.
#[derive(Debug, Clone, Serialize)]
pub struct EarlyRequest {
    /// Throttling key: `"{client_id}|{mailbox}"` or `"token|{tenant}|{client_id}"`.
    pub key: String,
    pub endpoint: &'static str,
    pub at: String,
    pub early_by_ms: i64,
}

type Row = [AtomicU64; ALL.len()];

/// All counters.
#[derive(Debug, Default)]
pub struct Counters {
    global: Row,
    per_mailbox: DashMap<String, Arc<Row>>,
    pub early: Mutex<Vec<EarlyRequest>>,
    refresh_token_reuse: AtomicU64,
    refresh_token_reuse_per_mailbox: DashMap<String, AtomicU64>,
}

impl Counters {
    /// Counts one request to `endpoint`, for `mailbox` when given.
    pub fn hit(&self, endpoint: Endpoint, mailbox: Option<&str>) {
        let i = endpoint.index();
        if let Some(c) = self.global.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(mbx) = mailbox {
            let row = match self.per_mailbox.get(mbx) {
                Some(r) => r.value().clone(),
                None => self
                    .per_mailbox
                    .entry(mbx.to_owned())
                    .or_default()
                    .value()
                    .clone(),
            };
            if let Some(c) = row.get(i) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts one reuse of a rotated-out refresh token of the user whose mailbox is `mailbox`.
    pub fn refresh_token_reused(&self, mailbox: &str) {
        self.refresh_token_reuse.fetch_add(1, Ordering::Relaxed);
        self.refresh_token_reuse_per_mailbox
            .entry(mailbox.to_owned())
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Reuses of rotated-out refresh tokens, globally or for one mailbox's user.
    pub fn refresh_token_reuse(&self, mailbox: Option<&str>) -> u64 {
        match mailbox {
            None => self.refresh_token_reuse.load(Ordering::Relaxed),
            Some(m) => self
                .refresh_token_reuse_per_mailbox
                .get(m)
                .map_or(0, |c| c.load(Ordering::Relaxed)),
        }
    }

    /// Records an early request.
    pub fn early(&self, req: EarlyRequest) {
        self.early.lock().push(req);
    }

    /// Endpoint → count, globally or for one mailbox.
    pub fn snapshot(&self, mailbox: Option<&str>) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        let row = mailbox.map(|m| self.per_mailbox.get(m).map(|r| r.value().clone()));
        for e in ALL {
            let v = match &row {
                None => self
                    .global
                    .get(e.index())
                    .map(|c| c.load(Ordering::Relaxed))
                    .unwrap_or(0),
                Some(None) => 0,
                Some(Some(r)) => r
                    .get(e.index())
                    .map(|c| c.load(Ordering::Relaxed))
                    .unwrap_or(0),
            };
            out.insert(e.name().to_owned(), v.into());
        }
        out
    }

    /// Zeroes everything.
    pub fn reset(&self) {
        for c in &self.global {
            c.store(0, Ordering::Relaxed);
        }
        self.per_mailbox.clear();
        self.early.lock().clear();
        self.refresh_token_reuse.store(0, Ordering::Relaxed);
        self.refresh_token_reuse_per_mailbox.clear();
    }
}
