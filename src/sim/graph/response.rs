//! A Graph request and response as the simulator's handlers see them (the same for HTTP and for
//! `$batch` items), the request context with Graph's error and success shapes, and the one response
//! an injected fault produces.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::sim::faults::{DEFAULT_CLAIMS, FaultKind};
use crate::sim::state::{SimState, new_guid};
use crate::sim::util;

/// One Graph request, from HTTP or from a `$batch` item.
pub struct GraphRequest<'a> {
    pub method: &'a str,
    /// Path after `/v1.0`, starting with `/`.
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a dyn Fn(&str) -> Option<String>,
    pub body: &'a [u8],
    pub origin: &'a str,
    pub in_batch: bool,
    /// The HTTP request's arrival number ([`Throttle::arrive`](crate::sim::throttle::Throttle::arrive);
    /// a `$batch` item's is its batch's): a `Retry-After` handed out later does not make it early.
    pub arrival: u64,
}

/// What to send back.
#[derive(Debug)]
pub enum Body {
    Json(Value),
    Reset,
    Malformed,
}

/// A Graph response before it is turned into HTTP (or into a `$batch` item).
#[derive(Debug)]
pub struct GraphResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

/// Request-scoped ids and dates for error bodies and headers.
pub struct Ctx {
    pub request_id: String,
    pub client_request_id: String,
    pub now: DateTime<Utc>,
}

impl Ctx {
    /// A new context; echoes the client's `client-request-id`, from the header or else from the
    /// query parameter of that name (Graph takes either), and otherwise uses the request id.
    pub fn new(state: &SimState, headers: &dyn Fn(&str) -> Option<String>, query: &str) -> Self {
        let request_id = new_guid();
        let from_query = || {
            util::form_pairs(query.as_bytes())
                .into_iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("client-request-id"))
                .map(|(_, v)| v)
        };
        Self {
            client_request_id: headers("client-request-id")
                .or_else(from_query)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| request_id.clone()),
            request_id,
            now: state.now(),
        }
    }

    /// Graph's error response.
    pub fn error(&self, status: u16, code: &str, message: &str) -> GraphResponse {
        let body = json!({
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": util::inner_error_date(self.now),
                    "request-id": self.request_id,
                    "client-request-id": self.client_request_id,
                }
            }
        });
        GraphResponse {
            status,
            headers: self.base_headers(),
            body: Body::Json(body),
        }
    }

    pub fn base_headers(&self) -> Vec<(String, String)> {
        vec![
            ("request-id".into(), self.request_id.clone()),
            ("client-request-id".into(), self.client_request_id.clone()),
            (
                "Content-Type".into(),
                "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8".into(),
            ),
        ]
    }

    pub fn ok(&self, body: Value, extra: Vec<(String, String)>) -> GraphResponse {
        let mut headers = self.base_headers();
        headers.push(("OData-Version".into(), "4.0".into()));
        headers.extend(extra);
        GraphResponse {
            status: 200,
            headers,
            body: Body::Json(body),
        }
    }

    pub fn throttled(&self, retry_after: Option<f64>, code: &str, message: &str) -> GraphResponse {
        let mut r = if code == "TooManyRequests" {
            let body = json!({
                "error": {
                    "code": "TooManyRequests",
                    "message": message,
                    "innerError": {
                        "code": "429",
                        "date": util::inner_error_date(self.now),
                        "message": "Please retry after",
                        "request-id": self.request_id,
                        "client-request-id": self.client_request_id,
                        "status": "429",
                    }
                }
            });
            GraphResponse {
                status: 429,
                headers: self.base_headers(),
                body: Body::Json(body),
            }
        } else {
            self.error(429, code, message)
        };
        if let Some(s) = retry_after {
            r.headers
                .push(("Retry-After".into(), util::retry_after_value(s)));
        }
        r
    }
}

/// The response an injected fault gives on Graph: one shape for a request, a `$batch` item and
/// `$batch` itself. `None` for faults that do not answer a Graph request (latency, which the caller
/// has already waited, and the identity platform's kinds). `on_retry_after` hears every
/// `Retry-After` handed out, so the caller can record when the client may come back.
pub fn fault_response(
    ctx: &Ctx,
    fault: &FaultKind,
    on_retry_after: impl FnOnce(f64),
) -> Option<GraphResponse> {
    match fault {
        FaultKind::Throttle { retry_after } => {
            if let Some(secs) = retry_after {
                on_retry_after(*secs);
            }
            Some(ctx.throttled(*retry_after, "TooManyRequests", "Please retry again later."))
        }
        FaultKind::Status {
            status,
            retry_after,
            code,
        } => {
            let (default_code, msg) = match status {
                503 => (
                    "serviceNotAvailable",
                    "The service is temporarily unavailable. Please retry later.",
                ),
                504 => ("UnknownError", "The gateway timed out."),
                429 => ("TooManyRequests", "Please retry again later."),
                _ => (
                    "generalException",
                    "An internal server error occurred. The operation failed.",
                ),
            };
            let mut r = ctx.error(*status, code.as_deref().unwrap_or(default_code), msg);
            if let Some(secs) = retry_after {
                on_retry_after(*secs);
                r.headers
                    .push(("Retry-After".into(), util::retry_after_value(*secs)));
            }
            Some(r)
        }
        FaultKind::Reset => Some(GraphResponse {
            status: 200,
            headers: ctx.base_headers(),
            body: Body::Reset,
        }),
        FaultKind::Malformed => Some(GraphResponse {
            status: 200,
            headers: ctx.base_headers(),
            body: Body::Malformed,
        }),
        FaultKind::InsufficientClaims { claims } => {
            let claims = claims.as_deref().unwrap_or(DEFAULT_CLAIMS);
            let mut r = ctx.error(
                401,
                "InvalidAuthenticationToken",
                "Continuous access evaluation resulted in challenge with result: InteractionRequired and code: insufficient_claims",
            );
            r.headers.push((
                "WWW-Authenticate".into(),
                format!(
                    "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", error=\"insufficient_claims\", claims=\"{}\"",
                    STANDARD.encode(claims)
                ),
            ));
            Some(r)
        }
        FaultKind::Latency { .. }
        | FaultKind::Aadsts { .. }
        | FaultKind::InteractionRequired { .. }
        | FaultKind::ExpiredSecret
        | FaultKind::ImapNo { .. }
        | FaultKind::ImapBye { .. }
        | FaultKind::Down => None,
    }
}
