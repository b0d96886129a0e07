//! The simulator's in-memory directory and mail store: tenants, apps, users, mailboxes, messages,
//! authorization codes, and the stateless (HMAC-signed) access and refresh tokens.
//!
//! Everything lives in sharded maps (dashmap) or per-mailbox locks, so no request takes a global lock.
//! Tokens are self-contained and signed with a key random to each simulator instance: they cost no
//! memory however many are minted, and a token from another instance is "foreign". Refresh tokens
//! name their grant, whose unspent tokens the grant ledger ([`super::grants`]) keeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone, Utc};
use dashmap::DashMap;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::counters::Counters;
use super::faults::FaultTable;
use super::grants::Grants;
use super::throttle::Throttle;

/// Graph's resource prefix for fully qualified scopes.
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com/";

/// Delegated Graph permissions the simulated Graph service principal knows.
pub const KNOWN_GRAPH_SCOPES: &[&str] = &[
    "Mail.ReadWrite.Shared",
    "Mail.Read.Shared",
    "Mail.ReadWrite",
    "Mail.Read",
    "User.Read",
];

/// Exchange Online's resource prefix (IMAP, POP and SMTP scopes). Microsoft also accepts
/// `https://outlook.office365.com/`; both are kept under this name.
pub const OUTLOOK_RESOURCE: &str = "https://outlook.office.com/";

/// The audience of a Graph access token.
pub const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";

/// The audience of an Exchange Online (IMAP, POP, SMTP) access token.
pub const OUTLOOK_AUDIENCE: &str = "https://outlook.office.com";

/// Delegated Exchange Online permissions the simulator knows (kept fully qualified in tokens).
pub const KNOWN_OUTLOOK_SCOPES: &[&str] =
    &["IMAP.AccessAsUser.All", "POP.AccessAsUser.All", "SMTP.Send"];

/// The scope an IMAP access token must carry.
pub const IMAP_SCOPE: &str = "https://outlook.office.com/IMAP.AccessAsUser.All";

/// The audience (resource) a normalised scope belongs to: Graph's short names are Graph's, the
/// fully qualified Exchange Online scopes are Outlook's.
pub fn audience_of(scope: &str) -> &'static str {
    if scope.starts_with(OUTLOOK_RESOURCE) {
        OUTLOOK_AUDIENCE
    } else {
        GRAPH_AUDIENCE
    }
}

/// Scopes that grant reading mail.
pub const MAIL_READ_SCOPES: &[&str] = &[
    "Mail.ReadWrite.Shared",
    "Mail.Read.Shared",
    "Mail.ReadWrite",
    "Mail.Read",
];

/// Tunables copied from `SimOptions` at start-up.
#[derive(Debug, Clone)]
pub struct Limits {
    pub access_token_lifetime_secs: u64,
    pub auth_code_lifetime_secs: u64,
    pub mailbox_concurrency: usize,
    pub mailbox_requests_per_10_min: u32,
    pub concurrency_retry_after_secs: f64,
    pub max_body_bytes: usize,
    pub control_max_body_bytes: usize,
}

/// A directory (tenant).
#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub id: String,
    pub domains: Vec<String>,
    /// Users in registration order; `/authorize` signs in the first unless `login_hint` names another.
    pub users: Vec<String>,
}

/// An app registration.
#[derive(Clone)]
pub struct App {
    pub client_id: String,
    pub tenant_id: String,
    /// Shared between bulk-provisioned apps.
    pub display_name: Arc<str>,
    pub secret: String,
    pub secret_expires_at: Option<DateTime<Utc>>,
    /// Shared between bulk-provisioned apps.
    pub redirect_uris: Arc<[String]>,
    /// Secrets added beside the first (`POST /_sim/apps/{id}/credentials`): a rotation overlaps.
    pub more_secrets: Vec<crate::sim::identity::assertion::SimSecret>,
    /// Certificates whose client assertions the token endpoint accepts.
    pub certificates: Vec<crate::sim::identity::assertion::SimCertificate>,
}

