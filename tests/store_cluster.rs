//! The store's cluster mode on PostgreSQL: fenced writes and leases (claim, renew, release, leave),
//! notices between two handles of one database, the exactly-once mail sink, and moving a store
//! from sled to PostgreSQL with export and import. Each test has a database of its own
//! (`PgTestDb`); leases use a ttl of 1 s where a test waits for one to expire.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone as _, Utc};
use inboxd::domain::secret::{AccessToken, MasterKey, RefreshToken};
use inboxd::domain::{ChannelId, ChannelStatus, ClientId, Folder, Mailbox, TenantId};
use inboxd::store::cluster::{Lease, Notice, SHARDS};
use inboxd::store::{
    ChannelRecord, ChannelState, Cursor, FirstImport, LedgerEntry, LedgerState, PgOptions, Store,
    StoreErrorKind, StoreOptions, TokenSet,
};
use inboxd_testkit::PgTestDb;

fn open(db: &PgTestDb, key: &MasterKey, node: &str) -> Store {
    let options = PgOptions {
        pool: 2,
        node_id: node.to_owned(),
    };
    Store::open_postgres(db.url(), key.clone(), options).unwrap()
}

fn channel(n: u32) -> ChannelRecord {
    let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    ChannelRecord {
        id: ChannelId::generate(),
        name: format!("desk {n}").into(),
        tenant_id: TenantId::parse("contoso.com").unwrap(),
        client_id: ClientId::parse("00000000-0000-0000-0000-000000000002").unwrap(),
        mailbox: Mailbox::parse(&format!("box{n}@contoso.com")).unwrap(),
        folder: Folder::inbox(),
        enabled: true,
        first_import: FirstImport::AllUnread,
        poll_mode: None,
        transport: inboxd::domain::Transport::Graph,
        created_at: at,
        updated_at: at,
        activated_at: None,
        status: ChannelStatus::Active,
        last_error: None,
        last_poll_at: None,
        last_success_at: None,
    }
}

fn tokens(tag: &str) -> TokenSet {
    TokenSet {
        access_token: AccessToken::new(format!("plain-access-{tag}")).unwrap(),
        access_expires_at: Utc.timestamp_opt(1_700_003_600, 0).unwrap(),
        refresh_token: RefreshToken::new(format!("plain-refresh-{tag}")).unwrap(),
        scope: "offline_access".into(),
        obtained_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
    }
}

fn entry(state: LedgerState) -> LedgerEntry {
    let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    LedgerEntry {
        state,
        failures: 0,
        last_error: None,
        received_at: None,
        first_seen_at: at,
        updated_at: at,
    }
}

fn cursor(link: &str) -> Cursor {
    Cursor {
        delta_link: Some(link.to_owned()),
        last_received_at: None,
        imap: None,
    }
}

/// A fencer that answers `lease` for every channel.
fn fixed(lease: Lease) -> inboxd::store::Fencer {
    Arc::new(move |_| Some(lease))
}

const SECOND: Duration = Duration::from_secs(1);
const LONG: Duration = Duration::from_secs(60);

