//! The store's test suite, written against the public API of `inboxd::store` only, so that another
//! storage engine behind the same API must pass it unchanged (garage's `db` test-suite habit). Every
//! test of the first part runs once per engine (sled, memory and PostgreSQL, each PostgreSQL test in
//! a database of its own from the test kit's `PgTestDb`, see `every_engine!`); the second
//! part is about sled's files (persistence, locks, permissions, the key check file) and runs on sled
//! only. The one exception to "public API only" is the `raw_get`/`raw_put` pair, which any engine
//! can offer: it lets the tamper tests copy stored bytes from one record to another. It is a test
//! hook (inboxd's `test-hooks` feature, turned on for tests and benches by the dev-only test kit),
//! absent from the product binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use chrono::{DateTime, Duration, TimeZone as _, Utc};
use inboxd::domain::AppCredential;
use inboxd::domain::secret::{AccessToken, ClientSecret, MasterKey, PkceVerifier, RefreshToken};
use inboxd::domain::{ChannelId, ChannelStatus, ClientId, Folder, Mailbox, TenantId};
use inboxd::store::{
    AppKey, AppRecord, ChannelRecord, ChannelState, Cursor, ErrorSource, FirstImport, LastError,
    LedgerEntry, LedgerState, MAX_FLOOR_KEY_BYTES, PendingAuthorization, PendingLookup, PgOptions,
    RawKind, Store, StoreErrorKind, StoreOptions, TokenSet,
};

/// The engines the first part of the suite runs against.
#[derive(Debug, Clone, Copy)]
enum Engine {
    Sled,
    Memory,
    Postgres,
}

/// A fresh, empty store of one engine; keeps the sled store's directory (or the PostgreSQL
/// database) alive while it lives. The store is dropped first.
struct Fresh {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    _db: Option<inboxd_testkit::PgTestDb>,
}

impl std::ops::Deref for Fresh {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

fn fresh(engine: Engine) -> Fresh {
    let key = MasterKey::generate();
    match engine {
        Engine::Sled => {
            let dir = tempfile::tempdir().unwrap();
            Fresh {
                store: open(dir.path(), &key),
                _dir: Some(dir),
                _db: None,
            }
        }
        Engine::Memory => Fresh {
            store: Store::in_memory(key).unwrap(),
            _dir: None,
            _db: None,
        },
        Engine::Postgres => {
            let db = inboxd_testkit::PgTestDb::create();
            let options = PgOptions {
                pool: 4,
                node_id: "store-suite".to_owned(),
            };
            Fresh {
                store: Store::open_postgres(db.url(), key, options).unwrap(),
                _dir: None,
                _db: Some(db),
            }
        }
    }
}

/// Instantiates each named test once per engine: `on_sled::NAME`, `in_memory::NAME` and
/// `on_postgres::NAME`.
macro_rules! every_engine {
    ($($name:ident),+ $(,)?) => {
        mod on_sled {
            $(#[test]
            fn $name() {
                super::$name(super::Engine::Sled)
            })+
        }
        mod in_memory {
            $(#[test]
            fn $name() {
                super::$name(super::Engine::Memory)
            })+
        }
        mod on_postgres {
            $(#[test]
            fn $name() {
                super::$name(super::Engine::Postgres)
            })+
        }
    };
}

fn open(dir: &Path, key: &MasterKey) -> Store {
    Store::open(dir, key.clone(), StoreOptions::default()).unwrap()
}

/// Opens a store that was just closed: sled's background threads may hold its lock a moment
/// longer when the machine is busy.
fn reopen(dir: &Path, key: &MasterKey) -> Store {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Store::open(dir, key.clone(), StoreOptions::default()) {
            Err(err)
                if err.kind() == StoreErrorKind::Locked && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
}

/// A time with sub-second digits, so that lost precision shows.
fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 123_456_789)
        .unwrap()
}

fn full_channel(n: u32) -> ChannelRecord {
    ChannelRecord {
        id: ChannelId::generate(),
        name: format!("Support desk {n} – ünïcode").into(),
        tenant_id: TenantId::parse("72f988bf-86f1-41af-91ab-2d7cd011db47").unwrap(),
        client_id: ClientId::parse("00000000-0000-0000-0000-000000000001").unwrap(),
        mailbox: Mailbox::parse(&format!("support{n}@contoso.com")).unwrap(),
        folder: Folder::parse("AAMkAGI2=").unwrap(),
        enabled: true,
        first_import: FirstImport::LastDays(30),
        poll_mode: Some(inboxd::domain::PollMode::Unread),
        transport: inboxd::domain::Transport::Graph,
        created_at: at(1),
        updated_at: at(2),
        activated_at: Some(at(3)),
        status: ChannelStatus::BackingOff,
        last_error: Some(Box::new(LastError {
            source: ErrorSource::Graph,
            code: "ApplicationThrottled".into(),
            message: "Too many requests".into(),
            remedy: "inboxd retries on its own".into(),
            at: at(4),
            trace_id: Some("trace-1".into()),
            correlation_id: Some("corr-1".into()),
        })),
        last_poll_at: Some(at(5)),
        last_success_at: Some(at(6)),
    }
}

fn bare_channel(n: u32) -> ChannelRecord {
    ChannelRecord {
        id: ChannelId::generate(),
        name: String::new().into(),
        tenant_id: TenantId::parse("contoso.com").unwrap(),
        client_id: ClientId::parse("00000000-0000-0000-0000-000000000002").unwrap(),
        mailbox: Mailbox::parse(&format!("bare{n}@contoso.com")).unwrap(),
        folder: Folder::inbox(),
        enabled: false,
        first_import: FirstImport::AllUnread,
        poll_mode: None,
        transport: inboxd::domain::Transport::Graph,
        created_at: at(10),
        updated_at: at(10),
        activated_at: None,
        status: ChannelStatus::AwaitingAuthorization,
        last_error: None,
        last_poll_at: None,
        last_success_at: None,
    }
}

fn tokens(tag: &str) -> TokenSet {
    TokenSet {
        access_token: AccessToken::new(format!("access-{tag}")).unwrap(),
        access_expires_at: at(3600),
        refresh_token: RefreshToken::new(format!("refresh-{tag}")).unwrap(),
        scope: "https://graph.microsoft.com/Mail.ReadWrite.Shared offline_access".into(),
        obtained_at: at(0),
    }
}

