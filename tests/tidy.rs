//! Keeps the code base's conventions true: every Rust source file opens with a `//!` doc saying
//! what it owns, and only the store's sled engine (`src/store/sled_engine.rs`) touches sled.
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
