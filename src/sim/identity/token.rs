//! `POST /{tenant}/oauth2/v2.0/token`: client authentication (body secret or HTTP Basic), token
//! endpoint faults, the `authorization_code` grant (single use, expiry, redirect URI, PKCE) and the
//! `refresh_token` grant (rotation, reuse counting and revoke-on-reuse, user revocation, 90-day
//! inactivity), and Microsoft's success body with access, refresh and ID tokens.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::web::{Data, Path, Payload};
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use super::assertion;
use super::errors::{StsError, error_response, sts_headers};
use super::keys::sign_jwt;
use super::resolve;
use crate::sim::counters::{EarlyRequest, Endpoint};
use crate::sim::faults::{DEFAULT_CLAIMS, FaultKind, Target};
use crate::sim::grants::Spend;
use crate::sim::state::{
    GRAPH_AUDIENCE, GRAPH_RESOURCE, SimState, audience_of, new_guid, split_scopes,
};
use crate::sim::throttle::Throttle;
use crate::sim::util;

/// Refresh tokens unused for this long expire (AADSTS700082).
const RT_INACTIVITY_MS: i64 = 90 * 24 * 3600 * 1000;

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

/// Checks a client secret against the app's secrets: a match that has expired (or the
/// expired-secret fault) answers AADSTS7000222, no match AADSTS7000215; answers the secret's label.
fn check_secret(
    state: &SimState,
    app: &crate::sim::state::App,
    secret: &str,
    expired_fault: bool,
) -> Result<String, StsError> {
    let same = |a: &str| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            secret.as_bytes(),
            a.as_bytes(),
        ))
    };
    let found = std::iter::once((app.secret.as_str(), app.secret_expires_at))
        .chain(
            app.more_secrets
                .iter()
                .map(|s| (s.value.as_str(), s.expires_at)),
        )
        .find(|(value, _)| same(value));
    match found {
        Some((value, expires_at)) => {
            if expired_fault || expires_at.is_some_and(|t| t <= state.now()) {
                return Err(StsError::new(7000222, &[("client", &app.client_id)]));
            }
            Ok(assertion::secret_label(value))
        }
        // The expired-secret fault answers as an expired secret whatever was sent.
        None if expired_fault => Err(StsError::new(7000222, &[("client", &app.client_id)])),
        None => Err(StsError::new(7000215, &[("client", &app.client_id)])),
    }
}

/// Decodes HTTP Basic client credentials (each part form-urlencoded before base64).
pub(super) fn basic_credentials(req: &HttpRequest) -> Option<Result<(String, String), ()>> {
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
    let arrival = state.throttle.arrive();
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
    match token_inner(&state, &req, &tenant, &body, arrival).await {
        Ok(resp) => resp,
        Err(e) => error_response(&state, &req, &e),
    }
}

