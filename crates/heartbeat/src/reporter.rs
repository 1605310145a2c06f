//! The reporting side: [`Reporter`] starts a daemon that beats on an
//! absolute schedule; [`Heartbeat`] is the main process's handle on it.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use daemon::{Child, Process};
use shm::{Futex, Shared, ShmSafe};

use crate::sinks::Sinks;
use crate::wire::{unix_ms, Beat};
use crate::{io_error, sys, HeartbeatError, DEFAULT_INTERVAL};

/// Configures a heartbeat reporter (see the [crate](crate) documentation).
#[derive(Debug, Clone)]
#[must_use = "a Reporter does nothing until started"]
pub struct Reporter {
    pub(crate) id: String,
    pub(crate) interval: Duration,
    pub(crate) udp: Option<SocketAddr>,
    pub(crate) database: Option<PathBuf>,
}

impl Reporter {
    /// A reporter named `id`, every [`DEFAULT_INTERVAL`], to nowhere yet.
    pub fn new(id: impl Into<String>) -> Reporter {
        Reporter {
            id: id.into(),
            interval: DEFAULT_INTERVAL,
            udp: None,
            database: None,
        }
    }

    /// Reports every `interval` (at least a millisecond).
    pub fn interval(mut self, interval: Duration) -> Reporter {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Sends each beat as a UDP datagram to `monitor` ("send").
    pub fn udp(mut self, monitor: SocketAddr) -> Reporter {
        self.udp = Some(monitor);
        self
    }

    /// Upserts each beat into the table `heartbeats` of the SQLite file
    /// `path` ("写数据库"), creating both if needed. The file is put in WAL
    /// mode (`synchronous=NORMAL`), so that many reporters and monitors
    /// share it without waiting for each other; failed writes are counted in
    /// [`Heartbeat::status`].
    #[cfg(feature = "sqlite")]
    pub fn sqlite(mut self, path: impl Into<PathBuf>) -> Reporter {
        self.database = Some(path.into());
        self
    }

    /// Starts the reporting daemon and returns the handle whose progress
    /// counter this process bumps.
    ///
    /// With a database ([`sqlite`](Reporter::sqlite)), this process must
    /// have one thread: [`HeartbeatError::ThreadedDatabase`] otherwise (see
    /// [SQLite and threads](crate#sqlite-and-threads)). The daemon ends when this process's
    /// main code ends, when this process dies, or when this process drops
    /// the handle (a forked child's copy does not stop it).
    pub fn start(self) -> Result<Heartbeat, HeartbeatError> {
        if self.udp.is_none() && self.database.is_none() {
            return Err(HeartbeatError::NoSink);
        }
        // The daemon is forked and does not exec: SQLite's own locks, held by
        // another thread at the fork, would stay locked in it for ever.
        #[cfg(feature = "sqlite")]
        if self.database.is_some() {
            let threads = sys::thread_count().map_err(io_error("count this process's threads"))?;
            if threads > 1 {
                return Err(HeartbeatError::ThreadedDatabase { threads });
            }
        }
        let board = Shared::new(Board::default())?;
        let main_pid = shm::pid::current();
        // Open the sinks here, so that errors reach the caller. SQLite
        // connections must not cross a fork: the daemon opens its own.
        let mut sinks = Sinks::open(&self)?;
        let keep = sinks.descriptors();
        let child = Process::new(|| {
            // Watch the main process itself: the parent-death signal set
            // for a daemon follows the thread that forked it, which may end
            // long before main does (`Heartbeat` moves between threads).
            let main = match sys::parent_pidfd(main_pid) {
                Ok(Some(pidfd)) => {
                    sys::outlive_the_forking_thread();
                    Some(pidfd)
                }
                Ok(None) => return, // main is gone already
                Err(_) => None,     // no pidfds: the signal must do
            };
            #[cfg(feature = "sqlite")]
            if let Err(e) = sinks.open_database_first() {
                let code = match &e {
                    HeartbeatError::Database { source, .. } => source
                        .sqlite_error()
                        .map_or(rusqlite::ffi::SQLITE_CANTOPEN, |e| e.extended_code),
                    _ => rusqlite::ffi::SQLITE_CANTOPEN,
                };
                board.database_failure.store(code, Ordering::Relaxed);
                board.started.store(STARTED_FAILED, Ordering::Release);
                board.started.wake_all();
                return;
            }
            #[cfg(feature = "sqlite")]
            if sinks.start_database_writer().is_err() {
                board
                    .database_failure
                    .store(rusqlite::ffi::SQLITE_NOMEM, Ordering::Relaxed);
                board.started.store(STARTED_FAILED, Ordering::Release);
                board.started.wake_all();
                return;
            }
            board.started.store(STARTED, Ordering::Release);
            board.started.wake_all();
            report_until_main_ends(&self, &mut sinks, &board, main_pid, main.as_ref())
        })
        .name(format!("heartbeat-{}", self.id))
        .daemon(true)
        // It lives as long as this process: holding copies of this
        // process's descriptors would keep pipes from EOF, listening
        // sockets bound and closed connections from sending FIN.
        .close_descriptors(keep)
        .start()?;
        // Until the daemon watches main itself, it dies with the thread
        // that started it, which must not end yet.
        let mut child = child;
        while board.started.load(Ordering::Acquire) == 0 {
            if !child.is_alive() {
                return Err(io_error("start the reporting daemon")(
                    std::io::Error::other("it ended while starting"),
                ));
            }
            board
                .started
                .wait(0, Instant::now().checked_add(Duration::from_millis(10)));
        }
        #[cfg(feature = "sqlite")]
        if board.started.load(Ordering::Acquire) == STARTED_FAILED {
            let _ = child.join_timeout(Duration::from_secs(5));
            return Err(HeartbeatError::Database {
                path: self.database.clone().unwrap_or_default(),
                source: rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(board.database_failure.load(Ordering::Relaxed)),
                    None,
                ),
            });
        }
        Ok(Heartbeat {
            board,
            child,
            creator: main_pid,
        })
    }
}

