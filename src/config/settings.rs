//! The typed, validated [`Settings`] and their construction from the merged raw values.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::keys::{self, Kind};
use crate::config::{ConfigProblem, Origin, Raw, show};
use crate::domain::{HttpUrl, TenantId};

/// Everything inboxd is configured with, validated once at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `[server]`
    pub server: ServerSettings,
    /// `[store]`
    pub store: StoreSettings,
    /// `[cluster]`
    pub cluster: ClusterSettings,
    /// `[cloud]`
    pub cloud: CloudSettings,
    /// `[polling]`
    pub polling: PollingSettings,
    /// `[limits]`
    pub limits: LimitsSettings,
    /// `[retry]`
    pub retry: RetrySettings,
    /// `[processor]`
    pub processor: ProcessorSettings,
    /// `[security]`
    pub security: SecuritySettings,
}

/// `[server]`: the HTTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Address the server binds.
    pub listen: SocketAddr,
    /// The URL at which browsers reach this server.
    pub public_url: HttpUrl,
    /// Path of the OAuth callback, starting with `/`.
    pub callback_path: String,
    /// How long a sign-in link sent to a mailbox's owner stays valid.
    pub sign_in_link_ttl: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How long in-flight work may finish on shutdown.
    pub shutdown_grace: Duration,
    /// Above this many channels, per-channel metric series switch off.
    pub per_channel_metrics_max: u64,
    /// Whether per-channel metric series carry the mailbox address as a label.
    pub metrics_mailbox_label: bool,
    /// Failed admin-token attempts per client address per minute.
    pub admin_login_failures_per_min: NonZeroU32,
    /// A status-page session ends after this long without a request.
    pub session_idle: Duration,
    /// A status-page session ends this long after its login.
    pub session_max_age: Duration,
}

impl ServerSettings {
    /// The OAuth redirect URI: `public_url` + `callback_path`.
    pub fn redirect_uri(&self) -> String {
        format!("{}{}", self.public_url.base(), self.callback_path)
    }
}

/// `[store]`: the durable store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// Directory of the store.
    pub path: PathBuf,
    /// Page cache size in bytes (from `cache_capacity_mib`).
    pub cache_capacity_bytes: u64,
    /// Background flush period.
    pub flush_every: Duration,
    /// How long the message ledger keeps delivered messages.
    pub ledger_retention: Duration,
    /// Which engine holds the store.
    pub engine: StoreEngine,
    /// The PostgreSQL database (required with [`StoreEngine::Postgres`]).
    pub postgres_url: Option<PostgresUrl>,
    /// Connections of the PostgreSQL store's pool.
    pub postgres_pool: usize,
}

/// Which engine holds the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreEngine {
    /// sled, in `store.path` (one node).
    Sled,
    /// PostgreSQL at `store.postgres_url` (cluster mode).
    Postgres,
}

/// A PostgreSQL connection URL. It holds the password: its `Debug` and [`PostgresUrl::shown`] give
/// the host, port and database only; [`PostgresUrl::expose`] is for opening the store.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    url: String,
    shown: String,
}

impl PostgresUrl {
    /// Parses `postgres://user:password@host:port/database` (or `postgresql://`).
    pub fn parse(text: &str) -> Result<PostgresUrl, String> {
        let parsed =
            url::Url::parse(text).map_err(|err| format!("it does not parse as a URL ({err})"))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!("its scheme is {:?}, not postgres", parsed.scheme()));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| "it names no host".to_owned())?;
        let port = parsed.port().unwrap_or(5432);
        let db = parsed.path().trim_start_matches('/');
        let db = if db.is_empty() { "(the user's)" } else { db };
        Ok(PostgresUrl {
            url: text.to_owned(),
            shown: format!("{host}:{port}/{db}"),
        })
    }

    /// The URL with its password, for opening the store only: never log or show it.
    pub fn expose(&self) -> &str {
        &self.url
    }

    /// `host:port/database`: what logs and errors show.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({})", self.shown)
    }
}

/// `[cluster]`: cluster mode (PostgreSQL engine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// How long a shard lease lasts without renewal.
    pub lease: Duration,
    /// This node's name (the host name unless set); the node id adds 8 random hex digits.
    pub node_name: String,
}

