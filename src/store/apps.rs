//! App records: one per (tenant, client id), holding the credential every channel of that app signs
//! in with. Insert or replace, read, list, remove; the `app_expiries` index of the apps whose
//! credential expires, kept in the same batch as every app write (and filled once for a store of
//! format 1); and, at open, the move of client secrets out of channel records written before apps
//! were records of their own.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use chrono::{DateTime, Utc};

use crate::domain::{AppCredential, CredentialKind};

use super::crypto::Crypto;
use super::engine::{Engine, Op, Scan, Table};
use super::{AppKey, AppRecord, AppSummary, Store, StoreError, persisted};

fn key_bytes(key: &AppKey) -> Vec<u8> {
    key.id().into_bytes()
}

/// Whether a channel record's bytes may hold a `client_secret` field (a record written before
/// apps). A string value cannot fake the key: its quotes would be escaped. Bytes that are not
/// UTF-8 are decoded (and refused as corrupt) as before.
pub(super) fn mentions_client_secret(value: &[u8]) -> bool {
    /// Built once: the start asks this of every channel record.
    static FIELD: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"client_secret\""));
    FIELD.find(value).is_some() || (!value.is_ascii() && std::str::from_utf8(value).is_err())
}

/// The writes that store `app`: its record, and its entry in the expiry index (removed when its
/// credential does not expire), to be applied in one batch.
pub(super) fn app_ops(crypto: &Crypto, app: &AppRecord) -> Result<[Op; 2], StoreError> {
    let key = key_bytes(&app.key());
    let record = Op::Insert {
        table: Table::Apps,
        key: key.clone(),
        value: persisted::encode_app(crypto, app)?,
    };
    Ok([record, expiry_op(key, &app.summary())?])
}

/// The expiry index's write for an app with this summary, stored under `key`.
fn expiry_op(key: Vec<u8>, summary: &AppSummary) -> Result<Op, StoreError> {
    Ok(match summary.expires_at {
        Some(at) => Op::Insert {
            table: Table::AppExpiries,
            key,
            value: persisted::encode_app_expiry(&summary.key(), summary.kind, at)?,
        },
        None => Op::Remove {
            table: Table::AppExpiries,
            key,
        },
    })
}

/// The expiry index's entry for an app record's stored bytes (`None` when it does not expire), for
/// an import, which copies records as they are.
pub(super) fn expiry_entry_of(key: &[u8], value: &[u8]) -> Result<Option<Op>, StoreError> {
    persisted::decode_app_expiry(value)?
        .map(|(app, kind, at)| {
            persisted::encode_app_expiry(&app, kind, at).map(|value| Op::Insert {
                table: Table::AppExpiries,
                key: key.to_vec(),
                value,
            })
        })
        .transpose()
}

/// Fills the expiry index from every app record (a store written before the index: format 1),
/// in batches of 1,000. Idempotent. Returns how many apps expire.
pub(super) fn index_app_expiries(engine: &dyn Engine) -> Result<usize, StoreError> {
    let mut ops = Vec::new();
    let mut failed = None;
    engine.scan(
        Table::Apps,
        Scan::All,
        &mut |key, value| match expiry_entry_of(key, value) {
            Ok(op) => {
                ops.extend(op);
                ControlFlow::Continue(())
            }
            Err(err) => {
                failed = Some(err);
                ControlFlow::Break(())
            }
        },
    )?;
    if let Some(err) = failed {
        return Err(err);
    }
    for chunk in ops.chunks(1000) {
        engine.apply(chunk)?;
    }
    Ok(ops.len())
}

