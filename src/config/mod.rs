//! Configuration: `config/inboxd.toml` plus `INBOXD_<SECTION>__<KEY>` → validated [`Settings`], once.
//!
//! Layers, later wins: the defaults compiled into the binary (the repository's `config/inboxd.toml`,
//! so `inboxd demo` needs no file), then the file (`--config FILE`, or `config/inboxd.toml` when it
//! exists), then environment variables `INBOXD_<SECTION>__<KEY>`, parsed according to the key's type.
//! Validation collects every problem at once ([`ConfigErrors`], one line per problem). Nothing reads
//! the environment after start-up. Secrets are never values in the file: [`Settings::load_master_key`],
//! [`Settings::load_admin_token`] and [`Settings::load_webhook_secret`] read them from their
//! environment variables or from the files named in `[security]`.
//!
//! The list of keys lives in [`keys`]; the shipped file and the reference in `docs/operations.md` are
//! generated from it and kept in sync by a test.

pub mod keys;
mod secrets;
mod settings;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use keys::{KEYS, KeySpec, Kind, SECTIONS};
pub use secrets::{ADMIN_TOKEN_MIN_CHARS, ConfigError, Loaded, SecretSource, permission_warning};
pub use settings::{
    BodyContentType, CloudName, CloudSettings, ClusterSettings, FirstImport, LimitsSettings,
    PollingSettings, PostgresUrl, ProcessorSettings, RetrySettings, SecuritySettings,
    ServerSettings, Settings, Sink, StoreEngine, StoreSettings,
};

/// The repository's `config/inboxd.toml`, compiled in: the defaults of every key.
pub const EMBEDDED_TOML: &str = include_str!("../../config/inboxd.toml");

/// The file `inboxd serve` reads when no `--config` is given, if it exists.
pub const DEFAULT_CONFIG_PATH: &str = "config/inboxd.toml";

/// Environment variables that carry secrets; they are not configuration keys.
pub const SECRET_ENV_VARS: [&str; 3] = [
    "INBOXD_MASTER_KEY",
    "INBOXD_ADMIN_TOKEN",
    "INBOXD_WEBHOOK_SECRET",
];

/// A snapshot of environment variables, passed explicitly so tests never touch the process's own.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    /// The process's environment (variables whose name or value is not UTF-8 are skipped).
    pub fn process() -> Self {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }

    /// An empty environment.
    pub fn empty() -> Self {
        Env::default()
    }

    /// The value of one variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Every variable, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Env(iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }
}

impl fmt::Debug for Env {
    /// Names only: values may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The defaults compiled into the binary.
    Defaults,
    /// A configuration file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Defaults => f.write_str("built-in defaults"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
        }
    }
}

/// One thing wrong with the configuration: which key, what was found, what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// `section.key` (or the file / variable when no key applies).
    pub key: String,
    /// Where the offending value was set.
    pub origin: Origin,
    /// What was found (values of unknown keys are never shown: they might be secrets).
    pub found: String,
    /// What is expected instead, and how to fix it.
    pub expected: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: found {}, expected {} (set in {})",
            self.key, self.found, self.expected, self.origin
        )
    }
}

