//! Mail as the control API handles it: shared mailboxes, delivery of generated and explicit messages,
//! a mailbox's state, changes and deletions as its user would make them, and delta-token expiry.

use actix_web::web::{Path, Payload};
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{St, default_true, err, parse};
use crate::sim::mailgen::{self, GenOptions};
use crate::sim::state::{
    Address, Attachment, Meeting, Message, SimState, message_id, parse_message_id,
};
use crate::sim::util;

#[derive(Deserialize)]
struct MailboxIn {
    address: String,
}

pub async fn add_mailbox(state: St, req: HttpRequest, payload: Payload) -> HttpResponse {
    let m: MailboxIn = body!(state, req, payload);
    if !m.address.contains('@') {
        return err(400, "BadRequest", "address must be a mail address");
    }
    let mbx = state.ensure_mailbox(&m.address);
    HttpResponse::Created().json(json!({"address": mbx.address}))
}

pub async fn mailbox_state(state: St, addr: Path<String>) -> HttpResponse {
    let Some(mbx) = state.mailbox(&addr) else {
        return err(404, "NotFound", &format!("mailbox {addr} does not exist"));
    };
    let data = mbx.data.lock();
    let live: Vec<&Message> = data.messages.iter().filter(|m| !m.deleted).collect();
    let unread = live.iter().filter(|m| !m.is_read).count();
    let messages: Vec<Value> = live
        .iter()
        .map(|m| {
            json!({
                "id": message_id(mbx.tag, m.seq, false),
                "immutable_id": message_id(mbx.tag, m.seq, true),
                "is_read": m.is_read,
                "folder": m.folder,
                "subject": m.subject,
                "internet_message_id": m.internet_message_id,
                "received_date_time": util::graph_datetime(m.received),
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "address": mbx.address,
        "total": live.len(),
        "unread": unread,
        "read": live.len() - unread,
        "messages": messages,
    }))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AddrIn {
    Plain(String),
    Full(Address),
}

impl AddrIn {
    fn into_address(self) -> Address {
        match self {
            AddrIn::Plain(s) => Address {
                name: s.split('@').next().unwrap_or(&s).to_owned(),
                address: s,
            },
            AddrIn::Full(a) => a,
        }
    }
}

#[derive(Deserialize)]
struct MessageIn {
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    from: Option<AddrIn>,
    #[serde(default)]
    to: Vec<AddrIn>,
    #[serde(default)]
    cc: Vec<AddrIn>,
    #[serde(default)]
    body_html: Option<String>,
    #[serde(default)]
    body_text: Option<String>,
    #[serde(default)]
    attachments: Vec<Attachment>,
    #[serde(default)]
    internet_message_id: Option<String>,
    #[serde(default)]
    conversation_id: Option<String>,
    #[serde(default)]
    received_date_time: Option<DateTime<Utc>>,
    #[serde(default)]
    is_read: bool,
    #[serde(default)]
    folder: Option<String>,
    #[serde(default)]
    meeting: Option<Meeting>,
    #[serde(default)]
    importance: Option<String>,
}

#[derive(Deserialize)]
struct DeliverIn {
    #[serde(default)]
    messages: Vec<MessageIn>,
    #[serde(default)]
    count: usize,
    #[serde(default)]
    meeting_requests: bool,
    #[serde(default = "default_true")]
    attachments: bool,
    #[serde(default = "default_true")]
    unread: bool,
    #[serde(default)]
    folder: Option<String>,
}

fn explicit(m: MessageIn, mailbox: &str, now: DateTime<Utc>) -> Message {
    let mut base = mailgen::generate(
        mailbox,
        1,
        now,
        "inbox",
        GenOptions {
            meeting_requests: false,
            attachments: false,
            unread: true,
        },
    );
    if let Some(s) = m.subject {
        base.subject = s;
    }
    if let Some(f) = m.from {
        base.from = f.into_address();
    }
    if !m.to.is_empty() {
        base.to = m.to.into_iter().map(AddrIn::into_address).collect();
    }
    base.cc = m.cc.into_iter().map(AddrIn::into_address).collect();
    match (m.body_html, m.body_text) {
        (Some(h), Some(t)) => {
            base.body_html = h;
            base.body_text = t;
        }
        (Some(h), None) => {
            base.body_text = h.clone();
            base.body_html = h;
        }
        (None, Some(t)) => {
            base.body_html = format!(
                "<html><body><p>{}</p></body></html>",
                t.replace('<', "&lt;")
            );
            base.body_text = t;
        }
        (None, None) => {}
    }
    base.attachments = m
        .attachments
        .into_iter()
        .map(|mut a| {
            if a.size == 0 {
                a.size = (a.content_bytes.len() as u64 * 3) / 4;
            }
            a
        })
        .collect();
    if let Some(i) = m.internet_message_id {
        base.internet_message_id = i;
    }
    if let Some(c) = m.conversation_id {
        base.conversation_id = c;
    }
    // A message delivered now was received now unless the caller says otherwise: the generator's
    // few seconds of jitter would put it before a channel authorized a moment earlier.
    base.received = m.received_date_time.unwrap_or(now);
    base.last_modified = base.received.max(now);
    base.is_read = m.is_read;
    if let Some(f) = m.folder {
        base.folder = f.to_ascii_lowercase();
    }
    base.meeting = m.meeting;
    if let Some(i) = m.importance {
        base.importance = i;
    }
    base
}

pub async fn deliver(
    state: St,
    req: HttpRequest,
    addr: Path<String>,
    payload: Payload,
) -> HttpResponse {
    let d: DeliverIn = body!(state, req, payload);
    let Some(mbx) = state.mailbox(&addr) else {
        return err(
            404,
            "NotFound",
            &format!("mailbox {addr} does not exist; register its user or POST /_sim/mailboxes"),
        );
    };
    let now = state.now();
    let folder = d
        .folder
        .clone()
        .unwrap_or_else(|| "inbox".into())
        .to_ascii_lowercase();
    let mut new: Vec<Message> = d
        .messages
        .into_iter()
        .map(|m| explicit(m, &mbx.address, now))
        .collect();
    let opts = GenOptions {
        meeting_requests: d.meeting_requests,
        attachments: d.attachments,
        unread: d.unread,
    };
    for i in 0..d.count {
        new.push(mailgen::generate(
            &mbx.address,
            i as u64,
            now,
            &folder,
            opts,
        ));
    }
    let mut ids = Vec::with_capacity(new.len());
    let mut immutable = Vec::with_capacity(new.len());
    {
        let mut data = mbx.data.lock();
        data.messages.reserve(new.len());
        for mut m in new {
            data.version += 1;
            m.seq = state.next_seq();
            m.changed_version = data.version;
            m.created_version = data.version;
            m.uid = data.assign_uid(mbx.tag, &m.folder);
            ids.push(message_id(mbx.tag, m.seq, false));
            immutable.push(message_id(mbx.tag, m.seq, true));
            data.messages.push(m);
        }
    }
    HttpResponse::Created()
        .json(json!({"count": ids.len(), "ids": ids, "immutable_ids": immutable}))
}

fn with_message(
    state: &SimState,
    addr: &str,
    id: &str,
    f: impl FnOnce(&mut Message, u64),
) -> HttpResponse {
    let Some(mbx) = state.mailbox(addr) else {
        return err(404, "NotFound", &format!("mailbox {addr} does not exist"));
    };
    let Some((tag, seq)) = parse_message_id(id).filter(|(t, _)| *t == mbx.tag) else {
        return err(
            404,
            "NotFound",
            &format!("message {id} is not in mailbox {addr}"),
        );
    };
    let _ = tag;
    let now = state.now();
    let mut data = mbx.data.lock();
    let version = data.version + 1;
    let Some(m) = data.find_mut(seq) else {
        return err(
            404,
            "NotFound",
            &format!("message {id} is not in mailbox {addr}"),
        );
    };
    let folder_before = m.folder.clone();
    f(m, version);
    m.last_modified = now;
    let moved_to = (m.folder != folder_before && !m.deleted).then(|| m.folder.clone());
    if let Some(folder) = moved_to {
        // A move is a new message in the other folder for IMAP: it gets that folder's next UID.
        let uid = data.assign_uid(mbx.tag, &folder);
        if let Some(m) = data.find_mut(seq) {
            m.uid = uid;
        }
    }
    data.version = version;
    HttpResponse::Ok().json(json!({"id": id, "version": version}))
}

pub async fn delete_message(state: St, path: Path<(String, String)>) -> HttpResponse {
    let (addr, id) = path.into_inner();
    with_message(&state, &addr, &id, |m, v| {
        m.deleted = true;
        m.changed_version = v;
        m.body_html = String::new();
        m.body_text = String::new();
        m.attachments = Vec::new();
    })
}

#[derive(Deserialize)]
struct MessagePatch {
    #[serde(default)]
    is_read: Option<bool>,
    #[serde(default)]
    folder: Option<String>,
}

pub async fn update_message(
    state: St,
    req: HttpRequest,
    path: Path<(String, String)>,
    payload: Payload,
) -> HttpResponse {
    let p: MessagePatch = body!(state, req, payload);
    let (addr, id) = path.into_inner();
    with_message(&state, &addr, &id, |m, v| {
        if let Some(r) = p.is_read {
            m.is_read = r;
        }
        if let Some(f) = p.folder.map(|f| f.to_ascii_lowercase())
            && f != m.folder
        {
            let from = std::mem::replace(&mut m.folder, f);
            m.left.push((from, v));
        }
        m.changed_version = v;
    })
}

pub async fn expire_delta(state: St, addr: Path<String>) -> HttpResponse {
    let Some(mbx) = state.mailbox(&addr) else {
        return err(404, "NotFound", &format!("mailbox {addr} does not exist"));
    };
    let mut data = mbx.data.lock();
    data.version += 1;
    data.delta_floor = data.version;
    HttpResponse::Ok().json(json!({"address": mbx.address, "delta_floor": data.delta_floor}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImapSwitch {
    enabled: bool,
}

/// `PUT /_sim/mailboxes/{addr}/imap {"enabled"}`: switches IMAP for the mailbox, as
/// `Set-CASMailbox -ImapEnabled` does; a disabled mailbox answers `NO AUTHENTICATE failed.`
pub async fn set_imap(
    state: St,
    req: HttpRequest,
    addr: Path<String>,
    payload: Payload,
) -> HttpResponse {
    let s: ImapSwitch = body!(state, req, payload);
    let Some(mbx) = state.mailbox(&addr) else {
        return err(404, "NotFound", &format!("mailbox {addr} does not exist"));
    };
    mbx.data.lock().imap_disabled = !s.enabled;
    HttpResponse::Ok().json(json!({"address": mbx.address, "imap_enabled": s.enabled}))
}

/// `POST /_sim/mailboxes/{addr}/folders/{folder}/uidvalidity`: the folder (its key: `inbox`,
/// `sentitems`, … or a custom folder's name) gets a new UIDVALIDITY and its messages new UIDs.
pub async fn bump_uid_validity(state: St, path: Path<(String, String)>) -> HttpResponse {
    let (addr, folder) = path.into_inner();
    let Some(mbx) = state.mailbox(&addr) else {
        return err(404, "NotFound", &format!("mailbox {addr} does not exist"));
    };
    let folder = folder.to_ascii_lowercase();
    let uids = mbx.data.lock().bump_uid_validity(mbx.tag, &folder);
    HttpResponse::Ok().json(json!({
        "address": mbx.address,
        "folder": folder,
        "uid_validity": uids.validity,
        "uid_next": uids.next,
    }))
}
