//! Recovery after I/O errors: the broken flag, the durable write probe, reopening the engine, and
//! the hooks that bring writers outside the store up to date before it counts as working again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::engine::{Engine, Table};
use super::{Store, StoreError, StoreErrorKind};

/// A system table key (part of the on-disk format), written and flushed by [`Store::recover`] to
/// see whether the engine takes writes.
const PROBE_KEY: &[u8] = b"inboxd_write_probe";

/// Work that must follow a recovery: the writes not flushed before the error are gone, and whoever
/// wrote outside the store on their strength (the JSONL sink) writes them again. An error keeps the
/// store failed; the next recovery runs every hook again, so hooks must be idempotent.
pub type ReopenHook = Box<dyn Fn(&Store) -> Result<(), String> + Send + Sync>;

/// Whether the engine takes a durable write.
fn probe(engine: &dyn Engine) -> Result<(), StoreError> {
    engine.insert(
        Table::System,
        PROBE_KEY,
        &Utc::now().timestamp_millis().to_be_bytes(),
    )?;
    engine.flush()
}

impl Store {
    /// Whether an engine call failed with an I/O error since the last successful
    /// [`recover`](Self::recover): the store then refuses writes until it is recovered.
    pub fn is_broken(&self) -> bool {
        self.shared.broken.load(Ordering::SeqCst)
    }

    /// While the store is broken, the error that broke it (a full disk, a read-only file system,
    /// another I/O error), so a caller that waits for the recovery reports the real cause.
    pub fn broken_error(&self) -> Option<StoreError> {
        if !self.is_broken() {
            return None;
        }
        let (kind, text) = self.shared.broken_by.lock().clone()?;
        let source = std::io::Error::other(format!(
            "{text}; inboxd reopens the store as soon as the disk takes writes again"
        ));
        Some(match kind {
            StoreErrorKind::DiskFull => StoreError::DiskFull { source },
            StoreErrorKind::ReadOnly => StoreError::ReadOnly { source },
            _ => StoreError::Io { source },
        })
    }

    /// Brings a store back after an I/O error (a full disk, a file-size limit, a read-only
    /// remount) once the disk takes writes again. sled refuses every call after such an error
    /// until it is opened again, so this probes with a durable write and, if that fails, closes
    /// the engine (waiting up to 5 s for calls in flight), opens it again and probes once more.
    /// Everything flushed before the error is kept; what was not flushed is gone, which every
    /// caller allows for: nothing is acknowledged before its flush, and the [`ReopenHook`]s run
    /// before the store counts as working again.
    ///
    /// Answers `Ok(false)` when there was nothing to recover, `Ok(true)` when the store works
    /// again, and the error when the disk still refuses (call again later). Blocking.
    pub fn recover(&self) -> Result<bool, StoreError> {
        if !self.is_broken() {
            return Ok(false);
        }
        let _one = self.shared.recovering.lock();
        if !self.is_broken() {
            return Ok(true);
        }
        let healthy = self
            .engine()
            .is_ok_and(|engine| probe(engine.as_ref()).is_ok());
        if !healthy {
            self.reopen()?;
        }
        // What the failed engine had not flushed is gone: let its writers write it again.
        for hook in self.shared.reopen_hooks.lock().iter() {
            hook(self).map_err(|why| StoreError::Io {
                source: std::io::Error::other(format!(
                    "the store was reopened but could not be brought up to date: {why}"
                )),
            })?;
        }
        self.flush()?;
        self.shared.broken.store(false, Ordering::SeqCst);
        if healthy {
            return Ok(true);
        }
        tracing::info!(path = %self.shared.path, "The store was reopened after a write error and takes writes again.");
        Ok(true)
    }

    /// Registers work to run after each recovery (see [`ReopenHook`]).
    pub fn on_reopen(&self, hook: ReopenHook) {
        self.shared.reopen_hooks.lock().push(hook);
    }

