//! `GET messages/{id}/attachments`: a message's file attachments with their content.

use serde_json::{Value, json};

use super::messages::locate;
use super::render::{View, attachment_json};
use super::response::{Ctx, GraphRequest, GraphResponse};
use crate::sim::state::{Mailbox, parse_message_id};

pub fn attachments(
    ctx: &Ctx,
    req: &GraphRequest<'_>,
    mailbox: &Mailbox,
    id: &str,
) -> GraphResponse {
    let seq = match locate(ctx, mailbox, id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let view = View {
        select: None,
        immutable: parse_message_id(id).is_some() && id.starts_with("AAkAL"),
        text_body: false,
        expand_attachments: true,
        always_type: false,
        mailbox,
    };
    let mut data = mailbox.data.lock();
    let Some(m) = data.find_mut(seq) else {
        return ctx.error(
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        );
    };
    let list: Vec<Value> = m
        .attachments
        .iter()
        .enumerate()
        .map(|(i, a)| attachment_json(m, i, a, &view))
        .collect();
    drop(data);
    ctx.ok(
        json!({
            "@odata.context": format!("{}/v1.0/$metadata#users('{}')/messages('{id}')/attachments", req.origin, mailbox.address),
            "value": list,
        }),
        Vec::new(),
    )
}
