//! The control operations, once: listing with a filter, add, update, enable/disable, remove,
//! authorize, poll now, the quarantine and its replay. The admin API and the status page both call
//! these and only map their typed results and [`ApiError`]s to JSON or to pages.

use chrono::{DateTime, Utc};

use crate::actors::messages::{
    AddChannel, PollNow, RemoveChannel, ReplayQuarantine, SetEnabled, UpdateChannel,
};
use crate::domain::{ChannelId, ChannelStatus};
use crate::http::AppState;
use crate::http::authorization::{self, AuthorizationLink};
use crate::http::dto::{ChannelIn, ChannelPatch};
use crate::http::error::{ApiError, invalid};
use crate::status::ChannelView;
use crate::store::{ChannelRecord, LedgerState};

/// Which channels a listing shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Only this status.
    pub status: Option<ChannelStatus>,
    /// A case-insensitive search in name, mailbox, tenant and id (empty: everything).
    needle: String,
}

impl Filter {
    /// A filter on `status` and the search `q`.
    pub fn new(status: Option<ChannelStatus>, q: &str) -> Self {
        Filter {
            status,
            needle: q.trim().to_lowercase(),
        }
    }

    /// Parses the status of a query (`""` is any status).
    pub fn parse_status(raw: Option<&str>) -> Result<Option<ChannelStatus>, ApiError> {
        raw.map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ChannelStatus>()
                    .map_err(|message| ApiError::BadRequest {
                        code: "invalid_status",
                        message,
                    })
            })
            .transpose()
    }

    /// Whether `row` is shown.
    pub fn matches(&self, row: &ChannelView) -> bool {
        self.status.is_none_or(|s| row.status == s)
            && (self.needle.is_empty()
                || row.name.to_lowercase().contains(&self.needle)
                || row.mailbox.contains(&self.needle)
                || row.tenant_id.contains(&self.needle)
                || row.id.to_string().contains(&self.needle))
    }
}

/// One page of a listing.
#[derive(Debug)]
pub struct Listing {
    /// How many channels match.
    pub total: usize,
    /// The ones on this page.
    pub rows: Vec<ChannelView>,
}

/// The channels matching `filter`, `limit` of them from `offset`, in one pass over the board;
/// `seen` sees every channel of the board on the way (the status page counts statuses with it).
pub fn list(
    state: &AppState,
    filter: &Filter,
    offset: usize,
    limit: usize,
    seen: impl Fn(&ChannelView),
) -> Listing {
    let (total, rows) = state.shared.board.page(
        |row| {
            seen(row);
            filter.matches(row)
        },
        offset,
        limit,
    );
    Listing { total, rows }
}

/// Parses a channel id of a path.
pub fn channel_id(raw: &str) -> Result<ChannelId, ApiError> {
    ChannelId::parse(raw).map_err(|e| invalid("id", e))
}

fn no_channel(id: ChannelId) -> ApiError {
    ApiError::NotFound(format!("no channel has the id {id}"))
}

/// One channel as the board shows it.
pub fn get(state: &AppState, id: ChannelId) -> Result<ChannelView, ApiError> {
    state.shared.board.get(id).ok_or_else(|| no_channel(id))
}

fn record(state: &AppState, id: ChannelId) -> Result<ChannelRecord, ApiError> {
    state
        .shared
        .ingest
        .store
        .get_channel(id)
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .ok_or_else(|| no_channel(id))
}

/// Adds a channel (it then waits for authorization).
pub async fn add(state: &AppState, input: ChannelIn) -> Result<ChannelView, ApiError> {
    let record = input.into_record(state.default_first_import)?;
    let view = state.supervisor.send(AddChannel { record }).await??;
    tracing::info!(channel = %view.id, mailbox = %view.mailbox, "Channel added.");
    Ok(view)
}

/// Changes a channel's settings (a changed tenant, app or mailbox needs a new authorization).
pub async fn update(
    state: &AppState,
    id: ChannelId,
    patch: ChannelPatch,
) -> Result<ChannelView, ApiError> {
    let mut record = record(state, id)?;
    let was_enabled = record.enabled;
    let reauthorize = patch.apply(&mut record)?;
    let enabled = record.enabled;
    record.enabled = was_enabled;
    let view = state
        .supervisor
        .send(UpdateChannel {
            record,
            reauthorize,
        })
        .await??;
    if enabled != was_enabled {
        return set_enabled(state, id, enabled).await;
    }
    Ok(view)
}

