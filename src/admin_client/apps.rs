//! `inboxd app …`: list, show, add, rotate and remove apps through the admin API. A credential is
//! read from a file (a secret's value, or a PEM with the certificate and its private key) and
//! never printed; the answers show the credential's kind, expiry and thumbprint.

use std::path::Path;

use anyhow::{Context as _, bail};
use reqwest::Method;
use serde_json::{Value, json};

use super::{Client, Out, read_secret};
use crate::cli::{AppCommand, CredentialArgs};

/// Reads a certificate PEM file: it must hold the certificate and its private key.
pub(super) fn read_certificate(path: &Path) -> anyhow::Result<String> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("Could not read the certificate file {}", path.display()))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") || !pem.contains("PRIVATE KEY-----") {
        bail!(
            "the certificate file {} must hold the certificate and its unencrypted private key as PEM (`cat cert.pem key.pem > app.pem`)",
            path.display()
        );
    }
    Ok(pem)
}

fn credential_body(args: &CredentialArgs) -> anyhow::Result<Value> {
    let mut body = json!({});
    if let Some(path) = &args.client_secret_file {
        body["client_secret"] = json!(read_secret(path)?);
    }
    if let Some(path) = &args.client_certificate_file {
        body["client_certificate"] = json!(read_certificate(path)?);
    }
    if let Some(at) = &args.client_secret_expires_at {
        body["client_secret_expires_at"] = json!(at);
    }
    Ok(body)
}

/// `tenant/client` as the API's path.
fn path_of(app: &str) -> anyhow::Result<String> {
    let Some((tenant, client)) = app.split_once('/').or_else(|| app.split_once(':')) else {
        bail!("app {app:?} is not an app id: write tenant/client, as `inboxd app list` shows it");
    };
    Ok(format!("/api/apps/{tenant}/{client}"))
}

fn text(value: &Value, key: &str) -> String {
    match &value[key] {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One app, for a person.
fn render(app: &Value) -> Vec<String> {
    let mut lines = vec![
        format!("app:           {}", text(app, "id")),
        format!("name:          {}", text(app, "name")),
        format!("credential:    {}", text(app, "credential_kind")),
        format!("expires:       {}", text(app, "expires_at")),
    ];
    if app["thumbprint"].is_string() {
        lines.push(format!("thumbprint:    {}", text(app, "thumbprint")));
        lines.push(format!("subject:       {}", text(app, "subject")));
    }
    lines.push(format!("channels:      {}", text(app, "channels")));
    lines.push(format!("rotated:       {}", text(app, "rotated_at")));
    if let Some(warning) = app["warning"].as_str() {
        lines.push(format!("warning:       {warning}"));
    }
    lines
}

/// Runs one `inboxd app` command.
pub(super) async fn execute(
    client: &Client,
    command: AppCommand,
    json: bool,
    out: &mut Out,
) -> anyhow::Result<()> {
    match command {
        AppCommand::List => {
            let apps = client.call(Method::GET, "/api/apps", &[], None).await?;
            if json {
                return out.json(&apps);
            }
            let rows = apps.as_array().cloned().unwrap_or_default();
            let mut lines = vec![format!(
                "{:<75} {:<11} {:<25} {:>8}",
                "APP", "CREDENTIAL", "EXPIRES", "CHANNELS"
            )];
            for app in &rows {
                lines.push(format!(
                    "{:<75} {:<11} {:<25} {:>8}{}",
                    text(app, "id"),
                    text(app, "credential_kind"),
                    text(app, "expires_at"),
                    text(app, "channels"),
                    app["warning"]
                        .as_str()
                        .map(|w| format!("  ! {w}"))
                        .unwrap_or_default()
                ));
            }
            lines.push(format!("{} app(s)", rows.len()));
            out.lines(&lines)
        }
        AppCommand::Show { app } => {
            let answer = client.call(Method::GET, &path_of(&app)?, &[], None).await?;
            if json {
                return out.json(&answer);
            }
            out.lines(&render(&answer))
        }
        AppCommand::Add(add) => {
            let mut body = credential_body(&add.credential)?;
            body["tenant_id"] = json!(add.tenant_id);
            body["client_id"] = json!(add.client_id);
            if let Some(name) = add.name {
                body["name"] = json!(name);
            }
            let answer = client
                .call(Method::POST, "/api/apps", &[], Some(body))
                .await?;
            if json {
                return out.json(&answer);
            }
            out.lines(&render(&answer))
        }
        AppCommand::Rotate(rotate) => {
            let body = credential_body(&rotate.credential)?;
            if body.as_object().is_some_and(|o| o.is_empty()) {
                bail!(
                    "nothing to rotate: give --client-secret-file or --client-certificate-file (or only --client-secret-expires-at to note the current secret's expiry)"
                );
            }
            let answer = client
                .call(
                    Method::PUT,
                    &format!("{}/credential", path_of(&rotate.app)?),
                    &[],
                    Some(body),
                )
                .await?;
            if json {
                return out.json(&answer);
            }
            let mut lines = render(&answer["app"]);
            lines.push(format!(
                "\nEvery channel of the app uses the new credential from its next token request; {} blocked channel(s) try again now.",
                text(&answer, "retried")
            ));
            out.lines(&lines)
        }
        AppCommand::Remove { app } => {
            client
                .call(Method::DELETE, &path_of(&app)?, &[], None)
                .await?;
            if json {
                return out.json(&json!({ "app": app, "removed": true }));
            }
            out.line(format!("App {app} removed."))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn an_app_id_becomes_its_path_and_a_wrong_one_is_explained() {
        assert_eq!(
            path_of("contoso.com/00000000-0000-0000-0000-000000000001").unwrap(),
            "/api/apps/contoso.com/00000000-0000-0000-0000-000000000001"
        );
        let err = path_of("contoso.com").unwrap_err().to_string();
        assert!(err.contains("tenant/client"), "{err}");
    }

    #[test]
    fn a_certificate_shows_its_thumbprint_and_a_warning() {
        let lines = render(&json!({
            "id": "t/c", "credential_kind": "certificate", "thumbprint": "AB12",
            "subject": "CN=inboxd", "channels": 3, "expires_at": "2027-01-01T00:00:00Z",
            "warning": "the certificate expires in 9 days",
        }))
        .join("\n");
        for part in ["AB12", "CN=inboxd", "channels:      3", "expires in 9 days"] {
            assert!(lines.contains(part), "{part} missing:\n{lines}");
        }
    }
}
