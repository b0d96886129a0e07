//! The HTTP surface, on actix-web: the admin API under `/api` (bearer admin token), the status page
//! (`/`, `/login`, `/ui/…`), the OAuth callback, `/healthz` and `/metrics`. Only this module knows actix-web.
//!
//! Handlers stay thin: they validate input into domain types, then either read the status board or
//! send a control message to the supervisor. No handler returns a secret.

pub mod admin;
mod auth;
pub mod callback;
pub mod dto;
pub mod error;
pub mod metrics;
pub mod pages;
pub mod status_page;

use std::sync::Arc;

use actix::Addr;
use actix_web::{HttpResponse, web};

use crate::actors::deps::Deps;
use crate::actors::supervisor::ChannelSupervisor;
use crate::domain::secret::AdminToken;
use crate::store::FirstImport;

pub use auth::AuthGuard;

/// What every handler can reach.
pub struct AppState {
    /// The supervisor, for control messages.
    pub supervisor: Addr<ChannelSupervisor>,
    /// What the actors share: the ingestion context (store, ledger, clients) and the status board.
    pub shared: Arc<Deps>,
    /// The admin token and the failed-attempt limiter.
    pub auth: AuthGuard,
    /// The redirect URI to register in Azure.
    pub redirect_uri: String,
    /// The OAuth callback path.
    pub callback_path: String,
    /// The first-import policy of channels that do not say.
    pub default_first_import: FirstImport,
    /// How long an authorization link stays valid.
    pub authorization_ttl: chrono::Duration,
    /// Above this many channels, per-channel metric series are left out.
    pub per_channel_metrics_max: u64,
}

impl AppState {
    /// Builds the state.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        supervisor: Addr<ChannelSupervisor>,
        shared: Arc<Deps>,
        admin_token: AdminToken,
        failures_per_min: std::num::NonZeroU32,
        redirect_uri: String,
        callback_path: String,
        default_first_import: FirstImport,
        per_channel_metrics_max: u64,
    ) -> Self {
        AppState {
            supervisor,
            shared,
            auth: AuthGuard::new(admin_token, failures_per_min),
            redirect_uri,
            callback_path,
            default_first_import,
            authorization_ttl: chrono::Duration::minutes(10),
            per_channel_metrics_max,
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
            .configure(status_page::routes)
            .service(admin::scope());
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok\n")
}