impl ClusterSettings {
    /// A fresh node id for this process: `<node_name>-<8 random hex>`.
    pub fn new_node_id(&self) -> String {
        format!(
            "{}-{}",
            self.node_name,
            hex::encode(rand::random::<[u8; 4]>())
        )
    }
}

/// The host name, for the default node name.
fn host_name() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .trim()
        .to_owned();
    if name.is_empty() {
        "inboxd".to_owned()
    } else {
        name
    }
}

/// Which rules across keys [`build`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rules {
    /// Everything: the daemon's configuration.
    Daemon,
    /// Not the sink's against the engine: the store commands use the store only.
    StoreTools,
}

/// Microsoft's clouds, each with its own login and Graph hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloudName {
    /// The global cloud (also M365 GCC).
    Global,
    /// US Government L4 (GCC High).
    UsGov,
    /// US Government L5 (DoD).
    UsGovDod,
    /// China, operated by 21Vianet.
    China,
}

impl CloudName {
    /// Every cloud.
    pub const ALL: [CloudName; 4] = [
        CloudName::Global,
        CloudName::UsGov,
        CloudName::UsGovDod,
        CloudName::China,
    ];

    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            CloudName::Global => "global",
            CloudName::UsGov => "usgov",
            CloudName::UsGovDod => "usgov-dod",
            CloudName::China => "china",
        }
    }

    /// Parses a configuration name.
    pub fn parse(name: &str) -> Option<CloudName> {
        CloudName::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The identity platform origin of this cloud.
    pub fn login_origin(self) -> &'static str {
        match self {
            CloudName::Global => "https://login.microsoftonline.com",
            CloudName::UsGov | CloudName::UsGovDod => "https://login.microsoftonline.us",
            CloudName::China => "https://login.partner.microsoftonline.cn",
        }
    }

    /// The Exchange Online IMAP host of this cloud (TLS on 993).
    pub fn imap_host(self) -> &'static str {
        match self {
            CloudName::Global => "outlook.office365.com",
            CloudName::UsGov => "outlook.office365.us",
            CloudName::UsGovDod => "outlook-dod.office365.us",
            CloudName::China => "partner.outlook.cn",
        }
    }

    /// The Exchange Online resource the IMAP scope names in this cloud
    /// (`{resource}/IMAP.AccessAsUser.All`).
    pub fn imap_scope_host(self) -> &'static str {
        match self {
            CloudName::Global => crate::oauth::IMAP_SCOPE_HOST,
            CloudName::UsGov => "https://outlook.office365.us",
            CloudName::UsGovDod => "https://outlook-dod.office365.us",
            CloudName::China => "https://partner.outlook.cn",
        }
    }

    /// The Microsoft Graph origin of this cloud; scopes name it.
    pub fn graph_origin(self) -> &'static str {
        match self {
            CloudName::Global => "https://graph.microsoft.com",
            CloudName::UsGov => "https://graph.microsoft.us",
            CloudName::UsGovDod => "https://dod-graph.microsoft.us",
            CloudName::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }
}

/// `[cloud]`: which Microsoft hosts to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudSettings {
    /// The cloud preset.
    pub name: CloudName,
    /// The identity platform origin in use: the override, or the preset's.
    pub login_url: HttpUrl,
    /// The Graph origin in use: the override, or the preset's.
    pub graph_url: HttpUrl,
    /// The IMAP server in use: the override, or the preset's Exchange Online host on 993.
    pub imap: crate::imap::ImapEndpoint,
}

impl CloudSettings {
    /// The settings of a preset without overrides.
    pub fn preset(name: CloudName) -> Result<CloudSettings, crate::domain::DomainError> {
        Ok(CloudSettings {
            name,
            login_url: HttpUrl::parse(name.login_origin())?,
            graph_url: HttpUrl::parse(name.graph_origin())?,
            imap: crate::imap::ImapEndpoint::tls(name.imap_host()),
        })
    }