fn entry(state: LedgerState, updated: i64) -> LedgerEntry {
    LedgerEntry {
        state,
        failures: 0,
        last_error: None,
        received_at: None,
        first_seen_at: at(0),
        updated_at: at(updated),
    }
}

fn pending(
    channel_id: ChannelId,
    verifier: &str,
    expires_at: DateTime<Utc>,
) -> PendingAuthorization {
    PendingAuthorization {
        channel_id,
        verifier: PkceVerifier::new(verifier).unwrap(),
        redirect_uri: "http://127.0.0.1:8080/oauth/callback".into(),
        created_at: at(0),
        expires_at,
    }
}

fn verifier(tag: char) -> String {
    std::iter::repeat_n(tag, 50).collect()
}

// ---------------------------------------------------------------------------------------------
// Every engine

every_engine!(
    channels_round_trip_with_every_option_and_variant,
    apps_round_trip_with_a_secret_or_a_certificate,
    tokens_and_cursors_round_trip,
    ledger_round_trips_every_state_and_keeps_ids_case_sensitive,
    ledger_prune_removes_only_old_marked_read_entries,
    pending_authorizations_are_single_use_and_expire,
    prune_pending_removes_expired_states_and_old_tombstones,
    meta_round_trips,
    concurrent_writers_all_land,
    delete_channel_removes_everything_of_that_channel_only,
    channels_list_sorted_and_page_without_gaps_or_repeats,
    a_ciphertext_moved_to_another_record_or_damaged_does_not_decrypt,
    simultaneous_takes_of_one_state_succeed_once,
    flush_async_completes,
    update_channel_state_changes_run_time_fields_only,
    floors_round_trip_list_sorted_and_delete,
    prune_floors_removes_only_floors_that_have_passed,
    bad_floor_keys_are_refused_and_change_nothing,
    channel_events_keep_the_newest_and_go_with_their_channel,
    invitations_work_once_until_they_expire_or_are_revoked,
);

fn channels_round_trip_with_every_option_and_variant(engine: Engine) {
    let store = fresh(engine);
    assert_eq!(store.get_channel(ChannelId::generate()).unwrap(), None);

    let mut written = vec![full_channel(1), bare_channel(2)];
    let imports = [
        FirstImport::AllUnread,
        FirstImport::OnlyNew,
        FirstImport::LastDays(0),
        FirstImport::LastDays(u32::MAX),
    ];
    for (i, first_import) in imports.into_iter().enumerate() {
        let mut ch = full_channel(10 + i as u32);
        ch.first_import = first_import;
        written.push(ch);
    }
    for (i, status) in ChannelStatus::ALL.into_iter().enumerate() {
        let mut ch = full_channel(20 + i as u32);
        ch.status = status;
        written.push(ch);
    }
    for (i, source) in ErrorSource::ALL.into_iter().enumerate() {
        let mut ch = full_channel(30 + i as u32);
        if let Some(err) = ch.last_error.as_mut() {
            err.source = source;
            err.trace_id = None;
            err.correlation_id = None;
        }
        written.push(ch);
    }
    for ch in &written {
        store.put_channel(ch).unwrap();
    }
    for ch in &written {
        assert_eq!(store.get_channel(ch.id).unwrap().as_ref(), Some(ch));
    }

    // Replacing a channel keeps one record with the new values.
    let mut changed = written[0].clone();
    changed.name = "renamed desk".into();
    changed.last_error = None;
    store.put_channel(&changed).unwrap();
    assert_eq!(store.get_channel(changed.id).unwrap(), Some(changed));
    assert_eq!(store.count_channels().unwrap(), written.len());
}

fn apps_round_trip_with_a_secret_or_a_certificate(engine: Engine) {
    let store = fresh(engine);
    let tenant = TenantId::parse("contoso.com").unwrap();
    let with_secret = AppRecord {
        tenant_id: tenant.clone(),
        client_id: ClientId::parse("00000000-0000-0000-0000-00000000000a").unwrap(),
        name: "secret app".into(),
        credential: AppCredential::Secret {
            secret: ClientSecret::new("app-secret-value").unwrap(),
            expires_at: Some(at(99)),
        },
        created_at: at(1),
        updated_at: at(2),
        rotated_at: None,
    };
    let pem =
        inboxd_testkit::certificate_pem("app", chrono::Utc::now() + chrono::Duration::days(9))
            .unwrap();
    let with_certificate = AppRecord {
        tenant_id: tenant.clone(),
        client_id: ClientId::parse("00000000-0000-0000-0000-00000000000b").unwrap(),
        name: String::new(),
        credential: AppCredential::Certificate(Box::new(
            inboxd::domain::ClientCertificate::from_pem(&pem).unwrap(),
        )),
        created_at: at(1),
        updated_at: at(3),
        rotated_at: Some(at(3)),
    };
    assert_eq!(store.get_app(&with_secret.key()).unwrap(), None);
    store.put_app(&with_secret).unwrap();
    store
        .put_apps(std::slice::from_ref(&with_certificate))
        .unwrap();
    assert_eq!(
        store.get_app(&with_secret.key()).unwrap().as_ref(),
        Some(&with_secret)
    );
    assert_eq!(
        store.get_app(&with_certificate.key()).unwrap().as_ref(),
        Some(&with_certificate)
    );
    // The listing decrypts nothing and shows the certificate's public parts.
    let listed = store.list_apps().unwrap();
    assert_eq!(
        listed,
        vec![with_secret.summary(), with_certificate.summary()]
    );
    assert_eq!(
        listed[1].expires_at,
        with_certificate.credential.expires_at()
    );
    assert!(listed[1].thumbprint.as_ref().is_some_and(|t| t.len() == 40));
    let key = AppKey::parse(&with_secret.key().id()).unwrap();
    assert!(store.delete_app(&key).unwrap());
    assert!(!store.delete_app(&key).unwrap());
    assert_eq!(store.list_apps().unwrap().len(), 1);
}

