//! Runs the simulator alone until ctrl-c, like `inboxd sim` (used by tests/compat/run.sh until the
//! CLI subcommand is wired to `inboxd::sim::run`).
//!
//! `cargo run --example sim -- --listen 127.0.0.1:0 [--tls-cert FILE --tls-key FILE]`

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use inboxd::sim::{SimOptions, TlsFiles};

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// PEM certificate chain for HTTPS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// actix worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert_pem), Some(key_pem)) => Some(TlsFiles { cert_pem, key_pem }),
        _ => None,
    };
    inboxd::sim::run(SimOptions {
        listen: args.listen,
        workers: args.workers,
        tls,
        ..SimOptions::default()
    })
    .await
}
