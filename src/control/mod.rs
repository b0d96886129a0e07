//! The control operations, once, for every front end: list with a filter, get, add, update,
//! enable/disable, remove, authorize (and complete an authorization), poll now, the quarantine and
//! its replay. The admin API and the status page (`crate::http`) call these and only map their
//! typed answers and [`Error`]s to JSON or to pages.
//!
//! ```text
//!  http (admin API, status page, OAuth callback) ──► Control ──► ChannelSupervisor (config changes)
//!                                                       │──────► store (reads, pending authorizations, token sets)
//!                                                       │──────► oauth (authorize URL, code redemption)
//!                                                       └──────► status board (the read model)
//! ```
//!
//! - [`input`]: what an operator typed ([`NewChannel`], [`ChannelPatch`]) and its validation.
//! - [`authorization`]: the authorization service (start → sign-in link, complete → channel).
//! - [`error`]: [`Error`], the one error of this layer.
//!
//! [`Control`] is built once at start-up with what the operations need (the supervisor's address,
//! the ingestion context, the status board, [`Settings`]); it knows nothing of HTTP.

pub mod apps;
pub mod authorization;
pub mod error;
pub mod input;
pub mod invitations;

use std::sync::Arc;

use actix::Addr;
use chrono::{DateTime, Utc};

use crate::actors::messages::{
    AddChannel, PollNow, RemoveChannel, ReplayQuarantine, SetEnabled, UpdateChannel,
};
use crate::actors::supervisor::ChannelSupervisor;
use crate::domain::{ChannelId, ChannelStatus};
use crate::ingest::Ingest;
use crate::status::{ChannelView, StatusBoard};
use crate::store::{ChannelRecord, LedgerState};

pub use crate::domain::CredentialKind;
pub use crate::store::{AppKey, AppSummary};
/// What a channel view carries: its last error (or warning) and the error's source.
pub use crate::store::{ChannelEvent, ErrorSource, FirstImport, LastError};
pub use apps::{AppView, NewApp, Rotated, parse_app_id};
pub use authorization::{AuthorizationLink, Authorized, Failure, Redirect};
pub use error::Error;
pub use input::{ChannelPatch, CredentialInput, NewChannel, parse_channel_id};

/// The settings the operations run by, taken from the configuration once.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The redirect URI registered in Azure (where Microsoft sends the administrator back).
    pub redirect_uri: String,
    /// How long an authorization link stays valid.
    pub authorization_ttl: chrono::Duration,
    /// The first-import policy of channels that do not say.
    pub default_first_import: FirstImport,
    /// Where browsers reach this server (`server.public_url`): invitation links start with it.
    pub public_url: String,
    /// How long a sign-in invitation stays valid at most.
    pub invitation_ttl: chrono::Duration,
}

/// The control layer: every operation an operator can ask for.
pub struct Control {
    /// The only writer of channel configuration.
    supervisor: Addr<ChannelSupervisor>,
    /// The store and the clients of Microsoft.
    ingest: Arc<Ingest>,
    /// The read model the listings come from.
    board: Arc<StatusBoard>,
    settings: Settings,
}

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
    pub fn parse_status(raw: Option<&str>) -> Result<Option<ChannelStatus>, Error> {
        raw.map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ChannelStatus>()
                    .map_err(|message| Error::invalid("invalid_status", message))
            })
            .transpose()
    }

    /// Whether `row` is shown.
    pub fn matches(&self, row: &ChannelView) -> bool {
        self.status.is_none_or(|s| row.status == s)
            && (self.needle.is_empty()
                || row.name.to_lowercase().contains(&self.needle)
                || row.mailbox.as_str().contains(&self.needle)
                || row.tenant_id.as_str().contains(&self.needle)
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

/// A poll the channel accepted.
#[derive(Debug, Clone, Copy)]
pub struct PollAccepted {
    /// The channel.
    pub id: ChannelId,
    /// When the poll happens: now, or when the mailbox's `Retry-After` from Microsoft has passed.
    pub poll_at: DateTime<Utc>,
}

/// A backfill the channel accepted.
#[derive(Debug, Clone, Copy)]
pub struct BackfillAccepted {
    /// The channel.
    pub id: ChannelId,
    /// Mail received at or after this is looked at.
    pub since: DateTime<Utc>,
    /// When it starts: now, or when the mailbox's `Retry-After` from Microsoft has passed.
    pub start_at: DateTime<Utc>,
}

/// Reads a backfill date: `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time, in the past.
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, Error> {
    let text = text.trim();
    let parsed = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc())
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|at| at.with_timezone(&Utc))
        });
    let since = parsed.ok_or_else(|| {
        Error::invalid(
            "invalid_date",
            format!(
                "since: {text:?} is not a date: give YYYY-MM-DD (midnight UTC) or an RFC 3339 time such as 2026-11-24T08:00:00Z"
            ),
        )
    })?;
    if since > Utc::now() {
        return Err(Error::invalid(
            "invalid_date",
            format!("since: {text} is in the future: give the date the outage began"),
        ));
    }
    Ok(since)
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