fn tokens_and_cursors_round_trip(engine: Engine) {
    let store = fresh(engine);
    let id = ChannelId::generate();
    assert_eq!(store.get_tokens(id).unwrap(), None);
    assert_eq!(store.get_cursor(id).unwrap(), None);

    store.put_tokens(id, &tokens("one")).unwrap();
    assert_eq!(store.get_tokens(id).unwrap(), Some(tokens("one")));
    store.put_tokens(id, &tokens("two")).unwrap();
    assert_eq!(store.get_tokens(id).unwrap(), Some(tokens("two")));
    assert!(store.delete_tokens(id).unwrap());
    assert!(!store.delete_tokens(id).unwrap());
    assert_eq!(store.get_tokens(id).unwrap(), None);

    for cursor in [
        Cursor::default(),
        Cursor {
            delta_link: Some("https://graph.microsoft.com/v1.0/users/a@b.c/mailFolders/inbox/messages/delta?$deltatoken=AbC".into()),
            last_received_at: Some(at(42)),
            imap: None,
        },
        // An IMAP channel's position (UIDVALIDITY, settled UID) round-trips too.
        Cursor {
            delta_link: None,
            last_received_at: Some(at(43)),
            imap: Some(inboxd::store::ImapCursor {
                uid_validity: 1_700_000_000,
                settled_uid: 4711,
            }),
        },
    ] {
        store.put_cursor(id, &cursor).unwrap();
        assert_eq!(store.get_cursor(id).unwrap(), Some(cursor));
    }
}

fn ledger_round_trips_every_state_and_keeps_ids_case_sensitive(engine: Engine) {
    let store = fresh(engine);
    let id = ChannelId::generate();
    assert_eq!(store.ledger_get(id, "missing").unwrap(), None);

    for (i, state) in LedgerState::ALL.into_iter().enumerate() {
        let e = LedgerEntry {
            state,
            failures: i as u32,
            last_error: Some(format!("error {i}")),
            received_at: Some(at(i as i64)),
            first_seen_at: at(100),
            updated_at: at(200 + i as i64),
        };
        let message_id = format!("AAMkAD{i}=");
        store.ledger_put(id, &message_id, &e).unwrap();
        assert_eq!(store.ledger_get(id, &message_id).unwrap(), Some(e));
    }
    // Graph ids differ by case only: two entries.
    store
        .ledger_put(id, "AbC", &entry(LedgerState::Discovered, 1))
        .unwrap();
    store
        .ledger_put(id, "aBc", &entry(LedgerState::Delivered, 1))
        .unwrap();
    assert_eq!(
        store.ledger_get(id, "AbC").unwrap().unwrap().state,
        LedgerState::Discovered
    );
    assert_eq!(
        store.ledger_get(id, "aBc").unwrap().unwrap().state,
        LedgerState::Delivered
    );
    assert_eq!(store.ledger_get(id, "abc").unwrap(), None);
    assert_eq!(store.ledger_count(id).unwrap(), LedgerState::ALL.len() + 2);

    // One batch of many.
    let batch: Vec<(String, LedgerEntry)> = (0..50)
        .map(|i| (format!("batch-{i:03}"), entry(LedgerState::Delivering, i)))
        .collect();
    store.ledger_put_many(id, &batch).unwrap();
    assert_eq!(
        store.ledger_count(id).unwrap(),
        LedgerState::ALL.len() + 2 + 50
    );

    // Listing filters by state and honours the limit.
    let delivering = store
        .ledger_list(id, Some(LedgerState::Delivering), 1000)
        .unwrap();
    assert_eq!(delivering.len(), 51);
    assert!(
        delivering
            .iter()
            .all(|(_, e)| e.state == LedgerState::Delivering)
    );
    let limited = store
        .ledger_list(id, Some(LedgerState::Delivering), 7)
        .unwrap();
    assert_eq!(limited.len(), 7);
    assert_eq!(store.ledger_list(id, None, 3).unwrap().len(), 3);
    let quarantined = store
        .ledger_list(id, Some(LedgerState::Quarantined), 10)
        .unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].0, "AAMkAD4=");

    // Another channel's ledger is separate.
    let other = ChannelId::generate();
    assert_eq!(store.ledger_count(other).unwrap(), 0);
    assert!(store.ledger_list(other, None, 10).unwrap().is_empty());

    assert!(store.ledger_delete(id, "AbC").unwrap());
    assert_eq!(store.ledger_get(id, "AbC").unwrap(), None);

    let err = store
        .ledger_put(id, "", &entry(LedgerState::Discovered, 0))
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::InvalidInput);
}

fn ledger_prune_removes_only_old_marked_read_entries(engine: Engine) {
    let store = fresh(engine);
    let (a, b) = (ChannelId::generate(), ChannelId::generate());
    for id in [a, b] {
        for state in LedgerState::ALL {
            store
                .ledger_put(id, &format!("old-{}", state.as_str()), &entry(state, 10))
                .unwrap();
            store
                .ledger_put(id, &format!("new-{}", state.as_str()), &entry(state, 1000))
                .unwrap();
        }
    }
    assert_eq!(store.ledger_prune(at(500)).unwrap(), 2);
    for id in [a, b] {
        assert_eq!(store.ledger_get(id, "old-marked_read").unwrap(), None);
        assert!(store.ledger_get(id, "new-marked_read").unwrap().is_some());
        for state in LedgerState::ALL
            .into_iter()
            .filter(|s| *s != LedgerState::MarkedRead)
        {
            assert!(
                store
                    .ledger_get(id, &format!("old-{}", state.as_str()))
                    .unwrap()
                    .is_some()
            );
        }
        assert_eq!(store.ledger_count(id).unwrap(), 9);
    }
    assert_eq!(store.ledger_prune(at(500)).unwrap(), 0);
}

