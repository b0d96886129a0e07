//! Injected faults: what can go wrong (429 storms, 5xx, latency, connection resets, malformed JSON,
//! AADSTS errors, claims challenges, expired secrets, a token endpoint that is down, IMAP `NO` and `BYE`), where (tenant, app, mailbox, user,
//! endpoints) and for how long (a number of requests or a duration).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::counters::Endpoint;

/// What a fault does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// 429 `TooManyRequests` (Graph) or 429 from the STS, with `Retry-After` seconds (fractional
    /// allowed) or no header when `retry_after` is null.
    Throttle {
        #[serde(default)]
        retry_after: Option<f64>,
    },
    /// Any HTTP status (500, 503, 504, …) with a Graph/STS-shaped body; optional `Retry-After`.
    Status {
        status: u16,
        #[serde(default)]
        retry_after: Option<f64>,
        #[serde(default)]
        code: Option<String>,
    },
    /// Adds latency before the request is handled (combines with other faults).
    Latency { ms: u64 },
    /// Starts a response and resets the connection in the middle of the body.
    Reset,
    /// Answers 200 with a truncated / malformed JSON body.
    Malformed,
    /// An AADSTS error on `/authorize` (as an error redirect) and/or `/token`.
    Aadsts {
        code: u32,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        status: Option<u16>,
        #[serde(default)]
        description: Option<String>,
    },
    /// The token endpoint asks for interaction with a claims challenge, as Conditional Access does
    /// when it wants MFA: `400 interaction_required`, AADSTS `code` (50076 by default; 50079 asks to
    /// enrol in MFA), `suberror` `basic_action`, and `claims` (a JSON string, `claims` or the
    /// default).
    InteractionRequired {
        #[serde(default)]
        code: Option<u32>,
        #[serde(default)]
        claims: Option<String>,
    },
    /// Graph answers with a Conditional Access claims challenge: `401` and `WWW-Authenticate: Bearer
    /// …, error="insufficient_claims", claims="<base64 of claims>"`.
    InsufficientClaims {
        #[serde(default)]
        claims: Option<String>,
    },
    /// The client secret is treated as expired (AADSTS7000222).
    ExpiredSecret,
    /// The token endpoint is down (503 from the front end, HTML body).
    Down,
    /// IMAP: the command answers a tagged `NO` with `text` (default `Server Unavailable. 15`).
    ImapNo {
        #[serde(default)]
        text: Option<String>,
    },
    /// IMAP: the server says `* BYE` with `text` (default `Connection is closed. 13`) instead of
    /// answering, and closes the connection.
    ImapBye {
        #[serde(default)]
        text: Option<String>,
    },
}

/// The claims request a challenge carries unless the fault names one: an authentication context
/// (`acrs`) Conditional Access wants satisfied.
pub const DEFAULT_CLAIMS: &str = r#"{"access_token":{"acrs":{"essential":true,"value":"c1"}}}"#;

impl FaultKind {
    /// Whether Graph (a request, a `$batch` item or `$batch` itself) answers this kind.
    pub fn on_graph(&self) -> bool {
        matches!(
            self,
            FaultKind::Throttle { .. }
                | FaultKind::Status { .. }
                | FaultKind::Latency { .. }
                | FaultKind::Reset
                | FaultKind::Malformed
                | FaultKind::InsufficientClaims { .. }
        )
    }

    /// Whether the token endpoint answers this kind.
    pub fn on_token(&self) -> bool {
        !matches!(
            self,
            FaultKind::InsufficientClaims { .. }
                | FaultKind::ImapNo { .. }
                | FaultKind::ImapBye { .. }
        )
    }

    /// Whether the IMAP server answers this kind (`throttle` as Exchange's throttled `NO`, `reset`
    /// as a connection closed without a word).
    pub fn on_imap(&self) -> bool {
        matches!(
            self,
            FaultKind::ImapNo { .. }
                | FaultKind::ImapBye { .. }
                | FaultKind::Latency { .. }
                | FaultKind::Throttle { .. }
                | FaultKind::Reset
        )
    }
}

/// Where a fault applies; every given field must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FaultScope {
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub mailbox: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// Endpoint names (`authorize`, `token`, `graph`, `list_messages`, `delta`, `get_message`,
    /// `patch_message`, `batch`, `batch_item`, …); empty means all.
    #[serde(default)]
    pub endpoints: Vec<String>,
}

/// A fault as the control API takes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultSpec {
    #[serde(flatten)]
    pub kind: FaultKind,
    #[serde(flatten)]
    pub scope: FaultScope,
    /// Applies to this many matching requests, then expires.
    #[serde(default)]
    pub count: Option<u64>,
    /// Applies for this long (ms), then expires.
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

/// An active fault.
#[derive(Debug)]
pub struct Fault {
    pub id: u64,
    pub spec: FaultSpec,
    remaining: Option<AtomicI64>,
    until_ms: Option<i64>,
    pub hits: AtomicU64,
}