/// Every problem found in the configuration, printed one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl ConfigErrors {
    /// The problems.
    pub fn problems(&self) -> &[ConfigProblem] {
        &self.0
    }

    /// Whether some problem names `key` (`section.key`).
    pub fn mentions(&self, key: &str) -> bool {
        self.0.iter().any(|p| p.key == key)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "the configuration has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for problem in &self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// The merged raw values, before typing: (section, key) → value and where it came from.
pub(crate) type Raw = BTreeMap<(&'static str, &'static str), (toml::Value, Origin)>;

/// Shows a found value briefly (long values are cut).
pub(crate) fn show(value: &toml::Value) -> String {
    let text = match value {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Table(_) => "a table".to_owned(),
        other => other.to_string(),
    };
    shorten(&text)
}

fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

/// The Levenshtein distance, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let best = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            cur.push(best);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate within a small edit distance.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.len() / 3).clamp(1, 3);
    candidates
        .map(|c| (distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The known key an unknown `section.key` most likely meant: a near miss in the same (or the nearest)
/// section, the same name without its unit suffix, or the same key in another section.
fn suggest(section: &str, key: &str) -> Option<&'static KeySpec> {
    let section_names = || SECTIONS.iter().map(|(s, _)| *s);
    let target_section = if section_names().any(|s| s == section) {
        Some(section)
    } else {
        closest(section, section_names())
    };
    let near = target_section.and_then(|target| {
        let in_section = KEYS.iter().filter(|k| k.section == target);
        let with_unit = in_section.clone().find(|k| {
            let extends = |long: &str, short: &str| {
                long.strip_prefix(short)
                    .is_some_and(|rest| rest.starts_with('_'))
            };
            extends(k.key, key) || extends(key, k.key)
        });
        with_unit.or_else(|| {
            closest(key, in_section.map(|k| k.key)).and_then(|name| keys::find(target, name))
        })
    });
    near.or_else(|| KEYS.iter().find(|k| k.key == key))
}

/// What an unknown key of the file should have been.
fn unknown_key_hint(section: &str, key: &str) -> String {
    if section == "security" && ["master_key", "admin_token", "webhook_secret"].contains(&key) {
        let env = format!("INBOXD_{}", key.to_ascii_uppercase());
        return format!(
            "no secret in the configuration: set the environment variable {env} or security.{key}_file (a file readable only by inboxd)"
        );
    }
    let in_section: Vec<&str> = KEYS
        .iter()
        .filter(|k| k.section == section)
        .map(|k| k.key)
        .collect();
    let mut hint = format!("one of the keys of [{section}]: {}", in_section.join(", "));
    if let Some(spec) = suggest(section, key) {
        hint = format!("{hint}; did you mean {}?", spec.path());
    }
    hint
}

fn unknown_section_hint(section: &str) -> String {
    let names: Vec<&str> = SECTIONS.iter().map(|(s, _)| *s).collect();
    let mut hint = format!("one of the sections {}", names.join(", "));
    if let Some(near) = closest(section, names.iter().copied()) {
        hint = format!("{hint}; did you mean [{near}]?");
    }
    hint
}

/// What an unknown `INBOXD_<SECTION>__<KEY>` variable should have been.
fn unknown_env_hint(section: &str, key: &str) -> String {
    if section == "security" && ["master_key", "admin_token", "webhook_secret"].contains(&key) {
        let env = format!("INBOXD_{}", key.to_ascii_uppercase());
        return format!("the secret's own variable {env}, or security.{key}_file naming a file");
    }
    let mut hint =
        "INBOXD_ + section + __ + key, in upper case (docs/operations.md lists them all)"
            .to_owned();
    if let Some(spec) = suggest(section, key) {
        hint = format!("{hint}; did you mean {} ({})?", spec.env_var(), spec.path());
    }
    hint
}

/// Parses TOML text into the raw layer, reporting unknown sections and keys.
fn merge_toml(text: &str, origin: &Origin, raw: &mut Raw, problems: &mut Vec<ConfigProblem>) {
    let table = match text.parse::<toml::Table>() {
        Ok(table) => table,
        Err(err) => {
            // The message and position only: the offending line could hold a secret.
            let at = err
                .span()
                .map(|span| {
                    let before = text.get(..span.start).unwrap_or(text);
                    let line = before.matches('\n').count() + 1;
                    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                    format!(" at line {line}, column {column}")
                })
                .unwrap_or_default();
            problems.push(ConfigProblem {
                key: "(file)".to_owned(),
                origin: origin.clone(),
                found: format!("invalid TOML{at}: {}", err.message().trim()),
                expected: "a TOML document (https://toml.io) with [section] tables of key = value"
                    .to_owned(),
            });
            return;
        }
    };
    for (section_name, section_value) in table {
        let Some(&(section, _)) = SECTIONS.iter().find(|(s, _)| *s == section_name) else {
            problems.push(ConfigProblem {
                key: section_name.clone(),
                origin: origin.clone(),
                found: "an unknown section".to_owned(),
                expected: unknown_section_hint(&section_name),
            });
            continue;
        };
        let toml::Value::Table(entries) = section_value else {
            problems.push(ConfigProblem {
                key: section.to_owned(),
                origin: origin.clone(),
                found: format!(
                    "a {} instead of a [{section}] table",
                    section_value.type_str()
                ),
                expected: format!("a [{section}] table of key = value lines"),
            });
            continue;
        };
        for (key_name, value) in entries {
            match keys::find(section, &key_name) {
                Some(spec) => {
                    raw.insert((spec.section, spec.key), (value, origin.clone()));
                }
                None => problems.push(ConfigProblem {
                    key: format!("{section}.{key_name}"),
                    origin: origin.clone(),
                    found: "an unknown key".to_owned(),
                    expected: unknown_key_hint(section, &key_name),
                }),
            }
        }
    }
}

/// Turns an environment value into the TOML value its key's type calls for.
/// `Ok(None)` means "unset" (an empty value for an optional key).
fn env_value(spec: &KeySpec, text: &str) -> Result<Option<toml::Value>, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return if spec.default.is_none() {
            Ok(None)
        } else {
            Err(format!(
                "{} (an empty value unsets only optional keys)",
                spec.kind.describe()
            ))
        };
    }
    match spec.kind {
        Kind::Int { .. } => trimmed
            .replace('_', "")
            .parse::<i64>()
            .map(|n| Some(toml::Value::Integer(n)))
            .map_err(|_| spec.expected()),
        Kind::Float { .. } => trimmed
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| Some(toml::Value::Float(f)))
            .ok_or_else(|| spec.expected()),
        Kind::Bool => match trimmed {
            "true" => Ok(Some(toml::Value::Boolean(true))),
            "false" => Ok(Some(toml::Value::Boolean(false))),
            _ => Err(spec.expected()),
        },
        Kind::Path
        | Kind::Url
        | Kind::SocketAddr
        | Kind::UrlPath
        | Kind::Choice(_)
        | Kind::Text
        | Kind::DatabaseUrl => Ok(Some(toml::Value::String(trimmed.to_owned()))),
    }
}

