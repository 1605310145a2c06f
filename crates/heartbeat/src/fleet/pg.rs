//! The fleet's store on a PostgreSQL server.

use std::time::Duration;

use ::postgres::{Client, Statement};

use super::store::{
    duration_ms, health_from_name, health_name, millis, CollectorReport, HostRow, ReporterRow,
    Store, StoreError, StoreTime, StoredReporter, SCHEMA_VERSION,
};
use super::watch::{FleetAlert, FleetAlertKind};
use crate::postgres::connect;

/// The fleet's tables on a PostgreSQL server (schema `heartbeat`: tables
/// `collectors`, `reporters`, `alerts`, `schema_version`), made and
/// migrated by the store itself.
///
/// Every age is measured on the server's clock (`now()`), so a machine
/// whose clock is wrong is neither falsely silent nor falsely alive.
/// A collector writes its machine in one statement per interval (an
/// `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE` of its rows,
/// with its own row and the deletion of forgotten rows in the same
/// statement).
///
/// The connection is made at the first use and made again after any
/// failure: a store opened with [`PgStore::lazy`] while the server is down
/// (or restarted later) works once it is back. The URL is libpq's
/// (`postgresql://user@host:port/db?sslmode=require`); the password comes
/// from the URL, `PGPASSWORD` or the passfile (see
/// [`postgres::connect`](crate::postgres::connect)). Each collector holds
/// one connection: a fleet of N machines needs `max_connections` above N
/// plus its monitors. (A pooler in transaction mode must keep named
/// prepared statements, as PgBouncer 1.21+ does with
/// `max_prepared_statements`, and pass or ignore the `options` startup
/// parameter: see `docs/guide.md`.)
///
/// # Example
///
/// ```no_run
/// use heartbeat::fleet::{FleetMonitor, PgStore};
///
/// let store = PgStore::open("postgresql://fleet@db.example:5432/fleet")?;
/// let mut monitor = FleetMonitor::new(store);
/// for alert in monitor.check() {
///     println!("{alert}");
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PgStore {
    url: String,
    connection: Option<Connection>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("connected", &self.connection.is_some())
            .finish_non_exhaustive()
    }
}

struct Connection {
    client: Client,
    write: Statement,
    hosts: Statement,
    changes: Statement,
    problems: Statement,
    machine: Statement,
}