/// A user; owns the mailbox at its UPN and may be granted access to others.
#[derive(Debug, Clone)]
pub struct User {
    pub upn: String,
    pub tenant_id: String,
    pub object_id: String,
    pub display_name: String,
    pub granted: Vec<String>,
    /// Refresh tokens whose authorization happened before this (ms since epoch) are revoked (50173).
    pub tokens_valid_from_ms: i64,
}

/// An attachment as the control API takes it and Graph returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub name: String,
    #[serde(default = "default_content_type")]
    pub content_type: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub content_bytes: String,
    #[serde(default)]
    pub is_inline: bool,
}

fn default_content_type() -> String {
    "application/octet-stream".to_owned()
}

/// A name + address pair (Graph's `emailAddress`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Address {
    #[serde(default)]
    pub name: String,
    pub address: String,
}

/// Meeting details that make a message a `#microsoft.graph.eventMessage`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meeting {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(default)]
    pub location: String,
}

/// One message in a mailbox.
#[derive(Debug, Clone)]
pub struct Message {
    pub seq: u64,
    pub folder: String,
    pub subject: String,
    pub from: Address,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub body_html: String,
    pub body_text: String,
    pub attachments: Vec<Attachment>,
    pub internet_message_id: String,
    pub conversation_id: String,
    pub received: DateTime<Utc>,
    /// `lastModifiedDateTime`: delivery, then every change (a client's PATCH, a move).
    pub last_modified: DateTime<Utc>,
    pub is_read: bool,
    /// The message's IMAP UID in its folder (assigned in arrival order; a move assigns a new one).
    pub uid: u32,
    pub importance: String,
    /// Writable through PATCH (Graph's `message` resource).
    pub bcc: Vec<Address>,
    pub categories: Vec<String>,
    /// `followupFlag` as the client last set it; `None` renders as `notFlagged`.
    pub flag: Option<serde_json::Value>,
    /// `focused` or `other`.
    pub inference_classification: String,
    pub is_delivery_receipt_requested: bool,
    pub is_read_receipt_requested: bool,
    pub meeting: Option<Meeting>,
    /// Folders the message was moved out of, with the mailbox version of each move: their delta
    /// queries report it as removed.
    pub left: Vec<(String, u64)>,
    /// Mailbox change version of the last change (creation, update, deletion).
    pub changed_version: u64,
    /// Version at which the message was created.
    pub created_version: u64,
    pub deleted: bool,
}

/// A mailbox: a lock around its messages. Idle mailboxes hold an empty vector.
#[derive(Debug)]
pub struct Mailbox {
    pub address: String,
    /// A short hash that ties message ids to this mailbox.
    pub tag: u32,
    pub data: Mutex<MailboxData>,
}

/// The lockable part of a mailbox.
#[derive(Debug, Default)]
pub struct MailboxData {
    /// Ordered by `seq` (delivery order).
    pub messages: Vec<Message>,
    pub version: u64,
    /// Delta tokens minted at a version below this are expired.
    pub delta_floor: u64,
    /// Each folder's IMAP UIDVALIDITY and UIDNEXT, keyed by folder key.
    pub uids: std::collections::HashMap<String, FolderUids>,
    /// IMAP is switched off for this mailbox (`Set-CASMailbox -ImapEnabled $false`).
    pub imap_disabled: bool,
}

/// A folder's IMAP UID state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderUids {
    pub validity: u32,
    pub next: u32,
}

impl FolderUids {
    /// A folder's first UIDVALIDITY: a stable, non-zero number different in every mailbox and folder.
    fn first(tag: u32, folder: &str) -> FolderUids {
        let digest = Sha256::digest(format!("{tag}:{folder}").as_bytes());
        let v = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) & 0x00ff_ffff;
        FolderUids {
            validity: v.max(1),
            next: 1,
        }
    }
}

