//! `POST /v1.0/$batch`: at most 20 requests with unique ids and URLs relative to the version (with or
//! without a leading `/`);
//! unordered batches run four at a time, batches with `dependsOn` run in order and dependents of a
//! failed request get 424; responses come back out of order, each with its own status, headers
//! (including `Retry-After` on 429 items) and body.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::dispatch;
use super::response::{Body, Ctx, GraphRequest, GraphResponse, fault_response};
use crate::sim::counters::Endpoint;
use crate::sim::faults::{FaultKind, Target};
use crate::sim::state::SimState;

/// Most requests in one batch.
const MAX_ITEMS: usize = 20;
/// Requests of an unordered batch that run at once (Outlook's figure).
const PARALLEL: usize = 4;

struct Item {
    id: String,
    method: String,
    url: String,
    headers: Map<String, Value>,
    body: Option<Value>,
    depends_on: Vec<String>,
}

fn bad(ctx: &Ctx, msg: &str) -> GraphResponse {
    ctx.error(400, "BadRequest", msg)
}

fn parse(ctx: &Ctx, raw: &[u8]) -> Result<Vec<Item>, GraphResponse> {
    let v: Value =
        serde_json::from_slice(raw).map_err(|_| bad(ctx, "Invalid batch payload format."))?;
    let Some(reqs) = v.get("requests").and_then(Value::as_array) else {
        return Err(bad(
            ctx,
            "Invalid batch payload format: the 'requests' array is missing.",
        ));
    };
    if reqs.is_empty() {
        return Err(bad(
            ctx,
            "Invalid batch payload format: the 'requests' array is empty.",
        ));
    }
    if reqs.len() > MAX_ITEMS {
        return Err(bad(
            ctx,
            &format!("Too many requests in batch. Max allowed is {MAX_ITEMS}."),
        ));
    }
    let mut items = Vec::with_capacity(reqs.len());
    for r in reqs {
        let id = match r.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(bad(
                    ctx,
                    "Invalid batch payload format: every request needs an 'id'.",
                ));
            }
        };
        if items.iter().any(|i: &Item| i.id.eq_ignore_ascii_case(&id)) {
            return Err(bad(
                ctx,
                &format!("Request Id '{id}' is duplicated in the batch; ids must be unique."),
            ));
        }
        let Some(method) = r.get("method").and_then(Value::as_str) else {
            return Err(bad(ctx, &format!("Request '{id}' has no 'method'.")));
        };
        let Some(url) = r.get("url").and_then(Value::as_str) else {
            return Err(bad(ctx, &format!("Request '{id}' has no 'url'.")));
        };
        let headers = r
            .get("headers")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let depends_on = match r.get("dependsOn") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|d| d.as_str().map(str::to_owned))
                .collect(),
            Some(_) => {
                return Err(bad(
                    ctx,
                    &format!("Request '{id}': 'dependsOn' must be an array of ids."),
                ));
            }
        };
        for d in &depends_on {
            if !items.iter().any(|i: &Item| i.id.eq_ignore_ascii_case(d)) {
                return Err(bad(
                    ctx,
                    &format!(
                        "Request '{id}' depends on '{d}', which is not an earlier request of the batch."
                    ),
                ));
            }
        }
        items.push(Item {
            id,
            method: method.to_ascii_uppercase(),
            url: url.to_owned(),
            headers,
            body: r.get("body").cloned(),
            depends_on,
        });
    }
    Ok(items)
}

fn item_json(id: &str, r: GraphResponse) -> Value {
    let (status, body) = match r.body {
        Body::Json(v) => (r.status, v),
        Body::Reset | Body::Malformed => (
            502,
            json!({"error": {"code": "BadGateway", "message": "The backend response could not be read."}}),
        ),
    };
    let mut headers = Map::new();
    for (k, v) in r.headers {
        if k.eq_ignore_ascii_case("request-id") || k.eq_ignore_ascii_case("client-request-id") {
            continue;
        }
        headers.insert(k, Value::String(v));
    }
    headers.insert("Cache-Control".into(), "private".into());
    json!({"id": id, "status": status, "headers": headers, "body": body})
}

