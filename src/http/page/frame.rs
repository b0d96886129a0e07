//! The one page frame and the one Content-Security-Policy of every HTML response (the status page
//! and the OAuth callback's pages), the security headers that go with them, redirects, and the
//! notice page that says what happened and what to do.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use maud::{DOCTYPE, Markup, html};

use crate::domain::ChannelId;

/// The Content-Security-Policy of every HTML response: scripts and styles from this server only,
/// nothing inline, no framing. (No `form-action`: the authorize form redirects to Microsoft's
/// sign-in.)
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The page's script and style sheet, served from `/ui/app.js` and `/ui/app.css`.
pub const SCRIPT: &str = include_str!("app.js");
/// See [`SCRIPT`].
pub const STYLE: &str = include_str!("app.css");

/// A whole page: `body` inside the frame, with every security header.
pub fn page(status: StatusCode, title: &str, body: Markup) -> HttpResponse {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · inboxd" }
                meta name="viewport" content="width=device-width, initial-scale=1";
                link rel="stylesheet" href="/ui/app.css";
            }
            body {
                (body)
                script src="/ui/app.js" {}
            }
        }
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        // `same-origin`, not `no-referrer`: with no-referrer a browser sends `Origin: null` on a
        // form POST, and the forms' same-origin check needs the real origin.
        .insert_header(("Referrer-Policy", "same-origin"))
        .body(markup.into_string())
}

/// A 303 to `location`.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, location.to_owned()))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

/// A page telling a person what happened and what to do.
#[derive(Debug)]
pub struct Notice {
    ok: bool,
    title: String,
    detail: String,
    remedy: Option<String>,
    channel: Option<ChannelId>,
    code: Option<String>,
    trace_id: Option<String>,
    correlation_id: Option<String>,
}

impl Notice {
    /// A success.
    pub fn success(title: &str, detail: &str, channel: Option<ChannelId>) -> Self {
        Notice {
            ok: true,
            title: title.to_owned(),
            detail: detail.to_owned(),
            remedy: None,
            channel,
            code: None,
            trace_id: None,
            correlation_id: None,
        }
    }

    /// A failure with its remedy.
    pub fn failure(title: &str, detail: &str, remedy: &str, channel: Option<ChannelId>) -> Self {
        Notice {
            remedy: Some(remedy.to_owned()),
            ok: false,
            ..Notice::success(title, detail, channel)
        }
    }

    /// Adds Microsoft's trace and correlation ids.
    pub fn with_ids(mut self, trace_id: Option<String>, correlation_id: Option<String>) -> Self {
        self.trace_id = trace_id;
        self.correlation_id = correlation_id;
        self
    }

    /// Adds inboxd's error code.
    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_owned());
        self
    }

    /// The page, with `status`.
    pub fn render(&self, status: StatusCode) -> HttpResponse {
        let body = html! {
            main.narrow {
                h1.ok[self.ok].problem[!self.ok] { (self.title) }
                p id="detail" { (self.detail) }
                @if let Some(code) = &self.code {
                    p { "Code: " code id="code" { (code) } }
                }
                @if let Some(remedy) = &self.remedy {
                    h2 { "What to do" }
                    p id="remedy" { (remedy) }
                }
                @if self.trace_id.is_some() || self.correlation_id.is_some() {
                    p.ids {
                        @if let Some(id) = &self.trace_id {
                            "Trace ID: " code id="trace-id" { (id) } " "
                        }
                        @if let Some(id) = &self.correlation_id {
                            "Correlation ID: " code id="correlation-id" { (id) }
                        }
                    }
                }
                @match self.channel {
                    Some(channel) => {
                        p {
                            "Channel " code id="channel" { (channel.to_string()) } ". "
                            a href={ "/?channel=" (channel.to_string()) } { "Open the status page" }
                            " to see it"
                            @if !self.ok { " and \"Update auth info\"" }
                            "."
                        }
                    }
                    None => {
                        p { a href="/" { "Back to the status page" } }
                    }
                }
            }
        };
        page(status, &self.title, body)
    }
}