impl MailboxData {
    /// The folder's UID state (created on first use).
    pub fn folder_uids(&mut self, tag: u32, folder: &str) -> FolderUids {
        *self
            .uids
            .entry(folder.to_owned())
            .or_insert_with(|| FolderUids::first(tag, folder))
    }

    /// Assigns the next UID of `folder`.
    pub fn assign_uid(&mut self, tag: u32, folder: &str) -> u32 {
        let entry = self
            .uids
            .entry(folder.to_owned())
            .or_insert_with(|| FolderUids::first(tag, folder));
        let uid = entry.next;
        entry.next = entry.next.saturating_add(1);
        uid
    }

    /// Bumps the folder's UIDVALIDITY and renumbers its messages from 1 in arrival order, as a
    /// server does when it can no longer keep its UIDs; returns the new state.
    pub fn bump_uid_validity(&mut self, tag: u32, folder: &str) -> FolderUids {
        let current = self.folder_uids(tag, folder);
        let mut next = 1u32;
        for m in self
            .messages
            .iter_mut()
            .filter(|m| !m.deleted && m.folder == folder)
        {
            m.uid = next;
            next = next.saturating_add(1);
        }
        let bumped = FolderUids {
            validity: current.validity.wrapping_add(1).max(1),
            next,
        };
        self.uids.insert(folder.to_owned(), bumped);
        bumped
    }

    /// Finds a live message by sequence number.
    pub fn find_mut(&mut self, seq: u64) -> Option<&mut Message> {
        let idx = self.messages.binary_search_by_key(&seq, |m| m.seq).ok()?;
        let msg = self.messages.get_mut(idx)?;
        if msg.deleted { None } else { Some(msg) }
    }
}

/// A pending or redeemed authorization code.
#[derive(Debug, Clone)]
pub struct CodeGrant {
    pub client_id: String,
    pub tenant_id: String,
    pub upn: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: String,
    pub nonce: Option<String>,
    pub issued_ms: i64,
    pub redeemed: bool,
}

/// Claims inside a simulator token (access or refresh).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenClaims {
    /// "at" or "rt".
    pub k: String,
    pub upn: String,
    pub cid: String,
    pub tid: String,
    /// Space-separated normalised scopes.
    pub scp: String,
    /// Issued at, ms since epoch.
    pub iat: i64,
    /// Time of the original user authorization, ms since epoch.
    pub auth: i64,
    /// Expiry (access tokens), ms since epoch.
    pub exp: i64,
    /// Uniqueness: no two tokens of one simulator share it.
    pub n: u64,
    /// The grant a refresh token belongs to (0 in access tokens).
    #[serde(default)]
    pub g: u64,
}

impl TokenClaims {
    /// The token's audience: the resource of its scopes (one per token, as Microsoft issues them).
    pub fn audience(&self) -> &'static str {
        if self
            .scp
            .split_whitespace()
            .any(|s| s.starts_with(OUTLOOK_RESOURCE))
        {
            OUTLOOK_AUDIENCE
        } else {
            GRAPH_AUDIENCE
        }
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    WrongKind,
}

/// Behaviour an operator can switch while the simulator runs (`PUT /_sim/settings`).
#[derive(Debug, Default)]
pub struct Settings {
    revoke_on_refresh_token_reuse: AtomicBool,
}

impl Settings {
    /// Whether reusing a rotated-out refresh token revokes its grant (stricter providers) or only
    /// counts (Microsoft).
    pub fn revoke_on_refresh_token_reuse(&self) -> bool {
        self.revoke_on_refresh_token_reuse.load(Ordering::Relaxed)
    }

    /// Switches revoke-on-reuse.
    pub fn set_revoke_on_refresh_token_reuse(&self, on: bool) {
        self.revoke_on_refresh_token_reuse
            .store(on, Ordering::Relaxed);
    }
}

