//! What needs attention, first: the channels in trouble grouped by error code, one remedy per group
//! with its channels under it, and bulk actions on a group (sign-in links for its owners, poll,
//! disable, enable). Channels that heal on their own (backing off) are a calm group of their own.
//!
//! A bulk action names its group (status and code), not a list of ids: the page stays small with
//! thousands of channels in one group, and the action applies to the group as it is when it runs.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use crate::control::Filter;
use crate::domain::{ChannelId, ChannelStatus};
use crate::http::AppState;
use crate::http::page::cells::{self, csrf_field, truncate};
use crate::http::page::frame::{self, page};
use crate::http::page::guard::guard_post;
use crate::http::session::CsrfToken;
use crate::status::ChannelView;

/// Channels named under a group on the first screen.
const SHOWN_PER_GROUP: usize = 3;

/// A group of channels in trouble: one status, one error code, one remedy.
#[derive(Debug, Clone)]
pub struct Group {
    /// Their status.
    pub status: ChannelStatus,
    /// The error code (`none` when a channel has no last error, e.g. awaiting its first sign-in).
    pub code: String,
    /// What to do, from the first channel's last error.
    pub remedy: String,
    /// How many channels are in it.
    pub count: usize,
    /// The first few of them (id, name, mailbox): what the page names.
    pub channels: Vec<(ChannelId, String, String)>,
    /// The oldest error's time: "failing since".
    pub since: Option<DateTime<Utc>>,
    /// The most failed cycles in a row of a channel in it (self-healing groups say how long
    /// they have been trying).
    pub attempts: u32,
}

/// Whether a status needs someone (or, for backing off, is shown calmly) on the first screen.
fn in_trouble(status: ChannelStatus) -> bool {
    matches!(
        status,
        ChannelStatus::Blocked
            | ChannelStatus::NeedsReauthorization
            | ChannelStatus::AwaitingAuthorization
            | ChannelStatus::BackingOff
    )
}

/// How urgent a status is: lower first.
fn rank(status: ChannelStatus) -> u8 {
    match status {
        ChannelStatus::Blocked => 0,
        ChannelStatus::NeedsReauthorization => 1,
        ChannelStatus::AwaitingAuthorization => 2,
        ChannelStatus::BackingOff => 3,
        ChannelStatus::Active | ChannelStatus::Disabled => 4,
    }
}

/// The code a row is grouped by.
fn code_of(view: &ChannelView) -> String {
    view.last_error
        .as_ref()
        .map_or_else(|| "none".to_owned(), |e| e.code.clone())
}

/// Collects the groups from every row of the board.
#[derive(Debug, Default)]
pub struct Collector {
    groups: BTreeMap<(u8, String, String), Group>,
}

impl Collector {
    /// Looks at one row.
    pub fn see(&mut self, view: &ChannelView) {
        if !view.enabled || !in_trouble(view.status) {
            return;
        }
        let code = code_of(view);
        let key = (
            rank(view.status),
            view.status.as_str().to_owned(),
            code.clone(),
        );
        let group = self.groups.entry(key).or_insert_with(|| Group {
            status: view.status,
            code,
            remedy: view
                .last_error
                .as_ref()
                .map(|e| e.remedy.clone())
                .unwrap_or_else(|| default_remedy(view.status).to_owned()),
            count: 0,
            channels: Vec::new(),
            since: None,
            attempts: 0,
        });
        group.count += 1;
        group.attempts = group.attempts.max(view.attempts);
        if group.channels.len() < SHOWN_PER_GROUP {
            group
                .channels
                .push((view.id, view.name.to_string(), view.mailbox.to_string()));
        }
        if let Some(at) = view.last_error.as_ref().map(|e| e.at) {
            group.since = Some(group.since.map_or(at, |since| since.min(at)));
        }
    }

    /// The groups, most urgent first, then largest first.
    pub fn groups(self) -> Vec<Group> {
        let mut groups: Vec<Group> = self.groups.into_values().collect();
        groups.sort_by(|a, b| {
            rank(a.status)
                .cmp(&rank(b.status))
                .then(b.count.cmp(&a.count))
                .then(a.code.cmp(&b.code))
        });
        groups
    }
}

fn default_remedy(status: ChannelStatus) -> &'static str {
    match status {
        ChannelStatus::AwaitingAuthorization => {
            "The mailbox's user (or a user with Full Access to it) must sign in once: send them a sign-in link."
        }
        ChannelStatus::BackingOff => "Nothing: inboxd retries on its own.",
        _ => "Open a channel of the group for its details.",
    }
}

