//! The folder delta query: rounds of `@odata.nextLink` pages (`$skiptoken`) ending in an
//! `@odata.deltaLink` (`$deltatoken`), `@removed` entries (deleted, or moved out of the folder),
//! `changeType`, the delta's own `$select`, `$filter` and `$orderby` (given on the first request, then
//! carried by the links), `Prefer: odata.maxpagesize`, and 410 `syncStateNotFound` for expired or
//! foreign tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::odata::{
    Clause, DEFAULT_TOP, MAX_TOP, Prefs, clause_matches, link, parse_filter, parse_select,
};
use super::render::{View, message_json};
use super::response::{Ctx, GraphRequest, GraphResponse};
use crate::sim::state::{Mailbox, Message, SimState, message_id};
use crate::sim::util;

/// The state a delta link carries.
#[derive(Debug, Serialize, Deserialize)]
struct DeltaToken {
    /// Mailbox tag.
    t: u32,
    /// Folder.
    f: String,
    /// Changes after this version are in the round.
    s: u64,
    /// Round upper bound (skip tokens only).
    #[serde(default)]
    v: u64,
    /// Position in the round (skip tokens only): the sequence number of the last message handed
    /// out, or the offset in a `receivedDateTime desc` round.
    #[serde(default)]
    o: usize,
    #[serde(default)]
    sel: Option<Vec<String>>,
    #[serde(default)]
    flt: Vec<Clause>,
    #[serde(default)]
    ct: Option<String>,
    #[serde(default)]
    desc: bool,
}

fn encode_token(t: &DeltaToken) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(t).unwrap_or_default())
}

fn decode_token(s: &str) -> Option<DeltaToken> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).ok()?).ok()
}

