//! Server-rendered HTML: the pages the OAuth callback shows a person.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;

use crate::domain::ChannelId;

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
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
            ok: false,
            title: title.to_owned(),
            detail: detail.to_owned(),
            remedy: Some(remedy.to_owned()),
            channel,
            code: None,
            trace_id: None,
            correlation_id: None,
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
}

/// Renders a notice with `status`.
pub fn notice_page(status: u16, notice: &Notice) -> HttpResponse {
    let mut body = String::new();
    body.push_str(&format!(
        "<h1 class=\"{}\">{}</h1>\n",
        if notice.ok { "ok" } else { "problem" },
        escape(&notice.title)
    ));
    body.push_str(&format!(
        "<p id=\"detail\">{}</p>\n",
        escape(&notice.detail)
    ));
    if let Some(code) = &notice.code {
        body.push_str(&format!(
            "<p>Code: <code id=\"code\">{}</code></p>\n",
            escape(code)
        ));
    }
    if let Some(remedy) = &notice.remedy {
        body.push_str(&format!(
            "<h2>What to do</h2>\n<p id=\"remedy\">{}</p>\n",
            escape(remedy)
        ));
    }
    if notice.trace_id.is_some() || notice.correlation_id.is_some() {
        body.push_str("<p class=\"ids\">");
        if let Some(id) = &notice.trace_id {
            body.push_str(&format!(
                "Trace ID: <code id=\"trace-id\">{}</code> ",
                escape(id)
            ));
        }
        if let Some(id) = &notice.correlation_id {
            body.push_str(&format!(
                "Correlation ID: <code id=\"correlation-id\">{}</code>",
                escape(id)
            ));
        }
        body.push_str("</p>\n");
    }
    if let Some(channel) = notice.channel {
        body.push_str(&format!(
            "<p>Channel <code id=\"channel\">{channel}</code>. <a href=\"/?channel={channel}\">Open the status page</a> to see it{}.</p>\n",
            if notice.ok { "" } else { " and \"Update auth info\"" }
        ));
    }
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST))
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; style-src 'unsafe-inline'",
        ))
        .body(layout(&notice.title, &body))
}

/// The common page frame.
pub fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · inboxd</title>\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<style>body{{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#222}}\
h1.ok{{color:#17692b}}h1.problem{{color:#a4161a}}code{{background:#f3f3f3;padding:0 .2rem}}\
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.3rem;text-align:left;vertical-align:top}}\
.status-active{{color:#17692b}}.status-blocked,.status-needs_reauthorization{{color:#a4161a}}.status-backing_off{{color:#b35c00}}</style>\
</head><body>\n{}\n</body></html>\n",
        escape(title),
        body
    )
}
