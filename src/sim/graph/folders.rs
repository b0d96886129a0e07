//! Mail folders: the well-known names (case-insensitive), each folder's own id (what messages carry
//! as `parentFolderId`), resolving a path segment that holds either, and `GET mailFolders/{f}`.
//!
//! Folders are keyed inside the simulator by a lower-cased name: a well-known name, or the name the
//! control API delivered mail to. Graph addresses a well-known folder by name or by id, any other
//! folder only by id.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::response::{Ctx, GraphResponse};
use crate::sim::state::Mailbox;

/// Graph's well-known folder names with their display names.
const WELL_KNOWN: &[(&str, &str)] = &[
    ("inbox", "Inbox"),
    ("archive", "Archive"),
    ("drafts", "Drafts"),
    ("sentitems", "Sent Items"),
    ("deleteditems", "Deleted Items"),
    ("junkemail", "Junk Email"),
    ("outbox", "Outbox"),
    ("clutter", "Clutter"),
    ("conversationhistory", "Conversation History"),
    ("scheduled", "Scheduled"),
    ("searchfolders", "Finder"),
    ("msgfolderroot", "Top of Information Store"),
];

const ID_PREFIX: &str = "AAMkAGI2AAEu";
const ID_SUFFIX: &str = "AAA=";

/// The folder's id: opaque, case-sensitive, stable, and different in every mailbox.
pub fn folder_id(mailbox: &Mailbox, folder: &str) -> String {
    let raw = format!("{}:{folder}", mailbox.tag);
    format!("{ID_PREFIX}{}{ID_SUFFIX}", URL_SAFE_NO_PAD.encode(raw))
}

fn well_known(name: &str) -> Option<&'static (&'static str, &'static str)> {
    WELL_KNOWN
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// Resolves a path segment (a well-known name in any case, or a folder id of this mailbox) to the
/// folder's key; `None` when the mailbox has no such folder.
pub fn resolve(mailbox: &Mailbox, segment: &str) -> Option<String> {
    if let Some((name, _)) = well_known(segment) {
        return Some((*name).to_owned());
    }
    let body = segment.strip_prefix(ID_PREFIX)?.strip_suffix(ID_SUFFIX)?;
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
    let (tag, name) = raw.split_once(':')?;
    if tag != mailbox.tag.to_string() {
        return None;
    }
    let exists = well_known(name).is_some()
        || mailbox
            .data
            .lock()
            .messages
            .iter()
            .any(|m| m.folder == name);
    exists.then(|| name.to_owned())
}

/// Graph's 404 for a folder that does not exist.
pub fn not_found(ctx: &Ctx) -> GraphResponse {
    ctx.error(
        404,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

/// `GET /users/{m}/mailFolders/{id-or-name}`: the `mailFolder` resource with its id and counts.
pub fn get_folder(ctx: &Ctx, origin: &str, mailbox: &Mailbox, segment: &str) -> GraphResponse {
    let Some(key) = resolve(mailbox, segment) else {
        return not_found(ctx);
    };
    let (total, unread, size) = {
        let data = mailbox.data.lock();
        data.messages
            .iter()
            .filter(|m| !m.deleted && m.folder == key)
            .fold((0u64, 0u64, 0u64), |(t, u, s), m| {
                let bytes =
                    m.body_html.len() as u64 + m.attachments.iter().map(|a| a.size).sum::<u64>();
                (t + 1, u + u64::from(!m.is_read), s + bytes)
            })
    };
    let display = well_known(&key).map_or(key.as_str(), |(_, d)| d);
    let parent = if key == "msgfolderroot" {
        folder_id(mailbox, "root")
    } else {
        folder_id(mailbox, "msgfolderroot")
    };
    let body: Value = json!({
        "@odata.context": format!("{origin}/v1.0/$metadata#users('{}')/mailFolders/$entity", mailbox.address),
        "id": folder_id(mailbox, &key),
        "displayName": display,
        "parentFolderId": parent,
        "childFolderCount": 0,
        "unreadItemCount": unread,
        "totalItemCount": total,
        "sizeInBytes": size,
        "isHidden": false,
    });
    ctx.ok(body, Vec::new())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::sim::state::MailboxData;

    fn mailbox(tag: u32) -> Mailbox {
        Mailbox {
            address: "a@b.example".into(),
            tag,
            data: parking_lot::Mutex::new(MailboxData::default()),
        }
    }

    #[test]
    fn names_resolve_in_any_case_and_ids_only_in_their_own_mailbox() {
        let a = mailbox(7);
        let b = mailbox(8);
        assert_eq!(resolve(&a, "InBox").as_deref(), Some("inbox"));
        assert_eq!(resolve(&a, "SENTITEMS").as_deref(), Some("sentitems"));
        let id = folder_id(&a, "inbox");
        assert_eq!(resolve(&a, &id).as_deref(), Some("inbox"));
        assert_eq!(resolve(&b, &id), None, "another mailbox's folder id");
        assert_eq!(
            resolve(&a, &id.to_ascii_lowercase()),
            None,
            "ids are case-sensitive"
        );
        assert_eq!(resolve(&a, "nosuchfolder"), None);
        assert_eq!(
            resolve(&a, &folder_id(&a, "projects")),
            None,
            "no mail there yet"
        );
    }
}
