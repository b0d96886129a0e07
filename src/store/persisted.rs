//! The persisted shapes of every record: private serde structs (JSON), each with a format version
//! `v`, converted by hand from and to the public records in `records.rs`.
//!
//! Secret fields hold sealed text (see `crypto.rs`) bound to the record's name and the field's name.
//! A record whose `v` is newer than [`FORMAT_VERSION`] is refused with `UnsupportedVersion` rather
//! than half-read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::secret::{AccessToken, ClientSecret, PkceVerifier, RefreshToken};
use crate::domain::{
    AppCredential, ChannelId, ChannelStatus, ClientCertificate, ClientId, CredentialKind, Folder,
    Mailbox, TenantId,
};
use crate::store::crypto::Crypto;
use crate::store::error::StoreError;
use crate::store::records::{
    AppKey, AppRecord, AppSummary, ChannelRecord, Cursor, ErrorSource, FirstImport, LastError,
    LedgerEntry, LedgerState, PendingAuthorization, TokenSet,
};

/// The newest record format this build writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// The record names that secrets are bound to.
pub(crate) fn channel_record_name(id: ChannelId) -> String {
    format!("channel/{id}")
}
pub(crate) fn app_record_name(key: &AppKey) -> String {
    format!("app/{}", key.id())
}
pub(crate) fn tokens_record_name(id: ChannelId) -> String {
    format!("tokens/{id}")
}
pub(crate) fn pending_record_name(state: &str) -> String {
    format!("pending/{state}")
}

#[derive(Deserialize)]
struct Probe {
    v: u32,
}

/// The version of a record as this build writes it, `{"v":N,…`, read without parsing the rest;
/// `None` for anything else (the full probe then decides).
fn leading_version(bytes: &[u8]) -> Option<u32> {
    let rest = bytes.strip_prefix(b"{\"v\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 9 || !matches!(rest.get(digits), Some(b',' | b'}')) {
        return None;
    }
    rest.get(..digits)?.iter().try_fold(0u32, |v, d| {
        v.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

/// Checks the version of a stored record before it is decoded in full.
fn check_version(what: &str, bytes: &[u8]) -> Result<(), StoreError> {
    check_version_of(&|| what.to_owned(), bytes)
}

/// [`check_version`], naming the record only when it fails (`what` is called then).
fn check_version_of(what: &dyn Fn() -> String, bytes: &[u8]) -> Result<(), StoreError> {
    let v = match leading_version(bytes) {
        Some(v) => v,
        None => {
            let probe: Probe = serde_json::from_slice(bytes).map_err(|err| {
                StoreError::corrupt(what(), format!("it is not a versioned record: {err}"))
            })?;
            probe.v
        }
    };
    if v == 0 {
        return Err(StoreError::corrupt(what(), "its format version is 0"));
    }
    if v > FORMAT_VERSION {
        return Err(StoreError::UnsupportedVersion {
            what: what(),
            found: v,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    decode_of(&|| what.to_owned(), bytes)
}

/// [`decode`], naming the record only when it fails (the start decodes a million of them).
fn decode_of<T: for<'de> Deserialize<'de>>(
    what: &dyn Fn() -> String,
    bytes: &[u8],
) -> Result<T, StoreError> {
    check_version_of(what, bytes)?;
    serde_json::from_slice(bytes).map_err(|err| StoreError::corrupt(what(), err.to_string()))
}

fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value)
        .map_err(|err| StoreError::Engine(format!("could not encode {what}: {err}")))
}

fn seal(crypto: &Crypto, record: &str, field: &str, plain: &str) -> Result<String, StoreError> {
    crypto
        .seal(record, field, plain)
        .map_err(|_| StoreError::Engine(format!("could not encrypt {field} of {record}")))
}

fn open(
    crypto: &Crypto,
    record: &str,
    field: &str,
    sealed: &str,
) -> Result<zeroize::Zeroizing<String>, StoreError> {
    crypto
        .open(record, field, sealed)
        .map_err(|err| StoreError::corrupt(format!("{field} of {record}"), err.describe()))
}

/// A stored value that no longer passes its domain type's validation.
fn invalid(what: &str, field: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::corrupt(what, format!("its {field} is no longer valid: {err}"))
}

// ---------------------------------------------------------------------------------------------
// Channels

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum FirstImportV1 {
    AllUnread,
    OnlyNew,
    LastDays { days: u32 },
}

#[derive(Serialize, Deserialize)]
struct LastErrorV1 {
    source: String,
    code: String,
    message: String,
    remedy: String,
    #[serde(deserialize_with = "timestamp::deserialize")]
    at: DateTime<Utc>,
    trace_id: Option<String>,
    correlation_id: Option<String>,
}

/// Timestamps as chrono writes them (RFC 3339), read with chrono's RFC 3339 parser, several times
/// faster than the general one its `Deserialize` uses (the start reads five per channel record, a
/// million records); anything else falls back to that general parser, so nothing stored reads
/// differently.
mod timestamp {
    use chrono::{DateTime, FixedOffset, Utc};
    use serde::Deserializer;
    use serde::de::{Error, Visitor};

    fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
        DateTime::parse_from_rfc3339(text)
            .or_else(|_| text.parse::<DateTime<FixedOffset>>())
            .map(|at| at.with_timezone(&Utc))
    }

    struct Text;

    impl Visitor<'_> for Text {
        type Value = DateTime<Utc>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an RFC 3339 date and time")
        }

        fn visit_str<E: Error>(self, text: &str) -> Result<Self::Value, E> {
            parse(text).map_err(E::custom)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        d.deserialize_str(Text)
    }

    /// The same for an optional timestamp (`null` or absent: `None`).
    pub(super) mod option {
        use chrono::{DateTime, Utc};
        use serde::Deserializer;
        use serde::de::{Error, Visitor};

        struct Maybe;

        impl<'de> Visitor<'de> for Maybe {
            type Value = Option<DateTime<Utc>>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an RFC 3339 date and time or null")
            }

            fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                super::deserialize(d).map(Some)
            }
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            d.deserialize_option(Maybe)
        }
    }
}