fn pending_authorizations_are_single_use_and_expire(engine: Engine) {
    let store = fresh(engine);
    let id = ChannelId::generate();
    let now = at(100);

    store
        .put_pending(
            "state-live",
            &pending(id, &verifier('a'), now + Duration::minutes(10)),
        )
        .unwrap();
    store
        .put_pending(
            "state-old",
            &pending(id, &verifier('b'), now - Duration::seconds(1)),
        )
        .unwrap();

    match store.take_pending("state-live", now).unwrap() {
        PendingLookup::Found(p) => {
            assert_eq!(p, pending(id, &verifier('a'), now + Duration::minutes(10)))
        }
        other => panic!("expected the pending authorization, got {other:?}"),
    }
    assert_eq!(
        store.take_pending("state-live", now).unwrap(),
        PendingLookup::AlreadyUsed
    );
    assert_eq!(
        store
            .take_pending("state-live", now + Duration::minutes(5))
            .unwrap(),
        PendingLookup::AlreadyUsed
    );
    // A used state cannot be armed again.
    let err = store
        .put_pending(
            "state-live",
            &pending(id, &verifier('c'), now + Duration::minutes(10)),
        )
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::InvalidInput);

    assert_eq!(
        store.take_pending("state-old", now).unwrap(),
        PendingLookup::Expired
    );
    assert_eq!(
        store.take_pending("state-old", now).unwrap(),
        PendingLookup::Unknown
    );
    assert_eq!(
        store.take_pending("never-issued", now).unwrap(),
        PendingLookup::Unknown
    );
    assert_eq!(
        store
            .put_pending("", &pending(id, &verifier('d'), now))
            .unwrap_err()
            .kind(),
        StoreErrorKind::InvalidInput
    );
}

fn prune_pending_removes_expired_states_and_old_tombstones(engine: Engine) {
    let store = fresh(engine);
    let id = ChannelId::generate();
    let now = at(100);
    store
        .put_pending(
            "expired",
            &pending(id, &verifier('a'), now - Duration::seconds(1)),
        )
        .unwrap();
    store
        .put_pending(
            "live",
            &pending(id, &verifier('b'), now + Duration::minutes(10)),
        )
        .unwrap();
    store
        .put_pending(
            "used",
            &pending(id, &verifier('c'), now + Duration::minutes(10)),
        )
        .unwrap();
    assert!(matches!(
        store.take_pending("used", now).unwrap(),
        PendingLookup::Found(_)
    ));

    assert_eq!(store.prune_pending(now).unwrap(), 1);
    assert_eq!(
        store.take_pending("expired", now).unwrap(),
        PendingLookup::Unknown
    );
    // The tombstone is kept a while so a replay is recognised...
    assert_eq!(
        store.take_pending("used", now).unwrap(),
        PendingLookup::AlreadyUsed
    );
    // ...and goes once it is well past its expiry.
    let much_later = now + Duration::days(2);
    assert_eq!(store.prune_pending(much_later).unwrap(), 2);
    assert_eq!(
        store.take_pending("used", much_later).unwrap(),
        PendingLookup::Unknown
    );
    assert_eq!(
        store.take_pending("live", much_later).unwrap(),
        PendingLookup::Unknown
    );
}

fn channel_events_keep_the_newest_and_go_with_their_channel(engine: Engine) {
    let store = fresh(engine);
    let channel = full_channel(1);
    let other = full_channel(2);
    store.put_channel(&channel).unwrap();
    store.put_channel(&other).unwrap();
    let event = |n: i64, kind: &str| inboxd::store::ChannelEvent {
        at: at(n),
        kind: kind.to_owned(),
        status: "active".to_owned(),
        previous_status: Some("backing_off".to_owned()),
        code: Some(format!("CODE{n}")),
        message: None,
        remedy: None,
        trace_id: None,
        correlation_id: None,
    };
    for n in 0..7 {
        store
            .push_event(channel.id, &event(n, "channel.status_changed"), 5)
            .unwrap();
    }
    // Two events at the same instant are both kept, in the order they came.
    store
        .push_event(channel.id, &event(6, "channel.sign_in_failed"), 5)
        .unwrap();
    store
        .push_event(other.id, &event(3, "channel.authorized"), 5)
        .unwrap();

    let events = store.list_events(channel.id, 100).unwrap();
    let codes: Vec<_> = events.iter().map(|e| e.code.clone().unwrap()).collect();
    assert_eq!(
        codes,
        ["CODE6", "CODE6", "CODE5", "CODE4", "CODE3"],
        "newest first, 5 kept"
    );
    assert_eq!(events[0].kind, "channel.sign_in_failed");
    assert_eq!(events[0], event(6, "channel.sign_in_failed"));
    assert_eq!(store.list_events(channel.id, 2).unwrap().len(), 2);
    assert_eq!(store.list_events(other.id, 10).unwrap().len(), 1);

    // Removing the channel removes its history, and only its.
    store.delete_channel(channel.id).unwrap();
    assert!(store.list_events(channel.id, 10).unwrap().is_empty());
    assert_eq!(store.list_events(other.id, 10).unwrap().len(), 1);
}

fn invitations_work_once_until_they_expire_or_are_revoked(engine: Engine) {
    use inboxd::store::{Invitation, InvitationLookup, invitation_id};
    let store = fresh(engine);
    let channel = full_channel(1);
    let invitation = |expires: i64| Invitation {
        channel_id: channel.id.to_string(),
        created_at: at(0),
        expires_at: at(expires),
        used_at: None,
        revoked_at: None,
    };
    let id = store.put_invitation("token-one", &invitation(100)).unwrap();
    assert_eq!(id, invitation_id("token-one"));
    assert!(!id.contains("token"), "only the token's hash is stored");
    // Past its time, it does not work (and is not used up by trying).
    assert_eq!(
        store.take_invitation("token-one", at(100)).unwrap(),
        InvitationLookup::Expired
    );
    assert_eq!(
        store.take_invitation("token-one", at(50)).unwrap(),
        InvitationLookup::Taken(channel.id)
    );
    assert_eq!(
        store.take_invitation("token-one", at(51)).unwrap(),
        InvitationLookup::AlreadyUsed
    );
    assert!(
        store
            .get_invitation(&id)
            .unwrap()
            .unwrap()
            .used_at
            .is_some()
    );

    store.put_invitation("token-two", &invitation(100)).unwrap();
    assert!(
        store
            .revoke_invitation(&invitation_id("token-two"), at(10))
            .unwrap()
    );
    assert!(
        !store
            .revoke_invitation(&invitation_id("token-two"), at(11))
            .unwrap()
    );
    assert_eq!(
        store.take_invitation("token-two", at(20)).unwrap(),
        InvitationLookup::Revoked
    );
    assert_eq!(
        store.take_invitation("never-made", at(20)).unwrap(),
        InvitationLookup::Unknown
    );
}

