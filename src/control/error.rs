//! `control::Error`: why a control operation did nothing. Each variant answers the question a front
//! end asks of it: was the channel there ([`Error::NotFound`]), does another channel stand in the
//! way ([`Error::Conflict`], naming it), which field must the operator correct and how
//! ([`Error::Invalid`], with a stable code), is it worth trying again later
//! ([`Error::is_retriable`]), or is it a bug ([`Error::Internal`], whose cause only the log sees).
//! No variant carries a secret.

use crate::actors::messages::ControlError;
use crate::domain::{ChannelId, DomainError};

/// Why a control operation did nothing (every operation changes all or nothing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No channel has the id (or the thing asked for does not exist).
    #[error("{0}")]
    NotFound(String),
    /// Another channel stands in the way: it listens to the same mailbox already, or has the id.
    #[error("{message}")]
    Conflict {
        /// The channel that is in the way.
        existing: ChannelId,
        /// What conflicts and how to resolve it.
        message: String,
    },
    /// An app stands in the way: it exists already, holds another credential, or channels use it.
    #[error("{message}")]
    AppConflict {
        /// The app's id (`tenant/client`).
        app: String,
        /// What conflicts and how to resolve it.
        message: String,
    },
    /// The input is not valid.
    #[error("{message}")]
    Invalid {
        /// A stable, machine-readable code (`invalid_mailbox`, `invalid_date`, …).
        code: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// inboxd could not do it right now (the store refused a write, the supervisor is gone);
    /// nothing changed, trying again later may work.
    #[error("{0}")]
    Unavailable(String),
    /// The daemon is shutting down; nothing changed.
    #[error("inboxd is shutting down")]
    ShuttingDown,
    /// A bug or an unexpected failure; the cause is for the log, not for the operator.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Invalid input with its code.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            code,
            message: message.into(),
        }
    }

    /// A field that failed the domain's validation: the code and the message name the field.
    pub fn invalid_field(field: &'static str, err: DomainError) -> Self {
        let code = match field {
            "tenant_id" => "invalid_tenant_id",
            "client_id" => "invalid_client_id",
            "client_secret" => "invalid_client_secret",
            "mailbox" => "invalid_mailbox",
            "folder" => "invalid_folder",
            _ => "invalid_value",
        };
        Error::invalid(code, format!("{field}: {err}"))
    }

    /// No channel has the id `id`.
    pub fn no_channel(id: ChannelId) -> Self {
        Error::NotFound(format!("no channel has the id {id}"))
    }

    /// Whether the same request may succeed later without a change (nothing changed this time).
    pub fn is_retriable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::ShuttingDown)
    }
}

/// The supervisor's refusals, as the control layer reports them.
impl From<ControlError> for Error {
    fn from(err: ControlError) -> Self {
        let message = err.to_string();
        match err {
            ControlError::NotFound(_) => Error::NotFound(message),
            ControlError::Exists(existing) | ControlError::Duplicate(existing) => {
                Error::Conflict { existing, message }
            }
            ControlError::Invalid(message) => Error::invalid("invalid_request", message),
            ControlError::Store(_) => Error::Unavailable(message),
            ControlError::ShuttingDown => Error::ShuttingDown,
        }
    }
}

/// The supervisor did not answer (it stopped).
impl From<actix::MailboxError> for Error {
    fn from(err: actix::MailboxError) -> Self {
        Error::Unavailable(format!("the channel supervisor is not running: {err}"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_names_the_existing_channel_and_only_outages_are_retriable() {
        let first = ChannelId::generate();
        let err = Error::from(ControlError::Duplicate(first));
        assert!(matches!(err, Error::Conflict { existing, .. } if existing == first));
        assert!(err.to_string().contains(&first.to_string()));
        assert!(!err.is_retriable());
        assert!(Error::from(ControlError::Store("disk full".into())).is_retriable());
        assert!(Error::from(ControlError::ShuttingDown).is_retriable());
        assert!(!Error::no_channel(first).is_retriable());
        let invalid = Error::invalid_field(
            "mailbox",
            DomainError::InvalidMailbox("desk".into(), "it has no @"),
        );
        assert!(matches!(
            invalid,
            Error::Invalid {
                code: "invalid_mailbox",
                ..
            }
        ));
    }
}