#[derive(Serialize, Deserialize)]
struct ChannelV1 {
    v: u32,
    name: String,
    tenant_id: String,
    client_id: String,
    /// Sealed. Only in records written before apps were records of their own: the store moves it
    /// into the channel's app when it opens ([`legacy_channel_secret`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "timestamp::option::deserialize"
    )]
    client_secret_expires_at: Option<DateTime<Utc>>,
    mailbox: String,
    folder: String,
    enabled: bool,
    first_import: FirstImportV1,
    /// `delta` or `unread`; absent: the daemon's `polling.mode` (records before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    poll_mode: Option<String>,
    /// `graph` or `imap`; absent: graph (records before IMAP existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transport: Option<String>,
    #[serde(deserialize_with = "timestamp::deserialize")]
    created_at: DateTime<Utc>,
    #[serde(deserialize_with = "timestamp::deserialize")]
    updated_at: DateTime<Utc>,
    #[serde(default, deserialize_with = "timestamp::option::deserialize")]
    activated_at: Option<DateTime<Utc>>,
    status: String,
    last_error: Option<LastErrorV1>,
    #[serde(default, deserialize_with = "timestamp::option::deserialize")]
    last_poll_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "timestamp::option::deserialize")]
    last_success_at: Option<DateTime<Utc>>,
}

pub(crate) fn encode_channel(rec: &ChannelRecord) -> Result<Vec<u8>, StoreError> {
    let record = channel_record_name(rec.id);
    let stored = ChannelV1 {
        v: FORMAT_VERSION,
        name: rec.name.to_string(),
        tenant_id: rec.tenant_id.as_str().to_owned(),
        client_id: rec.client_id.as_str().to_owned(),
        client_secret: None,
        client_secret_expires_at: None,
        mailbox: rec.mailbox.as_str().to_owned(),
        folder: rec.folder.as_str().to_owned(),
        enabled: rec.enabled,
        first_import: match rec.first_import {
            FirstImport::AllUnread => FirstImportV1::AllUnread,
            FirstImport::OnlyNew => FirstImportV1::OnlyNew,
            FirstImport::LastDays(days) => FirstImportV1::LastDays { days },
        },
        poll_mode: rec.poll_mode.map(|m| m.as_str().to_owned()),
        transport: match rec.transport {
            crate::domain::Transport::Graph => None,
            other => Some(other.as_str().to_owned()),
        },
        created_at: rec.created_at,
        updated_at: rec.updated_at,
        activated_at: rec.activated_at,
        status: rec.status.as_str().to_owned(),
        last_error: rec.last_error.as_ref().map(|e| LastErrorV1 {
            source: e.source.as_str().to_owned(),
            code: e.code.clone(),
            message: e.message.clone(),
            remedy: e.remedy.clone(),
            at: e.at,
            trace_id: e.trace_id.clone(),
            correlation_id: e.correlation_id.clone(),
        }),
        last_poll_at: rec.last_poll_at,
        last_success_at: rec.last_success_at,
    };
    encode(&record, &stored)
}

