//! The sled engine: one sled tree per [`Table`]. The only file of inboxd that imports sled; no sled
//! type leaves it. It also owns what is sled-specific about opening a store: which files make a
//! directory a store, refusing a database of another program, and sled's error reporting.

use std::ops::ControlFlow;
use std::path::Path;

use sled::Transactional as _;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::store::StoreOptions;
use crate::store::engine::{Engine, Op, Scan, Table, Visitor, mail_needs_postgres};
use crate::store::error::StoreError;

/// sled's own tree, which every sled database has.
const SLED_DEFAULT_TREE: &[u8] = b"__sled__default";

/// One open sled database and its trees (in [`Table::ALL`] order).
pub(crate) struct SledEngine {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    path: String,
}

impl Drop for SledEngine {
    fn drop(&mut self) {
        // Best effort: whatever the background flusher has not written yet.
        if let Err(err) = self.db.flush() {
            tracing::warn!(path = %self.path, error = %err, "the store could not flush on close");
        }
    }
}

/// Maps a sled error; `path` names the store for the lock message.
fn from_sled(err: sled::Error, path: &str) -> StoreError {
    match err {
        sled::Error::Io(source) => {
            // sled 0.34 reports a held lock only through this message (config.rs, `try_lock`).
            if source.to_string().contains("could not acquire lock") {
                StoreError::Locked {
                    path: path.to_owned(),
                }
            } else {
                StoreError::from_io(source)
            }
        }
        sled::Error::Corruption { at, .. } => StoreError::Corrupt {
            what: format!("data in {path}"),
            why: format!("the storage engine found corruption at {at:?}"),
        },
        sled::Error::CollectionNotFound(name) => StoreError::Engine(format!(
            "collection {:?} not found",
            String::from_utf8_lossy(&name)
        )),
        sled::Error::Unsupported(why) => StoreError::Engine(format!("unsupported use: {why}")),
        sled::Error::ReportableBug(why) => StoreError::Engine(format!("internal bug: {why}")),
    }
}

/// Whether a directory's entries are those of a sled store (sled's `db` and `conf` files).
pub(crate) fn holds_engine_files(names: &[std::ffi::OsString]) -> bool {
    names.iter().any(|n| n == "db") && names.iter().any(|n| n == "conf")
}

impl SledEngine {
    /// Opens the sled database in `path` (an existing directory), refusing a database of another
    /// program before anything is written into it.
    pub(crate) fn open(
        path: &Path,
        shown: &str,
        options: &StoreOptions,
    ) -> Result<SledEngine, StoreError> {
        let err = |e| from_sled(e, shown);
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_capacity_bytes)
            .flush_every_ms(options.flush_every_ms)
            .open()
            .map_err(err)?;
        let names = db.tree_names();
        let system = Table::System.name().as_bytes();
        let has_system = names.iter().any(|name| &name[..] == system);
        let foreign_trees = names.iter().any(|name| {
            &name[..] != SLED_DEFAULT_TREE
                && !Table::ALL.iter().any(|t| t.name().as_bytes() == &name[..])
        });
        if !has_system && (foreign_trees || !db.is_empty()) {
            return Err(StoreError::NotAStore {
                path: shown.to_owned(),
                why: "it is a database of another program".to_owned(),
            });
        }
        let trees = Table::ALL
            .iter()
            .map(|t| db.open_tree(t.name()).map_err(err))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SledEngine {
            db,
            trees,
            path: shown.to_owned(),
        })
    }

    fn tree(&self, table: Table) -> Result<&sled::Tree, StoreError> {
        self.trees
            .get(table.index())
            .ok_or_else(|| StoreError::Engine(format!("no tree for table {}", table.name())))
    }

    fn err(&self, err: sled::Error) -> StoreError {
        from_sled(err, &self.path)
    }
}