/// Applies `INBOXD_<SECTION>__<KEY>` variables, reporting unknown ones and values of the wrong type.
fn merge_env(env: &Env, raw: &mut Raw, problems: &mut Vec<ConfigProblem>) {
    for (name, value) in env.iter() {
        let Some(rest) = name.strip_prefix("INBOXD_") else {
            continue;
        };
        if SECRET_ENV_VARS.contains(&name) {
            continue;
        }
        let Some((section_up, key_up)) = rest.split_once("__") else {
            continue;
        };
        let section_lc = section_up.to_ascii_lowercase();
        let key_lc = key_up.to_ascii_lowercase();
        let origin = Origin::Env(name.to_owned());
        let Some(spec) = keys::find(&section_lc, &key_lc) else {
            problems.push(ConfigProblem {
                key: name.to_owned(),
                origin,
                found: "a variable that matches no configuration key".to_owned(),
                expected: unknown_env_hint(&section_lc, &key_lc),
            });
            continue;
        };
        match env_value(spec, value) {
            Ok(Some(parsed)) => {
                raw.insert((spec.section, spec.key), (parsed, origin));
            }
            Ok(None) => {
                raw.remove(&(spec.section, spec.key));
            }
            Err(expected) => problems.push(ConfigProblem {
                key: spec.path(),
                origin,
                found: if spec.kind == Kind::DatabaseUrl {
                    "(a value, not shown: it may hold a password)".to_owned()
                } else {
                    shorten(&format!("{value:?}"))
                },
                expected,
            }),
        }
    }
}