fn meta_round_trips(engine: Engine) {
    let store = fresh(engine);
    assert_eq!(store.get_meta("jsonl.offset").unwrap(), None);
    store
        .put_meta("jsonl.offset", &42u64.to_be_bytes())
        .unwrap();
    assert_eq!(
        store.get_meta("jsonl.offset").unwrap(),
        Some(42u64.to_be_bytes().to_vec())
    );
    store.put_meta("empty", b"").unwrap();
    assert_eq!(store.get_meta("empty").unwrap(), Some(Vec::new()));
    assert!(store.delete_meta("jsonl.offset").unwrap());
    assert_eq!(store.get_meta("jsonl.offset").unwrap(), None);
}

fn concurrent_writers_all_land(engine: Engine) {
    let store = fresh(engine);
    let threads = 4;
    let per_thread = 150;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for i in 0..per_thread {
                    if i % 15 == 0 {
                        let ch = full_channel(t * 1000 + i);
                        store.put_channel(&ch).unwrap();
                        ids.push(ch.id);
                    }
                    let id = ids[ids.len() - 1];
                    store
                        .ledger_put(
                            id,
                            &format!("t{t}-m{i}"),
                            &entry(LedgerState::Discovered, i64::from(i)),
                        )
                        .unwrap();
                    if i % 10 == 0 {
                        let batch = vec![(format!("t{t}-b{i}"), entry(LedgerState::Delivered, 0))];
                        store.ledger_put_many(id, &batch).unwrap();
                    }
                }
                ids
            })
        })
        .collect();
    let mut all_ids = Vec::new();
    for handle in handles {
        all_ids.extend(handle.join().unwrap());
    }
    assert_eq!(store.count_channels().unwrap(), all_ids.len());
    let total: usize = all_ids
        .iter()
        .map(|id| store.ledger_count(*id).unwrap())
        .sum();
    assert_eq!(total, (threads * (per_thread + per_thread / 10)) as usize);
    for t in 0..threads {
        for i in 0..per_thread {
            let found = all_ids.iter().any(|id| {
                store
                    .ledger_get(*id, &format!("t{t}-m{i}"))
                    .unwrap()
                    .is_some()
            });
            assert!(found, "t{t}-m{i} is missing");
        }
    }
}

fn delete_channel_removes_everything_of_that_channel_only(engine: Engine) {
    let store = fresh(engine);
    let now = at(100);
    let (gone, kept) = (full_channel(1), full_channel(2));
    for (ch, tag) in [(&gone, 'g'), (&kept, 'k')] {
        store.put_channel(ch).unwrap();
        store.put_tokens(ch.id, &tokens(&tag.to_string())).unwrap();
        store
            .put_cursor(
                ch.id,
                &Cursor {
                    delta_link: Some(format!("link-{tag}")),
                    last_received_at: None,
                    imap: None,
                },
            )
            .unwrap();
        let batch: Vec<_> = (0..20)
            .map(|i| (format!("m{i}"), entry(LedgerState::Delivered, 0)))
            .collect();
        store.ledger_put_many(ch.id, &batch).unwrap();
        store
            .put_pending(
                &format!("state-{tag}"),
                &pending(ch.id, &verifier(tag), now + Duration::minutes(10)),
            )
            .unwrap();
        store
            .put_pending(
                &format!("used-{tag}"),
                &pending(ch.id, &verifier(tag), now + Duration::minutes(10)),
            )
            .unwrap();
        assert!(matches!(
            store.take_pending(&format!("used-{tag}"), now).unwrap(),
            PendingLookup::Found(_)
        ));
    }

    assert!(store.delete_channel(gone.id).unwrap());
    assert!(!store.delete_channel(gone.id).unwrap());

    assert_eq!(store.get_channel(gone.id).unwrap(), None);
    assert_eq!(store.get_tokens(gone.id).unwrap(), None);
    assert_eq!(store.get_cursor(gone.id).unwrap(), None);
    assert_eq!(store.ledger_count(gone.id).unwrap(), 0);
    assert_eq!(
        store.take_pending("state-g", now).unwrap(),
        PendingLookup::Unknown
    );
    assert_eq!(
        store.take_pending("used-g", now).unwrap(),
        PendingLookup::Unknown
    );

    assert_eq!(store.get_channel(kept.id).unwrap(), Some(kept.clone()));
    assert_eq!(store.get_tokens(kept.id).unwrap(), Some(tokens("k")));
    assert!(store.get_cursor(kept.id).unwrap().is_some());
    assert_eq!(store.ledger_count(kept.id).unwrap(), 20);
    assert_eq!(
        store.take_pending("used-k", now).unwrap(),
        PendingLookup::AlreadyUsed
    );
    assert!(matches!(
        store.take_pending("state-k", now).unwrap(),
        PendingLookup::Found(_)
    ));
    assert_eq!(store.list_channels().unwrap(), vec![kept]);
}

fn channels_list_sorted_and_page_without_gaps_or_repeats(engine: Engine) {
    let store = fresh(engine);
    assert!(store.list_channels().unwrap().is_empty());
    assert!(store.list_channels_page(None, 10).unwrap().is_empty());
    assert_eq!(store.count_channels().unwrap(), 0);

    let mut written: Vec<ChannelRecord> = (0..25).map(bare_channel).collect();
    for ch in &written {
        store.put_channel(ch).unwrap();
    }
    written.sort_by_key(|ch| ch.id);
    assert_eq!(store.list_channels().unwrap(), written);
    assert_eq!(store.count_channels().unwrap(), 25);

    let mut paged = Vec::new();
    let mut after = None;
    let mut sizes = Vec::new();
    loop {
        let page = store.list_channels_page(after, 10).unwrap();
        if page.is_empty() {
            break;
        }
        sizes.push(page.len());
        after = page.last().map(|ch| ch.id);
        paged.extend(page);
    }
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(paged, written);
    assert!(store.list_channels_page(None, 0).unwrap().is_empty());
}