    /// The host that scopes name, e.g. `https://graph.microsoft.com`: the preset's Graph host,
    /// never the override (a simulator or proxy still issues tokens for the real resource).
    pub fn graph_scope_host(&self) -> &'static str {
        self.name.graph_origin()
    }

    /// A fully qualified scope, e.g. `https://graph.microsoft.com/Mail.ReadWrite.Shared`.
    pub fn scope(&self, permission: &str) -> String {
        format!("{}/{permission}", self.graph_scope_host())
    }

    /// The tenant's authority: `{login_url}/{tenant}`.
    pub fn authority(&self, tenant: &TenantId) -> String {
        format!("{}/{}", self.login_url.base(), tenant.as_str())
    }

    /// The tenant's authorization endpoint.
    pub fn authorize_url(&self, tenant: &TenantId) -> String {
        format!("{}/oauth2/v2.0/authorize", self.authority(tenant))
    }

    /// The tenant's token endpoint.
    pub fn token_url(&self, tenant: &TenantId) -> String {
        format!("{}/oauth2/v2.0/token", self.authority(tenant))
    }

    /// The Graph v1.0 base, e.g. `https://graph.microsoft.com/v1.0`.
    pub fn graph_v1(&self) -> String {
        format!("{}/v1.0", self.graph_url.base())
    }
}

/// What a newly authorized channel ingests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstImport {
    /// All unread mail in the folder.
    All,
    /// Only mail that arrives from now on.
    New,
    /// Unread mail received in the last so many days.
    LastDays(u32),
}

/// The body format asked of Graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyContentType {
    /// Plain text.
    Text,
    /// HTML.
    Html,
}

impl BodyContentType {
    /// The value of Graph's `Prefer: outlook.body-content-type` and the sink's `body_content_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyContentType::Text => "text",
            BodyContentType::Html => "html",
        }
    }
}

/// `[polling]`: how channels poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollingSettings {
    /// Time between two polls of one channel.
    pub interval: Duration,
    /// Largest random delay added to a poll (less than `interval`).
    pub jitter: Duration,
    /// Messages per Graph page, 1..=1000.
    pub page_size: u32,
    /// Most messages one poll takes in.
    pub max_messages_per_poll: u32,
    /// What a new channel ingests first.
    pub first_import: FirstImport,
    /// How channels find new mail (a channel may override it).
    pub mode: crate::domain::PollMode,
    /// Timeout of each request to Microsoft.
    pub request_timeout: Duration,
    /// Body format.
    pub body_content_type: BodyContentType,
}

/// `[limits]`: rate limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsSettings {
    /// Requests per mailbox in any 10 minutes.
    pub mailbox_requests_per_10_min: NonZeroU32,
    /// Requests in flight per mailbox, 1..=4.
    pub mailbox_concurrency: usize,
    /// Requests per second per app registration.
    pub app_requests_per_sec: NonZeroU32,
    /// Outbound requests in flight across the daemon.
    pub global_concurrency: usize,
    /// Token requests per tenant per minute.
    pub token_requests_per_tenant_per_min: NonZeroU32,
    /// IMAP connections open at once per mailbox.
    pub imap_connections_per_mailbox: usize,
}

/// `[retry]`: backoff and token refresh timing.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    /// First delay after a transient failure.
    pub initial_backoff: Duration,
    /// Longest delay (at least `initial_backoff`).
    pub max_backoff: Duration,
    /// Growth factor of the delay, 1.0..=10.0.
    pub multiplier: f64,
    /// Randomization of each delay, 0.0..=1.0.
    pub randomization_factor: f64,
    /// Refresh access tokens this long before expiry.
    pub token_refresh_margin: Duration,
    /// Random extra refresh margin, up to this.
    pub token_refresh_jitter: Duration,
    /// Failed processing attempts before a message is quarantined.
    pub max_delivery_attempts: u32,
}

/// Where processed mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// Append one JSON object per line to this file.
    Jsonl {
        /// The file.
        path: PathBuf,
    },
    /// POST each mail to this URL.
    Webhook {
        /// The receiver.
        url: HttpUrl,
    },
    /// Insert each mail into the `mail` table of the store's PostgreSQL database, in the same
    /// transaction as its ledger entry (exactly once). Needs `store.engine = "postgres"`.
    Postgres,
}

