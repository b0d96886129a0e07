//! Loading the secrets: master key, admin token and webhook secret, from the environment or key files.
//!
//! The environment variable wins over the `[security]` file. Error messages name the variable or the
//! file and say how to fix it; they never contain a secret value.

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::config::{Env, Settings};
use crate::domain::DomainError;
use crate::domain::secret::{AdminToken, MasterKey, WebhookSecret};

/// The shortest admin token accepted, in characters.
pub const ADMIN_TOKEN_MIN_CHARS: usize = 16;

/// A secret could not be loaded. Messages never contain the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Neither the environment variable nor the key file is set.
    #[error(
        "no {what}: set the environment variable {env} or the configuration key {key} (environment {key_env}). {how}"
    )]
    MissingSecret {
        /// What is missing, e.g. "master key".
        what: &'static str,
        /// The environment variable that carries it.
        env: &'static str,
        /// The configuration key naming its file.
        key: &'static str,
        /// The environment variable overriding that key.
        key_env: &'static str,
        /// How to make one.
        how: &'static str,
    },
    /// The key file could not be read.
    #[error(
        "cannot read the {what} from {path} (named by {key}): {reason}; check the path and that inboxd's user may read it"
    )]
    Unreadable {
        /// What the file holds.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The configuration key naming it.
        key: &'static str,
        /// The I/O error.
        reason: String,
    },
    /// The value was found but is not acceptable.
    #[error("the {what} from {from} is not valid: {reason}")]
    Invalid {
        /// What the value is.
        what: &'static str,
        /// Where it came from.
        from: SecretSource,
        /// What is wrong and how to fix it (never the value).
        reason: String,
    },
}

/// Where a secret came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable.
    Env(&'static str),
    /// A key file.
    File(PathBuf),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(name) => write!(f, "environment variable {name}"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// A secret and where it came from, with a warning to log when the key file is too widely readable.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The secret.
    pub value: T,
    /// Where it came from.
    pub source: SecretSource,
    /// Set when the key file can be read by its group or by everyone; log it at start-up.
    pub warning: Option<String>,
}

impl<T> Loaded<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Loaded<U> {
        Loaded {
            value: f(self.value),
            source: self.source,
            warning: self.warning,
        }
    }
}

/// How to describe and find one secret.
struct SecretSpec {
    what: &'static str,
    env: &'static str,
    key: &'static str,
    key_env: &'static str,
    how: &'static str,
}

const MASTER_KEY: SecretSpec = SecretSpec {
    what: "master key",
    env: "INBOXD_MASTER_KEY",
    key: "security.master_key_file",
    key_env: "INBOXD_SECURITY__MASTER_KEY_FILE",
    how: "The master key encrypts every secret in the store; make one with `inboxd keygen > /etc/inboxd/master.key && chmod 600 /etc/inboxd/master.key`, then set security.master_key_file = \"/etc/inboxd/master.key\" or `export INBOXD_MASTER_KEY=\"$(cat /etc/inboxd/master.key)\"`. Keep a copy with your backups: the store cannot be read without it.",
};

const ADMIN_TOKEN: SecretSpec = SecretSpec {
    what: "admin token",
    env: "INBOXD_ADMIN_TOKEN",
    key: "security.admin_token_file",
    key_env: "INBOXD_SECURITY__ADMIN_TOKEN_FILE",
    how: "The admin token guards the admin API; make one with `openssl rand -hex 32 > /etc/inboxd/admin.token && chmod 600 /etc/inboxd/admin.token`, then set security.admin_token_file = \"/etc/inboxd/admin.token\" or `export INBOXD_ADMIN_TOKEN=\"$(cat /etc/inboxd/admin.token)\"`.",
};

const WEBHOOK_SECRET: SecretSpec = SecretSpec {
    what: "webhook secret",
    env: "INBOXD_WEBHOOK_SECRET",
    key: "security.webhook_secret_file",
    key_env: "INBOXD_SECURITY__WEBHOOK_SECRET_FILE",
    how: "The webhook secret signs each delivery (X-Inboxd-Signature) and the receiver checks it; make one with `openssl rand -hex 32 > /etc/inboxd/webhook.secret && chmod 600 /etc/inboxd/webhook.secret`, give it to the receiver, then set security.webhook_secret_file or INBOXD_WEBHOOK_SECRET.",
};