pub(crate) fn decode_channel(id: ChannelId, bytes: &[u8]) -> Result<ChannelRecord, StoreError> {
    let record = || channel_record_name(id);
    let s: ChannelV1 = decode_of(&record, bytes)?;
    let last_error = match s.last_error {
        None => None,
        Some(e) => Some(Box::new(LastError {
            source: ErrorSource::from_name(&e.source).ok_or_else(|| {
                invalid(&record(), "last error source", format!("{:?}", e.source))
            })?,
            code: e.code,
            message: e.message,
            remedy: e.remedy,
            at: e.at,
            trace_id: e.trace_id,
            correlation_id: e.correlation_id,
        })),
    };
    Ok(ChannelRecord {
        id,
        name: s.name.into(),
        tenant_id: TenantId::parse(&s.tenant_id).map_err(|e| invalid(&record(), "tenant id", e))?,
        client_id: ClientId::parse(&s.client_id).map_err(|e| invalid(&record(), "client id", e))?,
        mailbox: Mailbox::parse(&s.mailbox).map_err(|e| invalid(&record(), "mailbox", e))?,
        folder: Folder::parse(&s.folder).map_err(|e| invalid(&record(), "folder", e))?,
        enabled: s.enabled,
        first_import: match s.first_import {
            FirstImportV1::AllUnread => FirstImport::AllUnread,
            FirstImportV1::OnlyNew => FirstImport::OnlyNew,
            FirstImportV1::LastDays { days } => FirstImport::LastDays(days),
        },
        poll_mode: match s.poll_mode.as_deref() {
            None => None,
            Some(name) => Some(
                crate::domain::PollMode::parse(name)
                    .ok_or_else(|| invalid(&record(), "poll mode", format!("{name:?}")))?,
            ),
        },
        transport: match s.transport.as_deref() {
            None => crate::domain::Transport::Graph,
            Some(name) => crate::domain::Transport::parse(name)
                .ok_or_else(|| invalid(&record(), "transport", format!("{name:?}")))?,
        },
        created_at: s.created_at,
        updated_at: s.updated_at,
        activated_at: s.activated_at,
        status: s
            .status
            .parse::<ChannelStatus>()
            .map_err(|e| invalid(&record(), "status", e))?,
        last_error,
        last_poll_at: s.last_poll_at,
        last_success_at: s.last_success_at,
    })
}

/// A client secret with its expiry, as channel records from before apps held it.
pub(crate) type LegacySecret = (ClientSecret, Option<DateTime<Utc>>);

/// The client secret a channel record from before apps still carries, with its expiry: `None` for
/// a current record.
pub(crate) fn legacy_channel_secret(
    crypto: &Crypto,
    id: ChannelId,
    bytes: &[u8],
) -> Result<Option<LegacySecret>, StoreError> {
    let record = channel_record_name(id);
    let s: ChannelV1 = decode(&record, bytes)?;
    let Some(sealed) = s.client_secret else {
        return Ok(None);
    };
    let secret = open(crypto, &record, "client_secret", &sealed)?;
    let secret =
        ClientSecret::new(secret.as_str()).map_err(|e| invalid(&record, "client secret", e))?;
    Ok(Some((secret, s.client_secret_expires_at)))
}

// ---------------------------------------------------------------------------------------------
// Apps

#[derive(Serialize, Deserialize)]
struct AppV1 {
    v: u32,
    tenant_id: String,
    client_id: String,
    name: String,
    /// `secret` or `certificate`.
    kind: String,
    /// Sealed: the secret's value, or the certificate's PEM (certificate and private key).
    credential: String,
    /// When the credential expires: a secret's as the operator gave it, a certificate's `notAfter`.
    /// In the clear, like the rest but `credential`, so listings decrypt nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
    /// A certificate's SHA-1 thumbprint (hex) and subject: public parts of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    thumbprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotated_at: Option<DateTime<Utc>>,
}

pub(crate) fn encode_app(crypto: &Crypto, app: &AppRecord) -> Result<Vec<u8>, StoreError> {
    let record = app_record_name(&app.key());
    let summary = app.summary();
    let plain = match &app.credential {
        AppCredential::Secret { secret, .. } => secret.expose(),
        AppCredential::Certificate(cert) => cert.expose_pem(),
    };
    let stored = AppV1 {
        v: FORMAT_VERSION,
        tenant_id: app.tenant_id.as_str().to_owned(),
        client_id: app.client_id.as_str().to_owned(),
        name: app.name.clone(),
        kind: summary.kind.as_str().to_owned(),
        credential: seal(crypto, &record, "credential", plain)?,
        expires_at: summary.expires_at,
        thumbprint: summary.thumbprint,
        subject: summary.subject,
        created_at: app.created_at,
        updated_at: app.updated_at,
        rotated_at: app.rotated_at,
    };
    encode(&record, &stored)
}