#[test]
fn fenced_writes_commit_under_the_current_lease_and_are_refused_once_another_node_claimed_it() {
    let db = PgTestDb::create();
    let key = MasterKey::generate();
    let a = open(&db, &key, "node-a");
    let b = open(&db, &key, "node-b");
    let (ca, cb) = (a.coordination().unwrap(), b.coordination().unwrap());
    let ch = channel(1);
    a.put_channel(&ch).unwrap();

    let lease = ca.claim(1, SECOND).unwrap()[0];
    a.set_fencer(fixed(lease));
    a.put_cursor(ch.id, &cursor("one")).unwrap();
    a.put_tokens(ch.id, &tokens("a")).unwrap();
    a.ledger_put(ch.id, "m1", &entry(LedgerState::Delivered))
        .unwrap();
    a.update_channel_state(
        ch.id,
        &ChannelState {
            status: ChannelStatus::BackingOff,
            last_error: None,
            last_poll_at: None,
            last_success_at: None,
        },
    )
    .unwrap();

    std::thread::sleep(SECOND + Duration::from_millis(200));
    let taken = cb.claim(1, LONG).unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(
        taken[0].shard, lease.shard,
        "the expired shard is claimed again"
    );
    assert_eq!(
        taken[0].epoch,
        lease.epoch + 1,
        "each claim raises the epoch"
    );

    for err in [
        a.put_cursor(ch.id, &cursor("two")).unwrap_err(),
        a.put_tokens(ch.id, &tokens("late")).unwrap_err(),
        a.ledger_put(ch.id, "m2", &entry(LedgerState::Delivered))
            .unwrap_err(),
        a.ledger_put_many(ch.id, &[("m3".into(), entry(LedgerState::Delivered))])
            .unwrap_err(),
        a.update_channel_state(
            ch.id,
            &ChannelState {
                status: ChannelStatus::Active,
                last_error: None,
                last_poll_at: None,
                last_success_at: None,
            },
        )
        .unwrap_err(),
    ] {
        assert_eq!(err.kind(), StoreErrorKind::Fenced, "{err}");
        assert!(err.to_string().contains("nothing to do"), "{err}");
    }
    assert!(
        !a.is_broken(),
        "a fenced write must not mark the store broken"
    );
    assert_eq!(a.get_cursor(ch.id).unwrap(), Some(cursor("one")));
    assert_eq!(a.get_tokens(ch.id).unwrap(), Some(tokens("a")));
    assert_eq!(a.ledger_count(ch.id).unwrap(), 1);
    assert_eq!(
        a.get_channel(ch.id).unwrap().unwrap().status,
        ChannelStatus::BackingOff
    );

    // The new owner writes under its own lease; admin writes stay unfenced for everyone.
    b.set_fencer(fixed(taken[0]));
    b.put_cursor(ch.id, &cursor("b")).unwrap();
    a.reset_cursor(ch.id).unwrap();
    assert_eq!(b.get_cursor(ch.id).unwrap(), Some(Cursor::default()));
    a.put_granted_tokens(ch.id, &tokens("granted")).unwrap();
    a.put_channel(&ch).unwrap();
}

#[test]
fn a_frozen_owner_commits_nothing_after_its_lease_expired() {
    let db = PgTestDb::create();
    let key = MasterKey::generate();
    let a = open(&db, &key, "frozen");
    let ch = channel(2);
    a.put_channel(&ch).unwrap();
    let lease = a.coordination().unwrap().claim(1, SECOND).unwrap()[0];
    a.set_fencer(fixed(lease));
    // "Frozen": no renewal while the lease runs out.
    std::thread::sleep(SECOND + Duration::from_millis(200));
    let err = a
        .ledger_put_many(ch.id, &[("late".into(), entry(LedgerState::Delivered))])
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Fenced, "{err}");
    assert_eq!(a.ledger_get(ch.id, "late").unwrap(), None);
    assert_eq!(a.get_cursor(ch.id).unwrap(), None);
    // Renewing a lost lease answers nothing: the node knows it is gone.
    assert!(a.coordination().unwrap().renew(LONG).unwrap().is_empty());
}

#[test]
fn a_fencer_that_answers_none_refuses_without_touching_the_engine() {
    let store = Store::in_memory(MasterKey::generate()).unwrap();
    let ch = channel(3);
    store.put_channel(&ch).unwrap();
    store.set_fencer(Arc::new(|_| None));
    let err = store.put_cursor(ch.id, &cursor("x")).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Fenced);
    assert_eq!(store.get_cursor(ch.id).unwrap(), None);
    // Unfenced writes go on.
    store.reset_cursor(ch.id).unwrap();
    assert!(store.coordination().is_none());
}

#[test]
fn competing_claims_never_give_one_shard_to_two_nodes() {
    let db = PgTestDb::create();
    let key = MasterKey::generate();
    let a = open(&db, &key, "claim-a");
    let b = open(&db, &key, "claim-b");
    for round in 0..3 {
        let (ca, cb) = (a.coordination().unwrap(), b.coordination().unwrap());
        let ta = std::thread::spawn(move || ca.claim(700, LONG).unwrap());
        let tb = std::thread::spawn(move || cb.claim(700, LONG).unwrap());
        let (la, lb) = (ta.join().unwrap(), tb.join().unwrap());
        let sa: BTreeSet<u32> = la.iter().map(|l| l.shard).collect();
        let sb: BTreeSet<u32> = lb.iter().map(|l| l.shard).collect();
        assert!(sa.is_disjoint(&sb), "round {round}: a shard given to both");
        assert!(sa.len() <= 700 && sb.len() <= 700);
        let owners = a.coordination().unwrap().owners().unwrap();
        assert_eq!(owners.len(), SHARDS as usize);
        for owner in owners {
            let expected = if sa.contains(&owner.shard) {
                Some("claim-a")
            } else if sb.contains(&owner.shard) {
                Some("claim-b")
            } else {
                None
            };
            assert_eq!(owner.node.as_deref(), expected, "shard {}", owner.shard);
        }
        a.coordination().unwrap().leave().unwrap();
        b.coordination().unwrap().leave().unwrap();
    }
}

