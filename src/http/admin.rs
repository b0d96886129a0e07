//! The admin API: channels under `/api/channels`, behind the admin token (the bearer token only:
//! a status page cookie is not accepted here). Each handler checks the token, calls one operation
//! of [`crate::control`] and maps its answer to JSON.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::control::{ChannelPatch, Filter, NewChannel, parse_channel_id};
use crate::domain::ChannelId;
use crate::http::AppState;
use crate::http::dto::{ChannelIn, ChannelOut, ChannelPatchIn};
use crate::http::error::ApiError;
use crate::status::ChannelView;

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
        .route("/channels/{id}/backfill", web::post().to(backfill))
        .route("/channels/{id}/enable", web::post().to(enable))
        .route("/channels/{id}/disable", web::post().to(disable))
        .route("/channels/{id}/quarantine", web::get().to(quarantine))
        .route("/channels/{id}/events", web::get().to(events))
        .route("/channels/{id}/invitations", web::post().to(invite))
        .route("/invitations/{id}", web::delete().to(revoke_invitation))
        .route("/channels/{id}/quarantine/replay", web::post().to(replay))
        .default_service(web::to(not_found))
}

async fn not_found(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
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

fn out(state: &AppState, view: &ChannelView) -> ChannelOut {
    ChannelOut::from_view(view, state.control.redirect_uri())
}

/// The channel id of a path.
fn channel_id(raw: &str) -> Result<ChannelId, ApiError> {
    Ok(parse_channel_id(raw)?)
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
    state.auth.check_bearer(&req)?;
    let query = query.into_inner();
    let filter = Filter::new(
        Filter::parse_status(query.status.as_deref())?,
        query.q.as_deref().unwrap_or_default(),
    );
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let offset = query.offset.unwrap_or(0);
    let listing = state.control.list(&filter, offset, limit, |_| ());
    let channels: Vec<ChannelOut> = listing.rows.iter().map(|row| out(&state, row)).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "channels": channels, "total": listing.total, "offset": offset, "limit": limit,
    })))
}

async fn add(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<ChannelIn>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let view = state
        .control
        .add(NewChannel::from(body.into_inner()))
        .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/channels/{}", view.id)))
        .json(out(&state, &view)))
}

async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let view = state.control.get(channel_id(&id)?)?;
    Ok(HttpResponse::Ok().json(out(&state, &view)))
}

async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<ChannelPatchIn>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let view = state
        .control
        .update(channel_id(&id)?, ChannelPatch::from(body.into_inner()))
        .await?;
    Ok(HttpResponse::Ok().json(out(&state, &view)))
}

async fn remove(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    state.control.remove(channel_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn set_enabled(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: &str,
    enabled: bool,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let view = state.control.set_enabled(channel_id(id)?, enabled).await?;
    Ok(HttpResponse::Ok().json(out(&state, &view)))
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

async fn authorize(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let link = state.control.authorize(channel_id(&id)?).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "authorization_url": link.url,
        "redirect_uri": state.control.redirect_uri(),
        "expires_at": link.expires_at,
    })))
}

/// Body of `POST /api/channels/{id}/invitations` (optional).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    /// Hours the link stays valid (default and most: `server.sign_in_link_ttl_hours`).
    valid_hours: Option<u32>,
}

/// `POST /api/channels/{id}/invitations`: a sign-in link to send to the mailbox's owner.
async fn invite(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let id = channel_id(&id)?;
    let body: InviteBody = if body.iter().all(u8::is_ascii_whitespace) {
        InviteBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|err| {
            ApiError::from(crate::control::Error::Invalid {
                code: "invalid_body",
                message: format!(
                    "the body must be empty or JSON like {{\"valid_hours\": 72}}: {err}"
                ),
            })
        })?
    };
    let valid_for = body
        .valid_hours
        .map(|hours| chrono::Duration::hours(i64::from(hours)));
    let invitation = state.control.invite(id, valid_for).await?;
    Ok(HttpResponse::Created().json(serde_json::json!({
        "id": invitation.id,
        "channel_id": id.to_string(),
        "url": invitation.url,
        "expires_at": invitation.expires_at,
        "who_signs_in": "the mailbox's user, or a user with Full Access to the mailbox",
    })))
}

/// `DELETE /api/invitations/{id}`: the link stops working.
async fn revoke_invitation(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    state.control.revoke_invitation(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn poll(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let accepted = state.control.poll_now(channel_id(&id)?).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({
        "polling": accepted.id.to_string(),
        "poll_at": accepted.poll_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })))
}

/// `POST /api/channels/{id}/backfill` with `{"since": "YYYY-MM-DD" | RFC 3339}`.
#[derive(Debug, serde::Deserialize)]
struct BackfillIn {
    since: String,
}

async fn backfill(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<BackfillIn>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let id = channel_id(&id)?;
    let since = crate::control::parse_since(&body.since)?;
    let accepted = state.control.backfill(id, since).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({
        "backfill": accepted.id.to_string(),
        "since": accepted.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "start_at": accepted.start_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })))
}

/// Most quarantined messages one answer lists.
const QUARANTINE_API_MAX: usize = 10_000;

async fn quarantine(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let id = channel_id(&id)?;
    let entries = state.control.quarantine(id, QUARANTINE_API_MAX).await?;
    let messages: Vec<serde_json::Value> = entries
        .iter()
        .map(|entry| {
            serde_json::json!({
                "message_id": entry.message_id,
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

/// `GET /api/channels/{id}/events`: the channel's recent events, newest first.
async fn events(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let id = channel_id(&id)?;
    let events = state.control.events(id).await?;
    Ok(
        HttpResponse::Ok()
            .json(serde_json::json!({"channel_id": id.to_string(), "events": events})),
    )
}

async fn replay(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let released = state.control.replay(channel_id(&id)?).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"released": released})))
}
