//! The JSONL sink: one JSON object per line in one file, appended in batches with one `sync_data`
//! each (group commit), and repaired and scanned on open so that a crash loses nothing and doubles
//! nothing.
//!
//! How exactly-once works with the processor: after each successful [`JsonlSink::append`] the file
//! holds only whole lines, and the processor records the messages as delivered together with the
//! returned end offset (its checkpoint). A crash between the two leaves lines in the file that the
//! ledger does not know about; [`JsonlSink::open`] returns them in [`Recovery`] so that the processor
//! marks them delivered instead of writing them a second time. A crash in the middle of a write leaves
//! a partial last line, which `open` truncates.
//!
//! The sink is a plain blocking struct: the processor calls it from its `jsonl-writer` thread.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::sink::{SinkError, SinkRecord};

/// A serialization buffer larger than this is not kept between batches.
const MAX_KEPT_BUFFER: usize = 8 * 1024 * 1024;

/// What the file holds beyond the processor's checkpoint: messages that are in the sink but may not
/// be recorded as delivered yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovery {
    /// `(channel_id, message_id)` of each line after the checkpoint, in file order.
    pub keys: Vec<(String, String)>,
    /// Each of those lines' Internet Message-ID (same order; `None` when the mail had none), so a
    /// channel that moves to another transport after a crash knows these mails too.
    pub internet_message_ids: Vec<Option<String>>,
    /// The end of the file: the checkpoint to record once these keys are marked delivered.
    pub end_offset: u64,
}

/// An append-only JSONL file of [`SinkRecord`]s.
pub struct JsonlSink {
    path: PathBuf,
    file: File,
    /// Device and inode of `file`, to notice that the path was removed or replaced (rotation).
    identity: (u64, u64),
    offset: u64,
    buf: Vec<u8>,
}