#[test]
fn renew_answers_only_held_shards_and_release_and_leave_give_them_back() {
    let db = PgTestDb::create();
    let key = MasterKey::generate();
    let a = open(&db, &key, "renew-a");
    let b = open(&db, &key, "renew-b");
    let (ca, cb) = (a.coordination().unwrap(), b.coordination().unwrap());
    assert_eq!(ca.node_id(), "renew-a");
    ca.heartbeat("http://10.0.0.1:8080", false).unwrap();
    cb.heartbeat("http://10.0.0.2:8080", false).unwrap();
    let live: Vec<String> = ca
        .live_nodes(LONG)
        .unwrap()
        .into_iter()
        .map(|n| n.node)
        .collect();
    assert_eq!(live, vec!["renew-a".to_owned(), "renew-b".to_owned()]);

    let held = ca.claim(3, LONG).unwrap();
    assert_eq!(held.len(), 3);
    let theirs = cb.claim(2, LONG).unwrap();
    ca.release(&[held[0].shard, theirs[0].shard]).unwrap();
    let renewed = ca.renew(LONG).unwrap();
    assert_eq!(
        renewed,
        held[1..].to_vec(),
        "renew answers the shards still held"
    );
    assert_eq!(
        cb.renew(LONG).unwrap(),
        theirs,
        "releasing another's shard does nothing"
    );

    // A released shard is free for the next claim, with a new epoch.
    let again = cb.claim(1, LONG).unwrap();
    assert_eq!(again[0].shard, held[0].shard);
    assert_eq!(again[0].epoch, held[0].epoch + 1);

    ca.heartbeat("http://10.0.0.1:8080", true).unwrap();
    let live: Vec<String> = cb
        .live_nodes(LONG)
        .unwrap()
        .into_iter()
        .map(|n| n.node)
        .collect();
    assert_eq!(
        live,
        vec!["renew-b".to_owned()],
        "a draining node is not live"
    );
    ca.leave().unwrap();
    assert!(ca.renew(LONG).unwrap().is_empty());
    let owners = cb.owners().unwrap();
    assert!(owners.iter().all(|o| o.node.as_deref() != Some("renew-a")));
    assert_eq!(
        owners
            .iter()
            .filter(|o| o.node.as_deref() == Some("renew-b"))
            .count(),
        3
    );
}

