//! The Microsoft identity platform client, on the oauth2 crate: the authorize URL, code redemption
//! and refresh, always at the tenant's own authority of the configured cloud.
//!
//! Protocol only: the channel actor owns the tokens and decides when to refresh; the store keeps
//! pending authorizations. Every request goes through the one shared `reqwest::Client`, which
//! follows no redirects. Microsoft's error bodies are decoded with all their fields
//! (`error_codes`, trace and correlation ids) so the catalogue can classify them.

mod error;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use chrono::Utc;
use oauth2::basic::{
    BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenResponse,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, CsrfToken, EndpointNotSet, EndpointSet, HttpRequest,
    HttpResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    StandardRevocableToken, TokenResponse as _, TokenUrl,
};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

pub use error::{IdentityFailure, OAuthError, aadsts_codes, description_field, description_head};

use crate::domain::secret::{AccessToken, PkceVerifier, RefreshToken};
use crate::domain::{AppCredential, ClientId, HttpUrl, Mailbox, TenantId, Transport};

/// The Exchange Online resource the IMAP scope names in the global cloud.
pub const IMAP_SCOPE_HOST: &str = "https://outlook.office.com";

/// Microsoft's token error body with every field it sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MicrosoftErrorResponse {
    /// The OAuth `error` value.
    pub error: String,
    /// The description, with the AADSTS text and trailer lines.
    #[serde(default)]
    pub error_description: Option<String>,
    /// The AADSTS numbers.
    #[serde(default)]
    pub error_codes: Vec<u32>,
    /// Microsoft's trace id.
    #[serde(default)]
    pub trace_id: Option<String>,
    /// Microsoft's correlation id.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// A link to Microsoft's error page.
    #[serde(default)]
    pub error_uri: Option<String>,
}

impl std::fmt::Display for MicrosoftErrorResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)
    }
}

impl oauth2::ErrorResponse for MicrosoftErrorResponse {}

type MicrosoftClient = oauth2::Client<
    MicrosoftErrorResponse,
    BasicTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// What a successful token request gave.
#[derive(Debug)]
pub struct TokenGrant {
    /// The new access token.
    pub access_token: AccessToken,
    /// Its lifetime.
    pub expires_in: Duration,
    /// The rotated refresh token; `None` when Microsoft sent none (keep the old one then).
    pub refresh_token: Option<RefreshToken>,
    /// The scopes granted (the requested ones when Microsoft did not say).
    pub scope: String,
}

/// A fresh authorization: the URL to open, and what the callback needs to finish it.
#[derive(Debug)]
pub struct AuthorizationStart {
    /// The URL an admin opens to sign in and consent.
    pub url: String,
    /// The random, single-use `state` that binds the callback to this channel.
    pub state: String,
    /// The PKCE verifier, kept (encrypted) until the callback redeems the code.
    pub verifier: PkceVerifier,
}

/// The app credentials of one channel.
#[derive(Debug, Clone, Copy)]
pub struct AppCredentials<'a> {
    /// The tenant whose authority is used.
    pub tenant: &'a TenantId,
    /// The app.
    pub client_id: &'a ClientId,
    /// The app's secret or certificate.
    pub credential: &'a AppCredential,
}

/// RFC 7523's client assertion type, sent with a certificate's signed assertion.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The identity platform client shared by all channels.
#[derive(Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
    /// The login origin (`https://login.microsoftonline.com` or an override).
    login_base: Arc<str>,
    /// The delegated Graph scope of the configured cloud.
    graph_scope: Arc<str>,
    /// The delegated IMAP scope (Exchange Online's resource of the configured cloud).
    imap_scope: Arc<str>,
    /// `{public_url}{callback_path}`, exactly as registered in Azure.
    redirect_uri: Arc<str>,
    timeout: Duration,
}

