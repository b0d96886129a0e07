//! The admin API: channels under `/api/channels`, behind the admin token.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde::Deserialize;

use crate::actors::messages::{
    AddChannel, PollNow, RemoveChannel, ReplayQuarantine, SetEnabled, UpdateChannel,
};
use crate::domain::{ChannelId, ChannelStatus};
use crate::http::AppState;
use crate::http::dto::{ChannelIn, ChannelOut, ChannelPatch};
use crate::http::error::{ApiError, invalid};
use crate::store::{LedgerState, PendingAuthorization};

/// The `/api` scope.
pub fn scope() -> actix_web::Scope {
    web::scope("/api")
        .route("/channels", web::get().to(list))
        .route("/channels", web::post().to(add))
        .route("/channels/{id}", web::get().to(show))
        .route("/channels/{id}", web::patch().to(update))
        .route("/channels/{id}", web::delete().to(remove))
        .route("/channels/{id}/authorize", web::post().to(authorize))
        .route("/channels/{id}/poll", web::post().to(poll))
        .route("/channels/{id}/enable", web::post().to(enable))
        .route("/channels/{id}/disable", web::post().to(disable))
        .route("/channels/{id}/quarantine", web::get().to(quarantine))
        .route("/channels/{id}/quarantine/replay", web::post().to(replay))
        .default_service(web::to(not_found))
}

async fn not_found(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req)?;
    Err(ApiError::NotFound(format!(
        "no such API endpoint: {} {}",
        req.method(),
        req.path()
    )))
}

/// A JSON body that could not be read: 400 (or 413) with serde's explanation.
pub fn json_error(err: actix_web::error::JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError;
    let api = match &err {
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::bad(
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        ),
        JsonPayloadError::ContentType => ApiError::bad(
            "unsupported_content_type",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        JsonPayloadError::Deserialize(inner) => ApiError::bad(
            "invalid_json",
            format!("the JSON body is not valid: {inner}"),
        ),
        other => ApiError::bad(
            "invalid_body",
            format!("the request body could not be read: {other}"),
        ),
    };
    let status_413 = matches!(
        err,
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. }
    );
    if status_413 {
        let body =
            serde_json::json!({"error": {"code": "body_too_large", "message": api.to_string()}});
        return actix_web::error::InternalError::from_response(
            err,
            HttpResponse::PayloadTooLarge().json(body),
        )
        .into();
    }
    api.into()
}

/// A query string that could not be read.
pub fn query_error(err: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad(
        "invalid_query",
        format!("the query string is not valid: {err}"),
    )
    .into()
}

fn channel_id(raw: &str) -> Result<ChannelId, ApiError> {
    ChannelId::parse(raw).map_err(|e| invalid("id", e))
}

fn out(state: &AppState, id: ChannelId) -> Result<ChannelOut, ApiError> {
    let view = state
        .shared
        .board
        .get(id)
        .ok_or_else(|| ApiError::NotFound(format!("no channel has the id {id}")))?;
    Ok(ChannelOut::from_view(&view, &state.redirect_uri))
}

/// Query of `GET /api/channels`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this status.
    pub status: Option<String>,
    /// A search in name, mailbox, tenant and id.
    pub q: Option<String>,
    /// Skip this many.
    pub offset: Option<usize>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req)?;
    let query = query.into_inner();
    let status = query
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ChannelStatus>()
                .map_err(|message| ApiError::BadRequest {
                    code: "invalid_status",
                    message,
                })
        })
        .transpose()?;
    let needle = query.q.unwrap_or_default().trim().to_lowercase();
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let offset = query.offset.unwrap_or(0);
    let (total, rows) = state.shared.board.page(
        |row| {
            status.is_none_or(|s| row.status == s)
                && (needle.is_empty()
                    || row.name.to_lowercase().contains(&needle)
                    || row.mailbox.contains(&needle)
                    || row.tenant_id.contains(&needle)
                    || row.id.to_string().contains(&needle))
        },
        offset,
        limit,
    );
    let channels: Vec<ChannelOut> = rows
        .iter()
        .map(|row| ChannelOut::from_view(row, &state.redirect_uri))
        .collect();
    Ok(HttpResponse::Ok().json(
        serde_json::json!({"channels": channels, "total": total, "offset": offset, "limit": limit}),
    ))
}