/// `[processor]`: the sink and its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorSettings {
    /// The sink in use.
    pub sink: Sink,
    /// Timeout of one webhook delivery.
    pub webhook_timeout: Duration,
    /// Tries of one webhook delivery.
    pub webhook_max_attempts: u32,
    /// Messages waiting for the sink at most.
    pub queue_capacity: usize,
    /// Largest attachment included in the delivered mail; 0 includes none.
    pub max_attachment_bytes: u64,
    /// Where channel events (status changes, failed sign-ins) are POSTed, if anywhere.
    pub event_webhook_url: Option<HttpUrl>,
    /// Events kept per channel.
    pub event_history: usize,
}

/// `[security]`: where secrets come from (their environment variables win).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecuritySettings {
    /// File holding the master key.
    pub master_key_file: Option<PathBuf>,
    /// File holding the admin token.
    pub admin_token_file: Option<PathBuf>,
    /// File holding the webhook secret.
    pub webhook_secret_file: Option<PathBuf>,
}

/// Reads typed values out of the merged raw values, collecting problems.
struct Reader<'a> {
    raw: &'a Raw,
    problems: &'a mut Vec<ConfigProblem>,
}

impl Reader<'_> {
    fn spec(section: &str, key: &str) -> Option<&'static keys::KeySpec> {
        keys::find(section, key)
    }

    fn entry(&self, section: &str, key: &str) -> Option<&(toml::Value, Origin)> {
        let spec = Self::spec(section, key)?;
        self.raw.get(&(spec.section, spec.key))
    }

    fn problem(&mut self, section: &str, key: &str, found: String, expected: String) {
        let origin = self
            .entry(section, key)
            .map_or(Origin::Defaults, |(_, o)| o.clone());
        self.problems.push(ConfigProblem {
            key: format!("{section}.{key}"),
            origin,
            found,
            expected,
        });
    }

    /// The value, or a problem if it is missing (only optional keys may be missing).
    fn value(&mut self, section: &str, key: &str) -> Option<toml::Value> {
        match self.entry(section, key) {
            Some((value, _)) => Some(value.clone()),
            None => {
                let known = Self::spec(section, key).is_some();
                let expected = if known {
                    "a value (the built-in defaults lack it: the binary is broken)"
                } else {
                    "a key that the code knows (internal error)"
                };
                self.problems.push(ConfigProblem {
                    key: format!("{section}.{key}"),
                    origin: Origin::Defaults,
                    found: "nothing".to_owned(),
                    expected: expected.to_owned(),
                });
                None
            }
        }
    }

    fn int(&mut self, section: &str, key: &str) -> Option<u64> {
        let spec = Self::spec(section, key)?;
        let Kind::Int { min, max } = spec.kind else {
            return None;
        };
        let value = self.value(section, key)?;
        match value {
            toml::Value::Integer(n) if (min..=max).contains(&n) => u64::try_from(n).ok(),
            other => {
                self.problem(section, key, show(&other), spec.expected());
                None
            }
        }
    }

    fn int_u32(&mut self, section: &str, key: &str) -> Option<u32> {
        self.int(section, key).and_then(|n| u32::try_from(n).ok())
    }

    fn nonzero(&mut self, section: &str, key: &str) -> Option<NonZeroU32> {
        self.int_u32(section, key).and_then(NonZeroU32::new)
    }

    fn usize(&mut self, section: &str, key: &str) -> Option<usize> {
        self.int(section, key).and_then(|n| usize::try_from(n).ok())
    }

    fn secs(&mut self, section: &str, key: &str) -> Option<Duration> {
        self.int(section, key).map(Duration::from_secs)
    }

    fn millis(&mut self, section: &str, key: &str) -> Option<Duration> {
        self.int(section, key).map(Duration::from_millis)
    }

    fn float(&mut self, section: &str, key: &str) -> Option<f64> {
        let spec = Self::spec(section, key)?;
        let Kind::Float { min, max } = spec.kind else {
            return None;
        };
        let value = self.value(section, key)?;
        #[allow(clippy::cast_precision_loss)]
        let number = match value {
            toml::Value::Float(f) => Some(f),
            toml::Value::Integer(n) => Some(n as f64),
            _ => None,
        };
        match number {
            Some(f) if f.is_finite() && f >= min && f <= max => Some(f),
            _ => {
                self.problem(section, key, show(&value), spec.expected());
                None
            }
        }
    }

    /// A string value; `None` with a problem when it is not a non-empty string.
    fn string(&mut self, section: &str, key: &str, expected: &str) -> Option<String> {
        let value = self.value(section, key)?;
        match value {
            toml::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            other => {
                self.problem(section, key, show(&other), expected.to_owned());
                None
            }
        }
    }

    fn optional_string(
        &mut self,
        section: &str,
        key: &str,
        expected: &str,
    ) -> Option<Option<String>> {
        if self.entry(section, key).is_none() {
            return Some(None);
        }
        self.string(section, key, expected).map(Some)
    }

    fn bool(&mut self, section: &str, key: &str) -> Option<bool> {
        let spec = Self::spec(section, key)?;
        let value = self.value(section, key)?;
        match value {
            toml::Value::Boolean(b) => Some(b),
            other => {
                self.problem(section, key, show(&other), spec.expected());
                None
            }
        }
    }

    fn choice(&mut self, section: &str, key: &str) -> Option<String> {
        let spec = Self::spec(section, key)?;
        let Kind::Choice(words) = spec.kind else {
            return None;
        };
        let expected = spec.kind.describe();
        let word = self.string(section, key, &expected)?;
        if words.contains(&word.as_str()) {
            Some(word)
        } else {
            self.problem(section, key, format!("{word:?}"), expected);
            None
        }
    }

    fn path(&mut self, section: &str, key: &str) -> Option<PathBuf> {
        self.string(section, key, "a non-empty path")
            .map(PathBuf::from)
    }

    fn optional_path(&mut self, section: &str, key: &str) -> Option<Option<PathBuf>> {
        self.optional_string(section, key, "a non-empty path (or leave the key out)")
            .map(|p| p.map(PathBuf::from))
    }

    fn url_from(&mut self, section: &str, key: &str, text: String) -> Option<HttpUrl> {
        match HttpUrl::parse(&text) {
            Ok(url) => Some(url),
            Err(err) => {
                let why = match err {
                    crate::domain::DomainError::InvalidUrl(_, why) => why,
                    other => other.to_string(),
                };
                self.problem(
                    section,
                    key,
                    format!("{text:?}"),
                    format!(
                        "an absolute http:// or https:// URL with a host and no ?query or #fragment ({why})"
                    ),
                );
                None
            }
        }
    }

    /// An optional PostgreSQL URL; a problem never shows the value (it may hold a password).
    fn database_url(&mut self, section: &str, key: &str) -> Option<Option<PostgresUrl>> {
        let expected = "a URL postgres://USER:PASSWORD@HOST:PORT/DATABASE (or leave the key out)";
        let text = match self.entry(section, key) {
            None => return Some(None),
            Some((toml::Value::String(text), _)) if !text.trim().is_empty() => {
                text.trim().to_owned()
            }
            Some(_) => {
                self.problem(
                    section,
                    key,
                    "(a value, not shown: it may hold a password)".to_owned(),
                    expected.to_owned(),
                );
                return None;
            }
        };
        match PostgresUrl::parse(&text) {
            Ok(url) => Some(Some(url)),
            Err(why) => {
                self.problem(
                    section,
                    key,
                    format!("a value that is not a PostgreSQL URL: {why} (the value is not shown: it may hold a password)"),
                    expected.to_owned(),
                );
                None
            }
        }
    }

    fn url(&mut self, section: &str, key: &str) -> Option<HttpUrl> {
        let text = self.string(section, key, "an http(s) URL")?;
        self.url_from(section, key, text)
    }

    fn imap_url(&mut self, section: &str, key: &str) -> Option<Option<crate::imap::ImapEndpoint>> {
        match self.optional_string(
            section,
            key,
            "an IMAP URL imaps://host[:port] (or leave the key out)",
        )? {
            None => Some(None),
            Some(text) => match crate::imap::ImapEndpoint::parse(&text) {
                Ok(endpoint) => Some(Some(endpoint)),
                Err(why) => {
                    self.problem(section, key, format!("{text:?}"), why);
                    None
                }
            },
        }
    }

    fn optional_url(&mut self, section: &str, key: &str) -> Option<Option<HttpUrl>> {
        match self.optional_string(section, key, "an http(s) URL (or leave the key out)")? {
            None => Some(None),
            Some(text) => self.url_from(section, key, text).map(Some),
        }
    }

    fn socket_addr(&mut self, section: &str, key: &str) -> Option<SocketAddr> {
        let expected = "an ip:port such as 127.0.0.1:8080 or [::1]:8080 (port 0 picks a free port)";
        let text = self.string(section, key, expected)?;
        match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.problem(section, key, format!("{text:?}"), expected.to_owned());
                None
            }
        }
    }

    fn url_path(&mut self, section: &str, key: &str) -> Option<String> {
        let expected =
            "a URL path starting with / and without ?, # or spaces, e.g. /oauth/callback";
        let text = self.string(section, key, expected)?;
        let ok = text.starts_with('/')
            && text.len() > 1
            && !text.contains(['?', '#'])
            && !text.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok {
            Some(text)
        } else {
            self.problem(section, key, format!("{text:?}"), expected.to_owned());
            None
        }
    }
}

