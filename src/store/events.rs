//! Each channel's recent events: status changes and failed sign-ins, newest kept, oldest pruned.
//! Not secret (no token, no secret ever goes into one), so stored as versioned JSON.

use std::ops::ControlFlow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::ChannelId;

use super::engine::{Op, Scan, Table};
use super::{Store, StoreError};

/// The format version of a stored event.
const VERSION: u8 = 1;

/// One thing that happened to a channel, as an operator (and the event webhook) sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelEvent {
    /// When.
    pub at: DateTime<Utc>,
    /// What: `channel.status_changed`, `channel.sign_in_failed`, `channel.authorized`, …
    pub kind: String,
    /// The channel's status after it.
    pub status: String,
    /// The status before it, for a status change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_status: Option<String>,
    /// The error's code (`AADSTS53003`, `access_denied`, …), if it is about an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// What happened, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
    /// Microsoft's trace id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Microsoft's correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

fn event_key(id: ChannelId, at: DateTime<Utc>, nudge: u32) -> Vec<u8> {
    let nanos = at
        .timestamp_nanos_opt()
        .unwrap_or_default()
        .max(0)
        .unsigned_abs()
        .saturating_add(u64::from(nudge));
    let mut key = id.as_bytes().to_vec();
    key.extend_from_slice(&nanos.to_be_bytes());
    key
}

impl Store {
    /// Records an event of channel `id`, keeping the newest `keep` of the channel's events. An
    /// operator's view, not run-time state: written unfenced, by whichever node saw it.
    pub fn push_event(
        &self,
        id: ChannelId,
        event: &ChannelEvent,
        keep: usize,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_vec(event).map_err(|err| {
            StoreError::InvalidInput(format!("an event could not be encoded: {err}"))
        })?;
        let mut value = Vec::with_capacity(json.len() + 1);
        value.push(VERSION);
        value.extend_from_slice(&json);
        let mut existing = Vec::new();
        self.scan(Table::Events, Scan::Prefix(id.as_bytes()), |key, _| {
            existing.push(key.to_vec());
            Ok(ControlFlow::Continue(()))
        })?;
        // Two events in the same nanosecond get distinct keys, in the order they were pushed.
        let mut nudge = 0;
        let mut key = event_key(id, event.at, nudge);
        while existing.contains(&key) {
            nudge += 1;
            key = event_key(id, event.at, nudge);
        }
        let mut ops = vec![Op::Insert {
            table: Table::Events,
            key: key.clone(),
            value,
        }];
        existing.push(key);
        existing.sort();
        let over = existing.len().saturating_sub(keep.max(1));
        for old in existing.into_iter().take(over) {
            ops.push(Op::Remove {
                table: Table::Events,
                key: old,
            });
        }
        self.with(|e| e.apply(&ops))
    }

    /// The newest `limit` events of channel `id`, newest first.
    pub fn list_events(
        &self,
        id: ChannelId,
        limit: usize,
    ) -> Result<Vec<ChannelEvent>, StoreError> {
        let mut events = Vec::new();
        self.scan(Table::Events, Scan::Prefix(id.as_bytes()), |key, value| {
            let what = || format!("event {} of channel {id}", hex::encode(key));
            let (version, json) = value
                .split_first()
                .ok_or_else(|| StoreError::corrupt(what(), "it is empty"))?;
            if *version != VERSION {
                return Err(StoreError::UnsupportedVersion {
                    what: what(),
                    found: u32::from(*version),
                    supported: u32::from(VERSION),
                });
            }
            let event: ChannelEvent = serde_json::from_slice(json)
                .map_err(|err| StoreError::corrupt(what(), err.to_string()))?;
            events.push(event);
            Ok(ControlFlow::Continue(()))
        })?;
        events.reverse();
        events.truncate(limit);
        Ok(events)
    }
}
