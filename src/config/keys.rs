//! The one list of configuration keys: their sections, types, defaults, units and docs.
//!
//! `config/inboxd.toml` and the "Configuration reference" table in `docs/operations.md` are generated
//! from [`KEYS`] and [`SECTIONS`]; a unit test fails when either file drifts from this list and says how
//! to regenerate both (`INBOXD_BLESS=1 cargo test --lib config`).

use std::fmt::Write as _;

/// The type of a key's value, with the range the validator enforces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A whole number from `min` to `max` inclusive.
    Int {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// A number (integer or decimal) from `min` to `max` inclusive.
    Float {
        /// Smallest accepted value.
        min: f64,
        /// Largest accepted value.
        max: f64,
    },
    /// A file-system path (relative paths are relative to the working directory).
    Path,
    /// An absolute `http` or `https` URL without query or fragment.
    Url,
    /// A socket address `ip:port`.
    SocketAddr,
    /// A URL path starting with `/`.
    UrlPath,
    /// `true` or `false`.
    Bool,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// A non-empty piece of text (a name).
    Text,
    /// A PostgreSQL connection URL `postgres://user:password@host:port/database`; a secret (it
    /// holds the password): shown as host, port and database only.
    DatabaseUrl,
}

impl Kind {
    /// The type as the reference table and error messages name it.
    pub fn describe(&self) -> String {
        match self {
            Kind::Int { min, max } => format!("integer {min}..={max}"),
            Kind::Float { min, max } => format!("number {min:?}..={max:?}"),
            Kind::Path => "path".to_owned(),
            Kind::Url => "http(s) URL".to_owned(),
            Kind::SocketAddr => "ip:port".to_owned(),
            Kind::UrlPath => "URL path".to_owned(),
            Kind::Text => "text".to_owned(),
            Kind::Bool => "boolean (true or false)".to_owned(),
            Kind::DatabaseUrl => "postgres:// URL".to_owned(),
            Kind::Choice(words) => {
                let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
                format!("one of {}", quoted.join(", "))
            }
        }
    }
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// The `[section]` it lives in.
    pub section: &'static str,
    /// Its name inside the section; the unit is part of the name.
    pub key: &'static str,
    /// Its type and range.
    pub kind: Kind,
    /// The default as a TOML literal; `None` for an optional key that is unset by default.
    pub default: Option<&'static str>,
    /// For optional keys, an example value (a TOML literal) shown commented out in the file.
    pub example: &'static str,
    /// The unit of the value ("" when it has none).
    pub unit: &'static str,
    /// What the key does, for operators.
    pub doc: &'static str,
}

impl KeySpec {
    /// `section.key`, the name error messages use.
    pub fn path(&self) -> String {
        format!("{}.{}", self.section, self.key)
    }

    /// What a problem with this key expects: its type and range, unit, and what it is for.
    pub fn expected(&self) -> String {
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.unit)
        };
        format!(
            "{}{unit}; {} is: {}",
            self.kind.describe(),
            self.key,
            self.doc
        )
    }

    /// The environment variable that overrides this key: `INBOXD_<SECTION>__<KEY>`.
    pub fn env_var(&self) -> String {
        format!(
            "INBOXD_{}__{}",
            self.section.to_ascii_uppercase(),
            self.key.to_ascii_uppercase()
        )
    }
}

/// The sections, in file order, each with what it configures.
pub const SECTIONS: [(&str, &str); 9] = [
    (
        "server",
        "The HTTP server: admin API, OAuth callback, status page, /healthz and /metrics.",
    ),
    (
        "store",
        "The durable store: sled on local disk (one node), or PostgreSQL (cluster mode: several nodes share one database).",
    ),
    (
        "cluster",
        "Cluster mode (store.engine = \"postgres\"): nodes share the channels through shard leases in the database.",
    ),
    (
        "cloud",
        "Which Microsoft cloud to talk to. The presets are Microsoft's national-cloud hosts; login_url and graph_url override them (the simulator, a proxy). Token scopes always follow the preset's Graph host.",
    ),
    ("polling", "How each channel polls its mail folder."),
    (
        "limits",
        "Rate limits. The per-mailbox defaults are Microsoft Graph's published Outlook limits.",
    ),
    (
        "retry",
        "Backoff after transient failures and token refresh timing. A Retry-After from Microsoft is a floor that is never undercut.",
    ),
    (
        "processor",
        "Where processed mail goes. A mail is marked read only after the sink accepted it.",
    ),
    (
        "security",
        "Where the secrets come from. Secrets are never values in this file: each comes from its environment variable or from a file (chmod 600) named here. The environment variable wins.",
    ),
];