/// Builds the settings; every problem goes to `problems`. `None` when some value was unusable.
pub(crate) fn build(
    raw: &Raw,
    problems: &mut Vec<ConfigProblem>,
    rules: Rules,
) -> Option<Settings> {
    let mut r = Reader { raw, problems };

    // Each field is read even when an earlier one failed, so that every problem is reported.
    let listen = r.socket_addr("server", "listen");
    let public_url = r.url("server", "public_url");
    let callback_path = r.url_path("server", "callback_path");
    let sign_in_link_hours = r.int("server", "sign_in_link_ttl_hours");
    let max_body_bytes = r.usize("server", "max_body_bytes");
    let shutdown_grace = r.secs("server", "shutdown_grace_secs");
    let per_channel_metrics_max = r.int("server", "per_channel_metrics_max");
    let metrics_mailbox_label = r.bool("server", "metrics_mailbox_label");
    let admin_failures = r.nonzero("server", "admin_login_failures_per_min");
    let session_idle = r.secs("server", "session_idle_secs");
    let session_max_age = r.secs("server", "session_max_age_secs");

    let store_path = r.path("store", "path");
    let cache_mib = r.int("store", "cache_capacity_mib");
    let flush_every = r.millis("store", "flush_every_ms");
    let retention_days = r.int("store", "ledger_retention_days");
    let engine = r.choice("store", "engine").map(|e| match e.as_str() {
        "postgres" => StoreEngine::Postgres,
        _ => StoreEngine::Sled,
    });
    let postgres_url = r.database_url("store", "postgres_url");
    let postgres_pool = r.usize("store", "postgres_pool");

    let lease = r.secs("cluster", "lease_secs");
    let node_name = r.optional_string(
        "cluster",
        "node_name",
        "a non-empty name (or leave the key out for the host name)",
    );

    let cloud_name = r.choice("cloud", "name").and_then(|n| CloudName::parse(&n));
    let login_override = r.optional_url("cloud", "login_url");
    let graph_override = r.optional_url("cloud", "graph_url");
    let imap_override = r.imap_url("cloud", "imap_url");

    let interval = r.secs("polling", "interval_secs");
    let jitter = r.secs("polling", "jitter_secs");
    let page_size = r.int_u32("polling", "page_size");
    let max_messages = r.int_u32("polling", "max_messages_per_poll");
    let first_import = r.choice("polling", "first_import");
    let first_import_days = r.int_u32("polling", "first_import_days");
    let mode = r
        .choice("polling", "mode")
        .and_then(|m| crate::domain::PollMode::parse(&m));
    let request_timeout = r.secs("polling", "request_timeout_secs");
    let body_content_type = r.choice("polling", "body_content_type");

    let mailbox_rate = r.nonzero("limits", "mailbox_requests_per_10_min");
    let mailbox_concurrency = r.usize("limits", "mailbox_concurrency");
    let app_rate = r.nonzero("limits", "app_requests_per_sec");
    let global_concurrency = r.usize("limits", "global_concurrency");
    let token_rate = r.nonzero("limits", "token_requests_per_tenant_per_min");
    let imap_connections = r.usize("limits", "imap_connections_per_mailbox");

    let initial_backoff = r.millis("retry", "initial_backoff_ms");
    let max_backoff = r.secs("retry", "max_backoff_secs");
    let multiplier = r.float("retry", "multiplier");
    let randomization_factor = r.float("retry", "randomization_factor");
    let refresh_margin = r.secs("retry", "token_refresh_margin_secs");
    let refresh_jitter = r.secs("retry", "token_refresh_jitter_secs");
    let max_delivery_attempts = r.int_u32("retry", "max_delivery_attempts");

    let sink = r.choice("processor", "sink");
    let jsonl_path = r.path("processor", "jsonl_path");
    let webhook_url = r.optional_url("processor", "webhook_url");
    let webhook_timeout = r.secs("processor", "webhook_timeout_secs");
    let event_webhook_url = r.optional_url("processor", "event_webhook_url");
    let event_history = r.usize("processor", "event_history");
    let webhook_max_attempts = r.int_u32("processor", "webhook_max_attempts");
    let queue_capacity = r.usize("processor", "queue_capacity");
    let max_attachment_bytes = r.int("processor", "max_attachment_bytes");

    let master_key_file = r.optional_path("security", "master_key_file");
    let admin_token_file = r.optional_path("security", "admin_token_file");
    let webhook_secret_file = r.optional_path("security", "webhook_secret_file");

    // Rules across keys.
    if let (Some(interval), Some(jitter)) = (interval, jitter)
        && jitter >= interval
    {
        r.problem(
            "polling",
            "jitter_secs",
            jitter.as_secs().to_string(),
            format!(
                "less than polling.interval_secs ({}), or polls would overlap their schedule",
                interval.as_secs()
            ),
        );
    }
    if let (Some(initial), Some(max)) = (initial_backoff, max_backoff)
        && initial > max
    {
        r.problem(
            "retry",
            "initial_backoff_ms",
            initial.as_millis().to_string(),
            format!(
                "at most retry.max_backoff_secs ({} s = {} ms)",
                max.as_secs(),
                max.as_millis()
            ),
        );
    }
    if engine == Some(StoreEngine::Postgres) && postgres_url == Some(None) {
        r.problems.push(ConfigProblem {
            key: "store.postgres_url".to_owned(),
            origin: r
                .entry("store", "engine")
                .map_or(Origin::Defaults, |(_, o)| o.clone()),
            found: "nothing".to_owned(),
            expected: "the PostgreSQL database's URL, because store.engine = \"postgres\" (set INBOXD_STORE__POSTGRES_URL=postgres://USER:PASSWORD@HOST:5432/DATABASE)".to_owned(),
        });
    }
    if rules == Rules::Daemon {
        match (sink.as_deref(), engine) {
            (Some("postgres"), Some(StoreEngine::Sled)) => r.problem(
                "processor",
                "sink",
                "\"postgres\"".to_owned(),
                "\"jsonl\" or \"webhook\": the postgres sink writes into the store's PostgreSQL database, so it needs store.engine = \"postgres\"".to_owned(),
            ),
            (Some("jsonl"), Some(StoreEngine::Postgres)) => r.problem(
                "processor",
                "sink",
                "\"jsonl\"".to_owned(),
                "\"postgres\" or \"webhook\" with store.engine = \"postgres\": a JSONL file is local to one node, so after a failover the mail delivered into it is on another machine, and the nodes of a cluster cannot share one file".to_owned(),
            ),
            _ => {}
        }
    }
    let sink = match (sink.as_deref(), jsonl_path, webhook_url.clone()) {
        (Some("postgres"), _, _) => Some(Sink::Postgres),
        (Some("jsonl"), Some(path), _) => Some(Sink::Jsonl { path }),
        (Some("webhook"), _, Some(Some(url))) => Some(Sink::Webhook { url }),
        (Some("webhook"), _, Some(None)) => {
            r.problems.push(ConfigProblem {
                key: "processor.webhook_url".to_owned(),
                origin: r
                    .entry("processor", "sink")
                    .map_or(Origin::Defaults, |(_, o)| o.clone()),
                found: "nothing".to_owned(),
                expected: "the receiver's URL, because processor.sink = \"webhook\" (set INBOXD_PROCESSOR__WEBHOOK_URL or processor.webhook_url)".to_owned(),
            });
            None
        }
        _ => None,
    };
    let cloud = match (cloud_name, login_override, graph_override, imap_override) {
        (Some(name), Some(login), Some(graph), Some(imap)) => {
            let preset = |origin: &str| HttpUrl::parse(origin).ok();
            match (
                login.or_else(|| preset(name.login_origin())),
                graph.or_else(|| preset(name.graph_origin())),
            ) {
                (Some(login_url), Some(graph_url)) => Some(CloudSettings {
                    name,
                    login_url,
                    graph_url,
                    imap: imap.unwrap_or_else(|| crate::imap::ImapEndpoint::tls(name.imap_host())),
                }),
                _ => None,
            }
        }
        _ => None,
    };
    let first_import = match (first_import.as_deref(), first_import_days) {
        (Some("all"), _) => Some(FirstImport::All),
        (Some("new"), _) => Some(FirstImport::New),
        (Some("last_days"), Some(days)) => Some(FirstImport::LastDays(days)),
        _ => None,
    };
    let body_content_type = match body_content_type.as_deref() {
        Some("text") => Some(BodyContentType::Text),
        Some("html") => Some(BodyContentType::Html),
        _ => None,
    };

    Some(Settings {
        server: ServerSettings {
            listen: listen?,
            public_url: public_url?,
            callback_path: callback_path?,
            sign_in_link_ttl: Duration::from_secs(sign_in_link_hours?.checked_mul(3600)?),
            max_body_bytes: max_body_bytes?,
            shutdown_grace: shutdown_grace?,
            per_channel_metrics_max: per_channel_metrics_max?,
            metrics_mailbox_label: metrics_mailbox_label?,
            admin_login_failures_per_min: admin_failures?,
            session_idle: session_idle?,
            session_max_age: session_max_age?,
        },
        store: StoreSettings {
            path: store_path?,
            cache_capacity_bytes: cache_mib?.checked_mul(1024 * 1024)?,
            flush_every: flush_every?,
            ledger_retention: Duration::from_secs(retention_days?.checked_mul(86_400)?),
            engine: engine?,
            postgres_url: postgres_url?,
            postgres_pool: postgres_pool?,
        },
        cluster: ClusterSettings {
            lease: lease?,
            node_name: node_name?.unwrap_or_else(host_name),
        },
        cloud: cloud?,
        polling: PollingSettings {
            interval: interval?,
            jitter: jitter?,
            page_size: page_size?,
            max_messages_per_poll: max_messages?,
            first_import: first_import?,
            mode: mode?,
            request_timeout: request_timeout?,
            body_content_type: body_content_type?,
        },
        limits: LimitsSettings {
            mailbox_requests_per_10_min: mailbox_rate?,
            mailbox_concurrency: mailbox_concurrency?,
            app_requests_per_sec: app_rate?,
            global_concurrency: global_concurrency?,
            token_requests_per_tenant_per_min: token_rate?,
            imap_connections_per_mailbox: imap_connections?,
        },
        retry: RetrySettings {
            initial_backoff: initial_backoff?,
            max_backoff: max_backoff?,
            multiplier: multiplier?,
            randomization_factor: randomization_factor?,
            token_refresh_margin: refresh_margin?,
            token_refresh_jitter: refresh_jitter?,
            max_delivery_attempts: max_delivery_attempts?,
        },
        processor: ProcessorSettings {
            sink: sink?,
            webhook_timeout: webhook_timeout?,
            webhook_max_attempts: webhook_max_attempts?,
            queue_capacity: queue_capacity?,
            max_attachment_bytes: max_attachment_bytes?,
            event_webhook_url: event_webhook_url?,
            event_history: event_history?,
        },
        security: SecuritySettings {
            master_key_file: master_key_file?,
            admin_token_file: admin_token_file?,
            webhook_secret_file: webhook_secret_file?,
        },
    })
}