impl std::fmt::Debug for JsonlSink {
    /// The path and offset; not the buffer, which holds mail.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlSink")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

/// Only the fields recovery needs; everything else in a line is skipped.
#[derive(Deserialize)]
struct LineKey {
    channel_id: String,
    message_id: String,
    #[serde(default)]
    internet_message_id: Option<String>,
}

/// A recovered line: `(channel_id, message_id, internet_message_id)`.
pub type RecoveredLine = (String, String, Option<String>);

impl JsonlSink {
    /// Opens (or creates) the file at `path`, creating its directory if missing, truncates a partial
    /// last line left by a crash, and returns the lines from `checkpoint_offset` to the end.
    ///
    /// A checkpoint inside a line is moved back to the start of that line (reporting a line that is
    /// in the file is harmless; missing one would write it twice). A checkpoint beyond the end of the
    /// file (the file was replaced) scans the whole file.
    pub fn open(path: &Path, checkpoint_offset: u64) -> Result<(JsonlSink, Recovery), SinkError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            // Owner-only, like the file: mail is private. An existing directory is left as it is.
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|err| io_error(dir, "creating the directory", &err))?;
        }
        let (file, identity, end) = open_file(path)?;
        let lines = scan(&file, path, checkpoint_offset, end)
            .map_err(|err| io_error(path, "reading", &err))?;
        let (keys, internet_message_ids) = lines
            .into_iter()
            .map(|(channel, message, imid)| ((channel, message), imid))
            .unzip();
        let sink = JsonlSink {
            path: path.to_owned(),
            file,
            identity,
            offset: end,
            buf: Vec::with_capacity(64 * 1024),
        };
        Ok((
            sink,
            Recovery {
                keys,
                internet_message_ids,
                end_offset: end,
            },
        ))
    }

    /// `(channel_id, message_id, internet_message_id)` of each line from `checkpoint` to the end (as
    /// [`open`](Self::open) reports them), for re-recording them after the store lost its recent
    /// writes.
    pub fn keys_since(&self, checkpoint: u64) -> Result<Vec<RecoveredLine>, SinkError> {
        scan(&self.file, &self.path, checkpoint, self.offset)
            .map_err(|err| io_error(&self.path, "reading", &err))
    }

    /// Appends the records, one line each, in one write followed by one `sync_data`, and returns the
    /// new end offset (the processor's next checkpoint). On failure the file is truncated back to
    /// where it was, so that it never holds a partial line, and nothing of the batch counts as
    /// written. A record that cannot be encoded (which serde_json never does for this type) fails
    /// the whole batch with [`SinkError::Encode`] before anything is written.
    pub fn append(&mut self, records: &[SinkRecord]) -> Result<u64, SinkError> {
        self.append_all(records)
    }

    /// [`append`](Self::append) of records that need not sit in one slice (the processor's group
    /// of batches, without the repeats it leaves out).
    pub fn append_all<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a SinkRecord>,
    ) -> Result<u64, SinkError> {
        self.buf.clear();
        for record in records {
            serde_json::to_writer(&mut self.buf, record).map_err(|err| SinkError::Encode {
                key: record.key(),
                reason: err.to_string(),
            })?;
            self.buf.push(b'\n');
        }
        if self.buf.is_empty() {
            return Ok(self.offset);
        }
        let before = self.follow_path()?;
        let written = self
            .file
            .write_all(&self.buf)
            .and_then(|()| self.file.sync_data());
        if let Err(err) = written {
            self.roll_back(before, &err);
            return Err(io_error(&self.path, "appending to", &err));
        }
        self.offset = before + self.buf.len() as u64;
        if self.buf.capacity() > MAX_KEPT_BUFFER {
            self.buf = Vec::with_capacity(64 * 1024);
        }
        Ok(self.offset)
    }

    /// The end of the file as far as this sink wrote it.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes sure `self.file` is still the file at `self.path` and returns its length. A removed or
    /// replaced (rotated) file is followed: the sink continues in the file now at the path, so that
    /// nothing is written into an unlinked file.
    fn follow_path(&mut self) -> Result<u64, SinkError> {
        match fs::metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.identity => {
                if meta.is_file() && meta.len() != self.offset {
                    tracing::warn!(
                        path = %self.path.display(),
                        expected = self.offset,
                        actual = meta.len(),
                        "the JSONL file changed size behind inboxd's back; appending at its end"
                    );
                }
                Ok(if meta.is_file() {
                    meta.len()
                } else {
                    self.offset
                })
            }
            Ok(_) => {
                tracing::warn!(
                    path = %self.path.display(),
                    "the JSONL file was replaced (rotated?); continuing in the new file"
                );
                self.reopen()
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(
                    path = %self.path.display(),
                    "the JSONL file was removed; starting a new one"
                );
                self.reopen()
            }
            Err(err) => Err(io_error(&self.path, "checking", &err)),
        }
    }

    fn reopen(&mut self) -> Result<u64, SinkError> {
        let (file, identity, end) = open_file(&self.path)?;
        self.file = file;
        self.identity = identity;
        self.offset = end;
        Ok(end)
    }

    /// Truncates a failed write back to `before`.
    fn roll_back(&mut self, before: u64, cause: &io::Error) {
        self.offset = before;
        let undone = self
            .file
            .set_len(before)
            .and_then(|()| self.file.sync_data());
        match undone {
            Ok(()) => tracing::warn!(
                path = %self.path.display(),
                offset = before,
                error = %cause,
                "a write to the JSONL file failed; truncated it back to its last whole line"
            ),
            Err(err) => tracing::error!(
                path = %self.path.display(),
                offset = before,
                error = %cause,
                truncate_error = %err,
                "a write to the JSONL file failed and truncating it back failed too; \
                 the next open repairs a partial last line"
            ),
        }
    }
}

/// Opens the file for appending and reading, repairs a partial last line, and returns the file, its
/// identity and its length.
fn open_file(path: &Path) -> Result<(File, (u64, u64), u64), SinkError> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        // Owner-only whatever the umask: the lines hold mail.
        .mode(0o600)
        .open(path)
        .map_err(|err| io_error(path, "opening", &err))?;
    let meta = file
        .metadata()
        .map_err(|err| io_error(path, "checking", &err))?;
    let identity = (meta.dev(), meta.ino());
    if !meta.is_file() {
        // A device such as /dev/null: nothing to repair or scan.
        return Ok((file, identity, 0));
    }
    let end = repair_tail(&file, path, meta.len())?;
    Ok((file, identity, end))
}

/// Truncates a partial last line (a crash in the middle of a write) and returns the new length.
fn repair_tail(file: &File, path: &Path, len: u64) -> Result<u64, SinkError> {
    if len == 0 {
        return Ok(0);
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)
        .map_err(|err| io_error(path, "reading", &err))?;
    if last[0] == b'\n' {
        return Ok(len);
    }
    let keep = line_start_before(file, len).map_err(|err| io_error(path, "reading", &err))?;
    file.set_len(keep)
        .and_then(|()| file.sync_data())
        .map_err(|err| io_error(path, "repairing", &err))?;
    tracing::warn!(
        path = %path.display(),
        kept = keep,
        discarded = len - keep,
        "the JSONL file ended with a partial line (a crash in the middle of a write); truncated it"
    );
    Ok(keep)
}