/// What a request is, for fault matching.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub endpoint: Endpoint,
    pub tenant: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub mailbox: Option<&'a str>,
    pub user: Option<&'a str>,
    /// The request is an item of a `$batch` (fault filter `batch_item`).
    pub in_batch: bool,
}

fn eq_opt(want: &Option<String>, have: Option<&str>) -> bool {
    match want {
        None => true,
        Some(w) => have.is_some_and(|h| h.eq_ignore_ascii_case(w)),
    }
}

impl Fault {
    fn matches(&self, t: &Target<'_>, now_ms: i64) -> bool {
        if self.until_ms.is_some_and(|u| now_ms >= u) {
            return false;
        }
        let s = &self.spec.scope;
        if !s.endpoints.is_empty()
            && !s.endpoints.iter().any(|e| {
                e == t.endpoint.name()
                    || (e == "graph" && t.endpoint.is_graph())
                    || (e == "batch_item" && t.in_batch)
                    || (e == "imap" && t.endpoint.is_imap())
                    || e == "all"
            })
        {
            return false;
        }
        eq_opt(&s.tenant, t.tenant)
            && eq_opt(&s.client_id, t.client_id)
            && eq_opt(&s.mailbox, t.mailbox)
            && eq_opt(&s.user, t.user)
    }

    /// Takes one use of the fault; false when its count is used up.
    fn take(&self) -> bool {
        match &self.remaining {
            None => true,
            Some(r) => r.fetch_sub(1, Ordering::AcqRel) > 0,
        }
    }

    fn expired(&self, now_ms: i64) -> bool {
        self.until_ms.is_some_and(|u| now_ms >= u)
            || self
                .remaining
                .as_ref()
                .is_some_and(|r| r.load(Ordering::Acquire) <= 0)
    }
}

/// What the matched faults say to do with a request.
#[derive(Debug, Default, Clone)]
pub struct Verdict {
    pub latency_ms: u64,
    pub fault: Option<FaultKind>,
}

/// All active faults. Reading is lock-free while none are set.
#[derive(Debug, Default)]
pub struct FaultTable {
    any: AtomicBool,
    next_id: AtomicU64,
    list: RwLock<Vec<Arc<Fault>>>,
}

impl FaultTable {
    /// Adds a fault; returns its id.
    pub fn add(&self, spec: FaultSpec, now_ms: i64) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let fault = Fault {
            id,
            remaining: spec
                .count
                .map(|c| AtomicI64::new(i64::try_from(c).unwrap_or(i64::MAX))),
            until_ms: spec
                .duration_ms
                .map(|d| now_ms.saturating_add(i64::try_from(d).unwrap_or(i64::MAX))),
            spec,
            hits: AtomicU64::new(0),
        };
        let mut list = self.list.write();
        list.push(Arc::new(fault));
        self.any.store(true, Ordering::Release);
        id
    }

    /// Removes every fault (`id` None) or one.
    pub fn clear(&self, id: Option<u64>) -> usize {
        let mut list = self.list.write();
        let before = list.len();
        match id {
            None => list.clear(),
            Some(id) => list.retain(|f| f.id != id),
        }
        self.any.store(!list.is_empty(), Ordering::Release);
        before - list.len()
    }

    /// The active faults, for the control API.
    pub fn list(&self, now_ms: i64) -> Vec<serde_json::Value> {
        self.list
            .read()
            .iter()
            .filter(|f| !f.expired(now_ms))
            .map(|f| {
                let mut v = serde_json::to_value(&f.spec).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("id".into(), f.id.into());
                    o.insert("hits".into(), f.hits.load(Ordering::Relaxed).into());
                }
                v
            })
            .collect()
    }

    /// Decides what happens to a request. `kinds` filters which fault kinds this endpoint honours.
    pub fn check(
        &self,
        t: &Target<'_>,
        now_ms: i64,
        accepts: impl Fn(&FaultKind) -> bool,
    ) -> Verdict {
        let mut verdict = Verdict::default();
        if !self.any.load(Ordering::Acquire) {
            return verdict;
        }
        let mut expired = false;
        {
            let list = self.list.read();
            for f in list.iter() {
                if !f.matches(t, now_ms) || !accepts(&f.spec.kind) {
                    expired |= f.expired(now_ms);
                    continue;
                }
                match &f.spec.kind {
                    FaultKind::Latency { ms } => {
                        if f.take() {
                            f.hits.fetch_add(1, Ordering::Relaxed);
                            verdict.latency_ms = verdict.latency_ms.max(*ms);
                        }
                    }
                    other => {
                        if verdict.fault.is_none() && f.take() {
                            f.hits.fetch_add(1, Ordering::Relaxed);
                            verdict.fault = Some(other.clone());
                        }
                    }
                }
                expired |= f.expired(now_ms);
            }
        }
        if expired {
            let mut list = self.list.write();
            list.retain(|f| !f.expired(now_ms));
            self.any.store(!list.is_empty(), Ordering::Release);
        }
        verdict
    }
}