fn a_ciphertext_moved_to_another_record_or_damaged_does_not_decrypt(engine: Engine) {
    let store = fresh(engine);
    let (a, b) = (full_channel(1), full_channel(2));
    for ch in [&a, &b] {
        store.put_channel(ch).unwrap();
        store.put_tokens(ch.id, &tokens(&ch.name)).unwrap();
    }

    // Channel records hold no secret any more (the credential is the app's); token sets do.
    let from_a = store.raw_get(RawKind::Tokens, a.id).unwrap().unwrap();
    store.raw_put(RawKind::Tokens, b.id, &from_a).unwrap();
    let err = store.get_tokens(b.id).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt);
    assert!(err.is_fatal());
    assert!(err.to_string().contains("does not decrypt"), "{err}");

    // Truncated bytes are refused too.
    let raw = store.raw_get(RawKind::Tokens, a.id).unwrap().unwrap();
    store
        .raw_put(RawKind::Tokens, a.id, &raw[..raw.len() / 2])
        .unwrap();
    assert_eq!(
        store.get_tokens(a.id).unwrap_err().kind(),
        StoreErrorKind::Corrupt
    );
    // The untouched record of `a` still reads.
    assert_eq!(store.get_channel(a.id).unwrap(), Some(a));
}

fn simultaneous_takes_of_one_state_succeed_once(engine: Engine) {
    let store = fresh(engine);
    let now = at(100);
    let id = ChannelId::generate();
    store
        .put_pending(
            "contested",
            &pending(id, &verifier('q'), now + Duration::minutes(10)),
        )
        .unwrap();
    let threads = 8;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                store.take_pending("contested", now).unwrap()
            })
        })
        .collect();
    let outcomes: Vec<PendingLookup> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let found = outcomes
        .iter()
        .filter(|o| matches!(o, PendingLookup::Found(_)))
        .count();
    let used = outcomes
        .iter()
        .filter(|o| **o == PendingLookup::AlreadyUsed)
        .count();
    assert_eq!((found, used), (1, threads - 1), "{outcomes:?}");
}

fn flush_async_completes(engine: Engine) {
    let store = fresh(engine);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        store
            .ledger_put(
                ChannelId::generate(),
                "m",
                &entry(LedgerState::Discovered, 0),
            )
            .unwrap();
        store.flush_async().await.unwrap();
    });
}

fn update_channel_state_changes_run_time_fields_only(engine: Engine) {
    let store = fresh(engine);
    let ch = bare_channel(1);
    // A channel that does not exist stays absent.
    let state = ChannelState {
        status: ChannelStatus::Active,
        last_error: None,
        last_poll_at: Some(at(50)),
        last_success_at: Some(at(51)),
    };
    store.update_channel_state(ch.id, &state).unwrap();
    assert_eq!(store.get_channel(ch.id).unwrap(), None);

    store.put_channel(&ch).unwrap();
    store.update_channel_state(ch.id, &state).unwrap();
    let updated = store.get_channel(ch.id).unwrap().unwrap();
    assert_eq!(updated.status, ChannelStatus::Active);
    assert_eq!(updated.last_poll_at, Some(at(50)));
    assert_eq!(updated.last_success_at, Some(at(51)));
    assert_eq!(updated.client_id, ch.client_id);
    assert_eq!(updated.mailbox, ch.mailbox);
    // Absent poll times keep the stored ones.
    let later = ChannelState {
        status: ChannelStatus::BackingOff,
        last_error: None,
        last_poll_at: None,
        last_success_at: None,
    };
    store.update_channel_state(ch.id, &later).unwrap();
    let updated = store.get_channel(ch.id).unwrap().unwrap();
    assert_eq!(updated.status, ChannelStatus::BackingOff);
    assert_eq!(updated.last_poll_at, Some(at(50)));
}

fn floors_round_trip_list_sorted_and_delete(engine: Engine) {
    let store = fresh(engine);
    let key = "00000000-0000-0000-0000-000000000001/support@contoso.com";
    assert_eq!(store.get_floor(key).unwrap(), None);
    assert!(store.list_floors().unwrap().is_empty());

    store.put_floor(key, at(30)).unwrap();
    assert_eq!(store.get_floor(key).unwrap(), Some(at(30)));
    // A later `Retry-After` replaces the floor (the caller decides whether to keep the later one).
    store.put_floor(key, at(90)).unwrap();
    assert_eq!(store.get_floor(key).unwrap(), Some(at(90)));
    store.put_floor("b/ünïcode@contoso.com", at(10)).unwrap();
    store.put_floor("a/x@contoso.com", at(20)).unwrap();
    assert_eq!(
        store.list_floors().unwrap(),
        vec![
            (key.to_owned(), at(90)),
            ("a/x@contoso.com".to_owned(), at(20)),
            ("b/ünïcode@contoso.com".to_owned(), at(10)),
        ]
    );
    // Floors are apart from the metadata map.
    assert_eq!(store.get_meta(key).unwrap(), None);

    assert!(store.delete_floor("a/x@contoso.com").unwrap());
    assert!(!store.delete_floor("a/x@contoso.com").unwrap());
    assert_eq!(store.get_floor("a/x@contoso.com").unwrap(), None);
    assert_eq!(store.list_floors().unwrap().len(), 2);
}

fn prune_floors_removes_only_floors_that_have_passed(engine: Engine) {
    let store = fresh(engine);
    store.put_floor("past", at(10)).unwrap();
    store.put_floor("now", at(20)).unwrap();
    store.put_floor("future", at(30)).unwrap();
    assert_eq!(store.prune_floors(at(20)).unwrap(), 2);
    assert_eq!(
        store.list_floors().unwrap(),
        vec![("future".to_owned(), at(30))]
    );
    assert_eq!(store.prune_floors(at(20)).unwrap(), 0);
    assert_eq!(store.prune_floors(at(31)).unwrap(), 1);
    assert!(store.list_floors().unwrap().is_empty());
}

fn bad_floor_keys_are_refused_and_change_nothing(engine: Engine) {
    let store = fresh(engine);
    store.put_floor("kept", at(10)).unwrap();
    let long = "k".repeat(MAX_FLOOR_KEY_BYTES + 1);
    for bad in ["", long.as_str()] {
        let err = store.put_floor(bad, at(20)).unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("floor"), "{err}");
        assert_eq!(
            store.get_floor(bad).unwrap_err().kind(),
            StoreErrorKind::InvalidInput
        );
        assert_eq!(
            store.delete_floor(bad).unwrap_err().kind(),
            StoreErrorKind::InvalidInput
        );
    }
    let err = store.put_floor(&long, at(20)).unwrap_err();
    assert!(err.to_string().contains("at most 512 bytes"), "{err}");
    // The longest allowed key is fine.
    let longest = "k".repeat(MAX_FLOOR_KEY_BYTES);
    store.put_floor(&longest, at(5)).unwrap();
    assert_eq!(store.get_floor(&longest).unwrap(), Some(at(5)));
    assert_eq!(store.list_floors().unwrap().len(), 2);
    assert_eq!(store.get_floor("kept").unwrap(), Some(at(10)));
}

