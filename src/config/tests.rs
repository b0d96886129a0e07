//! Tests of configuration loading, validation, secrets and the generated files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;

use super::keys::{self, DOC_BEGIN, DOC_END, KEYS};
use super::*;

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs.iter().map(|(k, v)| (*k, *v)).collect()
}

fn errors_of(result: Result<Settings, ConfigErrors>) -> ConfigErrors {
    match result {
        Ok(settings) => panic!("expected problems, got {settings:#?}"),
        Err(errors) => errors,
    }
}

fn manifest_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

// ---------- generated files ----------

/// The section of docs/operations.md between the markers, or `None` if a marker is missing.
fn doc_section(doc: &str) -> Option<(usize, usize)> {
    let start = doc.find(DOC_BEGIN)? + DOC_BEGIN.len();
    let end = doc[start..].find(DOC_END)? + start;
    Some((start, end))
}

#[test]
fn shipped_toml_and_docs_reference_match_the_key_list() {
    let bless = std::env::var("INBOXD_BLESS").is_ok_and(|v| v == "1");
    let toml_path = manifest_path("config/inboxd.toml");
    let doc_path = manifest_path("docs/operations.md");
    let want_toml = keys::render_toml();
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_default();
    let want_table = format!("\n{}", keys::render_reference());
    if bless {
        std::fs::write(&toml_path, &want_toml).unwrap();
        let (start, end) = doc_section(&doc).unwrap_or_else(|| {
            panic!(
                "{} lacks the markers {DOC_BEGIN} … {DOC_END}",
                doc_path.display()
            )
        });
        let mut new_doc = doc.clone();
        new_doc.replace_range(start..end, &want_table);
        std::fs::write(&doc_path, new_doc).unwrap();
        return;
    }
    let fix = "edit the keys in src/config/keys.rs (not the generated files), then regenerate \
               config/inboxd.toml and the table in docs/operations.md with \
               `INBOXD_BLESS=1 cargo test --lib config::tests::shipped_toml` and rebuild";
    let have_toml = std::fs::read_to_string(&toml_path).unwrap_or_default();
    assert!(
        have_toml == want_toml,
        "config/inboxd.toml is out of date with src/config/keys.rs: {fix}"
    );
    assert_eq!(
        EMBEDDED_TOML, want_toml,
        "the compiled-in defaults are stale: {fix}"
    );
    let (start, end) = doc_section(&doc).unwrap_or_else(|| {
        panic!("docs/operations.md lacks the markers {DOC_BEGIN} … {DOC_END}: {fix}")
    });
    assert!(
        doc[start..end] == want_table,
        "the configuration reference in docs/operations.md is out of date: {fix}"
    );
}

#[test]
fn every_key_is_documented_with_a_unit_in_its_name_and_an_env_var() {
    for spec in KEYS {
        assert!(!spec.doc.is_empty(), "{} has no doc", spec.path());
        assert!(
            SECTIONS.iter().any(|(s, _)| *s == spec.section),
            "{} is in no known section",
            spec.path()
        );
        if let Kind::Int { .. } = spec.kind {
            assert!(!spec.unit.is_empty(), "{} has no unit", spec.path());
        }
        if spec.unit == "seconds" {
            assert!(spec.key.ends_with("_secs"), "{}", spec.path());
        }
        if spec.unit == "milliseconds" {
            assert!(spec.key.ends_with("_ms"), "{}", spec.path());
        }
        assert!(
            spec.default.is_some() || !spec.example.is_empty(),
            "{}",
            spec.path()
        );
        let env_var = spec.env_var();
        assert!(
            EMBEDDED_TOML.contains(&env_var),
            "{env_var} missing from the file"
        );
    }
    let mut paths: Vec<String> = KEYS.iter().map(KeySpec::path).collect();
    let total = paths.len();
    paths.dedup();
    assert_eq!(paths.len(), total, "duplicate keys");
}

// ---------- defaults ----------

