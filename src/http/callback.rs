//! `GET /oauth/callback`: where Microsoft sends the admin back after sign-in and consent.
//!
//! It takes the single-use `state` (unknown, expired or reused → a clear page, nothing changes),
//! shows an `error=` redirect with its AADSTS code, Microsoft's description, trace and correlation
//! ids and the remedy, refuses a missing or empty `code`, and otherwise redeems the code, stores the
//! token set (durably, encrypted) and tells the supervisor, which polls the channel at once.
//! It never redirects anywhere, so it cannot serve as an open redirect.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use chrono::Utc;

use crate::actors::messages::AuthorizationCompleted;
use crate::catalogue::{self, Classification};
use crate::domain::ChannelId;
use crate::http::AppState;
use crate::http::pages::{Notice, notice_page};
use crate::oauth::{AppCredentials, aadsts_codes, description_field, description_head};
use crate::store::{PendingLookup, TokenSet};

/// The operator-facing text for a missing or empty code.
pub const EMPTY_CODE_MESSAGE: &str =
    "Authorization code should not be empty or null for generating the access token";

/// Handles the redirect.
pub async fn callback(
    state: web::Data<AppState>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let query = query.into_inner();
    let Some(oauth_state) = query
        .get("state")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty() && s.len() <= 512)
    else {
        return state_problem(
            catalogue::codes::STATE_UNKNOWN,
            "The link carries no state: it was not started by inboxd.",
        );
    };
    let pending = match state
        .shared
        .ingest
        .store
        .take_pending(oauth_state, Utc::now())
    {
        Ok(PendingLookup::Found(pending)) => pending,
        Ok(PendingLookup::Unknown) => {
            return state_problem(
                catalogue::codes::STATE_UNKNOWN,
                "inboxd did not start this authorization (or its link was altered).",
            );
        }
        Ok(PendingLookup::Expired) => {
            return state_problem(
                catalogue::codes::STATE_EXPIRED,
                "This authorization link is older than 10 minutes.",
            );
        }
        Ok(PendingLookup::AlreadyUsed) => {
            return state_problem(
                catalogue::codes::STATE_REUSED,
                "This authorization link was already used.",
            );
        }
        Err(err) => {
            tracing::error!(error = %err, "Could not read a pending authorization.");
            return notice_page(
                503,
                &Notice::failure(
                    "inboxd could not read its store",
                    &err.to_string(),
                    "Try again in a minute; if it persists, see docs/operations.md.",
                    None,
                ),
            );
        }
    };
    let channel_id = pending.channel_id;
    if let Some(error) = query.get("error").filter(|e| !e.is_empty()) {
        return error_redirect(&state, channel_id, error, &query);
    }
    let code = query.get("code").map(|c| c.trim()).unwrap_or_default();
    if code.is_empty() {
        let class = Classification::of(catalogue::codes::EMPTY_AUTHORIZATION_CODE);
        tracing::warn!(channel = %channel_id, "OAuth callback without a code.");
        return notice_page(
            400,
            &Notice::failure(
                EMPTY_CODE_MESSAGE,
                "Microsoft sent the browser back without an authorization code.",
                class.map(|c| c.remedy()).unwrap_or("Start the authorization again: \"Update auth info\" on the status page, or `inboxd channel authorize ID`."),
                Some(channel_id),
            ),
        );
    }
    let record = match state.shared.ingest.store.get_channel(channel_id) {
        Ok(Some(record)) => record,
        Ok(None) => {
            return notice_page(
                404,
                &Notice::failure(
                    "The channel no longer exists",
                    "It was removed after this authorization started.",
                    "Add the channel again.",
                    None,
                ),
            );
        }
        Err(err) => {
            return notice_page(
                503,
                &Notice::failure(
                    "inboxd could not read its store",
                    &err.to_string(),
                    "Try again in a minute.",
                    Some(channel_id),
                ),
            );
        }
    };
    let app = AppCredentials {
        tenant: &record.tenant_id,
        client_id: &record.client_id,
        client_secret: &record.client_secret,
    };
    let grant = match state
        .shared
        .ingest
        .oauth()
        .redeem_code(app, code, &pending.verifier)
        .await
    {
        Ok(grant) => grant,
        Err(err) => {
            let class = err.classify();
            let (trace_id, correlation_id) = err.ids();
            tracing::warn!(channel = %channel_id, code = %class.code(), "Redeeming the authorization code failed.");
            return notice_page(
                400,
                &Notice::failure(
                    &format!("Microsoft refused the authorization ({})", class.code()),
                    &err.message(),
                    class.remedy(),
                    Some(channel_id),
                )
                .with_ids(trace_id, correlation_id),
            );
        }
    };
    let Some(refresh_token) = grant.refresh_token else {
        return notice_page(
            400,
            &Notice::failure(
                "Microsoft sent no refresh token",
                "Without offline_access, inboxd could read the mailbox for one hour only.",
                "In the Azure portal, add the delegated permission offline_access to the app, then \"Update auth info\".",
                Some(channel_id),
            ),
        );
    };
    let now = Utc::now();
    let tokens = TokenSet {
        access_token: grant.access_token,
        access_expires_at: now + chrono::Duration::from_std(grant.expires_in).unwrap_or_default(),
        refresh_token,
        scope: grant.scope,
        obtained_at: now,
    };
    let store = state.shared.ingest.store.clone();
    let stored =
        actix_web::rt::task::spawn_blocking(move || store.put_tokens(channel_id, &tokens)).await;
    if !matches!(stored, Ok(Ok(()))) {
        return notice_page(
            503,
            &Notice::failure(
                "inboxd could not store the tokens",
                "The disk may be full or read-only.",
                "Fix the disk, then \"Update auth info\" again.",
                Some(channel_id),
            ),
        );
    }
    if let Err(err) = state
        .supervisor
        .send(AuthorizationCompleted { id: channel_id })
        .await
    {
        tracing::error!(error = %err, "The supervisor did not take the authorization.");
    }
    notice_page(
        200,
        &Notice::success(
            "Channel authorized",
            &format!(
                "inboxd now reads {} and polls it at once, then every interval.",
                record.mailbox
            ),
            Some(channel_id),
        ),
    )
}

