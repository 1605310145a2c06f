//! Where beats go: a UDP socket, and (feature `sqlite`) the table
//! `heartbeats` of a SQLite file, upserted by the reporter and read by the
//! monitor.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
#[cfg(feature = "sqlite")]
use std::path::{Path, PathBuf};
#[cfg(feature = "sqlite")]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "sqlite")]
use std::sync::{Arc, Condvar, Mutex};
#[cfg(feature = "sqlite")]
use std::time::Duration;

use crate::wire::Beat;
use crate::{io_error, HeartbeatError, Reporter};

/// Where a reporter writes.
pub(crate) struct Sinks {
    udp: Option<(UdpSocket, SocketAddr)>,
    #[cfg(feature = "sqlite")]
    database: Option<Database>,
}

/// The database sink: its file, and the connection once open. Opened in
/// the reporting daemon on first use (a connection must not cross a fork),
/// and again at the next beat after an open or a write fails, or once the
/// file at its path is another (deleted, or replaced).
///
/// The daemon's beat loop never writes it: a write may wait for a lock (up
/// to the busy timeout), and the UDP beats must not wait with it. The loop
/// hands each beat to the daemon's writer thread through a one-beat
/// mailbox ([`Handoff`]): a beat still there when the next one comes was
/// never picked up (the writer was still busy) and is skipped, counted.
#[cfg(feature = "sqlite")]
struct Database {
    path: PathBuf,
    connection: Option<rusqlite::Connection>,
    /// The (device, inode) of the file `connection` was opened on: a file
    /// deleted or replaced at `path` is written no more (see `write`).
    file: Option<(u64, u64)>,
    /// Whether the rows of this reporter's dead earlier starts were
    /// deleted (once, after the first write: see `delete_dead_starts`).
    cleaned: bool,
    /// `Some` once the writer thread runs (it owns the connection then).
    handoff: Option<Arc<Handoff>>,
}

/// The mailbox between the beat loop and the writer thread, and what the
/// writer has done.
#[cfg(feature = "sqlite")]
#[derive(Default)]
struct Handoff {
    next: Mutex<Option<Beat>>,
    posted: Condvar,
    counts: DatabaseCounts,
}

/// What the database sink has done so far.
#[cfg(feature = "sqlite")]
#[derive(Default)]
pub(crate) struct DatabaseCounts {
    pub(crate) writes: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) reopens: AtomicU64,
}

#[cfg(feature = "sqlite")]
impl Handoff {
    /// Leaves `beat` for the writer, replacing (skipping) one it has not
    /// picked up.
    fn post(&self, beat: Beat) {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        if next.replace(beat).is_some() {
            self.counts.skipped.fetch_add(1, Ordering::Relaxed);
        }
        self.posted.notify_one();
    }

