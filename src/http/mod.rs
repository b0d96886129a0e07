//! The HTTP surface, on actix-web: the admin API under `/api` (bearer admin token only), the
//! status page (`/`, `/login`, `/ui/…`, with sessions), the OAuth callback, `/healthz` and
//! `/metrics`. Only this module knows actix-web.
//!
//! Handlers stay thin: they validate input, call one control operation of [`ops`] (or the
//! authorization service, [`authorization`]) and map its typed answer to JSON or to a page.
//! No handler returns a secret.

pub mod admin;
pub mod auth;
pub mod authorization;
pub mod callback;
pub mod dto;
pub mod error;
pub mod metrics;
pub mod ops;
pub mod page;
pub mod session;

use std::sync::Arc;

use actix::Addr;
use actix_web::{HttpResponse, web};

use crate::actors::deps::Deps;
use crate::actors::supervisor::ChannelSupervisor;
use crate::config::ServerSettings;
use crate::domain::secret::AdminToken;
use crate::store::FirstImport;

pub use auth::AuthGuard;
use session::{SessionPolicy, Sessions};

/// What every handler can reach.
pub struct AppState {
    /// The supervisor, for control messages.
    pub supervisor: Addr<ChannelSupervisor>,
    /// What the actors share: the ingestion context (store, ledger, clients) and the status board.
    pub shared: Arc<Deps>,
    /// The admin token and the failed-attempt limiter.
    pub auth: AuthGuard,
    /// The status page's sessions.
    pub sessions: Sessions,
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
    /// Builds the state from `[server]`.
    pub fn new(
        supervisor: Addr<ChannelSupervisor>,
        shared: Arc<Deps>,
        admin_token: &AdminToken,
        server: &ServerSettings,
        default_first_import: FirstImport,
    ) -> Self {
        AppState {
            supervisor,
            shared,
            auth: AuthGuard::new(admin_token, server.admin_login_failures_per_min),
            sessions: Sessions::new(SessionPolicy::of(server)),
            redirect_uri: server.redirect_uri(),
            callback_path: server.callback_path.clone(),
            default_first_import,
            authorization_ttl: chrono::Duration::minutes(10),
            per_channel_metrics_max: server.per_channel_metrics_max,
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
            .configure(page::routes)
            .service(admin::scope());
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok\n")
}