pub fn delta(
    state: &SimState,
    ctx: &Ctx,
    req: &GraphRequest<'_>,
    mailbox: &Mailbox,
    folder: &str,
    q: &[(String, String)],
    p: &Prefs,
) -> GraphResponse {
    let _ = state;
    let gone = || {
        let mut r = ctx.error(410, "syncStateNotFound", "The sync state generation is no longer valid or was not found. Restart the synchronization without a delta token.");
        r.headers.push((
            "Location".into(),
            format!("{}/v1.0{}", req.origin, req.path),
        ));
        r
    };
    let skip = util::get(q, "$skiptoken");
    let dtok = util::get(q, "$deltatoken");
    let page_size = p
        .max_page
        .or_else(|| util::get(q, "$top").and_then(|t| t.parse().ok()))
        .unwrap_or(DEFAULT_TOP)
        .clamp(1, MAX_TOP);
    let token = match (skip, dtok) {
        (Some(t), _) | (None, Some(t)) => match decode_token(t) {
            Some(tok) if tok.t == mailbox.tag && tok.f == folder => {
                // A token issued before the mailbox's sync state expired is gone: a delta token by
                // the version it starts from, a skip token by the version its round started at (a
                // round started afresh after the expiry pages on).
                let issued_at = if skip.is_some() { tok.v } else { tok.s };
                if issued_at < mailbox.data.lock().delta_floor {
                    return gone();
                }
                tok
            }
            _ => return gone(),
        },
        (None, None) => {
            let sel = match parse_select(ctx, q) {
                Ok(s) => s,
                Err(r) => return r,
            };
            let flt = match util::get(q, "$filter") {
                None => Vec::new(),
                Some(f) => match parse_filter(ctx, f) {
                    Ok(c)
                        if c.iter().all(|c| {
                            c.prop == "receivedDateTime" && (c.op == "ge" || c.op == "gt")
                        }) =>
                    {
                        c
                    }
                    Ok(_) => {
                        return ctx.error(400, "BadRequest", "Delta queries on messages support only $filter=receivedDateTime ge|gt {value}.");
                    }
                    Err(r) => return r,
                },
            };
            let desc = match util::get(q, "$orderby") {
                None => false,
                Some(o)
                    if o.split_whitespace().collect::<Vec<_>>() == ["receivedDateTime", "desc"] =>
                {
                    true
                }
                Some(_) => {
                    return ctx.error(
                        400,
                        "BadRequest",
                        "Delta queries on messages support only $orderby=receivedDateTime desc.",
                    );
                }
            };
            let ct = util::get(q, "changeType").map(str::to_ascii_lowercase);
            if ct
                .as_deref()
                .is_some_and(|c| !["created", "updated", "deleted"].contains(&c))
            {
                return ctx.error(
                    400,
                    "BadRequest",
                    "changeType must be created, updated or deleted.",
                );
            }
            DeltaToken {
                t: mailbox.tag,
                f: folder.to_owned(),
                s: 0,
                v: 0,
                o: 0,
                sel,
                flt,
                ct,
                desc,
            }
        }
    };
    let view = View {
        select: token.sel.clone(),
        immutable: p.immutable,
        text_body: p.text_body.unwrap_or(false),
        expand_attachments: false,
        always_type: true,
        mailbox,
    };
    let data = mailbox.data.lock();
    let round_v = if skip.is_some() {
        token.v
    } else {
        data.version
    };
    let since = token.s;
    // (message, whether the round reports it as removed): deleted here, or moved out of the folder
    // after the client's last round.
    let mut items: Vec<(&Message, bool)> = data
        .messages
        .iter()
        .filter_map(|m| {
            let in_range = |v: u64| v > since && v <= round_v;
            let seen_before = since > 0 && m.created_version <= since;
            if m.folder == folder {
                if !in_range(m.changed_version) {
                    None
                } else if m.deleted {
                    seen_before.then_some((m, true))
                } else {
                    token
                        .flt
                        .iter()
                        .all(|c| clause_matches(c, m))
                        .then_some((m, false))
                }
            } else {
                let left = m.left.iter().any(|(f, v)| f == folder && in_range(*v));
                (left && seen_before).then_some((m, true))
            }
        })
        .filter(|(m, removed)| match token.ct.as_deref() {
            Some("created") => !removed && m.created_version > since,
            Some("updated") => !removed && m.created_version <= since,
            Some("deleted") => *removed,
            _ => true,
        })
        .collect();
    // A round pages by position: in sequence order, after the last message handed out (so a
    // message changed meanwhile, e.g. marked read by the client, leaves the round without shifting
    // the messages not yet handed out; it comes back in the next round as an update). A round in
    // `receivedDateTime desc` order pages by offset.
    let remaining: Vec<(&Message, bool)> = if token.desc {
        items.sort_by(|(a, _), (b, _)| b.received.cmp(&a.received).then(b.seq.cmp(&a.seq)));
        items.into_iter().skip(token.o).collect()
    } else {
        items.sort_by_key(|(m, _)| m.seq);
        items
            .into_iter()
            .filter(|(m, _)| token.o == 0 || m.seq as usize > token.o)
            .collect()
    };
    let last_seq = remaining
        .get(..page_size.min(remaining.len()))
        .and_then(|page| page.last())
        .map(|(m, _)| m.seq as usize);
    let more = remaining.len() > page_size;
    let page: Vec<Value> = remaining
        .iter()
        .take(page_size)
        .map(|(m, removed)| {
            if *removed {
                json!({
                    "@odata.type": "#microsoft.graph.message",
                    "id": message_id(mailbox.tag, m.seq, p.immutable),
                    "@removed": {"reason": "deleted"},
                })
            } else {
                message_json(m, &view)
            }
        })
        .collect();
    drop(data);
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        format!("{}/v1.0/$metadata#Collection(message)", req.origin).into(),
    );
    body.insert("value".into(), Value::Array(page));
    if more {
        let o = if token.desc {
            token.o + page_size
        } else {
            last_seq.unwrap_or(token.o)
        };
        let next = DeltaToken {
            s: since,
            v: round_v,
            o,
            ..token
        };
        let l = link(
            req.origin,
            req.path,
            &[("$skiptoken".into(), encode_token(&next))],
        );
        body.insert("@odata.nextLink".into(), l.into());
    } else {
        let next = DeltaToken {
            s: round_v,
            v: 0,
            o: 0,
            ..token
        };
        let l = link(
            req.origin,
            req.path,
            &[("$deltatoken".into(), encode_token(&next))],
        );
        body.insert("@odata.deltaLink".into(), l.into());
    }
    ctx.ok(Value::Object(body), p.applied(true))
}
