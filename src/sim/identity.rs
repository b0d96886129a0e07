//! The identity platform v2.0 endpoints: `/{tenant}/oauth2/v2.0/authorize`, `/{tenant}/oauth2/v2.0/token`
//! and `/{tenant}/v2.0/.well-known/openid-configuration`, with Microsoft's AADSTS error shapes.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::web::{Data, Path, Payload};
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::counters::{EarlyRequest, Endpoint};
use super::faults::{FaultKind, Target};
use super::grants::Spend;
use super::state::{CodeGrant, GRAPH_RESOURCE, SimState, new_guid, split_scopes};
use super::throttle::Throttle;
use super::util;

/// Tenant aliases accepted as Microsoft does.
const ALIASES: &[&str] = &["common", "organizations", "consumers"];

/// Refresh tokens unused for this long expire (AADSTS700082).
const RT_INACTIVITY_MS: i64 = 90 * 24 * 3600 * 1000;

/// The `error` value, HTTP status and message of an AADSTS code.
pub fn aadsts_info(code: u32) -> (&'static str, u16, &'static str) {
    match code {
        53003 => (
            "invalid_grant",
            400,
            "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
        ),
        530003 => (
            "invalid_grant",
            400,
            "Your device is required to be managed to access this resource.",
        ),
        50076 => (
            "invalid_grant",
            400,
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '00000003-0000-0000-c000-000000000000'.",
        ),
        50079 => (
            "invalid_grant",
            400,
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication to access '00000003-0000-0000-c000-000000000000'.",
        ),
        50058 => (
            "invalid_grant",
            400,
            "A silent sign-in request was sent but no user is signed in.",
        ),
        65001 => (
            "invalid_grant",
            400,
            "The user or administrator has not consented to use the application with ID '{client}' named '{name}'. Send an interactive authorization request for this user and resource.",
        ),
        65004 => (
            "access_denied",
            400,
            "User declined to consent to access the app.",
        ),
        70000 => (
            "invalid_grant",
            400,
            "The provided value for the input parameter 'refresh_token' or 'assertion' is not valid.",
        ),
        70008 => (
            "invalid_grant",
            400,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
        ),
        700082 => (
            "invalid_grant",
            400,
            "The refresh token has expired due to inactivity. The token was issued on {issued} and was inactive for 90.00:00:00.",
        ),
        700084 => (
            "invalid_grant",
            400,
            "The refresh token was issued to a single page app (SPA), and therefore has a fixed, limited lifetime of 1.00:00:00, which cannot be extended.",
        ),
        70043 => (
            "invalid_grant",
            400,
            "The refresh token has expired or is invalid due to sign-in frequency checks by conditional access.",
        ),
        50173 => (
            "invalid_grant",
            400,
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '{issued}' and the TokensValidFrom date (before which tokens are not valid) for this user is '{valid}'.",
        ),
        7000215 => (
            "invalid_client",
            401,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client}'.",
        ),
        7000222 => (
            "invalid_client",
            401,
            "The provided client secret keys for app '{client}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
        ),
        7000218 => (
            "invalid_client",
            401,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ),
        700025 => (
            "invalid_client",
            401,
            "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
        ),
        700016 => (
            "unauthorized_client",
            400,
            "Application with identifier '{client}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
        ),
        90002 => (
            "invalid_request",
            400,
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.",
        ),
        54005 => (
            "invalid_grant",
            400,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
        ),
        501481 => (
            "invalid_grant",
            400,
            "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
        ),
        50011 => (
            "invalid_request",
            400,
            "The redirect URI '{redirect}' specified in the request does not match the redirect URIs configured for the application '{client}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this.",
        ),
        500112 => (
            "invalid_grant",
            400,
            "The reply address '{redirect}' does not match the reply address provided when requesting Authorization code.",
        ),
        700005 => (
            "invalid_grant",
            400,
            "Provided Authorization Code is intended to use against other tenant, thus rejected.",
        ),
        9002313 => (
            "invalid_grant",
            400,
            "Invalid request. Request is malformed or invalid.",
        ),
        900144 => (
            "invalid_request",
            400,
            "The request body must contain the following parameter: '{param}'.",
        ),
        70003 => (
            "unsupported_grant_type",
            400,
            "The app requested an unsupported grant type '{grant}'.",
        ),
        70011 => (
            "invalid_scope",
            400,
            "The provided value for the input parameter 'scope' is not valid. The scope '{scope}' does not exist.",
        ),
        700054 => (
            "unsupported_response_type",
            400,
            "response_type '{response_type}' is not enabled for the application.",
        ),
        50020 => (
            "invalid_request",
            400,
            "User account from identity provider does not exist in tenant and cannot access the application in that tenant.",
        ),
        50034 => (
            "invalid_request",
            400,
            "The user account does not exist in the directory. To sign into this application, the account must be added to the directory.",
        ),
        500011 => (
            "invalid_resource",
            400,
            "The resource principal named https://graph.microsoft.com was not found in the tenant.",
        ),
        50196 => (
            "invalid_request",
            400,
            "The server terminated an operation because it encountered a client request loop. Please contact your app vendor.",
        ),
        90055 => (
            "temporarily_unavailable",
            429,
            "The request is throttled temporarily. Please try after some time.",
        ),
        50033 | 50087 | 90006 | 90024 | 90033 | 90090 | 40010 | 70012 => (
            "temporarily_unavailable",
            503,
            "A transient error has occurred. Please try again.",
        ),
        50105 => (
            "invalid_grant",
            400,
            "Your administrator has configured the application to block users unless they are specifically granted ('assigned') access to the application.",
        ),
        50126 => (
            "invalid_grant",
            400,
            "Error validating credentials due to invalid username or password.",
        ),
        50057 => ("invalid_grant", 400, "The user account is disabled."),
        50055 => ("invalid_grant", 400, "The password is expired."),
        50053 => (
            "invalid_grant",
            400,
            "Your account is locked because you've tried to sign in too many times with an incorrect user ID or password.",
        ),
        50194 => (
            "invalid_request",
            400,
            "Application '{client}' is not configured as a multi-tenant application. Usage of the /common endpoint is not supported for such applications created after '10/15/2018'. Use a tenant-specific endpoint or configure the application to be multi-tenant.",
        ),
        _ => ("invalid_request", 400, "Simulated error."),
    }
}