#[test]
fn embedded_defaults_load_with_the_documented_values() {
    let s = Settings::embedded_defaults().unwrap();
    assert_eq!(
        s.server.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(s.server.public_url.base(), "http://127.0.0.1:8080");
    assert_eq!(
        s.server.redirect_uri(),
        "http://127.0.0.1:8080/oauth/callback"
    );
    assert_eq!(s.server.max_body_bytes, 65_536);
    assert_eq!(s.server.shutdown_grace, Duration::from_secs(10));
    assert_eq!(s.server.per_channel_metrics_max, 10_000);
    assert_eq!(s.server.admin_login_failures_per_min.get(), 10);
    assert_eq!(s.server.session_idle, Duration::from_secs(1800));
    assert_eq!(s.server.session_max_age, Duration::from_secs(43_200));
    assert_eq!(s.store.path, PathBuf::from("data/inboxd.sled"));
    assert_eq!(s.store.cache_capacity_bytes, 64 * 1024 * 1024);
    assert_eq!(s.store.flush_every, Duration::from_millis(500));
    assert_eq!(s.store.ledger_retention, Duration::from_secs(30 * 86_400));
    assert_eq!(s.cloud.name, CloudName::Global);
    assert_eq!(
        s.cloud.login_url.base(),
        "https://login.microsoftonline.com"
    );
    assert_eq!(s.cloud.graph_url.base(), "https://graph.microsoft.com");
    assert_eq!(s.polling.interval, Duration::from_secs(120));
    assert_eq!(s.polling.jitter, Duration::from_secs(5));
    assert_eq!(s.polling.page_size, 50);
    assert_eq!(s.polling.max_messages_per_poll, 500);
    assert_eq!(s.polling.first_import, FirstImport::All);
    assert_eq!(s.polling.request_timeout, Duration::from_secs(30));
    assert_eq!(s.polling.body_content_type, BodyContentType::Text);
    assert_eq!(s.limits.mailbox_requests_per_10_min.get(), 10_000);
    assert_eq!(s.limits.mailbox_concurrency, 4);
    assert_eq!(s.limits.app_requests_per_sec.get(), 100);
    assert_eq!(s.limits.global_concurrency, 512);
    assert_eq!(s.limits.token_requests_per_tenant_per_min.get(), 60);
    assert_eq!(s.retry.initial_backoff, Duration::from_millis(3000));
    assert_eq!(s.retry.max_backoff, Duration::from_secs(180));
    assert!((s.retry.multiplier - 2.0).abs() < f64::EPSILON);
    assert!((s.retry.randomization_factor - 0.5).abs() < f64::EPSILON);
    assert_eq!(s.retry.token_refresh_margin, Duration::from_secs(300));
    assert_eq!(s.retry.token_refresh_jitter, Duration::from_secs(120));
    assert_eq!(s.retry.max_delivery_attempts, 5);
    assert_eq!(
        s.processor.sink,
        Sink::Jsonl {
            path: PathBuf::from("data/mail.jsonl")
        }
    );
    assert_eq!(s.processor.webhook_timeout, Duration::from_secs(10));
    assert_eq!(s.processor.webhook_max_attempts, 5);
    assert_eq!(s.processor.queue_capacity, 10_000);
    assert_eq!(s.processor.max_attachment_bytes, 1_048_576);
    assert_eq!(s.security, SecuritySettings::default());
}

#[test]
fn the_shipped_file_loads_and_equals_the_defaults() {
    let path = manifest_path("config/inboxd.toml");
    let from_file = Settings::load(Some(&path), &Env::empty()).unwrap();
    assert_eq!(from_file, Settings::embedded_defaults().unwrap());
}

#[test]
fn a_missing_config_file_is_a_clear_problem() {
    let errors = errors_of(Settings::load(
        Some(Path::new("/nonexistent/inboxd.toml")),
        &Env::empty(),
    ));
    let text = errors.to_string();
    assert!(text.contains("/nonexistent/inboxd.toml"), "{text}");
    assert!(text.contains("cannot be read"), "{text}");
}

#[test]
fn the_default_file_is_used_only_when_it_exists_and_no_file_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let default = dir.path().join("inboxd.toml");
    let given = Path::new("/etc/inboxd/inboxd.toml");
    assert_eq!(config_file(None, &default), None);
    std::fs::write(&default, "").unwrap();
    assert_eq!(config_file(None, &default), Some(default.as_path()));
    assert_eq!(config_file(Some(given), &default), Some(given));
}

#[test]
fn a_partial_file_overrides_only_its_keys() {
    let s = Settings::load_str(
        "[polling]\ninterval_secs = 60\n[cloud]\nname = \"usgov\"\n",
        &Env::empty(),
    )
    .unwrap();
    assert_eq!(s.polling.interval, Duration::from_secs(60));
    assert_eq!(s.polling.page_size, 50);
    assert_eq!(s.cloud.name, CloudName::UsGov);
}

#[test]
fn a_file_given_by_path_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inboxd.toml");
    std::fs::write(&path, "[store]\npath = \"/var/lib/inboxd\"\n").unwrap();
    let s = Settings::load(Some(&path), &Env::empty()).unwrap();
    assert_eq!(s.store.path, PathBuf::from("/var/lib/inboxd"));
}