fn state_problem(code: &str, what: &str) -> HttpResponse {
    let remedy = Classification::of(code)
        .map(|c| c.remedy())
        .unwrap_or("Start the authorization again from the status page (\"Update auth info\") or with `inboxd channel authorize ID`.");
    tracing::warn!(code, "OAuth callback refused.");
    notice_page(
        400,
        &Notice::failure("This authorization link cannot be used", what, remedy, None)
            .with_code(code),
    )
}

fn error_redirect(
    state: &AppState,
    channel_id: ChannelId,
    error: &str,
    query: &HashMap<String, String>,
) -> HttpResponse {
    let raw = query
        .get("error_description")
        .map(String::as_str)
        .unwrap_or("");
    let codes = aadsts_codes(raw);
    let class = catalogue::classify_identity_error(error, &codes, Some(raw), None);
    let trace_id = query
        .get("trace_id")
        .cloned()
        .or_else(|| description_field(raw, "Trace ID:"));
    let correlation_id = query
        .get("correlation_id")
        .cloned()
        .or_else(|| description_field(raw, "Correlation ID:"));
    let description = description_head(raw);
    tracing::warn!(channel = %channel_id, code = %class.code(), error, "Authorization failed at Microsoft.");
    let _ = state;
    notice_page(
        400,
        &Notice::failure(
            &format!("Microsoft did not authorize the channel ({})", class.code()),
            if description.is_empty() {
                error
            } else {
                &description
            },
            class.remedy(),
            Some(channel_id),
        )
        .with_ids(trace_id, correlation_id),
    )
}