impl OAuthClient {
    /// A client for the login origin `login_url`; scopes name `graph_scope_host` (the cloud's Graph host).
    pub fn new(
        http: reqwest::Client,
        login_url: &HttpUrl,
        graph_scope_host: &str,
        redirect_uri: &str,
        timeout: Duration,
    ) -> Self {
        OAuthClient {
            http,
            login_base: Arc::from(login_url.base()),
            graph_scope: Arc::from(format!(
                "{}/Mail.ReadWrite.Shared",
                graph_scope_host.trim_end_matches('/')
            )),
            imap_scope: Arc::from(format!("{IMAP_SCOPE_HOST}/IMAP.AccessAsUser.All")),
            redirect_uri: Arc::from(redirect_uri),
            timeout,
        }
    }

    /// The same client naming `imap_scope_host` (the cloud's Exchange Online resource, e.g.
    /// `https://outlook.office.com`) in the IMAP scope.
    pub fn with_imap_scope_host(mut self, imap_scope_host: &str) -> Self {
        self.imap_scope = Arc::from(format!(
            "{}/IMAP.AccessAsUser.All",
            imap_scope_host.trim_end_matches('/')
        ));
        self
    }

    /// The delegated scope of `transport`'s resource: Graph's `Mail.ReadWrite.Shared`, or
    /// Exchange Online's `IMAP.AccessAsUser.All`. One access token serves one resource.
    pub fn resource_scope(&self, transport: Transport) -> &str {
        match transport {
            Transport::Graph => &self.graph_scope,
            Transport::Imap => &self.imap_scope,
        }
    }

    /// The scopes inboxd asks for on `transport`, space-separated.
    pub fn scope_string_for(&self, transport: Transport) -> String {
        format!("offline_access {}", self.resource_scope(transport))
    }

    /// How long one request may take before it counts as failed.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The redirect URI to register in Azure.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The scopes inboxd asks for, space-separated.
    pub fn scope_string(&self) -> String {
        format!("offline_access {}", self.graph_scope)
    }

    fn client(
        &self,
        tenant: &TenantId,
        client_id: &ClientId,
    ) -> Result<MicrosoftClient, OAuthError> {
        let authority = format!("{}/{}/oauth2/v2.0", self.login_base, tenant.as_str());
        let auth_url = AuthUrl::new(format!("{authority}/authorize"))
            .map_err(|err| OAuthError::Config(err.to_string()))?;
        let token_url = TokenUrl::new(format!("{authority}/token"))
            .map_err(|err| OAuthError::Config(err.to_string()))?;
        let redirect = RedirectUrl::new(self.redirect_uri.to_string())
            .map_err(|err| OAuthError::Config(err.to_string()))?;
        Ok(
            oauth2::Client::new(oauth2::ClientId::new(client_id.as_str().to_owned()))
                .set_auth_uri(auth_url)
                .set_token_uri(token_url)
                .set_redirect_uri(redirect)
                // Microsoft takes the secret in the body; Basic would need form-encoding first.
                .set_auth_type(AuthType::RequestBody),
        )
    }

    /// The authorization URL for a channel: tenant authority, PKCE S256, random `state`,
    /// `response_mode=query`, `login_hint` = the mailbox.
    pub fn authorize(
        &self,
        tenant: &TenantId,
        client_id: &ClientId,
        mailbox: &Mailbox,
    ) -> Result<AuthorizationStart, OAuthError> {
        self.authorize_for(Transport::Graph, tenant, client_id, mailbox)
    }

    /// [`authorize`](Self::authorize) asking for the scope of `transport`'s resource.
    pub fn authorize_for(
        &self,
        transport: Transport,
        tenant: &TenantId,
        client_id: &ClientId,
        mailbox: &Mailbox,
    ) -> Result<AuthorizationStart, OAuthError> {
        let client = self.client(tenant, client_id)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = client
            .authorize_url(|| CsrfToken::new(random_state()))
            .add_scope(Scope::new("offline_access".to_owned()))
            .add_scope(Scope::new(self.resource_scope(transport).to_owned()))
            .set_pkce_challenge(challenge)
            .add_extra_param("response_mode", "query")
            .add_extra_param("login_hint", mailbox.as_str())
            .url();
        let verifier = PkceVerifier::new(verifier.secret().clone())
            .map_err(|err| OAuthError::Config(err.to_string()))?;
        Ok(AuthorizationStart {
            url: url.to_string(),
            state: state.secret().clone(),
            verifier,
        })
    }