    /// Closes the failed engine (waiting up to 5 s for calls in flight), opens it again and probes
    /// it with a durable write.
    fn reopen(&self) -> Result<(), StoreError> {
        // Nobody gets the failed engine from now on; wait for the calls in flight.
        let old = self.shared.current.write().take();
        if let Some(old) = old {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(old);
        }
        // sled's lock is released once the last handle is gone; a call that outlived the
        // wait above holds it a little longer.
        let deadline = Instant::now() + Duration::from_secs(5);
        let engine = loop {
            match (self.shared.opener)(&self.shared.crypto) {
                Ok(engine) => break engine,
                Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(err) => return Err(err),
            }
        };
        let probed = probe(engine.as_ref());
        *self.shared.current.write() = Some(engine);
        probed
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::domain::secret::MasterKey;
    use crate::store::crypto::Crypto;
    use crate::store::engine::{self, Op, Scan};
    use crate::store::keycheck::{AppIndex, init_system};
    use crate::store::{Opener, memory};
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    /// A memory engine that behaves like sled on a full disk: while `full` is set writes fail, and
    /// after one failure this instance fails every call until it is replaced (reopened).
    struct Faulty {
        inner: Arc<memory::MemoryEngine>,
        full: Arc<AtomicBool>,
        failed: AtomicBool,
    }

    impl Faulty {
        fn check(&self, write: bool) -> Result<(), StoreError> {
            if self.failed.load(Ordering::SeqCst) || (write && self.full.load(Ordering::SeqCst)) {
                self.failed.store(true, Ordering::SeqCst);
                return Err(StoreError::from_io(std::io::Error::from_raw_os_error(
                    libc::ENOSPC,
                )));
            }
            Ok(())
        }
    }

    impl Engine for Faulty {
        fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.check(false)?;
            self.inner.get(table, key)
        }
        fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
            self.check(true)?;
            self.inner.insert(table, key, value)
        }
        fn remove(&self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
            self.check(true)?;
            self.inner.remove(table, key)
        }
        fn compare_and_swap(
            &self,
            table: Table,
            key: &[u8],
            expected: Option<&[u8]>,
            new: Option<&[u8]>,
        ) -> Result<bool, StoreError> {
            self.check(true)?;
            self.inner.compare_and_swap(table, key, expected, new)
        }
        fn scan(
            &self,
            table: Table,
            scan: Scan<'_>,
            visit: &mut engine::Visitor<'_>,
        ) -> Result<(), StoreError> {
            self.check(false)?;
            self.inner.scan(table, scan, visit)
        }
        fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
            self.check(true)?;
            self.inner.apply(ops)
        }
        fn flush(&self) -> Result<(), StoreError> {
            self.check(true)?;
            self.inner.flush()
        }
        fn size_on_disk(&self) -> Result<u64, StoreError> {
            self.inner.size_on_disk()
        }
    }

    #[test]
    fn an_engine_that_failed_is_reopened_once_it_takes_writes_and_the_hooks_run() {
        let data = Arc::new(memory::MemoryEngine::new());
        let full = Arc::new(AtomicBool::new(false));
        let opens = Arc::new(AtomicUsize::new(0));
        let make = {
            let (data, full, opens) = (data.clone(), full.clone(), opens.clone());
            move || {
                opens.fetch_add(1, Ordering::SeqCst);
                Arc::new(Faulty {
                    inner: data.clone(),
                    full: full.clone(),
                    failed: AtomicBool::new(false),
                })
            }
        };
        let crypto = Crypto::new(&MasterKey::generate());
        let first = make();
        init_system(first.as_ref(), &crypto, AppIndex::Scan).unwrap();
        let opener: Opener = Box::new(move |crypto: &Crypto| {
            let engine = make();
            init_system(engine.as_ref(), crypto, AppIndex::Scan)?;
            Ok(engine as Arc<dyn Engine>)
        });
        let store = Store::assemble(first, opener, crypto, "faulty".to_owned(), None);
        let hooks = Arc::new(AtomicUsize::new(0));
        let counted = hooks.clone();
        store.on_reopen(Box::new(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }));
        assert!(
            !store.recover().unwrap(),
            "a healthy store needs no recovery"
        );

        store.put_meta("before", b"1").unwrap();
        full.store(true, Ordering::SeqCst);
        let err = store.put_meta("during", b"2").unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        assert!(store.is_broken());
        // Reads fail too, as sled's do, until the engine is reopened.
        assert!(store.get_meta("before").is_err());
        // While the disk is full, recovery fails and the store stays broken.
        assert!(store.recover().unwrap_err().is_disk_full());
        assert!(store.is_broken());
        assert_eq!(hooks.load(Ordering::SeqCst), 0);

        full.store(false, Ordering::SeqCst);
        assert!(store.recover().unwrap());
        assert!(!store.is_broken());
        assert_eq!(hooks.load(Ordering::SeqCst), 1);
        assert!(
            opens.load(Ordering::SeqCst) >= 3,
            "the engine was not reopened"
        );
        assert_eq!(store.get_meta("before").unwrap(), Some(b"1".to_vec()));
        store.put_meta("after", b"3").unwrap();
        assert!(!store.recover().unwrap());
    }

    #[test]
    fn a_failing_hook_keeps_the_store_broken_and_runs_again_next_time() {
        let store = Store::in_memory(MasterKey::generate()).unwrap();
        let fail = Arc::new(AtomicBool::new(true));
        let flag = fail.clone();
        store.on_reopen(Box::new(move |_| {
            if flag.load(Ordering::SeqCst) {
                Err("the sink is not ready".to_owned())
            } else {
                Ok(())
            }
        }));
        store.shared.broken.store(true, Ordering::SeqCst);
        let err = store.recover().unwrap_err();
        assert!(err.to_string().contains("the sink is not ready"), "{err}");
        assert!(store.is_broken());
        fail.store(false, Ordering::SeqCst);
        assert!(store.recover().unwrap());
        assert!(!store.is_broken());
    }
}
