//! The catalogue of every error an operator can meet, and the policy for each.
//!
//! One static table ([`entries`]) lists every identity-platform (AADSTS and OAuth `error`) code,
//! every Microsoft Graph error code and every error of inboxd's own that can stop or slow a channel.
//! Each [`Entry`] says what the error means, which [`ChannelStatus`] the channel takes, whether
//! inboxd retries on its own ([`Retry`]) and what the operator should do, in plain words.
//!
//! The rest of inboxd never string-matches Microsoft's errors: it asks [`classify_identity_error`]
//! or [`classify_graph_error`] and acts on the [`Classification`]. `docs/errors.md` is rendered
//! from this table by [`render_errors_markdown`]; a unit test keeps the committed file in step.
//!
//! Pure data and classification: no I/O. The parts: [`table`] (the entries, a data table kept
//! whole), [`classify`] (from what Microsoft said to a [`Classification`]) and [`render`]
//! (docs/errors.md).

mod classify;
mod render;
mod table;

pub use classify::{Classification, classify_graph_error, classify_identity_error};
pub use render::render_errors_markdown;
pub use table::{entries, lookup};

use std::fmt;
use std::time::Duration;

use crate::domain::ChannelStatus;
/// Who reported the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Microsoft's identity platform (Entra ID): `/authorize` redirects and the `/token` endpoint.
    IdentityPlatform,
    /// Microsoft Graph (the mail API).
    Graph,
    /// An IMAP server (Exchange Online's IMAP, for channels on the IMAP transport).
    Imap,
    /// inboxd itself: its configuration, its OAuth callback, its sink and its store.
    Inboxd,
}

impl Source {
    /// The snake_case name used in the admin API (`last_error.source`) and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::IdentityPlatform => "identity_platform",
            Source::Graph => "graph",
            Source::Imap => "imap",
            Source::Inboxd => "inboxd",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What inboxd does on its own after the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Retry {
    /// Nothing: the channel waits for a person (see the remedy).
    No,
    /// Transient: back off exponentially with jitter (never before a `Retry-After`) and retry.
    Backoff,
    /// Retry once after [`RETRY_ONCE_DELAY`]; if the same error comes back, stop and wait for a person.
    OnceAfterDelay,
    /// Refresh the access token and retry the request once; if it fails again, stop.
    RefreshThenRetryOnce,
    /// Drop the delta cursor and start a full sync of the folder at once.
    ResyncThenRetry,
}

impl Retry {
    /// The snake_case name, for logs and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Retry::No => "no",
            Retry::Backoff => "backoff",
            Retry::OnceAfterDelay => "once_after_delay",
            Retry::RefreshThenRetryOnce => "refresh_then_retry_once",
            Retry::ResyncThenRetry => "resync_then_retry",
        }
    }

    /// How docs/errors.md and the status page describe the policy.
    pub fn describe(self) -> &'static str {
        match self {
            Retry::No => "No. inboxd stops using this channel until someone acts.",
            Retry::Backoff => {
                "Yes. inboxd backs off (never earlier than Microsoft's Retry-After) and retries on its own."
            }
            Retry::OnceAfterDelay => {
                "Once, after a minute. If the same error comes back, inboxd stops and waits for you."
            }
            Retry::RefreshThenRetryOnce => {
                "inboxd refreshes the access token and retries once. If that fails too, it stops and waits for you."
            }
            Retry::ResyncThenRetry => {
                "Yes. inboxd forgets its sync position and reads the folder again from the start; nothing is delivered twice."
            }
        }
    }
}

impl fmt::Display for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The delay before the single retry of [`Retry::OnceAfterDelay`].
pub const RETRY_ONCE_DELAY: Duration = Duration::from_secs(60);

/// Whether the entry stops or slows the channel, or only warns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The channel takes the entry's status.
    Error,
    /// The channel keeps working; the warning is shown beside it. `status` is what the channel
    /// will take if nobody acts (e.g. `blocked` once a soon-to-expire secret has expired).
    Warning,
}