/// The `error` value an AADSTS code gets on an `/authorize` error redirect.
fn authorize_error_value(code: u32) -> &'static str {
    match code {
        53003 | 530003 | 65004 | 50105 | 50057 | 50053 => "access_denied",
        50076 | 50079 | 70043 | 50078 => "interaction_required",
        50058 => "login_required",
        65001 => "consent_required",
        700016 => "unauthorized_client",
        70011 => "invalid_scope",
        500011 => "invalid_resource",
        700054 => "unsupported_response_type",
        90055 | 50033 | 50087 | 90006 | 90024 | 90033 | 90090 | 40010 | 70012 => {
            "temporarily_unavailable"
        }
        _ => "invalid_request",
    }
}

/// Fills `{name}` placeholders of an AADSTS message.
fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut s = template.to_owned();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

/// An STS error about to be sent.
#[derive(Debug, Clone)]
pub struct StsError {
    pub code: u32,
    pub error: String,
    pub status: u16,
    pub message: String,
}

impl StsError {
    /// The error for `code` with its default `error` value, status and message.
    pub fn new(code: u32, vars: &[(&str, &str)]) -> Self {
        let (error, status, template) = aadsts_info(code);
        Self {
            code,
            error: error.to_owned(),
            status,
            message: fill(template, vars),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
    error_description: String,
    error_codes: Vec<u32>,
    timestamp: String,
    trace_id: String,
    correlation_id: String,
    error_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    suberror: Option<String>,
}

/// The `error_description` text: `AADSTSnnnn: text\r\nTrace ID: …\r\nCorrelation ID: …\r\nTimestamp: …`.
fn description(e: &StsError, trace: &str, correlation: &str, ts: &str) -> String {
    format!(
        "AADSTS{}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {ts}",
        e.code, e.message
    )
}

/// Microsoft's token-endpoint error response.
pub fn error_response(state: &SimState, req: &HttpRequest, e: &StsError) -> HttpResponse {
    let trace = new_guid();
    let correlation = req
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(new_guid);
    let ts = util::sts_timestamp(state.now());
    let suberror = match e.code {
        50076 | 50079 => Some("basic_action".to_owned()),
        65001 => Some("consent_required".to_owned()),
        70008 | 700082 | 50173 | 70043 => Some("bad_token".to_owned()),
        _ => None,
    };
    let body = ErrorBody {
        error: e.error.clone(),
        error_description: description(e, &trace, &correlation, &ts),
        error_codes: vec![e.code],
        timestamp: ts,
        trace_id: trace.clone(),
        correlation_id: correlation,
        error_uri: format!("{}/error?code={}", util::origin(req), e.code),
        suberror,
    };
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    sts_headers(HttpResponse::build(status), &trace)
        .content_type("application/json; charset=utf-8")
        .body(serde_json::to_string(&body).unwrap_or_default())
}

fn sts_headers(
    mut b: actix_web::HttpResponseBuilder,
    trace: &str,
) -> actix_web::HttpResponseBuilder {
    b.insert_header((header::CACHE_CONTROL, "no-store, no-cache"))
        .insert_header((header::PRAGMA, "no-cache"))
        .insert_header(("x-ms-request-id", trace.to_owned()))
        .insert_header(("x-ms-ests-server", "2.1.19000.0 - SIM ProdSlices"));
    b
}

/// The HTML error page the login UI shows when it cannot trust the redirect URI.
fn error_page(state: &SimState, e: &StsError) -> HttpResponse {
    let trace = new_guid();
    let ts = util::sts_timestamp(state.now());
    let text = description(e, &trace, &new_guid(), &ts);
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace("\r\n", "<br>");
    sts_headers(HttpResponse::BadRequest(), &trace)
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body><div id=\"error\">Sorry, but we're having trouble signing you in.</div><div class=\"error-details\">{escaped}</div></body></html>"
        ))
}

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

