//! OData as the simulated Graph reads it: the `$select`, `$expand` and `$filter` query options of
//! message lists and delta, the `Prefer` headers (`IdType`, `outlook.body-content-type`,
//! `odata.maxpagesize`) with their `Preference-Applied` echo, page sizes, and paging links.

use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use super::response::{Ctx, GraphResponse};
use crate::sim::state::Message;
use crate::sim::util;

/// Characters escaped in query values of generated links.
pub const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':');

/// Default page size of message lists.
pub const DEFAULT_TOP: usize = 10;
/// Largest `$top`.
pub const MAX_TOP: usize = 1000;

/// Properties of `microsoft.graph.message` that `$select` accepts.
const PROPERTIES: &[&str] = &[
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "conversationIndex",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "body",
    "uniqueBody",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
    "attachments",
    "meetingMessageType",
    "startDateTime",
    "endDateTime",
    "location",
    "type",
    "isOutOfDate",
    "isAllDay",
    "isDelegated",
];

/// Whether `name` is a property of `microsoft.graph.message` (exact case, as in a JSON body).
pub fn is_property(name: &str) -> bool {
    PROPERTIES.contains(&name)
}

/// Client preferences from `Prefer` headers.
#[derive(Default)]
pub struct Prefs {
    pub immutable: bool,
    pub text_body: Option<bool>,
    pub max_page: Option<usize>,
}

pub fn prefs(headers: &dyn Fn(&str) -> Option<String>) -> Prefs {
    let mut p = Prefs::default();
    if let Some(v) = headers("prefer") {
        for part in v.split(',') {
            let part = part.trim();
            let (k, val) = part.split_once('=').unwrap_or((part, ""));
            let val = val.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "idtype" if val.eq_ignore_ascii_case("ImmutableId") => p.immutable = true,
                "outlook.body-content-type" => p.text_body = Some(val.eq_ignore_ascii_case("text")),
                "odata.maxpagesize" => p.max_page = val.parse().ok(),
                _ => {}
            }
        }
    }
    p
}

impl Prefs {
    pub fn applied(&self, delta: bool) -> Vec<(String, String)> {
        let mut applied = Vec::new();
        if let Some(t) = self.text_body {
            applied.push(format!(
                "outlook.body-content-type=\"{}\"",
                if t { "text" } else { "html" }
            ));
        }
        if self.immutable {
            applied.push("IdType=\"ImmutableId\"".to_owned());
        }
        if delta && let Some(m) = self.max_page {
            applied.push(format!("odata.maxpagesize={m}"));
        }
        if applied.is_empty() {
            Vec::new()
        } else {
            vec![("Preference-Applied".into(), applied.join(", "))]
        }
    }
}

pub fn parse_select(
    ctx: &Ctx,
    q: &[(String, String)],
) -> Result<Option<Vec<String>>, GraphResponse> {
    let Some(sel) = util::get(q, "$select") else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for s in sel.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match PROPERTIES.iter().find(|p| p.eq_ignore_ascii_case(s)) {
            Some(p) => out.push((*p).to_owned()),
            None => {
                return Err(ctx.error(
                    400,
                    "RequestBroker--ParseUri",
                    &format!(
                        "Could not find a property named '{s}' on type 'microsoft.graph.message'."
                    ),
                ));
            }
        }
    }
    Ok(Some(out))
}

pub fn parse_expand(ctx: &Ctx, q: &[(String, String)]) -> Result<bool, GraphResponse> {
    match util::get(q, "$expand") {
        None => Ok(false),
        Some(e) if e.trim().eq_ignore_ascii_case("attachments") => Ok(true),
        Some(e) => Err(ctx.error(
            400,
            "RequestBroker--ParseUri",
            &format!("Could not find a property named '{e}' on type 'microsoft.graph.message'."),
        )),
    }
}

/// One `$filter` clause.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Clause {
    pub prop: String,
    pub op: String,
    pub value: String,
}

pub fn parse_filter(ctx: &Ctx, f: &str) -> Result<Vec<Clause>, GraphResponse> {
    let bad = |m: &str| ctx.error(400, "BadRequest", &format!("Invalid filter clause: {m}"));
    let mut out = Vec::new();
    for part in split_and(f) {
        let toks: Vec<&str> = part.split_whitespace().collect();
        let [prop, op, value] = toks.as_slice() else {
            return Err(bad(&format!("'{part}' is not a supported comparison.")));
        };
        let prop = match ["isRead", "receivedDateTime", "hasAttachments", "importance"]
            .iter()
            .find(|p| p.eq_ignore_ascii_case(prop))
        {
            Some(p) => (*p).to_owned(),
            None => {
                return Err(ctx.error(
                    400,
                    "RequestBroker--ParseUri",
                    &format!("Could not find a property named '{prop}' on type 'microsoft.graph.message'."),
                ));
            }
        };
        let op = op.to_ascii_lowercase();
        if !["eq", "ne", "ge", "gt", "le", "lt"].contains(&op.as_str()) {
            return Err(bad(&format!("operator '{op}' is not supported.")));
        }
        let value = value.trim_matches('\'').to_owned();
        match prop.as_str() {
            "isRead" | "hasAttachments" => {
                if value != "true" && value != "false" {
                    return Err(bad(&format!("'{value}' is not a boolean.")));
                }
                if op != "eq" && op != "ne" {
                    return Err(bad(&format!("operator '{op}' is not valid for a boolean.")));
                }
            }
            "receivedDateTime" if DateTime::parse_from_rfc3339(&value).is_err() => {
                return Err(bad(&format!("'{value}' is not a valid DateTimeOffset.")));
            }
            _ => {}
        }
        out.push(Clause { prop, op, value });
    }
    if out.is_empty() {
        return Err(bad("the filter is empty."));
    }
    Ok(out)
}

fn split_and(f: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = Vec::new();
    for tok in f.split_whitespace() {
        if tok.eq_ignore_ascii_case("and") {
            parts.push(cur.join(" "));
            cur.clear();
        } else {
            cur.push(tok);
        }
    }
    parts.push(cur.join(" "));
    parts
}

pub fn clause_matches(c: &Clause, m: &Message) -> bool {
    use std::cmp::Ordering as O;
    let ord = match c.prop.as_str() {
        "isRead" => m.is_read.cmp(&(c.value == "true")),
        "hasAttachments" => (!m.attachments.is_empty()).cmp(&(c.value == "true")),
        "importance" => m.importance.as_str().cmp(c.value.as_str()),
        "receivedDateTime" => match DateTime::parse_from_rfc3339(&c.value) {
            Ok(t) => m
                .received
                .timestamp()
                .cmp(&t.with_timezone(&Utc).timestamp()),
            Err(_) => return false,
        },
        _ => return false,
    };
    match c.op.as_str() {
        "eq" => ord == O::Equal,
        "ne" => ord != O::Equal,
        "ge" => ord != O::Less,
        "gt" => ord == O::Greater,
        "le" => ord != O::Greater,
        "lt" => ord == O::Less,
        _ => false,
    }
}

pub fn link(origin: &str, path: &str, pairs: &[(String, String)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY_VALUE)))
        .collect();
    format!("{origin}/v1.0{path}?{}", q.join("&"))
}