/// One error inboxd knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The code as the operator sees it: `AADSTS53003`, `invalid_grant`, `ApplicationThrottled`, `SecretExpired`.
    pub code: &'static str,
    /// A readable name, e.g. `BlockedByConditionalAccess`.
    pub name: &'static str,
    /// Who reports it.
    pub source: Source,
    /// What happened, in one sentence.
    pub meaning: &'static str,
    /// The status the channel takes (never `Active`).
    pub status: ChannelStatus,
    /// What inboxd does on its own.
    pub retry: Retry,
    /// Whether it is an error or only a warning.
    pub severity: Severity,
    /// What the operator should do, with concrete steps.
    pub remedy: &'static str,
}

impl Entry {
    /// The AADSTS number, for identity-platform entries that have one.
    pub fn aadsts_number(&self) -> Option<u32> {
        self.code.strip_prefix("AADSTS")?.parse().ok()
    }
}

/// Codes of inboxd's own entries, so callers never spell them twice.
pub mod codes {
    /// The client secret's expiry date (as entered) has passed.
    pub const SECRET_EXPIRED: &str = "SecretExpired";
    /// The client secret expires within 30 days.
    pub const SECRET_EXPIRING_SOON: &str = "SecretExpiringSoon";
    /// The app's certificate is past its `notAfter`.
    pub const CERTIFICATE_EXPIRED: &str = "CertificateExpired";
    /// The app's certificate expires within 30 days.
    pub const CERTIFICATE_EXPIRING_SOON: &str = "CertificateExpiringSoon";
    /// The channel's app (tenant, client id) has no record, so no credential to sign in with.
    pub const APP_MISSING: &str = "AppMissing";
    /// The OAuth callback arrived without a code.
    pub const EMPTY_AUTHORIZATION_CODE: &str = "EmptyAuthorizationCode";
    /// The OAuth callback's `state` is not one inboxd issued.
    pub const STATE_UNKNOWN: &str = "StateUnknown";
    /// The OAuth callback's `state` has expired.
    pub const STATE_EXPIRED: &str = "StateExpired";
    /// The OAuth callback's `state` was already used.
    pub const STATE_REUSED: &str = "StateReused";
    /// The sink did not accept a message.
    pub const SINK_UNAVAILABLE: &str = "SinkUnavailable";
    /// Graph refused the delta query on the channel's folder; the channel polls unread mail.
    pub const DELTA_UNAVAILABLE: &str = "DeltaUnavailable";
    /// The store's disk is full.
    pub const DISK_FULL: &str = "DiskFull";
    /// The store's file system is read-only.
    pub const STORE_READ_ONLY: &str = "StoreReadOnly";
    /// The store failed a read or write (an I/O error) and is being reopened.
    pub const STORE_UNAVAILABLE: &str = "StoreUnavailable";
    /// The exact message shown for [`EMPTY_AUTHORIZATION_CODE`].
    pub const EMPTY_AUTHORIZATION_CODE_MESSAGE: &str =
        "Authorization code should not be empty or null for generating the access token";
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::classify::aadsts_numbers;
    use super::table::*;
    use super::*;
    use crate::domain::ChannelStatus::*;
    use std::collections::HashSet;

    /// Every AADSTS number in the reference sheet's §4 table (and §1/§7 mentions the brief names).
    const REFERENCE_AADSTS: &[u32] = &[
        53003, 530003, 50076, 50079, 50058, 65001, 70008, 700082, 700084, 70000, 7000215, 7000222,
        700016, 90002, 50020, 500011, 50173, 9002313, 50126, 54005, 50034, 135010, 70043, 50078,
        50089, 50057, 50055, 50053, 50105, 65004, 50011, 7000218, 700025, 501481, 700005, 70011,
        50196, 90055, 50033, 50087, 90006, 90024, 90033, 90090, 40010, 70012, 50194, 90038,
    ];

    const OAUTH_ERRORS: &[&str] = &[
        "access_denied",
        "invalid_grant",
        "invalid_client",
        "unauthorized_client",
        "interaction_required",
        "consent_required",
        "temporarily_unavailable",
        "server_error",
        "invalid_request",
        "invalid_scope",
        "unsupported_grant_type",
    ];

