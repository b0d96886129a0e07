//! The channels view (`GET /`): status counts, what needs attention first (grouped by error code,
//! `problems.rs`), the add form, filter and search, one page of the table, paging; with one
//! channel's details on top when the query names one.

use std::cell::Cell;
use std::collections::HashMap;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use crate::control::Filter;
use crate::domain::{ChannelId, ChannelStatus};
use crate::http::AppState;
use crate::http::page::cells::{self, button_form, csrf_field, truncate};
use crate::http::page::frame::page;
use crate::http::page::{channel, problems};
use crate::http::session::CsrfToken;
use crate::status::ChannelView;

/// Channels per page.
pub const PAGE_SIZE: usize = 100;

/// Query of `GET /`.
#[derive(Debug, Default)]
pub struct IndexQuery {
    status: Option<ChannelStatus>,
    q: String,
    page: usize,
    channel: Option<ChannelId>,
    done: Option<&'static str>,
    replayed: Option<usize>,
}

impl IndexQuery {
    /// Reads the query leniently: what cannot be read is left out.
    pub fn from_map(map: &HashMap<String, String>) -> Self {
        let get = |k: &str| map.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        IndexQuery {
            status: get("status").and_then(|s| s.parse().ok()),
            q: get("q").unwrap_or_default().chars().take(200).collect(),
            page: get("page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1),
            channel: get("channel").and_then(|c| ChannelId::parse(c).ok()),
            done: get("done").and_then(|d| match d {
                "added" => {
                    Some("Channel added. Next: register the redirect URI in Azure, then Authorize.")
                }
                "secret" => Some("The client secret was updated."),
                "enabled" => Some("Channel enabled."),
                "disabled" => Some("Channel disabled: it does not poll until enabled."),
                "polling" => Some("Polling now."),
                "backfill" => Some("Backfill started: mail received since that day and never delivered is being delivered."),
                "removed" => Some("Channel removed, with everything stored for it."),
                "replayed" => Some("Quarantined messages released for delivery."),
                _ => None,
            }),
            replayed: get("replayed").and_then(|n| n.parse().ok()),
        }
    }

    /// The address of a page of this listing.
    fn link(&self, page: usize) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        if let Some(status) = self.status {
            out.append_pair("status", status.as_str());
        }
        if !self.q.is_empty() {
            out.append_pair("q", &self.q);
        }
        if page > 1 {
            out.append_pair("page", &page.to_string());
        }
        let query = out.finish();
        if query.is_empty() {
            "/".to_owned()
        } else {
            format!("/?{query}")
        }
    }
}