pub(crate) fn decode_app(crypto: &Crypto, bytes: &[u8]) -> Result<AppRecord, StoreError> {
    let s: AppV1 = decode("an app record", bytes)?;
    let what = format!("app/{}/{}", s.tenant_id, s.client_id);
    let tenant_id = TenantId::parse(&s.tenant_id).map_err(|e| invalid(&what, "tenant id", e))?;
    let client_id = ClientId::parse(&s.client_id).map_err(|e| invalid(&what, "client id", e))?;
    let record = app_record_name(&AppKey::new(tenant_id.clone(), client_id.clone()));
    let plain = open(crypto, &record, "credential", &s.credential)?;
    let credential = match s.kind.as_str() {
        "secret" => AppCredential::Secret {
            secret: ClientSecret::new(plain.as_str())
                .map_err(|e| invalid(&record, "client secret", e))?,
            expires_at: s.expires_at,
        },
        "certificate" => AppCredential::Certificate(Box::new(
            ClientCertificate::from_pem(plain.as_str())
                .map_err(|e| invalid(&record, "certificate", e))?,
        )),
        other => return Err(invalid(&record, "credential kind", format!("{other:?}"))),
    };
    Ok(AppRecord {
        tenant_id,
        client_id,
        name: s.name,
        credential,
        created_at: s.created_at,
        updated_at: s.updated_at,
        rotated_at: s.rotated_at,
    })
}

/// An app record's summary, read without decrypting its credential.
pub(crate) fn decode_app_summary(bytes: &[u8]) -> Result<AppSummary, StoreError> {
    let s: AppV1 = decode("an app record", bytes)?;
    let what = format!("app/{}/{}", s.tenant_id, s.client_id);
    Ok(AppSummary {
        tenant_id: TenantId::parse(&s.tenant_id).map_err(|e| invalid(&what, "tenant id", e))?,
        client_id: ClientId::parse(&s.client_id).map_err(|e| invalid(&what, "client id", e))?,
        name: s.name,
        kind: match s.kind.as_str() {
            "secret" => CredentialKind::Secret,
            "certificate" => CredentialKind::Certificate,
            other => return Err(invalid(&what, "credential kind", format!("{other:?}"))),
        },
        expires_at: s.expires_at,
        thumbprint: s.thumbprint,
        subject: s.subject,
        created_at: s.created_at,
        updated_at: s.updated_at,
        rotated_at: s.rotated_at,
    })
}

/// What the daemon holds in memory of an app: its key, credential kind and expiry. Borrowed,
/// and the rest of the record (the sealed credential, times) skipped, so that reading a
/// million apps at start costs little more than scanning them.
#[derive(Deserialize)]
struct AppExpiryV1<'a> {
    #[serde(borrow)]
    tenant_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    client_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

/// An app's key, credential kind and expiry; `None` for an app whose credential does not expire
/// (its record has no `expires_at`, and is not decoded: a string cannot fake the field's name,
/// its quotes would be escaped).
pub(crate) fn decode_app_expiry(
    bytes: &[u8],
) -> Result<Option<(AppKey, CredentialKind, DateTime<Utc>)>, StoreError> {
    const WHAT: &str = "an app record";
    if memchr::memmem::find(bytes, b"\"expires_at\"").is_none() {
        return Ok(None);
    }
    check_version(WHAT, bytes)?;
    let s: AppExpiryV1<'_> =
        serde_json::from_slice(bytes).map_err(|err| StoreError::corrupt(WHAT, err.to_string()))?;
    let Some(at) = s.expires_at else {
        return Ok(None);
    };
    let what = format!("app/{}/{}", s.tenant_id, s.client_id);
    let key = AppKey {
        tenant_id: TenantId::parse(&s.tenant_id).map_err(|e| invalid(&what, "tenant id", e))?,
        client_id: ClientId::parse(&s.client_id).map_err(|e| invalid(&what, "client id", e))?,
    };
    let kind = match s.kind.as_ref() {
        "secret" => CredentialKind::Secret,
        "certificate" => CredentialKind::Certificate,
        other => return Err(invalid(&what, "credential kind", format!("{other:?}"))),
    };
    Ok(Some((key, kind, at)))
}