// ---------- environment ----------

#[test]
fn env_overrides_every_type() {
    let s = Settings::load_str(
        "[polling]\ninterval_secs = 60\n",
        &env(&[
            ("INBOXD_SERVER__LISTEN", "127.0.0.1:0"),
            (
                "INBOXD_SERVER__PUBLIC_URL",
                "https://inboxd.example.com/base/",
            ),
            ("INBOXD_SERVER__CALLBACK_PATH", "/cb"),
            ("INBOXD_POLLING__INTERVAL_SECS", "5"),
            ("INBOXD_POLLING__JITTER_SECS", "0"),
            ("INBOXD_POLLING__FIRST_IMPORT", "last_days"),
            ("INBOXD_POLLING__FIRST_IMPORT_DAYS", "3"),
            ("INBOXD_POLLING__BODY_CONTENT_TYPE", "html"),
            ("INBOXD_RETRY__MULTIPLIER", "1.5"),
            ("INBOXD_RETRY__RANDOMIZATION_FACTOR", "0"),
            ("INBOXD_STORE__PATH", "/tmp/x.sled"),
            ("INBOXD_STORE__CACHE_CAPACITY_MIB", "1_024"),
            ("INBOXD_CLOUD__NAME", "china"),
            ("INBOXD_CLOUD__GRAPH_URL", "http://127.0.0.1:9000"),
            ("INBOXD_PROCESSOR__SINK", "webhook"),
            (
                "INBOXD_PROCESSOR__WEBHOOK_URL",
                "http://127.0.0.1:9999/hook",
            ),
            ("INBOXD_SECURITY__MASTER_KEY_FILE", "/etc/inboxd/master.key"),
            ("INBOXD_LIMITS__MAILBOX_CONCURRENCY", " 2 "),
            ("INBOXD_SERVER__METRICS_MAILBOX_LABEL", "true"),
            ("PATH", "/usr/bin"),
            ("INBOXD_LOG", "debug"),
        ]),
    )
    .unwrap();
    assert_eq!(s.server.listen.port(), 0);
    assert_eq!(
        s.server.redirect_uri(),
        "https://inboxd.example.com/base/cb"
    );
    assert_eq!(s.polling.interval, Duration::from_secs(5));
    assert_eq!(s.polling.jitter, Duration::ZERO);
    assert_eq!(s.polling.first_import, FirstImport::LastDays(3));
    assert_eq!(s.polling.body_content_type, BodyContentType::Html);
    assert!((s.retry.multiplier - 1.5).abs() < f64::EPSILON);
    assert!(s.retry.randomization_factor.abs() < f64::EPSILON);
    assert_eq!(s.store.path, PathBuf::from("/tmp/x.sled"));
    assert_eq!(s.store.cache_capacity_bytes, 1024 * 1024 * 1024);
    assert_eq!(s.cloud.name, CloudName::China);
    assert_eq!(
        s.cloud.login_url.base(),
        "https://login.partner.microsoftonline.cn"
    );
    assert_eq!(s.cloud.graph_url.base(), "http://127.0.0.1:9000");
    assert_eq!(
        s.processor.sink,
        Sink::Webhook {
            url: crate::domain::HttpUrl::parse("http://127.0.0.1:9999/hook").unwrap()
        }
    );
    assert_eq!(
        s.security.master_key_file,
        Some(PathBuf::from("/etc/inboxd/master.key"))
    );
    assert_eq!(s.limits.mailbox_concurrency, 2);
    assert!(s.server.metrics_mailbox_label);
}

#[test]
fn a_boolean_key_takes_only_true_or_false() {
    assert!(
        !Settings::load_str("", &Env::empty())
            .unwrap()
            .server
            .metrics_mailbox_label
    );
    for bad in ["yes", "1", "TRUE"] {
        let errors = errors_of(Settings::load_str(
            "",
            &env(&[("INBOXD_SERVER__METRICS_MAILBOX_LABEL", bad)]),
        ));
        let errors = errors.to_string();
        assert!(errors.contains("metrics_mailbox_label"), "{bad}: {errors}");
    }
    let errors = errors_of(Settings::load_str(
        "[server]\nmetrics_mailbox_label = \"true\"\n",
        &Env::empty(),
    ));
    let errors = errors.to_string();
    assert!(errors.contains("boolean"), "{errors}");
}

#[test]
fn every_key_can_be_set_from_the_environment_to_its_default() {
    for spec in KEYS {
        let literal = spec.default.unwrap_or(spec.example);
        let value = literal.trim_matches('"');
        let vars = env(&[(spec.env_var().as_str(), value)]);
        let result = Settings::load(None, &vars);
        // An example webhook_url alone is fine; the sink stays jsonl.
        assert!(
            result.is_ok(),
            "{}={value}: {:?}",
            spec.env_var(),
            result.err()
        );
    }
}