/// The page.
pub fn index(state: &AppState, query: &IndexQuery, csrf: &CsrfToken) -> HttpResponse {
    let now = Utc::now();
    // One pass over the board: count every status and keep the rows that match.
    let counts: [Cell<usize>; 6] = Default::default();
    let offset = (query.page - 1).saturating_mul(PAGE_SIZE);
    let filter = Filter::new(query.status, &query.q);
    let trouble = std::cell::RefCell::new(problems::Collector::default());
    let listing = state.control.list(&filter, offset, PAGE_SIZE, |row| {
        if let Some(i) = ChannelStatus::ALL.iter().position(|s| *s == row.status) {
            counts[i].set(counts[i].get() + 1);
        }
        trouble.borrow_mut().see(row);
    });
    let groups = trouble.into_inner().groups();
    let all: usize = counts.iter().map(Cell::get).sum();
    let total = listing.total;
    let first = if total == 0 { 0 } else { offset + 1 };
    let last = (offset + listing.rows.len()).min(total);
    let pages = total.div_ceil(PAGE_SIZE).max(1);

    let body = html! {
        header {
            h1 { a href="/" { "inboxd" } }
            nav.counts id="counts" {
                (all) " " (if all == 1 { "channel" } else { "channels" }) ":"
                @for (status, count) in ChannelStatus::ALL.iter().zip(counts.iter()) {
                    " "
                    a href={ "/?status=" (status.as_str()) } class={ "status-" (status.as_str()) }
                        data-count=(count.get()) { (status.as_str()) " " (count.get()) }
                }
            }
            label.autorefresh { input type="checkbox" id="autorefresh"; " auto-refresh" }
            (button_form("/logout", csrf, "Log out", "secondary"))
        }
        main {
            @if let Some(done) = query.done {
                p.flash.ok id="flash" role="status" {
                    (done)
                    @if let Some(n) = query.replayed { " (" (n) " messages)" }
                }
            }
            @if let Some(id) = query.channel {
                @match state.control.get(id).ok() {
                    Some(view) => (channel::detail(state, &view, csrf, now)),
                    None => p.flash.problem id="flash" {
                        "No channel has the id " (id.to_string()) ": it may have been removed."
                    },
                }
            }
            @if query.channel.is_none() {
                (problems::section(&groups, csrf, now))
                (expiring_credentials(state, now))
            }
            (add_form(state, csrf, all == 0))
            form method="get" action="/" id="filter" class="filter" role="search" {
                label { "Status "
                    select name="status" id="filter-status" {
                        option value="" { "any" }
                        @for status in ChannelStatus::ALL {
                            option value=(status.as_str()) selected[query.status == Some(status)] { (status.as_str()) }
                        }
                    }
                }
                " "
                label { "Search "
                    input type="search" name="q" id="filter-q" value=(query.q) placeholder="name, mailbox, tenant or id";
                }
                " "
                button type="submit" { "Filter" }
            }
            p.muted id="showing" { "Showing " (first) "–" (last) " of " (total) " matching channels." }
            form id="bulk-selection" method="post" action="/ui/bulk" class="bulk" {
                (csrf_field(csrf))
                "Channels ticked below: "
                button type="submit" name="action" value="poll" { "Poll selected" }
                button type="submit" name="action" value="reauthorize" { "Sign-in links for selected" }
                button type="submit" name="action" value="disable" { "Disable selected" }
                button type="submit" name="action" value="enable" { "Enable selected" }
                button.danger type="submit" name="action" value="remove" { "Remove selected…" }
            }
            table id="channels" {
                thead { tr {
                    th { span.muted { "Select" } }
                    th { "Name" } th { "Mailbox" } th { "Tenant" } th { "Status" }
                    th { "Last successful poll" } th { "Next poll" } th { "Today" }
                    th { "Quarantined" } th { "Last error" } th { "Credential expires" }
                } }
                tbody {
                    @for view in &listing.rows {
                        (row(view, now, state.control.quarantine_count(view.id)))
                    }
                    @if listing.rows.is_empty() {
                        tr { td colspan="11" class="muted" { "No channel matches." } }
                    }
                }
            }
            nav.pager id="pager" {
                @if query.page > 1 {
                    a href=(query.link(query.page - 1)) rel="prev" { "← previous" } " "
                }
                "page " (query.page.min(pages).max(1)) " of " (pages)
                @if query.page < pages {
                    " " a href=(query.link(query.page + 1)) rel="next" { "next →" }
                }
            }
        }
    };
    page(StatusCode::OK, "Channels", body)
}

fn row(view: &ChannelView, now: DateTime<Utc>, quarantined: u32) -> Markup {
    html! {
        tr data-channel-id=(view.id.to_string()) data-status=(view.status.as_str()) {
            td {
                input type="checkbox" name="ids" value=(view.id.to_string()) form="bulk-selection"
                    aria-label={ "select " (view.name) };
            }
            td {
                a href={ "/?channel=" (view.id.to_string()) } { (view.name) }
                @if !view.enabled { " " span.muted { "(disabled)" } }
            }
            td {
                (view.mailbox)
                @if let Some(node) = &view.node { div.muted.node { "on " (node) } }
            }
            td.mono { (view.tenant_id) }
            td { (cells::status(view.status)) }
            td.last-success { (cells::time(view.last_success_at, now, "never")) }
            td.next-poll {
                @if view.enabled { (cells::time(view.next_poll_at, now, "–")) }
                @else { span.muted { "–" } }
            }
            td.num { (cells::messages_today(view, now)) }
            td.num.quarantined data-count=(quarantined) {
                @if quarantined > 0 {
                    a.warn href={ "/ui/channels/" (view.id.to_string()) "/quarantine" } { (quarantined) }
                } @else { span.muted { "0" } }
            }
            td.error {
                @if let Some(e) = &view.last_error {
                    // The remedy is said once per group above, and in the channel's details.
                    code { (e.code) } " " (truncate(&e.message, 200))
                }
            }
            td { (cells::secret(view, now)) }
        }
    }
}

