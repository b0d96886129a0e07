//! Keeps the code base's conventions true: every Rust source file (the product's, the test kit's,
//! the benches') opens with a `//!` doc saying what it owns, only the store's sled engine
//! (`src/store/sled_engine.rs`) touches sled, only the store (`src/store/`) touches PostgreSQL (the
//! `postgres` and `refinery` crates), and the product imports no test kit.
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

/// Whether `code` names the crate `name` as a path (`name::…`, `use name`), not as the tail of
/// another path (`crate::store::postgres::…`, `tokio_postgres`) or inside a word.
fn names_crate(code: &str, name: &str) -> bool {
    let uses = [
        format!("{name}::"),
        format!("use {name}"),
        format!("extern crate {name}"),
    ];
    uses.iter().any(|pattern| {
        code.match_indices(pattern.as_str()).any(|(at, _)| {
            let before = code[..at].chars().next_back();
            !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        })
    })
}

#[test]
fn only_the_store_touches_postgres() {
    let store = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join("store");
    assert!(
        store.join("postgres").is_dir(),
        "src/store/postgres is gone"
    );
    let offenders: Vec<_> = sources()
        .into_iter()
        .filter(|path| !path.starts_with(&store))
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            ["postgres", "tokio_postgres", "refinery"]
                .iter()
                .any(|name| names_crate(&text, name))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "PostgreSQL used outside src/store (the store's engine seam is src/store/engine.rs; cluster coordination goes through store::Coordination): {offenders:?}"
    );
    assert!(names_crate("use postgres::Client;", "postgres"));
    assert!(names_crate(
        "let c = postgres::Client::connect(u)?;",
        "postgres"
    ));
    assert!(!names_crate("crate::store::postgres::PgEngine", "postgres"));
    assert!(!names_crate("\"postgres://u@h/db\"", "postgres"));
}

/// The code of `path` before its `#[cfg(test)]` module (tests may set up whatever they need).
fn product_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    // A module that is test code as a whole says so at its top.
    if text.lines().any(|line| line.trim() == "#![cfg(test)]") {
        return String::new();
    }
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
        ".ledger_apply(",
        "LedgerBatch::",
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

/// The crate's top-level modules that the product code of `path` names (`crate::NAME…`, also in
/// a grouped `crate::{A, B::…}`), comments left out.
fn crate_modules_named(path: &Path) -> std::collections::BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut named = std::collections::BTreeSet::new();
    for line in product_code(path).lines() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            match rest.strip_prefix('{') {
                Some(group) => {
                    let group = group.split('}').next().unwrap_or_default();
                    named.extend(group.split(',').map(ident).filter(|m| !m.is_empty()));
                }
                None => {
                    named.insert(ident(rest));
                }
            }
        }
    }
    named
}

/// The product source files under `src/<module>` (a folder, or `<module>.rs`).
fn layer_files(module: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let folder = src.join(module);
    let file = src.join(format!("{module}.rs"));
    let files: Vec<_> = sources()
        .into_iter()
        .filter(|path| path.starts_with(&folder) || *path == file)
        .collect();
    assert!(!files.is_empty(), "src/{module} is gone");
    files
}

#[test]
fn the_http_layer_imports_neither_the_store_nor_the_actors() {
    // http is a front end: it reads `crate::status` and calls `crate::control`, which owns every
    // operation (and re-exports the few store types a view carries).
    let offenders: Vec<_> = layer_files("http")
        .into_iter()
        .filter(|path| {
            let named = crate_modules_named(path);
            named.contains("store") || named.contains("actors")
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "src/http/** must go through crate::control (and crate::status), not the store or the actors: {offenders:?}"
    );
}

#[test]
fn no_import_cycle_between_the_daemon_layers() {
    // (layer, the crate modules it must not name): each layer only imports those below it.
    let rules: &[(&str, &[&str])] = &[
        ("control", &["http"]),
        ("actors", &["http", "control"]),
        ("status", &["http", "control", "actors", "ingest"]),
        ("ingest", &["http", "control", "actors"]),
        (
            "store",
            &[
                "http", "control", "ingest", "actors", "graph", "imap", "oauth", "status",
            ],
        ),
    ];
    let mut offenders = Vec::new();
    for (layer, forbidden) in rules {
        for path in layer_files(layer) {
            let named = crate_modules_named(&path);
            for module in forbidden.iter().filter(|m| named.contains(**m)) {
                offenders.push(format!("{} imports crate::{module}", path.display()));
            }
        }
    }
    // The domain is the bottom: it imports nothing of the crate but itself.
    for path in layer_files("domain") {
        for module in crate_modules_named(&path) {
            if module != "domain" {
                offenders.push(format!("{} imports crate::{module}", path.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "imports against the layering of docs/ARCHITECTURE.md (\"Layers\"): {offenders:#?}"
    );
}

/// The `inboxd_*` metric names in `text` (a name ends at the first character that cannot be in one).
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("inboxd_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_metric_the_code_records_and_the_alerts_use_is_in_the_table() {
    use inboxd::telemetry::metrics::{FAMILIES, family};
    let mut unknown = Vec::new();
    for path in sources() {
        let code = std::fs::read_to_string(&path).unwrap();
        for macro_name in ["counter!(", "gauge!(", "histogram!("] {
            for piece in code.split(macro_name).skip(1) {
                let Some(literal) = piece.trim_start().strip_prefix('"') else {
                    continue; // a name from a variable: the table's own helpers
                };
                let name = literal.split('"').next().unwrap_or_default();
                if family(name).is_none() {
                    unknown.push(format!("{}: {name}", path.display()));
                }
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let alerts = std::fs::read_to_string(root.join("docs/alerts.yml")).unwrap();
    // A name ending in `_` is a prefix in a comment (`inboxd_channel_*`).
    for name in metric_names(&alerts)
        .into_iter()
        .filter(|n| !n.ends_with('_'))
    {
        // Histograms are queried through their _bucket, _sum and _count series.
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| family(base).is_some())
            .unwrap_or(&name);
        if family(base).is_none() {
            unknown.push(format!("docs/alerts.yml: {name}"));
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics missing from src/telemetry/metrics.rs (FAMILIES, the one table): {unknown:#?}"
    );
    assert!(FAMILIES.len() > 20);
    let operations = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
    let undocumented: Vec<_> = FAMILIES
        .iter()
        .filter(|f| !operations.contains(&format!("| `{}` |", f.name)))
        .map(|f| f.name)
        .collect();
    assert!(
        undocumented.is_empty(),
        "families missing from the Metrics table of docs/operations.md: {undocumented:?}"
    );
}
