//! `POST /_sim/introspect`: OAuth 2.0 token introspection (RFC 7662) of the simulator's access
//! tokens. This is the simulator's own endpoint, not Microsoft's (Entra ID has none): it lets a
//! resource server such as Dovecot (`passdb oauth2`, `introspection_mode = post`) validate the
//! tokens the simulator issues. Form body `token=…` (`token_type_hint` ignored). Client
//! authentication is optional; HTTP Basic credentials, when sent, must be a registered app's.
//! Answers `{"active": false}` for anything but an unexpired access token of this simulator.

use std::sync::Arc;

use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::token::basic_credentials;
use crate::sim::imap::auth;
use crate::sim::state::{GRAPH_RESOURCE, SimState};
use crate::sim::util;

/// The introspection endpoint.
pub async fn introspect(
    state: Data<Arc<SimState>>,
    req: HttpRequest,
    payload: Payload,
) -> HttpResponse {
    let unauthorized = || {
        HttpResponse::Unauthorized()
            .insert_header(("WWW-Authenticate", "Basic realm=\"inboxd sim introspection\""))
            .json(json!({"error": "invalid_client", "error_description": "The client credentials are not those of a registered app."}))
    };
    match basic_credentials(&req) {
        None => {}
        Some(Err(())) => return unauthorized(),
        Some(Ok((id, secret))) => {
            let ok = state.apps.get(&id.to_ascii_lowercase()).is_some_and(|a| {
                bool::from(subtle::ConstantTimeEq::ct_eq(
                    a.secret.as_bytes(),
                    secret.as_bytes(),
                ))
            });
            if !ok {
                return unauthorized();
            }
        }
    }
    let body = match util::read_body(&req, payload, state.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            return HttpResponse::BadRequest()
                .json(json!({"error": "invalid_request", "error_description": e.to_string()}));
        }
    };
    let form = util::form_pairs(&body);
    let Some(token) = util::get(&form, "token") else {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_request", "error_description": "The request body must contain the parameter 'token'."}));
    };
    let Ok(claims) = auth::active_token(&state, token) else {
        return HttpResponse::Ok().json(json!({"active": false}));
    };
    let scope: Vec<String> = claims
        .scp
        .split_whitespace()
        .map(|s| {
            if s.contains("://") {
                s.to_owned()
            } else {
                format!("{GRAPH_RESOURCE}{s}")
            }
        })
        .collect();
    let sub = state
        .users
        .get(&claims.upn)
        .map(|u| u.object_id.clone())
        .unwrap_or_default();
    HttpResponse::Ok().json(json!({
        "active": true,
        "scope": scope.join(" "),
        "client_id": claims.cid,
        "username": claims.upn,
        "token_type": "Bearer",
        "exp": claims.exp / 1000,
        "iat": claims.iat / 1000,
        "sub": sub,
        "aud": claims.audience(),
        "tid": claims.tid,
    }))
}
