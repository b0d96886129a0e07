//! The admin API: channels under `/api/channels`, behind the admin token (the bearer token only:
//! a status page cookie is not accepted here). Each handler checks the token, calls one operation
//! of [`crate::control`] and maps its answer to JSON. Each handler carries its `#[utoipa::path]`:
//! the OpenAPI document ([`crate::http::openapi`]) is generated from them, and [`ROUTES`] is the
//! one list the scope registers and a test holds the document to.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::control::{ChannelPatch, Filter, NewChannel, parse_channel_id};
use crate::domain::ChannelId;
use crate::http::AppState;
use crate::http::dto::{
    AuthorizationOut, BackfillIn, BackfillOut, ChannelIn, ChannelListOut, ChannelOut,
    ChannelPatchIn, ErrorBody, EventOut, EventsOut, InvitationOut, InviteIn, PollOut,
    QuarantineOut, QuarantinedOut, ReplayOut,
};
use crate::http::error::ApiError;
use crate::status::ChannelView;

/// Declares the routes once: [`ROUTES`] lists them and `register` adds exactly them to the scope.
macro_rules! admin_routes {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        /// Every route of the admin API: its method and its path under `/api`. The scope registers
        /// exactly these, and a test holds the OpenAPI document to the same list, so a route cannot
        /// be added without its reference.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn register(scope: actix_web::Scope) -> actix_web::Scope {
            scope$(.route($path, web::$method().to($handler)))*
        }
    };
}

admin_routes! {
    get "/openapi.json" => crate::http::openapi::serve,
    get "/channels" => list,
    post "/channels" => add,
    get "/channels/{id}" => show,
    patch "/channels/{id}" => update,
    delete "/channels/{id}" => remove,
    post "/channels/{id}/authorize" => authorize,
    post "/channels/{id}/poll" => poll,
    post "/channels/{id}/backfill" => backfill,
    post "/channels/{id}/enable" => enable,
    post "/channels/{id}/disable" => disable,
    get "/channels/{id}/quarantine" => quarantine,
    post "/channels/{id}/quarantine/replay" => replay,
    get "/channels/{id}/events" => events,
    post "/channels/{id}/invitations" => invite,
    delete "/invitations/{id}" => revoke_invitation,
    get "/apps" => crate::http::apps::list_apps,
    post "/apps" => crate::http::apps::add_app,
    get "/apps/{tenant}/{client}" => crate::http::apps::show_app,
    put "/apps/{tenant}/{client}/credential" => crate::http::apps::rotate_app,
    delete "/apps/{tenant}/{client}" => crate::http::apps::remove_app,
}

/// The `/api` scope.
pub fn scope() -> actix_web::Scope {
    register(web::scope("/api"))
        .app_data(web::PathConfig::default().error_handler(path_error))
        .default_service(web::to(not_found))
}

/// A path segment that could not be read (e.g. not UTF-8 once percent-decoded): 400 in the API's
/// error shape, not actix's plain-text 404.
fn path_error(err: actix_web::error::PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad(
        "invalid_path",
        format!(
            "the path is not valid: {err}; channel ids are UUIDs as `GET /api/channels` lists them"
        ),
    )
    .into()
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
        let body = ErrorBody::new("body_too_large", api.to_string());
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
    ChannelOut::from_view(
        view,
        state.control.redirect_uri(),
        state.control.quarantine_count(view.id),
    )
}

/// The channel id of a path.
fn channel_id(raw: &str) -> Result<ChannelId, ApiError> {
    Ok(parse_channel_id(raw)?)
}

/// Query of `GET /api/channels`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this status.
    #[param(value_type = Option<crate::http::dto::StatusName>)]
    pub status: Option<String>,
    /// A search in name, mailbox, tenant and id.
    #[param(example = "contoso")]
    pub q: Option<String>,
    /// Skip this many.
    #[param(minimum = 0, example = 0)]
    pub offset: Option<usize>,
    /// At most this many (default 100, at most 1000).
    #[param(minimum = 0, example = 100)]
    pub limit: Option<usize>,
}

/// The channels, a page at a time.
///
/// Sorted by name, then id; `total` counts every channel that matches.
#[utoipa::path(
    get,
    path = "/api/channels",
    tag = "channels",
    operation_id = "list_channels",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of the channels that match.", body = ChannelListOut),
        (status = 400, description = "A query parameter is not valid (`invalid_status`, `invalid_query`).", body = ErrorBody),
    )
)]
pub(crate) async fn list(
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
    Ok(HttpResponse::Ok().json(ChannelListOut {
        channels,
        total: listing.total,
        offset,
        limit,
    }))
}