impl Engine for SledEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self.tree(table)?.get(key).map_err(|e| self.err(e))?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree(table)?
            .insert(key, value)
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn remove(&self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        let old = self.tree(table)?.remove(key).map_err(|e| self.err(e))?;
        Ok(old.is_some())
    }

    fn compare_and_swap(
        &self,
        table: Table,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let swapped = self
            .tree(table)?
            .compare_and_swap(key, expected, new)
            .map_err(|e| self.err(e))?;
        Ok(swapped.is_ok())
    }

    fn scan(
        &self,
        table: Table,
        scan: Scan<'_>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        let tree = self.tree(table)?;
        let iter = match scan {
            Scan::All => tree.iter(),
            Scan::Prefix(prefix) => tree.scan_prefix(prefix),
            Scan::After(after) => tree
                .range::<&[u8], _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
        };
        for entry in iter {
            let (key, value) = entry.map_err(|e| self.err(e))?;
            if let ControlFlow::Break(()) = visit(&key, &value) {
                break;
            }
        }
        Ok(())
    }

    fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
        let Some(first) = ops.first() else {
            return Ok(());
        };
        let Some(tables) = ops.iter().map(Op::table).collect::<Option<Vec<Table>>>() else {
            return Err(mail_needs_postgres());
        };
        let one_table = first.table().ok_or_else(mail_needs_postgres)?;
        if tables.iter().all(|t| *t == one_table) {
            // One tree: sled's batch is atomic and much cheaper than a transaction.
            let mut batch = sled::Batch::default();
            for op in ops {
                match op {
                    Op::Insert { key, value, .. } => batch.insert(key.as_slice(), value.as_slice()),
                    Op::Remove { key, .. } => batch.remove(key.as_slice()),
                    Op::Mail { .. } => return Err(mail_needs_postgres()),
                }
            }
            return self
                .tree(one_table)?
                .apply_batch(batch)
                .map_err(|e| self.err(e));
        }
        let result = self.trees.as_slice().transaction(|trees| {
            for (op, table) in ops.iter().zip(&tables) {
                let index = table.index();
                let Some(tree) = trees.get(index) else {
                    return Err(ConflictableTransactionError::Abort(index));
                };
                match op {
                    Op::Insert { key, value, .. } => {
                        tree.insert(key.as_slice(), value.as_slice())?;
                    }
                    Op::Remove { key, .. } => {
                        tree.remove(key.as_slice())?;
                    }
                    // Refused above, before the transaction.
                    Op::Mail { .. } => {}
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(index)) => Err(StoreError::Engine(format!(
                "a batch named table {index}, which the engine does not have"
            ))),
            Err(TransactionError::Storage(err)) => Err(self.err(err)),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(|e| self.err(e))?;
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::domain::secret::MasterKey;
    use crate::store::{Store, StoreErrorKind};

    /// Opens a store that was just closed: sled's background threads may hold its lock a moment
    /// longer on a busy machine.
    fn reopen(dir: &Path, key: &MasterKey) -> Store {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Store::open(dir, key.clone(), StoreOptions::default()) {
                Err(err)
                    if err.kind() == StoreErrorKind::Locked
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other.unwrap(),
            }
        }
    }

    #[test]
    fn a_database_of_another_program_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("their_tree")
                .unwrap()
                .insert(b"k", b"v")
                .unwrap();
            db.flush().unwrap();
        }
        let err =
            Store::open(dir.path(), MasterKey::generate(), StoreOptions::default()).unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::NotAStore, "{err}");
        let db = sled::open(dir.path()).unwrap();
        assert!(
            !db.tree_names()
                .iter()
                .any(|n| &n[..] == Table::System.name().as_bytes())
        );
    }

    #[test]
    fn a_store_of_a_newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        drop(Store::open(dir.path(), key.clone(), StoreOptions::default()).unwrap());
        {
            let db = sled::open(dir.path()).unwrap();
            let system = db.open_tree(Table::System.name()).unwrap();
            system
                .insert(crate::store::keycheck::STORE_FORMAT, &99u32.to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        let err = Store::open(dir.path(), key, StoreOptions::default()).unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Incompatible, "{err}");
        assert!(err.to_string().contains("newer inboxd"), "{err}");
    }

    #[test]
    fn a_store_without_a_key_check_file_opens_and_gains_one() {
        // A store written before the key check file existed: its key check is in the engine only.
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        drop(Store::open(dir.path(), key.clone(), StoreOptions::default()).unwrap());
        let file = dir.path().join(crate::store::keycheck::KEY_CHECK_FILE);
        std::fs::remove_file(&file).unwrap();
        // A wrong key is still refused, by the engine's own check.
        let wrong = MasterKey::generate();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let err = loop {
            let err = Store::open(dir.path(), wrong.clone(), StoreOptions::default()).unwrap_err();
            if err.kind() != StoreErrorKind::Locked || std::time::Instant::now() > deadline {
                break err;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(err.kind(), StoreErrorKind::WrongKey, "{err}");
        assert!(
            !file.exists(),
            "a wrong key must not write the key check file"
        );
        drop(reopen(dir.path(), &key));
        assert!(
            file.exists(),
            "the migration did not write the key check file"
        );
        // And the file now guards the store before sled opens.
        let err =
            Store::open(dir.path(), MasterKey::generate(), StoreOptions::default()).unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::WrongKey, "{err}");
    }
}