/// A warning when `path` can be read or written by its group or by others.
#[cfg(unix)]
pub fn permission_warning(path: &Path, what: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "the {what} file {} has mode {mode:03o}: its group or other users may read it; run `chmod 600 {}`",
            path.display(),
            path.display()
        )
    })
}

#[cfg(not(unix))]
pub fn permission_warning(_path: &Path, _what: &str) -> Option<String> {
    None
}

/// Reads a secret's text from its environment variable, else from its file.
fn load_text(
    spec: &SecretSpec,
    file: Option<&Path>,
    env: &Env,
) -> Result<Loaded<Zeroizing<String>>, ConfigError> {
    if let Some(value) = env.get(spec.env).filter(|v| !v.trim().is_empty()) {
        return Ok(Loaded {
            value: Zeroizing::new(value.trim().to_owned()),
            source: SecretSource::Env(spec.env),
            warning: None,
        });
    }
    let Some(path) = file else {
        return Err(ConfigError::MissingSecret {
            what: spec.what,
            env: spec.env,
            key: spec.key,
            key_env: spec.key_env,
            how: spec.how,
        });
    };
    let text =
        Zeroizing::new(
            std::fs::read_to_string(path).map_err(|err| ConfigError::Unreadable {
                what: spec.what,
                path: path.to_owned(),
                key: spec.key,
                reason: err.to_string(),
            })?,
        );
    let value = Zeroizing::new(text.trim().to_owned());
    if value.is_empty() {
        return Err(ConfigError::Invalid {
            what: spec.what,
            from: SecretSource::File(path.to_owned()),
            reason: format!("the file is empty. {}", spec.how),
        });
    }
    Ok(Loaded {
        value,
        source: SecretSource::File(path.to_owned()),
        warning: permission_warning(path, spec.what),
    })
}

fn invalid(spec: &SecretSpec, source: SecretSource, err: DomainError) -> ConfigError {
    let reason = match err {
        DomainError::InvalidSecret(_, why) => why.to_owned(),
        // Other variants do not occur for secrets; their text may hold input, so it is not shown.
        _ => "it is malformed".to_owned(),
    };
    ConfigError::Invalid {
        what: spec.what,
        from: source,
        reason,
    }
}

impl Settings {
    /// The master key, from `INBOXD_MASTER_KEY` or `security.master_key_file`.
    pub fn load_master_key(&self, env: &Env) -> Result<Loaded<MasterKey>, ConfigError> {
        let text = load_text(&MASTER_KEY, self.security.master_key_file.as_deref(), env)?;
        match MasterKey::parse(&text.value) {
            Ok(key) => Ok(text.map(|_| key)),
            Err(err) => Err(invalid(&MASTER_KEY, text.source, err)),
        }
    }

    /// The admin token (at least 16 characters), from `INBOXD_ADMIN_TOKEN` or
    /// `security.admin_token_file`.
    pub fn load_admin_token(&self, env: &Env) -> Result<Loaded<AdminToken>, ConfigError> {
        let text = load_text(&ADMIN_TOKEN, self.security.admin_token_file.as_deref(), env)?;
        let chars = text.value.chars().count();
        if chars < ADMIN_TOKEN_MIN_CHARS {
            return Err(ConfigError::Invalid {
                what: ADMIN_TOKEN.what,
                from: text.source,
                reason: format!(
                    "it has {chars} characters and at least {ADMIN_TOKEN_MIN_CHARS} are needed so that it cannot be guessed; make one with `openssl rand -hex 32`"
                ),
            });
        }
        match AdminToken::new(text.value.as_str()) {
            Ok(token) => Ok(text.map(|_| token)),
            Err(err) => Err(invalid(&ADMIN_TOKEN, text.source, err)),
        }
    }

    /// The webhook signing secret, from `INBOXD_WEBHOOK_SECRET` or `security.webhook_secret_file`.
    /// Needed only when `processor.sink = "webhook"`.
    pub fn load_webhook_secret(&self, env: &Env) -> Result<Loaded<WebhookSecret>, ConfigError> {
        let text = load_text(
            &WEBHOOK_SECRET,
            self.security.webhook_secret_file.as_deref(),
            env,
        )?;
        match WebhookSecret::new(text.value.as_str()) {
            Ok(secret) => Ok(text.map(|_| secret)),
            Err(err) => Err(invalid(&WEBHOOK_SECRET, text.source, err)),
        }
    }
}