async fn token_inner(
    state: &SimState,
    req: &HttpRequest,
    tenant: &str,
    body: &[u8],
    arrival: u64,
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
    if let Some(early_by_ms) = Throttle::early_by(&entry, arrival, now_ms) {
        state.counters.early(EarlyRequest {
            key: key.clone(),
            endpoint: Endpoint::Token.name(),
            at: util::graph_datetime(state.now()),
            early_by_ms,
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
        FaultKind::on_token,
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
                state.throttle.set_retry_after(&entry, now_ms, r);
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
                state.throttle.set_retry_after(&entry, now_ms, r);
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
        Some(FaultKind::InteractionRequired { code, claims }) => {
            let mut e = StsError::new(code.unwrap_or(50076), &[]);
            e.error = "interaction_required".into();
            e.claims = Some(claims.unwrap_or_else(|| DEFAULT_CLAIMS.to_owned()));
            return Err(e);
        }
        Some(FaultKind::ExpiredSecret) => expired_secret = true,
        Some(
            FaultKind::InsufficientClaims { .. }
            | FaultKind::ImapNo { .. }
            | FaultKind::ImapBye { .. },
        ) => {}
    }

    let Some(grant_type) = util::get(&form, "grant_type") else {
        return Err(StsError::new(900144, &[("param", "grant_type")]));
    };
    if grant_type != "authorization_code" && grant_type != "refresh_token" {
        return Err(StsError::new(70003, &[("grant", grant_type)]));
    }

    // Client authentication: exactly one of body secret, HTTP Basic and a client assertion.
    let body_secret = util::get(&form, "client_secret");
    let assertion = util::get(&form, "client_assertion");
    let label = match (body_secret, &basic, assertion) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            let mut e = StsError::new(9002313, &[]);
            e.message = "Invalid request. Request is malformed or invalid. The request contains more than one client credential (secret, Authorization header, client assertion).".into();
            return Err(e);
        }
        (None, None, Some(assertion)) => {
            if util::get(&form, "client_assertion_type")
                != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            {
                return Err(StsError::new(900144, &[("param", "client_assertion_type")]));
            }
            assertion::verify(
                assertion,
                &client_id,
                &format!("/{tenant_id}/oauth2/v2.0/token"),
                &app.certificates,
                state.now(),
            )?
        }
        (Some(s), None, None) => check_secret(state, &app, s, expired_secret)?,
        (None, Some((_, s)), None) => check_secret(state, &app, s, expired_secret)?,
        (None, None, None) => return Err(StsError::new(7000218, &[])),
    };
    *state
        .credential_uses
        .entry(format!("{client_id}|{label}"))
        .or_insert(0) += 1;

    let scope_param = util::get(&form, "scope");
    let wants_default = scope_param.is_some_and(|s| {
        s.split_whitespace()
            .any(|s| s.ends_with("/.default") || s == ".default")
    });
    let requested = scope_param.map(split_scopes);
    let issue = if grant_type == "authorization_code" {
        redeem_code(state, &form, &client_id, &tenant_id, alias)?
    } else {
        redeem_refresh(state, &form, &client_id, &tenant_id, alias)?
    };
    // Consent is held per (user, app): a grant may ask for any scope the user consented to for this
    // app, not only those of its own authorization; `.default` asks for all of them.
    let mut consented = state.consented(&issue.upn, &client_id);
    for s in &issue.graph {
        if !consented.contains(s) {
            consented.push(s.clone());
        }
    }
    let (graph, oidc) = match requested {
        Some((g, o, unknown)) => {
            if let Some(bad) = unknown.first() {
                return Err(StsError::new(70011, &[("scope", bad)]));
            }
            if let Some(e) = super::more_than_one_resource(&g, scope_param.unwrap_or_default()) {
                return Err(e);
            }
            // `.default` is every consented scope of the resource it names.
            let g = if wants_default {
                let resource = g.first().map(|s| audience_of(s)).unwrap_or(GRAPH_AUDIENCE);
                consented
                    .iter()
                    .filter(|s| audience_of(s) == resource)
                    .cloned()
                    .collect()
            } else {
                g
            };
            if g.iter().any(|s| !consented.contains(s)) {
                return Err(StsError::new(
                    65001,
                    &[("client", &client_id), ("name", &app.display_name)],
                ));
            }
            let g = if g.is_empty() {
                one_resource(&issue.graph)
            } else {
                g
            };
            let o: Vec<String> = if grant_type == "authorization_code" {
                issue.oidc.clone()
            } else {
                o
            };
            (g, o)
        }
        None => (one_resource(&issue.graph), issue.oidc.clone()),
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
    let id_token = if openid {
        Some(
            id_token(&origin, &client_id, &issue, &oid, &name, now, life)
                .ok_or_else(|| StsError::new(90033, &[]))?,
        )
    } else {
        None
    };
    let client_info = (util::get(&form, "client_info") == Some("1")).then(|| {
        URL_SAFE_NO_PAD.encode(serde_json::json!({"uid": oid, "utid": issue.tenant_id}).to_string())
    });
    let mut scope_out: Vec<String> = graph
        .iter()
        .map(|s| {
            if s.contains("://") {
                s.clone()
            } else {
                format!("{GRAPH_RESOURCE}{s}")
            }
        })
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

/// The scopes of the first resource among `scopes`: a token is for one resource.
fn one_resource(scopes: &[String]) -> Vec<String> {
    let Some(first) = scopes.first().map(|s| audience_of(s)) else {
        return Vec::new();
    };
    scopes
        .iter()
        .filter(|s| audience_of(s) == first)
        .cloned()
        .collect()
}

/// The id_token: an RS256 JWT signed with the key of the served JWKS (`kid` in its header).
fn id_token(
    origin: &str,
    client_id: &str,
    issue: &Issue,
    oid: &str,
    name: &str,
    now_ms: i64,
    life: u64,
) -> Option<String> {
    let now = now_ms / 1000;
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
    sign_jwt(&claims)
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