#[test]
fn an_empty_env_value_unsets_an_optional_key_but_not_a_required_one() {
    let s = Settings::load_str(
        "[cloud]\nlogin_url = \"http://127.0.0.1:1\"\n",
        &env(&[("INBOXD_CLOUD__LOGIN_URL", "")]),
    )
    .unwrap();
    assert_eq!(
        s.cloud.login_url.base(),
        "https://login.microsoftonline.com"
    );
    let errors = errors_of(Settings::load(
        None,
        &env(&[("INBOXD_POLLING__INTERVAL_SECS", "")]),
    ));
    assert!(errors.mentions("polling.interval_secs"), "{errors}");
}

#[test]
fn env_wins_over_the_file() {
    let s = Settings::load_str(
        "[server]\nlisten = \"0.0.0.0:80\"\n",
        &env(&[("INBOXD_SERVER__LISTEN", "127.0.0.1:0")]),
    )
    .unwrap();
    assert_eq!(
        s.server.listen,
        "127.0.0.1:0".parse::<SocketAddr>().unwrap()
    );
}

#[test]
fn unknown_env_keys_are_problems_and_secret_vars_are_not_keys() {
    let errors = errors_of(Settings::load(
        None,
        &env(&[
            ("INBOXD_POLLING__INTERVAL_SEC", "5"),
            ("INBOXD_POLING__INTERVAL_SECS", "5"),
            ("INBOXD_MASTER_KEY", "whatever"),
            ("INBOXD_ADMIN_TOKEN", "whatever"),
            ("INBOXD_WEBHOOK_SECRET", "whatever"),
        ]),
    ));
    assert_eq!(errors.problems().len(), 2, "{errors}");
    let text = errors.to_string();
    assert!(errors.mentions("INBOXD_POLLING__INTERVAL_SEC"), "{text}");
    assert!(
        text.contains("did you mean INBOXD_POLLING__INTERVAL_SECS (polling.interval_secs)?"),
        "{text}"
    );
    assert!(errors.mentions("INBOXD_POLING__INTERVAL_SECS"), "{text}");
    assert_eq!(
        text.matches("did you mean INBOXD_POLLING__INTERVAL_SECS")
            .count(),
        2,
        "{text}"
    );
}

#[test]
fn env_values_of_the_wrong_type_name_the_key_and_the_variable() {
    let errors = errors_of(Settings::load(
        None,
        &env(&[
            ("INBOXD_POLLING__INTERVAL_SECS", "two minutes"),
            ("INBOXD_RETRY__MULTIPLIER", "NaN"),
            ("INBOXD_SERVER__LISTEN", "localhost"),
        ]),
    ));
    assert_eq!(errors.problems().len(), 3, "{errors}");
    for key in ["polling.interval_secs", "retry.multiplier", "server.listen"] {
        assert!(errors.mentions(key), "{key} not in {errors}");
    }
    let text = errors.to_string();
    assert!(text.contains("\"two minutes\""), "{text}");
    assert!(text.contains("INBOXD_POLLING__INTERVAL_SECS"), "{text}");
    assert!(text.contains("integer 1..=86400"), "{text}");
}

// ---------- bad input in the file ----------