/// Enables or disables a channel.
pub async fn set_enabled(
    state: &AppState,
    id: ChannelId,
    enabled: bool,
) -> Result<ChannelView, ApiError> {
    let view = state.supervisor.send(SetEnabled { id, enabled }).await??;
    tracing::info!(channel = %id, enabled, "Channel enabled or disabled.");
    Ok(view)
}

/// Removes a channel with everything stored for it.
pub async fn remove(state: &AppState, id: ChannelId) -> Result<(), ApiError> {
    state.supervisor.send(RemoveChannel { id }).await??;
    tracing::info!(channel = %id, "Channel removed.");
    Ok(())
}

/// Starts an authorization of a channel; answers the sign-in link.
pub async fn authorize(state: &AppState, id: ChannelId) -> Result<AuthorizationLink, ApiError> {
    let link = authorization::start(state, id).await?;
    tracing::info!(channel = %id, "Authorization started.");
    Ok(link)
}

/// A poll the channel accepted.
#[derive(Debug, Clone, Copy)]
pub struct PollAccepted {
    /// The channel.
    pub id: ChannelId,
    /// When the poll happens: now, or when the mailbox's `Retry-After` from Microsoft has passed.
    pub poll_at: chrono::DateTime<Utc>,
}

/// Asks a channel to poll now.
pub async fn poll_now(state: &AppState, id: ChannelId) -> Result<PollAccepted, ApiError> {
    let poll_at = state.supervisor.send(PollNow { id }).await??;
    Ok(PollAccepted { id, poll_at })
}

/// A quarantined message.
#[derive(Debug, Clone)]
pub struct Quarantined {
    /// Graph's message id.
    pub message_id: String,
    /// Failed deliveries.
    pub failures: u32,
    /// The last delivery error.
    pub last_error: Option<String>,
    /// When it was first seen.
    pub first_seen_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// The first `max` quarantined messages of a channel.
pub async fn quarantine(
    state: &AppState,
    id: ChannelId,
    max: usize,
) -> Result<Vec<Quarantined>, ApiError> {
    get(state, id)?;
    let store = state.shared.ingest.store.clone();
    let entries = actix_web::rt::task::spawn_blocking(move || {
        store.ledger_list(id, Some(LedgerState::Quarantined), max)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(entries
        .into_iter()
        .map(|(message_id, entry)| Quarantined {
            message_id,
            failures: entry.failures,
            last_error: entry.last_error,
            first_seen_at: entry.first_seen_at,
            updated_at: entry.updated_at,
        })
        .collect())
}

/// Releases a channel's quarantined messages for delivery; answers how many.
pub async fn replay(state: &AppState, id: ChannelId) -> Result<usize, ApiError> {
    let released = state.supervisor.send(ReplayQuarantine { id }).await??;
    tracing::info!(channel = %id, released, "Quarantine replayed.");
    Ok(released)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn row(name: &str, mailbox: &str, status: ChannelStatus) -> ChannelView {
        ChannelView {
            id: ChannelId::generate(),
            name: name.to_owned(),
            tenant_id: "6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7".to_owned(),
            client_id: "0a1b2c3d-4e5f-4061-8273-9485a6b7c8d9".to_owned(),
            mailbox: mailbox.to_owned(),
            folder: "inbox".to_owned(),
            enabled: true,
            status,
            last_error: None,
            warning: None,
            last_poll_at: None,
            last_success_at: None,
            next_poll_at: None,
            client_secret_expires_at: None,
            messages_today: 0,
            messages_day: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn the_filter_searches_name_mailbox_tenant_and_id_within_a_status() {
        let desk = row("Help Desk", "desk@contoso.example", ChannelStatus::Active);
        let sales = row("Sales", "sales@fabrikam.example", ChannelStatus::Blocked);
        let any = Filter::new(None, "");
        assert!(any.matches(&desk) && any.matches(&sales));
        let by_name = Filter::new(None, "  help ");
        assert!(by_name.matches(&desk) && !by_name.matches(&sales));
        let by_mailbox = Filter::new(None, "FABRIKAM");
        assert!(by_mailbox.matches(&sales) && !by_mailbox.matches(&desk));
        let by_id = Filter::new(None, &desk.id.to_string()[..8]);
        assert!(by_id.matches(&desk));
        let blocked = Filter::new(Some(ChannelStatus::Blocked), "example");
        assert!(blocked.matches(&sales) && !blocked.matches(&desk));
        assert!(Filter::parse_status(Some("")).unwrap().is_none());
        let err = Filter::parse_status(Some("asleep")).unwrap_err();
        assert!(matches!(
            err,
            ApiError::BadRequest {
                code: "invalid_status",
                ..
            }
        ));
    }
}
