//! `ImapError`: everything that can go wrong talking IMAP to a mailbox, with the policy questions
//! the cycle asks (retry? a new token? throttled? for how long?) and the catalogue code an operator
//! looks up. Exchange Online answers every refused XOAUTH2 the same (`NO AUTHENTICATE failed.`),
//! so the usual causes are the catalogue entry's remedy, not separate variants.

use std::time::Duration;

/// Why an IMAP exchange failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImapError {
    /// The server could not be reached: name resolution, a refused or reset connection, a timeout
    /// while connecting.
    #[error("could not connect to the IMAP server {server}: {detail}")]
    Connect {
        /// `host:port`.
        server: String,
        /// What failed.
        detail: String,
    },
    /// The TLS handshake failed: the server's certificate is not trusted, expired or for another
    /// name, or the server does not speak TLS on that port.
    #[error("TLS with the IMAP server {server} failed: {detail}")]
    Tls {
        /// `host:port`.
        server: String,
        /// What the TLS layer said.
        detail: String,
    },
    /// The server refused the XOAUTH2 credentials (`NO AUTHENTICATE failed.`).
    #[error("the IMAP server refused the sign-in (AUTHENTICATE failed): {text}")]
    AuthenticateFailed {
        /// The server's words.
        text: String,
    },
    /// The server throttles this mailbox or app (Exchange: `NO Server Unavailable. 15`, `Request
    /// is throttled. Suggested Backoff Time: N milliseconds`).
    #[error("the IMAP server is throttling: {text}")]
    Throttled {
        /// The server's words.
        text: String,
        /// The backoff the server suggested, if it did.
        retry_after: Option<Duration>,
    },
    /// The server closed the connection (`* BYE`, or the connection dropped mid-command).
    #[error("the IMAP server closed the connection: {text}")]
    Bye {
        /// The server's words, or what was seen.
        text: String,
    },
    /// The folder could not be selected (it does not exist, or the user cannot open it).
    #[error("the IMAP server refused to open folder {folder}: {text}")]
    Folder {
        /// The folder asked for.
        folder: String,
        /// The server's words.
        text: String,
    },
    /// The server answered `NO` or `BAD` to another command, or something inboxd cannot read.
    #[error("the IMAP server failed a command: {text}")]
    Protocol {
        /// The server's words.
        text: String,
    },
    /// A command did not finish in time.
    #[error("the IMAP server did not answer within {0:?}")]
    Timeout(Duration),
}

/// Catalogue codes of the IMAP errors (`src/catalogue/table.rs`).
pub mod codes {
    /// The server refused the XOAUTH2 sign-in.
    pub const AUTHENTICATE_FAILED: &str = "ImapAuthenticateFailed";
    /// The server throttles.
    pub const THROTTLED: &str = "ImapThrottled";
    /// The server closed the connection.
    pub const BYE: &str = "ImapBye";
    /// The server's certificate or TLS failed.
    pub const TLS: &str = "ImapTlsFailed";
    /// The server could not be reached.
    pub const CONNECT: &str = "ImapConnectFailed";
    /// The folder could not be opened.
    pub const FOLDER: &str = "ImapFolderUnavailable";
    /// Another command failed.
    pub const PROTOCOL: &str = "ImapCommandFailed";
}

