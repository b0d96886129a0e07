//! `GraphError`: what went wrong talking to Graph, and the policy answers (retry? refresh? when?).

use std::time::Duration;

/// The code inboxd gives a 401 whose `WWW-Authenticate` carries a Conditional Access claims
/// challenge (`error="insufficient_claims"`).
pub const INSUFFICIENT_CLAIMS: &str = "insufficient_claims";

/// The ids of one Graph request, as Microsoft support asks for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestIds {
    /// Graph's `request-id` (response header, or the error's inner error).
    pub request_id: Option<String>,
    /// The `client-request-id` inboxd sent (echoed by Graph).
    pub client_request_id: Option<String>,
}

/// A failed Graph request. Branch on the methods, never on the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// 429: throttled (Outlook's `ApplicationThrottled` or `TooManyRequests`).
    #[error("Graph throttled the request ({code}); retry after {retry_after:?}")]
    Throttled {
        /// Graph's error code.
        code: String,
        /// The `Retry-After` Graph sent, if any: a floor for the next try.
        retry_after: Option<Duration>,
        /// Graph's `request-id` and the `client-request-id` inboxd sent, for Microsoft support.
        ids: RequestIds,
    },
    /// 401: the access token was refused (expired, revoked or for another audience).
    #[error("Graph refused the access token ({code}): {message}")]
    Unauthorized {
        /// Graph's error code, usually `InvalidAuthenticationToken`.
        code: String,
        /// Graph's message.
        message: String,
        /// Graph's `request-id` and the `client-request-id` inboxd sent, for Microsoft support.
        ids: RequestIds,
    },
    /// 403: the signed-in user may not read this mailbox.
    #[error("Graph denied access to the mailbox ({code}): {message}")]
    Forbidden {
        /// Graph's error code, e.g. `ErrorAccessDenied`.
        code: String,
        /// Graph's message.
        message: String,
        /// Graph's `request-id` and the `client-request-id` inboxd sent, for Microsoft support.
        ids: RequestIds,
    },
    /// 404: the mailbox, folder or message does not exist.
    #[error("Graph found no such item ({code}): {message}")]
    NotFound {
        /// Graph's error code, e.g. `ErrorItemNotFound`.
        code: String,
        /// Graph's message.
        message: String,
        /// Graph's `request-id` and the `client-request-id` inboxd sent, for Microsoft support.
        ids: RequestIds,
    },
    /// 5xx: Graph failed; transient.
    #[error("Graph failed with HTTP {status} ({code})")]
    Server {
        /// The status.
        status: u16,
        /// Graph's error code, possibly empty.
        code: String,
        /// The `Retry-After` Graph sent, if any.
        retry_after: Option<Duration>,
        /// Graph's `request-id` and the `client-request-id` inboxd sent, for Microsoft support.
        ids: RequestIds,
    },
    /// Another 4xx: the request was wrong; retrying the same request will not help.
    #[error("Graph rejected the request with HTTP {status} ({code}): {message}")]
    Rejected {
        /// The status.
        status: u16,
        /// Graph's error code.
        code: String,
        /// Graph's message.
        message: String,
        /// Graph's `request-id` and the `client-request-id` inboxd sent, for Microsoft support.
        ids: RequestIds,
    },
    /// No answer within the configured timeout.
    #[error("Graph did not answer within the timeout")]
    Timeout,
    /// The connection failed or was reset.
    #[error("could not reach Graph: {0}")]
    Transport(String),
    /// The answer was not the JSON Graph sends (truncated, malformed, or a link to another host).
    #[error("Graph's answer could not be read: {0}")]
    Decode(String),
}

impl GraphError {
    /// Whether trying again later can succeed without anyone acting.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            GraphError::Throttled { .. }
                | GraphError::Server { .. }
                | GraphError::Timeout
                | GraphError::Transport(_)
                | GraphError::Decode(_)
        )
    }

    /// The `Retry-After` floor, if Graph sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GraphError::Throttled { retry_after, .. } | GraphError::Server { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// Whether the access token should be refreshed and the request tried once more. Not for a
    /// Conditional Access claims challenge (`insufficient_claims`): only a new sign-in meets it.
    pub fn needs_token_refresh(&self) -> bool {
        matches!(self, GraphError::Unauthorized { code, .. } if code != INSUFFICIENT_CLAIMS)
    }

    /// Graph's `request-id` and inboxd's `client-request-id` of the failed request, when known.
    pub fn request_ids(&self) -> Option<&RequestIds> {
        match self {
            GraphError::Throttled { ids, .. }
            | GraphError::Unauthorized { ids, .. }
            | GraphError::Forbidden { ids, .. }
            | GraphError::NotFound { ids, .. }
            | GraphError::Server { ids, .. }
            | GraphError::Rejected { ids, .. } => Some(ids),
            GraphError::Timeout | GraphError::Transport(_) | GraphError::Decode(_) => None,
        }
    }

    /// Whether this was throttling (counted apart from failures in metrics and status).
    pub fn is_throttled(&self) -> bool {
        matches!(self, GraphError::Throttled { .. })
    }

    /// The HTTP status, when there was one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            GraphError::Throttled { .. } => Some(429),
            GraphError::Unauthorized { .. } => Some(401),
            GraphError::Forbidden { .. } => Some(403),
            GraphError::NotFound { .. } => Some(404),
            GraphError::Server { status, .. } | GraphError::Rejected { status, .. } => {
                Some(*status)
            }
            GraphError::Timeout | GraphError::Transport(_) | GraphError::Decode(_) => None,
        }
    }

    /// Graph's error code, or a name of inboxd's for failures without one.
    pub fn code(&self) -> &str {
        match self {
            GraphError::Throttled { code, .. }
            | GraphError::Unauthorized { code, .. }
            | GraphError::Forbidden { code, .. }
            | GraphError::NotFound { code, .. }
            | GraphError::Server { code, .. }
            | GraphError::Rejected { code, .. }
                if !code.is_empty() =>
            {
                code
            }
            GraphError::Throttled { .. } => "TooManyRequests",
            GraphError::Unauthorized { .. } => "InvalidAuthenticationToken",
            GraphError::Forbidden { .. } => "ErrorAccessDenied",
            GraphError::NotFound { .. } => "ErrorItemNotFound",
            GraphError::Server { .. } => "serviceNotAvailable",
            GraphError::Rejected { .. } => "invalidRequest",
            GraphError::Timeout => "Timeout",
            GraphError::Transport(_) => "ConnectionFailed",
            GraphError::Decode(_) => "MalformedResponse",
        }
    }
}