#[test]
fn every_kind_of_bad_value_yields_a_problem_naming_its_key() {
    let cases: &[(&str, &str)] = &[
        ("[polling]\ninterval_secs = 0", "polling.interval_secs"),
        ("[polling]\ninterval_secs = -5", "polling.interval_secs"),
        (
            "[polling]\ninterval_secs = \"120\"",
            "polling.interval_secs",
        ),
        ("[polling]\ninterval_secs = 1.5", "polling.interval_secs"),
        ("[polling]\npage_size = 5000", "polling.page_size"),
        ("[polling]\nfirst_import = \"some\"", "polling.first_import"),
        (
            "[polling]\nbody_content_type = 3",
            "polling.body_content_type",
        ),
        ("[polling]\njitter_secs = 120", "polling.jitter_secs"),
        (
            "[limits]\nmailbox_concurrency = 5",
            "limits.mailbox_concurrency",
        ),
        (
            "[limits]\nmailbox_requests_per_10_min = 20000",
            "limits.mailbox_requests_per_10_min",
        ),
        (
            "[server]\npublic_url = \"https://x.example/?a=b\"",
            "server.public_url",
        ),
        ("[server]\npublic_url = \"x.example\"", "server.public_url"),
        ("[server]\nlisten = \"127.0.0.1\"", "server.listen"),
        (
            "[server]\ncallback_path = \"oauth/callback\"",
            "server.callback_path",
        ),
        (
            "[server]\ncallback_path = \"/cb?x=1\"",
            "server.callback_path",
        ),
        ("[store]\npath = \"\"", "store.path"),
        ("[cloud]\nname = \"germany\"", "cloud.name"),
        (
            "[cloud]\nlogin_url = \"ftp://login.example\"",
            "cloud.login_url",
        ),
        ("[cloud]\ngraph_url = \"graph\"", "cloud.graph_url"),
        ("[retry]\nmultiplier = 0.5", "retry.multiplier"),
        (
            "[retry]\nrandomization_factor = 2",
            "retry.randomization_factor",
        ),
        (
            "[retry]\ninitial_backoff_ms = 200000\nmax_backoff_secs = 100",
            "retry.initial_backoff_ms",
        ),
        ("[processor]\nsink = \"webhook\"", "processor.webhook_url"),
        ("[processor]\nsink = \"kafka\"", "processor.sink"),
        (
            "[processor]\nwebhook_url = \"https://h.example/#frag\"",
            "processor.webhook_url",
        ),
        (
            "[security]\nmaster_key_file = 42",
            "security.master_key_file",
        ),
        ("[server]\nlisen = \"127.0.0.1:1\"", "server.lisen"),
        ("[sever]\nlisten = \"127.0.0.1:1\"", "sever"),
        ("server = 3", "server"),
        ("[server\nlisten = 1", "(file)"),
    ];
    for (text, key) in cases {
        let errors = errors_of(Settings::load_str(text, &Env::empty()));
        assert!(errors.mentions(key), "{text:?} should name {key}: {errors}");
        for problem in errors.problems() {
            assert!(!problem.expected.is_empty(), "{problem}");
            assert!(!problem.found.is_empty(), "{problem}");
        }
    }
}

#[test]
fn range_problems_explain_the_key() {
    let errors = errors_of(Settings::load_str(
        "[limits]\nmailbox_concurrency = 8\n",
        &Env::empty(),
    ));
    assert_eq!(
        errors.problems()[0].to_string(),
        "limits.mailbox_concurrency: found 8, expected integer 1..=4 (requests); \
         mailbox_concurrency is: Requests in flight per mailbox at once; Graph allows at most 4 \
         and throttles above. (set in file (text))"
    );
}

#[test]
fn several_problems_are_reported_at_once_one_per_line() {
    let errors = errors_of(Settings::load_str(
        "[polling]\ninterval_secs = 0\npage_size = 5000\n\
         [limits]\nmailbox_concurrency = 10\n\
         [processor]\nsink = \"webhook\"\n\
         [cloud]\nname = \"mars\"\nlogin_url = \"mailto:x@y.z\"\n\
         [server]\nlisen = \"x\"\n",
        &env(&[("INBOXD_STORE__CACHE_CAPACITY_MIB", "lots")]),
    ));
    let expected = [
        "polling.interval_secs",
        "polling.page_size",
        "limits.mailbox_concurrency",
        "processor.webhook_url",
        "cloud.name",
        "cloud.login_url",
        "server.lisen",
        "store.cache_capacity_mib",
    ];
    for key in expected {
        assert!(errors.mentions(key), "{key} missing from {errors}");
    }
    assert_eq!(errors.problems().len(), expected.len(), "{errors}");
    let text = errors.to_string();
    assert_eq!(text.lines().count(), expected.len() + 1, "{text}");
    assert!(
        text.starts_with("the configuration has 8 problems:"),
        "{text}"
    );
    let page = text
        .lines()
        .find(|l| l.contains("polling.page_size"))
        .unwrap();
    assert!(page.contains("found 5000"), "{page}");
    assert!(page.contains("integer 1..=1000"), "{page}");
    assert!(page.contains("(set in file"), "{page}");
}

#[test]
fn unknown_keys_get_a_did_you_mean() {
    let errors = errors_of(Settings::load_str(
        "[polling]\ninterval = 5\n[server]\nlisten_addr = \"x\"\n[store]\ninterval_secs = 3\n",
        &Env::empty(),
    ));
    let text = errors.to_string();
    assert!(
        text.contains("did you mean polling.interval_secs?"),
        "{text}"
    );
    assert!(text.contains("store.interval_secs"), "{text}");
    assert_eq!(
        text.matches("did you mean polling.interval_secs?").count(),
        2,
        "{text}"
    );
    assert!(text.contains("did you mean server.listen?"), "{text}");
    assert!(errors.mentions("server.listen_addr"), "{text}");
}

