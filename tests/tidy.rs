//! Keeps the code base's conventions true: every Rust source file (the product's, the test kit's,
//! the benches') opens with a `//!` doc saying what it owns, only the store's sled engine
//! (`src/store/sled_engine.rs`) touches sled, and the product imports no test kit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 20);
    files
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let missing: Vec<_> = sources()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` module doc: {missing:?}"
    );
}

#[test]
fn the_test_kit_and_the_benches_open_with_a_module_doc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("testkit").join("src"), &mut files);
    rust_files(&root.join("benches"), &mut files);
    assert!(files.len() > 5);
    let missing: Vec<_> = files
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` module doc: {missing:?}"
    );
}

#[test]
fn only_the_sled_engine_touches_sled() {
    let engine = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join("store")
        .join("sled_engine.rs");
    assert!(engine.is_file(), "{} is gone", engine.display());
    let offenders: Vec<_> = sources()
        .into_iter()
        .filter(|path| *path != engine)
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            text.contains("sled::")
                || text.contains("use sled")
                || text.contains("extern crate sled")
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "sled used outside src/store/sled_engine.rs (the store's engine seam is src/store/engine.rs): {offenders:?}"
    );
}

/// The code of `path` before its `#[cfg(test)]` module (tests may set up whatever they need).
fn product_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

#[test]
fn only_the_ledger_writes_ledger_entries() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let ledger = src.join("ingest").join("ledger.rs");
    let writes = [
        ".ledger_put(",
        ".ledger_put_many(",
        ".ledger_delete(",
        ".ledger_prune(",
        "LedgerEntry {",
    ];
    let offenders: Vec<_> = sources()
        .into_iter()
        .filter(|path| !path.starts_with(src.join("store")) && *path != ledger)
        .filter(|path| {
            let code = product_code(path);
            writes.iter().any(|w| code.contains(w))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "ledger entries written outside src/ingest/ledger.rs: {offenders:?}"
    );
}

#[test]
fn actor_messages_live_in_messages_rs() {
    let messages = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join("actors")
        .join("messages.rs");
    let offenders: Vec<_> = sources()
        .into_iter()
        .filter(|path| *path != messages)
        .filter(|path| product_code(path).contains("derive(Message)"))
        .collect();
    assert!(
        offenders.is_empty(),
        "actor messages declared outside src/actors/messages.rs: {offenders:?}"
    );
}

#[test]
fn the_daemon_imports_neither_the_simulator_nor_the_test_kit() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    // The test kit is a dev-only crate (testkit/): nothing in src/ may hold or import it.
    assert!(
        !src.join("testkit.rs").exists() && !src.join("testkit").exists(),
        "the test kit belongs in the dev-only crate testkit/, not in the product's src/"
    );
    // The simulator itself and the demo (simulator + daemon in one process) may use the simulator.
    let may_use_the_simulator = [src.join("sim"), src.join("demo.rs")];
    let offenders: Vec<_> = sources()
        .into_iter()
        .filter(|path| {
            let code = product_code(path);
            let simulator = code.contains("crate::sim")
                && !may_use_the_simulator.iter().any(|a| path.starts_with(a));
            simulator || code.contains("testkit::") || code.contains("inboxd_testkit")
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "daemon modules that import the simulator or the test kit: {offenders:?}"
    );
}