/// Adds a channel (a mailbox to ingest); it waits for its authorization.
///
/// The client secret is sealed at rest and never shown again. Next: `POST
/// /api/channels/{id}/authorize` for the sign-in link.
#[utoipa::path(
    post,
    path = "/api/channels",
    tag = "channels",
    operation_id = "add_channel",
    request_body = ChannelIn,
    responses(
        (status = 201, description = "The channel was added.", body = ChannelOut,
            headers(("Location" = String, description = "The channel's URL, `/api/channels/{id}`."))),
        (status = 400, description = "A field is not valid (the code names it, e.g. `invalid_mailbox`), or the body is not JSON.", body = ErrorBody),
        (status = 409, description = "Another channel already ingests this mailbox folder with this app.", body = ErrorBody),
        (status = 413, description = "The body is larger than `server.max_body_bytes`.", body = ErrorBody),
    )
)]
pub(crate) async fn add(
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

/// One channel: its status, last error and remedy, schedule and secret expiry.
#[utoipa::path(
    get,
    path = "/api/channels/{id}",
    tag = "channels",
    operation_id = "show_channel",
    params(("id" = String, Path, format = "uuid", description = "The channel's id, as `GET /api/channels` lists it.", example = "6a8e2f3c-1b4d-4e5f-8a9b-0c1d2e3f4a5b")),
    responses(
        (status = 200, description = "The channel.", body = ChannelOut),
        (status = 400, description = "The id is not a channel id (a UUID).", body = ErrorBody),
        (status = 404, description = "No channel has this id.", body = ErrorBody),
    )
)]
pub(crate) async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let view = state.control.get(channel_id(&id)?)?;
    Ok(HttpResponse::Ok().json(out(&state, &view)))
}

/// Changes a channel's settings; only the fields sent change.
///
/// A new tenant, app or mailbox needs a new authorization; a new secret does not.
#[utoipa::path(
    patch,
    path = "/api/channels/{id}",
    tag = "channels",
    operation_id = "update_channel",
    params(("id" = String, Path, format = "uuid", description = "The channel's id, as `GET /api/channels` lists it.", example = "6a8e2f3c-1b4d-4e5f-8a9b-0c1d2e3f4a5b")),
    request_body = ChannelPatchIn,
    responses(
        (status = 200, description = "The channel as it is now.", body = ChannelOut),
        (status = 409, description = "Another channel already ingests the new mailbox folder with this app.", body = ErrorBody),
        (status = 413, description = "The body is larger than `server.max_body_bytes`.", body = ErrorBody),
        (status = 400, description = "The id or a field is not valid (the code names it), or the body is not JSON.", body = ErrorBody),
        (status = 404, description = "No channel has this id.", body = ErrorBody),
    )
)]
pub(crate) async fn update(
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

/// Removes a channel: its tokens and state are deleted; mail already delivered stays where it is.
#[utoipa::path(
    delete,
    path = "/api/channels/{id}",
    tag = "channels",
    operation_id = "remove_channel",
    params(("id" = String, Path, format = "uuid", description = "The channel's id, as `GET /api/channels` lists it.", example = "6a8e2f3c-1b4d-4e5f-8a9b-0c1d2e3f4a5b")),
    responses(
        (status = 204, description = "The channel was removed."),
        (status = 400, description = "The id is not a channel id (a UUID).", body = ErrorBody),
        (status = 404, description = "No channel has this id.", body = ErrorBody),
    )
)]
pub(crate) async fn remove(
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

/// Switches a channel on: it polls again on schedule.
#[utoipa::path(
    post,
    path = "/api/channels/{id}/enable",
    tag = "channels",
    operation_id = "enable_channel",
    params(("id" = String, Path, format = "uuid", description = "The channel's id, as `GET /api/channels` lists it.", example = "6a8e2f3c-1b4d-4e5f-8a9b-0c1d2e3f4a5b")),
    responses(
        (status = 200, description = "The channel as it is now.", body = ChannelOut),
        (status = 400, description = "The id is not a channel id (a UUID).", body = ErrorBody),
        (status = 404, description = "No channel has this id.", body = ErrorBody),
    )
)]
pub(crate) async fn enable(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(req, state, &id, true).await
}