/// An `app_expiries` entry: the fields of an app record that [`decode_app_expiry`] reads, so one
/// decoder serves the index and the full records.
#[derive(Serialize)]
struct AppExpiryEntryV1<'a> {
    v: u32,
    tenant_id: &'a str,
    client_id: &'a str,
    kind: &'a str,
    expires_at: DateTime<Utc>,
}

/// Encodes the `app_expiries` entry of an app whose credential expires at `at`.
pub(crate) fn encode_app_expiry(
    key: &AppKey,
    kind: CredentialKind,
    at: DateTime<Utc>,
) -> Result<Vec<u8>, StoreError> {
    encode(
        "an app expiry",
        &AppExpiryEntryV1 {
            v: FORMAT_VERSION,
            tenant_id: key.tenant_id.as_str(),
            client_id: key.client_id.as_str(),
            kind: kind.as_str(),
            expires_at: at,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[derive(Serialize, Deserialize)]
struct TokensV1 {
    v: u32,
    /// Sealed.
    access_token: String,
    access_expires_at: DateTime<Utc>,
    /// Sealed.
    refresh_token: String,
    scope: String,
    obtained_at: DateTime<Utc>,
}

pub(crate) fn encode_tokens(
    crypto: &Crypto,
    id: ChannelId,
    tokens: &TokenSet,
) -> Result<Vec<u8>, StoreError> {
    let record = tokens_record_name(id);
    let stored = TokensV1 {
        v: FORMAT_VERSION,
        access_token: seal(
            crypto,
            &record,
            "access_token",
            tokens.access_token.expose(),
        )?,
        access_expires_at: tokens.access_expires_at,
        refresh_token: seal(
            crypto,
            &record,
            "refresh_token",
            tokens.refresh_token.expose(),
        )?,
        scope: tokens.scope.clone(),
        obtained_at: tokens.obtained_at,
    };
    encode(&record, &stored)
}

pub(crate) fn decode_tokens(
    crypto: &Crypto,
    id: ChannelId,
    bytes: &[u8],
) -> Result<TokenSet, StoreError> {
    let record = tokens_record_name(id);
    let s: TokensV1 = decode(&record, bytes)?;
    let access = open(crypto, &record, "access_token", &s.access_token)?;
    let refresh = open(crypto, &record, "refresh_token", &s.refresh_token)?;
    Ok(TokenSet {
        access_token: AccessToken::new(access.as_str())
            .map_err(|e| invalid(&record, "access token", e))?,
        access_expires_at: s.access_expires_at,
        refresh_token: RefreshToken::new(refresh.as_str())
            .map_err(|e| invalid(&record, "refresh token", e))?,
        scope: s.scope,
        obtained_at: s.obtained_at,
    })
}

// ---------------------------------------------------------------------------------------------
// Cursors

#[derive(Serialize, Deserialize)]
struct CursorV1 {
    v: u32,
    delta_link: Option<String>,
    last_received_at: Option<DateTime<Utc>>,
    /// The IMAP position `[uidvalidity, settled uid]`; absent for Graph-only channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    imap: Option<[u32; 2]>,
}

pub(crate) fn encode_cursor(id: ChannelId, cursor: &Cursor) -> Result<Vec<u8>, StoreError> {
    let stored = CursorV1 {
        v: FORMAT_VERSION,
        delta_link: cursor.delta_link.clone(),
        last_received_at: cursor.last_received_at,
        imap: cursor.imap.map(|c| [c.uid_validity, c.settled_uid]),
    };
    encode(&format!("cursor/{id}"), &stored)
}

pub(crate) fn decode_cursor(id: ChannelId, bytes: &[u8]) -> Result<Cursor, StoreError> {
    let s: CursorV1 = decode(&format!("cursor/{id}"), bytes)?;
    Ok(Cursor {
        delta_link: s.delta_link,
        last_received_at: s.last_received_at,
        imap: s
            .imap
            .map(|[uid_validity, settled_uid]| crate::store::ImapCursor {
                uid_validity,
                settled_uid,
            }),
    })
}

// ---------------------------------------------------------------------------------------------
// Ledger (written often: short field names keep entries small)

#[derive(Serialize, Deserialize)]
struct LedgerV1<'a> {
    v: u32,
    /// Borrowed both ways: a state name never needs escaping, so decoding allocates nothing for it.
    #[serde(rename = "s", borrow)]
    state: std::borrow::Cow<'a, str>,
    #[serde(rename = "f")]
    failures: u32,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none", borrow)]
    last_error: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    received_at: Option<DateTime<Utc>>,
    #[serde(rename = "c")]
    first_seen_at: DateTime<Utc>,
    #[serde(rename = "u")]
    updated_at: DateTime<Utc>,
}

pub(crate) fn encode_ledger(entry: &LedgerEntry) -> Result<Vec<u8>, StoreError> {
    let stored = LedgerV1 {
        v: FORMAT_VERSION,
        state: std::borrow::Cow::Borrowed(entry.state.as_str()),
        failures: entry.failures,
        last_error: entry.last_error.as_deref().map(std::borrow::Cow::Borrowed),
        received_at: entry.received_at,
        first_seen_at: entry.first_seen_at,
        updated_at: entry.updated_at,
    };
    encode("ledger entry", &stored)
}

/// Parses a ledger entry in one pass; the version probe runs only to explain an entry that does
/// not parse or carries an unknown version (a newer format is refused as such, not as corrupt).
fn parse_ledger<'a, T: Deserialize<'a>>(
    what: &dyn Fn() -> String,
    bytes: &'a [u8],
    version: impl Fn(&T) -> u32,
) -> Result<T, StoreError> {
    let s: T = match serde_json::from_slice(bytes) {
        Ok(s) => s,
        Err(err) => {
            check_version(&what(), bytes)?;
            return Err(StoreError::corrupt(what(), err.to_string()));
        }
    };
    let v = version(&s);
    if v == 0 || v > FORMAT_VERSION {
        check_version(&what(), bytes)?;
    }
    Ok(s)
}

/// Only the state of a ledger entry: what a poll's sort needs (its timestamps are not parsed).
pub(crate) fn decode_ledger_state(
    what: &dyn Fn() -> String,
    bytes: &[u8],
) -> Result<LedgerState, StoreError> {
    #[derive(Deserialize)]
    struct StateOnly<'a> {
        v: u32,
        #[serde(rename = "s", borrow)]
        state: std::borrow::Cow<'a, str>,
    }
    let s: StateOnly<'_> = parse_ledger(what, bytes, |s: &StateOnly<'_>| s.v)?;
    LedgerState::from_name(&s.state)
        .ok_or_else(|| invalid(&what(), "state", format!("{:?}", s.state)))
}