const fn int(min: i64, max: i64) -> Kind {
    Kind::Int { min, max }
}

macro_rules! key {
    ($section:literal, $key:literal, $kind:expr, $default:literal, $unit:literal, $doc:literal) => {
        KeySpec {
            section: $section,
            key: $key,
            kind: $kind,
            default: Some($default),
            example: "",
            unit: $unit,
            doc: $doc,
        }
    };
}

macro_rules! optional_key {
    ($section:literal, $key:literal, $kind:expr, example = $example:literal, $unit:literal, $doc:literal) => {
        KeySpec {
            section: $section,
            key: $key,
            kind: $kind,
            default: None,
            example: $example,
            unit: $unit,
            doc: $doc,
        }
    };
}

/// The cloud names `cloud.name` accepts.
pub const CLOUD_NAMES: &[&str] = &["global", "usgov", "usgov-dod", "china"];
/// The values `polling.first_import` accepts.
pub const FIRST_IMPORT: &[&str] = &["all", "new", "last_days"];
/// The values `polling.mode` accepts.
pub const POLL_MODES: &[&str] = &["delta", "unread"];
/// The values `polling.body_content_type` accepts.
pub const BODY_CONTENT_TYPES: &[&str] = &["text", "html"];
/// The values `processor.sink` accepts.
pub const SINKS: &[&str] = &["jsonl", "webhook", "postgres"];
/// The values `store.engine` accepts.
pub const ENGINES: &[&str] = &["sled", "postgres"];

