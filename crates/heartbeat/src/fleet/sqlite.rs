//! The embedded store: one SQLite file on one machine.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};

use super::store::{
    duration_ms, health_from_name, health_name, millis, CollectorReport, HostRow, ReporterRow,
    Store, StoreError, StoreTime, StoredReporter, SCHEMA_VERSION,
};
use super::watch::{FleetAlert, FleetAlertKind};
use crate::sinks;

/// The fleet's tables in one SQLite file: for one machine (its collector
/// and monitor share the file), or to try the fleet without a server.
///
/// Its clock is this machine's wall clock (SQLite has no server): a step
/// of that clock shifts every age at once. For many machines, use
/// `PgStore` (feature `postgres`).
///
/// # Example
///
/// ```
/// use heartbeat::fleet::{SqliteStore, Store};
///
/// let dir = std::env::temp_dir().join(format!("fleet-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let mut store = SqliteStore::open(dir.join("fleet.db"))?;
/// assert!(store.read_hosts()?.is_empty());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    db: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS heartbeat_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS collectors (
    host TEXT PRIMARY KEY,
    instance INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    interval_ms INTEGER NOT NULL,
    last_write_ms REAL NOT NULL,
    beats_received INTEGER NOT NULL,
    beats_rejected INTEGER NOT NULL,
    alive INTEGER NOT NULL,
    stuck INTEGER NOT NULL,
    silent INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reporters (
    host TEXT NOT NULL,
    id TEXT NOT NULL,
    instance INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    progress INTEGER NOT NULL,
    interval_ms INTEGER NOT NULL,
    health TEXT NOT NULL,
    last_beat_ms REAL NOT NULL,
    changed_ms REAL NOT NULL,
    written_ms REAL NOT NULL,
    PRIMARY KEY (host, id, instance)
);
CREATE INDEX IF NOT EXISTS reporters_changed ON reporters (changed_ms);
CREATE TABLE IF NOT EXISTS alerts (
    at_ms REAL NOT NULL,
    kind TEXT NOT NULL,
    host TEXT NOT NULL,
    reporter TEXT,
    instance INTEGER,
    detail TEXT NOT NULL
);
";

impl SqliteStore {
    /// Opens (creating if needed) the fleet's tables in the file at `path`.
    /// A file whose tables a newer version of this crate made is refused.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let failed = |what: &str| {
            let what = format!("{what} {}", path.display());
            move |e: rusqlite::Error| StoreError::new(what, e)
        };
        let db = sinks::open_wal(&path).map_err(failed("open"))?;
        let read_version = |db: &Connection| {
            db.query_row("SELECT MAX(version) FROM heartbeat_schema", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
        };
        // Made already (the usual case): read only. Creating takes the
        // file's write lock, which a hundred collectors starting at once
        // would each wait for in turn.
        let version = match read_version(&db) {
            Ok(Some(v)) if v >= SCHEMA_VERSION => Some(v),
            _ => {
                db.execute_batch(SCHEMA)
                    .map_err(failed("create the tables in"))?;
                read_version(&db).map_err(failed("read the schema version of"))?
            }
        };
        match version {
            None => {
                db.execute(
                    "INSERT INTO heartbeat_schema (version) VALUES (?1)",
                    [SCHEMA_VERSION],
                )
                .map_err(failed("write the schema version of"))?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::new(
                    format!("open {}", path.display()),
                    format!(
                        "its tables are of schema version {v}, made by a newer procsync; \
                         this one knows up to {SCHEMA_VERSION}"
                    ),
                ))
            }
            Some(_) => {}
        }
        Ok(SqliteStore { path, db })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn failed(&self, what: &str) -> impl Fn(rusqlite::Error) -> StoreError {
        let what = format!("{what} ({})", self.path.display());
        move |e| StoreError::new(what.clone(), e)
    }
}

