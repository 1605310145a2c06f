//! What the two programs share: where the store is, and the key.
//!
//! - `heartbeat-collector`: one per machine (see
//!   [`heartbeat::fleet::Collector`]).
//! - `heartbeat-monitor`: reads the store (see
//!   [`heartbeat::fleet::FleetMonitor`]), prints alerts, serves `/metrics`.
//!
//! # Example
//!
//! ```
//! use heartbeat_cli::StoreArgs;
//!
//! let args = StoreArgs { url: None, sqlite: Some("fleet.db".into()) };
//! assert_eq!(args.describe(), "SQLite file fleet.db");
//! assert!(heartbeat_cli::has_password("postgresql://fleet:s3cret@db/fleet"));
//! assert!(!heartbeat_cli::has_password("postgresql://fleet@db/fleet"));
//! ```

use std::path::PathBuf;
use std::time::Duration;

use heartbeat::fleet::{PgStore, SqliteStore, Store, StoreError};

/// Where the store is: exactly one of a PostgreSQL URL and a SQLite file.
#[derive(Debug, Clone, clap::Args)]
#[group(multiple = false)]
pub struct StoreArgs {
    /// The PostgreSQL store's URL, libpq style:
    /// `postgresql://USER@HOST:PORT/DB?sslmode=require`. The password comes
    /// from the URL, PGPASSWORD or the passfile (PGPASSFILE, ~/.pgpass);
    /// also read from the environment variable PROCSYNC_FLEET_URL.
    #[arg(long, env = "PROCSYNC_FLEET_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// A SQLite file as the store (one machine: its collector and monitor
    /// share the file).
    #[arg(long, value_name = "PATH")]
    pub sqlite: Option<PathBuf>,
}

impl StoreArgs {
    /// Opens the store. A PostgreSQL store connects at its first use (and
    /// again after any failure), so a program started while the server is
    /// down works once it is up.
    pub fn open(&self) -> Result<Box<dyn Store>, StoreError> {
        match (&self.url, &self.sqlite) {
            (Some(url), _) => Ok(Box::new(PgStore::lazy(url))),
            (None, Some(path)) => Ok(Box::new(SqliteStore::open(path)?)),
            (None, None) => Err(StoreError::new(
                "choose the store",
                "give --url (PostgreSQL) or --sqlite PATH",
            )),
        }
    }

    /// Exits with a usage error (code 2, as for any bad argument) when
    /// neither store is given, or when `--url` on the command line holds a
    /// password: every user of the machine reads a command line (`ps`),
    /// so it belongs in PGPASSWORD, a passfile, or the whole URL in
    /// PROCSYNC_FLEET_URL (an environment only the process's user reads).
    pub fn require(&self, mut command: clap::Command, matches: &clap::ArgMatches) {
        if self.url.is_none() && self.sqlite.is_none() {
            command
                .error(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    "a store is needed: --url URL (PostgreSQL, or PROCSYNC_FLEET_URL) or --sqlite PATH",
                )
                .exit();
        }
        let on_command_line =
            matches.value_source("url") == Some(clap::parser::ValueSource::CommandLine);
        if on_command_line && self.url.as_deref().is_some_and(has_password) {
            command
                .error(
                    clap::error::ErrorKind::ValueValidation,
                    "--url holds a password, which every user can read on a command line (ps): \
                     give it in PGPASSWORD or a passfile (~/.pgpass, PGPASSFILE), or the whole URL \
                     in the environment variable PROCSYNC_FLEET_URL",
                )
                .exit();
        }
    }

    /// The store in words, without a password.
    pub fn describe(&self) -> String {
        match (&self.url, &self.sqlite) {
            (Some(_), _) => "PostgreSQL store".to_owned(),
            (None, Some(path)) => format!("SQLite file {}", path.display()),
            (None, None) => "no store".to_owned(),
        }
    }
}

/// Whether a connection URL carries a password (in its user part, or as
/// a `password=` parameter).
pub fn has_password(url: &str) -> bool {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.contains("password=");
    };
    let user_part = url
        .rfind('@')
        .filter(|&at| at > start)
        .map(|at| &url[start..at]);
    user_part.is_some_and(|u| u.contains(':'))
        || url.contains("?password=")
        || url.contains("&password=")
}

/// A duration in seconds from the command line: positive, finite, at most
/// a day.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds (try 1 or 0.5)"))?;
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
        return Err(format!("give between 0 and 86400 seconds, not {text}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}
