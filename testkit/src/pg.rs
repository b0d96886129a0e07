//! [`PgTestDb`]: a uniquely named PostgreSQL database for one test, created from
//! `INBOXD_TEST_POSTGRES_URL` (default `postgres://inboxd:inboxd@127.0.0.1:5432/postgres`, the role
//! `bash .ci/run` creates) and dropped `WITH (FORCE)` when the value is dropped. PostgreSQL being
//! unreachable fails the test with what to do: tests that need PostgreSQL never skip.

use std::sync::atomic::{AtomicU64, Ordering};

/// The admin URL used when `INBOXD_TEST_POSTGRES_URL` is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://inboxd:inboxd@127.0.0.1:5432/postgres";

/// A database of its own for one test; dropped (with its connections) on drop.
#[derive(Debug)]
pub struct PgTestDb {
    admin_url: String,
    name: String,
    url: String,
}

/// The admin URL: `INBOXD_TEST_POSTGRES_URL`, or [`DEFAULT_ADMIN_URL`].
pub fn admin_url() -> String {
    std::env::var("INBOXD_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned())
}

/// Runs `sql` on the admin database, on a thread of its own (the sync client must not run on a
/// Tokio runtime's thread, which an async test's is).
fn admin(admin_url: &str, sql: String) -> Result<(), String> {
    let admin_url = admin_url.to_owned();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&admin_url, postgres::NoTls)
            .map_err(|err| format!("cannot connect: {err}"))?;
        client
            .batch_execute(&sql)
            .map_err(|err| format!("{sql}: {err}"))
    })
    .join()
    .unwrap_or_else(|_| Err("the admin thread panicked".to_owned()))
}

/// `url` with its database name replaced by `name` (the path of a `postgres://` URL).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|at| at + 3)
        .and_then(|start| base[start..].find('/').map(|slash| start + slash))
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

impl PgTestDb {
    /// Creates a new, empty database.
    ///
    /// # Panics
    /// When PostgreSQL cannot be reached or refuses: the message says how to start it.
    #[allow(clippy::panic)]
    pub fn create() -> PgTestDb {
        Self::create_on(&admin_url())
    }

    /// Creates a new, empty database on the server of `admin_url` (a [`crate::PgServer`]'s).
    ///
    /// # Panics
    /// When that server cannot be reached or refuses.
    #[allow(clippy::panic)]
    pub fn create_on(admin_url: &str) -> PgTestDb {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let admin_url = admin_url.to_owned();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "inboxd_test_{}_{}_{nanos:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        if let Err(err) = admin(&admin_url, format!("CREATE DATABASE {name}")) {
            panic!(
                "PostgreSQL is needed by this test and could not create a database ({err}) at INBOXD_TEST_POSTGRES_URL (default {DEFAULT_ADMIN_URL}): run `bash .ci/run` (it installs and starts PostgreSQL), or start PostgreSQL and set INBOXD_TEST_POSTGRES_URL to a superuser's URL"
            );
        }
        let url = with_database(&admin_url, &name);
        PgTestDb {
            admin_url,
            name,
            url,
        }
    }

    /// The URL of this test's database (with the admin's credentials).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        // Best effort: a database left over costs disk space only.
        let _ = admin(
            &self.admin_url,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres", "t1"),
            "postgres://u:p@h:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h:5432", "t1"),
            "postgres://u:p@h:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h/t1?sslmode=disable"
        );
    }
}
