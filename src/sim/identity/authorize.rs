//! `GET /{tenant}/oauth2/v2.0/authorize`: resolves the app and its redirect URI (an untrusted one
//! gets the error page), signs in `login_hint` or the tenant's first user, consents, and answers
//! with a code or an error on the redirect (`query`, `fragment` or `form_post`).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse};

use super::errors::{StsError, authorize_error_value, description, error_page};
use super::{random_token, resolve};
use crate::sim::counters::Endpoint;
use crate::sim::faults::{FaultKind, Target};
use crate::sim::state::{CodeGrant, SimState, new_guid, split_scopes};
use crate::sim::util;

/// Whether a requested redirect URI matches a registered one (§1.1: loopback ports ignored).
pub fn redirect_matches(registered: &str, requested: &str) -> bool {
    let (Ok(r), Ok(q)) = (url::Url::parse(registered), url::Url::parse(requested)) else {
        return false;
    };
    let loopback = |u: &url::Url| matches!(u.host_str(), Some("localhost") | Some("127.0.0.1"));
    if loopback(&r) && loopback(&q) {
        r.scheme() == q.scheme()
            && r.host_str() == q.host_str()
            && r.path() == q.path()
            && r.query() == q.query()
    } else {
        r == q
    }
}

/// `GET /{tenant}/oauth2/v2.0/authorize`: signs the user in and consents, then redirects.
pub async fn authorize(
    state: Data<Arc<SimState>>,
    req: HttpRequest,
    tenant: Path<String>,
) -> HttpResponse {
    state.counters.hit(Endpoint::Authorize, None);
    let q = util::form_pairs(req.query_string().as_bytes());
    let (tenant_id, _alias) = match resolve(&state, &tenant) {
        Ok(t) => t,
        Err(e) => return error_page(&state, &e),
    };
    let Some(client_id) = util::get(&q, "client_id").map(str::to_ascii_lowercase) else {
        return error_page(&state, &StsError::new(900144, &[("param", "client_id")]));
    };
    let app = match state.apps.get(&client_id) {
        Some(a) if tenant_id.as_ref().is_none_or(|t| *t == a.tenant_id) => a.clone(),
        _ => {
            let t = tenant_id.clone().unwrap_or_else(|| tenant.to_string());
            return error_page(
                &state,
                &StsError::new(700016, &[("client", &client_id), ("tenant", &t)]),
            );
        }
    };
    let tenant_id = tenant_id.unwrap_or_else(|| app.tenant_id.clone());
    let Some(redirect_uri) = util::get(&q, "redirect_uri").map(str::to_owned) else {
        return error_page(&state, &StsError::new(900144, &[("param", "redirect_uri")]));
    };
    if !app
        .redirect_uris
        .iter()
        .any(|r| redirect_matches(r, &redirect_uri))
    {
        return error_page(
            &state,
            &StsError::new(
                50011,
                &[("redirect", &redirect_uri), ("client", &client_id)],
            ),
        );
    }
    let Ok(mut target) = url::Url::parse(&redirect_uri) else {
        return error_page(
            &state,
            &StsError::new(
                50011,
                &[("redirect", &redirect_uri), ("client", &client_id)],
            ),
        );
    };
    let st = util::get(&q, "state").map(str::to_owned);
    let mode = util::get(&q, "response_mode").unwrap_or("query").to_owned();
    let fail = |e: StsError, error_value: Option<&str>| {
        let trace = new_guid();
        let ts = util::sts_timestamp(state.now());
        let mut params = vec![
            (
                "error".to_owned(),
                error_value
                    .unwrap_or(authorize_error_value(e.code))
                    .to_owned(),
            ),
            (
                "error_description".to_owned(),
                description(&e, &trace, &new_guid(), &ts),
            ),
            (
                "error_uri".to_owned(),
                format!("{}/error?code={}", util::origin(&req), e.code),
            ),
        ];
        if let Some(s) = &st {
            params.push(("state".to_owned(), s.clone()));
        }
        respond(&mut target.clone(), &mode, params)
    };

    let response_type = util::get(&q, "response_type").unwrap_or("");
    if !response_type.split_whitespace().any(|t| t == "code") {
        if response_type.is_empty() {
            return fail(StsError::new(900144, &[("param", "response_type")]), None);
        }
        return fail(
            StsError::new(700054, &[("response_type", response_type)]),
            None,
        );
    }
    let Some(scope) = util::get(&q, "scope").filter(|s| !s.trim().is_empty()) else {
        return fail(StsError::new(900144, &[("param", "scope")]), None);
    };
    let (graph, oidc, unknown) = split_scopes(scope);
    if let Some(bad) = unknown.first() {
        return fail(StsError::new(70011, &[("scope", bad)]), None);
    }
    if let Some(e) = super::more_than_one_resource(&graph, scope) {
        return fail(e, None);
    }
    let method = util::get(&q, "code_challenge_method")
        .unwrap_or("plain")
        .to_owned();
    let challenge = util::get(&q, "code_challenge").map(str::to_owned);
    if challenge.is_some() && method != "S256" && method != "plain" {
        return fail(StsError::new(9002313, &[]), Some("invalid_request"));
    }

    // Who signs in: login_hint, else the tenant's first user.
    let upn = match util::get(&q, "login_hint").map(str::to_ascii_lowercase) {
        Some(hint) => match state.users.get(&hint) {
            Some(u) if u.tenant_id == tenant_id => Some(hint),
            Some(_) => return fail(StsError::new(50020, &[]), None),
            None => return fail(StsError::new(50034, &[]), None),
        },
        None => state
            .tenants
            .get(&tenant_id)
            .and_then(|t| t.users.first().cloned()),
    };
    let Some(upn) = upn else {
        return fail(StsError::new(50034, &[]), None);
    };

    let verdict = state.faults.check(
        &Target {
            endpoint: Endpoint::Authorize,
            tenant: Some(&tenant_id),
            client_id: Some(&client_id),
            mailbox: Some(&upn),
            user: Some(&upn),
            in_batch: false,
        },
        state.now_ms(),
        |k| {
            matches!(
                k,
                FaultKind::Aadsts { .. }
                    | FaultKind::Latency { .. }
                    | FaultKind::Status { .. }
                    | FaultKind::Throttle { .. }
            )
        },
    );
    if verdict.latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(verdict.latency_ms)).await;
    }
    match verdict.fault {
        Some(FaultKind::Aadsts {
            code,
            error,
            description: desc,
            ..
        }) => {
            let mut e = StsError::new(code, &[("client", &client_id), ("tenant", &tenant_id)]);
            if let Some(d) = desc {
                e.message = d;
            }
            return fail(e, error.as_deref());
        }
        Some(FaultKind::Status { status, .. }) => {
            return HttpResponse::build(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            )
            .content_type("text/html")
            .body("<html><body>Service unavailable</body></html>");
        }
        Some(FaultKind::Throttle { retry_after }) => {
            let mut b = HttpResponse::TooManyRequests();
            if let Some(r) = retry_after {
                b.insert_header((header::RETRY_AFTER, util::retry_after_value(r)));
            }
            return b
                .content_type("text/html")
                .body("<html><body>Too many requests</body></html>");
        }
        _ => {}
    }

    // The user consents to what the app asked for; consent outlives this authorization.
    state.consent(&upn, &client_id, &graph);
    let code = format!("1.AQ{}", random_token(96));
    let mut scopes = graph;
    scopes.extend(oidc);
    state.purge_codes();
    state.codes.insert(
        code.clone(),
        CodeGrant {
            client_id: client_id.clone(),
            tenant_id,
            upn,
            redirect_uri: redirect_uri.clone(),
            scopes,
            code_challenge: challenge,
            code_challenge_method: method,
            nonce: util::get(&q, "nonce").map(str::to_owned),
            issued_ms: state.now_ms(),
            redeemed: false,
        },
    );
    let mut params = vec![("code".to_owned(), code)];
    if let Some(s) = &st {
        params.push(("state".to_owned(), s.clone()));
    }
    params.push(("session_state".to_owned(), new_guid()));
    respond(&mut target, &mode, params)
}

