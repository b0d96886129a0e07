//! Microsoft's identity-platform errors: the AADSTS codes the simulator knows (their `error` value,
//! HTTP status and message), the token endpoint's JSON error body and headers, and the login UI's
//! HTML error page.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use crate::sim::state::{SimState, new_guid};
use crate::sim::util;

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
        700027 => (
            "invalid_client",
            401,
            "Client assertion failed signature validation.",
        ),
        700021 => (
            "invalid_client",
            401,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        ),
        700024 => (
            "invalid_client",
            401,
            "Client assertion is not within its valid time range.",
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
pub fn authorize_error_value(code: u32) -> &'static str {
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
    /// A claims request (JSON text) the client must satisfy, on `interaction_required`.
    pub claims: Option<String>,
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
            claims: None,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    claims: Option<String>,
}

/// The `error_description` text: `AADSTSnnnn: text\r\nTrace ID: …\r\nCorrelation ID: …\r\nTimestamp: …`.
pub fn description(e: &StsError, trace: &str, correlation: &str, ts: &str) -> String {
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
        claims: e.claims.clone(),
    };
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    sts_headers(HttpResponse::build(status), &trace)
        .content_type("application/json; charset=utf-8")
        .body(serde_json::to_string(&body).unwrap_or_default())
}

pub fn sts_headers(
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
pub fn error_page(state: &SimState, e: &StsError) -> HttpResponse {
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

#[cfg(test)]
mod tests {
    use super::*;

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