/// The file to read: the one given, else `default` if it exists, else none (defaults and env only).
pub fn config_file<'a>(given: Option<&'a Path>, default: &'a Path) -> Option<&'a Path> {
    given.or_else(|| default.is_file().then_some(default))
}

impl Settings {
    /// The settings of the compiled-in defaults alone.
    pub fn embedded_defaults() -> Result<Settings, ConfigErrors> {
        Settings::load_layers(None, &Env::empty())
    }

    /// Builds the settings from the defaults, the file `file` (if given; it must exist), and `env`.
    /// Without a file only the defaults and `env` apply; [`Settings::from_env_and_file`] also looks
    /// for `config/inboxd.toml`.
    pub fn load(file: Option<&Path>, env: &Env) -> Result<Settings, ConfigErrors> {
        match file {
            None => Settings::load_layers(None, env),
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => {
                    Settings::load_layers(Some((&text, Origin::File(path.to_owned()))), env)
                }
                Err(err) => Err(ConfigErrors(vec![ConfigProblem {
                    key: "(file)".to_owned(),
                    origin: Origin::File(path.to_owned()),
                    found: format!("a file that cannot be read ({err})"),
                    expected:
                        "a readable TOML file; start from config/inboxd.toml in the distribution"
                            .to_owned(),
                }])),
            },
        }
    }

    /// Builds the settings from TOML text (as if it were the file) and `env`.
    pub fn load_str(text: &str, env: &Env) -> Result<Settings, ConfigErrors> {
        Settings::load_layers(Some((text, Origin::File(PathBuf::from("(text)")))), env)
    }

    /// Like [`Settings::load`], for the commands that only use the store (`inboxd migrate`,
    /// `inboxd store export|import`): the rules between the sink and the store's engine are not
    /// checked, so a sled configuration with the postgres engine switched on by one variable
    /// (`INBOXD_STORE__ENGINE=postgres`) serves to import into PostgreSQL.
    pub fn load_for_store_tools(file: Option<&Path>, env: &Env) -> Result<Settings, ConfigErrors> {
        let text = match file {
            None => None,
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => Some((text, Origin::File(path.to_owned()))),
                Err(_) => return Settings::load(file, env),
            },
        };
        Settings::load_layers_with(
            text.as_ref().map(|(t, o)| (t.as_str(), o.clone())),
            env,
            settings::Rules::StoreTools,
        )
    }

    /// What `inboxd serve` does: the file given, or `config/inboxd.toml` if it exists, then the
    /// process's environment.
    pub fn from_env_and_file(file: Option<&Path>) -> Result<Settings, ConfigErrors> {
        Settings::load(
            config_file(file, Path::new(DEFAULT_CONFIG_PATH)),
            &Env::process(),
        )
    }

    fn load_layers(file: Option<(&str, Origin)>, env: &Env) -> Result<Settings, ConfigErrors> {
        Settings::load_layers_with(file, env, settings::Rules::Daemon)
    }

    fn load_layers_with(
        file: Option<(&str, Origin)>,
        env: &Env,
        rules: settings::Rules,
    ) -> Result<Settings, ConfigErrors> {
        let mut raw = Raw::new();
        let mut problems = Vec::new();
        merge_toml(EMBEDDED_TOML, &Origin::Defaults, &mut raw, &mut problems);
        if let Some((text, origin)) = file {
            merge_toml(text, &origin, &mut raw, &mut problems);
        }
        merge_env(env, &mut raw, &mut problems);
        let settings = settings::build(&raw, &mut problems, rules);
        match settings {
            Some(settings) if problems.is_empty() => Ok(settings),
            _ => Err(ConfigErrors(problems)),
        }
    }
}
