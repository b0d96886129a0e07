//! The client side of `inboxd channel …`: calls the running daemon's admin API and prints the answer
//! for a person. The admin token comes from `INBOXD_ADMIN_TOKEN`.

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::cli::{ChannelAddArgs, ChannelArgs, ChannelCommand, ChannelUpdateArgs};

/// Runs one `inboxd channel` command.
pub async fn run(args: ChannelArgs) -> anyhow::Result<()> {
    let token = std::env::var("INBOXD_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .context("INBOXD_ADMIN_TOKEN is not set: export the daemon's admin token (the value of INBOXD_ADMIN_TOKEN or security.admin_token_file of `inboxd serve`)")?;
    let client = Client {
        http: reqwest::Client::new(),
        base: args.server.trim_end_matches('/').to_owned(),
        token,
    };
    match args.command {
        ChannelCommand::Add(add) => {
            let channel = client
                .call(reqwest::Method::POST, "/api/channels", Some(add_body(add)?))
                .await?;
            print_channel(&channel);
            if let Some(id) = channel.get("id").and_then(Value::as_str) {
                println!(
                    "\nNext: register the redirect URI above in Azure, then run `inboxd channel authorize {id}`."
                );
            }
        }
        ChannelCommand::List { status } => {
            let mut path = "/api/channels?limit=1000".to_owned();
            if let Some(status) = status {
                path.push_str(&format!("&status={status}"));
            }
            let page = client.call(reqwest::Method::GET, &path, None).await?;
            print_list(&page);
        }
        ChannelCommand::Show { id } => print_channel(
            &client
                .call(reqwest::Method::GET, &format!("/api/channels/{id}"), None)
                .await?,
        ),
        ChannelCommand::Update(update) => {
            let id = update.id.clone();
            let channel = client
                .call(
                    reqwest::Method::PATCH,
                    &format!("/api/channels/{id}"),
                    Some(update_body(update)?),
                )
                .await?;
            print_channel(&channel);
        }
        ChannelCommand::Remove { id } => {
            client
                .call(
                    reqwest::Method::DELETE,
                    &format!("/api/channels/{id}"),
                    None,
                )
                .await?;
            println!("Channel {id} removed.");
        }
        ChannelCommand::Enable { id } => print_channel(
            &client
                .call(
                    reqwest::Method::POST,
                    &format!("/api/channels/{id}/enable"),
                    None,
                )
                .await?,
        ),
        ChannelCommand::Disable { id } => print_channel(
            &client
                .call(
                    reqwest::Method::POST,
                    &format!("/api/channels/{id}/disable"),
                    None,
                )
                .await?,
        ),
        ChannelCommand::Authorize { id } => {
            let answer = client
                .call(
                    reqwest::Method::POST,
                    &format!("/api/channels/{id}/authorize"),
                    None,
                )
                .await?;
            let url = answer
                .get("authorization_url")
                .and_then(Value::as_str)
                .unwrap_or_default();
            println!(
                "Open this link as an admin of the mailbox's tenant, sign in and consent (valid 10 minutes):\n\n{url}\n"
            );
            if let Some(redirect) = answer.get("redirect_uri").and_then(Value::as_str) {
                println!(
                    "It returns to {redirect}, which must be registered as a Web redirect URI of the app in Azure."
                );
            }
        }
        ChannelCommand::Poll { id } => {
            let answer = client
                .call(
                    reqwest::Method::POST,
                    &format!("/api/channels/{id}/poll"),
                    None,
                )
                .await?;
            let at = answer
                .get("poll_at")
                .and_then(Value::as_str)
                .and_then(|at| at.parse::<chrono::DateTime<chrono::Utc>>().ok());
            match at {
                Some(at) if at > chrono::Utc::now() + chrono::Duration::seconds(1) => println!(
                    "Channel {id} polls at {at}: Microsoft asked inboxd not to call this mailbox before then (Retry-After)."
                ),
                _ => println!("Channel {id} polls now."),
            }
        }
        ChannelCommand::Backfill { id, since } => {
            let answer = client
                .call(
                    reqwest::Method::POST,
                    &format!("/api/channels/{id}/backfill"),
                    Some(serde_json::json!({ "since": since })),
                )
                .await?;
            println!(
                "Channel {id} delivers what was received since {} and never delivered, starting {}. `inboxd channel show {id}` shows the messages delivered today.",
                answer
                    .get("since")
                    .and_then(Value::as_str)
                    .unwrap_or(&since),
                answer
                    .get("start_at")
                    .and_then(Value::as_str)
                    .unwrap_or("now")
            );
        }
        ChannelCommand::Quarantine { id } => {
            let answer = client
                .call(
                    reqwest::Method::GET,
                    &format!("/api/channels/{id}/quarantine"),
                    None,
                )
                .await?;
            let messages = answer
                .get("messages")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if messages.is_empty() {
                println!("No quarantined messages.");
            }
            for m in messages {
                println!(
                    "{}  failures={}  {}",
                    m.get("message_id").and_then(Value::as_str).unwrap_or("?"),
                    m.get("failures").and_then(Value::as_u64).unwrap_or(0),
                    m.get("last_error").and_then(Value::as_str).unwrap_or("")
                );
            }
        }
        ChannelCommand::Replay { id } => {
            let answer = client
                .call(
                    reqwest::Method::POST,
                    &format!("/api/channels/{id}/quarantine/replay"),
                    None,
                )
                .await?;
            println!(
                "{} message(s) released for delivery.",
                answer.get("released").and_then(Value::as_u64).unwrap_or(0)
            );
        }
    }
    Ok(())
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
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
        "client_secret": read_secret(&add.client_secret_file)?,
        "mailbox": add.mailbox,
        "folder": add.folder,
        "enabled": !add.disabled,
    });
    if let Some(name) = add.name {
        body["name"] = json!(name);
    }
    if let Some(at) = add.client_secret_expires_at {
        body["client_secret_expires_at"] = json!(at);
    }
    if let Some(policy) = add.first_import {
        body["first_import"] = json!(policy);
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
    ] {
        if let Some(value) = value {
            body[key] = json!(value);
        }
    }
    if body.as_object().is_some_and(|o| o.is_empty()) {
        bail!(
            "nothing to update: give at least one of --client-secret-file, --client-secret-expires-at, --name, --folder, --tenant-id, --client-id, --mailbox"
        );
    }
    Ok(body)
}