/// The primary action of a group: what its remedy asks for.
fn primary(group: &Group) -> (&'static str, &'static str) {
    let code = group.code.to_ascii_lowercase();
    if code.contains("7000215")
        || code.contains("7000222")
        || code.contains("700027")
        || code.contains("secret")
        || code.contains("certificate")
    {
        // A wrong or expired app credential: the fix is a new secret or certificate for the app
        // (once for all its channels), not a sign-in.
        ("secret", "Update the app's secret or certificate")
    } else {
        match group.status {
            ChannelStatus::NeedsReauthorization | ChannelStatus::AwaitingAuthorization => {
                ("reauthorize", "Make sign-in links for all")
            }
            ChannelStatus::BackingOff => ("poll", "Poll all now"),
            // Blocked by something an admin fixes outside inboxd (Conditional Access, consent, an
            // unknown app): once it is fixed, try them all again; a new sign-in would not help.
            _ => ("poll", "Try all again now (after the fix)"),
        }
    }
}

/// The "Needs attention" section (nothing when nothing needs attention).
pub fn section(groups: &[Group], csrf: &CsrfToken, now: DateTime<Utc>) -> Markup {
    if groups.is_empty() {
        return html! {};
    }
    let needing: usize = groups
        .iter()
        .filter(|g| g.status != ChannelStatus::BackingOff)
        .map(|g| g.count)
        .sum();
    html! {
        section id="problems" class="card" {
            h2 {
                "Needs attention"
                @if needing > 0 { " · " (needing) " " (if needing == 1 { "channel" } else { "channels" }) }
            }
            @for group in groups {
                @let calm = group.status == ChannelStatus::BackingOff;
                div.group.calm[calm] data-group-status=(group.status.as_str()) data-code=(group.code) data-count=(group.count) {
                    h3 {
                        span class={ "status status-" (group.status.as_str()) } { (group.status.as_str()) }
                        " " code { (group.code) } " · " (group.count) " "
                        (if group.count == 1 { "channel" } else { "channels" })
                        @if let Some(since) = group.since {
                            " " span.muted { "failing since " (cells::time(Some(since), now, "")) }
                        }
                        @if calm && group.attempts > 0 {
                            " " span.muted.attempts data-attempts=(group.attempts) {
                                "· retrying on its own, " (group.attempts)
                                (if group.attempts == 1 { " attempt" } else { " attempts" }) " so far"
                            }
                        }
                    }
                    p.remedy { strong { "What to do: " } (truncate(&group.remedy, 400)) }
                    ul.members {
                        @for (id, name, mailbox) in &group.channels {
                            li { a href={ "/?channel=" (id.to_string()) } { (name) } " " span.muted { (mailbox) } }
                        }
                        @if group.count > group.channels.len() {
                            li.muted {
                                a href={ "/?status=" (group.status.as_str()) } {
                                    "and " (group.count - group.channels.len()) " more"
                                }
                            }
                        }
                    }
                    @let (action, label) = primary(group);
                    form method="post" action="/ui/bulk" class="bulk" {
                        (csrf_field(csrf))
                        input type="hidden" name="status" value=(group.status.as_str());
                        input type="hidden" name="code" value=(group.code);
                        @if action == "secret" {
                            a.button.primary href={ "/?channel=" (group.channels.first().map(|c| c.0.to_string()).unwrap_or_default()) "#secret-form" } { (label) }
                            button type="submit" name="action" value="poll" { "Poll all now" }
                        } @else {
                            button.primary[!calm] type="submit" name="action" value=(action) { (label) }
                            @if action != "poll" { button type="submit" name="action" value="poll" { "Poll all now" } }
                            @if action != "reauthorize" && !calm {
                                button type="submit" name="action" value="reauthorize" { "Make sign-in links" }
                            }
                        }
                        button type="submit" name="action" value="disable" { "Disable all" }
                        button.danger type="submit" name="action" value="remove" { "Remove all…" }
                    }
                }
            }
        }
    }
}

/// The bulk form: a group (`status` and `code`) or a selection (`ids`, repeated: the channel
/// table's check boxes), the `action`, and for a removal the `confirm` of its second step.
#[derive(Debug, Default)]
pub struct BulkForm {
    csrf: String,
    status: String,
    code: String,
    action: String,
    ids: Vec<String>,
    confirm: bool,
}

impl BulkForm {
    /// Reads an `application/x-www-form-urlencoded` body (keys may repeat: `ids`).
    fn parse(body: &[u8]) -> Self {
        let mut form = BulkForm::default();
        for (key, value) in url::form_urlencoded::parse(body) {
            match key.as_ref() {
                "csrf" => form.csrf = value.into_owned(),
                "status" => form.status = value.into_owned(),
                "code" => form.code = value.into_owned(),
                "action" => form.action = value.into_owned(),
                "ids" => form.ids.push(value.into_owned()),
                "confirm" => form.confirm = value == "yes",
                _ => {}
            }
        }
        form
    }
}

/// At most this many channels in one selection (a page of the table is at most 500).
const MAX_SELECTED: usize = 1000;