    /// The token client of `app` with its credential: a secret goes in the body; a certificate
    /// signs a client assertion for the tenant's token endpoint, answered beside the client. A
    /// certificate past its `notAfter` is refused here, without asking Microsoft.
    fn authenticated(
        &self,
        app: AppCredentials<'_>,
    ) -> Result<(MicrosoftClient, Option<String>), OAuthError> {
        let client = self.client(app.tenant, app.client_id)?;
        match app.credential {
            AppCredential::Secret { secret, .. } => Ok((
                client.set_client_secret(oauth2::ClientSecret::new(secret.expose().to_owned())),
                None,
            )),
            AppCredential::Certificate(cert) => {
                let now = Utc::now();
                if cert.not_after() <= now {
                    return Err(OAuthError::Credential {
                        code: crate::catalogue::codes::CERTIFICATE_EXPIRED,
                        message: format!(
                            "The app's certificate (thumbprint {}) expired on {}.",
                            cert.thumbprint(),
                            cert.not_after().format("%Y-%m-%d %H:%M UTC")
                        ),
                    });
                }
                let token_url = format!(
                    "{}/{}/oauth2/v2.0/token",
                    self.login_base,
                    app.tenant.as_str()
                );
                let assertion = cert
                    .client_assertion(app.client_id.as_str(), &token_url, now)
                    .map_err(|err| OAuthError::Config(err.to_string()))?;
                Ok((client, Some(assertion)))
            }
        }
    }

