//! `GET /{tenant}/v2.0/.well-known/openid-configuration`: OpenID metadata whose endpoints are on the
//! simulator's own origin.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse};

use super::errors::error_response;
use super::resolve;
use crate::sim::counters::Endpoint;
use crate::sim::state::SimState;
use crate::sim::util;

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
pub async fn openid_configuration(
    state: Data<Arc<SimState>>,
    req: HttpRequest,
    tenant: Path<String>,
) -> HttpResponse {
    state.counters.hit(Endpoint::OpenidConfiguration, None);
    let (tid, alias) = match resolve(&state, &tenant) {
        Ok(t) => t,
        Err(mut e) => {
            e.error = "invalid_tenant".into();
            return error_response(&state, &req, &e);
        }
    };
    let origin = util::origin(&req);
    let segment = tid.clone().unwrap_or_else(|| tenant.to_ascii_lowercase());
    let issuer_tenant = if alias {
        "{tenantid}".to_owned()
    } else {
        segment.clone()
    };
    let body = serde_json::json!({
        "token_endpoint": format!("{origin}/{segment}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{origin}/{segment}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{origin}/{issuer_tenant}/v2.0"),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{origin}/oidc/userinfo"),
        "authorization_endpoint": format!("{origin}/{segment}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{origin}/{segment}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{origin}/{segment}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": format!("{origin}/{segment}/kerberos"),
        "tenant_region_scope": "WW",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    });
    HttpResponse::Ok()
        .insert_header(("Access-Control-Allow-Origin", "*"))
        .insert_header((header::CACHE_CONTROL, "max-age=86400, private"))
        .json(body)
}