const SCHEMA: &str = "
CREATE SCHEMA IF NOT EXISTS heartbeat;
CREATE TABLE IF NOT EXISTS heartbeat.schema_version (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS heartbeat.collectors (
    host text PRIMARY KEY,
    instance bigint NOT NULL,
    pid integer NOT NULL,
    interval_ms bigint NOT NULL,
    last_write timestamptz NOT NULL,
    beats_received bigint NOT NULL,
    beats_rejected bigint NOT NULL,
    alive bigint NOT NULL,
    stuck bigint NOT NULL,
    silent bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS heartbeat.reporters (
    host text NOT NULL,
    id text NOT NULL,
    instance bigint NOT NULL,
    pid integer NOT NULL,
    seq bigint NOT NULL,
    progress bigint NOT NULL,
    interval_ms bigint NOT NULL,
    health text NOT NULL,
    last_beat timestamptz NOT NULL,
    changed timestamptz NOT NULL,
    written timestamptz NOT NULL
);
-- Keyed by the id's hash: a B-tree entry holds at most about 2,700 bytes,
-- and an id may have 4,096 (one too long failed its machine's every write).
CREATE UNIQUE INDEX IF NOT EXISTS reporters_key ON heartbeat.reporters (host, md5(id), instance);
CREATE INDEX IF NOT EXISTS reporters_changed ON heartbeat.reporters (changed);
CREATE TABLE IF NOT EXISTS heartbeat.alerts (
    number bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    kind text NOT NULL,
    host text NOT NULL,
    reporter text,
    instance bigint,
    detail text NOT NULL
);
";

/// One collector's machine, one statement: its row, the deletion of its
/// forgotten rows, the upsert of every reporter it tracks. (`changed`
/// moves only when the health does.)
const WRITE: &str = "
WITH collector AS (
    INSERT INTO heartbeat.collectors AS c (host, instance, pid, interval_ms, last_write,
        beats_received, beats_rejected, alive, stuck, silent)
    VALUES ($1, $2, $3, $4, now(), $5, $6, $7, $8, $9)
    ON CONFLICT (host) DO UPDATE SET instance = EXCLUDED.instance, pid = EXCLUDED.pid,
        interval_ms = EXCLUDED.interval_ms, last_write = EXCLUDED.last_write,
        beats_received = EXCLUDED.beats_received, beats_rejected = EXCLUDED.beats_rejected,
        alive = EXCLUDED.alive, stuck = EXCLUDED.stuck, silent = EXCLUDED.silent
), forgotten AS (
    DELETE FROM heartbeat.reporters f
    WHERE $19::bool AND f.host = $1 AND f.written < now() - $10::float8 * interval '1 millisecond'
      AND NOT EXISTS (SELECT 1 FROM unnest($11::text[], $12::bigint[]) AS n(id, instance)
                      WHERE n.id = f.id AND n.instance = f.instance)
)
INSERT INTO heartbeat.reporters AS r (host, id, instance, pid, seq, progress, interval_ms,
    health, last_beat, changed, written)
SELECT $1, u.id, u.instance, u.pid, u.seq, u.progress, u.interval_ms, u.health,
    now() - u.age_ms * interval '1 millisecond', now(), now()
FROM unnest($11::text[], $12::bigint[], $13::integer[], $14::bigint[], $15::bigint[],
            $16::bigint[], $17::text[], $18::float8[])
    AS u(id, instance, pid, seq, progress, interval_ms, health, age_ms)
ON CONFLICT (host, md5(id), instance) DO UPDATE SET pid = EXCLUDED.pid, seq = EXCLUDED.seq,
    progress = EXCLUDED.progress, interval_ms = EXCLUDED.interval_ms,
    health = EXCLUDED.health, last_beat = EXCLUDED.last_beat,
    changed = CASE WHEN r.health = EXCLUDED.health THEN r.changed ELSE EXCLUDED.changed END,
    written = EXCLUDED.written
";

const HOSTS: &str = "
SELECT host, instance, pid, interval_ms,
    (extract(epoch FROM now() - last_write) * 1000)::float8,
    beats_received, beats_rejected, alive, stuck, silent
FROM heartbeat.collectors ORDER BY host
";

/// The server's clock and the reporters changed since `$1` (ms since the
/// epoch), in one statement: one row of NULLs when none changed.
const CHANGES: &str = "
SELECT (extract(epoch FROM now()) * 1000)::bigint, r.host, r.id, r.instance, r.pid, r.seq,
    r.progress, r.interval_ms, r.health,
    (extract(epoch FROM now() - r.last_beat) * 1000)::float8
FROM (SELECT 1) AS one
LEFT JOIN heartbeat.reporters r ON r.changed >= to_timestamp($1::float8 / 1000)
";

/// As [`CHANGES`], every reporter of the machine `$1`.
const MACHINE: &str = "
SELECT (extract(epoch FROM now()) * 1000)::bigint, r.host, r.id, r.instance, r.pid, r.seq,
    r.progress, r.interval_ms, r.health,
    (extract(epoch FROM now() - r.last_beat) * 1000)::float8
FROM heartbeat.reporters r WHERE r.host = $1
";

/// As [`CHANGES`], every reporter not ALIVE.
const PROBLEMS: &str = "
SELECT (extract(epoch FROM now()) * 1000)::bigint, r.host, r.id, r.instance, r.pid, r.seq,
    r.progress, r.interval_ms, r.health,
    (extract(epoch FROM now() - r.last_beat) * 1000)::float8
FROM (SELECT 1) AS one
LEFT JOIN heartbeat.reporters r ON r.health <> 'alive'
";

impl PgStore {
    /// A store on the server at `url`, connected now: an unreachable server
    /// or a bad password is an error at once.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        let mut store = PgStore::lazy(url);
        store.connection()?;
        Ok(store)
    }

    /// A store on the server at `url` that connects at its first use (and
    /// again after any failure): a collector started while the server is
    /// down writes once it is up.
    pub fn lazy(url: &str) -> PgStore {
        PgStore {
            url: url.to_owned(),
            connection: None,
        }
    }

    fn connection(&mut self) -> Result<&mut Connection, StoreError> {
        if self.connection.is_none() {
            let mut client = connect(&self.url)
                .map_err(|e| StoreError::new("connect to the PostgreSQL store", e))?;
            migrate(&mut client)?;
            let failed = |e: ::postgres::Error| {
                StoreError::new("prepare the store's statements", described(&e))
            };
            let write = client.prepare(WRITE).map_err(failed)?;
            let hosts = client.prepare(HOSTS).map_err(failed)?;
            let changes = client.prepare(CHANGES).map_err(failed)?;
            let problems = client.prepare(PROBLEMS).map_err(failed)?;
            let machine = client.prepare(MACHINE).map_err(failed)?;
            self.connection = Some(Connection {
                client,
                write,
                hosts,
                changes,
                problems,
                machine,
            });
        }
        Ok(self.connection.as_mut().expect("connected just now"))
    }

    /// Runs `op` on the connection, dropping it on failure so that the next
    /// use connects afresh (the server may have restarted).
    fn with<T>(
        &mut self,
        what: &str,
        op: impl FnOnce(&mut Connection) -> Result<T, ::postgres::Error>,
    ) -> Result<T, StoreError> {
        let result = op(self.connection()?);
        result.map_err(|e| {
            self.connection = None;
            StoreError::new(what.to_owned(), described(&e))
        })
    }
}

/// A PostgreSQL error in full: the `postgres` crate's own text for an error
/// of the server is only "db error", without the server's reason.
fn described(error: &::postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            text
        }
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        }
    }
}

