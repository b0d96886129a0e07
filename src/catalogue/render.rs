//! docs/errors.md, rendered from the catalogue's table (a unit test keeps the committed file in
//! step).

use std::fmt::Write as _;

use super::*;
use crate::domain::ChannelStatus;

fn status_label(status: ChannelStatus) -> &'static str {
    status.as_str()
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn render_section(out: &mut String, title: &str, intro: &str, entries: &[&'static Entry]) {
    let _ = writeln!(out, "## {title}\n\n{intro}\n");
    out.push_str("| Code | Name | Status | Retried by inboxd |\n|---|---|---|---|\n");
    for e in entries {
        let retried = match (e.severity, e.retry) {
            (Severity::Warning, _) => "n/a (a warning)",
            (_, Retry::No) => "no",
            (_, Retry::Backoff) => "yes, with backoff",
            (_, Retry::OnceAfterDelay) => "once, after a minute",
            (_, Retry::RefreshThenRetryOnce) => "once, after a token refresh",
            (_, Retry::ResyncThenRetry) => "yes, after a full resync",
        };
        let status = match e.severity {
            Severity::Error => format!("`{}`", status_label(e.status)),
            Severity::Warning => "unchanged (a warning)".to_owned(),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            e.code,
            md_cell(e.name),
            status,
            retried
        );
    }
    out.push('\n');
    for e in entries {
        let _ = writeln!(out, "### `{}`: {}\n", e.code, e.name);
        let _ = writeln!(out, "- **What it means:** {}", e.meaning);
        let status = match e.severity {
            Severity::Error => format!("`{}`", status_label(e.status)),
            Severity::Warning => format!(
                "unchanged (a warning); `{}` if nobody acts",
                status_label(e.status)
            ),
        };
        let _ = writeln!(out, "- **Channel status:** {status}");
        let retried = match e.severity {
            Severity::Error => e.retry.describe(),
            Severity::Warning => {
                "Nothing to retry: the channel keeps working while the warning shows."
            }
        };
        let _ = writeln!(out, "- **Retried?** {retried}");
        let _ = writeln!(out, "- **What to do:** {}\n", e.remedy);
    }
}

/// Renders docs/errors.md from the catalogue.
pub fn render_errors_markdown() -> String {
    let mut out = String::new();
    out.push_str(
        "# Errors inboxd can report\n\n\
<!-- Generated from src/catalogue.rs by `render_errors_markdown`. Do not edit by hand: change the \
catalogue and run `INBOXD_BLESS=1 cargo test --lib catalogue`. -->\n\n\
When a channel stops or slows down, inboxd records its **last error**: where it came from (`source`: \
`identity_platform`, `graph`, `imap` or `inboxd`), its **code**, Microsoft's trace and correlation ids when given, \
the time, and a **remedy**. You see it on the status page (`GET /` on inboxd's server), in \
`inboxd channel show ID` and `inboxd channel list`, and in the admin API as `last_error` on the channel.\n\n\
How to read this page:\n\n\
- **Code** is what inboxd shows: an AADSTS number from Microsoft's sign-in service (`AADSTS53003`), an \
OAuth error value when Microsoft gave no number (`invalid_grant`), a Microsoft Graph error code \
(`ErrorAccessDenied`), or one of inboxd's own (`SecretExpired`). Search this page for it.\n\
- **Channel status** is what the channel shows next: `backing_off` (inboxd retries on its own), \
`needs_reauthorization` (someone must sign in again: press **Update auth info** on the status page or \
run `inboxd channel authorize ID`), or `blocked` (an admin must change something outside inboxd first, \
usually in Azure, Entra or Exchange).\n\
- **Retried?** says whether inboxd tries again by itself.\n\
- **What to do** is the fix, step by step.\n\n\
When Microsoft sends several AADSTS numbers, inboxd uses the most specific one it knows. A number not \
listed here is shown as it came (for example `AADSTS12345`) with the policy of its OAuth error value \
(`invalid_grant`, `invalid_client`, …); read Microsoft's description that comes with it. \
Setting up the app registration is described in [azure-setup.md](azure-setup.md).\n\n",
    );
    let pick = |pred: &dyn Fn(&Entry) -> bool| -> Vec<&'static Entry> {
        entries().iter().filter(|e| pred(e)).collect()
    };
    render_section(
        &mut out,
        "Microsoft identity platform: AADSTS codes",
        "Reported by Microsoft's sign-in service (Entra ID) when inboxd redeems an authorization or \
refreshes a token, or on the page the browser returns to after signing in. The Entra admin center's \
Sign-in logs (entra.microsoft.com → Identity → Monitoring & health → Sign-in logs) show the same \
failure with more detail; search them by the correlation id inboxd shows.",
        &pick(&|e| e.source == Source::IdentityPlatform && e.aadsts_number().is_some()),
    );
    render_section(
        &mut out,
        "Microsoft identity platform: OAuth error values and HTTP statuses",
        "Used when Microsoft's answer carries no AADSTS number inboxd knows: inboxd falls back on the \
OAuth `error` value, or on the token endpoint's HTTP status.",
        &pick(&|e| e.source == Source::IdentityPlatform && e.aadsts_number().is_none()),
    );
    render_section(
        &mut out,
        "Microsoft Graph",
        "Reported by Microsoft Graph while inboxd reads a mailbox or marks mail read. Codes named \
`graph_http_…` are used when Graph's code is missing or unknown and only the HTTP status tells.",
        &pick(&|e| e.source == Source::Graph),
    );
    render_section(
        &mut out,
        "IMAP (channels on the IMAP transport)",
        "Reported by the IMAP server (Exchange Online's `outlook.office365.com`, or the host set in \
`cloud.imap_url`) while inboxd signs in with XOAUTH2, opens the folder, reads mail or sets `\\Seen`. \
Exchange answers every refused sign-in the same way, so the remedy lists the usual causes in the \
order to check them.",
        &pick(&|e| e.source == Source::Imap),
    );
    render_section(
        &mut out,
        "inboxd's own",
        "Reported by inboxd itself: its checks of the client secret's expiry date, its OAuth callback, \
its sink and its store.",
        &pick(&|e| e.source == Source::Inboxd),
    );
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}