/// Every configuration key, in file order.
pub const KEYS: &[KeySpec] = &[
    // [server]
    key!(
        "server",
        "listen",
        Kind::SocketAddr,
        "\"127.0.0.1:8080\"",
        "",
        "Address and port the HTTP server binds. Port 0 picks a free port (tests)."
    ),
    key!(
        "server",
        "public_url",
        Kind::Url,
        "\"http://127.0.0.1:8080\"",
        "",
        "The URL at which browsers reach this server. The OAuth redirect URI is public_url + callback_path and must be registered exactly so in the Azure app registration."
    ),
    key!(
        "server",
        "callback_path",
        Kind::UrlPath,
        "\"/oauth/callback\"",
        "",
        "Path of the OAuth callback on this server."
    ),
    key!(
        "server",
        "sign_in_link_ttl_hours",
        int(1, 720),
        "72",
        "hours",
        "How long a sign-in link an admin sends to a mailbox's owner (POST /api/channels/{id}/invitations) stays valid. It works once and can be revoked; the sign-in it starts lasts 10 minutes."
    ),
    key!(
        "server",
        "max_body_bytes",
        int(1024, 16 * 1024 * 1024),
        "65536",
        "bytes",
        "Largest request body the admin API accepts; larger bodies get 413."
    ),
    key!(
        "server",
        "shutdown_grace_secs",
        int(0, 600),
        "10",
        "seconds",
        "On SIGTERM/Ctrl-C, how long in-flight work may finish before the process exits."
    ),
    key!(
        "server",
        "per_channel_metrics_max",
        int(0, 10_000_000),
        "10000",
        "channels",
        "Above this many channels the per-channel metric series switch off (aggregates stay) to keep /metrics small. 0 switches them off always."
    ),
    key!(
        "server",
        "metrics_mailbox_label",
        Kind::Bool,
        "false",
        "",
        "Adds the mailbox address as a `mailbox` label to the per-channel metric series (`channel_id` is always there). Off by default: addresses are personal data and a scrape is read by more people and systems than the status page."
    ),
    key!(
        "server",
        "admin_login_failures_per_min",
        int(1, 100_000),
        "10",
        "failures per minute",
        "Failed admin-token attempts accepted per client address per minute; beyond that the address is refused (429 with Retry-After, even with the right token) until its budget refills."
    ),
    key!(
        "server",
        "session_idle_secs",
        int(1, 604_800),
        "1800",
        "seconds",
        "A status-page session ends after this long without a request; the operator logs in again."
    ),
    key!(
        "server",
        "session_max_age_secs",
        int(1, 2_592_000),
        "43200",
        "seconds",
        "A status-page session ends this long after its login, however active it is."
    ),
    // [store]
    key!(
        "store",
        "path",
        Kind::Path,
        "\"data/inboxd.sled\"",
        "",
        "Directory of the store. Created if missing. Keep it on local disk and back it up with the master key."
    ),
    key!(
        "store",
        "cache_capacity_mib",
        int(1, 65_536),
        "64",
        "MiB",
        "Page cache of the store (sled defaults to 1 GiB otherwise)."
    ),
    key!(
        "store",
        "flush_every_ms",
        int(1, 60_000),
        "500",
        "milliseconds",
        "How often the store flushes to disk in the background."
    ),
    key!(
        "store",
        "ledger_retention_days",
        int(1, 3650),
        "30",
        "days",
        "How long the per-message ledger keeps delivered messages (for de-duplication and audit)."
    ),
    key!(
        "store",
        "engine",
        Kind::Choice(ENGINES),
        "\"sled\"",
        "",
        "Where the store lives: sled (files in path, one node) or postgres (the database at postgres_url, shared by the nodes of a cluster). Move a store with `inboxd store export` and `inboxd store import`."
    ),
    optional_key!(
        "store",
        "postgres_url",
        Kind::DatabaseUrl,
        example = "\"postgres://inboxd:PASSWORD@db.example.com:5432/inboxd\"",
        "",
        "The PostgreSQL database of engine = \"postgres\". It holds the password: prefer INBOXD_STORE__POSTGRES_URL to this file; logs show its host and database only."
    ),
    key!(
        "store",
        "postgres_pool",
        int(1, 64),
        "8",
        "connections",
        "Connections to PostgreSQL (each on a thread of its own) that the store's calls share."
    ),
    // [cluster]
    key!(
        "cluster",
        "lease_secs",
        int(5, 3600),
        "30",
        "seconds",
        "How long a node's lease on a shard of channels lasts without renewal: after a node stops, its channels move to the others within this time."
    ),
    optional_key!(
        "cluster",
        "node_name",
        Kind::Text,
        example = "\"inboxd-a\"",
        "",
        "This node's name in the cluster (default: the host name); its id is the name followed by 8 random hex digits, new at every start."
    ),
    // [cloud]
    key!(
        "cloud",
        "name",
        Kind::Choice(CLOUD_NAMES),
        "\"global\"",
        "",
        "Microsoft cloud: global (login.microsoftonline.com, graph.microsoft.com; also M365 GCC), usgov (GCC High: login.microsoftonline.us, graph.microsoft.us), usgov-dod (login.microsoftonline.us, dod-graph.microsoft.us), china (21Vianet: login.partner.microsoftonline.cn, microsoftgraph.chinacloudapi.cn)."
    ),
    optional_key!(
        "cloud",
        "login_url",
        Kind::Url,
        example = "\"http://127.0.0.1:9000\"",
        "",
        "Overrides the identity platform origin of the preset (e.g. the simulator). inboxd appends /{tenant}/oauth2/v2.0/... itself."
    ),
    optional_key!(
        "cloud",
        "graph_url",
        Kind::Url,
        example = "\"http://127.0.0.1:9000\"",
        "",
        "Overrides the Microsoft Graph origin of the preset (e.g. the simulator). inboxd appends /v1.0/... itself."
    ),
    optional_key!(
        "cloud",
        "imap_url",
        Kind::Text,
        example = "\"imaps://outlook.office365.com:993\"",
        "",
        "Overrides the IMAP server of the preset for channels on the IMAP transport: imaps://host[:port] (TLS, port 993 by default). Presets: global outlook.office365.com, usgov outlook.office365.us, usgov-dod outlook-dod.office365.us, china partner.outlook.cn. imap://host:port (no TLS) is for a test server on loopback only."
    ),
    // [polling]
    key!(
        "polling",
        "interval_secs",
        int(1, 86_400),
        "120",
        "seconds",
        "Time between two polls of one channel."
    ),
    key!(
        "polling",
        "jitter_secs",
        int(0, 3600),
        "5",
        "seconds",
        "Random delay up to this much added to each poll so that channels do not poll in lock-step. Must be less than interval_secs."
    ),
    key!(
        "polling",
        "page_size",
        int(1, 1000),
        "50",
        "messages",
        "Messages asked for per Graph page ($top); Graph allows 1 to 1000."
    ),
    key!(
        "polling",
        "max_messages_per_poll",
        int(1, 1_000_000),
        "500",
        "messages",
        "Most messages one poll takes in; the rest wait for the next poll."
    ),
    key!(
        "polling",
        "first_import",
        Kind::Choice(FIRST_IMPORT),
        "\"all\"",
        "",
        "What a newly authorized channel ingests: all unread mail, only mail that arrives from now on (new), or unread mail of the last first_import_days days (last_days)."
    ),
    key!(
        "polling",
        "first_import_days",
        int(1, 3650),
        "7",
        "days",
        "How far back first_import = \"last_days\" reaches."
    ),
    key!(
        "polling",
        "mode",
        Kind::Choice(POLL_MODES),
        "\"delta\"",
        "",
        "How a channel finds new mail: delta (the folder's changes since the last poll, so mail someone reads in Outlook before the poll is still ingested) or unread (only mail still unread at the poll). A folder that refuses delta falls back to unread with a warning."
    ),
    key!(
        "polling",
        "request_timeout_secs",
        int(1, 600),
        "30",
        "seconds",
        "Timeout of each request to Microsoft (identity platform and Graph)."
    ),
    key!(
        "polling",
        "body_content_type",
        Kind::Choice(BODY_CONTENT_TYPES),
        "\"text\"",
        "",
        "Body format asked of Graph (Prefer: outlook.body-content-type) and written to the sink."
    ),
    // [limits]
    key!(
        "limits",
        "mailbox_requests_per_10_min",
        int(1, 10_000),
        "10000",
        "requests per 10 minutes",
        "Requests per mailbox (per app) in any 10 minutes; Graph's limit is 10000."
    ),
    key!(
        "limits",
        "mailbox_concurrency",
        int(1, 4),
        "4",
        "requests",
        "Requests in flight per mailbox at once; Graph allows at most 4 and throttles above."
    ),
    key!(
        "limits",
        "app_requests_per_sec",
        int(1, 1_000_000),
        "100",
        "requests per second",
        "Requests per second across all mailboxes of one app registration."
    ),
    key!(
        "limits",
        "global_concurrency",
        int(1, 1_000_000),
        "512",
        "requests",
        "Outbound requests in flight at once across the whole daemon."
    ),
    key!(
        "limits",
        "imap_connections_per_mailbox",
        int(1, 20),
        "2",
        "connections",
        "IMAP connections open at once per mailbox (channels on the IMAP transport; each cycle opens one and closes it). Exchange Online limits concurrent IMAP connections per mailbox."
    ),
    key!(
        "limits",
        "token_requests_per_tenant_per_min",
        int(1, 100_000),
        "60",
        "requests per minute",
        "Token-endpoint requests per tenant per minute."
    ),
    // [retry]
    key!(
        "retry",
        "initial_backoff_ms",
        int(1, 3_600_000),
        "3000",
        "milliseconds",
        "First delay after a transient failure."
    ),
    key!(
        "retry",
        "max_backoff_secs",
        int(1, 86_400),
        "180",
        "seconds",
        "Longest delay between two tries (a longer Retry-After from Microsoft still wins)."
    ),
    key!(
        "retry",
        "multiplier",
        Kind::Float {
            min: 1.0,
            max: 10.0
        },
        "2.0",
        "factor",
        "Each delay is the previous one times this."
    ),
    key!(
        "retry",
        "randomization_factor",
        Kind::Float { min: 0.0, max: 1.0 },
        "0.5",
        "fraction",
        "Each delay is randomized by up to this fraction either way (0.5: from 50% to 150%)."
    ),
    key!(
        "retry",
        "token_refresh_margin_secs",
        int(0, 1800),
        "300",
        "seconds",
        "Refresh an access token this long before it expires."
    ),
    key!(
        "retry",
        "token_refresh_jitter_secs",
        int(0, 1800),
        "120",
        "seconds",
        "Random extra margin up to this much, so that refreshes of many channels spread out."
    ),
    key!(
        "retry",
        "max_delivery_attempts",
        int(1, 1000),
        "5",
        "attempts",
        "Failed processing attempts after which a message is quarantined (kept unread, listed in the admin API, replayable) and no longer blocks the rest."
    ),
    // [processor]
    key!(
        "processor",
        "sink",
        Kind::Choice(SINKS),
        "\"jsonl\"",
        "",
        "Where processed mail goes: jsonl (one JSON object per line in jsonl_path), webhook (POST to webhook_url, signed with the webhook secret) or postgres (rows of the mail table in the store's database, exactly once; needs store.engine = \"postgres\", which in turn refuses jsonl)."
    ),
    key!(
        "processor",
        "jsonl_path",
        Kind::Path,
        "\"data/mail.jsonl\"",
        "",
        "File the jsonl sink appends to. Its directory is created if missing."
    ),
    optional_key!(
        "processor",
        "webhook_url",
        Kind::Url,
        example = "\"https://helpdesk.example.com/inboxd\"",
        "",
        "URL the webhook sink POSTs each mail to. Required when sink = \"webhook\"."
    ),
    optional_key!(
        "processor",
        "event_webhook_url",
        Kind::Url,
        example = "\"https://helpdesk.example.com/inboxd/events\"",
        "",
        "URL every channel event (a status change, a failed or completed sign-in) is POSTed to as JSON, signed like the mail webhook (X-Inboxd-Signature with the webhook secret, when one is set), so the consuming product can tell its customer. Unset: events go to the log and each channel's history only."
    ),
    key!(
        "processor",
        "event_history",
        int(1, 1000),
        "20",
        "events",
        "Events kept per channel (its history on the status page and at GET /api/channels/{id}/events); older ones are pruned."
    ),
    key!(
        "processor",
        "webhook_timeout_secs",
        int(1, 600),
        "10",
        "seconds",
        "Timeout of one webhook delivery."
    ),
    key!(
        "processor",
        "webhook_max_attempts",
        int(1, 100),
        "5",
        "attempts",
        "Tries of one webhook delivery (with backoff) before it counts as one failed processing attempt."
    ),
    key!(
        "processor",
        "queue_capacity",
        int(1, 10_000_000),
        "10000",
        "messages",
        "Messages waiting for the sink at most; when full, channels wait (back-pressure)."
    ),
    key!(
        "processor",
        "max_attachment_bytes",
        int(0, 157_286_400),
        "1048576",
        "bytes",
        "Attachments up to this size are included in the delivered mail; larger ones are listed without content. 0 includes none."
    ),
    // [security]
    optional_key!(
        "security",
        "master_key_file",
        Kind::Path,
        example = "\"/etc/inboxd/master.key\"",
        "",
        "File holding the master key that encrypts every secret in the store (make one with `inboxd keygen`). INBOXD_MASTER_KEY wins over it."
    ),
    optional_key!(
        "security",
        "admin_token_file",
        Kind::Path,
        example = "\"/etc/inboxd/admin.token\"",
        "",
        "File holding the admin API bearer token (at least 16 characters). INBOXD_ADMIN_TOKEN wins over it."
    ),
    optional_key!(
        "security",
        "webhook_secret_file",
        Kind::Path,
        example = "\"/etc/inboxd/webhook.secret\"",
        "",
        "File holding the secret that signs webhook bodies (HMAC-SHA256). INBOXD_WEBHOOK_SECRET wins over it."
    ),
];