impl Store {
    /// Inserts or replaces an app. Flushed: a rotated credential is durable before it is used.
    pub fn put_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        let ops = app_ops(&self.shared.crypto, app)?;
        self.with(|e| e.apply(&ops))?;
        self.flush()
    }

    /// Inserts or replaces many apps in one atomic batch, then flushes (seeding, imports).
    pub fn put_apps(&self, apps: &[AppRecord]) -> Result<(), StoreError> {
        let mut ops = Vec::with_capacity(apps.len() * 2);
        for app in apps {
            ops.extend(app_ops(&self.shared.crypto, app)?);
        }
        self.with(|e| e.apply(&ops))?;
        self.flush()
    }

    /// The app with this key, if any.
    pub fn get_app(&self, key: &AppKey) -> Result<Option<AppRecord>, StoreError> {
        let raw = self.with(|e| e.get(Table::Apps, &key_bytes(key)))?;
        let app = raw
            .map(|bytes| persisted::decode_app(&self.shared.crypto, &bytes))
            .transpose()?;
        match app {
            // The credential is sealed to the app named inside the record: a record copied under
            // another app's key would decrypt, so the names must agree.
            Some(app) if app.key() != *key => Err(StoreError::corrupt(
                format!("app/{}", key.id()),
                format!("it holds app {}'s record", app.key().id()),
            )),
            app => Ok(app),
        }
    }

    /// Every app's summary, sorted by id; nothing is decrypted.
    pub fn list_apps(&self) -> Result<Vec<AppSummary>, StoreError> {
        let mut out = Vec::new();
        self.scan(Table::Apps, Scan::All, |_, value| {
            out.push(persisted::decode_app_summary(value)?);
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    /// The key, credential kind and expiry of every app whose credential expires: what the daemon
    /// holds in memory. Read from the expiry index, so apps without an expiry cost nothing (a
    /// million of them took 4.5 s to scan at every start).
    pub fn list_app_expiries(
        &self,
    ) -> Result<Vec<(AppKey, CredentialKind, DateTime<Utc>)>, StoreError> {
        let mut out = Vec::new();
        self.scan(Table::AppExpiries, Scan::All, |_, value| {
            if let Some(expiry) = persisted::decode_app_expiry(value)? {
                out.push(expiry);
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    /// Removes an app (and its expiry, in the same batch). Returns whether it existed. The caller
    /// checks that no channel uses it.
    pub fn delete_app(&self, key: &AppKey) -> Result<bool, StoreError> {
        let key = key_bytes(key);
        let existed = self.with(|e| e.get(Table::Apps, &key))?.is_some();
        let ops = [
            Op::Remove {
                table: Table::Apps,
                key: key.clone(),
            },
            Op::Remove {
                table: Table::AppExpiries,
                key,
            },
        ];
        self.with(|e| e.apply(&ops))?;
        self.flush()?;
        Ok(existed)
    }

    /// Moves the client secrets that channel records written before apps still carry into their
    /// apps, each in one atomic batch with the channel's rewrite, so no secret is lost or left in a
    /// channel: an app that does not exist yet is created with the secret of its most recently
    /// updated channel; an app that exists keeps its credential. Returns how many channels moved.
    pub(crate) fn adopt_legacy_secrets(&self) -> Result<usize, StoreError> {
        let crypto = &self.shared.crypto;
        let mut legacy: Vec<(Vec<u8>, super::ChannelRecord, persisted::LegacySecret)> = Vec::new();
        self.scan(Table::Channels, Scan::All, |key, value| {
            let Some(id) = key.get(..16).and_then(|b| <[u8; 16]>::try_from(b).ok()) else {
                return Ok(ControlFlow::Continue(()));
            };
            // Records written since apps carry no `client_secret` field (it is skipped when
            // empty): skip them without decoding, the start reads every record once more anyway.
            if !mentions_client_secret(value) {
                return Ok(ControlFlow::Continue(()));
            }
            let id = crate::domain::ChannelId::from_bytes(id);
            if let Some((secret, expires_at)) = persisted::legacy_channel_secret(crypto, id, value)?
            {
                let record = persisted::decode_channel(id, value)?;
                legacy.push((key.to_vec(), record, (secret, expires_at)));
            }
            Ok(ControlFlow::Continue(()))
        })?;
        if legacy.is_empty() {
            return Ok(0);
        }
        // The newest channel of each app decides its secret.
        legacy.sort_by_key(|(_, record, _)| std::cmp::Reverse(record.updated_at));
        let mut apps: BTreeMap<AppKey, bool> = BTreeMap::new();
        let moved = legacy.len();
        for (key, record, (secret, expires_at)) in legacy {
            let app_key = record.app_key();
            let mut ops = Vec::new();
            if !*apps.entry(app_key.clone()).or_insert(false) {
                if self.get_app(&app_key)?.is_none() {
                    let now = Utc::now();
                    let app = AppRecord {
                        tenant_id: app_key.tenant_id.clone(),
                        client_id: app_key.client_id.clone(),
                        name: String::new(),
                        credential: AppCredential::Secret { secret, expires_at },
                        created_at: now,
                        updated_at: now,
                        rotated_at: None,
                    };
                    ops.extend(app_ops(crypto, &app)?);
                }
                apps.insert(app_key, true);
            }
            ops.push(Op::Insert {
                table: Table::Channels,
                key,
                value: persisted::encode_channel(&record)?,
            });
            self.with(|e| e.apply(&ops))?;
        }
        self.flush()?;
        tracing::info!(
            channels = moved,
            apps = apps.len(),
            "moved client secrets from channel records into app records"
        );
        Ok(moved)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::domain::secret::{ClientSecret, MasterKey};
    use crate::domain::{ChannelId, ChannelStatus, ClientId, Folder, Mailbox, TenantId};
    use crate::store::keycheck::STORE_FORMAT;
    use crate::store::{ChannelRecord, FirstImport, StoreOptions};

    fn channel(mailbox: &str, client: &str, minutes: i64) -> ChannelRecord {
        let at = Utc::now() - chrono::Duration::minutes(minutes);
        ChannelRecord {
            id: ChannelId::generate(),
            name: mailbox.into(),
            tenant_id: TenantId::parse("contoso.com").unwrap(),
            client_id: ClientId::parse(client).unwrap(),
            mailbox: Mailbox::parse(mailbox).unwrap(),
            folder: Folder::inbox(),
            enabled: true,
            first_import: FirstImport::OnlyNew,
            poll_mode: None,
            transport: crate::domain::Transport::Graph,
            created_at: at,
            updated_at: at,
            activated_at: Some(at),
            status: ChannelStatus::Active,
            last_error: None,
            last_poll_at: None,
            last_success_at: None,
        }
    }

    /// A channel record as written before apps: the secret sealed in it.
    fn put_legacy(store: &Store, record: &ChannelRecord, secret: &str) {
        let name = persisted::channel_record_name(record.id);
        let mut value: serde_json::Value =
            serde_json::from_slice(&persisted::encode_channel(record).unwrap()).unwrap();
        value["client_secret"] = serde_json::json!(
            store
                .shared
                .crypto
                .seal(&name, "client_secret", secret)
                .unwrap()
        );
        value["client_secret_expires_at"] = serde_json::json!("2030-01-01T00:00:00Z");
        let bytes = serde_json::to_vec(&value).unwrap();
        store
            .with(|e| e.insert(Table::Channels, record.id.as_bytes(), &bytes))
            .unwrap();
    }

    #[test]
    fn secrets_of_old_channel_records_move_into_their_apps_once() {
        let store = Store::in_memory(MasterKey::generate()).unwrap();
        let a = "00000000-0000-0000-0000-00000000000a";
        let b = "00000000-0000-0000-0000-00000000000b";
        // Two channels of app A with different secrets: the newest channel's wins.
        let old = channel("old@contoso.com", a, 60);
        let new = channel("new@contoso.com", a, 1);
        let other = channel("other@contoso.com", b, 5);
        put_legacy(&store, &old, "old-secret");
        put_legacy(&store, &new, "newest-secret");
        put_legacy(&store, &other, "b-secret");
        // App B already exists: it keeps its credential.
        let kept = AppRecord {
            tenant_id: other.tenant_id.clone(),
            client_id: other.client_id.clone(),
            name: "kept".into(),
            credential: AppCredential::Secret {
                secret: ClientSecret::new("b-current").unwrap(),
                expires_at: None,
            },
            created_at: Utc::now(),
            updated_at: Utc::now(),
            rotated_at: None,
        };
        store.put_app(&kept).unwrap();

        assert_eq!(store.adopt_legacy_secrets().unwrap(), 3);
        let app_a = store.get_app(&new.app_key()).unwrap().unwrap();
        assert_eq!(
            app_a.credential,
            AppCredential::Secret {
                secret: ClientSecret::new("newest-secret").unwrap(),
                expires_at: Some("2030-01-01T00:00:00Z".parse().unwrap()),
            }
        );
        assert_eq!(store.get_app(&other.app_key()).unwrap().unwrap(), kept);
        // The channels are unchanged but hold no secret any more; a second run moves nothing.
        for ch in [&old, &new, &other] {
            assert_eq!(store.get_channel(ch.id).unwrap().as_ref(), Some(ch));
            let raw = store
                .with(|e| e.get(Table::Channels, ch.id.as_bytes()))
                .unwrap()
                .unwrap();
            assert!(
                persisted::legacy_channel_secret(&store.shared.crypto, ch.id, &raw)
                    .unwrap()
                    .is_none()
            );
        }
        assert_eq!(store.adopt_legacy_secrets().unwrap(), 0);
    }

    #[test]
    fn only_records_written_before_apps_are_decoded_for_their_secret() {
        let mut record = channel(
            "plain@contoso.com",
            "00000000-0000-0000-0000-00000000000c",
            1,
        );
        // A name cannot fake the field: its quotes are escaped in the record.
        record.name = "a \"client_secret\": name".into();
        let bytes = persisted::encode_channel(&record).unwrap();
        assert!(!mentions_client_secret(&bytes));
        let store = Store::in_memory(MasterKey::generate()).unwrap();
        put_legacy(&store, &record, "s");
        let raw = store
            .with(|e| e.get(Table::Channels, record.id.as_bytes()))
            .unwrap()
            .unwrap();
        assert!(mentions_client_secret(&raw));
        assert!(mentions_client_secret(&[0xff, 0xfe]));
    }

    #[test]
    fn the_start_loads_every_channel_in_order_on_threads_and_adopts_legacy_secrets() {
        let store = Store::in_memory(MasterKey::generate()).unwrap();
        // More than one chunk per thread, with a partial last chunk.
        let mut written: Vec<ChannelRecord> = (0..5_000)
            .map(|i| {
                channel(
                    &format!("care{i}@contoso.com"),
                    &format!("00000000-0000-0000-0000-{i:012}"),
                    i,
                )
            })
            .collect();
        for record in &written {
            store.put_channel(record).unwrap();
        }
        written.sort_by_key(|record| *record.id.as_bytes());
        for threads in [1, 2, 3] {
            let (loaded, adopted) = store.load_channels(threads).unwrap();
            assert_eq!(adopted, 0);
            assert_eq!(loaded, written, "{threads} threads");
            assert_eq!(loaded, store.list_channels().unwrap());
        }
        // A record from before apps, in a store opened without the adoption: the load moves its
        // secret into a new app and returns the record as it is now.
        let legacy = channel(
            "legacy@contoso.com",
            "00000000-0000-0000-0000-0000000000ff",
            1,
        );
        put_legacy(&store, &legacy, "legacy-secret");
        assert!(store.get_app(&legacy.app_key()).unwrap().is_none());
        let (loaded, adopted) = store.load_channels(2).unwrap();
        assert_eq!(adopted, 1);
        assert_eq!(loaded.len(), written.len() + 1);
        assert!(loaded.contains(&legacy));
        assert_eq!(
            store
                .get_app(&legacy.app_key())
                .unwrap()
                .unwrap()
                .credential,
            AppCredential::Secret {
                secret: ClientSecret::new("legacy-secret").unwrap(),
                expires_at: Some("2030-01-01T00:00:00Z".parse().unwrap()),
            }
        );
        assert_eq!(store.load_channels(2).unwrap().1, 0);
    }

    #[test]
    fn a_corrupt_channel_record_fails_the_load_with_what_is_wrong() {
        let store = Store::in_memory(MasterKey::generate()).unwrap();
        for i in 0..3_000 {
            let record = channel(
                &format!("care{i}@contoso.com"),
                &format!("00000000-0000-0000-0000-{i:012}"),
                1,
            );
            store.put_channel(&record).unwrap();
        }
        store
            .with(|e| e.insert(Table::Channels, &[7u8; 16], b"{not json"))
            .unwrap();
        let err = store.load_channels(2).unwrap_err().to_string();
        assert!(
            err.contains("channel/07070707-0707-0707-0707-070707070707 is damaged"),
            "{err}"
        );
    }

    fn app(client: &str, name: &str, expires_at: Option<&str>) -> AppRecord {
        AppRecord {
            tenant_id: TenantId::parse("contoso.com").unwrap(),
            client_id: ClientId::parse(client).unwrap(),
            name: name.into(),
            credential: AppCredential::Secret {
                secret: ClientSecret::new("s").unwrap(),
                expires_at: expires_at.map(|at| at.parse().unwrap()),
            },
            created_at: Utc::now(),
            updated_at: Utc::now(),
            rotated_at: None,
        }
    }

    /// The expiries the full records say, as `list_app_expiries` answers them.
    fn expiries_of_records(store: &Store) -> Vec<(AppKey, CredentialKind, DateTime<Utc>)> {
        store
            .list_apps()
            .unwrap()
            .into_iter()
            .filter_map(|a| a.expires_at.map(|at| (a.key(), a.kind, at)))
            .collect()
    }

    #[test]
    fn every_app_write_keeps_the_expiry_index_equal_to_the_records() {
        let store = Store::in_memory(MasterKey::generate()).unwrap();
        let one = "00000000-0000-0000-0000-000000000001";
        let two = "00000000-0000-0000-0000-000000000002";
        store
            .put_app(&app(one, "a", Some("2031-01-01T00:00:00Z")))
            .unwrap();
        store.put_app(&app(two, "b", None)).unwrap();
        assert_eq!(store.list_app_expiries().unwrap().len(), 1);
        assert_eq!(
            store.list_app_expiries().unwrap(),
            expiries_of_records(&store)
        );
        // A rotation moves the date; a secret without a date leaves the index; a new date enters.
        store
            .put_app(&app(one, "a", Some("2032-02-02T00:00:00Z")))
            .unwrap();
        store
            .put_app(&app(two, "b", Some("2030-03-03T00:00:00Z")))
            .unwrap();
        assert_eq!(
            store.list_app_expiries().unwrap(),
            expiries_of_records(&store)
        );
        assert_eq!(store.list_app_expiries().unwrap().len(), 2);
        store.put_app(&app(one, "a", None)).unwrap();
        assert_eq!(
            store.list_app_expiries().unwrap(),
            expiries_of_records(&store)
        );
        // A removed app takes its expiry along.
        assert!(store.delete_app(&app(two, "b", None).key()).unwrap());
        assert!(store.list_app_expiries().unwrap().is_empty());
        assert!(!store.delete_app(&app(two, "b", None).key()).unwrap());
    }

    #[test]
    fn a_store_written_before_the_expiry_index_gets_it_at_its_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        let one = "00000000-0000-0000-0000-000000000001";
        let two = "00000000-0000-0000-0000-000000000002";
        {
            let store = Store::open(dir.path(), key.clone(), StoreOptions::default()).unwrap();
            store
                .put_apps(&[
                    app(one, "a", Some("2031-01-01T00:00:00Z")),
                    app(two, "b", None),
                ])
                .unwrap();
            // What an inboxd of store format 1 left: apps, no index, format 1.
            store
                .with(|e| {
                    e.remove(Table::AppExpiries, one_key(one).as_slice())?;
                    e.insert(Table::System, STORE_FORMAT, &1u32.to_be_bytes())?;
                    e.flush()
                })
                .unwrap();
            assert!(store.list_app_expiries().unwrap().is_empty());
        }
        let store = Store::open(dir.path(), key.clone(), StoreOptions::default()).unwrap();
        let expiries = store.list_app_expiries().unwrap();
        assert_eq!(expiries.len(), 1);
        assert_eq!(expiries, expiries_of_records(&store));
        let format = store.with(|e| e.get(Table::System, STORE_FORMAT)).unwrap();
        assert_eq!(format, Some(2u32.to_be_bytes().to_vec()));
        drop(store);
        // An inboxd of format 1 is told the store is newer than it reads (here: a format 3).
        {
            let store = Store::open(dir.path(), key.clone(), StoreOptions::default()).unwrap();
            store
                .with(|e| {
                    e.insert(Table::System, STORE_FORMAT, &3u32.to_be_bytes())?;
                    e.flush()
                })
                .unwrap();
        }
        let err = Store::open(dir.path(), key, StoreOptions::default()).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::UnsupportedVersion {
                    found: 3,
                    supported: 2,
                    ..
                }
            ),
            "{err}"
        );
    }

    fn one_key(client: &str) -> Vec<u8> {
        key_bytes(&app(client, "", None).key())
    }

    #[test]
    fn an_import_rebuilds_the_expiry_index_the_export_leaves_out() {
        let key = MasterKey::generate();
        let from = Store::in_memory(key.clone()).unwrap();
        let one = "00000000-0000-0000-0000-000000000001";
        let two = "00000000-0000-0000-0000-000000000002";
        from.put_apps(&[
            app(one, "a", Some("2031-01-01T00:00:00Z")),
            app(two, "b", None),
        ])
        .unwrap();
        let mut file = Vec::new();
        from.export(&mut file).unwrap();
        assert!(!String::from_utf8_lossy(&file).contains("app_expiries"));
        let to = Store::in_memory(key).unwrap();
        to.import(&mut file.as_slice()).unwrap();
        assert_eq!(
            to.list_app_expiries().unwrap(),
            from.list_app_expiries().unwrap()
        );
        assert_eq!(to.list_app_expiries().unwrap().len(), 1);
    }

    #[test]
    fn app_expiries_are_read_without_decoding_apps_that_do_not_expire() {
        let store = Store::in_memory(MasterKey::generate()).unwrap();
        let expiring = app(
            "00000000-0000-0000-0000-000000000001",
            "plain",
            Some("2031-05-06T07:08:09Z"),
        );
        // A name cannot fake the field: its quotes are escaped in the record.
        let lasting = app(
            "00000000-0000-0000-0000-000000000002",
            "a \"expires_at\": \"2030-01-01T00:00:00Z\" name",
            None,
        );
        store.put_apps(&[expiring.clone(), lasting]).unwrap();
        let expiries = store.list_app_expiries().unwrap();
        assert_eq!(
            expiries,
            vec![(
                expiring.key(),
                CredentialKind::Secret,
                "2031-05-06T07:08:09Z".parse().unwrap()
            )]
        );
        // The same as the full listing says.
        assert_eq!(expiries, expiries_of_records(&store));
    }
}
