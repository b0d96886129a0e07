//! The error every domain constructor returns.

/// A value from outside could not be accepted. The message says what was wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The tenant id is neither a GUID nor a domain name.
    #[error(
        "tenant id {0:?} is not valid: use the Directory (tenant) ID GUID from the app's Overview page in the Azure portal, or a verified domain such as contoso.com"
    )]
    InvalidTenant(String),
    /// A multi-tenant alias was given where one tenant is required.
    #[error(
        "tenant id {0:?} is a multi-tenant alias: inboxd always signs in at one tenant's own authority so that tokens, consent and Conditional Access apply to the mailbox's directory; use the Directory (tenant) ID GUID from the app's Overview page in the Azure portal"
    )]
    MultiTenantAlias(String),
    /// The client id is not a GUID.
    #[error(
        "client id {0:?} is not valid: use the Application (client) ID, a GUID such as 00000000-0000-0000-0000-000000000000, from the app's Overview page in the Azure portal"
    )]
    InvalidClientId(String),
    /// The mailbox is not an e-mail address.
    #[error(
        "mailbox {0:?} is not valid: {1}; give the mailbox's address, e.g. support@contoso.com"
    )]
    InvalidMailbox(String, &'static str),
    /// The folder is not a folder name or id Graph accepts.
    #[error(
        "folder {0:?} is not valid: {1}; use a well-known folder name such as inbox, or a folder id"
    )]
    InvalidFolder(String, &'static str),
    /// The channel id is not one inboxd issued.
    #[error(
        "channel id {0:?} is not valid: channel ids are the UUIDs shown by `inboxd channel list`"
    )]
    InvalidChannelId(String),
    /// A URL is malformed or has the wrong scheme.
    #[error("URL {0:?} is not valid: {1}")]
    InvalidUrl(String, String),
    /// An app id is not `tenant/client`.
    #[error(
        "app id {0:?} is not valid: app ids are `tenant/client` (the Directory (tenant) ID and the Application (client) ID), as `inboxd app list` shows them"
    )]
    InvalidAppId(String),
    /// A secret was empty or malformed.
    #[error("{0} is not valid: {1}")]
    InvalidSecret(&'static str, &'static str),
}
