//! Messages of a mailbox: list a folder (or all mail) with filters, order, `$top`/`$skip` paging and
//! `$count`; get one message; `PATCH` `isRead` and `importance` (200 with the message).

use serde_json::{Map, Value};

use super::odata::{
    DEFAULT_TOP, MAX_TOP, Prefs, clause_matches, link, parse_expand, parse_filter, parse_select,
};
use super::render::{View, context_url, message_json};
use super::response::{Ctx, GraphRequest, GraphResponse};
use crate::sim::state::{Mailbox, Message, SimState, parse_message_id};
use crate::sim::util;

/// Well-known folder names; messages may also be delivered to any other folder name.
const WELL_KNOWN: &[&str] = &[
    "inbox",
    "drafts",
    "sentitems",
    "deleteditems",
    "junkemail",
    "archive",
    "outbox",
    "msgfolderroot",
];

pub fn folder_known(mailbox: &Mailbox, folder: &str) -> bool {
    WELL_KNOWN.contains(&folder)
        || mailbox
            .data
            .lock()
            .messages
            .iter()
            .any(|m| m.folder == folder)
}

pub fn list(
    state: &SimState,
    ctx: &Ctx,
    req: &GraphRequest<'_>,
    mailbox: &Mailbox,
    folder: Option<&str>,
    q: &[(String, String)],
    p: &Prefs,
) -> GraphResponse {
    let _ = state;
    if let Some(f) = folder
        && !folder_known(mailbox, f)
    {
        return ctx.error(
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        );
    }
    let select = match parse_select(ctx, q) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let expand = match parse_expand(ctx, q) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let top = match util::get(q, "$top") {
        None => DEFAULT_TOP,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=MAX_TOP).contains(&n) => n,
            _ => {
                return ctx.error(
                    400,
                    "ErrorInvalidArgument",
                    &format!("The value '{t}' of the parameter '$top' is invalid: it must be an integer between 1 and {MAX_TOP}."),
                );
            }
        },
    };
    let skip = match util::get(q, "$skip").map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return ctx.error(
                400,
                "BadRequest",
                "The value of the parameter '$skip' is invalid.",
            );
        }
    };
    let filter = match util::get(q, "$filter") {
        None => Vec::new(),
        Some(f) => match parse_filter(ctx, f) {
            Ok(c) => c,
            Err(r) => return r,
        },
    };
    let order = match util::get(q, "$orderby") {
        None => None,
        Some(o) => {
            let mut it = o.split_whitespace();
            let prop = it.next().unwrap_or("");
            let dir = it.next().unwrap_or("asc").to_ascii_lowercase();
            if !prop.eq_ignore_ascii_case("receivedDateTime") || (dir != "asc" && dir != "desc") {
                return ctx.error(
                    400,
                    "BadRequest",
                    &format!("The $orderby expression '{o}' is not supported."),
                );
            }
            if !filter.is_empty() && filter.first().is_none_or(|c| c.prop != "receivedDateTime") {
                return ctx.error(
                    400,
                    "InefficientFilter",
                    "The restriction or sort order is too complex for this operation.",
                );
            }
            Some(dir == "desc")
        }
    };
    let count = util::get(q, "$count").is_some_and(|c| c.eq_ignore_ascii_case("true"));
    let view = View {
        select: select.clone(),
        immutable: p.immutable,
        text_body: p.text_body.unwrap_or(false),
        expand_attachments: expand,
        always_type: false,
        mailbox,
    };
    let (page, total) = {
        let data = mailbox.data.lock();
        let mut hits: Vec<&Message> = data
            .messages
            .iter()
            .filter(|m| !m.deleted && folder.is_none_or(|f| m.folder == f))
            .filter(|m| filter.iter().all(|c| clause_matches(c, m)))
            .collect();
        let desc = order.unwrap_or(true);
        hits.sort_by(|a, b| {
            let o = a.received.cmp(&b.received).then(a.seq.cmp(&b.seq));
            if desc { o.reverse() } else { o }
        });
        let total = hits.len();
        let page: Vec<Value> = hits
            .iter()
            .skip(skip)
            .take(top)
            .map(|m| message_json(m, &view))
            .collect();
        (page, total)
    };
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        context_url(req.origin, &mailbox.address, folder, &select).into(),
    );
    if count {
        body.insert("@odata.count".into(), total.into());
    }
    body.insert("value".into(), Value::Array(page));
    if skip + top < total {
        let mut pairs: Vec<(String, String)> =
            q.iter().filter(|(k, _)| k != "$skip").cloned().collect();
        pairs.push(("$skip".into(), (skip + top).to_string()));
        body.insert(
            "@odata.nextLink".into(),
            link(req.origin, req.path, &pairs).into(),
        );
    }
    ctx.ok(Value::Object(body), p.applied(false))
}