impl ImapError {
    /// The catalogue code.
    pub fn code(&self) -> &'static str {
        match self {
            ImapError::Connect { .. } | ImapError::Timeout(_) => codes::CONNECT,
            ImapError::Tls { .. } => codes::TLS,
            ImapError::AuthenticateFailed { .. } => codes::AUTHENTICATE_FAILED,
            ImapError::Throttled { .. } => codes::THROTTLED,
            ImapError::Bye { .. } => codes::BYE,
            ImapError::Folder { .. } => codes::FOLDER,
            ImapError::Protocol { .. } => codes::PROTOCOL,
        }
    }

    /// Whether a fresh access token may fix it: a refused XOAUTH2 is most often an expired token
    /// or one for another resource; refresh and try once more before telling the operator.
    pub fn needs_token_refresh(&self) -> bool {
        matches!(self, ImapError::AuthenticateFailed { .. })
    }

    /// Whether the server throttles.
    pub fn is_throttled(&self) -> bool {
        matches!(self, ImapError::Throttled { .. })
    }

    /// Whether trying again later may succeed (a certificate may be renewed, a firewall opened):
    /// inboxd backs off and tries again.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            ImapError::Connect { .. }
                | ImapError::Tls { .. }
                | ImapError::Throttled { .. }
                | ImapError::Bye { .. }
                | ImapError::Protocol { .. }
                | ImapError::Timeout(_)
        )
    }

    /// The backoff the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ImapError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Classifies a tagged `NO`/`BAD` answer's text to a command other than AUTHENTICATE.
    pub fn from_refusal(text: &str) -> ImapError {
        let lower = text.to_ascii_lowercase();
        if lower.contains("throttl") || lower.contains("server unavailable") {
            ImapError::Throttled {
                text: text.to_owned(),
                retry_after: suggested_backoff(text),
            }
        } else {
            ImapError::Protocol {
                text: text.to_owned(),
            }
        }
    }
}

/// Exchange's "Suggested Backoff Time: N milliseconds", if the text carries one.
pub fn suggested_backoff(text: &str) -> Option<Duration> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find("backoff time:")?;
    let rest = lower.get(at + "backoff time:".len()..)?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().ok()?;
    Some(Duration::from_millis(n))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn exchange_throttling_texts_are_throttling_with_their_backoff() {
        let err = ImapError::from_refusal(
            "Request is throttled. Suggested Backoff Time: 192 milliseconds",
        );
        assert!(err.is_throttled() && err.is_retriable());
        assert_eq!(err.retry_after(), Some(Duration::from_millis(192)));
        let err = ImapError::from_refusal("Server Unavailable. 15");
        assert!(err.is_throttled());
        assert_eq!(err.retry_after(), None);
        let err = ImapError::from_refusal("Command Error. 10");
        assert_eq!(err.code(), codes::PROTOCOL);
        assert!(!err.is_throttled());
    }

    #[test]
    fn every_imap_error_has_a_catalogue_entry_whose_policy_it_follows() {
        use crate::catalogue::{Retry, Source, lookup};
        let errors = [
            ImapError::Connect {
                server: "h:993".into(),
                detail: "refused".into(),
            },
            ImapError::Tls {
                server: "h:993".into(),
                detail: "unknown issuer".into(),
            },
            ImapError::AuthenticateFailed {
                text: "AUTHENTICATE failed.".into(),
            },
            ImapError::from_refusal("Server Unavailable. 15"),
            ImapError::Bye {
                text: "Connection is closed. 13".into(),
            },
            ImapError::Folder {
                folder: "Tickets".into(),
                text: "Mailbox doesn't exist".into(),
            },
            ImapError::from_refusal("Command Error. 10"),
            ImapError::Timeout(Duration::from_secs(30)),
        ];
        for err in errors {
            let entry = lookup(err.code())
                .unwrap_or_else(|| panic!("{} is not in the catalogue", err.code()));
            assert_eq!(entry.source, Source::Imap, "{}", err.code());
            assert_eq!(
                err.is_retriable(),
                entry.retry == Retry::Backoff,
                "{}: is_retriable disagrees with the catalogue",
                err.code()
            );
            assert_eq!(
                err.needs_token_refresh(),
                entry.retry == Retry::RefreshThenRetryOnce,
                "{}",
                err.code()
            );
            assert!(!entry.remedy.is_empty());
        }
    }

    #[test]
    fn a_refused_sign_in_asks_for_a_new_token_and_is_not_retried_blindly() {
        let err = ImapError::AuthenticateFailed {
            text: "AUTHENTICATE failed.".into(),
        };
        assert!(err.needs_token_refresh());
        assert!(!err.is_retriable());
        assert_eq!(err.code(), codes::AUTHENTICATE_FAILED);
    }
}