    const GRAPH_CODES: &[&str] = &[
        "InvalidAuthenticationToken",
        "ErrorAccessDenied",
        "accessDenied",
        "Authorization_RequestDenied",
        "ErrorItemNotFound",
        "ErrorInvalidUser",
        "MailboxNotEnabledForRESTAPI",
        "ApplicationThrottled",
        "TooManyRequests",
        "serviceNotAvailable",
        "generalException",
        "InefficientFilter",
        "syncStateNotFound",
        "resyncRequired",
    ];

    #[test]
    fn every_reference_aadsts_code_is_present() {
        for n in REFERENCE_AADSTS {
            let entry =
                lookup(&format!("AADSTS{n}")).unwrap_or_else(|| panic!("AADSTS{n} missing"));
            assert_eq!(entry.source, Source::IdentityPlatform);
            assert_eq!(entry.aadsts_number(), Some(*n));
            assert_eq!(lookup(&n.to_string()), Some(entry), "bare number {n}");
        }
    }

    #[test]
    fn every_oauth_error_graph_code_and_own_code_is_present() {
        for code in OAUTH_ERRORS {
            assert_eq!(
                lookup(code).unwrap().source,
                Source::IdentityPlatform,
                "{code}"
            );
        }
        for code in GRAPH_CODES {
            assert_eq!(lookup(code).unwrap().source, Source::Graph, "{code}");
        }
        for code in [
            codes::SECRET_EXPIRED,
            codes::SECRET_EXPIRING_SOON,
            codes::EMPTY_AUTHORIZATION_CODE,
            codes::STATE_UNKNOWN,
            codes::STATE_EXPIRED,
            codes::STATE_REUSED,
            codes::SINK_UNAVAILABLE,
            codes::DISK_FULL,
            codes::STORE_READ_ONLY,
            codes::STORE_UNAVAILABLE,
        ] {
            assert_eq!(lookup(code).unwrap().source, Source::Inboxd, "{code}");
        }
        for code in [
            UNKNOWN_IDENTITY,
            TOKEN_HTTP_429,
            TOKEN_HTTP_5XX,
            GRAPH_HTTP_400,
            GRAPH_HTTP_401,
            GRAPH_HTTP_403,
            GRAPH_HTTP_404,
            GRAPH_HTTP_429,
            GRAPH_HTTP_5XX,
            GRAPH_HTTP_OTHER,
        ] {
            assert_eq!(fallback(code).code, code);
        }
    }

    #[test]
    fn empty_code_message_is_exact() {
        let entry = lookup(codes::EMPTY_AUTHORIZATION_CODE).unwrap();
        assert_eq!(
            entry.meaning,
            "Authorization code should not be empty or null for generating the access token"
        );
    }

    #[test]
    fn codes_are_unique_and_entries_complete() {
        let mut seen = HashSet::new();
        for e in entries() {
            assert!(
                seen.insert(e.code.to_ascii_lowercase()),
                "duplicate code {}",
                e.code
            );
            assert!(!e.remedy.trim().is_empty(), "{} has no remedy", e.code);
            assert!(!e.meaning.trim().is_empty(), "{} has no meaning", e.code);
            assert!(!e.name.trim().is_empty(), "{} has no name", e.code);
            // Only a warning may leave the channel active (it keeps working as it is).
            if e.status == ChannelStatus::Active {
                assert_eq!(e.severity, Severity::Warning, "{}", e.code);
                assert_eq!(e.retry, Retry::No, "{}", e.code);
                continue;
            }
            assert!(
                matches!(e.status, NeedsReauthorization | Blocked | BackingOff),
                "{} has status {}",
                e.code,
                e.status
            );
            // A transient error must be retried, and a retried error must not need a person first.
            if e.status == BackingOff {
                assert_ne!(e.retry, Retry::No, "{}", e.code);
            }
            if e.retry == Retry::Backoff {
                assert_eq!(e.status, BackingOff, "{}", e.code);
            }
        }
    }