/// The whole simulator state, shared by every worker.
pub struct SimState {
    pub limits: Limits,
    key: [u8; 32],
    clock_offset_ms: AtomicI64,
    token_nonce: AtomicU64,
    seq: AtomicU64,
    pub tenants: DashMap<String, Tenant>,
    /// Lower-cased domain → tenant id.
    pub domains: DashMap<String, String>,
    pub apps: DashMap<String, App>,
    pub users: DashMap<String, User>,
    pub mailboxes: DashMap<String, Arc<Mailbox>>,
    pub codes: DashMap<String, CodeGrant>,
    pub throttle: Throttle,
    pub counters: Counters,
    pub faults: FaultTable,
    pub grants: Grants,
    pub settings: Settings,
    /// Graph scopes each user consented to per app (`upn|client_id`): a refresh may ask for any.
    pub consents: DashMap<String, Vec<String>>,
    /// Successful client authentications per app and credential (`client_id|label`).
    pub credential_uses: DashMap<String, u64>,
    /// The IMAP server's addresses, connection cap, open connections and counters.
    pub imap: super::imap::ImapState,
}

impl SimState {
    /// A fresh, empty simulator state.
    pub fn new(limits: Limits) -> Self {
        let mut key = [0u8; 32];
        rand::Rng::fill(&mut rand::thread_rng(), &mut key[..]);
        Self {
            limits,
            key,
            clock_offset_ms: AtomicI64::new(0),
            token_nonce: AtomicU64::new(1),
            seq: AtomicU64::new(1),
            tenants: DashMap::new(),
            domains: DashMap::new(),
            apps: DashMap::new(),
            users: DashMap::new(),
            mailboxes: DashMap::new(),
            codes: DashMap::new(),
            throttle: Throttle::default(),
            counters: Counters::default(),
            faults: FaultTable::default(),
            grants: Grants::default(),
            settings: Settings::default(),
            consents: DashMap::new(),
            credential_uses: DashMap::new(),
            imap: super::imap::ImapState::default(),
        }
    }

    /// Records that `upn` consented to `scopes` (Graph scope names) for `client_id`; consent only
    /// grows, as it does in Entra until a user or admin removes it.
    pub fn consent(&self, upn: &str, client_id: &str, scopes: &[String]) {
        let mut entry = self
            .consents
            .entry(format!("{upn}|{client_id}"))
            .or_default();
        for s in scopes {
            if !entry.contains(s) {
                entry.push(s.clone());
            }
        }
    }

    /// The Graph scopes `upn` has consented to for `client_id`.
    pub fn consented(&self, upn: &str, client_id: &str) -> Vec<String> {
        self.consents
            .get(&format!("{upn}|{client_id}"))
            .map(|c| c.value().clone())
            .unwrap_or_default()
    }

    /// The simulator's clock (real time plus the offset set through `/_sim/clock`).
    pub fn now(&self) -> DateTime<Utc> {
        let ms = self.now_ms();
        Utc.timestamp_millis_opt(ms)
            .single()
            .unwrap_or_else(Utc::now)
    }