/// A reporter row of the columns of [`CHANGES`]; `None` for its row of
/// NULLs (no reporter changed).
fn stored_reporter(r: &::postgres::Row) -> Option<StoredReporter> {
    let health: String = r.get::<_, Option<String>>(8)?;
    Some(StoredReporter {
        host: r.get::<_, Option<String>>(1)?,
        reporter: ReporterRow {
            id: r.get::<_, Option<String>>(2)?,
            instance: r.get::<_, Option<i64>>(3)? as u64,
            pid: r.get::<_, Option<i32>>(4)? as u32,
            seq: r.get::<_, Option<i64>>(5)? as u64,
            progress: r.get::<_, Option<i64>>(6)? as u64,
            interval_ms: r.get::<_, Option<i64>>(7)? as u64,
            health: health_from_name(&health).unwrap_or(crate::Health::Silent),
            since_last_beat: duration_ms(r.get::<_, Option<f64>>(9)?),
        },
    })
}

/// Creates the tables (one migrator at a time: concurrent `CREATE TABLE IF
/// NOT EXISTS` of one table can fail in PostgreSQL) and checks the version.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let failed = |e: ::postgres::Error| StoreError::new("create the store's tables", described(&e));
    // Made already, at this version or a newer one (the usual case): read
    // only. The schema script's `CREATE INDEX IF NOT EXISTS` locks the
    // table against writes until its transaction ends, even when the index
    // exists: a migration run at every (re)connection of every collector
    // stalled the whole fleet's writes behind any one of them (review 10).
    let current: Option<i32> = client
        .query_opt(
            "SELECT max(version) FROM heartbeat.schema_version
             WHERE to_regclass('heartbeat.schema_version') IS NOT NULL",
            &[],
        )
        .ok()
        .flatten()
        .and_then(|row| row.get(0));
    if current.is_some_and(|v| i64::from(v) == SCHEMA_VERSION) {
        return Ok(());
    }
    let mut tx = client.transaction().map_err(failed)?;
    // A migration never waits long for a lock that writers hold.
    tx.batch_execute("SET LOCAL lock_timeout = '5s'")
        .map_err(failed)?;
    // Any fixed number: every procsync migrator takes the same lock.
    tx.execute("SELECT pg_advisory_xact_lock(7402019116)", &[])
        .map_err(failed)?;
    tx.batch_execute(SCHEMA).map_err(failed)?;
    let version: Option<i32> = tx
        .query_one("SELECT max(version) FROM heartbeat.schema_version", &[])
        .map_err(failed)?
        .get(0);
    match version {
        None => {
            tx.execute(
                "INSERT INTO heartbeat.schema_version (version) VALUES ($1)",
                &[&(SCHEMA_VERSION as i32)],
            )
            .map_err(failed)?;
        }
        Some(v) if i64::from(v) > SCHEMA_VERSION => {
            return Err(StoreError::new(
                "open the PostgreSQL store",
                format!(
                    "its tables are of schema version {v}, made by a newer procsync; \
                     this one knows up to {SCHEMA_VERSION}"
                ),
            ))
        }
        Some(_) => {}
    }
    tx.commit().map_err(failed)
}