/// A reporter row of the columns `host, id, instance, pid, seq, progress,
/// interval_ms, health, age_ms`.
fn stored_reporter(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredReporter> {
    let health: String = r.get(7)?;
    Ok(StoredReporter {
        host: r.get(0)?,
        reporter: ReporterRow {
            id: r.get(1)?,
            instance: r.get::<_, i64>(2)? as u64,
            pid: r.get(3)?,
            seq: r.get::<_, i64>(4)? as u64,
            progress: r.get::<_, i64>(5)? as u64,
            interval_ms: r.get::<_, i64>(6)? as u64,
            health: health_from_name(&health).unwrap_or(crate::Health::Silent),
            since_last_beat: duration_ms(r.get(8)?),
        },
    })
}

/// This machine's wall clock, in milliseconds since the Unix epoch: the
/// SQLite store's clock.
fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

impl Store for SqliteStore {
    fn write(&mut self, report: &CollectorReport) -> Result<(), StoreError> {
        let failed = self.failed("write a collector's report");
        let now = now_ms();
        let (alive, stuck, silent) = report.counts;
        let tx = self.db.transaction().map_err(&failed)?;
        tx.execute(
            "INSERT INTO collectors (host, instance, pid, interval_ms, last_write_ms,
                 beats_received, beats_rejected, alive, stuck, silent)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (host) DO UPDATE SET instance = excluded.instance,
                 pid = excluded.pid, interval_ms = excluded.interval_ms,
                 last_write_ms = excluded.last_write_ms,
                 beats_received = excluded.beats_received,
                 beats_rejected = excluded.beats_rejected, alive = excluded.alive,
                 stuck = excluded.stuck, silent = excluded.silent",
            params![
                report.host,
                report.instance as i64,
                report.pid,
                millis(report.interval),
                now,
                report.beats_received as i64,
                report.beats_rejected as i64,
                alive as i64,
                stuck as i64,
                silent as i64
            ],
        )
        .map_err(&failed)?;
        if report.complete {
            tx.execute(
                "DELETE FROM reporters WHERE host = ?1 AND written_ms < ?2",
                params![report.host, now - millis(report.forget_after) as f64],
            )
            .map_err(&failed)?;
        }
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO reporters (host, id, instance, pid, seq, progress,
                         interval_ms, health, last_beat_ms, changed_ms, written_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)
                     ON CONFLICT (host, id, instance) DO UPDATE SET pid = excluded.pid,
                         seq = excluded.seq, progress = excluded.progress,
                         interval_ms = excluded.interval_ms, health = excluded.health,
                         last_beat_ms = excluded.last_beat_ms,
                         changed_ms = CASE WHEN health = excluded.health
                             THEN changed_ms ELSE excluded.changed_ms END,
                         written_ms = excluded.written_ms",
                )
                .map_err(&failed)?;
            for r in &report.reporters {
                upsert
                    .execute(params![
                        report.host,
                        r.id,
                        r.instance as i64,
                        r.pid,
                        r.seq as i64,
                        r.progress as i64,
                        r.interval_ms as i64,
                        health_name(r.health),
                        now - millis(r.since_last_beat) as f64,
                        now
                    ])
                    .map_err(&failed)?;
            }
        }
        tx.commit().map_err(&failed)
    }

    fn read_hosts(&mut self) -> Result<Vec<HostRow>, StoreError> {
        let failed = self.failed("read the machines");
        let now = now_ms();
        let mut query = self
            .db
            .prepare_cached(
                "SELECT host, instance, pid, interval_ms, ?1 - last_write_ms, beats_received,
                     beats_rejected, alive, stuck, silent FROM collectors ORDER BY host",
            )
            .map_err(&failed)?;
        let rows = query
            .query_map([now], |r| {
                Ok(HostRow {
                    host: r.get(0)?,
                    instance: r.get::<_, i64>(1)? as u64,
                    pid: r.get(2)?,
                    interval: Duration::from_millis(r.get::<_, i64>(3)?.max(0) as u64),
                    since_last_write: duration_ms(r.get(4)?),
                    beats_received: r.get::<_, i64>(5)? as u64,
                    beats_rejected: r.get::<_, i64>(6)? as u64,
                    counts: (
                        r.get::<_, i64>(7)? as u64,
                        r.get::<_, i64>(8)? as u64,
                        r.get::<_, i64>(9)? as u64,
                    ),
                })
            })
            .map_err(&failed)?;
        rows.collect::<Result<_, _>>().map_err(&failed)
    }

    fn read_changes(
        &mut self,
        since: Option<StoreTime>,
    ) -> Result<(StoreTime, Vec<StoredReporter>), StoreError> {
        let failed = self.failed("read the reporters' changes");
        let now = now_ms();
        let (sql, bound) = match since {
            Some(t) => (
                "SELECT host, id, instance, pid, seq, progress, interval_ms, health,
                     ?1 - last_beat_ms FROM reporters WHERE changed_ms >= ?2",
                t.0 as f64,
            ),
            None => (
                "SELECT host, id, instance, pid, seq, progress, interval_ms, health,
                     ?1 - last_beat_ms FROM reporters WHERE health <> 'alive' AND ?2 = ?2",
                0.0,
            ),
        };
        let mut query = self.db.prepare_cached(sql).map_err(&failed)?;
        let rows = query
            .query_map(params![now, bound], stored_reporter)
            .map_err(&failed)?;
        let changes = rows.collect::<Result<_, _>>().map_err(&failed)?;
        Ok((StoreTime(now as i64), changes))
    }

    fn read_reporters(&mut self, host: &str) -> Result<Vec<ReporterRow>, StoreError> {
        let failed = self.failed("read a machine's reporters");
        let mut query = self
            .db
            .prepare_cached(
                "SELECT host, id, instance, pid, seq, progress, interval_ms, health,
                     ?1 - last_beat_ms FROM reporters WHERE host = ?2",
            )
            .map_err(&failed)?;
        let rows = query
            .query_map(params![now_ms(), host], stored_reporter)
            .map_err(&failed)?;
        rows.map(|row| row.map(|r| r.reporter))
            .collect::<Result<_, _>>()
            .map_err(&failed)
    }

    fn record_alerts(&mut self, alerts: &[FleetAlert]) -> Result<(), StoreError> {
        let failed = self.failed("record alerts");
        let tx = self.db.transaction().map_err(&failed)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO alerts (at_ms, kind, host, reporter, instance, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(&failed)?;
            for a in alerts {
                insert
                    .execute(params![
                        a.at.0 as f64,
                        a.kind.name(),
                        a.host,
                        a.id,
                        a.instance.map(|i| i as i64),
                        a.detail
                    ])
                    .map_err(&failed)?;
            }
        }
        tx.commit().map_err(&failed)
    }

    fn read_alerts(&mut self, limit: usize) -> Result<Vec<FleetAlert>, StoreError> {
        let failed = self.failed("read alerts");
        let mut query = self
            .db
            .prepare_cached(
                "SELECT at_ms, kind, host, reporter, instance, detail FROM
                     (SELECT rowid, * FROM alerts ORDER BY rowid DESC LIMIT ?1)
                 ORDER BY rowid",
            )
            .map_err(&failed)?;
        let rows = query
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                let kind: String = r.get(1)?;
                Ok(FleetAlert {
                    at: StoreTime(r.get::<_, f64>(0)? as i64),
                    kind: FleetAlertKind::from_name(&kind).unwrap_or(FleetAlertKind::HostSilent),
                    host: r.get(2)?,
                    id: r.get(3)?,
                    instance: r.get::<_, Option<i64>>(4)?.map(|i| i as u64),
                    detail: r.get(5)?,
                })
            })
            .map_err(&failed)?;
        rows.collect::<Result<_, _>>().map_err(&failed)
    }
}
