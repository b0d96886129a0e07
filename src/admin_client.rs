//! The client side of `inboxd channel …`: calls the running daemon's admin API and prints the answer
//! for a person, or with `--json` the API's JSON as is. [`connection`] finds the server and the admin
//! token; [`render`] makes the human text. A closed standard output ends the command quietly.

mod apps;
mod connection;
mod render;

use std::io::{Read as _, Write as _};
use std::path::Path;

use anyhow::{Context as _, bail};
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{
    AdminConnection, AppArgs, ChannelAddArgs, ChannelArgs, ChannelCommand, ChannelListArgs,
    ChannelUpdateArgs,
};
use crate::config::Env;
use crate::domain::secret::AdminToken;
use connection::{TokenSources, find_token, plain_http_warning};
pub use connection::{parse_server, parse_token};

/// Runs one `inboxd channel` command. A closed standard output (`inboxd channel list | head -1`)
/// ends it quietly and successfully.
pub async fn run(args: ChannelArgs) -> anyhow::Result<()> {
    match execute(args).await {
        Err(err) if err.chain().any(|cause| cause.is::<StdoutClosed>()) => Ok(()),
        other => other,
    }
}

/// Standard output was closed by the reader (a pipe into `head`): nothing more to say.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
struct StdoutClosed;

/// Standard output, with a closed pipe turned into [`StdoutClosed`] instead of a panic.
struct Out;

impl Out {
    fn lines<S: AsRef<str>>(&mut self, lines: &[S]) -> anyhow::Result<()> {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for line in lines {
            writeln!(out, "{}", line.as_ref()).map_err(stdout_error)?;
        }
        out.flush().map_err(stdout_error)
    }

    fn line(&mut self, line: impl AsRef<str>) -> anyhow::Result<()> {
        self.lines(&[line])
    }

    /// The API's JSON as is (pretty-printed, one document).
    fn json(&mut self, value: &Value) -> anyhow::Result<()> {
        let text =
            serde_json::to_string_pretty(value).context("could not print the answer as JSON")?;
        self.line(text)
    }
}

fn stdout_error(err: std::io::Error) -> anyhow::Error {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::anyhow!("cannot write to standard output: {err}")
    }
}

/// Warnings go to stderr, so that stdout stays the answer (and valid JSON with `--json`).
fn warn(warning: &str) {
    let _ = writeln!(std::io::stderr(), "inboxd: warning: {warning}");
}

/// Runs one `inboxd app` command, like [`run`].
pub async fn run_app(args: AppArgs) -> anyhow::Result<()> {
    let result = async {
        let client = connect(&args.connection)?;
        apps::execute(&client, args.command, args.connection.json, &mut Out).await
    }
    .await;
    match result {
        Err(err) if err.chain().any(|cause| cause.is::<StdoutClosed>()) => Ok(()),
        other => other,
    }
}

/// The admin API client of a command line's connection options (warnings printed).
fn connect(connection: &AdminConnection) -> anyhow::Result<Client> {
    let env = Env::process();
    let found = find_token(
        &TokenSources {
            token: connection.token.as_ref(),
            token_file: connection.token_file.as_deref(),
            config: connection.config.as_deref(),
        },
        &env,
    )?;
    for warning in found
        .warnings
        .iter()
        .chain(plain_http_warning(&connection.server).iter())
    {
        warn(warning);
    }
    Ok(Client {
        http: reqwest::Client::new(),
        base: connection.server.clone(),
        token: found.token,
    })
}