    /// The simulator's clock in ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        Utc::now()
            .timestamp_millis()
            .saturating_add(self.clock_offset_ms.load(Ordering::Relaxed))
    }

    /// Moves the simulator's clock forward (or back) by `ms`.
    pub fn advance_clock(&self, ms: i64) -> i64 {
        self.clock_offset_ms
            .fetch_add(ms, Ordering::Relaxed)
            .saturating_add(ms)
    }

    /// Next message sequence number (global, so ids never repeat).
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Resolves a tenant path segment (GUID or domain, case-insensitive) to a tenant id.
    pub fn resolve_tenant(&self, segment: &str) -> Option<String> {
        let lower = segment.to_ascii_lowercase();
        if self.tenants.contains_key(&lower) {
            return Some(lower);
        }
        self.domains.get(&lower).map(|t| t.value().clone())
    }

    /// Registers (or replaces) a tenant.
    pub fn add_tenant(&self, id: &str, domains: &[String]) {
        let id = id.to_ascii_lowercase();
        let domains: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        for d in &domains {
            self.domains.insert(d.clone(), id.clone());
        }
        let mut entry = self.tenants.entry(id.clone()).or_insert_with(|| Tenant {
            id: id.clone(),
            domains: Vec::new(),
            users: Vec::new(),
        });
        for d in domains {
            if !entry.domains.contains(&d) {
                entry.domains.push(d);
            }
        }
    }

    /// Creates a mailbox if it does not exist yet; returns it.
    pub fn ensure_mailbox(&self, address: &str) -> Arc<Mailbox> {
        let lower = address.to_ascii_lowercase();
        self.mailboxes
            .entry(lower.clone())
            .or_insert_with(|| {
                let digest = Sha256::digest(lower.as_bytes());
                let tag = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
                Arc::new(Mailbox {
                    address: lower,
                    tag,
                    data: Mutex::new(MailboxData::default()),
                })
            })
            .value()
            .clone()
    }

    /// Looks a mailbox up by address (case-insensitive).
    pub fn mailbox(&self, address: &str) -> Option<Arc<Mailbox>> {
        self.mailboxes
            .get(&address.to_ascii_lowercase())
            .map(|m| m.value().clone())
    }

    /// Whether `upn` may read `mailbox` (its own, or granted).
    pub fn may_access(&self, upn: &str, mailbox: &str) -> bool {
        let mailbox = mailbox.to_ascii_lowercase();
        if upn == mailbox {
            return true;
        }
        self.users
            .get(upn)
            .map(|u| u.granted.contains(&mailbox))
            .unwrap_or(false)
    }

    /// Mints a signed token.
    #[allow(clippy::too_many_arguments)]
    pub fn mint(
        &self,
        kind: &str,
        upn: &str,
        client_id: &str,
        tenant_id: &str,
        scopes: &str,
        auth_ms: i64,
        exp_ms: i64,
    ) -> String {
        let claims = TokenClaims {
            k: kind.to_owned(),
            upn: upn.to_owned(),
            cid: client_id.to_owned(),
            tid: tenant_id.to_owned(),
            scp: scopes.to_owned(),
            iat: self.now_ms(),
            auth: auth_ms,
            exp: exp_ms,
            n: self.token_nonce.fetch_add(1, Ordering::Relaxed),
            g: 0,
        };
        self.sign(kind, &claims)
    }

    /// Mints a refresh token of `grant` (from [`Grants::open`] for a new authorization, or the
    /// presented token's on a refresh) and records it as unspent in the grant ledger.
    pub fn mint_refresh(
        &self,
        upn: &str,
        client_id: &str,
        tenant_id: &str,
        scopes: &str,
        auth_ms: i64,
        grant: u64,
    ) -> String {
        let claims = TokenClaims {
            k: "rt".to_owned(),
            upn: upn.to_owned(),
            cid: client_id.to_owned(),
            tid: tenant_id.to_owned(),
            scp: scopes.to_owned(),
            iat: self.now_ms(),
            auth: auth_ms,
            exp: 0,
            n: self.token_nonce.fetch_add(1, Ordering::Relaxed),
            g: grant,
        };
        self.grants.issued(grant, claims.n);
        self.sign("rt", &claims)
    }

    fn sign(&self, kind: &str, claims: &TokenClaims) -> String {
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let body = URL_SAFE_NO_PAD.encode(payload);
        let mac = self.mac(body.as_bytes());
        if kind == "rt" {
            format!("1.A{body}.{mac}")
        } else {
            format!("eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.{body}.{mac}")
        }
    }

    fn mac(&self, data: &[u8]) -> String {
        match <Hmac<Sha256> as Mac>::new_from_slice(&self.key) {
            Ok(mut m) => {
                m.update(data);
                URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
            }
            Err(_) => String::new(),
        }
    }

    /// Verifies a token's signature and kind; returns its claims.
    pub fn verify(&self, kind: &str, token: &str) -> Result<TokenClaims, TokenError> {
        let rest = if kind == "rt" {
            token.strip_prefix("1.A").ok_or(TokenError::Malformed)?
        } else {
            token
                .strip_prefix("eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.")
                .ok_or(TokenError::Malformed)?
        };
        let (body, mac) = rest.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let expected = self.mac(body.as_bytes());
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            mac.as_bytes(),
        )) {
            return Err(TokenError::BadSignature);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenError::Malformed)?;
        let claims: TokenClaims =
            serde_json::from_slice(&raw).map_err(|_| TokenError::Malformed)?;
        if claims.k != kind {
            return Err(TokenError::WrongKind);
        }
        Ok(claims)
    }

    /// Drops codes older than twice their lifetime, so the code map cannot grow without bound.
    pub fn purge_codes(&self) {
        if self.codes.len() < 10_000 {
            return;
        }
        let horizon = self.now_ms() - (self.limits.auth_code_lifetime_secs as i64) * 2000;
        self.codes.retain(|_, c| c.issued_ms >= horizon);
    }
}

