//! The command line: `serve`, `demo`, `sim`, `channel …`, `keygen`, `migrate` and `store
//! export|import`, parsed with clap.
//!
//! This module only parses arguments and dispatches; the work happens in `startup`, `demo`, `sim`
//! and `admin_client`. Errors reach `main`, which prints them and exits non-zero.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::domain::secret::AdminToken;
use crate::telemetry::LogFormat;

/// inboxd ingests mail from many Outlook / Microsoft 365 mailboxes through Microsoft Graph: it polls
/// each mailbox, hands every new mail to a sink once, and marks it read only after that succeeded.
#[derive(Debug, Parser)]
#[command(name = "inboxd", version, propagate_version = true)]
pub struct Cli {
    /// How log lines are written to stderr; `RUST_LOG` sets the level (e.g. `RUST_LOG=inboxd=debug`).
    #[arg(long, value_enum, default_value = "human", global = true)]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: poll every enabled channel, serve the admin API, the OAuth callback, the
    /// status page and /metrics. Needs a master key (INBOXD_MASTER_KEY or security.master_key_file).
    Serve(ServeArgs),
    /// Run the simulator and the daemon in one process on a temporary store: N channels authorized
    /// through the real OAuth flow, M messages each, a progress bar and a counted summary.
    Demo(DemoArgs),
    /// Run the simulator of Microsoft's identity platform and Graph mail API alone (for demos,
    /// load tests and trying inboxd without Microsoft). Prints `inboxd sim listening on URL`.
    Sim(SimArgs),
    /// Manage the channels of a running daemon through its admin API (admin token from --token-file,
    /// INBOXD_ADMIN_TOKEN or the configuration's security.admin_token_file; --json for scripts).
    Channel(Box<ChannelArgs>),
    /// Manage the apps (app registrations and their one credential, a client secret or a
    /// certificate) of a running daemon: `inboxd app rotate` replaces the credential of every
    /// channel of the app at once.
    App(Box<AppArgs>),
    /// Print a new random master key (base64 of 32 bytes) on one line of stdout. Store it like a
    /// password: `inboxd keygen > master.key && chmod 600 master.key`.
    Keygen,
    /// Apply the PostgreSQL schema's pending migrations to store.postgres_url
    /// (INBOXD_STORE__POSTGRES_URL) and say which were applied. `serve` also applies them at start.
    Migrate(ServeArgs),
    /// Copy the configured store to a file, or a file into the configured (empty) store: to move a
    /// store from sled to PostgreSQL, export with the sled configuration, then import with
    /// INBOXD_STORE__ENGINE=postgres. Both need the same master key. Stop the daemon first.
    Store(StoreArgs),
}

/// Arguments of `inboxd store`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The configuration file (as for `serve`).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// The store operation.
    #[command(subcommand)]
    pub command: StoreCommand,
}

/// `inboxd store` operations.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Write every record of the store (secrets stay encrypted) to FILE as JSON lines, mode 0600.
    Export {
        /// The file to write (replaced if it exists).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Read an export into the configured store, which must hold no channel yet.
    Import {
        /// The file `inboxd store export` wrote.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
    },
}

/// Arguments of `inboxd serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file. Without it, config/inboxd.toml is read if it exists, over the
    /// embedded defaults; INBOXD_<SECTION>__<KEY> environment variables override both.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Arguments of `inboxd demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many channels (mailboxes) to create and authorize.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    pub channels: u32,
    /// How many messages to deliver to each mailbox while the demo runs.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub messages: u32,
    /// Poll interval of the demo's channels, in seconds (the daemon's default is 120).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval_secs: u64,
    /// Give up waiting for the mail after this many seconds and print what was counted.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Keep the demo's store and JSONL sink in this directory instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// How the channels reach their mailboxes: graph (Microsoft Graph) or imap (the simulator's
    /// IMAP server, with XOAUTH2 and Exchange Online tokens).
    #[arg(long, default_value = "graph", value_parser = ["graph", "imap"])]
    pub transport: String,
}