    /// The writer thread: writes each beat left for it, for ever (it ends
    /// with the daemon's process).
    fn write_forever(&self, mut database: Database) {
        loop {
            let beat = {
                let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if let Some(beat) = next.take() {
                        break beat;
                    }
                    next = self.posted.wait(next).unwrap_or_else(|p| p.into_inner());
                }
            };
            if database.reopen_if_replaced() {
                self.counts.reopens.fetch_add(1, Ordering::Relaxed);
            }
            let counter = if database.write(&beat) {
                &self.counts.writes
            } else {
                &self.counts.errors
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(feature = "sqlite")]
impl Database {
    /// Opens the file at `path` (see [`open_database`]) and notes which
    /// file it is. (A file replaced between the open and the stat is
    /// noticed one beat late.)
    fn open(&mut self) -> Result<(), HeartbeatError> {
        let connection = open_database(&self.path)?;
        self.file = file_id(&self.path);
        self.connection = Some(connection);
        Ok(())
    }

    /// Drops the connection if the file at `path` is no longer the one it
    /// was opened on (deleted, or replaced by a cleanup and a new reporter):
    /// writes into it would succeed and reach no monitor for ever. Whether
    /// it did; the next write opens the file at `path` (creating it if
    /// need be). A stat per beat, on the writer thread.
    fn reopen_if_replaced(&mut self) -> bool {
        if self.connection.is_none() || file_id(&self.path) == self.file {
            return false;
        }
        self.connection = None;
        true
    }

    /// Writes `beat`; false if the open or the write failed.
    fn write(&mut self, beat: &Beat) -> bool {
        if self.connection.is_none() {
            let _ = self.open();
        }
        let Some(db) = &self.connection else {
            return false;
        };
        match upsert(db, beat) {
            Ok(_) => {
                if !self.cleaned {
                    // Best effort: a dead row left is judged SILENT, no worse.
                    self.cleaned = delete_dead_starts(db, beat).is_ok();
                }
                true
            }
            Err(e) => {
                if !is_busy(&e) {
                    // Maybe the file was replaced or its disk failed: open
                    // it afresh next time.
                    self.connection = None;
                }
                false
            }
        }
    }
}

impl Sinks {
    pub(crate) fn open(config: &Reporter) -> Result<Sinks, HeartbeatError> {
        let udp = match config.udp {
            // Told by `Reporter::start` before the sinks are opened.
            None | Some(Err(_)) => None,
            Some(Ok(addr)) => {
                let local: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket =
                    UdpSocket::bind(local).map_err(io_error("bind a UDP socket for heartbeats"))?;
                Some((socket, addr))
            }
        };
        // Not opened here: SQLite keeps per-process state about open files
        // (and their locks and descriptors) that a fork would copy into the
        // daemon, stale. The daemon opens it (see `open_database_first`).
        #[cfg(feature = "sqlite")]
        let database = config.database.as_ref().map(|path| Database {
            path: path.clone(),
            connection: None,
            file: None,
            cleaned: false,
            handoff: None,
        });
        Ok(Sinks {
            udp,
            #[cfg(feature = "sqlite")]
            database,
        })
    }

    /// In the reporting daemon, before it reports to its starter that it
    /// runs: opens the database, so that a wrong path or a file that is not
    /// a database reaches the caller of `start`. A lock is no error: the
    /// open is retried at every beat.
    #[cfg(feature = "sqlite")]
    pub(crate) fn open_database_first(&mut self) -> Result<(), HeartbeatError> {
        let Some(db) = &mut self.database else {
            return Ok(());
        };
        match db.open() {
            Ok(()) => {}
            Err(HeartbeatError::Database { source, .. }) if is_busy(&source) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// The descriptors the reporting daemon needs from this process (the
    /// UDP socket's); it closes every other one it inherited.
    pub(crate) fn descriptors(&self) -> Vec<RawFd> {
        self.udp.iter().map(|(s, _)| s.as_raw_fd()).collect()
    }

    /// In the reporting daemon, once it runs: starts the database's writer
    /// thread (made after the fork, so it holds no lock of the starting
    /// process's threads).
    #[cfg(feature = "sqlite")]
    pub(crate) fn start_database_writer(&mut self) -> Result<(), HeartbeatError> {
        let Some(db) = &mut self.database else {
            return Ok(());
        };
        let handoff = Arc::new(Handoff::default());
        let database = Database {
            path: db.path.clone(),
            connection: db.connection.take(),
            file: db.file,
            cleaned: false,
            handoff: None,
        };
        let writer = Arc::clone(&handoff);
        std::thread::Builder::new()
            .name("heartbeat-db".into())
            .spawn(move || writer.write_forever(database))
            .map_err(io_error("start the heartbeat database writer"))?;
        db.handoff = Some(handoff);
        Ok(())
    }

    /// Sends a beat to every sink. Best effort: a monitor that is down must
    /// not stop the beats, nor a locked database the UDP beats (the writer
    /// thread writes it).
    pub(crate) fn send(&mut self, beat: &Beat) {
        if let Some((socket, addr)) = &self.udp {
            if let Some(json) = beat.to_json() {
                let _ = socket.send_to(&json, addr);
            }
        }
        #[cfg(feature = "sqlite")]
        if let Some(handoff) = self.database.as_ref().and_then(|db| db.handoff.as_ref()) {
            handoff.post(beat.clone());
        }
    }

    /// What the database sink has done so far (`None`: no database, or
    /// its writer has not started).
    #[cfg(feature = "sqlite")]
    pub(crate) fn database_counts(&self) -> Option<&DatabaseCounts> {
        let db = self.database.as_ref()?;
        db.handoff.as_ref().map(|h| &h.counts)
    }
}

/// The (device, inode) of the file at `path`; `None` if there is none.
#[cfg(feature = "sqlite")]
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Opens (creating if needed) the SQLite file and its table, for writing.
///
/// The file is put in WAL mode (a persistent setting of the file): readers
/// never wait for writers nor writers for readers, and with
/// `synchronous=NORMAL` a commit needs no `fsync` (a power cut may lose the
/// last beats, never the file). Forty reporters at 100 ms on one file in the
/// default rollback mode gave 108–145 false SILENT in 8 s; in WAL mode, 0.
#[cfg(feature = "sqlite")]
pub(crate) fn open_database(path: &Path) -> Result<rusqlite::Connection, HeartbeatError> {
    let database = |source| HeartbeatError::Database {
        path: path.to_path_buf(),
        source,
    };
    let db = open_wal(path).map_err(database)?;
    db.execute_batch(&format!("CREATE TABLE IF NOT EXISTS heartbeats {TABLE}"))
        .map_err(database)?;
    // A table made before the `instance` column: add it.
    if !has_instance(&db).map_err(database)? {
        db.execute_batch("ALTER TABLE heartbeats ADD COLUMN instance INTEGER NOT NULL DEFAULT 0")
            .map_err(database)?;
    }
    // A table keyed by `id` alone (before review 9): re-keyed by start.
    if keyed_by_id(&db).map_err(database)? {
        rekey(&db).map_err(database)?;
    }
    Ok(db)
}

/// Opens (creating if needed) a SQLite file in WAL mode with
/// `synchronous=NORMAL` and a 2 s busy timeout: the heartbeat file and the
/// fleet's store (see [`open_database`] for why).
#[cfg(feature = "sqlite")]
pub(crate) fn open_wal(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let db = rusqlite::Connection::open(path)?;
    db.busy_timeout(Duration::from_secs(2))?;
    set_wal_mode(&db)?;
    db.execute_batch("PRAGMA synchronous = NORMAL")?;
    Ok(db)
}

/// The `heartbeats` table's columns: one row per start of a reporter,
/// keyed by (id, host, instance), so that processes reporting under one id
/// each have their row (keyed by `id` alone, they overwrote one row, and
/// the monitor saw only the last writer: one of them killed was never
/// SILENT).
#[cfg(feature = "sqlite")]
const TABLE: &str = "(
    id TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    progress INTEGER NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    interval_ms INTEGER NOT NULL,
    instance INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (id, host, instance)
)";

/// Whether the `heartbeats` table is keyed by `id` alone (made before
/// review 9).
#[cfg(feature = "sqlite")]
fn keyed_by_id(db: &rusqlite::Connection) -> rusqlite::Result<bool> {
    db.query_row(
        "SELECT COUNT(*) = 1 FROM pragma_table_info('heartbeats') WHERE pk > 0",
        [],
        |r| r.get(0),
    )
}

/// Re-keys a table keyed by `id` alone by (id, host, instance), its rows
/// kept: made anew and copied, in one write transaction (another reporter
/// doing the same meanwhile finds it done). Reporters of older versions
/// upsert `ON CONFLICT(id)`, which the re-keyed table refuses: their writes
/// fail (counted), so all reporters of one file must be of this version.
#[cfg(feature = "sqlite")]
fn rekey(db: &rusqlite::Connection) -> rusqlite::Result<()> {
    db.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        if !keyed_by_id(db)? {
            return Ok(());
        }
        db.execute_batch(&format!(
            "CREATE TABLE heartbeats_by_start {TABLE};
             INSERT OR REPLACE INTO heartbeats_by_start
                 SELECT id, host, pid, seq, progress, sent_at_ms, interval_ms, instance
                 FROM heartbeats;
             DROP TABLE heartbeats;
             ALTER TABLE heartbeats_by_start RENAME TO heartbeats;"
        ))
    })();
    match result {
        Ok(()) => db.execute_batch("COMMIT"),
        Err(e) => {
            let _ = db.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Deletes the rows of earlier starts of `beat`'s reporter (its id, on its
/// host, another instance) whose main process is gone, or was this
/// process (a restart under the same pid): with one row per start, a
/// restarted reporter would otherwise leave its dead row for every monitor
/// to judge SILENT. Rows of live processes under the same id stay: they
/// are other reporters.
#[cfg(feature = "sqlite")]
fn delete_dead_starts(db: &rusqlite::Connection, beat: &Beat) -> rusqlite::Result<()> {
    let mut query = db.prepare(
        "SELECT instance, pid FROM heartbeats WHERE id = ?1 AND host = ?2 AND instance != ?3",
    )?;
    let others: Vec<(i64, i64)> = query
        .query_map(
            rusqlite::params![beat.id, beat.host, beat.instance as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    for (instance, pid) in others {
        let dead = pid == i64::from(beat.pid.get())
            || !u32::try_from(pid).is_ok_and(crate::sys::process_exists);
        if dead {
            db.execute(
                "DELETE FROM heartbeats WHERE id = ?1 AND host = ?2 AND instance = ?3",
                rusqlite::params![beat.id, beat.host, instance],
            )?;
        }
    }
    Ok(())
}

/// Puts the file in WAL mode unless it is already. Changing the mode needs
/// the file to itself, and SQLite answers `SQLITE_BUSY` at once (without
/// its busy handler) while another connection uses it, as when many
/// reporters start together: retried for up to two seconds. (A file system
/// without shared memory keeps the rollback journal, which SQLite reports
/// as the mode set: that still works, more slowly.)
#[cfg(feature = "sqlite")]
fn set_wal_mode(db: &rusqlite::Connection) -> rusqlite::Result<()> {
    let mode =
        || -> rusqlite::Result<String> { db.query_row("PRAGMA journal_mode", [], |r| r.get(0)) };
    let limit = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let result = match mode() {
            Ok(m) if m.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(_) => db
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
                .map(drop),
            Err(e) => Err(e),
        };
        match result {
            Err(e) if is_busy(&e) && std::time::Instant::now() < limit => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Whether `error` is a lock held by another connection (`SQLITE_BUSY` or
/// `SQLITE_LOCKED`).
#[cfg(feature = "sqlite")]
pub(crate) fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Refuses a `path` that exists and is no regular file (a FIFO, a device,
/// a directory): SQLite's read-only open(2) of a FIFO waits for a writer
/// for ever, and the monitor with it (its UDP side too). stat(2) never
/// blocks. A FIFO swapped in between this check and the open still blocks
/// the open: whoever can do that can as well hold the file's lock for ever.
/// A missing file is an error too ([`HeartbeatError::is_missing_file`]),
/// and is not created.
#[cfg(feature = "sqlite")]
fn refuse_non_regular(path: &Path) -> Result<(), HeartbeatError> {
    let refused = |source| HeartbeatError::Io {
        what: format!("read the heartbeat database {}", path.display()),
        source,
    };
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(refused(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(refused(e)),
        _ => Ok(()),
    }
}

/// Whether some process holds the write lock of the SQLite file `path` in
/// WAL mode: byte 120 of its `-shm` file (the WAL index's first lock,
/// `WAL_WRITE_LOCK`, which SQLite's file format fixes), tested with
/// `fcntl(F_GETLK)`, which takes no lock. False without a `-shm` file
/// (not in WAL mode, or no connection open).
#[cfg(feature = "sqlite")]
pub(crate) fn write_lock_held(path: &Path) -> bool {
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    std::fs::File::open(shm).is_ok_and(|file| crate::sys::byte_locked(&file, 120))
}

/// Opens the SQLite file read-only, for a monitor: it never creates the
/// file, never writes it, and (in WAL mode) never waits for a writer.
#[cfg(feature = "sqlite")]
fn open_read_only(path: &Path) -> Result<rusqlite::Connection, HeartbeatError> {
    let database = |source| HeartbeatError::Database {
        path: path.to_path_buf(),
        source,
    };
    let db = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(database)?;
    db.busy_timeout(Duration::from_secs(2)).map_err(database)?;
    Ok(db)
}

#[cfg(feature = "sqlite")]
fn upsert(db: &rusqlite::Connection, beat: &Beat) -> rusqlite::Result<usize> {
    db.execute(
        "INSERT INTO heartbeats (id, host, pid, seq, progress, sent_at_ms, interval_ms, instance)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(id, host, instance) DO UPDATE SET pid = ?3, seq = ?4,
             progress = ?5, sent_at_ms = ?6, interval_ms = ?7",
        rusqlite::params![
            beat.id,
            beat.host,
            beat.pid.get(),
            beat.seq as i64,
            beat.progress as i64,
            beat.sent_at_ms as i64,
            beat.interval_ms as i64,
            beat.instance as i64
        ],
    )
}

/// Reads every row of the `heartbeats` table of the SQLite file `path`,
/// handing them to `read` as they come: `Ok(None)` for a row that is no
/// beat (skipped, for the caller to count), `Err` if SQLite itself fails,
/// or if `path` is no regular file (see [`refuse_non_regular`]).
#[cfg(feature = "sqlite")]
pub(crate) fn read_database<R>(
    path: &Path,
    read: impl FnOnce(
        &mut dyn Iterator<Item = Result<Option<Beat>, HeartbeatError>>,
    ) -> Result<R, HeartbeatError>,
) -> Result<R, HeartbeatError> {
    refuse_non_regular(path)?;
    let db = open_read_only(path)?;
    let database = |source| HeartbeatError::Database {
        path: path.to_path_buf(),
        source,
    };
    // A file whose first reporter has not made the table yet: no rows.
    // (The monitor opens read-only, so it never makes the table itself.)
    let made: bool = db
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'heartbeats')",
            [],
            |r| r.get(0),
        )
        .map_err(database)?;
    if !made {
        return read(&mut std::iter::empty());
    }
    // A table made before the `instance` column (which this read-only
    // connection cannot add): every row is instance 0.
    let instance = if has_instance(&db).map_err(database)? {
        "instance"
    } else {
        "0"
    };
    let mut query = db
        .prepare(&format!(
            "SELECT id, host, pid, seq, progress, sent_at_ms, interval_ms, {instance} FROM heartbeats"
        ))
        .map_err(database)?;
    let rows = query
        .query_map([], |r| match beat_of(r) {
            Ok(beat) => Ok(Some(beat)),
            Err(
                rusqlite::Error::IntegralValueOutOfRange(..)
                | rusqlite::Error::InvalidColumnType(..)
                | rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::Utf8Error(..),
            ) => Ok(None),
            Err(e) => Err(e),
        })
        .map_err(database)?;
    let mut rows = rows.map(|row| row.map_err(database));
    read(&mut rows)
}

/// Whether the table `heartbeats` has the `instance` column (tables made
/// before it have not).
#[cfg(feature = "sqlite")]
fn has_instance(db: &rusqlite::Connection) -> rusqlite::Result<bool> {
    db.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('heartbeats') WHERE name = 'instance'",
        [],
        |r| r.get(0),
    )
}

/// The beat of one row; a conversion error if it is none (a pid out of
/// range, a negative number, a text where a number belongs, ...).
#[cfg(feature = "sqlite")]
fn beat_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Beat> {
    let unsigned = |column: usize| -> rusqlite::Result<u64> {
        let n: i64 = r.get(column)?;
        u64::try_from(n).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(column, n))
    };
    Ok(Beat {
        id: r.get(0)?,
        host: r.get(1)?,
        pid: {
            let n: i64 = r.get(2)?;
            u32::try_from(n)
                .ok()
                .and_then(shm::pid::Pid::from_u32)
                .ok_or(rusqlite::Error::IntegralValueOutOfRange(2, n))?
        },
        seq: unsigned(3)?,
        progress: unsigned(4)?,
        sent_at_ms: unsigned(5)?,
        interval_ms: unsigned(6)?,
        // Random bits stored as a signed 64-bit integer: any value is one.
        instance: r.get::<_, i64>(7)? as u64,
        mac: None,
    })
}