/// The position just after the last `\n` strictly before `pos`, or 0.
fn line_start_before(file: &File, pos: u64) -> io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut end = pos;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The keys of the lines from `checkpoint` to `end`.
fn scan(file: &File, path: &Path, checkpoint: u64, end: u64) -> io::Result<Vec<RecoveredLine>> {
    let from = if checkpoint > end {
        tracing::warn!(
            path = %path.display(),
            checkpoint,
            end,
            "the JSONL file is shorter than the recorded checkpoint (replaced?); scanning all of it"
        );
        0
    } else {
        line_start_before(file, checkpoint)?
    };
    let mut handle = file;
    handle.seek(SeekFrom::Start(from))?;
    let mut reader = BufReader::with_capacity(256 * 1024, handle.take(end - from));
    let mut keys = Vec::new();
    let mut line = Vec::new();
    let mut at = from;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        match serde_json::from_slice::<LineKey>(&line) {
            Ok(key) => keys.push((key.channel_id, key.message_id, key.internet_message_id)),
            Err(err) => tracing::warn!(
                path = %path.display(),
                offset = at,
                error = %err,
                "skipping a line of the JSONL file that is not a record"
            ),
        }
        at += n as u64;
    }
    Ok(keys)
}

/// An I/O failure as an unavailable sink, with what to do about it.
fn io_error(path: &Path, action: &str, err: &io::Error) -> SinkError {
    use io::ErrorKind as K;
    let path = path.display();
    let resumes = "inboxd resumes by itself";
    let (reason, disk_full) = match err.kind() {
        K::StorageFull | K::QuotaExceeded => (
            format!(
                "the disk holding {path} is full ({err}) while {action} it: free space or move \
                 processor.jsonl_path; {resumes}"
            ),
            true,
        ),
        K::FileTooLarge => (
            format!(
                "{path} reached the file-size limit ({err}): rotate it or raise the limit; {resumes}"
            ),
            true,
        ),
        K::ReadOnlyFilesystem => (
            format!(
                "the JSONL file {path} is on a read-only file system ({err}): remount it \
                 read-write or move processor.jsonl_path; {resumes}"
            ),
            false,
        ),
        K::PermissionDenied => (
            format!(
                "the JSONL file {path} is read-only for inboxd ({err}) while {action} it: make it \
                 and its directory writable by the inboxd user; {resumes}"
            ),
            false,
        ),
        K::IsADirectory => (
            format!(
                "{path} is a directory, not a file: remove it or set processor.jsonl_path to a \
                 file path; {resumes}"
            ),
            false,
        ),
        K::NotFound => (
            format!("the directory of the JSONL file {path} is gone: recreate it; {resumes}"),
            false,
        ),
        K::NotADirectory => (
            format!(
                "a parent of {path} is a file, not a directory: fix processor.jsonl_path; {resumes}"
            ),
            false,
        ),
        _ => (
            format!("{action} the JSONL file {path} failed ({err}): check the disk; {resumes}"),
            false,
        ),
    };
    SinkError::Unavailable { reason, disk_full }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn reason(err: &SinkError) -> String {
        err.to_string()
    }

    #[test]
    fn io_failures_say_what_to_do() {
        let path = Path::new("/x/mail.jsonl");
        let full = io_error(
            path,
            "appending to",
            &io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(full.is_disk_full());
        assert!(!full.is_message_fault());
        assert!(reason(&full).contains("free space"), "{full}");

        let rofs = io_error(
            path,
            "appending to",
            &io::Error::from_raw_os_error(libc::EROFS),
        );
        assert!(!rofs.is_disk_full());
        assert!(reason(&rofs).contains("read-only"), "{rofs}");
        assert!(reason(&rofs).contains("resumes by itself"), "{rofs}");

        let denied = io_error(path, "opening", &io::Error::from_raw_os_error(libc::EACCES));
        assert!(reason(&denied).contains("make it"), "{denied}");

        let gone = io_error(path, "opening", &io::Error::from_raw_os_error(libc::ENOENT));
        assert!(reason(&gone).contains("gone"), "{gone}");

        let big = io_error(
            path,
            "appending to",
            &io::Error::from_raw_os_error(libc::EFBIG),
        );
        assert!(big.is_disk_full());
    }

    #[test]
    fn line_starts_are_found_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut content = vec![b'a'; 200_000];
        content[10] = b'\n';
        content[150_000] = b'\n';
        fs::write(&path, &content).unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(line_start_before(&file, 200_000).unwrap(), 150_001);
        assert_eq!(line_start_before(&file, 150_001).unwrap(), 150_001);
        assert_eq!(line_start_before(&file, 150_000).unwrap(), 11);
        assert_eq!(line_start_before(&file, 10).unwrap(), 0);
        assert_eq!(line_start_before(&file, 0).unwrap(), 0);
    }
}
