//! The `/_sim/` control API (JSON): provision tenants, apps, users and mailboxes (one at a time or
//! in bulk with deterministic credentials), deliver mail, read a mailbox's state, inject faults,
//! revoke grants, move the simulator's clock, switch run-time settings, read or reset counters, switch
//! IMAP per mailbox, bump a folder's UIDVALIDITY, tell where IMAP listens, and introspect tokens
//! (RFC 7662, the simulator's own endpoint).
//!
//! By concern: [`directory`] (tenants, apps, users, grants, tokens, bulk provisioning), [`mail`]
//! (mailboxes and their messages), [`runtime`] (faults, counters, clock, settings).

use std::sync::Arc;

use actix_web::web::{self, Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::state::SimState;
use super::util;

type St = Data<Arc<SimState>>;

/// Mounts the control routes (inside the `/_sim` scope).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/tenants", web::post().to(directory::add_tenant))
        .route("/apps", web::post().to(directory::add_app))
        .route("/apps/{client_id}", web::patch().to(directory::update_app))
        .route("/apps/{client_id}", web::get().to(directory::get_app))
        .route(
            "/apps/{client_id}/credentials",
            web::post().to(directory::add_credential),
        )
        .route(
            "/apps/{client_id}/credentials/{label}",
            web::delete().to(directory::remove_credential),
        )
        .route("/users", web::post().to(directory::add_user))
        .route("/users/{upn}/grants", web::post().to(directory::grant))
        .route("/users/{upn}/revoke", web::post().to(directory::revoke))
        .route("/tokens", web::post().to(directory::mint_tokens))
        .route("/mailboxes", web::post().to(mail::add_mailbox))
        .route("/mailboxes/{addr}", web::get().to(mail::mailbox_state))
        .route("/mailboxes/{addr}/messages", web::post().to(mail::deliver))
        .route(
            "/mailboxes/{addr}/messages/{id}",
            web::delete().to(mail::delete_message),
        )
        .route(
            "/mailboxes/{addr}/messages/{id}",
            web::patch().to(mail::update_message),
        )
        .route(
            "/mailboxes/{addr}/expire_delta",
            web::post().to(mail::expire_delta),
        )
        .route("/mailboxes/{addr}/imap", web::put().to(mail::set_imap))
        .route(
            "/mailboxes/{addr}/folders/{folder}/uidvalidity",
            web::post().to(mail::bump_uid_validity),
        )
        .route("/imap", web::get().to(imap_addrs))
        .route(
            "/introspect",
            web::post().to(crate::sim::identity::introspect),
        )
        .route("/bulk", web::post().to(directory::bulk))
        .route("/faults", web::post().to(runtime::add_fault))
        .route("/faults", web::get().to(runtime::list_faults))
        .route("/faults", web::delete().to(runtime::clear_faults))
        .route("/faults/{id}", web::delete().to(runtime::clear_fault))
        .route("/counters", web::get().to(runtime::counters))
        .route("/counters", web::delete().to(runtime::reset_counters))
        .route("/clock", web::post().to(runtime::clock))
        .route("/settings", web::get().to(runtime::settings))
        .route("/settings", web::put().to(runtime::update_settings));
}

/// `GET /_sim/imap`: where the IMAP server listens.
async fn imap_addrs(state: St) -> HttpResponse {
    let a = state.imap.addrs();
    HttpResponse::Ok().json(json!({
        "plain": a.plain.map(|a| a.to_string()),
        "tls": a.tls.map(|a| a.to_string()),
    }))
}

fn err(status: u16, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    )
    .json(json!({"error": {"code": code, "message": message}}))
}

async fn parse<T: DeserializeOwned>(
    state: &SimState,
    req: &HttpRequest,
    payload: Payload,
) -> Result<T, HttpResponse> {
    let body = match util::read_body(req, payload, state.limits.control_max_body_bytes).await {
        Ok(b) => b,
        Err(e @ util::BodyError::TooLarge(_)) => {
            return Err(err(413, "RequestEntityTooLarge", &e.to_string()));
        }
        Err(e) => return Err(err(400, "BadRequest", &e.to_string())),
    };
    let raw: &[u8] = if body.is_empty() { b"{}" } else { &body };
    serde_json::from_slice(raw)
        .map_err(|e| err(400, "BadRequest", &format!("invalid JSON body: {e}")))
}

macro_rules! body {
    ($state:expr, $req:expr, $payload:expr) => {
        match parse(&$state, &$req, $payload).await {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

fn default_true() -> bool {
    true
}

// Declared after `body!` so the handlers can use it.
mod directory;
mod mail;
mod runtime;

pub use self::directory::bulk_entry;
