//! Graph paths the simulator serves: `/users/{mailbox}/…` (also `users('…')`) and `/me/…`, with
//! `messages`, `mailFolders/{f}/messages` (also `mailfolders`, `mailFolders('Inbox')`), delta, one
//! message and its attachments; and the counter endpoint each one is.

use crate::sim::counters::Endpoint;

/// Parsed route of a Graph path.
pub enum Route {
    List { folder: Option<String> },
    Delta { folder: String },
    Message { folder: Option<String>, id: String },
    Attachments { id: String },
}

fn folder_segment(seg: &str) -> Option<String> {
    let lower = seg.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("mailfolders(") {
        let inner = seg.get(12..seg.len().saturating_sub(1))?;
        let _ = rest;
        return Some(inner.trim_matches('\'').to_ascii_lowercase());
    }
    None
}

/// Splits `/users/{m}/…` into (mailbox or None for `/me`, route).
pub fn route(path: &str) -> Option<(Option<String>, Route)> {
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let (mailbox, rest): (Option<String>, &[String]) =
        match segs.first().map(|s| s.to_ascii_lowercase()).as_deref() {
            Some("me") => (None, segs.get(1..)?),
            Some("users") => (Some(segs.get(1)?.to_ascii_lowercase()), segs.get(2..)?),
            Some(s) if s.starts_with("users(") => {
                let inner = segs
                    .first()?
                    .get(6..segs.first()?.len().saturating_sub(1))?;
                (
                    Some(inner.trim_matches('\'').to_ascii_lowercase()),
                    segs.get(1..)?,
                )
            }
            _ => return None,
        };
    let lower: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let r = match l.as_slice() {
        ["messages"] => Route::List { folder: None },
        ["messages", _] => Route::Message {
            folder: None,
            id: rest.get(1)?.clone(),
        },
        ["messages", _, "attachments"] => Route::Attachments {
            id: rest.get(1)?.clone(),
        },
        ["mailfolders", f, "messages"] => Route::List {
            folder: Some((*f).to_owned()),
        },
        ["mailfolders", f, "messages", "delta"] => Route::Delta {
            folder: (*f).to_owned(),
        },
        ["mailfolders", f, "messages", _] => Route::Message {
            folder: Some((*f).to_owned()),
            id: rest.get(3)?.clone(),
        },
        [f, "messages"] if folder_segment(f).is_some() => Route::List {
            folder: folder_segment(f),
        },
        [f, "messages", "delta"] if folder_segment(f).is_some() => Route::Delta {
            folder: folder_segment(f)?,
        },
        [f, "messages", _] if folder_segment(f).is_some() => Route::Message {
            folder: folder_segment(f),
            id: rest.get(2)?.clone(),
        },
        _ => return None,
    };
    Some((mailbox, r))
}

pub fn endpoint_of(r: &Route, method: &str) -> Endpoint {
    match (r, method) {
        (Route::List { .. }, _) => Endpoint::ListMessages,
        (Route::Delta { .. }, _) => Endpoint::Delta,
        (Route::Message { .. }, "PATCH") => Endpoint::PatchMessage,
        (Route::Message { .. }, _) => Endpoint::GetMessage,
        (Route::Attachments { .. }, _) => Endpoint::ListAttachments,
    }
}