impl Store for PgStore {
    fn write(&mut self, report: &CollectorReport) -> Result<(), StoreError> {
        let n = report.reporters.len();
        let (mut ids, mut instances, mut pids) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut seqs, mut progress, mut intervals) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut healths, mut ages) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for r in &report.reporters {
            ids.push(r.id.as_str());
            // u64 values are stored as their bits in a bigint.
            instances.push(r.instance as i64);
            pids.push(r.pid as i32);
            seqs.push(r.seq as i64);
            progress.push(r.progress as i64);
            intervals.push(r.interval_ms as i64);
            healths.push(health_name(r.health));
            ages.push(r.since_last_beat.as_secs_f64() * 1000.0);
        }
        let (alive, stuck, silent) = (
            report.counts.0 as i64,
            report.counts.1 as i64,
            report.counts.2 as i64,
        );
        let forget_ms = report.forget_after.as_secs_f64() * 1000.0;
        self.with("write a collector's report", |c| {
            c.client
                .execute(
                    &c.write,
                    &[
                        &report.host,
                        &(report.instance as i64),
                        &(report.pid as i32),
                        &millis(report.interval),
                        &(report.beats_received as i64),
                        &(report.beats_rejected as i64),
                        &alive,
                        &stuck,
                        &silent,
                        &forget_ms,
                        &ids,
                        &instances,
                        &pids,
                        &seqs,
                        &progress,
                        &intervals,
                        &healths,
                        &ages,
                        &report.complete,
                    ],
                )
                .map(drop)
        })
    }

    fn read_hosts(&mut self) -> Result<Vec<HostRow>, StoreError> {
        let rows = self.with("read the machines", |c| c.client.query(&c.hosts, &[]))?;
        Ok(rows
            .iter()
            .map(|r| HostRow {
                host: r.get(0),
                instance: r.get::<_, i64>(1) as u64,
                pid: r.get::<_, i32>(2) as u32,
                interval: Duration::from_millis(r.get::<_, i64>(3).max(0) as u64),
                since_last_write: duration_ms(r.get(4)),
                beats_received: r.get::<_, i64>(5) as u64,
                beats_rejected: r.get::<_, i64>(6) as u64,
                counts: (
                    r.get::<_, i64>(7) as u64,
                    r.get::<_, i64>(8) as u64,
                    r.get::<_, i64>(9) as u64,
                ),
            })
            .collect())
    }

    fn read_changes(
        &mut self,
        since: Option<StoreTime>,
    ) -> Result<(StoreTime, Vec<StoredReporter>), StoreError> {
        let rows = self.with("read the reporters' changes", |c| match since {
            Some(t) => c.client.query(&c.changes, &[&(t.0 as f64)]),
            None => c.client.query(&c.problems, &[]),
        })?;
        let now = rows.first().map_or(0, |r| r.get::<_, i64>(0));
        let changes = rows.iter().filter_map(stored_reporter).collect();
        Ok((StoreTime(now), changes))
    }

    fn read_reporters(&mut self, host: &str) -> Result<Vec<ReporterRow>, StoreError> {
        let rows = self.with("read a machine's reporters", |c| {
            c.client.query(&c.machine, &[&host])
        })?;
        Ok(rows
            .iter()
            .filter_map(stored_reporter)
            .map(|r| r.reporter)
            .collect())
    }

    fn record_alerts(&mut self, alerts: &[FleetAlert]) -> Result<(), StoreError> {
        let at: Vec<f64> = alerts.iter().map(|a| a.at.0 as f64).collect();
        let kinds: Vec<&str> = alerts.iter().map(|a| a.kind.name()).collect();
        let hosts: Vec<&str> = alerts.iter().map(|a| a.host.as_str()).collect();
        let ids: Vec<Option<&str>> = alerts.iter().map(|a| a.id.as_deref()).collect();
        let instances: Vec<Option<i64>> = alerts
            .iter()
            .map(|a| a.instance.map(|i| i as i64))
            .collect();
        let details: Vec<&str> = alerts.iter().map(|a| a.detail.as_str()).collect();
        self.with("record alerts", |c| {
            c.client
                .execute(
                    "INSERT INTO heartbeat.alerts (at, kind, host, reporter, instance, detail)
                     SELECT to_timestamp(u.at / 1000), u.kind, u.host, u.reporter, u.instance, u.detail
                     FROM unnest($1::float8[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[])
                         AS u(at, kind, host, reporter, instance, detail)",
                    &[&at, &kinds, &hosts, &ids, &instances, &details],
                )
                .map(drop)
        })
    }

    fn read_alerts(&mut self, limit: usize) -> Result<Vec<FleetAlert>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.with("read alerts", |c| {
            c.client.query(
                "SELECT (extract(epoch FROM at) * 1000)::bigint, kind, host, reporter, instance, detail
                 FROM (SELECT * FROM heartbeat.alerts ORDER BY number DESC LIMIT $1) a
                 ORDER BY number",
                &[&limit],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| FleetAlert {
                at: StoreTime(r.get(0)),
                kind: FleetAlertKind::from_name(r.get(1)).unwrap_or(FleetAlertKind::HostSilent),
                host: r.get(2),
                id: r.get(3),
                instance: r.get::<_, Option<i64>>(4).map(|i| i as u64),
                detail: r.get(5),
            })
            .collect())
    }
}