/// Formats a message id. `immutable` selects the `ImmutableId` form; both decode to the same message.
pub fn message_id(tag: u32, seq: u64, immutable: bool) -> String {
    let mut raw = Vec::with_capacity(40);
    raw.extend_from_slice(&tag.to_be_bytes());
    raw.extend_from_slice(&[0, 0x46, 0, 0]);
    raw.extend_from_slice(&seq.to_be_bytes());
    raw.extend_from_slice(&[0x07, 0, 0x22, 0x22, 0xca, 0x8c, 0x6d, 0x88, 0xec, 0x4f]);
    let body = base64::engine::general_purpose::STANDARD
        .encode(raw)
        .replace('/', "-")
        .replace('+', "_");
    if immutable {
        format!("AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A{body}")
    } else {
        format!("AAMkAGI2TG93AAA{body}")
    }
}

/// Decodes a message id of either form into (mailbox tag, seq).
pub fn parse_message_id(id: &str) -> Option<(u32, u64)> {
    let body = id
        .strip_prefix("AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A")
        .or_else(|| id.strip_prefix("AAMkAGI2TG93AAA"))?;
    let std = body.replace('-', "/").replace('_', "+");
    let raw = base64::engine::general_purpose::STANDARD.decode(std).ok()?;
    if raw.len() != 26 {
        return None;
    }
    let tag = u32::from_be_bytes(raw.get(0..4)?.try_into().ok()?);
    let seq = u64::from_be_bytes(raw.get(8..16)?.try_into().ok()?);
    Some((tag, seq))
}