// ---------------------------------------------------------------------------------------------
// Sled only: the store's files

#[test]
fn the_store_is_shareable_across_threads() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Store>();
    fn error_is_sendable<T: Send + Sync + std::error::Error + 'static>() {}
    error_is_sendable::<inboxd::store::StoreError>();
}

/// Every file under `dir`, recursively, read as raw bytes.
fn all_bytes_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                todo.push(entry.unwrap().path());
            }
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    let ch = full_channel(1);
    let now = at(100);
    {
        let store = open(dir.path(), &key);
        store.put_channel(&ch).unwrap();
        store.put_tokens(ch.id, &tokens("kept")).unwrap();
        store
            .put_cursor(
                ch.id,
                &Cursor {
                    delta_link: Some("link".into()),
                    last_received_at: None,
                    imap: None,
                },
            )
            .unwrap();
        store
            .ledger_put(ch.id, "m1", &entry(LedgerState::Delivered, 5))
            .unwrap();
        store
            .put_pending(
                "st",
                &pending(ch.id, &verifier('z'), now + Duration::minutes(10)),
            )
            .unwrap();
        store.put_meta("k", b"v").unwrap();
        store.put_floor("app/box@contoso.com", at(7)).unwrap();
        let clone = store.clone();
        drop(store);
        clone
            .ledger_put(ch.id, "m2", &entry(LedgerState::MarkedRead, 6))
            .unwrap();
        assert!(clone.size_on_disk().unwrap() > 0);
    }
    let store = reopen(dir.path(), &key);
    assert_eq!(store.get_channel(ch.id).unwrap(), Some(ch.clone()));
    assert_eq!(store.get_tokens(ch.id).unwrap(), Some(tokens("kept")));
    assert_eq!(
        store
            .get_cursor(ch.id)
            .unwrap()
            .unwrap()
            .delta_link
            .as_deref(),
        Some("link")
    );
    assert_eq!(store.ledger_count(ch.id).unwrap(), 2);
    assert_eq!(store.get_meta("k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(
        store.list_floors().unwrap(),
        vec![("app/box@contoso.com".to_owned(), at(7))]
    );
    assert!(matches!(
        store.take_pending("st", now).unwrap(),
        PendingLookup::Found(_)
    ));
}

#[test]
fn a_wrong_master_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), &MasterKey::generate());
        store.put_channel(&full_channel(1)).unwrap();
    }
    let err = Store::open(dir.path(), MasterKey::generate(), StoreOptions::default()).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::WrongKey);
    assert!(err.is_fatal() && !err.is_retryable());
    assert!(err.to_string().contains("master key"), "{err}");
}

#[test]
fn a_store_held_open_elsewhere_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    let _first = open(dir.path(), &key);
    let err = Store::open(dir.path(), key, StoreOptions::default()).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Locked);
    assert!(err.to_string().contains("another process"), "{err}");
}

#[test]
fn a_path_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"hello").unwrap();
    let err = Store::open(&file, MasterKey::generate(), StoreOptions::default()).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::NotAStore);
    assert!(err.to_string().contains("not an inboxd store"), "{err}");

    let other = dir.path().join("photos");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("cat.jpg"), b"meow").unwrap();
    let err = Store::open(&other, MasterKey::generate(), StoreOptions::default()).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::NotAStore);
    // Nothing was written into the foreign directory.
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1);

    // A fresh path is created.
    let fresh = dir.path().join("a").join("new").join("store");
    open(&fresh, &MasterKey::generate());
    assert!(fresh.is_dir());
}

#[test]
fn no_secret_reaches_the_disk_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        "CLIENT-SECRET-Zq8~unique-4417",
        "ACCESS-TOKEN-eyJ0eXAiOiJKV1Qi-unique-8812",
        "REFRESH-TOKEN-0.AXoAv4j5cvGG-unique-2290",
        "PKCE-VERIFIER-unique-5521-abcdefghijklmnopqrstuvwxyz",
    ];
    let plain = "PLAIN-NAME-unique-7003";
    {
        let store = open(dir.path(), &MasterKey::generate());
        let mut ch = full_channel(1);
        ch.name = plain.into();
        store.put_channel(&ch).unwrap();
        store
            .put_app(&AppRecord {
                tenant_id: ch.tenant_id.clone(),
                client_id: ch.client_id.clone(),
                name: plain.into(),
                credential: AppCredential::Secret {
                    secret: ClientSecret::new(secrets[0]).unwrap(),
                    expires_at: Some(at(1000)),
                },
                created_at: at(1),
                updated_at: at(1),
                rotated_at: None,
            })
            .unwrap();
        store
            .put_tokens(
                ch.id,
                &TokenSet {
                    access_token: AccessToken::new(secrets[1]).unwrap(),
                    refresh_token: RefreshToken::new(secrets[2]).unwrap(),
                    ..tokens("x")
                },
            )
            .unwrap();
        store
            .put_pending("st", &pending(ch.id, secrets[3], at(10_000)))
            .unwrap();
        store.flush().unwrap();
    }
    let files = all_bytes_under(dir.path());
    // The search works: a non-secret field is found in clear.
    assert!(
        files
            .iter()
            .any(|(_, bytes)| contains(bytes, plain.as_bytes())),
        "the search found nothing at all"
    );
    for secret in secrets {
        for (path, bytes) in &files {
            assert!(
                !contains(bytes, secret.as_bytes()),
                "{secret} is in clear in {}",
                path.display()
            );
        }
    }
}