async fn execute(args: ChannelArgs) -> anyhow::Result<()> {
    let client = connect(&args.connection)?;
    let json = args.connection.json;
    let mut out = Out;
    match args.command {
        ChannelCommand::Add(add) => {
            let channel = client
                .call(Method::POST, "/api/channels", &[], Some(add_body(add)?))
                .await?;
            if json {
                return out.json(&channel);
            }
            out.lines(&render::channel(&channel))?;
            if let Some(id) = channel.get("id").and_then(Value::as_str) {
                out.line(format!(
                    "\nNext: register the redirect URI above in Azure, then run `inboxd channel authorize {id}`."
                ))?;
            }
        }
        ChannelCommand::List(list) => list_channels(&client, &list, json, &mut out).await?,
        ChannelCommand::Show { id } => {
            let channel = client
                .call(Method::GET, &format!("/api/channels/{id}"), &[], None)
                .await?;
            if json {
                return out.json(&channel);
            }
            let mut lines = render::channel(&channel);
            match client
                .call(
                    Method::GET,
                    &format!("/api/channels/{id}/quarantine"),
                    &[],
                    None,
                )
                .await
            {
                Ok(answer) => {
                    lines.extend(render::quarantine_summary(&id, &answer, QUARANTINE_API_MAX))
                }
                Err(err) => lines.push(format!("quarantine:    could not be read: {err:#}")),
            }
            out.lines(&lines)?;
        }
        ChannelCommand::Update(update) => {
            let id = update.id.clone();
            let channel = client
                .call(
                    Method::PATCH,
                    &format!("/api/channels/{id}"),
                    &[],
                    Some(update_body(update)?),
                )
                .await?;
            print_channel(&mut out, &channel, json)?;
        }
        ChannelCommand::Remove { id } => {
            client
                .call(Method::DELETE, &format!("/api/channels/{id}"), &[], None)
                .await?;
            if json {
                return out.json(&json!({ "id": id, "removed": true }));
            }
            out.line(format!("Channel {id} removed."))?;
        }
        ChannelCommand::Enable { id } => {
            let channel = client
                .call(
                    Method::POST,
                    &format!("/api/channels/{id}/enable"),
                    &[],
                    None,
                )
                .await?;
            print_channel(&mut out, &channel, json)?;
        }
        ChannelCommand::Disable { id } => {
            let channel = client
                .call(
                    Method::POST,
                    &format!("/api/channels/{id}/disable"),
                    &[],
                    None,
                )
                .await?;
            print_channel(&mut out, &channel, json)?;
        }
        ChannelCommand::Authorize { id } => {
            let answer = client
                .call(
                    Method::POST,
                    &format!("/api/channels/{id}/authorize"),
                    &[],
                    None,
                )
                .await?;
            if json {
                return out.json(&answer);
            }
            // The mailbox, to say whose sign-in it takes; the link is printed without it too.
            let mailbox = client
                .call(Method::GET, &format!("/api/channels/{id}"), &[], None)
                .await
                .ok()
                .and_then(|c| c.get("mailbox").and_then(Value::as_str).map(str::to_owned));
            out.lines(&authorize_text(&answer, mailbox.as_deref()))?;
        }
        ChannelCommand::Poll { id } => {
            let answer = client
                .call(Method::POST, &format!("/api/channels/{id}/poll"), &[], None)
                .await?;
            if json {
                return out.json(&answer);
            }
            let at = answer
                .get("poll_at")
                .and_then(Value::as_str)
                .and_then(|at| at.parse::<chrono::DateTime<chrono::Utc>>().ok());
            match at {
                Some(at) if at > chrono::Utc::now() + chrono::Duration::seconds(1) => out.line(format!(
                    "Channel {id} polls at {at}: Microsoft asked inboxd not to call this mailbox before then (Retry-After)."
                ))?,
                _ => out.line(format!("Channel {id} polls now."))?,
            }
        }
        ChannelCommand::Backfill { id, since } => {
            let answer = client
                .call(
                    Method::POST,
                    &format!("/api/channels/{id}/backfill"),
                    &[],
                    Some(json!({ "since": since })),
                )
                .await?;
            if json {
                return out.json(&answer);
            }
            out.line(format!(
                "Channel {id} delivers what was received since {} and never delivered, starting {}. `inboxd channel show {id}` shows the messages delivered today.",
                answer
                    .get("since")
                    .and_then(Value::as_str)
                    .unwrap_or(&since),
                answer
                    .get("start_at")
                    .and_then(Value::as_str)
                    .unwrap_or("now")
            ))?;
        }
        ChannelCommand::Quarantine { id } => {
            let answer = client
                .call(
                    Method::GET,
                    &format!("/api/channels/{id}/quarantine"),
                    &[],
                    None,
                )
                .await?;
            if json {
                return out.json(&answer);
            }
            out.lines(&render::quarantine(&answer))?;
        }
        ChannelCommand::Events { id } => {
            let answer = client
                .call(
                    Method::GET,
                    &format!("/api/channels/{id}/events"),
                    &[],
                    None,
                )
                .await?;
            if json {
                return out.json(&answer);
            }
            out.lines(&render::events(&answer))?;
        }
        ChannelCommand::Invite { id, hours } => {
            let body = hours.map(|hours| serde_json::json!({ "valid_hours": hours }));
            let answer = client
                .call(
                    Method::POST,
                    &format!("/api/channels/{id}/invitations"),
                    &[],
                    body,
                )
                .await?;
            if json {
                return out.json(&answer);
            }
            let field = |k: &str| answer[k].as_str().unwrap_or_default().to_owned();
            out.lines(&[
                "Send this link to the mailbox's user (or a user with Full Access to the mailbox):"
                    .to_owned(),
                format!("  {}", field("url")),
                format!(
                    "It works once, until {}. Revoke it: inboxd channel uninvite {}",
                    field("expires_at"),
                    field("id")
                ),
            ])?;
        }
        ChannelCommand::Uninvite { invitation_id } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/api/invitations/{invitation_id}"),
                    &[],
                    None,
                )
                .await?;
            if json {
                return out.json(&serde_json::json!({"id": invitation_id, "revoked": true}));
            }
            out.lines(&[format!(
                "Invitation {invitation_id} revoked: its link no longer works."
            )])?;
        }
        ChannelCommand::Replay { id } => {
            let answer = client
                .call(
                    Method::POST,
                    &format!("/api/channels/{id}/quarantine/replay"),
                    &[],
                    None,
                )
                .await?;
            if json {
                return out.json(&answer);
            }
            out.line(format!(
                "{} message(s) released for delivery.",
                answer.get("released").and_then(Value::as_u64).unwrap_or(0)
            ))?;
        }
    }
    Ok(())
}

