//! Messages of a mailbox: list a folder (or all mail) with filters, order, `$top`/`$skip` paging and
//! `$count`; get one message; `PATCH` of every property Graph lets a client change on a received
//! message (200 with the message, a new `lastModifiedDateTime` and change key).

use serde_json::{Map, Value};

use super::odata::{
    DEFAULT_TOP, MAX_TOP, Prefs, clause_matches, is_property, link, parse_expand, parse_filter,
    parse_select,
};
use super::render::{View, context_url, message_json};
use super::response::{Ctx, GraphRequest, GraphResponse};
use crate::sim::state::{Address, Mailbox, Message, SimState, parse_message_id};
use crate::sim::util;

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
    let mut edits = Vec::with_capacity(changes.len());
    for (k, v) in &changes {
        match parse_edit(k, v) {
            Ok(Some(e)) => edits.push(e),
            Ok(None) => {}
            Err(Refusal::Invalid) => {
                return ctx.error(
                    400,
                    "ErrorInvalidProperty",
                    &format!("The value of property '{k}' is invalid."),
                );
            }
            Err(Refusal::DraftOnly) => {
                return ctx.error(400, "ErrorInvalidPropertySet", "Message is not draft.");
            }
            Err(Refusal::ReadOnly) => {
                return ctx.error(
                    400,
                    "ErrorInvalidPropertySet",
                    "Set action is invalid for property.",
                );
            }
            Err(Refusal::Unknown) => {
                return ctx.error(
                    400,
                    "RequestBodyRead",
                    &format!("The property '{k}' does not exist on type 'microsoft.graph.message'. Make sure to only use property names that are defined by the type or mark the type as open type."),
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
    for e in edits {
        e.apply(m);
    }
    m.changed_version = version;
    m.last_modified = ctx.now;
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

/// One accepted change of a PATCH.
enum Edit {
    IsRead(bool),
    Importance(String),
    Categories(Vec<String>),
    Flag(Value),
    Inference(String),
    DeliveryReceipt(bool),
    ReadReceipt(bool),
    To(Vec<Address>),
    Cc(Vec<Address>),
    Bcc(Vec<Address>),
}

impl Edit {
    fn apply(self, m: &mut Message) {
        match self {
            Edit::IsRead(b) => m.is_read = b,
            Edit::Importance(i) => m.importance = i,
            Edit::Categories(c) => m.categories = c,
            Edit::Flag(f) => m.flag = Some(f),
            Edit::Inference(i) => m.inference_classification = i,
            Edit::DeliveryReceipt(b) => m.is_delivery_receipt_requested = b,
            Edit::ReadReceipt(b) => m.is_read_receipt_requested = b,
            Edit::To(a) => m.to = a,
            Edit::Cc(a) => m.cc = a,
            Edit::Bcc(a) => m.bcc = a,
        }
    }
}

/// Why a PATCH property is refused.
enum Refusal {
    /// A writable property with a value of the wrong shape.
    Invalid,
    /// Writable only while the message is a draft (the simulator's mail is received mail).
    DraftOnly,
    /// A property of `microsoft.graph.message` no client can set.
    ReadOnly,
    /// Not a property of `microsoft.graph.message`.
    Unknown,
}

/// Properties writable only on drafts ("Update message": body, internetMessageId, replyTo, subject;
/// from and sender must be the mailbox's own and are refused on received mail).
const DRAFT_ONLY: &[&str] = &[
    "body",
    "internetMessageId",
    "replyTo",
    "subject",
    "from",
    "sender",
];

/// Reads one property of a PATCH body; `Ok(None)` for what is accepted without a visible effect
/// (OData annotations, extended properties).
fn parse_edit(k: &str, v: &Value) -> Result<Option<Edit>, Refusal> {
    let bool_of = |v: &Value| v.as_bool().ok_or(Refusal::Invalid);
    let edit = match k {
        "isRead" => Edit::IsRead(bool_of(v)?),
        "isDeliveryReceiptRequested" => Edit::DeliveryReceipt(bool_of(v)?),
        "isReadReceiptRequested" => Edit::ReadReceipt(bool_of(v)?),
        "importance" => {
            let s = v.as_str().map(str::to_ascii_lowercase);
            match s.as_deref() {
                Some(i @ ("low" | "normal" | "high")) => Edit::Importance(i.to_owned()),
                _ => return Err(Refusal::Invalid),
            }
        }
        "inferenceClassification" => {
            let s = v.as_str().map(str::to_ascii_lowercase);
            match s.as_deref() {
                Some(i @ ("focused" | "other")) => Edit::Inference(i.to_owned()),
                _ => return Err(Refusal::Invalid),
            }
        }
        "categories" => {
            let Some(list) = v.as_array() else {
                return Err(Refusal::Invalid);
            };
            let cats: Option<Vec<String>> =
                list.iter().map(|c| c.as_str().map(str::to_owned)).collect();
            Edit::Categories(cats.ok_or(Refusal::Invalid)?)
        }
        "flag" => Edit::Flag(flag(v).ok_or(Refusal::Invalid)?),
        "toRecipients" => Edit::To(recipients(v).ok_or(Refusal::Invalid)?),
        "ccRecipients" => Edit::Cc(recipients(v).ok_or(Refusal::Invalid)?),
        "bccRecipients" => Edit::Bcc(recipients(v).ok_or(Refusal::Invalid)?),
        "singleValueExtendedProperties" | "multiValueExtendedProperties" => return Ok(None),
        _ if k.starts_with('@') || k.contains("@odata.") => return Ok(None),
        _ if DRAFT_ONLY.contains(&k) => return Err(Refusal::DraftOnly),
        _ if is_property(k) => return Err(Refusal::ReadOnly),
        _ => return Err(Refusal::Unknown),
    };
    Ok(Some(edit))
}

/// A `followupFlag`: `flagStatus` (`notFlagged`, `flagged`, `complete`) and optional
/// `startDateTime`, `dueDateTime`, `completedDateTime` (`dateTimeTimeZone`).
fn flag(v: &Value) -> Option<Value> {
    let o = v.as_object()?;
    let status = match o.get("flagStatus") {
        None => "notFlagged",
        Some(s) => ["notFlagged", "flagged", "complete"]
            .into_iter()
            .find(|k| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(k)))?,
    };
    let mut out = Map::new();
    out.insert("flagStatus".into(), status.into());
    for key in ["startDateTime", "dueDateTime", "completedDateTime"] {
        match o.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(d)) if d.get("dateTime").is_some_and(Value::is_string) => {
                out.insert(key.into(), Value::Object(d.clone()));
            }
            Some(_) => return None,
        }
    }
    if o.keys().any(|k| {
        ![
            "flagStatus",
            "startDateTime",
            "dueDateTime",
            "completedDateTime",
        ]
        .contains(&k.as_str())
            && !k.starts_with('@')
    }) {
        return None;
    }
    Some(Value::Object(out))
}

/// A `recipient` collection: `[{"emailAddress": {"name"?, "address"}}]`.
fn recipients(v: &Value) -> Option<Vec<Address>> {
    v.as_array()?
        .iter()
        .map(|r| {
            let e = r.get("emailAddress")?;
            let address = e.get("address")?.as_str()?.to_owned();
            let name = e
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&address)
                .to_owned();
            Some(Address { name, address })
        })
        .collect()
}
