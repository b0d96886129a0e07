//! Domain types: plain, validated data with no I/O and no serde.
//!
//! Every value that comes from outside (an operator, a config file, the admin API) is parsed into one
//! of these types once, at the edge, and the rest of the crate takes the type rather than a string.
//! Each constructor returns a [`DomainError`] that says what is wrong and how to fix it.
//! Secrets live in [`secret`]: their `Debug` and `Display` print a redaction.

pub mod credential;
mod error;
mod ids;
mod mail;
pub mod secret;
mod status;

pub use credential::{AppCredential, ClientCertificate, CredentialError, CredentialKind};
pub use error::DomainError;
pub use ids::{ChannelId, ClientId, Folder, HttpUrl, Mailbox, TenantId};
pub use mail::{Address, Attachment, MailItem};
pub use status::{ChannelStatus, PollMode, Transport};