fn resolve(state: &SimState, segment: &str) -> Result<(Option<String>, bool), StsError> {
    let lower = segment.to_ascii_lowercase();
    if ALIASES.contains(&lower.as_str()) {
        return Ok((None, true));
    }
    match state.resolve_tenant(&lower) {
        Some(t) => Ok((Some(t), false)),
        None => Err(StsError::new(90002, &[("tenant", segment)])),
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

/// A random URL-safe token of `len` characters.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| {
            ALPHABET
                .get(rng.gen_range(0..ALPHABET.len()))
                .copied()
                .unwrap_or(b'A') as char
        })
        .collect()
}

#[derive(Serialize)]
struct TokenBody {
    token_type: &'static str,
    scope: String,
    expires_in: u64,
    ext_expires_in: u64,
    access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_info: Option<String>,
}

/// What a successful grant yields.
struct Issue {
    upn: String,
    tenant_id: String,
    graph: Vec<String>,
    oidc: Vec<String>,
    auth_ms: i64,
    nonce: Option<String>,
    /// The grant the refresh token (if one is issued) belongs to.
    grant: u64,
    /// The presented refresh token's nonce, spent if the refresh succeeds.
    spends: Option<u64>,
}

/// Decodes HTTP Basic client credentials (each part form-urlencoded before base64).
fn basic_credentials(req: &HttpRequest) -> Option<Result<(String, String), ()>> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let Ok(raw) = STANDARD.decode(rest.trim()) else {
        return Some(Err(()));
    };
    let Ok(text) = String::from_utf8(raw) else {
        return Some(Err(()));
    };
    let Some((id, secret)) = text.split_once(':') else {
        return Some(Err(()));
    };
    let dec = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some(Ok((dec(id), dec(secret))))
}

/// `POST /{tenant}/oauth2/v2.0/token`: authorization_code and refresh_token grants.
pub async fn token(
    state: Data<Arc<SimState>>,
    req: HttpRequest,
    tenant: Path<String>,
    payload: Payload,
) -> HttpResponse {
    state.counters.hit(Endpoint::Token, None);
    let body = match util::read_body(&req, payload, state.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(util::BodyError::TooLarge(_)) => {
            let mut e = StsError::new(9002313, &[]);
            e.error = "invalid_request".into();
            e.status = 413;
            e.message = "Request body is too large.".into();
            return error_response(&state, &req, &e);
        }
        Err(util::BodyError::Read(_)) => {
            return error_response(&state, &req, &StsError::new(9002313, &[]));
        }
    };
    match token_inner(&state, &req, &tenant, &body).await {
        Ok(resp) => resp,
        Err(e) => error_response(&state, &req, &e),
    }
}

