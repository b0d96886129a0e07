//! The heap profile of the daemon (`--heap-profile FILE`, built with `--features dhat-heap`): dhat
//! is the bench binary's global allocator, the profile starts before anything else and is written
//! at the end of the measured window, so its "bytes at t-end" are what N running channels hold.
//! `benches/load/heap.py FILE` sums them up by allocation site.

#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[cfg(feature = "dhat-heap")]
static PROFILER: std::sync::Mutex<Option<dhat::Profiler>> = std::sync::Mutex::new(None);

/// Starts profiling the heap into `path`.
#[cfg(feature = "dhat-heap")]
pub(crate) fn start(path: &std::path::Path) -> anyhow::Result<()> {
    // Deep enough backtraces to reach inboxd's frame under actix, tokio and sled.
    let profiler = dhat::Profiler::builder()
        .file_name(path)
        .trim_backtraces(Some(48))
        .build();
    *PROFILER.lock().unwrap() = Some(profiler);
    Ok(())
}

/// Without the feature there is no profiler to start.
#[cfg(not(feature = "dhat-heap"))]
pub(crate) fn start(_path: &std::path::Path) -> anyhow::Result<()> {
    anyhow::bail!(
        "--heap-profile needs the dhat allocator: cargo bench --bench load --features dhat-heap -- …"
    )
}

/// Writes the profile (once; later calls do nothing).
pub(crate) fn finish() {
    #[cfg(feature = "dhat-heap")]
    drop(PROFILER.lock().unwrap().take());
}
