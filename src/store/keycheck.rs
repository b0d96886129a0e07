//! The master key check and the store's system records: the sealed marker in `<store>/keycheck`
//! (read before the engine opens, written atomically with mode 0600) and in the engine's system
//! table, beside the store's format version.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use super::crypto::{Crypto, OpenError};
use super::engine::{Engine, Op, Table};
use super::{StoreError, permissions, persisted};

/// System table keys. Part of the on-disk format.
const KEY_CHECK: &[u8] = b"key_check";
pub(super) const STORE_FORMAT: &[u8] = b"format";
const KEY_CHECK_RECORD: &str = "system/key_check";
const KEY_CHECK_MARKER: &str = "inboxd store key check v1";
/// The key check file, beside the engine's files, read before the engine is opened.
pub(super) const KEY_CHECK_FILE: &str = "keycheck";
const KEY_CHECK_TEMP: &str = "keycheck.tmp";

/// Opens a sealed key check marker: `Ok(())` for this key, [`StoreError::WrongMasterKey`] for
/// another, `Corrupt` (naming `what` and `remedy`) for anything else.
fn verify_marker(
    crypto: &Crypto,
    sealed: &str,
    what: &str,
    remedy: &str,
) -> Result<(), StoreError> {
    match crypto.open(KEY_CHECK_RECORD, "marker", sealed) {
        Ok(marker) if marker.as_str() == KEY_CHECK_MARKER => Ok(()),
        Err(OpenError::Authentication) => Err(StoreError::WrongMasterKey),
        Ok(_) => Err(StoreError::corrupt(
            what,
            format!("it holds an unexpected marker{remedy}"),
        )),
        Err(err) => Err(StoreError::corrupt(
            what,
            format!("{}{remedy}", err.describe()),
        )),
    }
}

/// Checks the key check file of the store in `dir`, without opening the engine. `Ok(false)` when
/// there is no such file (a new store, or one written before the file existed).
pub(super) fn verify_key_check_file(dir: &Path, crypto: &Crypto) -> Result<bool, StoreError> {
    let file = dir.join(KEY_CHECK_FILE);
    let what = format!("the key check file {}", file.display());
    let remedy = format!(
        "; if the master key is right, remove {} and inboxd writes it again from the store's own key check",
        file.display()
    );
    let bytes = match std::fs::read(&file) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(StoreError::from_io(err)),
    };
    let sealed = persisted::decode_key_check_file(&what, &bytes).map_err(|err| match err {
        StoreError::Corrupt { what, why } => StoreError::Corrupt {
            what,
            why: format!("{why}{remedy}"),
        },
        other => other,
    })?;
    verify_marker(crypto, &sealed, &what, &remedy)?;
    Ok(true)
}

/// Writes the key check file atomically: a temporary file, fsynced, renamed over the file, and the
/// directory fsynced. Mode 0600.
pub(super) fn write_key_check_file(dir: &Path, crypto: &Crypto) -> Result<(), StoreError> {
    let sealed = crypto
        .seal(KEY_CHECK_RECORD, "marker", KEY_CHECK_MARKER)
        .map_err(|_| StoreError::Engine("could not encrypt the key check".into()))?;
    let bytes = persisted::encode_key_check_file(&sealed)?;
    let temp = dir.join(KEY_CHECK_TEMP);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(permissions::FILE_MODE)
        .open(&temp)
        .map_err(StoreError::from_io)?;
    file.write_all(&bytes).map_err(StoreError::from_io)?;
    file.sync_all().map_err(StoreError::from_io)?;
    drop(file);
    std::fs::rename(&temp, dir.join(KEY_CHECK_FILE)).map_err(StoreError::from_io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::from_io)
}

/// The store's layout, in the system table's format marker (its records carry their own version):
/// 1, the first; 2, the `app_expiries` index holds every expiring app. An inboxd that reads only
/// layout 1 refuses a store of layout 2 rather than write apps the index would miss.
pub(super) const STORE_FORMAT_VERSION: u32 = 2;

/// Who fills the expiry index of a store of layout 1 when it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AppIndex {
    /// The store does, from a scan of every app (sled: one process holds the store).
    Scan,
    /// The schema migration that made the table did, in its transaction (PostgreSQL).
    Migrated,
}

/// Checks the store's system records in a freshly opened engine (format version, key check),
/// writes them (flushed) into a new one, and brings a store of an older layout up to this one.
pub(super) fn init_system(
    engine: &dyn Engine,
    crypto: &Crypto,
    index: AppIndex,
) -> Result<(), StoreError> {
    if let Some(raw) = engine.get(Table::System, STORE_FORMAT)? {
        let found = raw
            .as_slice()
            .try_into()
            .map(u32::from_be_bytes)
            .map_err(|_| StoreError::corrupt("the store's format marker", "wrong length"))?;
        if found > STORE_FORMAT_VERSION {
            return Err(StoreError::UnsupportedVersion {
                what: "store".to_owned(),
                found,
                supported: STORE_FORMAT_VERSION,
            });
        }
        if found < 2 {
            let expiring = match index {
                AppIndex::Scan => super::apps::index_app_expiries(engine)?,
                AppIndex::Migrated => 0,
            };
            engine.insert(
                Table::System,
                STORE_FORMAT,
                &STORE_FORMAT_VERSION.to_be_bytes(),
            )?;
            engine.flush()?;
            tracing::info!(
                expiring_apps = expiring,
                "The store now keeps the apps' credential expiries in an index of their own (store format 2): inboxd versions before it cannot open this store."
            );
        }
    }
    match engine.get(Table::System, KEY_CHECK)? {
        Some(sealed) => {
            let sealed = std::str::from_utf8(&sealed)
                .map_err(|_| StoreError::corrupt("the store's key check", "it is not text"))?;
            verify_marker(crypto, sealed, "the store's key check", "")
        }
        None => {
            let sealed = crypto
                .seal(KEY_CHECK_RECORD, "marker", KEY_CHECK_MARKER)
                .map_err(|_| StoreError::Engine("could not encrypt the key check".into()))?;
            engine.apply(&[
                Op::Insert {
                    table: Table::System,
                    key: STORE_FORMAT.to_vec(),
                    value: STORE_FORMAT_VERSION.to_be_bytes().to_vec(),
                },
                Op::Insert {
                    table: Table::System,
                    key: KEY_CHECK.to_vec(),
                    value: sealed.into_bytes(),
                },
            ])?;
            engine.flush()
        }
    }
}