async fn token_inner(
    state: &SimState,
    req: &HttpRequest,
    tenant: &str,
    body: &[u8],
) -> Result<HttpResponse, StsError> {
    let (path_tenant, alias) = resolve(state, tenant)?;
    let form = util::form_pairs(body);
    for (i, (k, _)) in form.iter().enumerate() {
        if form.iter().skip(i + 1).any(|(k2, _)| k2 == k) {
            return Err(StsError::new(9002313, &[]));
        }
    }
    let basic = match basic_credentials(req) {
        Some(Ok(c)) => Some(c),
        Some(Err(())) => return Err(StsError::new(9002313, &[])),
        None => None,
    };
    let body_client = util::get(&form, "client_id").map(str::to_ascii_lowercase);
    let client_id = match (&body_client, &basic) {
        (Some(b), Some((id, _))) if !b.eq_ignore_ascii_case(id) => {
            return Err(StsError::new(9002313, &[]));
        }
        (Some(b), _) => b.clone(),
        (None, Some((id, _))) => id.to_ascii_lowercase(),
        (None, None) => return Err(StsError::new(900144, &[("param", "client_id")])),
    };
    let Some(app) = state.apps.get(&client_id).map(|a| a.clone()) else {
        let t = path_tenant.clone().unwrap_or_else(|| tenant.to_owned());
        return Err(StsError::new(
            700016,
            &[("client", &client_id), ("tenant", &t)],
        ));
    };
    if let Some(t) = &path_tenant
        && *t != app.tenant_id
    {
        return Err(StsError::new(
            700016,
            &[("client", &client_id), ("tenant", t)],
        ));
    }
    let tenant_id = path_tenant.clone().unwrap_or_else(|| app.tenant_id.clone());

    // Faults and early requests on this (tenant, app).
    let key = format!("token|{tenant_id}|{client_id}");
    let entry = state.throttle.entry(&key);
    let now_ms = state.now_ms();
    let nb = entry
        .not_before_ms
        .load(std::sync::atomic::Ordering::Acquire);
    if nb > now_ms {
        state.counters.early(EarlyRequest {
            key: key.clone(),
            endpoint: Endpoint::Token.name(),
            at: util::graph_datetime(state.now()),
            early_by_ms: nb - now_ms,
        });
    }
    let verdict = state.faults.check(
        &Target {
            endpoint: Endpoint::Token,
            tenant: Some(&tenant_id),
            client_id: Some(&client_id),
            mailbox: None,
            user: None,
            in_batch: false,
        },
        now_ms,
        |_| true,
    );
    if verdict.latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(verdict.latency_ms)).await;
    }
    let mut expired_secret = false;
    match verdict.fault {
        None | Some(FaultKind::Latency { .. }) => {}
        Some(FaultKind::Down) => {
            return Ok(HttpResponse::ServiceUnavailable()
                .content_type("text/html")
                .body("<html><head><title>Service Unavailable</title></head><body><h2>Service Unavailable</h2><hr><p>HTTP Error 503. The service is unavailable.</p></body></html>"));
        }
        Some(FaultKind::Reset) => return Ok(util::reset_response(StatusCode::OK)),
        Some(FaultKind::Malformed) => {
            return Ok(HttpResponse::Ok()
                .content_type("application/json; charset=utf-8")
                .body("{\"token_type\":\"Bearer\",\"scope\":\"https://graph.microsoft.com/Mail.ReadWrite.Shared\",\"expires_in\":35"));
        }
        Some(FaultKind::Throttle { retry_after }) => {
            let mut e = StsError::new(90055, &[]);
            e.status = 429;
            let mut resp = error_response(state, req, &e);
            if let Some(r) = retry_after {
                Throttle::set_retry_after(&entry, now_ms, r);
                if let Ok(v) = header::HeaderValue::from_str(&util::retry_after_value(r)) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            return Ok(resp);
        }
        Some(FaultKind::Status {
            status,
            retry_after,
            ..
        }) => {
            let mut e = StsError::new(90033, &[]);
            e.status = status;
            e.error = if status == 503 || status == 504 {
                "temporarily_unavailable"
            } else {
                "server_error"
            }
            .to_owned();
            let mut resp = error_response(state, req, &e);
            if let Some(r) = retry_after {
                Throttle::set_retry_after(&entry, now_ms, r);
                if let Ok(v) = header::HeaderValue::from_str(&util::retry_after_value(r)) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            return Ok(resp);
        }
        Some(FaultKind::Aadsts {
            code,
            error,
            status,
            description,
        }) => {
            let mut e = StsError::new(
                code,
                &[
                    ("client", &client_id),
                    ("name", &app.display_name),
                    ("tenant", &tenant_id),
                    ("issued", "2025-01-01T00:00:00.0000000Z"),
                    ("valid", "2025-01-01T00:00:00.0000000Z"),
                ],
            );
            if let Some(x) = error {
                e.error = x;
            }
            if let Some(s) = status {
                e.status = s;
            }
            if let Some(d) = description {
                e.message = d;
            }
            return Err(e);
        }
        Some(FaultKind::ExpiredSecret) => expired_secret = true,
    }

    let Some(grant_type) = util::get(&form, "grant_type") else {
        return Err(StsError::new(900144, &[("param", "grant_type")]));
    };
    if grant_type != "authorization_code" && grant_type != "refresh_token" {
        return Err(StsError::new(70003, &[("grant", grant_type)]));
    }

    // Client authentication: exactly one of body secret and HTTP Basic.
    let body_secret = util::get(&form, "client_secret");
    let secret = match (body_secret, &basic) {
        (Some(_), Some(_)) => {
            let mut e = StsError::new(9002313, &[]);
            e.message = "Invalid request. Request is malformed or invalid. The request contains client credentials both in the Authorization header and in the body.".into();
            return Err(e);
        }
        (Some(s), None) => s.to_owned(),
        (None, Some((_, s))) => s.clone(),
        (None, None) => return Err(StsError::new(7000218, &[])),
    };
    if expired_secret || app.secret_expires_at.is_some_and(|t| t <= state.now()) {
        return Err(StsError::new(7000222, &[("client", &client_id)]));
    }
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        secret.as_bytes(),
        app.secret.as_bytes(),
    )) {
        return Err(StsError::new(7000215, &[("client", &client_id)]));
    }

    let requested = util::get(&form, "scope").map(split_scopes);
    let issue = if grant_type == "authorization_code" {
        redeem_code(state, &form, &client_id, &tenant_id, alias)?
    } else {
        redeem_refresh(state, &form, &client_id, &tenant_id, alias)?
    };
    // Scope narrowing: requested Graph scopes must have been granted.
    let (graph, oidc) = match requested {
        Some((g, o, unknown)) => {
            if let Some(bad) = unknown.first() {
                return Err(StsError::new(70011, &[("scope", bad)]));
            }
            if g.iter().any(|s| !issue.graph.contains(s)) {
                return Err(StsError::new(
                    65001,
                    &[("client", &client_id), ("name", &app.display_name)],
                ));
            }
            let g = if g.is_empty() { issue.graph.clone() } else { g };
            let o: Vec<String> = if grant_type == "authorization_code" {
                issue.oidc.clone()
            } else {
                o
            };
            (g, o)
        }
        None => (issue.graph.clone(), issue.oidc.clone()),
    };
    // Every check passed: the presented refresh token is rotated out now. Microsoft leaves it valid
    // (a reuse is only counted); with revoke-on-reuse the grant dies, as with stricter providers.
    if let Some(nonce) = issue.spends
        && state.grants.spend(issue.grant, nonce) == Spend::Reused
    {
        state.counters.refresh_token_reused(&issue.upn);
        if state.settings.revoke_on_refresh_token_reuse() {
            let now = state.now_ms();
            state.grants.revoke(issue.grant, now);
            return Err(revoked_grant(issue.auth_ms, now));
        }
    }
    let now = state.now_ms();
    let life = state.limits.access_token_lifetime_secs;
    let at_scopes = graph.join(" ");
    let access_token = state.mint(
        "at",
        &issue.upn,
        &client_id,
        &issue.tenant_id,
        &at_scopes,
        issue.auth_ms,
        now + (life as i64) * 1000,
    );
    let offline = issue.oidc.iter().any(|s| s == "offline_access") || grant_type == "refresh_token";
    let refresh_token = offline.then(|| {
        let mut all = issue.graph.clone();
        all.extend(issue.oidc.iter().cloned());
        if !all.iter().any(|s| s == "offline_access") {
            all.push("offline_access".into());
        }
        state.mint_refresh(
            &issue.upn,
            &client_id,
            &issue.tenant_id,
            &all.join(" "),
            issue.auth_ms,
            issue.grant,
        )
    });
    let openid = oidc.iter().any(|s| s == "openid");
    let origin = util::origin(req);
    let user = state.users.get(&issue.upn).map(|u| u.clone());
    let (oid, name) = user
        .map(|u| (u.object_id, u.display_name))
        .unwrap_or_else(|| (new_guid(), issue.upn.clone()));
    let id_token = openid.then(|| id_token(&origin, &client_id, &issue, &oid, &name, now, life));
    let client_info = (util::get(&form, "client_info") == Some("1")).then(|| {
        URL_SAFE_NO_PAD.encode(serde_json::json!({"uid": oid, "utid": issue.tenant_id}).to_string())
    });
    let mut scope_out: Vec<String> = graph
        .iter()
        .map(|s| format!("{GRAPH_RESOURCE}{s}"))
        .collect();
    scope_out.extend(oidc.iter().filter(|s| *s != "offline_access").cloned());
    let body = TokenBody {
        token_type: "Bearer",
        scope: scope_out.join(" "),
        expires_in: life,
        ext_expires_in: life,
        access_token,
        refresh_token,
        id_token,
        client_info,
    };
    let trace = new_guid();
    Ok(sts_headers(HttpResponse::Ok(), &trace)
        .content_type("application/json; charset=utf-8")
        .body(serde_json::to_string(&body).unwrap_or_default()))
}