/// `put_tokens` and `put_floor` are durable on return: a process that exits right after one (no
/// destructor, no background flush) leaves what it wrote on disk. The test runs itself as the child
/// process, once per call.
#[test]
fn put_tokens_and_put_floor_survive_an_exit_right_after() {
    const DIR_VAR: &str = "INBOXD_STORE_TEST_CRASH_DIR";
    const KEY_VAR: &str = "INBOXD_STORE_TEST_CRASH_KEY";
    const ID_VAR: &str = "INBOXD_STORE_TEST_CRASH_ID";
    const WHAT_VAR: &str = "INBOXD_STORE_TEST_CRASH_WHAT";
    const CHILD_DONE: i32 = 86;
    const FLOOR_KEY: &str = "app/box@contoso.com";
    if let Ok(dir) = std::env::var(DIR_VAR) {
        let key = MasterKey::parse(&std::env::var(KEY_VAR).unwrap()).unwrap();
        let id = ChannelId::parse(&std::env::var(ID_VAR).unwrap()).unwrap();
        let options = StoreOptions {
            flush_every_ms: None,
            ..StoreOptions::default()
        };
        let store = Store::open(Path::new(&dir), key, options).unwrap();
        match std::env::var(WHAT_VAR).unwrap().as_str() {
            "tokens" => store.put_tokens(id, &tokens("rotated")).unwrap(),
            _ => store.put_floor(FLOOR_KEY, at(60)).unwrap(),
        }
        // Ends the process at once: no destructor runs, so nothing flushes on the way out.
        std::process::exit(CHILD_DONE);
    }

    for what in ["tokens", "floor"] {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        let id = ChannelId::generate();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "put_tokens_and_put_floor_survive_an_exit_right_after",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir.path())
            .env(KEY_VAR, key.encode())
            .env(ID_VAR, id.to_string())
            .env(WHAT_VAR, what)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(
            status.code(),
            Some(CHILD_DONE),
            "the child ({what}) did not reach its exit"
        );
        let store = open(dir.path(), &key);
        if what == "tokens" {
            assert_eq!(store.get_tokens(id).unwrap(), Some(tokens("rotated")));
        } else {
            assert_eq!(store.get_floor(FLOOR_KEY).unwrap(), Some(at(60)));
        }
    }
}

#[test]
fn a_zero_flush_interval_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        flush_every_ms: Some(0),
        ..StoreOptions::default()
    };
    let err = Store::open(dir.path(), MasterKey::generate(), options).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::InvalidInput);
    assert!(err.to_string().contains("flush_every_ms"), "{err}");
    // `None` (flush on demand only) is valid.
    let options = StoreOptions {
        flush_every_ms: None,
        ..StoreOptions::default()
    };
    Store::open(dir.path(), MasterKey::generate(), options).unwrap();
}

/// Every file under `dir` with its bytes and permission bits, sorted by path.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut files: Vec<_> = all_bytes_under(dir)
        .into_iter()
        .map(|(path, bytes)| {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            (path, bytes, mode)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_wrong_master_key_changes_no_byte_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    {
        let store = open(dir.path(), &key);
        store.put_channel(&full_channel(1)).unwrap();
        store.put_floor("app/box@contoso.com", at(10)).unwrap();
        store.flush().unwrap();
    }
    let before = snapshot(dir.path());
    assert!(
        before.len() > 2,
        "{:?}",
        before.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for _ in 0..3 {
        let err =
            Store::open(dir.path(), MasterKey::generate(), StoreOptions::default()).unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::WrongKey, "{err}");
    }
    assert!(
        snapshot(dir.path()) == before,
        "a refused open changed the store's files"
    );
    // The right key still opens it.
    let store = reopen(dir.path(), &key);
    assert_eq!(store.count_channels().unwrap(), 1);
}

#[test]
fn a_damaged_key_check_file_is_refused_with_its_remedy() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    drop(open(dir.path(), &key));
    let file = dir.path().join("keycheck");
    std::fs::write(&file, b"not a key check").unwrap();
    let before = snapshot(dir.path());
    let err = Store::open(dir.path(), key.clone(), StoreOptions::default()).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains("key check file") && shown.contains("remove"),
        "{shown}"
    );
    assert!(snapshot(dir.path()) == before);
    // Following the remedy works: the file is written again from the engine's own check.
    std::fs::remove_file(&file).unwrap();
    drop(reopen(dir.path(), &key));
    assert!(file.is_file());
    drop(reopen(dir.path(), &key));
}

#[test]
fn store_files_are_owner_only_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    // The only test of this binary that touches the process-wide umask.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let parent = tempfile::tempdir().unwrap();
    let path = parent.path().join("state").join("store");
    let key = MasterKey::generate();
    {
        let store = open(&path, &key);
        store.put_channel(&full_channel(1)).unwrap();
        store
            .put_tokens(ChannelId::generate(), &tokens("t"))
            .unwrap();
        store.flush().unwrap();
    }
    let check = |path: &Path| {
        let mut todo = vec![path.to_path_buf()];
        let mut seen = 0;
        while let Some(p) = todo.pop() {
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                assert_eq!(mode, 0o700, "{} is {mode:o}", p.display());
                for e in std::fs::read_dir(&p).unwrap() {
                    todo.push(e.unwrap().path());
                }
            } else {
                assert_eq!(mode, 0o600, "{} is {mode:o}", p.display());
                seen += 1;
            }
        }
        assert!(seen >= 3, "only {seen} files under {}", path.display());
    };
    check(&path);
    // Reopening (sled may add files) keeps them owner-only.
    drop(reopen(&path, &key));
    check(&path);

    // The daemon's umask switch: the previous umask back, owner-only files from then on.
    assert_eq!(inboxd::store::restrict_umask(), 0o022);
    let later = parent.path().join("later");
    std::fs::write(&later, b"x").unwrap();
    let mode = std::fs::metadata(&later).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
}

#[test]
fn the_memory_engine_keeps_nothing_on_disk_and_stores_apart() {
    let key = MasterKey::generate();
    let (a, b) = (
        Store::in_memory(key.clone()).unwrap(),
        Store::in_memory(key).unwrap(),
    );
    a.put_channel(&bare_channel(1)).unwrap();
    assert_eq!(a.count_channels().unwrap(), 1);
    assert_eq!(b.count_channels().unwrap(), 0);
    assert_eq!(a.path(), "(in memory)");
    assert!(!a.is_broken());
    assert!(!a.recover().unwrap(), "a healthy store needs no recovery");
}