/// Looks a key up by section and name.
pub fn find(section: &str, key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.section == section && k.key == key)
}

/// Wraps `text` into lines of at most `width` characters, each starting with `prefix`.
fn wrap(text: &str, prefix: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::from(prefix);
    for word in text.split_whitespace() {
        if line.len() > prefix.len() && line.len() + 1 + word.len() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = String::from(prefix);
        }
        if line.len() > prefix.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// The text of `config/inboxd.toml`, generated from [`KEYS`].
pub fn render_toml() -> String {
    let mut out = String::new();
    out.push_str(&wrap(
        "inboxd configuration. These are the defaults, compiled into the binary: a key missing from the file keeps its default. `inboxd serve` reads config/inboxd.toml, or the file given with --config. Every key can be overridden by an environment variable INBOXD_<SECTION>__<KEY> (e.g. INBOXD_POLLING__INTERVAL_SECS=5). Units are part of the key names. Secrets (master key, admin token, webhook secret) are never values in this file.",
        "# ",
        100,
    ));
    out.push_str("#\n");
    out.push_str(&wrap(
        "This file is generated from src/config/keys.rs; after changing a key there, run `INBOXD_BLESS=1 cargo test --lib config` to rewrite it and docs/operations.md.",
        "# ",
        100,
    ));
    for (section, doc) in SECTIONS {
        let _ = write!(out, "\n[{section}]\n");
        out.push_str(&wrap(doc, "# ", 100));
        for spec in KEYS.iter().filter(|k| k.section == section) {
            out.push('\n');
            out.push_str(&wrap(spec.doc, "# ", 100));
            let unit = if spec.unit.is_empty() {
                String::new()
            } else {
                format!(", unit: {}", spec.unit)
            };
            let _ = writeln!(
                out,
                "# Type: {}{unit}. Environment: {}.",
                spec.kind.describe(),
                spec.env_var()
            );
            match spec.default {
                Some(default) => {
                    let _ = writeln!(out, "{} = {default}", spec.key);
                }
                None => {
                    let _ = writeln!(
                        out,
                        "# Unset by default. Example:\n# {} = {}",
                        spec.key, spec.example
                    );
                }
            }
        }
    }
    out
}

/// Marks the start of the generated table in docs/operations.md.
pub const DOC_BEGIN: &str = "<!-- BEGIN GENERATED CONFIG REFERENCE: edit src/config/keys.rs, then run INBOXD_BLESS=1 cargo test --lib config -->";
/// Marks the end of the generated table in docs/operations.md.
pub const DOC_END: &str = "<!-- END GENERATED CONFIG REFERENCE -->";

/// The configuration reference table (Markdown) for docs/operations.md, generated from [`KEYS`].
pub fn render_reference() -> String {
    let cell = |text: &str| text.replace('|', "\\|");
    let mut out = String::new();
    for (section, doc) in SECTIONS {
        let _ = write!(out, "### [{section}]\n\n{doc}\n\n");
        out.push_str("| Key | Type | Default | Unit | Environment variable | Description |\n");
        out.push_str("|---|---|---|---|---|---|\n");
        for spec in KEYS.iter().filter(|k| k.section == section) {
            let default = spec
                .default
                .map(|d| format!("`{d}`"))
                .unwrap_or_else(|| "unset".to_owned());
            let unit = if spec.unit.is_empty() {
                "–"
            } else {
                spec.unit
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | `{}` | {} |",
                spec.path(),
                cell(&spec.kind.describe()),
                cell(&default),
                unit,
                spec.env_var(),
                cell(spec.doc)
            );
        }
        out.push('\n');
    }
    out
}