fn id_token(
    origin: &str,
    client_id: &str,
    issue: &Issue,
    oid: &str,
    name: &str,
    now_ms: i64,
    life: u64,
) -> String {
    let now = now_ms / 1000;
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"RS256","kid":"sim-key"}"#);
    let mut claims = serde_json::json!({
        "aud": client_id,
        "iss": format!("{origin}/{}/v2.0", issue.tenant_id),
        "iat": now,
        "nbf": now,
        "exp": now + life as i64,
        "name": name,
        "oid": oid,
        "preferred_username": issue.upn,
        "sub": URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{oid}{client_id}").as_bytes())),
        "tid": issue.tenant_id,
        "ver": "2.0",
    });
    if let (Some(n), Some(o)) = (&issue.nonce, claims.as_object_mut()) {
        o.insert("nonce".into(), n.clone().into());
    }
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.{}", random_token(86))
}

fn redeem_code(
    state: &SimState,
    form: &[(String, String)],
    client_id: &str,
    tenant_id: &str,
    alias: bool,
) -> Result<Issue, StsError> {
    let Some(code) = util::get(form, "code") else {
        return Err(StsError::new(900144, &[("param", "code")]));
    };
    let Some(redirect_uri) = util::get(form, "redirect_uri") else {
        return Err(StsError::new(900144, &[("param", "redirect_uri")]));
    };
    let Some(mut grant) = state.codes.get_mut(code) else {
        return Err(StsError::new(9002313, &[]));
    };
    if grant.redeemed {
        return Err(StsError::new(54005, &[]));
    }
    if state.now_ms().saturating_sub(grant.issued_ms)
        > (state.limits.auth_code_lifetime_secs as i64).saturating_mul(1000)
    {
        return Err(StsError::new(70008, &[]));
    }
    if grant.client_id != client_id {
        let mut e = StsError::new(70000, &[]);
        e.message = "The provided value for the input parameter 'code' is not valid. The code was issued to a different client.".into();
        return Err(e);
    }
    if !alias && grant.tenant_id != tenant_id {
        return Err(StsError::new(700005, &[]));
    }
    if grant.redirect_uri != redirect_uri {
        return Err(StsError::new(500112, &[("redirect", redirect_uri)]));
    }
    if let Some(challenge) = &grant.code_challenge {
        let Some(verifier) = util::get(form, "code_verifier") else {
            return Err(StsError::new(501481, &[]));
        };
        let computed = if grant.code_challenge_method == "S256" {
            URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
        } else {
            verifier.to_owned()
        };
        if computed != *challenge {
            return Err(StsError::new(501481, &[]));
        }
    }
    grant.redeemed = true;
    let (graph, oidc): (Vec<String>, Vec<String>) = grant
        .scopes
        .iter()
        .cloned()
        .partition(|s| !["openid", "profile", "email", "offline_access"].contains(&s.as_str()));
    Ok(Issue {
        upn: grant.upn.clone(),
        tenant_id: grant.tenant_id.clone(),
        graph,
        oidc,
        // A sign-in after a revocation is valid even within the revocation's millisecond.
        auth_ms: state.users.get(&grant.upn).map_or(state.now_ms(), |user| {
            state.now_ms().max(user.tokens_valid_from_ms)
        }),
        nonce: grant.nonce.clone(),
        grant: state.grants.open(),
        spends: None,
    })
}