async fn run_item(
    state: &SimState,
    outer: &dyn Fn(&str) -> Option<String>,
    origin: &str,
    item: &Item,
    arrival: u64,
) -> GraphResponse {
    let lookup = |name: &str| -> Option<String> {
        let found = item
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str().map(str::to_owned));
        match found {
            Some(v) => Some(v),
            None if name == "authorization" => outer("authorization"),
            None => None,
        }
    };
    // Graph takes `users/…` as well as `/users/…`: both are relative to the version.
    let url = if item.url.starts_with('/') {
        item.url.clone()
    } else {
        format!("/{}", item.url)
    };
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let ctx = Ctx::new(state, &lookup, query);
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("/v1.0/")
        || lower.starts_with("/beta/")
        || lower.starts_with("/http:")
        || lower.starts_with("/https:")
    {
        return ctx.error(
            400,
            "BadRequest",
            "Invalid request URL: batch request URLs must be relative to the version, e.g. '/users/{id}/messages'.",
        );
    }
    let body_bytes = match &item.body {
        None => Vec::new(),
        Some(b) => {
            if lookup("content-type").is_none() {
                return ctx.error(
                    400,
                    "BadRequest",
                    "A Content-Type header is required when the request has a body.",
                );
            }
            match b {
                Value::String(s) => s.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            }
        }
    };
    let req = GraphRequest {
        method: &item.method,
        path,
        query,
        headers: &lookup,
        body: &body_bytes,
        origin,
        in_batch: true,
        arrival,
    };
    dispatch(state, &ctx, &req).await
}

/// Runs a `$batch` request.
pub async fn handle(
    state: &SimState,
    ctx: &Ctx,
    headers: &dyn Fn(&str) -> Option<String>,
    raw: &[u8],
    origin: &str,
    arrival: u64,
) -> GraphResponse {
    state.counters.hit(Endpoint::Batch, None);
    // The batch itself must carry a valid token; tenant and app scope batch-level faults.
    let token = headers("authorization")
        .and_then(|a| a.split_once(' ').map(|(_, t)| t.trim().to_owned()))
        .unwrap_or_default();
    let claims = match state.verify("at", &token) {
        Ok(c) if c.exp > state.now_ms() => c,
        Ok(_) => {
            return ctx.error(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            );
        }
        Err(_) if token.is_empty() => {
            return ctx.error(401, "InvalidAuthenticationToken", "Access token is empty.");
        }
        Err(_) => {
            return ctx.error(
                401,
                "InvalidAuthenticationToken",
                "CompactToken parsing failed with error code: 80049217",
            );
        }
    };
    let verdict = state.faults.check(
        &Target {
            endpoint: Endpoint::Batch,
            tenant: Some(&claims.tid),
            client_id: Some(&claims.cid),
            mailbox: None,
            user: Some(&claims.upn),
            in_batch: false,
        },
        state.now_ms(),
        FaultKind::on_graph,
    );
    if verdict.latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(verdict.latency_ms)).await;
    }
    // The batch has no (app, mailbox) of its own to hold to a `Retry-After`; its items do.
    if let Some(fault) = &verdict.fault
        && let Some(r) = fault_response(ctx, fault, |_| {})
    {
        return r;
    }
    let items = match parse(ctx, raw) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    if items.iter().any(|i| !i.depends_on.is_empty()) {
        // Sequential, in order; dependents of a failure get 424.
        let mut status: HashMap<String, u16> = HashMap::new();
        for item in &items {
            let failed_dep = item.depends_on.iter().any(|d| {
                status
                    .get(&d.to_ascii_lowercase())
                    .is_none_or(|s| *s >= 400)
            });
            let r = if failed_dep {
                let c = Ctx::new(state, &|_: &str| None, "");
                c.error(
                    424,
                    "FailedDependency",
                    "The request depends on a request of the batch that failed.",
                )
            } else {
                run_item(state, headers, origin, item, arrival).await
            };
            status.insert(item.id.to_ascii_lowercase(), r.status);
            out.push(item_json(&item.id, r));
        }
    } else {
        for chunk in items.chunks(PARALLEL) {
            let futs = chunk
                .iter()
                .map(|item| run_item(state, headers, origin, item, arrival));
            let results = futures_util::future::join_all(futs).await;
            for (item, r) in chunk.iter().zip(results) {
                out.push(item_json(&item.id, r));
            }
        }
    }
    // Microsoft returns responses in any order; clients must correlate by id.
    out.reverse();
    let mut headers_out = vec![
        ("request-id".to_owned(), ctx.request_id.clone()),
        ("client-request-id".to_owned(), ctx.client_request_id.clone()),
        ("Content-Type".to_owned(), "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8".to_owned()),
    ];
    headers_out.push(("OData-Version".into(), "4.0".into()));
    GraphResponse {
        status: 200,
        headers: headers_out,
        body: Body::Json(json!({"responses": out})),
    }
}