    /// Redeems an authorization code.
    pub async fn redeem_code(
        &self,
        app: AppCredentials<'_>,
        code: &str,
        verifier: &PkceVerifier,
    ) -> Result<TokenGrant, OAuthError> {
        let (client, assertion) = self.authenticated(app)?;
        let meta = Mutex::new(None);
        let http = |request| self.execute(request, &meta, "authorization_code");
        let mut request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.expose().to_owned()));
        if let Some(assertion) = assertion {
            request = request
                .add_extra_param("client_assertion_type", JWT_BEARER)
                .add_extra_param("client_assertion", assertion);
        }
        let result = request.request_async(&http).await;
        self.grant(result, &meta, &self.scope_string())
    }

    /// Uses a refresh token. The answer carries a rotated refresh token to persist before use.
    pub async fn refresh(
        &self,
        app: AppCredentials<'_>,
        refresh_token: &RefreshToken,
    ) -> Result<TokenGrant, OAuthError> {
        self.refresh_for(Transport::Graph, app, refresh_token).await
    }

    /// [`refresh`](Self::refresh) asking for an access token of `transport`'s resource: a refresh
    /// token is not tied to one resource, so the same grant serves Graph and IMAP when the app is
    /// consented for both (otherwise Microsoft answers that consent is missing).
    pub async fn refresh_for(
        &self,
        transport: Transport,
        app: AppCredentials<'_>,
        refresh_token: &RefreshToken,
    ) -> Result<TokenGrant, OAuthError> {
        let (client, assertion) = self.authenticated(app)?;
        let meta = Mutex::new(None);
        let http = |request| self.execute(request, &meta, "refresh_token");
        let token = oauth2::RefreshToken::new(refresh_token.expose().to_owned());
        let mut request = client
            .exchange_refresh_token(&token)
            .add_scope(Scope::new("offline_access".to_owned()))
            .add_scope(Scope::new(self.resource_scope(transport).to_owned()));
        if let Some(assertion) = assertion {
            request = request
                .add_extra_param("client_assertion_type", JWT_BEARER)
                .add_extra_param("client_assertion", assertion);
        }
        let result = request.request_async(&http).await;
        self.grant(result, &meta, &self.scope_string_for(transport))
    }

    /// Sends one token request of `grant` (one of
    /// [`TOKEN_GRANTS`](crate::telemetry::metrics::TOKEN_GRANTS)) on the shared client, noting its
    /// status and `Retry-After`, and counts it with its status class and duration.
    async fn execute(
        &self,
        request: HttpRequest,
        meta: &Mutex<Option<(u16, Option<Duration>)>>,
        grant: &'static str,
    ) -> Result<HttpResponse, HttpFailure> {
        let started = std::time::Instant::now();
        let result = self.exchange(request, meta).await;
        let status = meta.lock().ok().and_then(|slot| *slot).map(|(s, _)| s);
        crate::telemetry::metrics::token_request(grant, status, started.elapsed());
        result
    }

    /// [`execute`](Self::execute) without the counting.
    async fn exchange(
        &self,
        request: HttpRequest,
        meta: &Mutex<Option<(u16, Option<Duration>)>>,
    ) -> Result<HttpResponse, HttpFailure> {
        let mut request =
            reqwest::Request::try_from(request).map_err(|err| HttpFailure(err.to_string()))?;
        *request.timeout_mut() = Some(self.timeout);
        let response = self.http.execute(request).await.map_err(|err| {
            if err.is_timeout() {
                HttpFailure("timeout".to_owned())
            } else {
                HttpFailure(crate::retry::error_chain(&err.without_url()))
            }
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::retry::parse_retry_after(v, Utc::now()));
        if let Ok(mut slot) = meta.lock() {
            *slot = Some((status.as_u16(), retry_after));
        }
        let mut builder = oauth2::http::Response::builder().status(status.as_u16());
        for (name, value) in response.headers() {
            builder = builder.header(name.as_str(), value.as_bytes());
        }
        let body = response
            .bytes()
            .await
            .map_err(|err| HttpFailure(crate::retry::error_chain(&err.without_url())))?;
        builder
            .body(body.to_vec())
            .map_err(|err| HttpFailure(err.to_string()))
    }

    fn grant(
        &self,
        result: Result<BasicTokenResponse, RequestTokenError<HttpFailure, MicrosoftErrorResponse>>,
        meta: &Mutex<Option<(u16, Option<Duration>)>>,
        requested: &str,
    ) -> Result<TokenGrant, OAuthError> {
        let (status, retry_after) = meta.lock().ok().and_then(|slot| *slot).unzip();
        let retry_after = retry_after.flatten();
        match result {
            Ok(response) => {
                let access_token = AccessToken::new(response.access_token().secret().clone())
                    .map_err(|_| OAuthError::Malformed("the access token is empty".to_owned()))?;
                let refresh_token = response
                    .refresh_token()
                    .and_then(|token| RefreshToken::new(token.secret().clone()).ok());
                let scope = response
                    .scopes()
                    .map(|scopes| {
                        scopes
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_else(|| requested.to_owned());
                // Without `expires_in`, assume the shortest lifetime Microsoft issues (1 hour).
                let expires_in = response.expires_in().unwrap_or(Duration::from_secs(3600));
                Ok(TokenGrant {
                    access_token,
                    expires_in,
                    refresh_token,
                    scope,
                })
            }
            Err(RequestTokenError::ServerResponse(body)) => Err(OAuthError::Refused(Box::new(
                failure_from_body(body, status, retry_after),
            ))),
            Err(RequestTokenError::Request(HttpFailure(text))) if text == "timeout" => {
                Err(OAuthError::Timeout)
            }
            Err(RequestTokenError::Request(HttpFailure(text))) => Err(OAuthError::Transport(text)),
            Err(RequestTokenError::Parse(..)) | Err(RequestTokenError::Other(_))
                if status.is_some_and(|s| s >= 400) =>
            {
                let status = status.unwrap_or(500);
                // A 429/5xx with a body that is not OAuth JSON: an outage page or a proxy.
                Err(OAuthError::Refused(Box::new(IdentityFailure {
                    http_status: Some(status),
                    error: if status == 408 || status == 429 || status >= 500 {
                        "temporarily_unavailable"
                    } else {
                        "invalid_request"
                    }
                    .to_owned(),
                    description: Some(format!("HTTP {status} without an OAuth error body")),
                    codes: Vec::new(),
                    trace_id: None,
                    correlation_id: None,
                    retry_after,
                })))
            }
            Err(RequestTokenError::Parse(err, _)) => Err(OAuthError::Malformed(err.to_string())),
            Err(RequestTokenError::Other(text)) => Err(OAuthError::Malformed(text)),
        }
    }
}

/// Builds the failure from Microsoft's error body.
pub fn failure_from_body(
    body: MicrosoftErrorResponse,
    http_status: Option<u16>,
    retry_after: Option<Duration>,
) -> IdentityFailure {
    let raw = body.error_description.unwrap_or_default();
    let mut codes = body.error_codes;
    if codes.is_empty() {
        codes = aadsts_codes(&raw);
    }
    IdentityFailure {
        http_status,
        error: body.error,
        description: Some(description_head(&raw)).filter(|d| !d.is_empty()),
        codes,
        trace_id: body
            .trace_id
            .or_else(|| description_field(&raw, "Trace ID:")),
        correlation_id: body
            .correlation_id
            .or_else(|| description_field(&raw, "Correlation ID:")),
        retry_after,
    }
}

/// The transport failure type handed through the oauth2 crate.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpFailure(String);

/// 32 random bytes, base64url: the `state` of one authorization.
fn random_state() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_authorize_url_names_the_tenant_pkce_scopes_and_the_mailbox() {
        let client = OAuthClient::new(
            reqwest::Client::new(),
            &HttpUrl::parse("https://login.microsoftonline.us").unwrap(),
            "https://graph.microsoft.us",
            "https://inboxd.example/oauth/callback",
            Duration::from_secs(5),
        );
        let tenant = TenantId::parse("contoso.com").unwrap();
        let app = ClientId::parse("00000000-0000-0000-0000-000000000001").unwrap();
        let start = client
            .authorize(
                &tenant,
                &app,
                &Mailbox::parse("support@contoso.com").unwrap(),
            )
            .unwrap();
        let url = url::Url::parse(&start.url).unwrap();
        assert_eq!(url.host_str(), Some("login.microsoftonline.us"));
        assert_eq!(url.path(), "/contoso.com/oauth2/v2.0/authorize");
        let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(
            query["scope"],
            "offline_access https://graph.microsoft.us/Mail.ReadWrite.Shared"
        );
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["response_mode"], "query");
        assert_eq!(query["login_hint"], "support@contoso.com");
        assert_eq!(query["state"], start.state);
        assert_eq!(
            query["redirect_uri"],
            "https://inboxd.example/oauth/callback"
        );
        assert!(start.state.len() >= 43);
        let again = client
            .authorize(
                &tenant,
                &app,
                &Mailbox::parse("support@contoso.com").unwrap(),
            )
            .unwrap();
        assert_ne!(again.state, start.state);
    }

    #[test]
    fn an_error_body_without_codes_gets_them_from_the_description() {
        let body: MicrosoftErrorResponse = serde_json::from_str(
            r#"{"error":"invalid_grant","error_description":"AADSTS70008: The provided authorization code or refresh token has expired.\r\nTrace ID: abc\r\nCorrelation ID: def\r\nTimestamp: 2024-01-01 00:00:00Z"}"#,
        )
        .unwrap();
        let failure = failure_from_body(body, Some(400), None);
        assert_eq!(failure.codes, vec![70008]);
        assert_eq!(failure.trace_id.as_deref(), Some("abc"));
        assert_eq!(failure.correlation_id.as_deref(), Some("def"));
        assert!(!failure.description.unwrap_or_default().contains("Trace ID"));
    }
}