fn redeem_refresh(
    state: &SimState,
    form: &[(String, String)],
    client_id: &str,
    tenant_id: &str,
    alias: bool,
) -> Result<Issue, StsError> {
    let Some(rt) = util::get(form, "refresh_token") else {
        return Err(StsError::new(900144, &[("param", "refresh_token")]));
    };
    let claims = state
        .verify("rt", rt)
        .map_err(|_| StsError::new(9002313, &[]))?;
    if claims.cid != client_id {
        let mut e = StsError::new(70000, &[]);
        e.message = "The provided value for the input parameter 'refresh_token' or 'assertion' is not valid. The refresh token was issued to a different client.".into();
        return Err(e);
    }
    if !alias && claims.tid != tenant_id {
        return Err(StsError::new(70000, &[]));
    }
    let issued = chrono::DateTime::from_timestamp_millis(claims.auth)
        .map(|t| format!("{}Z", util::ticks_datetime(t)))
        .unwrap_or_default();
    let Some(user) = state.users.get(&claims.upn).map(|u| u.clone()) else {
        return Err(StsError::new(50034, &[]));
    };
    if claims.auth < user.tokens_valid_from_ms {
        return Err(revoked_grant(claims.auth, user.tokens_valid_from_ms));
    }
    if state.now_ms().saturating_sub(claims.iat) > RT_INACTIVITY_MS {
        let issued_at = chrono::DateTime::from_timestamp_millis(claims.iat)
            .map(|t| format!("{}Z", util::ticks_datetime(t)))
            .unwrap_or(issued);
        return Err(StsError::new(700082, &[("issued", &issued_at)]));
    }
    // A token minted before grants were tracked starts a grant of its own.
    let grant = if claims.g == 0 {
        state.grants.open()
    } else {
        claims.g
    };
    if let Some(revoked_at) = state.grants.revoked_at(grant) {
        if state.grants.is_spent(grant, claims.n) {
            state.counters.refresh_token_reused(&claims.upn);
        }
        return Err(revoked_grant(claims.auth, revoked_at));
    }
    let (graph, oidc) = split_scopes(&claims.scp).into_parts();
    Ok(Issue {
        upn: claims.upn,
        tenant_id: claims.tid,
        graph,
        oidc,
        auth_ms: claims.auth,
        nonce: None,
        grant,
        spends: Some(claims.n),
    })
}