/// `Board::started`: the daemon runs.
const STARTED: u32 = 1;
/// `Board::started`: the daemon could not open the database and ended.
#[cfg(feature = "sqlite")]
const STARTED_FAILED: u32 = 2;

/// What the main process and its reporting daemon share.
#[derive(ShmSafe, Default, Debug)]
#[repr(C)]
struct Board {
    /// The main process's progress counter, which the beats carry.
    progress: AtomicU64,
    /// [`STARTED`] once the daemon watches the main process itself (and
    /// opened the database, or found it locked); [`STARTED_FAILED`] if it
    /// could not open the database and ended.
    started: Futex,
    /// The SQLite extended error code of that failure.
    database_failure: std::sync::atomic::AtomicI32,
    /// See [`ReporterStatus`].
    beats: AtomicU64,
    database_writes: AtomicU64,
    database_errors: AtomicU64,
    database_skipped: AtomicU64,
}

/// What a reporting daemon has done so far (see [`Heartbeat::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ReporterStatus {
    /// Beats made (each goes to every sink).
    pub beats: u64,
    /// Beats written to the database.
    pub database_writes: u64,
    /// Beats the database did not take: a failed write (a lock held past
    /// the busy timeout, a full disk, ...) or a failed open. The table's row
    /// is older than it should be by one beat for each.
    pub database_errors: u64,
    /// Beats not written because the previous write was still going on (a
    /// lock held by another writer): the database is written on its own
    /// thread of the daemon, so that it never delays the UDP beats.
    pub database_skipped: u64,
}

/// The daemon's loop: a beat at start + k * interval, for k = 0, 1, ...
/// (an absolute schedule, so late wake-ups do not accumulate into drift),
/// until the main process ends (`main`, its pidfd; without one, the
/// parent-death signal ends this process).
fn report_until_main_ends(
    config: &Reporter,
    sinks: &mut Sinks,
    board: &Board,
    main_pid: shm::pid::Pid,
    main: Option<&OwnedFd>,
) {
    let host = sys::hostname();
    // The next beat's time; `None` once past the end of the clock (an
    // interval of `Duration::MAX`): no more beats after the first.
    let mut next = Some(Instant::now());
    for seq in 0.. {
        sinks.send(&Beat {
            id: config.id.clone(),
            host: host.clone(),
            pid: main_pid,
            seq,
            progress: board.progress.load(Ordering::Relaxed),
            sent_at_ms: unix_ms(),
            interval_ms: config.interval.as_millis() as u64,
        });
        board.beats.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "sqlite")]
        if let Some(counts) = sinks.database_counts() {
            // As of this beat: the writer thread cannot reach the board.
            for (to, from) in [
                (&board.database_writes, &counts.writes),
                (&board.database_errors, &counts.errors),
                (&board.database_skipped, &counts.skipped),
            ] {
                to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        next = next.and_then(|n| n.checked_add(config.interval));
        loop {
            // `None`: no limit.
            let wait = next.map(|n| n.saturating_duration_since(Instant::now()));
            if wait.is_some_and(|w| w.is_zero()) {
                break;
            }
            match main {
                Some(main) => {
                    if sys::wait_for_exit(main.as_fd(), wait) {
                        return;
                    }
                }
                None => match wait {
                    Some(wait) => std::thread::sleep(wait),
                    None => std::thread::park(),
                },
            }
        }
    }
}

/// The running reporter of this process.
///
/// Dropping it stops the reporter, in the process that started it only: a
/// forked child that drops its copy (returning from the scope that holds it)
/// leaves its parent's reporter running.
#[derive(Debug)]
pub struct Heartbeat {
    board: Shared<Board>,
    child: Child<()>,
    /// The process that started the reporter: the only one that stops it.
    creator: shm::pid::Pid,
}

impl Heartbeat {
    /// Adds `amount` to the progress counter the beats carry.
    pub fn progress(&self, amount: u64) {
        self.board.progress.fetch_add(amount, Ordering::Relaxed);
    }

    /// The progress counter's value.
    pub fn progress_value(&self) -> u64 {
        self.board.progress.load(Ordering::Relaxed)
    }

    /// What the reporting daemon has done so far: beats made, and written
    /// to the database, failed or skipped there (as of the last beat).
    pub fn status(&self) -> ReporterStatus {
        let board = &*self.board;
        ReporterStatus {
            beats: board.beats.load(Ordering::Relaxed),
            database_writes: board.database_writes.load(Ordering::Relaxed),
            database_errors: board.database_errors.load(Ordering::Relaxed),
            database_skipped: board.database_skipped.load(Ordering::Relaxed),
        }
    }

    /// The reporting daemon's pid.
    pub fn pid(&self) -> shm::pid::Pid {
        self.child.pid()
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if shm::pid::current() != self.creator {
            return; // a forked copy: the reporter is not ours to stop
        }
        let _ = self.child.kill();
        let _ = self.child.join_timeout(Duration::from_secs(5));
    }
}