/// Waits up to `within` for a notice matching `wanted`.
fn wait_for(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Notice>,
    within: Duration,
    wanted: impl Fn(&Notice) -> bool,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match rx.try_recv() {
            Ok(notice) if wanted(&notice) => return true,
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    false
}

#[test]
fn a_channel_write_on_one_node_reaches_the_others_listen_within_a_second() {
    let db = PgTestDb::create();
    let key = MasterKey::generate();
    let a = open(&db, &key, "listen-a");
    let b = open(&db, &key, "listen-b");
    let mut rx = a.coordination().unwrap().listen().unwrap();

    let ch = channel(4);
    b.put_channel(&ch).unwrap();
    assert!(wait_for(&mut rx, SECOND, |n| *n == Notice::ChannelChanged(ch.id)));
    b.update_channel_state(
        ch.id,
        &ChannelState {
            status: ChannelStatus::Blocked,
            last_error: None,
            last_poll_at: None,
            last_success_at: None,
        },
    )
    .unwrap();
    assert!(wait_for(&mut rx, SECOND, |n| *n == Notice::ChannelChanged(ch.id)));
    b.delete_channel(ch.id).unwrap();
    assert!(wait_for(&mut rx, SECOND, |n| *n == Notice::ChannelChanged(ch.id)));

    let at = Utc.timestamp_opt(1_700_000_000, 5_000).unwrap();
    for notice in [Notice::PollNow(ch.id), Notice::Backfill(ch.id, at)] {
        b.coordination().unwrap().notify(&notice).unwrap();
        assert!(wait_for(&mut rx, SECOND, |n| *n == notice), "{notice:?}");
    }
    // Dropping the receiver ends the listening thread (nothing to assert but no hang).
    drop(rx);
}

#[test]
fn the_mail_sink_inserts_each_message_once_with_its_ledger_entries() {
    let db = PgTestDb::create();
    let key = MasterKey::generate();
    let store = open(&db, &key, "sink");
    let ch = channel(5);
    store.put_channel(&ch).unwrap();
    let lease = store.coordination().unwrap().claim(1, LONG).unwrap()[0];
    store.set_fencer(fixed(lease));
    let entries = vec![
        ("m1".to_owned(), entry(LedgerState::Delivered)),
        ("m2".to_owned(), entry(LedgerState::Delivered)),
    ];
    let mails = vec![
        ("m1".to_owned(), r#"{"subject":"one"}"#.to_owned()),
        ("m2".to_owned(), r#"{"subject":"two"}"#.to_owned()),
    ];
    store
        .ledger_put_many_with_mail(ch.id, &entries, &mails)
        .unwrap();
    store
        .ledger_put_many_with_mail(ch.id, &entries, &mails)
        .unwrap();
    assert_eq!(store.ledger_count(ch.id).unwrap(), 2);

    let url = db.url().to_owned();
    let channel_id = ch.id.to_string();
    let rows: Vec<(String, String)> = std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .query(
                "SELECT message_id, record->>'subject' FROM mail WHERE channel_id = $1 ORDER BY message_id",
                &[&channel_id],
            )
            .unwrap()
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    })
    .join()
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ("m1".to_owned(), "one".to_owned()),
            ("m2".to_owned(), "two".to_owned())
        ]
    );

    // Not JSON: refused before anything is written.
    let err = store
        .ledger_put_many_with_mail(ch.id, &[], &[("m3".into(), "not json".into())])
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::InvalidInput);

    // sled has no mail table: it refuses mails, and says what to use.
    let dir = tempfile::tempdir().unwrap();
    let sled = Store::open(dir.path(), key, StoreOptions::default()).unwrap();
    let err = sled
        .ledger_put_many_with_mail(ch.id, &entries, &mails)
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::InvalidInput);
    assert!(err.to_string().contains("store.engine"), "{err}");
    assert_eq!(sled.ledger_count(ch.id).unwrap(), 0, "nothing of the batch");
}

