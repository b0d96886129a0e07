//! The `inboxd` binary: parses the command line, installs logging and hands over to the library.

use std::process::ExitCode;

use clap::Parser as _;
use inboxd::cli::{Cli, Command};
use inboxd::config::{Env, Settings};
use inboxd::domain::secret::MasterKey;
use inboxd::startup::{Application, Secrets};

fn main() -> ExitCode {
    let cli = Cli::parse();
    inboxd::telemetry::init(cli.log_format, "info");
    let result = match cli.command {
        Command::Keygen => {
            println!("{}", MasterKey::generate().encode());
            Ok(())
        }
        Command::Serve(args) => serve(args.config.as_deref()),
        Command::Sim(args) => actix_rt::System::new()
            .block_on(inboxd::sim::run(inboxd::sim::SimOptions {
                listen: args.listen,
                workers: args.workers.max(1),
                tls: args
                    .tls_cert
                    .zip(args.tls_key)
                    .map(|(cert, key)| inboxd::sim::TlsFiles {
                        cert_pem: cert,
                        key_pem: key,
                    }),
                ..inboxd::sim::SimOptions::default()
            }))
            .map_err(anyhow::Error::from),
        Command::Demo(args) => inboxd::demo::run(args),
        Command::Channel(args) => actix_rt::System::new().block_on(inboxd::admin_client::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("inboxd: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `inboxd serve`: validates everything first, then runs until a signal.
fn serve(config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let env = Env::process();
    let default = std::path::Path::new(inboxd::config::DEFAULT_CONFIG_PATH);
    let file = inboxd::config::config_file(config, default);
    let settings = Settings::load(file, &env).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let master_key = settings
        .load_master_key(&env)
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let admin_token = settings
        .load_admin_token(&env)
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let webhook_secret = match settings.processor.sink {
        inboxd::config::Sink::Webhook { .. } => Some(
            settings
                .load_webhook_secret(&env)
                .map_err(|err| anyhow::anyhow!("{err}"))?,
        ),
        inboxd::config::Sink::Jsonl { .. } => None,
    };
    for warning in [&master_key.warning, &admin_token.warning]
        .into_iter()
        .flatten()
    {
        tracing::warn!("{warning}");
    }
    let secrets = Secrets {
        master_key: master_key.value,
        admin_token: admin_token.value,
        webhook_secret: webhook_secret.map(|loaded| loaded.value),
    };
    actix_rt::System::new().block_on(async move {
        // Listen before the port answers: a stop during the start is a graceful one.
        let signals = inboxd::startup::StopSignals::listen();
        let app = Application::build(settings, secrets).await?;
        app.run_until_stopped(signals).await
    })
}
