//! The PostgreSQL connection pool: a few dedicated worker threads, each with its own sync
//! `postgres::Client`, taking jobs from one channel. Callers block on a std channel for the answer.
//!
//! Why threads: the sync client runs its own Tokio runtime and panics when it is called from a
//! thread that already runs one (every actix and Tokio thread of inboxd). Its own threads never do.
//! A worker whose connection failed or closed connects again for its next job. This file also owns
//! the database's shown name (never the password) and the mapping of PostgreSQL errors to
//! [`StoreError`] kinds.

use std::error::Error as _;
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, NoTls};

use crate::store::error::StoreError;

/// Where the pool connects: the parsed URL (holding the password) and its shown name.
pub(crate) struct Target {
    config: postgres::Config,
    shown: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("database", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Parses a `postgres://user:password@host:port/database` URL (or a key=value string).
    pub(crate) fn parse(url: &str) -> Result<Target, StoreError> {
        let mut config = postgres::Config::from_str(url).map_err(|err| {
            StoreError::InvalidInput(format!(
                "store.postgres_url is not a PostgreSQL connection URL ({err}): write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("inboxd");
        }
        let host = config
            .get_hosts()
            .first()
            .map(|h| match h {
                postgres::config::Host::Tcp(name) => name.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".to_owned());
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let db = config
            .get_dbname()
            .map(str::to_owned)
            .or_else(|| config.get_user().map(str::to_owned))
            .unwrap_or_else(|| "postgres".to_owned());
        let shown = format!("{host}:{port}/{db}");
        Ok(Target { config, shown })
    }

    /// The database as logs and errors show it: `host:port/name`, never the password.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// Opens a new connection (blocking; call it off any Tokio runtime thread).
    pub(crate) fn connect(&self) -> Result<Client, StoreError> {
        self.config.connect(NoTls).map_err(|err| self.map(&err))
    }

    /// Maps a PostgreSQL error to the store's error kinds: lost or refused connections, shutdowns
    /// and serialization conflicts are transient; a full disk is a full disk; the rest names what
    /// PostgreSQL said.
    pub(crate) fn map(&self, err: &postgres::Error) -> StoreError {
        let database = self.shown.clone();
        let unavailable = |why: String| StoreError::Unavailable {
            database: database.clone(),
            why,
        };
        if let Some(db) = err.as_db_error() {
            let code = db.code();
            let why = db.message().to_owned();
            let transient = [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::CONNECTION_EXCEPTION,
                SqlState::CONNECTION_FAILURE,
                SqlState::CONNECTION_DOES_NOT_EXIST,
                SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
                SqlState::TOO_MANY_CONNECTIONS,
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::LOCK_NOT_AVAILABLE,
                SqlState::QUERY_CANCELED,
                SqlState::READ_ONLY_SQL_TRANSACTION,
                SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
            ];
            if transient.contains(code) {
                return unavailable(why);
            }
            if *code == SqlState::DISK_FULL {
                return StoreError::DiskFull {
                    source: std::io::Error::other(format!(
                        "the PostgreSQL database {database} is out of disk space: {why}"
                    )),
                };
            }
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            {
                return StoreError::Database(format!(
                    "PostgreSQL at {database} refused the login ({why}): check the user and password in store.postgres_url (INBOXD_STORE__POSTGRES_URL)"
                ));
            }
            if *code == SqlState::INVALID_CATALOG_NAME {
                return StoreError::Database(format!(
                    "PostgreSQL at {database} has no such database ({why}): create it (CREATE DATABASE) or fix the database name in store.postgres_url"
                ));
            }
            return StoreError::Database(format!(
                "PostgreSQL at {database} refused a statement ({why}, SQLSTATE {}): check that the database was migrated by this inboxd version (`inboxd migrate`) and that the user may write it",
                code.code()
            ));
        }
        let text = err.to_string();
        let io = err
            .source()
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
        if err.is_closed()
            || io
            || text.starts_with("error connecting")
            || text.starts_with("error communicating")
            || text.contains("timeout")
            || text.contains("timed out")
        {
            return unavailable(text);
        }
        StoreError::Engine(format!("PostgreSQL at {database}: {text}"))
    }
}

/// What a job fails with: PostgreSQL's error (mapped by the pool) or the store's own.
pub(crate) enum Fail {
    /// An error of the client or the server.
    Pg(postgres::Error),
    /// An error the job decided on (e.g. [`StoreError::Fenced`]).
    Store(StoreError),
}

impl From<postgres::Error> for Fail {
    fn from(err: postgres::Error) -> Self {
        Fail::Pg(err)
    }
}

impl From<StoreError> for Fail {
    fn from(err: StoreError) -> Self {
        Fail::Store(err)
    }
}

/// One worker's state: its connection, made on first use and again after it was lost.
struct Worker {
    target: Arc<Target>,
    client: Option<Client>,
}

impl Worker {
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            self.client = Some(self.target.connect()?);
        }
        self.client.as_mut().ok_or_else(|| StoreError::Unavailable {
            database: self.target.shown().to_owned(),
            why: "no connection".to_owned(),
        })
    }

    /// After a job: forget a connection that is closed, so the next job connects again.
    fn settle(&mut self) {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
    }
}

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// The worker threads and the channel feeding them. Dropping the pool ends the workers once they
/// finish their current job.
pub(crate) struct Pool {
    jobs: parking_lot::Mutex<Option<mpsc::Sender<Job>>>,
    target: Arc<Target>,
}

impl Pool {
    /// Starts `size` workers (at least one). They connect on their first job.
    pub(crate) fn start(target: Arc<Target>, size: usize) -> Result<Pool, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(parking_lot::Mutex::new(rx));
        for n in 0..size.max(1) {
            let rx = rx.clone();
            let mut worker = Worker {
                target: target.clone(),
                client: None,
            };
            std::thread::Builder::new()
                .name(format!("inboxd-pg-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for a job, never while running one.
                        let job = rx.lock().recv();
                        match job {
                            Ok(job) => {
                                job(&mut worker);
                                worker.settle();
                            }
                            Err(_) => break,
                        }
                    }
                })
                .map_err(StoreError::from_io)?;
        }
        Ok(Pool {
            jobs: parking_lot::Mutex::new(Some(tx)),
            target,
        })
    }

    /// The database this pool connects to.
    pub(crate) fn target(&self) -> &Arc<Target> {
        &self.target
    }

    /// Runs `job` on a worker's connection and waits for its answer (blocking; fine on any thread,
    /// a Tokio runtime's included).
    pub(crate) fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Client) -> Result<T, Fail> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer_tx, answer_rx) = mpsc::sync_channel(1);
        let target = self.target.clone();
        let boxed: Job = Box::new(move |worker: &mut Worker| {
            let answer = match worker.client() {
                Ok(client) => job(client).map_err(|fail| match fail {
                    Fail::Pg(err) => target.map(&err),
                    Fail::Store(err) => err,
                }),
                Err(err) => Err(err),
            };
            // The caller may be gone (it never is: it waits below); nothing to do then.
            let _ = answer_tx.send(answer);
        });
        let sent = match self.jobs.lock().as_ref() {
            Some(tx) => tx.send(boxed).is_ok(),
            None => false,
        };
        let gone = || StoreError::Unavailable {
            database: self.target.shown().to_owned(),
            why: "the store's database workers have stopped".to_owned(),
        };
        if !sent {
            return Err(gone());
        }
        answer_rx.recv().map_err(|_| gone())?
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the channel ends every worker after its current job.
        self.jobs.lock().take();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_shown_name_never_holds_the_password() {
        let target = Target::parse("postgres://inboxd:s3cr3t-pw@db.example:6543/mail").unwrap();
        assert_eq!(target.shown(), "db.example:6543/mail");
        assert!(!format!("{target:?}").contains("s3cr3t"));
        let err = Target::parse("postgres://inboxd:s3cr3t-pw@db.example:notaport/mail")
            .err()
            .unwrap();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn a_refused_connection_is_transient_and_names_the_database_only() {
        // Port 1 on loopback: nothing listens there.
        let target = Arc::new(Target::parse("postgres://u:pw-secret@127.0.0.1:1/db").unwrap());
        let pool = Pool::start(target, 1).unwrap();
        let err = pool.run(|client| Ok(client.is_closed())).err().unwrap();
        assert_eq!(err.kind(), crate::store::StoreErrorKind::Transient, "{err}");
        let text = err.to_string();
        assert!(text.contains("127.0.0.1:1/db"), "{text}");
        assert!(!text.contains("pw-secret"), "{text}");
    }
}