pub fn locate(ctx: &Ctx, mailbox: &Mailbox, id: &str) -> Result<u64, GraphResponse> {
    match parse_message_id(id) {
        None => Err(ctx.error(400, "ErrorInvalidIdMalformed", "Id is malformed.")),
        Some((tag, seq)) if tag == mailbox.tag => Ok(seq),
        Some(_) => Err(ctx.error(
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        )),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn get_message(
    state: &SimState,
    ctx: &Ctx,
    req: &GraphRequest<'_>,
    mailbox: &Mailbox,
    folder: Option<&str>,
    id: &str,
    q: &[(String, String)],
    p: &Prefs,
) -> GraphResponse {
    let _ = state;
    let seq = match locate(ctx, mailbox, id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let select = match parse_select(ctx, q) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let expand = match parse_expand(ctx, q) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let view = View {
        select: select.clone(),
        immutable: p.immutable,
        text_body: p.text_body.unwrap_or(false),
        expand_attachments: expand,
        always_type: false,
        mailbox,
    };
    let mut data = mailbox.data.lock();
    let Some(m) = data
        .find_mut(seq)
        .filter(|m| folder.is_none_or(|f| m.folder == f))
    else {
        return ctx.error(
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        );
    };
    let mut v = message_json(m, &view);
    drop(data);
    if let Some(o) = v.as_object_mut() {
        let sel = select
            .as_ref()
            .map(|s| format!("({})", s.join(",")))
            .unwrap_or_default();
        o.insert(
            "@odata.context".into(),
            format!(
                "{}/v1.0/$metadata#users('{}')/messages{sel}/$entity",
                req.origin, mailbox.address
            )
            .into(),
        );
    }
    ctx.ok(v, p.applied(false))
}

pub fn patch(
    state: &SimState,
    ctx: &Ctx,
    req: &GraphRequest<'_>,
    mailbox: &Mailbox,
    folder: Option<&str>,
    id: &str,
    p: &Prefs,
) -> GraphResponse {
    let _ = state;
    let seq = match locate(ctx, mailbox, id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(Value::Object(changes)) = serde_json::from_slice::<Value>(req.body) else {
        return ctx.error(
            400,
            "BadRequest",
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
        );
    };
    let mut is_read = None;
    let mut importance = None;
    for (k, v) in &changes {
        match (k.as_str(), v) {
            ("isRead", Value::Bool(b)) => is_read = Some(*b),
            ("importance", Value::String(s))
                if ["low", "normal", "high"].contains(&s.to_ascii_lowercase().as_str()) =>
            {
                importance = Some(s.to_ascii_lowercase());
            }
            ("isRead", _) | ("importance", _) => {
                return ctx.error(
                    400,
                    "ErrorInvalidProperty",
                    &format!("The value of property '{k}' is invalid."),
                );
            }
            ("categories", _) | ("flag", _) | ("inferenceClassification", _) => {}
            _ => {
                return ctx.error(
                    400,
                    "ErrorInvalidPropertyUpdateSentMessage",
                    &format!("Update operation is invalid for property '{k}' of this message."),
                );
            }
        }
    }
    let view = View {
        select: None,
        immutable: p.immutable,
        text_body: p.text_body.unwrap_or(false),
        expand_attachments: false,
        always_type: false,
        mailbox,
    };
    let mut data = mailbox.data.lock();
    data.version += 1;
    let version = data.version;
    let Some(m) = data
        .find_mut(seq)
        .filter(|m| folder.is_none_or(|f| m.folder == f))
    else {
        return ctx.error(
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        );
    };
    if let Some(r) = is_read {
        m.is_read = r;
    }
    if let Some(i) = importance {
        m.importance = i;
    }
    m.changed_version = version;
    let mut v = message_json(m, &view);
    drop(data);
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "@odata.context".into(),
            format!(
                "{}/v1.0/$metadata#users('{}')/messages/$entity",
                req.origin, mailbox.address
            )
            .into(),
        );
    }
    ctx.ok(v, p.applied(false))
}
