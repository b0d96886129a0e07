//! Graph paths the simulator serves: `/users/{mailbox}/…` (also `users('…')`) and `/me/…`, with
//! `messages`, `mailFolders/{f}/messages` (also `mailfolders`, `mailFolders('Inbox')`), delta, one
//! message and its attachments, one folder; and the counter endpoint each one is. A folder segment
//! is kept as written (ids are case-sensitive); [`super::folders::resolve`] reads it.

use crate::sim::counters::Endpoint;

/// Parsed route of a Graph path.
pub enum Route {
    Folder { folder: String },
    List { folder: Option<String> },
    Delta { folder: String },
    Message { folder: Option<String>, id: String },
    Attachments { id: String },
}

/// The folder of a `mailFolders('…')` segment, as written.
fn folder_segment(seg: &str) -> Option<String> {
    if !seg.to_ascii_lowercase().starts_with("mailfolders(") || !seg.ends_with(')') {
        return None;
    }
    let inner = seg.get(12..seg.len().saturating_sub(1))?;
    Some(inner.trim_matches('\'').to_owned())
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
        ["mailfolders", _] => Route::Folder {
            folder: rest.get(1)?.clone(),
        },
        ["mailfolders", _, "messages"] => Route::List {
            folder: Some(rest.get(1)?.clone()),
        },
        ["mailfolders", _, "messages", "delta"] => Route::Delta {
            folder: rest.get(1)?.clone(),
        },
        ["mailfolders", _, "messages", _] => Route::Message {
            folder: Some(rest.get(1)?.clone()),
            id: rest.get(3)?.clone(),
        },
        [f] if folder_segment(f).is_some() => Route::Folder {
            folder: folder_segment(rest.first()?)?,
        },
        [f, "messages"] if folder_segment(f).is_some() => Route::List {
            folder: folder_segment(rest.first()?),
        },
        [f, "messages", "delta"] if folder_segment(f).is_some() => Route::Delta {
            folder: folder_segment(rest.first()?)?,
        },
        [f, "messages", _] if folder_segment(f).is_some() => Route::Message {
            folder: folder_segment(rest.first()?),
            id: rest.get(2)?.clone(),
        },
        _ => return None,
    };
    Some((mailbox, r))
}

pub fn endpoint_of(r: &Route, method: &str) -> Endpoint {
    match (r, method) {
        (Route::Folder { .. }, _) => Endpoint::GetFolder,
        (Route::List { .. }, _) => Endpoint::ListMessages,
        (Route::Delta { .. }, _) => Endpoint::Delta,
        (Route::Message { .. }, "PATCH") => Endpoint::PatchMessage,
        (Route::Message { .. }, _) => Endpoint::GetMessage,
        (Route::Attachments { .. }, _) => Endpoint::ListAttachments,
    }
}
