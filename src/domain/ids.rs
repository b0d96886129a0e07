//! Identifiers and addresses: tenant, client, mailbox, folder, channel and URLs.

use std::fmt;
use std::sync::{Arc, LazyLock};

use crate::domain::DomainError;

/// Parses a GUID in its canonical 8-4-4-4-12 hex form and returns it lowercased, in one allocation.
fn parse_guid(raw: &str) -> Option<Arc<str>> {
    // `try_parse` also takes the braced, URN and simple forms; Azure shows the hyphenated one only.
    if raw.len() != 36 {
        return None;
    }
    let parsed = uuid::Uuid::try_parse(raw).ok()?;
    let mut buf = uuid::Uuid::encode_buffer();
    Some(Arc::from(&*parsed.hyphenated().encode_lower(&mut buf)))
}

/// `raw` lowercased (ASCII), in one allocation.
fn lowercase(raw: &str) -> Arc<str> {
    if raw.bytes().any(|b| b.is_ascii_uppercase()) {
        Arc::from(raw.to_ascii_lowercase())
    } else {
        Arc::from(raw)
    }
}

/// Whether `raw` is a DNS domain with at least two labels (a verified domain such as contoso.com).
fn is_domain(raw: &str) -> bool {
    if raw.len() > 253 || !raw.contains('.') {
        return false;
    }
    raw.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// The Azure directory (tenant) a channel's app and mailbox live in: a GUID or a verified domain.
/// The multi-tenant aliases `common`, `organizations` and `consumers` are refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// Validates a tenant id. GUIDs and domains are lowercased.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let trimmed = raw.trim();
        if ["common", "organizations", "consumers"]
            .iter()
            .any(|alias| trimmed.eq_ignore_ascii_case(alias))
        {
            return Err(DomainError::MultiTenantAlias(trimmed.to_owned()));
        }
        if let Some(guid) = parse_guid(trimmed) {
            return Ok(TenantId(guid));
        }
        if is_domain(trimmed) {
            return Ok(TenantId(lowercase(trimmed)));
        }
        Err(DomainError::InvalidTenant(trimmed.to_owned()))
    }

    /// The tenant as a shared string (a clone of the same allocation, as limiter keys take it).
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }

    /// The tenant as it goes into a URL path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The application (client) id of an Azure app registration: a GUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(Arc<str>);

impl ClientId {
    /// Validates a client id and lowercases it.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let trimmed = raw.trim();
        parse_guid(trimmed)
            .map(ClientId)
            .ok_or_else(|| DomainError::InvalidClientId(trimmed.to_owned()))
    }

    /// The id as a shared string (a clone of the same allocation, as limiter keys take it).
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }

    /// The id as sent to the identity platform.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The address of the mailbox a channel listens to, lowercased (addresses are case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mailbox(Arc<str>);

impl Mailbox {
    /// Validates an e-mail address in the form Graph's `/users/{upn}` accepts.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let trimmed = raw.trim();
        let invalid = |why| DomainError::InvalidMailbox(trimmed.to_owned(), why);
        if trimmed.is_empty() {
            return Err(invalid("it is empty"));
        }
        if trimmed.len() > 254 {
            return Err(invalid("it is longer than 254 characters"));
        }
        let Some((local, domain)) = trimmed.rsplit_once('@') else {
            return Err(invalid("it has no @"));
        };
        if local.is_empty() || local.len() > 64 {
            return Err(invalid("the part before @ must be 1 to 64 characters"));
        }
        let local_ok = local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        if !local_ok {
            return Err(invalid(
                "the part before @ has a character an address cannot hold",
            ));
        }
        if !is_domain(domain) {
            return Err(invalid("the part after @ is not a domain name"));
        }
        Ok(Mailbox(lowercase(trimmed)))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address as a shared string (a clone of the same allocation, as limiter keys take it).
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A mail folder: a well-known name (`inbox`, `archive`, …) or a Graph folder id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Folder(Arc<str>);

/// The well-known folders' names, allocated once: nearly every channel listens to one of them, so
/// their records and status rows share these instead of holding a copy each.
static WELL_KNOWN_SHARED: LazyLock<[Arc<str>; 7]> =
    LazyLock::new(|| Folder::WELL_KNOWN.map(Arc::from));

impl Folder {
    /// Graph's well-known folder names that make sense to ingest from.
    pub const WELL_KNOWN: [&'static str; 7] = [
        "inbox",
        "archive",
        "junkemail",
        "clutter",
        "conversationhistory",
        "scheduled",
        "searchfolders",
    ];

    /// The default folder.
    pub fn inbox() -> Self {
        Folder(Arc::clone(&WELL_KNOWN_SHARED[0]))
    }

    /// Validates a folder name or id. Well-known names are lowercased; ids are case-sensitive.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let trimmed = raw.trim();
        let invalid = |why| DomainError::InvalidFolder(trimmed.to_owned(), why);
        if trimmed.is_empty() {
            return Err(invalid("it is empty"));
        }
        if trimmed.len() > 512 {
            return Err(invalid("it is longer than 512 characters"));
        }
        if let Some(shared) = WELL_KNOWN_SHARED
            .iter()
            .find(|name| trimmed.eq_ignore_ascii_case(name))
        {
            return Ok(Folder(Arc::clone(shared)));
        }
        let id_ok = trimmed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=' | '+' | '.'));
        if !id_ok {
            return Err(invalid(
                "a folder id holds only letters, digits and - _ = + . (a display name such as \"My Folder\" is not an id)",
            ));
        }
        Ok(Folder(Arc::from(trimmed)))
    }