/// Switches a channel off: nothing is polled until it is enabled; its authorization is kept.
#[utoipa::path(
    post,
    path = "/api/channels/{id}/disable",
    tag = "channels",
    operation_id = "disable_channel",
    params(("id" = String, Path, format = "uuid", description = "The channel's id, as `GET /api/channels` lists it.", example = "6a8e2f3c-1b4d-4e5f-8a9b-0c1d2e3f4a5b")),
    responses(
        (status = 200, description = "The channel as it is now.", body = ChannelOut),
        (status = 400, description = "The id is not a channel id (a UUID).", body = ErrorBody),
        (status = 404, description = "No channel has this id.", body = ErrorBody),
    )
)]
pub(crate) async fn disable(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(req, state, &id, false).await
}

/// A sign-in link for the channel: the mailbox's user (or a user with Full Access to it) opens it
/// once; Microsoft then redirects to inboxd's callback and the channel becomes active.
#[utoipa::path(
    post,
    path = "/api/channels/{id}/authorize",
    tag = "channels",
    operation_id = "authorize_channel",
    params(("id" = String, Path, format = "uuid", description = "The channel's id, as `GET /api/channels` lists it.", example = "6a8e2f3c-1b4d-4e5f-8a9b-0c1d2e3f4a5b")),
    responses(
        (status = 200, description = "The sign-in link.", body = AuthorizationOut),
        (status = 400, description = "The id is not a channel id (a UUID).", body = ErrorBody),
        (status = 404, description = "No channel has this id.", body = ErrorBody),
    )
)]
pub(crate) async fn authorize(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let link = state.control.authorize(channel_id(&id)?).await?;
    Ok(HttpResponse::Ok().json(AuthorizationOut {
        authorization_url: link.url,
        redirect_uri: state.control.redirect_uri().to_owned(),
        expires_at: link.expires_at,
    }))
}

