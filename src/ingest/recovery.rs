//! The JSONL sink's crash recovery. A line is written (and `fsync`ed) before its message is
//! recorded as delivered, so a crash between the two leaves lines the ledger does not know: on
//! start, and after the store is reopened in-process, the lines after the stored checkpoint are
//! recorded as delivered before any channel polls, so no message is written twice.
//!
//! The checkpoint (a byte offset into the file) moves forward only past lines whose ledger
//! entries were flushed; the processor's checkpoint task moves it.

use std::path::Path;
use std::sync::Mutex;

use crate::domain::ChannelId;
use crate::ingest::ledger::Ledger;
use crate::sink::{JsonlSink, RecoveredLine, SinkError};
use crate::store::{Store, StoreError};

/// The meta key under which the JSONL checkpoint offset is stored.
pub const JSONL_CHECKPOINT_KEY: &str = "jsonl_checkpoint";

/// Why the JSONL sink could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The sink's file could not be opened or read.
    #[error("the JSONL sink could not be opened: {0}")]
    Sink(#[from] SinkError),
    /// The ledger could not record the recovered lines.
    #[error("the recovered JSONL lines could not be recorded: {0}")]
    Store(#[from] StoreError),
}

/// The checkpoint stored by a previous run (0 when none).
pub fn stored_checkpoint(store: &Store) -> u64 {
    store
        .get_meta(JSONL_CHECKPOINT_KEY)
        .ok()
        .flatten()
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// Stores the checkpoint: every line before `offset` is recorded in the ledger durably.
pub fn store_checkpoint(store: &Store, offset: u64) -> Result<(), StoreError> {
    store.put_meta(JSONL_CHECKPOINT_KEY, &offset.to_be_bytes())
}

/// Records the messages of these JSONL lines (channel id, message id, Internet Message-ID) as
/// delivered where the ledger does not know them as delivered already, with their Internet
/// Message-ID (so the other transport knows them too); answers how many it recorded.
pub fn record_lines(ledger: &Ledger, lines: &[RecoveredLine]) -> Result<usize, StoreError> {
    let now = chrono::Utc::now();
    let mut recovered = 0usize;
    for (channel, message_id, imid) in lines {
        let Ok(channel) = ChannelId::parse(channel) else {
            continue;
        };
        recovered += ledger.record_delivered_mail(
            channel,
            &[(message_id.as_str(), imid.as_deref())],
            now,
        )?;
    }
    Ok(recovered)
}

/// Opens the JSONL sink and records every line a crash left unrecorded as delivered, then moves
/// the checkpoint to the end of the file.
pub fn open_jsonl(ledger: &Ledger, path: &Path) -> Result<JsonlSink, RecoveryError> {
    let store = ledger.store();
    let checkpoint = stored_checkpoint(store);
    let (sink, recovery) = JsonlSink::open(path, checkpoint)?;
    let lines: Vec<RecoveredLine> = recovery
        .keys
        .iter()
        .zip(&recovery.internet_message_ids)
        .map(|((channel, message), imid)| (channel.clone(), message.clone(), imid.clone()))
        .collect();
    let recovered = record_lines(ledger, &lines)?;
    if !recovery.keys.is_empty() {
        tracing::info!(
            lines = recovery.keys.len(),
            recovered,
            "Recovered the JSONL sink's tail after a restart."
        );
    }
    store.flush()?;
    store_checkpoint(store, recovery.end_offset)?;
    store.flush()?;
    Ok(sink)
}

/// After the store is reopened in-process (a write error), the ledger entries of lines written
/// since the last checkpoint may be gone with the failed engine: record them again, as a restart
/// would, before any channel polls.
pub fn rerecord_tail(ledger: &Ledger, file: &Mutex<JsonlSink>) -> Result<(), String> {
    let checkpoint = stored_checkpoint(ledger.store());
    let keys = file
        .lock()
        .map_err(|_| "the JSONL sink's lock is poisoned".to_owned())?
        .keys_since(checkpoint)
        .map_err(|err| err.to_string())?;
    let recovered = record_lines(ledger, &keys).map_err(|err| err.to_string())?;
    if recovered > 0 {
        tracing::info!(
            lines = keys.len(),
            recovered,
            "Recorded the JSONL sink's recent lines again after the store was reopened."
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::domain::secret::MasterKey;
    use crate::ingest::ledger::message_id_key;

    #[test]
    fn a_recovered_line_is_known_by_its_internet_message_id_too() {
        let ledger = Ledger::new(Store::in_memory(MasterKey::generate()).unwrap());
        let channel = ChannelId::generate();
        let lines = vec![
            (
                channel.to_string(),
                "AAMk-graph-id".to_owned(),
                Some("<crash@contoso.com>".to_owned()),
            ),
            (channel.to_string(), "AAMk-no-imid".to_owned(), None),
            ("not a channel".to_owned(), "x".to_owned(), None),
        ];
        assert_eq!(record_lines(&ledger, &lines).unwrap(), 2);
        assert!(ledger.is_delivered(channel, "AAMk-graph-id").unwrap());
        // After a move to IMAP, the same mail under its UID is recognised by the Message-ID.
        let alias = message_id_key("crash@contoso.com").unwrap();
        assert!(ledger.is_delivered(channel, &alias).unwrap());
        // Recorded once: a second recovery of the same lines changes nothing.
        assert_eq!(record_lines(&ledger, &lines).unwrap(), 0);
    }
}