/// Most quarantined messages the API lists in one answer (`src/http/admin.rs`).
const QUARANTINE_API_MAX: usize = 10_000;

/// Most channels the API answers per page (`GET /api/channels?limit=`).
const PAGE_MAX: usize = 1000;

fn print_channel(out: &mut Out, channel: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        out.json(channel)
    } else {
        out.lines(&render::channel(channel))
    }
}

/// What `channel authorize` says: who must sign in, the link, and where it returns.
fn authorize_text(answer: &Value, mailbox: Option<&str>) -> Vec<String> {
    let url = answer
        .get("authorization_url")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let whose = mailbox.map_or_else(
        || "the mailbox's user".to_owned(),
        |mailbox| format!("the user of {mailbox}"),
    );
    let until = answer
        .get("expires_at")
        .and_then(Value::as_str)
        .map_or_else(|| "for 10 minutes".to_owned(), |at| format!("until {at}"));
    let mut lines = vec![
        format!(
            "Send this link to {whose} (for a shared mailbox: to a user with Full Access to it). That user opens it, signs in with their own account and accepts the permissions; it is valid {until}:"
        ),
        String::new(),
        url.to_owned(),
        String::new(),
    ];
    if let Some(redirect) = answer.get("redirect_uri").and_then(Value::as_str) {
        lines.push(format!(
            "It returns to {redirect}, which must be registered as a Web redirect URI of the app in Azure."
        ));
    }
    lines.push(
        "If the sign-in ends with AADSTS65001 or AADSTS90094, the tenant lets only admins consent: an admin grants admin consent to the app once (docs/azure-setup.md, step 5), then the user signs in again.".to_owned(),
    );
    lines
}