fn field<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn print_channel(channel: &Value) {
    println!("id:            {}", field(channel, "id"));
    println!("name:          {}", field(channel, "name"));
    println!(
        "mailbox:       {} (folder {})",
        field(channel, "mailbox"),
        field(channel, "folder")
    );
    println!(
        "tenant / app:  {} / {}",
        field(channel, "tenant_id"),
        field(channel, "client_id")
    );
    println!("status:        {}", field(channel, "status"));
    println!("last poll:     {}", field(channel, "last_poll_at"));
    println!("next poll:     {}", field(channel, "next_poll_at"));
    println!("redirect URI:  {}", field(channel, "redirect_uri"));
    if let Some(warning) = channel.get("secret_warning").and_then(Value::as_str) {
        println!("warning:       {warning}");
    }
    if let Some(problem) = channel.get("warning").filter(|e| !e.is_null()) {
        println!(
            "warning:       {} ({}): {}",
            field(problem, "code"),
            field(problem, "source"),
            field(problem, "remedy")
        );
    }
    if let Some(error) = channel.get("last_error").filter(|e| !e.is_null()) {
        println!(
            "last error:    {} ({}) at {}",
            field(error, "code"),
            field(error, "source"),
            field(error, "at")
        );
        println!("               {}", field(error, "message"));
        println!("what to do:    {}", field(error, "remedy"));
    }
}

fn print_list(page: &Value) {
    let channels = page
        .get("channels")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    println!(
        "{:<36}  {:<22}  {:<32}  LAST ERROR",
        "ID", "STATUS", "MAILBOX"
    );
    for channel in &channels {
        let error = channel
            .get("last_error")
            .filter(|e| !e.is_null())
            .map(|e| field(e, "code"))
            .unwrap_or("");
        println!(
            "{:<36}  {:<22}  {:<32}  {}",
            field(channel, "id"),
            field(channel, "status"),
            field(channel, "mailbox"),
            error
        );
    }
    let total = page
        .get("total")
        .and_then(Value::as_u64)
        .unwrap_or(channels.len() as u64);
    println!("{} of {total} channel(s)", channels.len());
}
