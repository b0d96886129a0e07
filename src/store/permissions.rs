//! File permissions of the store: its directory is created 0700, and every file and directory under
//! it is made owner-only (files 0600, directories 0700) once the engine has opened, whatever the
//! umask was when the engine created them. [`restrict_umask`] makes files created later (the
//! engine's snapshots, the JSONL sink's files) owner-only too: the daemon calls it at start.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;

/// The mode of every file the store writes.
pub(crate) const FILE_MODE: u32 = 0o600;
/// The mode of the store's directories.
pub(crate) const DIR_MODE: u32 = 0o700;

/// Sets the process's umask to `0o077`, so that every file and directory the process creates from
/// now on is readable and writable by its owner only. Returns the previous umask. The umask is
/// process-wide: call it once at start, before any thread creates files.
pub fn restrict_umask() -> u32 {
    let previous = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    previous.as_raw_mode()
}

/// Creates `path` (and missing parents) for the store; the store's own directory gets mode 0700,
/// parents the process's default. An existing directory is left as it is.
pub(crate) fn create_private_dir(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        other => other,
    }
}

/// Makes `dir` and everything under it owner-only: directories 0700, files 0600. Symbolic links
/// are not followed.
pub(crate) fn restrict_tree(dir: &Path) -> io::Result<()> {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = fs::symlink_metadata(&path)?;
        let mode = if meta.is_dir() {
            for entry in fs::read_dir(&path)? {
                todo.push(entry?.path());
            }
            DIR_MODE
        } else if meta.is_file() {
            FILE_MODE
        } else {
            continue;
        };
        if meta.permissions().mode() & 0o7777 != mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}