/// Arguments of `inboxd sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Worker threads serving requests.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Address of the plain IMAP listener; port 0 picks a free port. Printed as `inboxd sim imap
    /// listening on ADDR` (second line) and answered by `GET /_sim/imap`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub imap_listen: SocketAddr,
    /// Serve no plain IMAP.
    #[arg(long, conflicts_with = "imap_listen")]
    pub no_imap: bool,
    /// Address of an IMAP-over-TLS listener (as port 993 is); needs a certificate: --imap-tls-cert
    /// and --imap-tls-key, or --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR")]
    pub imaps_listen: Option<SocketAddr>,
    /// The PEM certificate chain of the IMAP-over-TLS listener (needs --imap-tls-key).
    #[arg(long, value_name = "FILE", requires = "imap_tls_key")]
    pub imap_tls_cert: Option<PathBuf>,
    /// The PEM private key of --imap-tls-cert.
    #[arg(long, value_name = "FILE", requires = "imap_tls_cert")]
    pub imap_tls_key: Option<PathBuf>,
    /// Authenticated IMAP connections per mailbox; one more is refused (Exchange allows about 20).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub imap_max_connections: usize,
}

/// Arguments of `inboxd channel`.
#[derive(Debug, Args)]
pub struct ChannelArgs {
    /// Where the daemon is and how to prove the right to ask.
    #[command(flatten)]
    pub connection: AdminConnection,

    /// The channel operation.
    #[command(subcommand)]
    pub command: ChannelCommand,
}

/// Arguments of `inboxd app`.
#[derive(Debug, Args)]
pub struct AppArgs {
    /// Where the daemon is and how to prove the right to ask.
    #[command(flatten)]
    pub connection: AdminConnection,

    /// The app operation.
    #[command(subcommand)]
    pub command: AppCommand,
}

/// `inboxd app` operations. APP is the app's id, `tenant/client` (as `inboxd app list` shows it).
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// List the apps: credential kind, expiry and how many channels use each.
    List,
    /// Show one app.
    Show {
        /// The app's id, `tenant/client`.
        app: String,
    },
    /// Record an app with its credential (a channel's first use of an app records it too).
    Add(AppAddArgs),
    /// Replace the app's credential for every channel of the app (or, with only
    /// --client-secret-expires-at, note the current secret's new expiry).
    Rotate(AppRotateArgs),
    /// Remove an app no channel uses.
    Remove {
        /// The app's id, `tenant/client`.
        app: String,
    },
}

/// An app's credential on the command line: a secret's file or a certificate's.
#[derive(Debug, Args)]
pub struct CredentialArgs {
    /// File holding the client secret's *value* (not its id); `-` reads standard input.
    #[arg(long, value_name = "FILE", conflicts_with = "client_certificate_file")]
    pub client_secret_file: Option<PathBuf>,
    /// PEM file holding the app's certificate and its unencrypted private key
    /// (`cat cert.pem key.pem > app.pem`); Microsoft recommends certificates over secrets.
    #[arg(long, value_name = "FILE")]
    pub client_certificate_file: Option<PathBuf>,
    /// When the client secret expires (YYYY-MM-DD or RFC 3339), for warnings 30/14/7/1 days ahead.
    #[arg(long, value_name = "DATE")]
    pub client_secret_expires_at: Option<String>,
}

/// Arguments of `inboxd app add`.
#[derive(Debug, Args)]
pub struct AppAddArgs {
    /// Directory (tenant) ID: a GUID or a verified domain.
    #[arg(long)]
    pub tenant_id: String,
    /// Application (client) ID of the app registration (a GUID).
    #[arg(long)]
    pub client_id: String,
    /// A display name.
    #[arg(long)]
    pub name: Option<String>,
    /// The credential.
    #[command(flatten)]
    pub credential: CredentialArgs,
}

