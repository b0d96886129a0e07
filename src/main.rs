//! The `inboxd` binary: parses the command line, installs logging and hands over to the library.

use std::process::ExitCode;

use clap::Parser as _;
use inboxd::cli::{Cli, Command, StoreArgs, StoreCommand};
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
                imap: inboxd::sim::ImapOptions {
                    listen: (!args.no_imap).then_some(args.imap_listen),
                    tls_listen: args.imaps_listen,
                    tls: args
                        .imap_tls_cert
                        .zip(args.imap_tls_key)
                        .map(|(cert, key)| inboxd::sim::TlsFiles {
                            cert_pem: cert,
                            key_pem: key,
                        }),
                    max_connections_per_mailbox: args.imap_max_connections.max(1),
                },
                ..inboxd::sim::SimOptions::default()
            }))
            .map_err(anyhow::Error::from),
        Command::Demo(args) => inboxd::demo::run(args),
        Command::Channel(args) => {
            actix_rt::System::new().block_on(inboxd::admin_client::run(*args))
        }
        Command::App(args) => {
            actix_rt::System::new().block_on(inboxd::admin_client::run_app(*args))
        }
        Command::Migrate(args) => migrate(args.config.as_deref()),
        Command::Store(args) => store(args),
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
        inboxd::config::Sink::Jsonl { .. } | inboxd::config::Sink::Postgres => None,
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

/// The settings of the store commands (`migrate`, `store …`): the file and the environment, without
/// the rules between the sink and the engine.
fn store_settings(config: Option<&std::path::Path>) -> anyhow::Result<(Settings, Env)> {
    let env = Env::process();
    let default = std::path::Path::new(inboxd::config::DEFAULT_CONFIG_PATH);
    let file = inboxd::config::config_file(config, default);
    let settings =
        Settings::load_for_store_tools(file, &env).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    Ok((settings, env))
}

/// `inboxd migrate`: applies the PostgreSQL schema's pending migrations and says what it did.
fn migrate(config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let (settings, _) = store_settings(config)?;
    let url = settings.store.postgres_url.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "inboxd migrate needs store.postgres_url: set INBOXD_STORE__POSTGRES_URL=postgres://USER:PASSWORD@HOST:5432/DATABASE"
        )
    })?;
    let report = inboxd::store::Store::migrate_postgres(url.expose())
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    if report.applied.is_empty() {
        println!(
            "The schema of {} is current: no migration to apply.",
            report.database
        );
    } else {
        println!(
            "Applied {} migration(s) to {}: {}.",
            report.applied.len(),
            report.database,
            report.applied.join(", ")
        );
    }
    Ok(())
}

/// `inboxd store export|import` on the configured store.
fn store(args: StoreArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};

    let (settings, env) = store_settings(args.config.as_deref())?;
    let master_key = settings
        .load_master_key(&env)
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    if let Some(warning) = &master_key.warning {
        tracing::warn!("{warning}");
    }
    inboxd::store::restrict_umask();
    let store = inboxd::startup::open_store(&settings, master_key.value)?;
    match args.command {
        StoreCommand::Export { out } => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&out)
                .map_err(|err| {
                    anyhow::anyhow!("cannot create the export file {}: {err}", out.display())
                })?;
            // An existing file keeps its mode on open: make it owner-only too.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|err| anyhow::anyhow!("cannot restrict {}: {err}", out.display()))?;
            let mut writer = std::io::BufWriter::new(file);
            let counts = store
                .export(&mut writer)
                .map_err(|err| anyhow::anyhow!("{err}"))?;
            writer
                .flush()
                .and_then(|()| writer.get_ref().sync_all())
                .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", out.display()))?;
            println!(
                "Exported {} entries from {} to {}: {counts}.",
                counts.total(),
                store.path(),
                out.display()
            );
        }
        StoreCommand::Import { input } => {
            let file = std::fs::File::open(&input)
                .map_err(|err| anyhow::anyhow!("cannot open {}: {err}", input.display()))?;
            let mut reader = std::io::BufReader::new(file);
            let counts = store
                .import(&mut reader)
                .map_err(|err| anyhow::anyhow!("{err}"))?;
            println!(
                "Imported {} entries from {} into {}: {counts}.",
                counts.total(),
                input.display(),
                store.path()
            );
        }
    }
    Ok(())
}