/// Makes a sign-in link to send to the mailbox's user (or a user with Full Access to it): valid for
/// days, works once, revocable.
#[utoipa::path(
    post,
    path = "/api/channels/{id}/invitations",
    tag = "channels",
    operation_id = "invite",
    params(("id" = String, Path, format = "uuid", description = "The channel's id, as `GET /api/channels` lists it.", example = "6a8e2f3c-1b4d-4e5f-8a9b-0c1d2e3f4a5b")),
    request_body(content = Option<InviteIn>, description = "Optional: how long the link stays valid.", content_type = "application/json"),
    responses(
        (status = 201, description = "The link (shown once).", body = InvitationOut),
        (status = 400, description = "The id is not a channel id, the body is not JSON of this shape, or `valid_hours` is out of range (`invalid_validity`, naming the limit).", body = ErrorBody),
        (status = 404, description = "No channel has this id.", body = ErrorBody),
    )
)]
pub(crate) async fn invite(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let id = channel_id(&id)?;
    let body: InviteIn = if body.iter().all(u8::is_ascii_whitespace) {
        InviteIn::default()
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
    Ok(HttpResponse::Created().json(InvitationOut {
        id: invitation.id,
        channel_id: id.to_string(),
        url: invitation.url,
        expires_at: invitation.expires_at,
        who_signs_in: "the mailbox's user, or a user with Full Access to the mailbox".to_owned(),
    }))
}

/// Revokes a sign-in link: it stops working.
#[utoipa::path(
    delete,
    path = "/api/invitations/{id}",
    tag = "channels",
    operation_id = "revoke_invitation",
    params(("id" = String, Path, description = "The invitation's id (64 hex digits), as its creation answered.", example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 404, description = "No usable invitation has this id (none, used, or revoked already).", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_invitation(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    state.control.revoke_invitation(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Polls a channel now (or as soon as Microsoft's `Retry-After` for the mailbox allows).
#[utoipa::path(
    post,
    path = "/api/channels/{id}/poll",
    tag = "channels",
    operation_id = "poll_channel",
    params(("id" = String, Path, format = "uuid", description = "The channel's id, as `GET /api/channels` lists it.", example = "6a8e2f3c-1b4d-4e5f-8a9b-0c1d2e3f4a5b")),
    responses(
        (status = 202, description = "The poll was queued.", body = PollOut),
        (status = 400, description = "The id is not a channel id (a UUID), or the channel is disabled (`invalid_request`: enable it first).", body = ErrorBody),
        (status = 404, description = "No channel has this id.", body = ErrorBody),
    )
)]
pub(crate) async fn poll(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let accepted = state.control.poll_now(channel_id(&id)?).await?;
    Ok(HttpResponse::Accepted().json(PollOut {
        polling: accepted.id.to_string(),
        poll_at: accepted
            .poll_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }))
}

/// Looks at a channel's mail again from a date: mail not yet delivered is delivered, once.
#[utoipa::path(
    post,
    path = "/api/channels/{id}/backfill",
    tag = "channels",
    operation_id = "backfill_channel",
    params(("id" = String, Path, format = "uuid", description = "The channel's id, as `GET /api/channels` lists it.", example = "6a8e2f3c-1b4d-4e5f-8a9b-0c1d2e3f4a5b")),
    request_body = BackfillIn,
    responses(
        (status = 202, description = "The backfill was queued.", body = BackfillOut),
        (status = 413, description = "The body is larger than `server.max_body_bytes`.", body = ErrorBody),
        (status = 400, description = "The id or `since` is not valid (`since` in the future too), the channel is disabled (`invalid_request`: enable it first), or the body is not JSON.", body = ErrorBody),
        (status = 404, description = "No channel has this id.", body = ErrorBody),
    )
)]
pub(crate) async fn backfill(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<BackfillIn>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let id = channel_id(&id)?;
    let since = crate::control::parse_since(&body.since)?;
    let accepted = state.control.backfill(id, since).await?;
    Ok(HttpResponse::Accepted().json(BackfillOut {
        backfill: accepted.id.to_string(),
        since: accepted
            .since
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        start_at: accepted
            .start_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }))
}

/// Most quarantined messages one answer lists.
const QUARANTINE_API_MAX: usize = 10_000;

/// The channel's quarantined messages: mail the sink refused too often, kept aside (at most
/// 10,000 listed).
#[utoipa::path(
    get,
    path = "/api/channels/{id}/quarantine",
    tag = "channels",
    operation_id = "list_quarantine",
    params(("id" = String, Path, format = "uuid", description = "The channel's id, as `GET /api/channels` lists it.", example = "6a8e2f3c-1b4d-4e5f-8a9b-0c1d2e3f4a5b")),
    responses(
        (status = 200, description = "The quarantined messages.", body = QuarantineOut),
        (status = 400, description = "The id is not a channel id (a UUID).", body = ErrorBody),
        (status = 404, description = "No channel has this id.", body = ErrorBody),
    )
)]
pub(crate) async fn quarantine(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let id = channel_id(&id)?;
    let entries = state.control.quarantine(id, QUARANTINE_API_MAX).await?;
    let messages: Vec<QuarantinedOut> = entries
        .into_iter()
        .map(|entry| QuarantinedOut {
            message_id: entry.message_id,
            failures: entry.failures,
            last_error: entry.last_error,
            first_seen_at: entry.first_seen_at,
            updated_at: entry.updated_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(QuarantineOut {
        channel_id: id.to_string(),
        messages,
    }))
}

/// The channel's recent events (status changes, failed and completed sign-ins), newest first.
#[utoipa::path(
    get,
    path = "/api/channels/{id}/events",
    tag = "channels",
    operation_id = "list_events",
    params(("id" = String, Path, format = "uuid", description = "The channel's id, as `GET /api/channels` lists it.", example = "6a8e2f3c-1b4d-4e5f-8a9b-0c1d2e3f4a5b")),
    responses(
        (status = 200, description = "The events, newest first.", body = EventsOut),
        (status = 400, description = "The id is not a channel id (a UUID).", body = ErrorBody),
        (status = 404, description = "No channel has this id.", body = ErrorBody),
    )
)]
pub(crate) async fn events(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let id = channel_id(&id)?;
    let events = state.control.events(id).await?;
    Ok(HttpResponse::Ok().json(EventsOut {
        channel_id: id.to_string(),
        events: events.into_iter().map(EventOut::from).collect(),
    }))
}

/// Releases every quarantined message of the channel for delivery again.
#[utoipa::path(
    post,
    path = "/api/channels/{id}/quarantine/replay",
    tag = "channels",
    operation_id = "replay_quarantine",
    params(("id" = String, Path, format = "uuid", description = "The channel's id, as `GET /api/channels` lists it.", example = "6a8e2f3c-1b4d-4e5f-8a9b-0c1d2e3f4a5b")),
    responses(
        (status = 200, description = "How many were released.", body = ReplayOut),
        (status = 400, description = "The id is not a channel id (a UUID).", body = ErrorBody),
        (status = 404, description = "No channel has this id.", body = ErrorBody),
    )
)]
pub(crate) async fn replay(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let released = state.control.replay(channel_id(&id)?).await?;
    Ok(HttpResponse::Ok().json(ReplayOut { released }))
}