/// Decodes a ledger entry; `what` names it and is called only when the entry cannot be read (the
/// ledger is read on every poll: no name is formatted for an entry that decodes).
pub(crate) fn decode_ledger(
    what: &dyn Fn() -> String,
    bytes: &[u8],
) -> Result<LedgerEntry, StoreError> {
    // One parse in the common case; the version probe only explains an entry that does not parse
    // (a newer format is refused as such, not as corrupt).
    let s: LedgerV1<'_> = parse_ledger(what, bytes, |s: &LedgerV1<'_>| s.v)?;
    Ok(LedgerEntry {
        state: LedgerState::from_name(&s.state)
            .ok_or_else(|| invalid(&what(), "state", format!("{:?}", s.state)))?,
        failures: s.failures,
        last_error: s.last_error.map(std::borrow::Cow::into_owned),
        received_at: s.received_at,
        first_seen_at: s.first_seen_at,
        updated_at: s.updated_at,
    })
}

// ---------------------------------------------------------------------------------------------
// Pending authorizations

/// A pending authorization, or the tombstone of a used one (no verifier, `used_at` set).
#[derive(Serialize, Deserialize)]
pub(crate) struct PendingV1 {
    v: u32,
    channel_id: String,
    /// Sealed; `None` once used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verifier: Option<String>,
    redirect_uri: String,
    created_at: DateTime<Utc>,
    pub(crate) expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) used_at: Option<DateTime<Utc>>,
}

impl PendingV1 {
    /// Whether this pending authorization belongs to `id`.
    pub(crate) fn is_for(&self, id: ChannelId) -> bool {
        ChannelId::parse(&self.channel_id).is_ok_and(|c| c == id)
    }

