//! The admin API's apps: `GET/POST /api/apps`, `GET/DELETE /api/apps/{tenant}/{client}` and
//! `PUT /api/apps/{tenant}/{client}/credential` (the rotation, one call for every channel of the
//! app). Each handler checks the bearer token, calls [`crate::control`] and maps its answer; no
//! answer carries a secret or a private key.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::control::{AppKey, CredentialInput, NewApp, parse_app_id};
use crate::http::AppState;
use crate::http::dto::{AppIn, AppOut, CredentialIn, ErrorBody, RotatedOut};
use crate::http::error::ApiError;

fn key(path: &(String, String)) -> Result<AppKey, ApiError> {
    Ok(parse_app_id(&path.0, &path.1)?)
}

/// Lists every app with its credential's kind and expiry and how many channels use it.
#[utoipa::path(
    get,
    path = "/api/apps",
    tag = "apps",
    operation_id = "list_apps",
    responses(
        (status = 200, description = "Every app, sorted by id.", body = Vec<AppOut>),
    )
)]
pub(crate) async fn list_apps(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let apps = state.control.list_apps()?;
    let out: Vec<AppOut> = apps.iter().map(AppOut::from).collect();
    Ok(HttpResponse::Ok().json(out))
}

/// Records an app with its credential (a client secret, or a certificate with its private key).
#[utoipa::path(
    post,
    path = "/api/apps",
    tag = "apps",
    operation_id = "add_app",
    request_body = AppIn,
    responses(
        (status = 201, description = "The app was recorded.", body = AppOut,
            headers(("Location" = String, description = "The app's URL, `/api/apps/{tenant}/{client}`."))),
        (status = 400, description = "A field is not valid (the code names it: `invalid_client_certificate`, `missing_credential`, `ambiguous_credential`, …), or the body is not JSON.", body = ErrorBody),
        (status = 409, description = "The app is recorded already: rotate its credential instead.", body = ErrorBody),
        (status = 413, description = "The body is larger than `server.max_body_bytes`.", body = ErrorBody),
    )
)]
pub(crate) async fn add_app(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<AppIn>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let view = state.control.add_app(NewApp::from(body.into_inner()))?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/apps/{}", view.id())))
        .json(AppOut::from(&view)))
}

/// One app.
#[utoipa::path(
    get,
    path = "/api/apps/{tenant}/{client}",
    tag = "apps",
    operation_id = "show_app",
    params(
        ("tenant" = String, Path, description = "The app's directory (tenant) id.", example = "contoso.onmicrosoft.com"),
        ("client" = String, Path, format = "uuid", description = "The app's application (client) id.", example = "0a1b2c3d-4e5f-4061-8273-9485a6b7c8d9"),
    ),
    responses(
        (status = 200, description = "The app.", body = AppOut),
        (status = 400, description = "The tenant or client id is not valid.", body = ErrorBody),
        (status = 404, description = "No app is recorded under this id.", body = ErrorBody),
    )
)]
pub(crate) async fn show_app(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let view = state.control.app(&key(&path)?)?;
    Ok(HttpResponse::Ok().json(AppOut::from(&view)))
}

/// Replaces the app's credential: durable before the answer, used by every channel of the app
/// from its next token request on; channels blocked by the old credential try again at once. Only
/// `client_secret_expires_at` notes a new expiry of the current secret.
#[utoipa::path(
    put,
    path = "/api/apps/{tenant}/{client}/credential",
    tag = "apps",
    operation_id = "rotate_app_credential",
    params(
        ("tenant" = String, Path, description = "The app's directory (tenant) id.", example = "contoso.onmicrosoft.com"),
        ("client" = String, Path, format = "uuid", description = "The app's application (client) id.", example = "0a1b2c3d-4e5f-4061-8273-9485a6b7c8d9"),
    ),
    request_body = CredentialIn,
    responses(
        (status = 200, description = "The new credential is stored; `retried` channels try again now.", body = RotatedOut),
        (status = 400, description = "A field is not valid (`invalid_client_certificate`, `ambiguous_credential`, `invalid_date`, …).", body = ErrorBody),
        (status = 404, description = "No app is recorded under this id.", body = ErrorBody),
        (status = 413, description = "The body is larger than `server.max_body_bytes`.", body = ErrorBody),
    )
)]
pub(crate) async fn rotate_app(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<CredentialIn>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    let rotated = state
        .control
        .rotate_app(&key(&path)?, CredentialInput::from(body.into_inner()))
        .await?;
    Ok(HttpResponse::Ok().json(RotatedOut {
        app: AppOut::from(&rotated.app),
        retried: rotated.retried,
    }))
}

/// Removes an app that no channel uses.
#[utoipa::path(
    delete,
    path = "/api/apps/{tenant}/{client}",
    tag = "apps",
    operation_id = "remove_app",
    params(
        ("tenant" = String, Path, description = "The app's directory (tenant) id.", example = "contoso.onmicrosoft.com"),
        ("client" = String, Path, format = "uuid", description = "The app's application (client) id.", example = "0a1b2c3d-4e5f-4061-8273-9485a6b7c8d9"),
    ),
    responses(
        (status = 204, description = "The app was removed."),
        (status = 400, description = "The tenant or client id is not valid.", body = ErrorBody),
        (status = 404, description = "No app is recorded under this id.", body = ErrorBody),
        (status = 409, description = "Channels still use the app.", body = ErrorBody),
    )
)]
pub(crate) async fn remove_app(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check_bearer(&req)?;
    state.control.remove_app(&key(&path)?)?;
    Ok(HttpResponse::NoContent().finish())
}
