//! One channel's views: its details with the actions, the remove confirmation and the quarantine.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use crate::control::Quarantined;
use crate::domain::ChannelStatus;
use crate::http::AppState;
use crate::http::page::cells::{self, button_form, csrf_field, truncate};
use crate::http::page::frame::page;
use crate::http::session::CsrfToken;
use crate::status::ChannelView;

/// Most quarantined messages the quarantine view lists.
pub const QUARANTINE_LIST_MAX: usize = 1000;

/// The details section of the channels view, with the actions.
pub fn detail(
    state: &AppState,
    view: &ChannelView,
    csrf: &CsrfToken,
    now: DateTime<Utc>,
) -> Markup {
    let id = view.id.to_string();
    let base = format!("/ui/channels/{id}");
    let auth_label = if view.status == ChannelStatus::AwaitingAuthorization {
        "Authorize"
    } else {
        "Update auth info"
    };
    html! {
        section id="detail" class="card" data-channel-id=(id) data-status=(view.status.as_str()) {
            h2 { (view.name) }
            dl {
                dt { "Status" }
                dd id="detail-status" { (cells::status(view.status)) " " span.muted { (cells::status_hint(view.status)) } }
                dt { "Mailbox" }
                dd id="detail-mailbox" { (view.mailbox) " " span.muted { "folder " (view.folder) } }
                dt { "Transport" }
                dd id="detail-transport" {
                    @match view.transport {
                        crate::domain::Transport::Graph => "Microsoft Graph",
                        crate::domain::Transport::Imap => "IMAP (OAuth2, XOAUTH2)",
                    }
                }
                dt { "Tenant" } dd.mono { (view.tenant_id) }
                dt { "App (client) id" } dd.mono { (view.client_id) }
                dt { "Channel id" } dd.mono { (id) }
                @if let Some(node) = &view.node { dt { "Node" } dd.mono id="detail-node" { (node) } }
                dt { "Last successful poll" }
                dd id="detail-last-success" { (cells::time(view.last_success_at, now, "never")) }
                dt { "Last poll" }
                dd id="detail-last-poll" { (cells::time(view.last_poll_at, now, "never")) }
                dt { "Next poll" }
                dd id="detail-next-poll" {
                    @if view.enabled { (cells::time(view.next_poll_at, now, "–")) }
                    @else { span.muted { "not while disabled" } }
                }
                dt { "Messages today" }
                dd id="detail-today" { (cells::messages_today(view, now)) }
                @let app = crate::control::parse_app_id(view.tenant_id.as_str(), view.client_id.as_str())
                    .ok()
                    .and_then(|key| state.control.app(&key).ok());
                dt { "App credential" }
                dd id="detail-secret" {
                    @match &app {
                        Some(app) => {
                            (app.summary.kind.as_str()) " · " (cells::secret(view, now))
                            @if let Some(thumbprint) = &app.summary.thumbprint {
                                " · " span.mono { (thumbprint) }
                            }
                            " · " span.muted { "shared by " (app.channels) (if app.channels == 1 { " channel" } else { " channels" }) " of the app" }
                        }
                        None => span.bad { "no app recorded: give the app's secret or certificate below" },
                    }
                }
                @if view.attempts > 0 {
                    dt { "Failed attempts" }
                    dd id="detail-attempts" { (view.attempts) " in a row" }
                }
                dt { "Redirect URI" } dd { code { (state.control.redirect_uri()) } }
            }
            @if let Some(e) = &view.last_error {
                div.last-error id="detail-error" {
                    h3 {
                        "Last error " code id="detail-error-code" { (e.code) } " "
                        span.muted { (cells::time(Some(e.at), now, "")) " · from " (e.source.as_str()) }
                    }
                    p id="detail-error-message" { (e.message) }
                    p { strong { "What to do:" } " " span id="detail-remedy" { (e.remedy) } }
                    @if e.trace_id.is_some() || e.correlation_id.is_some() {
                        p.muted {
                            @if let Some(t) = &e.trace_id { "Trace ID " code { (t) } " " }
                            @if let Some(c) = &e.correlation_id { "Correlation ID " code { (c) } }
                        }
                    }
                }
            }
            @if let Some(w) = &view.warning {
                div.last-error id="detail-warning" {
                    h3 {
                        "Warning " code { (w.code) } " "
                        span.muted { (cells::time(Some(w.at), now, "")) " · from " (w.source.as_str()) }
                    }
                    p { (w.message) " Polling goes on while the current access token is valid." }
                    p { strong { "What to do:" } " " (w.remedy) }
                }
            }
            @let history = state.control.recent_events(view.id, 10);
            @if !history.is_empty() {
                details id="detail-events" {
                    summary { "Recent events (" (history.len()) ")" }
                    table {
                        thead { tr { th { "When" } th { "What" } th { "Status" } th { "Code" } th { "What to do" } } }
                        tbody {
                            @for event in &history {
                                tr data-kind=(event.kind) {
                                    td { (cells::time(Some(event.at), now, "")) }
                                    td { (event.kind.trim_start_matches("channel.").replace('_', " ")) }
                                    td {
                                        @if let Some(previous) = &event.previous_status { (previous) " → " }
                                        (event.status)
                                    }
                                    td { @if let Some(code) = &event.code { code { (code) } } }
                                    td { @if let Some(remedy) = &event.remedy { (truncate(remedy, 160)) } }
                                }
                            }
                        }
                    }
                }
            }
            div.actions id="actions" {
                (button_form(&format!("{base}/authorize"), csrf, auth_label, "primary"))
                @if view.enabled {
                    (button_form(&format!("{base}/poll"), csrf, "Poll now", ""))
                    (button_form(&format!("{base}/disable"), csrf, "Disable", ""))
                } @else {
                    (button_form(&format!("{base}/enable"), csrf, "Enable", ""))
                }
                @let quarantined = state.control.quarantine_count(view.id);
                a.button href={ (base) "/quarantine" } id="detail-quarantine" data-count=(quarantined) {
                    @match quarantined {
                        0 => "View quarantine",
                        n => { "Quarantine: " (n) (if n == 1 { " message" } else { " messages" }) },
                    }
                }
                (button_form(&format!("{base}/remove"), csrf, "Remove…", "danger"))
            }
            @if view.enabled {
                details id="backfill-form" {
                    summary { "Backfill" }
                    form method="post" action={ (base) "/backfill" } {
                        (csrf_field(csrf))
                        label { "Deliver what arrived since " input type="date" name="since" required; }
                        " "
                        button type="submit" { "Backfill" }
                        p.muted { "Mail received since that day and never delivered is delivered now, read or not; nothing is delivered twice." }
                    }
                }
            }
            details id="secret-form" {
                summary { "Update the app's secret or certificate" }
                form method="post" action={ (base) "/secret" } autocomplete="off" {
                    (csrf_field(csrf))
                    label { "New client secret value " input type="password" name="client_secret" autocomplete="new-password"; }
                    label { "Expires (optional) " input type="date" name="client_secret_expires_at"; }
                    label { "or a certificate with its private key (PEM) "
                        textarea name="client_certificate" rows="4" cols="64" placeholder="-----BEGIN CERTIFICATE-----" {}
                    }
                    button type="submit" { "Update secret" }
                    p.muted {
                        "The secret's value (not its id) from Certificates & secrets in the Azure portal, or a certificate uploaded there (Microsoft recommends certificates). "
                        "It belongs to the app: every channel of the app uses it from its next token request on, and channels blocked by the old one try again at once. No new sign-in is needed."
                    }
                }
            }
        }
    }
}