fn respond(target: &mut url::Url, mode: &str, params: Vec<(String, String)>) -> HttpResponse {
    match mode {
        "form_post" => {
            let inputs: String = params
                .iter()
                .map(|(k, v)| {
                    format!(
                        "<input type=\"hidden\" name=\"{}\" value=\"{}\" />",
                        html_escape(k),
                        html_escape(v)
                    )
                })
                .collect();
            HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
                "<html><head><title>Working...</title></head><body><form method=\"POST\" name=\"hiddenform\" action=\"{}\">{inputs}<noscript><p>Script is disabled. Click Submit to continue.</p><input type=\"submit\" value=\"Submit\" /></noscript></form><script language=\"javascript\">document.forms[0].submit();</script></body></html>",
                html_escape(target.as_str())
            ))
        }
        "fragment" => {
            let frag: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params.iter())
                .finish();
            target.set_fragment(Some(&frag));
            HttpResponse::Found()
                .insert_header((header::LOCATION, target.as_str().to_owned()))
                .finish()
        }
        _ => {
            target.query_pairs_mut().extend_pairs(params.iter());
            HttpResponse::Found()
                .insert_header((header::LOCATION, target.as_str().to_owned()))
                .finish()
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_ignore_the_port_others_match_exactly() {
        assert!(redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5555/cb"
        ));
        assert!(redirect_matches(
            "http://localhost:1234/MyApp",
            "http://localhost/MyApp"
        ));
        assert!(
            !redirect_matches("http://localhost/MyApp", "http://localhost/myapp"),
            "paths are case-sensitive"
        );
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "https://127.0.0.1/cb"
        ));
        assert!(redirect_matches(
            "https://app.example/cb",
            "https://app.example/cb"
        ));
        assert!(!redirect_matches(
            "https://app.example/cb",
            "https://app.example:8443/cb"
        ));
        assert!(redirect_matches(
            "http://localhost:7071",
            "http://localhost:7071/"
        ));
    }
}
