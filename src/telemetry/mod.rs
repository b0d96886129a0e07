//! Logging with tracing: `RUST_LOG` filters, human output on a terminal, JSON lines for machines;
//! and the table of Prometheus metrics ([`metrics`]).

pub mod metrics;

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines, coloured when stderr is a terminal.
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter` (e.g. `info`, `inboxd=debug`).
/// Calling it twice is harmless: the second call keeps the first subscriber.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // The PostgreSQL client and the migration runner log every statement and migration
        // (with its SQL) at info: only their warnings are worth an operator's attention.
        EnvFilter::new(format!(
            "{default_filter},refinery_core=warn,postgres=warn,tokio_postgres=warn"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    // A subscriber already installed (tests, the demo) is not an error worth reporting.
    drop(result);
}