/// Asks before removing a channel.
pub fn confirm_remove(view: &ChannelView, csrf: &CsrfToken) -> HttpResponse {
    let id = view.id.to_string();
    let body = html! {
        main.narrow {
            h1.problem { "Remove " (view.name) "?" }
            p {
                "inboxd stops reading " strong { (view.mailbox) }
                " and deletes everything it stored for this channel: its configuration, tokens, cursor and message ledger. \
                Mail already delivered stays where it was delivered. This cannot be undone; to read the mailbox again, \
                add the channel again and authorize it."
            }
            form method="post" action={ "/ui/channels/" (id) "/remove" } id="confirm-remove" {
                (csrf_field(csrf))
                input type="hidden" name="confirm" value="yes";
                button type="submit" class="danger" { "Remove the channel" }
                " "
                a href={ "/?channel=" (id) } { "Cancel" }
            }
        }
    };
    page(StatusCode::OK, "Remove a channel", body)
}

/// The quarantine of a channel.
pub fn quarantine(view: &ChannelView, entries: &[Quarantined], csrf: &CsrfToken) -> HttpResponse {
    let now = Utc::now();
    let id = view.id.to_string();
    let body = html! {
        header { h1 { a href="/" { "inboxd" } } }
        main {
            h2 { "Quarantine of " (view.name) }
            p {
                "Messages that failed " (view.mailbox) "'s delivery too often and wait for an operator. \
                Fix the cause (see each error), then replay: they are delivered again on the next poll."
            }
            p { a href={ "/?channel=" (id) } { "Back to the channel" } }
            @if entries.is_empty() {
                p id="quarantine-empty" { "Nothing is quarantined." }
            } @else {
                p {
                    (entries.len()) " message(s)"
                    @if entries.len() >= QUARANTINE_LIST_MAX { " (the first ones)" }
                    "."
                }
                table id="quarantine" {
                    thead { tr {
                        th { "Message id" } th { "Failures" } th { "Last error" } th { "First seen" } th { "Updated" }
                    } }
                    tbody {
                        @for entry in entries {
                            tr {
                                td.mono { (entry.message_id) }
                                td.num { (entry.failures) }
                                td { (entry.last_error.as_deref().unwrap_or("")) }
                                td { (cells::time(Some(entry.first_seen_at), now, "")) }
                                td { (cells::time(Some(entry.updated_at), now, "")) }
                            }
                        }
                    }
                }
                (button_form(&format!("/ui/channels/{id}/quarantine/replay"), csrf, "Replay quarantine", "primary"))
            }
        }
    };
    page(StatusCode::OK, "Quarantine", body)
}