/// `channel list`: one page (`--limit`, `--offset`), saying when more exist, or every page (`--all`).
async fn list_channels(
    client: &Client,
    args: &ChannelListArgs,
    json: bool,
    out: &mut Out,
) -> anyhow::Result<()> {
    let mut filter: Vec<(&str, String)> = Vec::new();
    if let Some(status) = &args.status {
        filter.push(("status", status.clone()));
    }
    if let Some(search) = &args.search {
        filter.push(("q", search.clone()));
    }
    let page = |offset: usize, limit: usize| {
        let mut query = filter.clone();
        query.push(("offset", offset.to_string()));
        query.push(("limit", limit.to_string()));
        async move {
            let page = client
                .call(Method::GET, "/api/channels", &query, None)
                .await?;
            let channels = page
                .get("channels")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = page
                .get("total")
                .and_then(Value::as_u64)
                .map_or(channels.len(), |t| usize::try_from(t).unwrap_or(usize::MAX));
            anyhow::Ok((page, channels, total))
        }
    };

    if !args.all {
        let (answer, channels, total) = page(args.offset, usize::from(args.limit)).await?;
        let shown = channels.len();
        let next = args.offset + shown;
        let note = (next < total).then(|| {
            format!(
                "showing {shown} of {total} channel(s) (from offset {}); use --all for every one, or --offset {next} for the next page",
                args.offset
            )
        });
        if json {
            out.json(&answer)?;
            if let Some(note) = note {
                warn(&note);
            }
            return Ok(());
        }
        let mut lines = vec![render::list_header()];
        lines.extend(render::list_rows(&channels));
        lines.push(note.unwrap_or_else(|| match args.offset {
            0 => format!("{shown} channel(s)"),
            from => format!("{shown} of {total} channel(s) (from offset {from})"),
        }));
        return out.lines(&lines);
    }

    // Every page. A channel added or removed meanwhile may shift the pages: ids already printed
    // are skipped, and the loop ends on an empty page or at the total.
    let mut seen = std::collections::HashSet::new();
    let mut collected: Vec<Value> = Vec::new();
    let mut printed = 0usize;
    let mut offset = 0usize;
    if !json {
        out.line(render::list_header())?;
    }
    loop {
        let (_, channels, total) = page(offset, PAGE_MAX).await?;
        if channels.is_empty() {
            break;
        }
        offset += channels.len();
        let fresh: Vec<Value> = channels
            .into_iter()
            .filter(|c| seen.insert(c.get("id").and_then(Value::as_str).map(str::to_owned)))
            .collect();
        printed += fresh.len();
        if json {
            collected.extend(fresh);
        } else {
            out.lines(&render::list_rows(&fresh))?;
        }
        if offset >= total {
            break;
        }
    }
    if json {
        return out.json(&json!({
            "channels": collected, "total": printed, "offset": 0, "limit": printed,
        }));
    }
    out.line(format!("{printed} channel(s)"))
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: AdminToken,
}

impl Client {
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(self.token.expose());
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| {
            format!(
                "Could not reach inboxd at {} (is `inboxd serve` running? --server)",
                self.base
            )
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            });
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or(text);
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!(
                "inboxd answered {status}: {message} (the admin token was refused: give the one `inboxd serve` runs with, by --token-file, INBOXD_ADMIN_TOKEN or security.admin_token_file)"
            )
        }
        bail!("inboxd answered {status}: {message}")
    }
}

fn read_secret(path: &Path) -> anyhow::Result<String> {
    let mut secret = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut secret)
            .context("Could not read the client secret from standard input")?;
    } else {
        secret = std::fs::read_to_string(path)
            .with_context(|| format!("Could not read the client secret file {}", path.display()))?;
    }
    let secret = secret.trim().to_owned();
    if secret.is_empty() {
        bail!(
            "the client secret file {} is empty: put the secret's Value (not its Secret ID) in it",
            path.display()
        );
    }
    Ok(secret)
}

fn add_body(add: ChannelAddArgs) -> anyhow::Result<Value> {
    let mut body = json!({
        "tenant_id": add.tenant_id,
        "client_id": add.client_id,
        "mailbox": add.mailbox,
        "folder": add.folder,
        "enabled": !add.disabled,
    });
    if let Some(path) = &add.client_secret_file {
        body["client_secret"] = json!(read_secret(path)?);
    }
    if let Some(path) = &add.client_certificate_file {
        body["client_certificate"] = json!(apps::read_certificate(path)?);
    }
    if let Some(name) = add.name {
        body["name"] = json!(name);
    }
    if let Some(at) = add.client_secret_expires_at {
        body["client_secret_expires_at"] = json!(at);
    }
    if let Some(policy) = add.first_import {
        body["first_import"] = json!(policy);
    }
    if let Some(transport) = add.transport {
        body["transport"] = json!(transport);
    }
    Ok(body)
}

fn update_body(update: ChannelUpdateArgs) -> anyhow::Result<Value> {
    let mut body = json!({});
    if let Some(path) = update.client_secret_file {
        body["client_secret"] = json!(read_secret(&path)?);
    }
    for (key, value) in [
        ("client_secret_expires_at", update.client_secret_expires_at),
        ("name", update.name),
        ("folder", update.folder),
        ("tenant_id", update.tenant_id),
        ("client_id", update.client_id),
        ("mailbox", update.mailbox),
        ("transport", update.transport),
    ] {
        if let Some(value) = value {
            body[key] = json!(value);
        }
    }
    if body.as_object().is_some_and(|o| o.is_empty()) {
        bail!(
            "nothing to update: give at least one of --client-secret-file, --client-secret-expires-at, --name, --folder, --tenant-id, --client-id, --mailbox, --transport"
        );
    }
    Ok(body)
}
