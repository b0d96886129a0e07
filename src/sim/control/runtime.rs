//! The simulator's run-time controls: injected faults (and immediate grant revocations), counters and
//! their reset, the clock, and the settings switchable while it runs.

use std::sync::atomic::Ordering;

use actix_web::web::{Path, Payload, Query};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{Value, json};

use super::directory::revoke_user;
use super::{St, err, parse};
use crate::sim::faults::FaultSpec;
use crate::sim::state::SimState;
use crate::sim::util;

pub async fn add_fault(state: St, req: HttpRequest, payload: Payload) -> HttpResponse {
    let v: Value = body!(state, req, payload);
    if v.get("kind").and_then(Value::as_str) == Some("revoked_grant") {
        // Revokes at once: every refresh token of the user(s) fails with 50173 afterwards.
        let user = v
            .get("user")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        let tenant = v
            .get("tenant")
            .and_then(Value::as_str)
            .and_then(|t| state.resolve_tenant(t));
        let targets: Vec<String> = match (user, tenant) {
            (Some(u), _) => vec![u],
            (None, Some(t)) => state
                .tenants
                .get(&t)
                .map(|t| t.users.clone())
                .unwrap_or_default(),
            (None, None) => {
                return err(
                    400,
                    "BadRequest",
                    "revoked_grant needs a 'user' or a 'tenant'",
                );
            }
        };
        let revoked: Vec<&String> = targets.iter().filter(|u| revoke_user(&state, u)).collect();
        return HttpResponse::Created().json(json!({"revoked": revoked}));
    }
    let spec: FaultSpec = match serde_json::from_value(v) {
        Ok(s) => s,
        Err(e) => return err(400, "BadRequest", &format!("invalid fault: {e}")),
    };
    let id = state.faults.add(spec, state.now_ms());
    HttpResponse::Created().json(json!({"id": id}))
}

pub async fn list_faults(state: St) -> HttpResponse {
    HttpResponse::Ok().json(json!({"faults": state.faults.list(state.now_ms())}))
}

pub async fn clear_faults(state: St) -> HttpResponse {
    HttpResponse::Ok().json(json!({"removed": state.faults.clear(None)}))
}

pub async fn clear_fault(state: St, id: Path<u64>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"removed": state.faults.clear(Some(*id))}))
}

#[derive(Deserialize)]
pub struct CountersQuery {
    #[serde(default)]
    mailbox: Option<String>,
}

pub async fn counters(state: St, q: Query<CountersQuery>) -> HttpResponse {
    let mailbox = q.mailbox.as_ref().map(|m| m.to_ascii_lowercase());
    let mut peaks = serde_json::Map::new();
    let mut by_mailbox = serde_json::Map::new();
    // One mailbox: its keys from the index (constant time); all: every entry.
    let entries: Vec<(String, std::sync::Arc<crate::sim::throttle::Entry>)> = match &mailbox {
        Some(m) => state.throttle.of_mailbox(m),
        None => state
            .throttle
            .entries
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect(),
    };
    for (key, e) in &entries {
        if key.starts_with("token|") {
            continue;
        }
        let mbx = key.split_once('|').map(|(_, m)| m).unwrap_or(key);
        let peak = e.peak.load(Ordering::Relaxed);
        peaks.insert(key.clone(), peak.into());
        let cur = by_mailbox.get(mbx).and_then(Value::as_u64).unwrap_or(0);
        by_mailbox.insert(mbx.to_owned(), (cur.max(peak as u64)).into());
    }
    let early: Vec<Value> = state
        .counters
        .early
        .lock()
        .iter()
        .filter(|e| {
            mailbox
                .as_deref()
                .is_none_or(|m| e.key.ends_with(&format!("|{m}")))
        })
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect();
    HttpResponse::Ok().json(json!({
        "mailbox": mailbox,
        "requests": state.counters.snapshot(mailbox.as_deref()),
        "peak_concurrency": peaks,
        "peak_concurrency_by_mailbox": by_mailbox,
        "early_count": early.len(),
        "early_requests": early,
        "refresh_token_reuse": state.counters.refresh_token_reuse(mailbox.as_deref()),
        "imap": state.imap.snapshot(mailbox.as_deref()),
    }))
}

pub async fn reset_counters(state: St) -> HttpResponse {
    state.counters.reset();
    state.throttle.reset();
    state.imap.reset();
    HttpResponse::Ok().json(json!({"reset": true}))
}

#[derive(Deserialize)]
struct ClockIn {
    advance_secs: f64,
}

pub async fn clock(state: St, req: HttpRequest, payload: Payload) -> HttpResponse {
    let c: ClockIn = body!(state, req, payload);
    let offset = state.advance_clock((c.advance_secs * 1000.0) as i64);
    HttpResponse::Ok().json(json!({"offset_ms": offset, "now": util::graph_datetime(state.now())}))
}

/// `PUT /_sim/settings`: the settings to change; absent ones keep their value, unknown ones are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsIn {
    #[serde(default)]
    revoke_on_refresh_token_reuse: Option<bool>,
}

fn settings_json(state: &SimState) -> Value {
    json!({
        "revoke_on_refresh_token_reuse": state.settings.revoke_on_refresh_token_reuse(),
    })
}

pub async fn settings(state: St) -> HttpResponse {
    HttpResponse::Ok().json(settings_json(&state))
}

pub async fn update_settings(state: St, req: HttpRequest, payload: Payload) -> HttpResponse {
    let s: SettingsIn = body!(state, req, payload);
    if let Some(on) = s.revoke_on_refresh_token_reuse {
        state.settings.set_revoke_on_refresh_token_reuse(on);
    }
    HttpResponse::Ok().json(settings_json(&state))
}