/// AADSTS50173, the revoked-grant error, for a grant authorized at `auth_ms` and revoked (tokens
/// valid only from) `valid_from_ms`.
///
/// Also the answer when revoke-on-reuse kills a grant. The reference gives 50173 as the code of a
/// revoked grant ("FreshTokenNeeded": re-authorize); 70008 covers expiry *or* revocation and its text
/// speaks of inactivity, which would send an operator looking for the wrong cause.
fn revoked_grant(auth_ms: i64, valid_from_ms: i64) -> StsError {
    let short = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%m/%d/%Y %H:%M:%S").to_string())
            .unwrap_or_default()
    };
    StsError::new(
        50173,
        &[
            ("issued", &short(auth_ms)),
            ("valid", &short(valid_from_ms)),
        ],
    )
}

trait IntoParts {
    fn into_parts(self) -> (Vec<String>, Vec<String>);
}

impl IntoParts for (Vec<String>, Vec<String>, Vec<String>) {
    fn into_parts(self) -> (Vec<String>, Vec<String>) {
        (self.0, self.1)
    }
}

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

    #[test]
    fn every_listed_code_has_the_reference_error_value() {
        assert_eq!(aadsts_info(7000215).0, "invalid_client");
        assert_eq!(aadsts_info(7000215).1, 401);
        assert_eq!(aadsts_info(700016).0, "unauthorized_client");
        assert_eq!(aadsts_info(90002).0, "invalid_request");
        assert_eq!(aadsts_info(9002313).0, "invalid_grant");
        assert_eq!(aadsts_info(70003).0, "unsupported_grant_type");
        assert_eq!(authorize_error_value(53003), "access_denied");
        assert_eq!(authorize_error_value(50076), "interaction_required");
    }
}