/// Arguments of `inboxd app rotate`.
#[derive(Debug, Args)]
pub struct AppRotateArgs {
    /// The app's id, `tenant/client`.
    pub app: String,
    /// The new credential.
    #[command(flatten)]
    pub credential: CredentialArgs,
}

/// How `inboxd channel` and `inboxd app` reach the running daemon's admin API.
#[derive(Debug, Args)]
pub struct AdminConnection {
    /// The running daemon's base URL, e.g. https://inbox.example.com. A loopback address may omit
    /// the scheme (127.0.0.1:8080 means http://127.0.0.1:8080).
    #[arg(
        long,
        env = "INBOXD_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true,
        value_parser = crate::admin_client::parse_server
    )]
    pub server: String,

    /// A file holding the admin token (`chmod 600` it). Without it: INBOXD_ADMIN_TOKEN, else
    /// security.admin_token_file of the configuration (--config).
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,

    /// The admin token itself. Other users of the machine can see it in `ps`: prefer --token-file
    /// or INBOXD_ADMIN_TOKEN.
    #[arg(
        long,
        value_name = "TOKEN",
        global = true,
        conflicts_with = "token_file",
        value_parser = crate::admin_client::parse_token
    )]
    pub token: Option<AdminToken>,

    /// The daemon's configuration file, read for security.admin_token_file when no token is given
    /// otherwise (default: config/inboxd.toml if it exists; INBOXD_SECURITY__ADMIN_TOKEN_FILE wins).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Print the admin API's JSON answer as is, for scripts, instead of text for a person.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Arguments of `inboxd channel list`.
#[derive(Debug, Args)]
pub struct ChannelListArgs {
    /// Only channels with this status (active, backing_off, awaiting_authorization,
    /// needs_reauthorization, blocked, disabled).
    #[arg(long)]
    pub status: Option<String>,
    /// Only channels whose name, mailbox, tenant or id contains this text.
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,
    /// At most this many channels (a page of the API: 1 to 1000).
    #[arg(
        long,
        default_value_t = 1000,
        value_parser = clap::value_parser!(u16).range(1..=1000),
        conflicts_with = "all"
    )]
    pub limit: u16,
    /// Skip this many channels first (the next page: the previous offset plus its count).
    #[arg(long, default_value_t = 0, conflicts_with = "all")]
    pub offset: usize,
    /// Every channel: follow the API's pages until the end.
    #[arg(long)]
    pub all: bool,
}

/// `inboxd channel` operations.
#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Add a channel; prints it with the redirect URI to register in Azure and its id.
    Add(ChannelAddArgs),
    /// List channels with their status, a page at a time (--limit, --offset) or all (--all).
    List(ChannelListArgs),
    /// Show one channel: status, last error and warning with their remedy and Microsoft's trace and
    /// correlation ids, its node (cluster mode) and its quarantine.
    Show {
        /// The channel id.
        id: String,
    },
    /// Change a channel's settings or rotate its client secret; mail is not lost.
    Update(ChannelUpdateArgs),
    /// Remove a channel and everything inboxd stored for it (not the mail in the mailbox).
    Remove {
        /// The channel id.
        id: String,
    },
    /// Enable a channel: it polls again at once.
    Enable {
        /// The channel id.
        id: String,
    },
    /// Disable a channel: no more requests for its mailbox until enabled.
    Disable {
        /// The channel id.
        id: String,
    },
    /// Print the link to authorize (or re-authorize: "update auth info") the channel: the mailbox's
    /// user, or a user with Full Access to the mailbox, opens it and signs in.
    Authorize {
        /// The channel id.
        id: String,
    },
    /// Poll a channel now instead of waiting for its timer.
    Poll {
        /// The channel id.
        id: String,
    },
    /// Deliver every message received since a date that was never delivered, read or not (after an
    /// outage, or mail read before an unread-mode poll); nothing is delivered twice.
    Backfill {
        /// The channel id.
        id: String,
        /// The date the outage began: YYYY-MM-DD (midnight UTC) or an RFC 3339 time.
        #[arg(long)]
        since: String,
    },
    /// List a channel's quarantined messages (those whose processing kept failing).
    Quarantine {
        /// The channel id.
        id: String,
    },
    /// Deliver a channel's quarantined messages again.
    Replay {
        /// The channel id.
        id: String,
    },
    /// A channel's recent events: status changes, failed and completed sign-ins.
    Events {
        /// The channel id.
        id: String,
    },
    /// Make a sign-in link to send to the mailbox's user (or a user with Full Access to it):
    /// it works once, for --hours (at most server.sign_in_link_ttl_hours).
    Invite {
        /// The channel id.
        id: String,
        /// Hours the link stays valid (default: server.sign_in_link_ttl_hours).
        #[arg(long)]
        hours: Option<u32>,
    },
    /// Revoke a sign-in link by the id `channel invite` printed.
    Uninvite {
        /// The invitation's id (64 hex digits).
        invitation_id: String,
    },
}