/// The apps whose secret or certificate has expired or expires within 30 days: one line each,
/// with how to rotate it once for all its channels.
fn expiring_credentials(state: &AppState, now: DateTime<Utc>) -> Markup {
    let expiring = state.control.expiring_apps(30);
    html! {
        @if !expiring.is_empty() {
            section id="expiring" class="card" {
                h2 { "App credentials expiring · " (expiring.len()) }
                p.muted {
                    "Make a new secret or certificate in the Azure portal, then replace it once for every channel of the app: "
                    code { "inboxd app rotate APP --client-secret-file FILE" } " (or " code { "--client-certificate-file" } ")."
                }
                ul {
                    @for (app, kind, at) in expiring.iter().take(20) {
                        @let days = (*at - now).num_days();
                        li data-app=(app) {
                            code { (app) } " · " (kind.as_str()) " · "
                            @if *at <= now { span.bad { "expired " (cells::time(Some(*at), now, "")) } }
                            @else if days < 14 { span.bad { "expires in " (days) " days" } }
                            @else { span.warn { "expires in " (days) " days" } }
                        }
                    }
                    @if expiring.len() > 20 { li.muted { "and " (expiring.len() - 20) " more: " code { "inboxd app list" } } }
                }
            }
        }
    }
}

fn add_form(state: &AppState, csrf: &CsrfToken, open: bool) -> Markup {
    html! {
        details id="add" class="card" open[open] {
            summary { "Add a channel" }
            p {
                "Register this redirect URI (platform \"Web\") in the app registration in Azure first: "
                code id="redirect-uri" { (state.control.redirect_uri()) }
            }
            form method="post" action="/ui/channels" class="grid" autocomplete="off" {
                (csrf_field(csrf))
                label { "Name " input name="name" placeholder="(the mailbox)"; }
                label { "Mailbox " input name="mailbox" type="email" required placeholder="support@contoso.com"; }
                label { "Tenant (directory) id " input name="tenant_id" required placeholder="GUID or contoso.onmicrosoft.com"; }
                label { "App (client) id " input name="client_id" required placeholder="GUID"; }
                label { "Client secret value " input name="client_secret" type="password" autocomplete="new-password" placeholder="(not needed for a known app)"; }
                label { "Secret expires " input name="client_secret_expires_at" type="date"; }
                label { "Folder " input name="folder" placeholder="inbox"; }
                label { "First poll imports "
                    select name="first_import" {
                        option value="" { "(default)" }
                        option value="all" { "all unread" }
                        option value="new" { "only new mail" }
                        option value="last_days:7" { "the last 7 days" }
                    }
                }
                label { "Read the mailbox through "
                    select name="transport" {
                        option value="graph" { "Microsoft Graph (recommended)" }
                        option value="imap" { "IMAP (OAuth2; needs the IMAP permission and IMAP enabled on the mailbox)" }
                    }
                }
                button type="submit" class="primary" { "Add channel" }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn listing_links_keep_the_filter_and_escape_the_search() {
        let mut map = HashMap::new();
        map.insert("status".to_owned(), "blocked".to_owned());
        map.insert("q".to_owned(), "a&b <x>".to_owned());
        map.insert("page".to_owned(), "0".to_owned());
        map.insert("done".to_owned(), "<script>".to_owned());
        let query = IndexQuery::from_map(&map);
        assert_eq!(query.page, 1);
        assert!(query.done.is_none(), "unknown notices are not reflected");
        assert_eq!(query.link(2), "/?status=blocked&q=a%26b+%3Cx%3E&page=2");
        assert_eq!(query.link(1), "/?status=blocked&q=a%26b+%3Cx%3E");
    }
}