#[test]
fn secrets_in_the_file_are_refused_without_showing_them() {
    let errors = errors_of(Settings::load_str(
        "[security]\nmaster_key = \"c3VwZXItc2VjcmV0LXZhbHVlLWRvLW5vdC1zaG93\"\nadmin_token = \"hunter2hunter2hunter2\"\n",
        &env(&[("INBOXD_SECURITY__WEBHOOK_SECRET", "shhh-very-secret")]),
    ));
    let text = errors.to_string();
    assert!(!text.contains("c3VwZXItc2VjcmV0"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("shhh"), "{text}");
    assert!(text.contains("INBOXD_MASTER_KEY"), "{text}");
    assert!(text.contains("security.admin_token_file"), "{text}");
    assert_eq!(errors.problems().len(), 3, "{text}");
}

#[test]
fn toml_syntax_errors_show_position_but_not_the_line() {
    let errors = errors_of(Settings::load_str(
        "[security]\nmaster_key_file = \"/x\"\n\nadmin = top-secret-token-value\n",
        &Env::empty(),
    ));
    let text = errors.to_string();
    assert!(text.contains("line 4"), "{text}");
    assert!(!text.contains("top-secret"), "{text}");
}

// ---------- cloud ----------

#[test]
fn cloud_presets_follow_microsofts_national_cloud_hosts() {
    let cases = [
        (
            "global",
            "https://login.microsoftonline.com",
            "https://graph.microsoft.com",
        ),
        (
            "usgov",
            "https://login.microsoftonline.us",
            "https://graph.microsoft.us",
        ),
        (
            "usgov-dod",
            "https://login.microsoftonline.us",
            "https://dod-graph.microsoft.us",
        ),
        (
            "china",
            "https://login.partner.microsoftonline.cn",
            "https://microsoftgraph.chinacloudapi.cn",
        ),
    ];
    for (name, login, graph) in cases {
        let s = Settings::load(None, &env(&[("INBOXD_CLOUD__NAME", name)])).unwrap();
        assert_eq!(s.cloud.name.as_str(), name);
        assert_eq!(s.cloud.login_url.base(), login);
        assert_eq!(s.cloud.graph_url.base(), graph);
        assert_eq!(s.cloud.graph_scope_host(), graph);
        assert_eq!(
            s.cloud.scope("Mail.ReadWrite.Shared"),
            format!("{graph}/Mail.ReadWrite.Shared")
        );
        assert_eq!(s.cloud.graph_v1(), format!("{graph}/v1.0"));
    }
}

#[test]
fn overrides_change_the_hosts_but_not_the_scopes() {
    let s = Settings::load(
        None,
        &env(&[
            ("INBOXD_CLOUD__NAME", "usgov"),
            ("INBOXD_CLOUD__LOGIN_URL", "http://127.0.0.1:9000/"),
            ("INBOXD_CLOUD__GRAPH_URL", "http://127.0.0.1:9001"),
        ]),
    )
    .unwrap();
    let tenant = crate::domain::TenantId::parse("contoso.com").unwrap();
    assert_eq!(
        s.cloud.authorize_url(&tenant),
        "http://127.0.0.1:9000/contoso.com/oauth2/v2.0/authorize"
    );
    assert_eq!(
        s.cloud.token_url(&tenant),
        "http://127.0.0.1:9000/contoso.com/oauth2/v2.0/token"
    );
    assert_eq!(s.cloud.graph_v1(), "http://127.0.0.1:9001/v1.0");
    assert_eq!(s.cloud.graph_scope_host(), "https://graph.microsoft.us");
    let preset = CloudSettings::preset(CloudName::UsGovDod).unwrap();
    assert_eq!(preset.graph_url.base(), "https://dod-graph.microsoft.us");
}

// ---------- secrets ----------

fn defaults() -> Settings {
    Settings::embedded_defaults().unwrap()
}

#[cfg(unix)]
fn write_secret(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn a_missing_master_key_says_how_to_make_one() {
    let err = defaults().load_master_key(&Env::empty()).unwrap_err();
    let text = err.to_string();
    for needle in [
        "inboxd keygen > /etc/inboxd/master.key && chmod 600 /etc/inboxd/master.key",
        "security.master_key_file",
        "INBOXD_MASTER_KEY",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
}

#[test]
fn the_master_key_comes_from_the_env_before_the_file() {
    let from_env = MasterKey::generate();
    let from_file = MasterKey::generate();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    std::fs::write(&path, format!("{}\n", from_file.encode())).unwrap();
    let mut s = defaults();
    s.security.master_key_file = Some(path.clone());

    let loaded = s.load_master_key(&Env::empty()).unwrap();
    assert_eq!(loaded.value, from_file);
    assert_eq!(loaded.source, SecretSource::File(path));

    let vars = env(&[("INBOXD_MASTER_KEY", from_env.encode().as_str())]);
    let loaded = s.load_master_key(&vars).unwrap();
    assert_eq!(loaded.value, from_env);
    assert_eq!(loaded.source, SecretSource::Env("INBOXD_MASTER_KEY"));
    assert_eq!(loaded.warning, None);
}

use crate::domain::secret::MasterKey;

#[test]
fn bad_secrets_are_explained_without_their_values() {
    let s = defaults();
    let err = s
        .load_master_key(&env(&[("INBOXD_MASTER_KEY", "not-a-key-SECRETVALUE")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("INBOXD_MASTER_KEY"), "{err}");
    assert!(err.contains("inboxd keygen"), "{err}");
    assert!(!err.contains("SECRETVALUE"), "{err}");

    let err = s
        .load_admin_token(&env(&[("INBOXD_ADMIN_TOKEN", "SHORTSECRET")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 16"), "{err}");
    assert!(!err.contains("SHORTSECRET"), "{err}");

    let missing = s.load_admin_token(&Env::empty()).unwrap_err().to_string();
    assert!(missing.contains("INBOXD_ADMIN_TOKEN"), "{missing}");
    assert!(missing.contains("security.admin_token_file"), "{missing}");

    let missing = s
        .load_webhook_secret(&Env::empty())
        .unwrap_err()
        .to_string();
    assert!(missing.contains("INBOXD_WEBHOOK_SECRET"), "{missing}");

    let mut s = s;
    s.security.admin_token_file = Some(PathBuf::from("/nonexistent/admin.token"));
    let err = s.load_admin_token(&Env::empty()).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/admin.token"), "{err}");
    assert!(err.contains("security.admin_token_file"), "{err}");
}

#[test]
fn admin_token_and_webhook_secret_load() {
    let s = defaults();
    let token = s
        .load_admin_token(&env(&[("INBOXD_ADMIN_TOKEN", " 0123456789abcdef \n")]))
        .unwrap();
    assert_eq!(token.value.expose(), "0123456789abcdef");
    let secret = s
        .load_webhook_secret(&env(&[("INBOXD_WEBHOOK_SECRET", "s3")]))
        .unwrap();
    assert_eq!(secret.value.expose(), "s3");
    assert!(!format!("{token:?} {secret:?}").contains("0123456789abcdef"));
}

#[cfg(unix)]
#[test]
fn widely_readable_key_files_give_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    let open = write_secret(dir.path(), "open.key", &key.encode(), 0o644);
    let closed = write_secret(dir.path(), "closed.key", &key.encode(), 0o600);
    let token = write_secret(
        dir.path(),
        "admin.token",
        "abcdefghijklmnopqrstuvwxyz",
        0o640,
    );
    let empty = write_secret(dir.path(), "empty.secret", "\n", 0o600);
    let mut s = defaults();

    s.security.master_key_file = Some(open.clone());
    let loaded = s.load_master_key(&Env::empty()).unwrap();
    let warning = loaded.warning.unwrap();
    assert!(warning.contains("644"), "{warning}");
    assert!(
        warning.contains(&format!("chmod 600 {}", open.display())),
        "{warning}"
    );

    s.security.master_key_file = Some(closed);
    assert_eq!(s.load_master_key(&Env::empty()).unwrap().warning, None);

    s.security.admin_token_file = Some(token);
    let loaded = s.load_admin_token(&Env::empty()).unwrap();
    assert!(loaded.warning.is_some());
    assert_eq!(loaded.value.expose(), "abcdefghijklmnopqrstuvwxyz");

    s.security.webhook_secret_file = Some(empty);
    let err = s
        .load_webhook_secret(&Env::empty())
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn env_debug_shows_names_only() {
    let vars = env(&[("INBOXD_ADMIN_TOKEN", "very-secret-token-value")]);
    let shown = format!("{vars:?}");
    assert!(shown.contains("INBOXD_ADMIN_TOKEN"));
    assert!(!shown.contains("very-secret"));
}

// ---------- robustness ----------

proptest! {
    #[test]
    fn arbitrary_toml_text_never_panics(text in "\\PC{0,200}") {
        let _ = Settings::load_str(&text, &Env::empty());
    }

    #[test]
    fn toml_like_text_never_panics(
        section in prop::sample::select(vec!["server", "store", "cloud", "polling", "limits", "retry", "processor", "security", "x"]),
        key in prop::sample::select(KEYS.iter().map(|k| k.key).collect::<Vec<_>>()),
        value in prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            "\\PC{0,30}".prop_map(|s| format!("{s:?}")),
            Just("true".to_owned()),
            Just("[1, 2]".to_owned()),
            Just("{ a = 1 }".to_owned()),
        ],
    ) {
        let text = format!("[{section}]\n{key} = {value}\n");
        let _ = Settings::load_str(&text, &Env::empty());
    }

    #[test]
    fn arbitrary_env_values_never_panic(
        index in 0..KEYS.len(),
        value in "\\PC{0,40}",
        name in "INBOXD_[A-Z_]{0,12}__[A-Z_]{0,12}",
    ) {
        let spec = &KEYS[index];
        let vars = env(&[(spec.env_var().as_str(), value.as_str()), (name.as_str(), value.as_str())]);
        match Settings::load(None, &vars) {
            Ok(_) => {}
            Err(errors) => prop_assert!(!errors.problems().is_empty()),
        }
    }
}

#[test]
fn the_postgres_engine_needs_a_url_and_never_shows_its_password() {
    let url = "postgres://inboxd:pg-pass-123@db.example.com:6432/mail";
    let settings = Settings::load(
        None,
        &env(&[
            ("INBOXD_STORE__ENGINE", "postgres"),
            ("INBOXD_STORE__POSTGRES_URL", url),
            ("INBOXD_PROCESSOR__SINK", "postgres"),
            ("INBOXD_CLUSTER__NODE_NAME", "node-a"),
        ]),
    )
    .unwrap();
    assert_eq!(settings.store.engine, StoreEngine::Postgres);
    let pg = settings.store.postgres_url.clone().unwrap();
    assert_eq!(pg.expose(), url);
    assert_eq!(pg.shown(), "db.example.com:6432/mail");
    assert!(!format!("{settings:?}").contains("pg-pass-123"));
    assert_eq!(settings.processor.sink, Sink::Postgres);
    assert_eq!(settings.cluster.lease, Duration::from_secs(30));
    let id = settings.cluster.new_node_id();
    assert!(
        id.starts_with("node-a-") && id.len() == "node-a-".len() + 8,
        "{id}"
    );

    let shown = errors_of(Settings::load(
        None,
        &env(&[("INBOXD_STORE__ENGINE", "postgres")]),
    ))
    .to_string();
    assert!(shown.contains("store.postgres_url"), "{shown}");
    let shown = errors_of(Settings::load(
        None,
        &env(&[
            ("INBOXD_STORE__ENGINE", "postgres"),
            ("INBOXD_STORE__POSTGRES_URL", "mysql://u:pg-pass-123@h/db"),
            ("INBOXD_PROCESSOR__SINK", "postgres"),
        ]),
    ))
    .to_string();
    assert!(!shown.contains("pg-pass-123"), "{shown}");
    assert!(shown.contains("store.postgres_url"), "{shown}");
}

#[test]
fn the_sink_must_suit_the_engine() {
    let url = "postgres://u:p@127.0.0.1/db";
    // jsonl (the default sink) with PostgreSQL: refused, with why and what to use.
    let shown = errors_of(Settings::load(
        None,
        &env(&[
            ("INBOXD_STORE__ENGINE", "postgres"),
            ("INBOXD_STORE__POSTGRES_URL", url),
        ]),
    ))
    .to_string();
    assert!(shown.contains("processor.sink"), "{shown}");
    assert!(
        shown.contains("failover") && shown.contains("webhook"),
        "{shown}"
    );
    // The store commands do not check the sink: a sled configuration plus one variable imports.
    let tools = Settings::load_for_store_tools(
        None,
        &env(&[
            ("INBOXD_STORE__ENGINE", "postgres"),
            ("INBOXD_STORE__POSTGRES_URL", url),
        ]),
    )
    .unwrap();
    assert_eq!(tools.store.engine, StoreEngine::Postgres);
    // The postgres sink with sled: refused.
    let shown = errors_of(Settings::load(
        None,
        &env(&[("INBOXD_PROCESSOR__SINK", "postgres")]),
    ))
    .to_string();
    assert!(shown.contains("store.engine = \"postgres\""), "{shown}");
    let shown = errors_of(Settings::load(
        None,
        &env(&[("INBOXD_CLUSTER__LEASE_SECS", "4")]),
    ))
    .to_string();
    assert!(shown.contains("cluster.lease_secs"), "{shown}");
}
