//! The human text of `inboxd channel …`: a channel's details (with its errors' trace and correlation
//! ids, the node and the quarantine), the listing's table and the quarantine, built from the admin
//! API's JSON. Each function answers the lines to print; `--json` bypasses them.

use serde_json::Value;

/// How many quarantined messages `channel show` lists.
pub const SHOW_QUARANTINED: usize = 5;

fn field<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn present<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.get(key).filter(|v| !v.is_null())
}

/// A channel: identity, status, polls, warning and last error with Microsoft's ids.
pub fn channel(channel: &Value) -> Vec<String> {
    let mut lines = vec![
        format!("id:            {}", field(channel, "id")),
        format!("name:          {}", field(channel, "name")),
        format!(
            "mailbox:       {} (folder {})",
            field(channel, "mailbox"),
            field(channel, "folder")
        ),
        format!(
            "tenant / app:  {} / {}",
            field(channel, "tenant_id"),
            field(channel, "client_id")
        ),
        format!("transport:     {}", field(channel, "transport")),
        format!("status:        {}", field(channel, "status")),
    ];
    if let Some(node) = present(channel, "node").and_then(Value::as_str) {
        lines.push(format!("node:          {node}"));
    }
    lines.push(format!("last poll:     {}", field(channel, "last_poll_at")));
    lines.push(format!(
        "last success:  {}",
        field(channel, "last_success_at")
    ));
    lines.push(format!("next poll:     {}", field(channel, "next_poll_at")));
    if let Some(today) = channel.get("messages_today").and_then(Value::as_u64) {
        lines.push(format!("delivered:     {today} today"));
    }
    lines.push(format!("redirect URI:  {}", field(channel, "redirect_uri")));
    if let Some(warning) = present(channel, "secret_warning").and_then(Value::as_str) {
        lines.push(format!("warning:       {warning}"));
    }
    if let Some(problem) = present(channel, "warning") {
        lines.push(format!(
            "warning:       {} ({}) at {}",
            field(problem, "code"),
            field(problem, "source"),
            field(problem, "at")
        ));
        problem_details(problem, &mut lines);
    }
    if let Some(error) = present(channel, "last_error") {
        lines.push(format!(
            "last error:    {} ({}) at {}",
            field(error, "code"),
            field(error, "source"),
            field(error, "at")
        ));
        problem_details(error, &mut lines);
    }
    lines
}

/// The message, remedy and Microsoft's ids of a warning or last error.
fn problem_details(problem: &Value, lines: &mut Vec<String>) {
    lines.push(format!("               {}", field(problem, "message")));
    lines.push(format!("what to do:    {}", field(problem, "remedy")));
    if let Some(trace) = present(problem, "trace_id").and_then(Value::as_str) {
        lines.push(format!("trace id:      {trace}"));
    }
    if let Some(correlation) = present(problem, "correlation_id").and_then(Value::as_str) {
        lines.push(format!("correlation id: {correlation}"));
    }
}

