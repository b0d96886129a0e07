//! The HTTP surface, on actix-web: the admin API under `/api` (bearer admin token only), the
//! status page (`/`, `/login`, `/ui/…`, with sessions), the OAuth callback, `/healthz` and
//! `/metrics`; the admin API's OpenAPI document at `/api/openapi.json`. Only this module knows actix-web.
//!
//! This layer is only a front end: handlers check the caller, turn the request into a control
//! input, call one operation of [`crate::control`] (the authorization service included) and map
//! its typed answer or [`crate::control::Error`] to JSON or to a page. It reads the status board
//! ([`crate::status`]) and imports neither the store nor the actors (a tidy test holds it to
//! that). No handler returns a secret.

pub mod admin;
pub mod apps;
pub mod auth;
pub mod callback;
pub mod dto;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod session;

use actix_web::{HttpResponse, web};

use crate::config::ServerSettings;
use crate::control::Control;
use crate::domain::secret::AdminToken;

pub use auth::AuthGuard;
use session::{SessionPolicy, Sessions};

/// What every handler can reach.
pub struct AppState {
    /// The control operations (and, through them, the status board).
    pub control: Control,
    /// The admin token and the failed-attempt limiter.
    pub auth: AuthGuard,
    /// The status page's sessions.
    pub sessions: Sessions,
    /// The OAuth callback path.
    pub callback_path: String,
    /// Above this many channels, per-channel metric series are left out.
    pub per_channel_metrics_max: u64,
    /// Whether per-channel metric series carry the `mailbox` label.
    pub metrics_mailbox_label: bool,
}

impl AppState {
    /// Builds the state over the control layer, from `[server]`.
    pub fn new(control: Control, admin_token: &AdminToken, server: &ServerSettings) -> Self {
        AppState {
            control,
            auth: AuthGuard::new(admin_token, server.admin_login_failures_per_min),
            sessions: Sessions::new(SessionPolicy::of(server)),
            callback_path: server.callback_path.clone(),
            per_channel_metrics_max: server.per_channel_metrics_max,
            metrics_mailbox_label: server.metrics_mailbox_label,
        }
    }
}

/// Registers every route.
pub fn configure(
    state: web::Data<AppState>,
    max_body_bytes: usize,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        let callback_path = state.callback_path.clone();
        cfg.app_data(state)
            .app_data(
                web::JsonConfig::default()
                    .limit(max_body_bytes)
                    .error_handler(admin::json_error),
            )
            .app_data(web::PayloadConfig::new(max_body_bytes))
            .app_data(web::QueryConfig::default().error_handler(admin::query_error))
            .route("/healthz", web::get().to(healthz))
            .route("/metrics", web::get().to(metrics::render))
            .route(&callback_path, web::get().to(callback::callback))
            .route(
                &format!("{}{{token}}", crate::control::invitations::INVITATION_PATH),
                web::get().to(callback::invitation),
            )
            .configure(page::routes)
            .service(admin::scope());
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok\n")
}
