//! Where `inboxd channel …` connects and with which admin token: `--server` checked and normalised
//! (a scheme-less loopback `host:port` becomes `http://`, anything else is explained), and the token
//! found in `--token`, `--token-file`, `INBOXD_ADMIN_TOKEN` or the configuration's
//! `security.admin_token_file`, in that order. No message here ever contains the token.

use std::net::IpAddr;
use std::path::Path;

use anyhow::anyhow;

use crate::config::{Env, Settings};
use crate::domain::secret::AdminToken;

/// The environment variable that carries the admin token.
pub const TOKEN_ENV: &str = "INBOXD_ADMIN_TOKEN";

/// How to give the CLI the admin token, for the error when none was found.
const HOW_TO_GIVE_A_TOKEN: &str = "give the admin token `inboxd serve` runs with in one of three ways: \
--token-file FILE (a file holding the token, chmod 600), the environment variable INBOXD_ADMIN_TOKEN, \
or the daemon's configuration (security.admin_token_file in --config FILE or config/inboxd.toml, or \
INBOXD_SECURITY__ADMIN_TOKEN_FILE)";

/// Parses `--server` (clap's value parser): an `http://` or `https://` URL, or a scheme-less
/// `host:port` of a loopback address (taken as `http://`). Answers the base URL without a trailing
/// slash; an error says what to write instead.
pub fn parse_server(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(
            "--server is empty: give the daemon's URL, e.g. https://inbox.example.com or 127.0.0.1:8080"
                .to_owned(),
        );
    }
    // A user name or password in the URL would show up in messages: never echo such input.
    let shown = if raw.contains('@') { "the value" } else { raw };
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        let authority = raw.split(['/', '?', '#']).next().unwrap_or(raw);
        let host = bare_host(authority);
        if !is_loopback(host) {
            return Err(format!(
                "--server needs a scheme: https://{shown} (or http://{shown} for a daemon without TLS); only a loopback address such as 127.0.0.1:8080 may omit it"
            ));
        }
        if authority.parse::<std::net::Ipv6Addr>().is_ok() {
            // A bare IPv6 address (`::1`) needs brackets in a URL.
            format!("http://[{authority}]{}", &raw[authority.len()..])
        } else {
            format!("http://{raw}")
        }
    };
    let url = url::Url::parse(&with_scheme).map_err(|err| {
        format!("--server {shown} is not a URL ({err}): give e.g. https://inbox.example.com")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "--server {shown} has the scheme {}://: give an https:// (or http://) URL, e.g. https://inbox.example.com",
            url.scheme()
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "--server must not hold a user name or password: the admin token is the only credential (--token-file or INBOXD_ADMIN_TOKEN)"
                .to_owned(),
        );
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "--server {shown} names no host: give e.g. https://inbox.example.com"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "--server {shown} has a query or fragment: give only the daemon's base URL, e.g. https://inbox.example.com"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The host of `host`, `host:port`, `[v6]:port` or a bare IPv6 address.
fn bare_host(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    if authority.parse::<IpAddr>().is_ok() {
        return authority;
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// Whether `host` is this machine: `localhost` or a loopback address.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A warning when the token would cross a network unencrypted (plain http to another machine).
pub fn plain_http_warning(server: &str) -> Option<String> {
    let url = url::Url::parse(server).ok()?;
    let remote = url.host_str().is_some_and(|host| !is_loopback(host));
    (url.scheme() == "http" && remote).then(|| {
        format!(
            "{server} is plain http: the admin token crosses the network unencrypted; use https:// (a reverse proxy with TLS, docs/operations.md) unless the network is trusted"
        )
    })
}

/// Parses `--token` (clap's value parser). The message never repeats the value.
pub fn parse_token(raw: &str) -> Result<AdminToken, String> {
    AdminToken::new(raw.trim()).map_err(|_| {
        "--token is empty: give the admin token, or better --token-file FILE".to_owned()
    })
}

/// Where to look for the admin token, from the command line and the environment.
#[derive(Debug)]
pub struct TokenSources<'a> {
    /// `--token`.
    pub token: Option<&'a AdminToken>,
    /// `--token-file`.
    pub token_file: Option<&'a Path>,
    /// `--config`.
    pub config: Option<&'a Path>,
}

/// The admin token, with warnings to show (a token file others may read).
#[derive(Debug)]
pub struct FoundToken {
    /// The token.
    pub token: AdminToken,
    /// Things the operator should fix, for stderr.
    pub warnings: Vec<String>,
}

/// Finds the admin token: `--token`, then `--token-file`, then `INBOXD_ADMIN_TOKEN`, then the
/// configuration's `security.admin_token_file` (the file `--config` names, or `config/inboxd.toml`
/// when it exists, with `INBOXD_SECURITY__ADMIN_TOKEN_FILE` over both).
pub fn find_token(sources: &TokenSources<'_>, env: &Env) -> anyhow::Result<FoundToken> {
    if let Some(token) = sources.token {
        return Ok(FoundToken {
            token: token.clone(),
            warnings: vec![
                "--token puts the admin token where other users of this machine can see it (ps, shell history); prefer --token-file FILE or INBOXD_ADMIN_TOKEN".to_owned(),
            ],
        });
    }
    if let Some(path) = sources.token_file {
        return read_token_file(path);
    }
    if let Some(value) = env.get(TOKEN_ENV).filter(|v| !v.trim().is_empty()) {
        let token = AdminToken::new(value.trim())
            .map_err(|_| anyhow!("{TOKEN_ENV} is empty: {HOW_TO_GIVE_A_TOKEN}"))?;
        return Ok(FoundToken {
            token,
            warnings: Vec::new(),
        });
    }
    let default = Path::new(crate::config::DEFAULT_CONFIG_PATH);
    let file = crate::config::config_file(sources.config, default);
    let settings = Settings::load_for_store_tools(file, env).map_err(|errors| {
        let which = file.map_or_else(
            || "the configuration".to_owned(),
            |f| format!("the configuration {}", f.display()),
        );
        anyhow!(
            "no admin token, and {which} could not be read to find security.admin_token_file:\n{errors}\nFix it, or {HOW_TO_GIVE_A_TOKEN}"
        )
    })?;
    if settings.security.admin_token_file.is_none() {
        let looked = file.map_or_else(
            || "no configuration file was found".to_owned(),
            |f| format!("{} sets no security.admin_token_file", f.display()),
        );
        return Err(anyhow!("no admin token ({looked}): {HOW_TO_GIVE_A_TOKEN}"));
    }
    let loaded = settings
        .load_admin_token(env)
        .map_err(|err| anyhow!("{err}"))?;
    Ok(FoundToken {
        token: loaded.value,
        warnings: loaded.warning.into_iter().collect(),
    })
}

/// Reads `--token-file`: the token is the file's text, trimmed; a file its group or others may read
/// gets a warning.
fn read_token_file(path: &Path) -> anyhow::Result<FoundToken> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|err| {
        anyhow!(
            "cannot read the admin token from --token-file {}: {err}; check the path and that you may read the file",
            path.display()
        )
    })?);
    let token = AdminToken::new(text.trim()).map_err(|_| {
        anyhow!(
            "the --token-file {} is empty: put the admin token `inboxd serve` runs with in it (`chmod 600` it)",
            path.display()
        )
    })?;
    Ok(FoundToken {
        token,
        warnings: crate::config::permission_warning(path, "admin token")
            .into_iter()
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn loopback_servers_need_no_scheme() {
        assert_eq!(
            parse_server("127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            parse_server("localhost:8080/").unwrap(),
            "http://localhost:8080"
        );
        assert_eq!(parse_server("[::1]:8080").unwrap(), "http://[::1]:8080");
        assert_eq!(parse_server("::1").unwrap(), "http://[::1]");
        assert_eq!(
            parse_server("https://inbox.example.com/").unwrap(),
            "https://inbox.example.com"
        );
        assert_eq!(
            parse_server("https://example.com/inboxd/").unwrap(),
            "https://example.com/inboxd"
        );
    }

    #[test]
    fn other_servers_are_explained() {
        let err = parse_server("inbox.example.com:8443").unwrap_err();
        assert!(
            err.contains("--server needs a scheme: https://inbox.example.com:8443"),
            "{err}"
        );
        assert!(!err.contains("relative URL"), "{err}");
        let err = parse_server("10.0.0.5:8080").unwrap_err();
        assert!(err.contains("https://10.0.0.5:8080"), "{err}");
        let err = parse_server("ftp://inbox.example.com").unwrap_err();
        assert!(err.contains("ftp://"), "{err}");
        let err = parse_server("https://admin:hunter2@inbox.example.com").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(parse_server("").is_err());
        assert!(parse_server("https://x.example?a=b").is_err());
    }

    #[test]
    fn plain_http_to_another_machine_is_warned_about() {
        assert!(plain_http_warning("http://10.0.0.5:8080").is_some());
        assert!(plain_http_warning("http://127.0.0.1:8080").is_none());
        assert!(plain_http_warning("https://inbox.example.com").is_none());
    }

    #[test]
    fn the_token_comes_from_the_first_source_given() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin.token");
        std::fs::write(&file, "from-the-token-file-0123\n").unwrap();
        let env: Env = [(TOKEN_ENV, "from-the-environment-0123")]
            .into_iter()
            .collect();
        let flag = AdminToken::new("from-the-flag-0123456789").unwrap();
        let sources = |token, token_file| TokenSources {
            token,
            token_file,
            config: None,
        };
        let found = find_token(&sources(Some(&flag), Some(&file)), &env).unwrap();
        assert_eq!(found.token.expose(), "from-the-flag-0123456789");
        let found = find_token(&sources(None, Some(&file)), &env).unwrap();
        assert_eq!(found.token.expose(), "from-the-token-file-0123");
        let found = find_token(&sources(None, None), &env).unwrap();
        assert_eq!(found.token.expose(), "from-the-environment-0123");
    }

    #[test]
    fn the_configuration_names_the_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("admin.token");
        std::fs::write(&token, "from-the-configuration-01\n").unwrap();
        let config = dir.path().join("inboxd.toml");
        std::fs::write(
            &config,
            format!("[security]\nadmin_token_file = \"{}\"\n", token.display()),
        )
        .unwrap();
        let sources = TokenSources {
            token: None,
            token_file: None,
            config: Some(&config),
        };
        let found = find_token(&sources, &Env::empty()).unwrap();
        assert_eq!(found.token.expose(), "from-the-configuration-01");
    }

    #[test]
    fn without_a_token_every_way_is_named() {
        let sources = TokenSources {
            token: None,
            token_file: None,
            config: None,
        };
        let err = find_token(&sources, &Env::empty()).unwrap_err().to_string();
        for way in [
            "--token-file",
            "INBOXD_ADMIN_TOKEN",
            "security.admin_token_file",
        ] {
            assert!(err.contains(way), "{err}");
        }
    }
}