async fn add(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<ChannelIn>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req)?;
    let record = body.into_inner().into_record(state.default_first_import)?;
    let view = state.supervisor.send(AddChannel { record }).await??;
    tracing::info!(channel = %view.id, mailbox = %view.mailbox, "Channel added.");
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/channels/{}", view.id)))
        .json(ChannelOut::from_view(&view, &state.redirect_uri)))
}

async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req)?;
    Ok(HttpResponse::Ok().json(out(&state, channel_id(&id)?)?))
}

async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<ChannelPatch>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req)?;
    let id = channel_id(&id)?;
    let mut record = state
        .shared
        .ingest
        .store
        .get_channel(id)
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .ok_or_else(|| ApiError::NotFound(format!("no channel has the id {id}")))?;
    let was_enabled = record.enabled;
    let reauthorize = body.into_inner().apply(&mut record)?;
    let enabled = record.enabled;
    record.enabled = was_enabled;
    let mut view = state
        .supervisor
        .send(UpdateChannel {
            record,
            reauthorize,
        })
        .await??;
    if enabled != was_enabled {
        view = state.supervisor.send(SetEnabled { id, enabled }).await??;
    }
    Ok(HttpResponse::Ok().json(ChannelOut::from_view(&view, &state.redirect_uri)))
}

async fn remove(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req)?;
    let id = channel_id(&id)?;
    state.supervisor.send(RemoveChannel { id }).await??;
    Ok(HttpResponse::NoContent().finish())
}

async fn set_enabled(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: &str,
    enabled: bool,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req)?;
    let id = channel_id(id)?;
    let view = state.supervisor.send(SetEnabled { id, enabled }).await??;
    Ok(HttpResponse::Ok().json(ChannelOut::from_view(&view, &state.redirect_uri)))
}

async fn enable(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(req, state, &id, true).await
}

async fn disable(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(req, state, &id, false).await
}

/// Starts an authorization (or a re-authorization: "update auth info") and returns its link.
pub async fn start_authorization(state: &AppState, id: ChannelId) -> Result<String, ApiError> {
    let record = state
        .shared
        .ingest
        .store
        .get_channel(id)
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .ok_or_else(|| ApiError::NotFound(format!("no channel has the id {id}")))?;
    let start = state
        .shared
        .ingest
        .oauth()
        .authorize(&record.tenant_id, &record.client_id, &record.mailbox)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let now = Utc::now();
    let pending = PendingAuthorization {
        channel_id: id,
        verifier: start.verifier,
        redirect_uri: state.redirect_uri.clone(),
        created_at: now,
        expires_at: now + state.authorization_ttl,
    };
    state
        .shared
        .ingest
        .store
        .put_pending(&start.state, &pending)
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    state
        .shared
        .ingest
        .store
        .flush_async()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(start.url)
}

async fn authorize(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req)?;
    let id = channel_id(&id)?;
    let url = start_authorization(&state, id).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "authorization_url": url,
        "redirect_uri": state.redirect_uri,
        "expires_at": Utc::now() + state.authorization_ttl,
    })))
}

async fn poll(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req)?;
    let id = channel_id(&id)?;
    let at = state.supervisor.send(PollNow { id }).await??;
    Ok(HttpResponse::Accepted().json(serde_json::json!({
        "polling": id.to_string(),
        "poll_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })))
}

async fn quarantine(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req)?;
    let id = channel_id(&id)?;
    out(&state, id)?;
    let entries = state
        .shared
        .ingest
        .store
        .ledger_list(id, Some(LedgerState::Quarantined), 10_000)
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let messages: Vec<serde_json::Value> = entries
        .iter()
        .map(|(message_id, entry)| {
            serde_json::json!({
                "message_id": message_id,
                "failures": entry.failures,
                "last_error": entry.last_error,
                "first_seen_at": entry.first_seen_at,
                "updated_at": entry.updated_at,
            })
        })
        .collect();
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({"channel_id": id.to_string(), "messages": messages})))
}

async fn replay(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req)?;
    let id = channel_id(&id)?;
    let released = state.supervisor.send(ReplayQuarantine { id }).await??;
    Ok(HttpResponse::Ok().json(serde_json::json!({"released": released})))
}