    /// The tombstone that replaces this record once it is taken: no secret left in it.
    pub(crate) fn used(&self, now: DateTime<Utc>) -> PendingV1 {
        PendingV1 {
            v: FORMAT_VERSION,
            channel_id: self.channel_id.clone(),
            verifier: None,
            redirect_uri: String::new(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            used_at: Some(now),
        }
    }
}

pub(crate) fn encode_pending(
    crypto: &Crypto,
    state: &str,
    pending: &PendingAuthorization,
) -> Result<Vec<u8>, StoreError> {
    let record = pending_record_name(state);
    let stored = PendingV1 {
        v: FORMAT_VERSION,
        channel_id: pending.channel_id.to_string(),
        verifier: Some(seal(
            crypto,
            &record,
            "verifier",
            pending.verifier.expose(),
        )?),
        redirect_uri: pending.redirect_uri.clone(),
        created_at: pending.created_at,
        expires_at: pending.expires_at,
        used_at: None,
    };
    encode(&record, &stored)
}

pub(crate) fn encode_pending_raw(state: &str, stored: &PendingV1) -> Result<Vec<u8>, StoreError> {
    encode(&pending_record_name(state), stored)
}

/// Decodes the stored shape without decrypting anything.
pub(crate) fn decode_pending_raw(state: &str, bytes: &[u8]) -> Result<PendingV1, StoreError> {
    decode(&pending_record_name(state), bytes)
}

/// Opens a pending record (not a tombstone) into the public type.
pub(crate) fn open_pending(
    crypto: &Crypto,
    state: &str,
    stored: PendingV1,
) -> Result<PendingAuthorization, StoreError> {
    let record = pending_record_name(state);
    let sealed = stored
        .verifier
        .ok_or_else(|| StoreError::corrupt(&record, "it has no verifier"))?;
    let verifier = open(crypto, &record, "verifier", &sealed)?;
    Ok(PendingAuthorization {
        channel_id: ChannelId::parse(&stored.channel_id)
            .map_err(|e| invalid(&record, "channel id", e))?,
        verifier: PkceVerifier::new(verifier.as_str())
            .map_err(|e| invalid(&record, "verifier", e))?,
        redirect_uri: stored.redirect_uri,
        created_at: stored.created_at,
        expires_at: stored.expires_at,
    })
}

// ---------------------------------------------------------------------------------------------
// Throttle floors

#[derive(Serialize, Deserialize)]
struct FloorV1 {
    v: u32,
    until: DateTime<Utc>,
}

fn floor_record_name(key: &str) -> String {
    format!("floor {key:?}")
}

pub(crate) fn encode_floor(key: &str, until: DateTime<Utc>) -> Result<Vec<u8>, StoreError> {
    let stored = FloorV1 {
        v: FORMAT_VERSION,
        until,
    };
    encode(&floor_record_name(key), &stored)
}

pub(crate) fn decode_floor(key: &str, bytes: &[u8]) -> Result<DateTime<Utc>, StoreError> {
    let s: FloorV1 = decode(&floor_record_name(key), bytes)?;
    Ok(s.until)
}

// ---------------------------------------------------------------------------------------------
// The key check file (beside the engine's files)

#[derive(Serialize, Deserialize)]
struct KeyCheckFileV1 {
    v: u32,
    /// The sealed marker, as the engine's key check holds it.
    marker: String,
}

pub(crate) fn encode_key_check_file(sealed_marker: &str) -> Result<Vec<u8>, StoreError> {
    let stored = KeyCheckFileV1 {
        v: FORMAT_VERSION,
        marker: sealed_marker.to_owned(),
    };
    encode("the key check file", &stored)
}

/// The sealed marker the file holds.
pub(crate) fn decode_key_check_file(what: &str, bytes: &[u8]) -> Result<String, StoreError> {
    let s: KeyCheckFileV1 = decode(what, bytes)?;
    Ok(s.marker)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::domain::secret::MasterKey;
    use crate::store::error::StoreErrorKind;

    #[test]
    fn newer_versions_are_refused_with_a_clear_error() {
        let err = decode_cursor(ChannelId::generate(), br#"{"v":7,"whatever":[1,2]}"#)
            .err()
            .unwrap();
        assert_eq!(err.kind(), StoreErrorKind::Incompatible);
        let shown = err.to_string();
        assert!(
            shown.contains("version 7") && shown.contains("newer inboxd"),
            "{shown}"
        );
    }

    #[test]
    fn unversioned_or_garbage_records_are_corrupt() {
        for bytes in [&b"{}"[..], b"not json", br#"{"v":0}"#, br#"{"v":"1"}"#] {
            let err = decode_cursor(ChannelId::generate(), bytes).err().unwrap();
            assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{bytes:?}");
        }
        // A v1 cursor whose fields are all absent is an empty cursor, not an error.
        assert_eq!(
            decode_cursor(ChannelId::generate(), br#"{"v":1}"#).unwrap(),
            Cursor::default()
        );
        let unknown_state =
            br#"{"v":1,"s":"lost","f":0,"c":"2024-01-01T00:00:00Z","u":"2024-01-01T00:00:00Z"}"#;
        let err = decode_ledger(&|| "ledger x".into(), unknown_state)
            .err()
            .unwrap();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt);
    }

    #[test]
    fn the_leading_version_is_read_only_from_records_shaped_as_this_build_writes_them() {
        assert_eq!(leading_version(br#"{"v":1,"x":2}"#), Some(1));
        assert_eq!(leading_version(br#"{"v":12}"#), Some(12));
        for other in [
            &br#"{"x":1,"v":1}"#[..],
            br#"{ "v":1}"#,
            br#"{"v":"1"}"#,
            br#"{"v":1.5}"#,
            br#"{"v":99999999999}"#,
            br#"{"v":}"#,
        ] {
            assert_eq!(leading_version(other), None, "{other:?}");
        }
        // Those the fast path leaves to the probe are still read or refused by it.
        let err = decode_cursor(ChannelId::generate(), br#"{"x":1,"v":3}"#)
            .err()
            .unwrap();
        assert_eq!(err.kind(), StoreErrorKind::Incompatible);
        assert_eq!(
            decode_cursor(ChannelId::generate(), br#"{ "v" : 1 }"#).unwrap(),
            Cursor::default()
        );
    }

    #[test]
    fn channel_timestamps_read_as_chrono_wrote_them_and_as_other_rfc3339_writers_do() {
        let id = ChannelId::generate();
        let record = |created: &str, poll: &str| {
            format!(
                r#"{{"v":1,"name":"n","tenant_id":"contoso.com","client_id":"00000000-0000-0000-0000-000000000001","mailbox":"a@contoso.com","folder":"inbox","enabled":true,"first_import":{{"kind":"all_unread"}},"created_at":{created},"updated_at":"2026-01-02T03:04:05.123456789Z","activated_at":null,"status":"active","last_error":null,"last_poll_at":{poll}}}"#
            )
        };
        let decoded =
            decode_channel(id, record(r#""2026-01-02T03:04:05Z""#, "null").as_bytes()).unwrap();
        assert_eq!(
            decoded.created_at,
            "2026-01-02T03:04:05Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(decoded.updated_at.timestamp_subsec_nanos(), 123_456_789);
        assert_eq!(decoded.activated_at, None);
        assert_eq!(decoded.last_poll_at, None);
        assert_eq!(decoded.last_success_at, None);
        // An offset, and a space for the T (the general parser's leniency), read as before.
        let decoded = decode_channel(
            id,
            record(
                r#""2026-01-02T05:04:05+02:00""#,
                r#""2026-01-02 03:04:05Z""#,
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            decoded.created_at,
            "2026-01-02T03:04:05Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            decoded.last_poll_at,
            Some("2026-01-02T03:04:05Z".parse::<DateTime<Utc>>().unwrap())
        );
        let err = decode_channel(id, record(r#""yesterday""#, "null").as_bytes())
            .err()
            .unwrap();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt);
        assert!(err.to_string().contains(&format!("channel/{id}")), "{err}");
    }

    #[test]
    fn floors_and_the_key_check_file_round_trip_and_are_versioned() {
        let until = Utc::now();
        let bytes = encode_floor("app/box@contoso.com", until).unwrap();
        assert_eq!(decode_floor("app/box@contoso.com", &bytes).unwrap(), until);
        let err = decode_floor("k", br#"{"v":9,"until":"2024-01-01T00:00:00Z"}"#)
            .err()
            .unwrap();
        assert_eq!(err.kind(), StoreErrorKind::Incompatible);
        let bytes = encode_key_check_file("c2VhbGVk").unwrap();
        assert_eq!(decode_key_check_file("f", &bytes).unwrap(), "c2VhbGVk");
        let err = decode_key_check_file("f", b"garbage").err().unwrap();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt);
    }

    #[test]
    fn pending_tombstones_hold_no_secret() {
        let crypto = Crypto::new(&MasterKey::generate());
        let pending = PendingAuthorization {
            channel_id: ChannelId::generate(),
            verifier: PkceVerifier::new("v".repeat(50)).unwrap(),
            redirect_uri: "http://127.0.0.1/oauth/callback".into(),
            created_at: Utc::now(),
            expires_at: Utc::now(),
        };
        let bytes = encode_pending(&crypto, "st", &pending).unwrap();
        let stored = decode_pending_raw("st", &bytes).unwrap();
        assert!(stored.is_for(pending.channel_id));
        let tomb = encode_pending_raw("st", &stored.used(Utc::now())).unwrap();
        let text = String::from_utf8(tomb).unwrap();
        assert!(!text.contains("verifier"), "{text}");
        let opened = open_pending(&crypto, "st", stored).unwrap();
        assert_eq!(opened, pending);
    }
}