/// The quarantine's messages of an answer of `GET /api/channels/{id}/quarantine`.
fn quarantined(answer: &Value) -> &[Value] {
    answer
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// One quarantined message: its id, failures and last error.
fn quarantined_line(message: &Value) -> String {
    format!(
        "{}  failures={}  {}",
        field(message, "message_id"),
        message.get("failures").and_then(Value::as_u64).unwrap_or(0),
        message
            .get("last_error")
            .and_then(Value::as_str)
            .unwrap_or("")
    )
    .trim_end()
    .to_owned()
}

/// `channel show`'s quarantine part: the count and the first few messages with their last error.
pub fn quarantine_summary(id: &str, answer: &Value, most: usize) -> Vec<String> {
    let messages = quarantined(answer);
    if messages.is_empty() {
        return vec!["quarantine:    none".to_owned()];
    }
    let count = if messages.len() >= most {
        format!("{} or more", messages.len())
    } else {
        messages.len().to_string()
    };
    let mut lines = vec![format!(
        "quarantine:    {count} message(s) whose processing kept failing; `inboxd channel quarantine {id}` lists them, `inboxd channel replay {id}` delivers them again"
    )];
    lines.extend(
        messages
            .iter()
            .take(SHOW_QUARANTINED)
            .map(|m| format!("  {}", quarantined_line(m))),
    );
    if messages.len() > SHOW_QUARANTINED {
        lines.push(format!(
            "  … and {} more",
            messages.len() - SHOW_QUARANTINED
        ));
    }
    lines
}

/// `channel events`: newest first, one line each.
pub fn events(answer: &Value) -> Vec<String> {
    let events = answer["events"].as_array().cloned().unwrap_or_default();
    if events.is_empty() {
        return vec!["No events recorded for this channel.".to_owned()];
    }
    events
        .iter()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            let status = match e["previous_status"].as_str() {
                Some(previous) => format!("{previous} -> {}", text("status")),
                None => text("status"),
            };
            let mut line = format!("{}  {:<24} {}", text("at"), text("kind"), status);
            if let Some(code) = e["code"].as_str() {
                line.push_str(&format!("  {code}"));
            }
            if let Some(remedy) = e["remedy"].as_str() {
                line.push_str(&format!("  (what to do: {remedy})"));
            }
            line
        })
        .collect()
}

/// `channel quarantine`: every message, one a line.
pub fn quarantine(answer: &Value) -> Vec<String> {
    let messages = quarantined(answer);
    if messages.is_empty() {
        return vec!["No quarantined messages.".to_owned()];
    }
    messages.iter().map(quarantined_line).collect()
}

/// The listing's header line.
pub fn list_header() -> String {
    format!(
        "{:<36}  {:<22}  {:<32}  {:>11}  LAST ERROR",
        "ID", "STATUS", "MAILBOX", "QUARANTINED"
    )
}

/// The listing's rows.
pub fn list_rows(channels: &[Value]) -> Vec<String> {
    channels
        .iter()
        .map(|channel| {
            let error = present(channel, "last_error")
                .map(|e| field(e, "code"))
                .unwrap_or("");
            let quarantined = channel["quarantined"].as_u64().unwrap_or(0);
            format!(
                "{:<36}  {:<22}  {:<32}  {:>11}  {}",
                field(channel, "id"),
                field(channel, "status"),
                field(channel, "mailbox"),
                if quarantined == 0 {
                    String::new()
                } else {
                    quarantined.to_string()
                },
                error
            )
            .trim_end()
            .to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn show_names_microsofts_ids_and_the_node() {
        let lines = channel(&json!({
            "id": "c1", "status": "blocked", "node": "node-b",
            "last_error": {"code": "AADSTS53003", "source": "identity_platform", "at": "t",
                "message": "m", "remedy": "r", "trace_id": "T-1", "correlation_id": "C-1"},
        }))
        .join("\n");
        for part in [
            "node-b",
            "AADSTS53003",
            "trace id:      T-1",
            "correlation id: C-1",
        ] {
            assert!(lines.contains(part), "{part} missing:\n{lines}");
        }
    }

    #[test]
    fn the_quarantine_summary_counts_and_lists_the_first() {
        let messages: Vec<Value> = (0..7)
            .map(|i| json!({"message_id": format!("m{i}"), "failures": 3, "last_error": "sink down"}))
            .collect();
        let lines = quarantine_summary("c1", &json!({ "messages": messages }), 10_000);
        assert!(lines[0].contains("7 message(s)"), "{lines:?}");
        assert_eq!(lines.len(), 1 + SHOW_QUARANTINED + 1);
        assert!(lines[1].contains("m0") && lines[1].contains("sink down"));
        assert_eq!(
            quarantine_summary("c1", &json!({"messages": []}), 10)[0],
            "quarantine:    none"
        );
    }
}