#[test]
fn a_wrong_master_key_is_refused_by_a_postgres_store() {
    let db = PgTestDb::create();
    let key = MasterKey::generate();
    drop(open(&db, &key, "k1"));
    let err = Store::open_postgres(
        db.url(),
        MasterKey::generate(),
        PgOptions {
            pool: 1,
            node_id: "k2".into(),
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::WrongKey, "{err}");
    // Migrations run at every open, and a second run applies nothing.
    assert!(
        Store::migrate_postgres(db.url())
            .unwrap()
            .applied
            .is_empty()
    );
}

#[test]
fn a_sled_store_moves_to_postgres_with_export_and_import() {
    let key = MasterKey::generate();
    let dir = tempfile::tempdir().unwrap();
    let sled = Store::open(dir.path(), key.clone(), StoreOptions::default()).unwrap();
    let channels: Vec<ChannelRecord> = (0..3).map(channel).collect();
    for (n, ch) in channels.iter().enumerate() {
        sled.put_channel(ch).unwrap();
        sled.put_tokens(ch.id, &tokens(&n.to_string())).unwrap();
        sled.put_cursor(ch.id, &cursor(&format!("link-{n}")))
            .unwrap();
        for m in 0..5 {
            sled.ledger_put(ch.id, &format!("msg-{m}"), &entry(LedgerState::MarkedRead))
                .unwrap();
        }
    }
    sled.put_meta("k", b"v").unwrap();
    let app = inboxd::store::AppRecord {
        tenant_id: channels[0].tenant_id.clone(),
        client_id: channels[0].client_id.clone(),
        name: "desk app".into(),
        credential: inboxd::domain::AppCredential::Secret {
            secret: inboxd::domain::secret::ClientSecret::new("plain-app-secret").unwrap(),
            expires_at: None,
        },
        created_at: Utc::now(),
        updated_at: Utc::now(),
        rotated_at: None,
    };
    sled.put_app(&app).unwrap();
    let mut exported = Vec::new();
    let counts = sled.export(&mut exported).unwrap();
    assert_eq!(
        (
            counts.channels,
            counts.tokens,
            counts.cursors,
            counts.ledger
        ),
        (3, 3, 3, 15)
    );
    let text = String::from_utf8(exported.clone()).unwrap();
    assert!(!text.contains("plain-"), "a secret in clear in the export");
    assert!(
        !text.contains("inboxd_system"),
        "the system table is not exported"
    );

    let db = PgTestDb::create();
    let pg = open(&db, &key, "import");
    let imported = pg.import(&mut exported.as_slice()).unwrap();
    assert_eq!(imported, counts);
    for (n, ch) in channels.iter().enumerate() {
        assert_eq!(pg.get_channel(ch.id).unwrap().as_ref(), Some(ch));
        assert_eq!(pg.get_tokens(ch.id).unwrap(), Some(tokens(&n.to_string())));
        assert_eq!(
            pg.get_cursor(ch.id).unwrap(),
            Some(cursor(&format!("link-{n}")))
        );
        assert_eq!(
            pg.ledger_list(ch.id, None, 100).unwrap(),
            sled.ledger_list(ch.id, None, 100).unwrap()
        );
    }
    assert_eq!(pg.get_meta("k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(counts.apps, 1);
    assert_eq!(pg.get_app(&app.key()).unwrap(), Some(app));

    // A store that already holds channels is refused, and keeps what it had.
    let err = pg.import(&mut exported.as_slice()).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::InvalidInput);
    assert!(
        err.to_string().contains("already holds 3 channels"),
        "{err}"
    );

    // Another master key: refused before anything is written.
    let other = Store::in_memory(MasterKey::generate()).unwrap();
    let err = other.import(&mut exported.as_slice()).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::WrongKey, "{err}");
    assert_eq!(other.ledger_count(channels[0].id).unwrap(), 0);
}

#[test]
fn the_expiry_index_migration_fills_in_the_apps_a_database_already_held() {
    use inboxd::domain::AppCredential;
    use inboxd::domain::secret::ClientSecret;
    use inboxd::store::AppRecord;
    let db = PgTestDb::create();
    let key = MasterKey::generate();
    let app = |client: &str, expires_at: Option<&str>| AppRecord {
        tenant_id: TenantId::parse("contoso.com").unwrap(),
        client_id: ClientId::parse(client).unwrap(),
        name: "desk".into(),
        credential: AppCredential::Secret {
            secret: ClientSecret::new("s3cret-value").unwrap(),
            expires_at: expires_at.map(|at| at.parse().unwrap()),
        },
        created_at: Utc::now(),
        updated_at: Utc::now(),
        rotated_at: None,
    };
    let expiring = app(
        "00000000-0000-0000-0000-000000000001",
        Some("2031-05-06T07:08:09Z"),
    );
    let store = open(&db, &key, "m1");
    store
        .put_apps(&[
            expiring.clone(),
            app("00000000-0000-0000-0000-000000000002", None),
        ])
        .unwrap();
    let expected = vec![(
        expiring.key(),
        inboxd::domain::CredentialKind::Secret,
        "2031-05-06T07:08:09Z".parse().unwrap(),
    )];
    assert_eq!(store.list_app_expiries().unwrap(), expected);
    drop(store);
    // Back to what an inboxd before the index left: no index table, migration 4 not applied,
    // store format 1.
    let url = db.url().to_owned();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .batch_execute(
                "DROP TABLE app_expiries;
                 DELETE FROM refinery_schema_history WHERE version = 4;
                 UPDATE inboxd_system SET value = '\\x00000001'::bytea WHERE key = 'format'::bytea;",
            )
            .unwrap();
    })
    .join()
    .unwrap();
    let report = Store::migrate_postgres(db.url()).unwrap();
    assert_eq!(report.applied.len(), 1, "{:?}", report.applied);
    assert!(
        report.applied[0].contains("app_expiries"),
        "{:?}",
        report.applied
    );
    let store = open(&db, &key, "m1");
    assert_eq!(store.list_app_expiries().unwrap(), expected);
    // The record the migration wrote decodes like one the store writes, and stays in step.
    store
        .put_app(&app(
            "00000000-0000-0000-0000-000000000001",
            Some("2032-01-01T00:00:00Z"),
        ))
        .unwrap();
    assert_eq!(
        store.list_app_expiries().unwrap()[0].2,
        "2032-01-01T00:00:00Z"
            .parse::<chrono::DateTime<Utc>>()
            .unwrap()
    );
}
