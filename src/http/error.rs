//! `ApiError`: every admin API failure, mapped to a status and `{"error": {"code", "message"}}`
//! ([`ErrorBody`], the shape the OpenAPI document gives every error); a control operation's
//! [`control::Error`] converts into it.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::control;
use crate::http::dto::ErrorBody;

/// A failed admin API request. The message says what was wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request was malformed or a value invalid.
    #[error("{message}")]
    BadRequest {
        /// A stable, machine-readable code.
        code: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// No or a wrong admin token.
    #[error(
        "missing or wrong admin token: send `Authorization: Bearer <token>` with the token from INBOXD_ADMIN_TOKEN"
    )]
    Unauthorized,
    /// Too many failed attempts from this address: it is blocked for a while, whatever it sends.
    #[error(
        "too many failed attempts with a wrong admin token from this address; try again in {} s",
        retry_after_secs(*retry_after)
    )]
    TooManyAttempts {
        /// How long the address stays blocked.
        retry_after: std::time::Duration,
    },
    /// No such channel.
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// inboxd could not do it right now (store, shutdown); nothing changed.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; the cause is logged, not shown.
    #[error("internal error; the cause is in inboxd's log")]
    Internal(String),
}

impl ApiError {
    /// A 400 with a code.
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthorized => "unauthorized",
            ApiError::TooManyAttempts { .. } => "too_many_attempts",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            tracing::error!(cause = %cause, "Admin API request failed.");
        }
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let ApiError::TooManyAttempts { retry_after } = self {
            response.insert_header(("Retry-After", retry_after_secs(*retry_after).to_string()));
        }
        response.json(ErrorBody::new(self.code(), self.to_string()))
    }
}

/// Whole seconds to announce in `Retry-After`: rounded up, at least 1.
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

impl From<control::Error> for ApiError {
    fn from(err: control::Error) -> Self {
        match err {
            control::Error::NotFound(message) => ApiError::NotFound(message),
            control::Error::Conflict { message, .. }
            | control::Error::AppConflict { message, .. } => ApiError::Conflict(message),
            control::Error::Invalid { code, message } => ApiError::BadRequest { code, message },
            control::Error::Unavailable(message) => ApiError::Unavailable(message),
            control::Error::ShuttingDown => ApiError::Unavailable(err.to_string()),
            control::Error::Internal(cause) => ApiError::Internal(cause),
        }
    }
}