    /// The folder as it goes into a Graph URL path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Folder {
    fn default() -> Self {
        Folder::inbox()
    }
}

impl fmt::Display for Folder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id inboxd gives a channel: a UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(uuid::Uuid);

impl ChannelId {
    /// A fresh random id.
    pub fn generate() -> Self {
        ChannelId(uuid::Uuid::new_v4())
    }

    /// Parses an id shown by the API or the CLI.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let trimmed = raw.trim();
        uuid::Uuid::try_parse(trimmed)
            .map(ChannelId)
            .map_err(|_| DomainError::InvalidChannelId(trimmed.to_owned()))
    }

    /// The 16 bytes of the id, for keys that sort and hash well.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// Rebuilds an id from its 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        ChannelId(uuid::Uuid::from_bytes(bytes))
    }

    /// A stable 64-bit number derived from the id (for spreading work deterministically).
    pub fn stable_hash(&self) -> u64 {
        let (hi, lo) = self.0.as_u64_pair();
        hi ^ lo.rotate_left(17)
    }

    /// A stable number in `0..1` for this channel, used to spread its work over time; `salt`
    /// gives independent spreads for different purposes.
    pub fn stable_fraction(&self, salt: u64) -> f64 {
        let mixed = (self.stable_hash() ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// An absolute `http` or `https` URL with a host, and neither query nor fragment: an origin or a base.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpUrl(url::Url);

impl HttpUrl {
    /// Validates a base URL. A trailing `/` is removed so that paths can be appended.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let trimmed = raw.trim();
        let invalid = |why: &str| DomainError::InvalidUrl(trimmed.to_owned(), why.to_owned());
        let parsed = url::Url::parse(trimmed).map_err(|err| invalid(&format!("{err}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("it has no host"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid("a base URL takes no ?query or #fragment"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid("a base URL takes no user name or password"));
        }
        Ok(HttpUrl(parsed))
    }

    /// The URL without a trailing slash, ready for `format!("{}/path", url.base())`.
    pub fn base(&self) -> &str {
        self.0.as_str().trim_end_matches('/')
    }

    /// The parsed URL.
    pub fn as_url(&self) -> &url::Url {
        &self.0
    }

    /// Whether requests to this URL stay on this machine.
    pub fn is_loopback(&self) -> bool {
        match self.0.host() {
            Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_accepts_guid_and_domain_and_refuses_aliases() {
        let guid = TenantId::parse("72F988BF-86F1-41AF-91AB-2D7CD011DB47").map(|t| t.to_string());
        assert_eq!(guid, Ok("72f988bf-86f1-41af-91ab-2d7cd011db47".to_owned()));
        assert_eq!(
            TenantId::parse("Contoso.com").map(|t| t.to_string()),
            Ok("contoso.com".to_owned())
        );
        for alias in ["common", "Organizations", "consumers"] {
            let err = TenantId::parse(alias)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("multi-tenant alias"), "{err}");
        }
        assert!(TenantId::parse("not a tenant").is_err());
        assert!(TenantId::parse("{72f988bf-86f1-41af-91ab-2d7cd011db47}").is_err());
    }

    #[test]
    fn client_id_must_be_a_guid() {
        assert!(ClientId::parse("00000000-0000-0000-0000-000000000001").is_ok());
        let err = ClientId::parse("my-app")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("Application (client) ID"), "{err}");
    }

    #[test]
    fn mailbox_validates_and_lowercases() {
        assert_eq!(
            Mailbox::parse(" Support@Contoso.com ").map(|m| m.to_string()),
            Ok("support@contoso.com".into())
        );
        for bad in [
            "",
            "nobody",
            "a@b",
            "a b@contoso.com",
            "@contoso.com",
            "a..b@contoso.com",
        ] {
            assert!(Mailbox::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn folder_accepts_well_known_names_and_ids() {
        assert_eq!(
            Folder::parse("Inbox").map(|f| f.to_string()),
            Ok("inbox".into())
        );
        assert_eq!(
            Folder::parse("AAMkAGI2=").map(|f| f.to_string()),
            Ok("AAMkAGI2=".into())
        );
        assert!(Folder::parse("My Folder").is_err());
        assert!(Folder::parse("../x").is_err());
    }

    #[test]
    fn urls_are_http_bases() {
        assert_eq!(
            HttpUrl::parse("https://login.microsoftonline.com/").map(|u| u.to_string()),
            Ok("https://login.microsoftonline.com".into())
        );
        assert!(HttpUrl::parse("ftp://x.example").is_err());
        assert!(HttpUrl::parse("https://x.example/?a=b").is_err());
        assert!(HttpUrl::parse("not a url").is_err());
        assert!(
            HttpUrl::parse("http://127.0.0.1:9")
                .map(|u| u.is_loopback())
                .unwrap_or(false)
        );
    }

    #[test]
    fn channel_id_round_trips() {
        let id = ChannelId::generate();
        assert_eq!(ChannelId::parse(&id.to_string()), Ok(id));
        assert_eq!(ChannelId::from_bytes(*id.as_bytes()), id);
        assert!(ChannelId::parse("42").is_err());
    }
}