/// A deterministic GUID derived from a label (bulk provisioning).
pub fn det_guid(label: &str) -> String {
    let digest = Sha256::digest(label.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// A random GUID string.
pub fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Normalises a requested scope string into (resource scopes, oidc scopes, unknown scopes). Resource
/// scopes are Graph's short names (`Mail.Read`) and Exchange Online's fully qualified names
/// (`https://outlook.office.com/IMAP.AccessAsUser.All`); [`audience_of`] tells them apart.
pub fn split_scopes(scope: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut graph = Vec::new();
    let mut oidc = Vec::new();
    let mut unknown = Vec::new();
    for s in scope.split_whitespace() {
        let lower = s.to_ascii_lowercase();
        if ["openid", "profile", "email", "offline_access"].contains(&lower.as_str()) {
            if !oidc.contains(&lower) {
                oidc.push(lower);
            }
            continue;
        }
        if let Some(rest) = [
            "https://outlook.office.com/",
            "https://outlook.office365.com/",
        ]
        .iter()
        .find(|p| lower.starts_with(*p))
        .map(|p| &s[p.len()..])
        {
            let names: Vec<&str> = if rest == ".default" {
                KNOWN_OUTLOOK_SCOPES.to_vec()
            } else {
                match KNOWN_OUTLOOK_SCOPES
                    .iter()
                    .find(|k| k.eq_ignore_ascii_case(rest))
                {
                    Some(k) => vec![*k],
                    None => {
                        unknown.push(s.to_owned());
                        continue;
                    }
                }
            };
            for n in names {
                let full = format!("{OUTLOOK_RESOURCE}{n}");
                if !graph.contains(&full) {
                    graph.push(full);
                }
            }
            continue;
        }
        let short = if lower.starts_with(GRAPH_RESOURCE)
            || lower.starts_with("https://graph.microsoft.com/")
        {
            &s[GRAPH_RESOURCE.len()..]
        } else if lower.starts_with("00000003-0000-0000-c000-000000000000/") {
            &s["00000003-0000-0000-c000-000000000000/".len()..]
        } else if lower.contains("://") {
            unknown.push(s.to_owned());
            continue;
        } else {
            s
        };
        if short == ".default" {
            for k in KNOWN_GRAPH_SCOPES {
                if !graph.iter().any(|g: &String| g == k) {
                    graph.push((*k).to_owned());
                }
            }
            continue;
        }
        match KNOWN_GRAPH_SCOPES
            .iter()
            .find(|k| k.eq_ignore_ascii_case(short))
        {
            Some(k) => {
                if !graph.iter().any(|g: &String| g == k) {
                    graph.push((*k).to_owned());
                }
            }
            None => unknown.push(s.to_owned()),
        }
    }
    (graph, oidc, unknown)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn both_id_forms_decode_to_the_same_message_and_differ_in_form() {
        let d = message_id(0xdead_beef, 42, false);
        let i = message_id(0xdead_beef, 42, true);
        assert_ne!(d, i);
        assert!(d.starts_with("AAMk") && i.starts_with("AAkAL"));
        assert_eq!(parse_message_id(&d), Some((0xdead_beef, 42)));
        assert_eq!(parse_message_id(&i), Some((0xdead_beef, 42)));
        assert_eq!(parse_message_id("AAMkAGI2TG93AAAbad"), None);
        assert_eq!(
            parse_message_id(&d.to_lowercase()),
            None,
            "ids are case-sensitive"
        );
    }

    #[test]
    fn scopes_accept_bare_and_qualified_graph_names() {
        let (g, o, u) =
            split_scopes("offline_access https://graph.microsoft.com/Mail.ReadWrite.Shared openid");
        assert_eq!(g, ["Mail.ReadWrite.Shared"]);
        assert_eq!(o, ["offline_access", "openid"]);
        assert!(u.is_empty());
        let (g, _, _) = split_scopes("mail.readwrite.shared");
        assert_eq!(g, ["Mail.ReadWrite.Shared"]);
        let (g, _, u) = split_scopes(
            "https://outlook.office365.com/imap.accessasuser.all https://outlook.office.com/IMAP.Teleport Mail.Teleport",
        );
        assert_eq!(
            g,
            [IMAP_SCOPE],
            "Exchange Online scopes are kept fully qualified"
        );
        assert_eq!(audience_of(&g[0]), OUTLOOK_AUDIENCE);
        assert_eq!(u.len(), 2);
    }

    #[test]
    fn tokens_verify_only_with_this_instances_key_and_kind() {
        let limits = Limits {
            access_token_lifetime_secs: 3599,
            auth_code_lifetime_secs: 600,
            mailbox_concurrency: 4,
            mailbox_requests_per_10_min: 10_000,
            concurrency_retry_after_secs: 1.0,
            max_body_bytes: 1024,
            control_max_body_bytes: 1024,
        };
        let a = SimState::new(limits.clone());
        let b = SimState::new(limits);
        let rt = a.mint("rt", "u@x", "c", "t", "Mail.Read", 1, 0);
        assert_eq!(a.verify("rt", &rt).unwrap().upn, "u@x");
        assert_eq!(b.verify("rt", &rt).unwrap_err(), TokenError::BadSignature);
        assert!(a.verify("at", &rt).is_err());
        let mut tampered = rt.clone();
        tampered.insert(5, 'x');
        assert!(a.verify("rt", &tampered).is_err());
    }
}