/// Arguments of `inboxd channel add`.
#[derive(Debug, Args)]
pub struct ChannelAddArgs {
    /// Directory (tenant) ID: a GUID or a verified domain (never common/organizations/consumers).
    #[arg(long)]
    pub tenant_id: String,
    /// Application (client) ID of the app registration (a GUID).
    #[arg(long)]
    pub client_id: String,
    /// File holding the app's client secret *value* (not its id); `-` reads standard input.
    /// Needed the first time an app is used, unless --client-certificate-file is given.
    #[arg(long, value_name = "FILE", conflicts_with = "client_certificate_file")]
    pub client_secret_file: Option<PathBuf>,
    /// PEM file holding the app's certificate and its unencrypted private key, instead of a secret.
    #[arg(long, value_name = "FILE")]
    pub client_certificate_file: Option<PathBuf>,
    /// The mailbox address to listen to.
    #[arg(long)]
    pub mailbox: String,
    /// The folder to ingest from.
    #[arg(long, default_value = "inbox")]
    pub folder: String,
    /// A display name.
    #[arg(long)]
    pub name: Option<String>,
    /// When the client secret expires (YYYY-MM-DD or RFC 3339), for warnings 30/14/7/1 days ahead.
    #[arg(long, value_name = "DATE")]
    pub client_secret_expires_at: Option<String>,
    /// What the first poll imports: all, new, or last_days:N.
    #[arg(long, value_name = "POLICY")]
    pub first_import: Option<String>,
    /// How to reach the mailbox: graph (Microsoft Graph, the default) or imap (IMAP with OAuth2).
    #[arg(long, value_name = "TRANSPORT")]
    pub transport: Option<String>,
    /// Add the channel disabled.
    #[arg(long)]
    pub disabled: bool,
}

/// Arguments of `inboxd channel update`.
#[derive(Debug, Args)]
pub struct ChannelUpdateArgs {
    /// The channel id.
    pub id: String,
    /// File holding the new client secret value of the channel's app (every channel of the app
    /// uses it: the same as `inboxd app rotate`); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// The new secret's expiry (YYYY-MM-DD or RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub client_secret_expires_at: Option<String>,
    /// A new display name.
    #[arg(long)]
    pub name: Option<String>,
    /// A new folder.
    #[arg(long)]
    pub folder: Option<String>,
    /// A new tenant id (the channel must be authorized again).
    #[arg(long)]
    pub tenant_id: Option<String>,
    /// A new client id (the channel must be authorized again).
    #[arg(long)]
    pub client_id: Option<String>,
    /// A new mailbox (the channel must be authorized again).
    #[arg(long)]
    pub mailbox: Option<String>,
    /// Move the channel to another transport: graph or imap. Nothing is delivered twice; the
    /// channel asks for a new sign-in only if the app is not consented for the other resource.
    #[arg(long, value_name = "TRANSPORT")]
    pub transport: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