impl Control {
    /// The control layer over the running daemon.
    pub fn new(
        supervisor: Addr<ChannelSupervisor>,
        ingest: Arc<Ingest>,
        board: Arc<StatusBoard>,
        settings: Settings,
    ) -> Self {
        Control {
            supervisor,
            ingest,
            board,
            settings,
        }
    }

    /// The status board: every channel's view (the read model of the front ends).
    pub fn board(&self) -> &StatusBoard {
        &self.board
    }

    /// The redirect URI to register in Azure.
    pub fn redirect_uri(&self) -> &str {
        &self.settings.redirect_uri
    }

    /// The channels matching `filter`, `limit` of them from `offset`, in one pass over the board;
    /// `seen` sees every channel of the board on the way (the status page counts statuses with it).
    pub fn list(
        &self,
        filter: &Filter,
        offset: usize,
        limit: usize,
        seen: impl Fn(&ChannelView),
    ) -> Listing {
        let (total, rows) = self.board.page(
            |row| {
                seen(row);
                filter.matches(row)
            },
            offset,
            limit,
        );
        let rows = rows.into_iter().map(|row| self.with_node(row)).collect();
        Listing { total, rows }
    }

    /// Cluster mode: the node that runs channel `id`, as this node last read it.
    pub fn node_of(&self, id: ChannelId) -> Option<String> {
        self.ingest
            .cluster
            .as_ref()
            .and_then(|ownership| ownership.owner_of(id))
    }

    /// Whether this node runs channel `id` (always on a single node).
    pub fn runs_here(&self, id: ChannelId) -> bool {
        self.ingest
            .cluster
            .as_ref()
            .is_none_or(|ownership| ownership.runs(id))
    }

    /// One channel as the board shows it.
    pub fn get(&self, id: ChannelId) -> Result<ChannelView, Error> {
        self.board
            .get(id)
            .map(|view| self.with_node(view))
            .ok_or_else(|| Error::no_channel(id))
    }

    /// A view with the node that runs it (cluster mode).
    fn with_node(&self, mut view: ChannelView) -> ChannelView {
        if self.ingest.cluster.is_some() {
            view.node = self.node_of(view.id);
        }
        view
    }

    /// The stored configuration of channel `id`.
    fn record(&self, id: ChannelId) -> Result<ChannelRecord, Error> {
        self.ingest
            .store
            .get_channel(id)
            .map_err(|e| Error::Unavailable(e.to_string()))?
            .ok_or_else(|| Error::no_channel(id))
    }

    /// Adds a channel (it then waits for authorization). A second channel of one mailbox is
    /// refused with [`Error::Conflict`] naming the first.
    pub async fn add(&self, input: NewChannel) -> Result<ChannelView, Error> {
        let (record, credential) = input.into_record(self.settings.default_first_import)?;
        self.app_for_new_channel(&record.app_key(), credential)?;
        let view = self.supervisor.send(AddChannel { record }).await??;
        tracing::info!(channel = %view.id, mailbox = %view.mailbox, "Channel added.");
        Ok(view)
    }

    /// Changes a channel's settings (a changed tenant, app or mailbox needs a new authorization).
    pub async fn update(
        &self,
        id: ChannelId,
        mut patch: ChannelPatch,
    ) -> Result<ChannelView, Error> {
        let mut record = self.record(id)?;
        let was_enabled = record.enabled;
        // A credential belongs to the app: given with a channel, it rotates the app (all its
        // channels), or records the channel's new app.
        let credential = patch.take_credential();
        let old_app = record.app_key();
        let reauthorize = patch.apply(&mut record)?;
        let new_app = record.app_key();
        match credential {
            Some(credential) if new_app == old_app => {
                self.rotate_app(&new_app, credential).await?;
            }
            Some(credential) => self.app_for_new_channel(&new_app, credential.parse()?)?,
            None if new_app != old_app => self.app_for_new_channel(&new_app, None)?,
            None => {}
        }
        let enabled = record.enabled;
        record.enabled = was_enabled;
        let view = self
            .supervisor
            .send(UpdateChannel {
                record,
                reauthorize,
            })
            .await??;
        if enabled != was_enabled {
            return self.set_enabled(id, enabled).await;
        }
        Ok(view)
    }

