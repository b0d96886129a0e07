//! `OAuthError`: what the identity platform said (or why it could not be asked), and the policy
//! answers: retry? re-authorize? which status and remedy for the operator?

use std::time::Duration;

use crate::catalogue::{self, Classification};
use crate::domain::ChannelStatus;

/// Microsoft's answer to a failed token request or authorization, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFailure {
    /// The HTTP status of a token response (none for an `error=` redirect).
    pub http_status: Option<u16>,
    /// The OAuth `error` value (`invalid_grant`, `access_denied`, …).
    pub error: String,
    /// Microsoft's `error_description` (with the AADSTS text), trimmed of its trailer lines.
    pub description: Option<String>,
    /// Every AADSTS number Microsoft gave (`error_codes`, or parsed from the description).
    pub codes: Vec<u32>,
    /// Microsoft's trace id.
    pub trace_id: Option<String>,
    /// Microsoft's correlation id.
    pub correlation_id: Option<String>,
    /// A `Retry-After` on a 429/503.
    pub retry_after: Option<Duration>,
}

/// A failed call to the identity platform.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    /// Microsoft answered with an error.
    #[error("the identity platform refused: {}", .0.description.as_deref().unwrap_or(.0.error.as_str()))]
    Refused(Box<IdentityFailure>),
    /// Microsoft could not be reached.
    #[error("could not reach the identity platform: {0}")]
    Transport(String),
    /// No answer within the timeout.
    #[error("the identity platform did not answer within the timeout")]
    Timeout,
    /// The answer was not what an OAuth2 server sends.
    #[error("the identity platform's answer could not be read: {0}")]
    Malformed(String),
    /// inboxd could not build the request (a bad URL in the configuration).
    #[error("the OAuth request could not be built: {0}")]
    Config(String),
    /// The app's credential cannot be used (a certificate past its expiry, no app record): inboxd's
    /// own catalogue code says what to do.
    #[error("{message}")]
    Credential {
        /// The catalogue code (`catalogue::codes`).
        code: &'static str,
        /// What is wrong, for the operator.
        message: String,
    },
}

impl OAuthError {
    /// The catalogue's verdict on this failure.
    pub fn classify(&self) -> Classification {
        match self {
            OAuthError::Refused(failure) => catalogue::classify_identity_error(
                &failure.error,
                &failure.codes,
                failure.description.as_deref(),
                failure.http_status,
            ),
            OAuthError::Transport(_) | OAuthError::Timeout | OAuthError::Malformed(_) => {
                catalogue::classify_identity_error("temporarily_unavailable", &[], None, None)
            }
            OAuthError::Config(_) => {
                catalogue::classify_identity_error("invalid_request", &[], None, None)
            }
            OAuthError::Credential { code, .. } => Classification::of(code).unwrap_or_else(|| {
                catalogue::classify_identity_error("invalid_client", &[], None, None)
            }),
        }
    }

    /// Whether trying again later can succeed without anyone acting.
    pub fn is_retriable(&self) -> bool {
        self.classify().is_retriable()
    }

    /// The channel status this failure puts a channel in.
    pub fn status(&self) -> ChannelStatus {
        self.classify().status()
    }

    /// The `Retry-After` floor, if Microsoft sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            OAuthError::Refused(failure) => failure.retry_after,
            _ => None,
        }
    }

    /// Microsoft's trace and correlation ids, when given.
    pub fn ids(&self) -> (Option<String>, Option<String>) {
        match self {
            OAuthError::Refused(failure) => {
                (failure.trace_id.clone(), failure.correlation_id.clone())
            }
            _ => (None, None),
        }
    }

    /// A message for the operator: Microsoft's description when there is one.
    pub fn message(&self) -> String {
        match self {
            OAuthError::Refused(failure) => failure
                .description
                .clone()
                .unwrap_or_else(|| failure.error.clone()),
            other => other.to_string(),
        }
    }
}

/// Parses every `AADSTSnnnn` number out of a description.
pub fn aadsts_codes(description: &str) -> Vec<u32> {
    let mut codes = Vec::new();
    let mut rest = description;
    while let Some(at) = rest.find("AADSTS") {
        rest = &rest[at + "AADSTS".len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(code) = digits.parse::<u32>() {
            codes.push(code);
        }
    }
    codes
}

/// Microsoft's description without the `Trace ID:`/`Correlation ID:`/`Timestamp:` trailer lines.
pub fn description_head(description: &str) -> String {
    description
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|line| {
            !line.is_empty()
                && !line.starts_with("Trace ID:")
                && !line.starts_with("Correlation ID:")
                && !line.starts_with("Timestamp:")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The value of a `Trace ID: …` style trailer line in a description.
pub fn description_field(description: &str, label: &str) -> Option<String> {
    description
        .split(['\r', '\n'])
        .find_map(|line| line.trim().strip_prefix(label).map(|v| v.trim().to_owned()))
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_trailers_are_parsed_from_descriptions() {
        let text = "AADSTS70002: Error validating credentials. AADSTS50173: The provided grant has expired.\r\nTrace ID: t-1\r\nCorrelation ID: c-1\r\nTimestamp: 2024-01-01 00:00:00Z";
        assert_eq!(aadsts_codes(text), vec![70002, 50173]);
        assert_eq!(description_field(text, "Trace ID:").as_deref(), Some("t-1"));
        assert_eq!(
            description_field(text, "Correlation ID:").as_deref(),
            Some("c-1")
        );
        assert!(!description_head(text).contains("Trace ID"));
        assert!(aadsts_codes("no codes here").is_empty());
    }
}