/// `POST /ui/bulk`: an action on every channel of a group, or of a selection.
pub async fn bulk(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let form = BulkForm::parse(&body);
    if let Err(refused) = guard_post(&state, &req, &form.csrf) {
        return refused.page(&state);
    }
    let members: Vec<ChannelView> = if form.ids.is_empty() {
        let Ok(status) = form.status.parse::<ChannelStatus>() else {
            return bad("The group's status is not one inboxd knows.");
        };
        let code = form.code.clone();
        let listing = state
            .control
            .list(&Filter::new(Some(status), ""), 0, usize::MAX, |_| {});
        listing
            .rows
            .into_iter()
            .filter(|row| row.enabled && code_of(row) == code)
            .collect()
    } else {
        if form.ids.len() > MAX_SELECTED {
            return bad("Too many channels selected at once: at most 1,000.");
        }
        let mut views = Vec::with_capacity(form.ids.len());
        for raw in &form.ids {
            let view = crate::control::parse_channel_id(raw)
                .ok()
                .and_then(|id| state.control.get(id).ok());
            match view {
                Some(view) => views.push(view),
                None => {
                    return bad("A selected channel does not exist (any more): reload the page.");
                }
            }
        }
        views
    };
    if members.is_empty() {
        return frame::see_other("/");
    }
    match form.action.as_str() {
        "reauthorize" => {
            let mut links = Vec::with_capacity(members.len());
            for view in &members {
                match state.control.invite(view.id, None).await {
                    Ok(invitation) => links.push((view.clone(), Ok(invitation))),
                    Err(err) => links.push((view.clone(), Err(err.to_string()))),
                }
            }
            links_page(&links)
        }
        "poll" => {
            for view in &members {
                let _ = state.control.poll_now(view.id).await;
            }
            frame::see_other("/?done=polling")
        }
        "remove" if !form.confirm => confirm_removal(&members, &form),
        "remove" => {
            let mut failed = Vec::new();
            for view in &members {
                if let Err(err) = state.control.remove(view.id).await {
                    failed.push(format!("{}: {err}", view.name));
                }
            }
            if failed.is_empty() {
                frame::see_other("/?done=removed")
            } else {
                bad(&format!(
                    "Some channels were not removed: {}",
                    failed.join("; ")
                ))
            }
        }
        "disable" | "enable" => {
            let enable = form.action == "enable";
            for view in &members {
                let _ = state.control.set_enabled(view.id, enable).await;
            }
            frame::see_other(if enable {
                "/?done=enabled"
            } else {
                "/?done=disabled"
            })
        }
        _ => bad("Unknown bulk action: use one of the group's buttons."),
    }
}

/// The second step of a bulk removal: what will be removed, and the button that does it.
fn confirm_removal(members: &[ChannelView], form: &BulkForm) -> HttpResponse {
    let body = html! {
        main.narrow {
            h1.problem { "Remove " (members.len()) (if members.len() == 1 { " channel" } else { " channels" }) "?" }
            p {
                "inboxd stops reading these mailboxes and deletes everything it stored for them: configuration, "
                "tokens, cursor and message ledger. Mail already delivered stays where it is; the mail in the "
                "mailboxes is not touched. This cannot be undone."
            }
            ul id="to-remove" {
                @for view in members { li { (view.name) " " span.muted { (view.mailbox) } } }
            }
            form method="post" action="/ui/bulk" {
                input type="hidden" name="csrf" value=(form.csrf);
                input type="hidden" name="action" value="remove";
                input type="hidden" name="confirm" value="yes";
                input type="hidden" name="status" value=(form.status);
                input type="hidden" name="code" value=(form.code);
                @for view in members { input type="hidden" name="ids" value=(view.id.to_string()); }
                button.danger type="submit" { "Remove them" }
                " " a href="/" { "Cancel" }
            }
        }
    };
    page(StatusCode::OK, "Remove channels", body)
}

fn bad(what: &str) -> HttpResponse {
    page(
        StatusCode::BAD_REQUEST,
        "Bulk action refused",
        html! { main.narrow { h1.problem { "Bulk action refused" } p { (what) } p { a href="/" { "Back to the status page" } } } },
    )
}

/// The sign-in links made for a group: one per mailbox, to send to its owner.
fn links_page(
    links: &[(
        ChannelView,
        Result<crate::control::invitations::NewInvitation, String>,
    )],
) -> HttpResponse {
    let body = html! {
        main {
            h1 { "Sign-in links" }
            p {
                "Send each link to the mailbox's user (or a user with Full Access to the mailbox). "
                "Each works once, until the time shown; only its hash is kept, so copy them now."
            }
            table id="links" {
                thead { tr { th { "Channel" } th { "Mailbox" } th { "Link" } th { "Valid until" } } }
                tbody {
                    @for (view, link) in links {
                        tr data-channel-id=(view.id.to_string()) {
                            td { a href={ "/?channel=" (view.id.to_string()) } { (view.name) } }
                            td { (view.mailbox) }
                            @match link {
                                Ok(invitation) => {
                                    td { input.link type="text" readonly value=(invitation.url); }
                                    td { (invitation.expires_at.format("%Y-%m-%d %H:%M UTC")) }
                                }
                                Err(why) => { td.problem colspan="2" { (why) } }
                            }
                        }
                    }
                }
            }
            p { a href="/" { "Back to the status page" } }
        }
    };
    let mut response = page(StatusCode::OK, "Sign-in links", body);
    response.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    response
}