    #[test]
    fn remedies_name_inboxd_actions() {
        for code in ["AADSTS50173", "AADSTS70008", "AADSTS700082", "AADSTS53003"] {
            let r = lookup(code).unwrap().remedy;
            assert!(r.contains("Update auth info"), "{code}");
            assert!(r.contains("inboxd channel authorize ID"), "{code}");
        }
        for code in ["AADSTS7000222", "AADSTS7000215", codes::SECRET_EXPIRED] {
            let r = lookup(code).unwrap().remedy;
            assert!(r.contains("Certificates & secrets"), "{code}");
            assert!(r.contains("--client-secret-file"), "{code}");
            assert!(r.contains("Update secret"), "{code}");
        }
        assert!(
            lookup("AADSTS53003")
                .unwrap()
                .remedy
                .contains("Conditional Access tab")
        );
        assert!(
            lookup("AADSTS65001")
                .unwrap()
                .remedy
                .contains("Grant admin consent")
        );
        assert!(
            lookup("AADSTS7000215")
                .unwrap()
                .remedy
                .contains("Secret ID")
        );
    }

    #[test]
    fn invalid_grant_with_revoked_grant_needs_reauthorization() {
        let body: serde_json::Value = serde_json::from_str(
            r#"{"error":"invalid_grant","error_description":"AADSTS70002: Error validating credentials. AADSTS50173: The provided grant has expired due to it being revoked.\r\nTrace ID: x","error_codes":[70002,50173]}"#,
        )
        .unwrap();
        let codes: Vec<u32> = body["error_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| u32::try_from(v.as_u64().unwrap()).unwrap())
            .collect();
        let c = classify_identity_error(
            body["error"].as_str().unwrap(),
            &codes,
            body["error_description"].as_str(),
            Some(400),
        );
        assert!(c.needs_reauthorization());
        assert_eq!(c.code(), "AADSTS50173");
        assert_eq!(c.status(), NeedsReauthorization);
        assert!(!c.is_retriable());
        assert!(c.is_known());
    }

    #[test]
    fn wrong_secret_is_blocked_and_not_retried() {
        let c = classify_identity_error(
            "invalid_client",
            &[7000215],
            Some("AADSTS7000215: Invalid client secret is provided.\r\nTrace ID: t"),
            Some(401),
        );
        assert_eq!(c.status(), Blocked);
        assert_eq!(c.retry(), Retry::No);
        assert!(!c.is_retriable());
        assert_eq!(c.code(), "AADSTS7000215");
        assert!(c.remedy().contains("Value"));
    }

    #[test]
    fn conditional_access_is_blocked_whatever_the_error_value() {
        for error in ["access_denied", "invalid_grant"] {
            let c = classify_identity_error(
                error,
                &[53003],
                Some("AADSTS53003: Access has been blocked by Conditional Access policies."),
                Some(400),
            );
            assert_eq!(c.status(), Blocked, "{error}");
            assert!(!c.is_retriable());
            assert!(!c.needs_reauthorization());
            assert_eq!(c.name(), "BlockedByConditionalAccess");
        }
    }

    #[test]
    fn transient_identity_errors_back_off() {
        let c = classify_identity_error("temporarily_unavailable", &[], None, Some(503));
        assert_eq!(c.status(), BackingOff);
        assert!(c.is_retriable());
        assert_eq!(c.retry(), Retry::Backoff);
        let c = classify_identity_error("server_error", &[], None, None);
        assert_eq!(c.retry(), Retry::Backoff);
        let c = classify_identity_error("", &[], None, Some(429));
        assert_eq!(c.status(), BackingOff);
        assert_eq!(c.code(), TOKEN_HTTP_429);
        let c = classify_identity_error("", &[], None, Some(502));
        assert_eq!(c.status(), BackingOff);
        let c = classify_identity_error("something_new", &[], None, Some(500));
        assert_eq!(c.status(), BackingOff);
        assert_eq!(c.code(), "something_new");
        let c = classify_identity_error("invalid_request", &[90033], None, Some(400));
        assert_eq!(c.retry(), Retry::Backoff);
    }

    #[test]
    fn description_only_number_is_found() {
        let c = classify_identity_error(
            "invalid_grant",
            &[],
            Some(
                "AADSTS700082: The refresh token has expired due to inactivity. The token was issued on 2022-03-02T03:54:33.8043551Z and was inactive for 90.00:00:00.\r\nTrace ID: a\r\nCorrelation ID: b\r\nTimestamp: 2022-06-01 01:02:03Z",
            ),
            Some(400),
        );
        assert!(c.needs_reauthorization());
        assert_eq!(c.code(), "AADSTS700082");
        let c = classify_identity_error(
            "access_denied",
            &[],
            Some("AADSTS65004: User declined to consent to access the app."),
            None,
        );
        assert_eq!(c.code(), "AADSTS65004");
        assert!(c.needs_reauthorization());
    }

    #[test]
    fn seventy_thousand_is_retried_once() {
        let c = classify_identity_error("invalid_grant", &[70000], None, Some(400));
        assert_eq!(c.retry(), Retry::OnceAfterDelay);
        assert!(c.is_retriable());
        assert!(c.needs_reauthorization());
    }

    #[test]
    fn unknown_numbers_fall_back_on_the_error_value() {
        let c = classify_identity_error("invalid_grant", &[99999], None, Some(400));
        assert!(c.needs_reauthorization());
        assert_eq!(c.code(), "AADSTS99999");
        assert!(!c.is_known());
        let c = classify_identity_error("invalid_client", &[99998], None, Some(401));
        assert_eq!(c.status(), Blocked);
        assert_eq!(c.code(), "AADSTS99998");
        let c = classify_identity_error(
            "weird_error",
            &[],
            Some("AADSTS99997: Something new."),
            Some(400),
        );
        assert_eq!(c.status(), Blocked);
        assert_eq!(c.code(), "AADSTS99997");
        assert!(c.remedy().contains("docs/errors.md"));
        assert!(c.remedy().contains("description"));
        let c = classify_identity_error("", &[], None, None);
        assert_eq!(c.status(), Blocked);
        assert_eq!(c.code(), UNKNOWN_IDENTITY);
        // The error value alone, without a number, is a known classification.
        let c = classify_identity_error("consent_required", &[], None, Some(400));
        assert!(c.is_known());
        assert_eq!(c.code(), "consent_required");
        assert!(c.needs_reauthorization());
    }

    #[test]
    fn most_specific_known_code_wins() {
        // Both known: the last one is the most specific.
        let c = classify_identity_error("invalid_grant", &[70008, 50173], None, None);
        assert_eq!(c.code(), "AADSTS50173");
        // A known code in error_codes wins over one only in the description.
        let c = classify_identity_error("invalid_grant", &[70008], Some("AADSTS53003: x"), None);
        assert_eq!(c.code(), "AADSTS70008");
    }

    #[test]
    fn aadsts_parser_handles_edges() {
        assert_eq!(aadsts_numbers("AADSTS1: a AADSTS22: b"), vec![1, 22]);
        assert_eq!(aadsts_numbers("AADSTS: nothing AADSTS"), Vec::<u32>::new());
        assert_eq!(aadsts_numbers("xAADSTS700082:"), vec![700082]);
        assert_eq!(
            aadsts_numbers("AADSTS99999999999999: overflow"),
            Vec::<u32>::new()
        );
        assert_eq!(aadsts_numbers("Ünïcode AADSTS5 ✓"), vec![5]);
    }

    #[test]
    fn graph_errors_classify() {
        let c = classify_graph_error(429, "ApplicationThrottled");
        assert_eq!(c.status(), BackingOff);
        assert_eq!(c.retry(), Retry::Backoff);
        let c = classify_graph_error(401, "InvalidAuthenticationToken");
        assert_eq!(c.retry(), Retry::RefreshThenRetryOnce);
        assert!(c.is_retriable());
        assert_eq!(c.status(), NeedsReauthorization);
        let c = classify_graph_error(403, "ErrorAccessDenied");
        assert_eq!(c.status(), Blocked);
        assert!(c.remedy().contains("Exchange admin center"));
        let c = classify_graph_error(404, "ErrorInvalidUser");
        assert_eq!(c.status(), Blocked);
        let c = classify_graph_error(410, "resyncRequired");
        assert_eq!(c.retry(), Retry::ResyncThenRetry);
        let c = classify_graph_error(400, "syncStateNotFound");
        assert_eq!(c.retry(), Retry::ResyncThenRetry);
        let c = classify_graph_error(400, "InefficientFilter");
        assert_eq!(c.status(), Blocked);
        for status in [500, 503, 504] {
            let c = classify_graph_error(status, "");
            assert_eq!(c.status(), BackingOff, "{status}");
            assert_eq!(c.code(), format!("HTTP {status}"));
        }
        let c = classify_graph_error(503, "serviceNotAvailable");
        assert!(c.is_known());
        let c = classify_graph_error(429, "SomethingNew");
        assert_eq!(c.status(), BackingOff);
        assert_eq!(c.code(), "SomethingNew");
        assert!(!c.is_known());
        let c = classify_graph_error(401, "");
        assert_eq!(c.retry(), Retry::RefreshThenRetryOnce);
        let c = classify_graph_error(403, "ErrorSomethingElse");
        assert_eq!(c.status(), Blocked);
        let c = classify_graph_error(418, "");
        assert_eq!(c.status(), Blocked);
        let c = classify_graph_error(410, "");
        assert_eq!(c.retry(), Retry::ResyncThenRetry);
        // A Graph code is never classified as an identity-platform entry.
        let c = classify_graph_error(400, "invalid_grant");
        assert_eq!(c.source(), Source::Graph);
    }

    #[test]
    fn own_codes_classify() {
        let c = Classification::of(codes::SECRET_EXPIRING_SOON).unwrap();
        assert!(c.is_warning());
        let c = Classification::of(codes::SECRET_EXPIRED).unwrap();
        assert!(!c.is_warning());
        assert_eq!(c.status(), Blocked);
        let c = Classification::of(codes::SINK_UNAVAILABLE).unwrap();
        assert_eq!(c.status(), BackingOff);
        assert!(Classification::of("NoSuchCode").is_none());
        let c = classify_identity_error("invalid_grant", &[53003], None, None);
        assert!(
            c.to_string()
                .starts_with("AADSTS53003 (BlockedByConditionalAccess): ")
        );
    }

    #[test]
    fn errors_markdown_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/errors.md");
        let rendered = render_errors_markdown();
        if std::env::var("INBOXD_BLESS").as_deref() == Ok("1") {
            std::fs::write(&path, &rendered).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == rendered,
            "docs/errors.md is out of date with src/catalogue.rs: run `INBOXD_BLESS=1 cargo test --lib catalogue` to regenerate"
        );
    }

    #[test]
    fn markdown_lists_every_entry() {
        let md = render_errors_markdown();
        for e in entries() {
            assert!(md.contains(&format!("### `{}`", e.code)), "{}", e.code);
        }
        assert!(md.contains("Update auth info"));
    }

    /// GitHub's heading anchor: lower case, punctuation other than `-` and `_` dropped, spaces to `-`.
    fn github_anchor(heading: &str) -> String {
        heading
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn azure_setup_links_into_errors_md_resolve() {
        let md = render_errors_markdown();
        let anchors: HashSet<String> = md
            .lines()
            .filter_map(|l| l.strip_prefix("### "))
            .map(github_anchor)
            .collect();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/azure-setup.md");
        let setup = std::fs::read_to_string(path).unwrap();
        let mut links = 0;
        for part in setup.split("(errors.md#").skip(1) {
            let anchor = part.split(')').next().unwrap();
            assert!(
                anchors.contains(anchor),
                "docs/azure-setup.md links to missing #{anchor}"
            );
            links += 1;
        }
        assert!(
            links >= 10,
            "expected the troubleshooting table's links, found {links}"
        );
    }
}