    /// Enables or disables a channel.
    pub async fn set_enabled(&self, id: ChannelId, enabled: bool) -> Result<ChannelView, Error> {
        let view = self.supervisor.send(SetEnabled { id, enabled }).await??;
        tracing::info!(channel = %id, enabled, "Channel enabled or disabled.");
        Ok(view)
    }

    /// Removes a channel with everything stored for it.
    pub async fn remove(&self, id: ChannelId) -> Result<(), Error> {
        self.supervisor.send(RemoveChannel { id }).await??;
        tracing::info!(channel = %id, "Channel removed.");
        Ok(())
    }

    /// Asks a channel to poll now; answers when the poll happens (never before the mailbox's
    /// `Retry-After`).
    pub async fn poll_now(&self, id: ChannelId) -> Result<PollAccepted, Error> {
        let poll_at = self.supervisor.send(PollNow { id }).await??;
        Ok(PollAccepted { id, poll_at })
    }

    /// Asks a channel to deliver every message received since `since` that was never delivered,
    /// read or not (through the ledger, so nothing is delivered twice).
    pub async fn backfill(
        &self,
        id: ChannelId,
        since: DateTime<Utc>,
    ) -> Result<BackfillAccepted, Error> {
        let start_at = self
            .supervisor
            .send(crate::actors::messages::Backfill { id, since })
            .await??;
        Ok(BackfillAccepted {
            id,
            since,
            start_at,
        })
    }

    /// The newest `limit` events of a channel for a page (none when the store cannot say).
    pub fn recent_events(&self, id: ChannelId, limit: usize) -> Vec<crate::store::ChannelEvent> {
        self.ingest.events.history(id, limit).unwrap_or_default()
    }

    /// How many of a channel's messages are quarantined (kept in memory: no scan).
    pub fn quarantine_count(&self, id: ChannelId) -> u32 {
        self.ingest.ledger.quarantined_count(id)
    }

    /// A channel's recent events (status changes, sign-ins), newest first.
    pub async fn events(&self, id: ChannelId) -> Result<Vec<crate::store::ChannelEvent>, Error> {
        self.get(id)?;
        let events = Arc::clone(&self.ingest.events);
        actix_web::rt::task::spawn_blocking(move || events.history(id, usize::MAX))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| Error::Unavailable(e.to_string()))
    }

    /// The first `max` quarantined messages of a channel.
    pub async fn quarantine(&self, id: ChannelId, max: usize) -> Result<Vec<Quarantined>, Error> {
        self.get(id)?;
        let store = self.ingest.store.clone();
        let entries = actix_web::rt::task::spawn_blocking(move || {
            store.ledger_list(id, Some(LedgerState::Quarantined), max)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::Unavailable(e.to_string()))?;
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
    pub async fn replay(&self, id: ChannelId) -> Result<usize, Error> {
        let released = self.supervisor.send(ReplayQuarantine { id }).await??;
        tracing::info!(channel = %id, released, "Quarantine replayed.");
        Ok(released)
    }
}

#[cfg(test)]
mod since_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_backfill_date_is_a_day_or_a_time_in_the_past() {
        assert_eq!(
            parse_since("2026-11-24").unwrap().to_rfc3339(),
            "2026-11-24T00:00:00+00:00"
        );
        assert!(parse_since("2026-11-24T08:30:00+02:00").is_ok());
        let err = parse_since("last week").unwrap_err();
        assert!(err.to_string().contains("YYYY-MM-DD"), "{err}");
        let future = (Utc::now() + chrono::Duration::days(2))
            .format("%Y-%m-%d")
            .to_string();
        assert!(
            parse_since(&future)
                .unwrap_err()
                .to_string()
                .contains("future")
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn row(name: &str, mailbox: &str, status: ChannelStatus) -> ChannelView {
        ChannelView {
            id: ChannelId::generate(),
            name: name.into(),
            tenant_id: crate::domain::TenantId::parse("6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7")
                .unwrap(),
            client_id: crate::domain::ClientId::parse("0a1b2c3d-4e5f-4061-8273-9485a6b7c8d9")
                .unwrap(),
            mailbox: crate::domain::Mailbox::parse(mailbox).unwrap(),
            folder: crate::domain::Folder::inbox(),
            poll_mode: None,
            transport: crate::domain::Transport::Graph,
            enabled: true,
            status,
            last_error: None,
            warning: None,
            node: None,
            last_poll_at: None,
            last_success_at: None,
            next_poll_at: None,
            credential_expiry: None,
            attempts: 0,
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
            Error::Invalid {
                code: "invalid_status",
                ..
            }
        ));
    }
}
