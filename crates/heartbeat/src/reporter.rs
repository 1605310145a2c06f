//! The reporting side: [`Reporter`] starts a daemon that beats on an
//! absolute schedule; [`Heartbeat`] is the main process's handle on it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use daemon::{Child, Process};
use shm::{Futex, Shared, ShmSafe};

use crate::auth::Key;
use crate::sinks::Sinks;
use crate::wire::{unix_ms, Beat};
use crate::{
    io_error, sys, HeartbeatError, DEFAULT_INTERVAL, MAX_HOST_BYTES, MAX_ID_BYTES, MIN_INTERVAL,
};

/// Why a monitor's address given to [`Reporter::udp`] did not resolve
/// (kept to be told by `start`; an `io::Error` is not `Clone`).
#[derive(Debug, Clone)]
pub(crate) struct Unresolved {
    kind: std::io::ErrorKind,
    message: String,
}

/// Configures a heartbeat reporter (see the [crate](crate) documentation).
#[derive(Debug, Clone)]
#[must_use = "a Reporter does nothing until started"]
pub struct Reporter {
    pub(crate) id: String,
    pub(crate) interval: Duration,
    /// The monitor's address, or why it did not resolve (told by `start`).
    pub(crate) udp: Option<Result<SocketAddr, Unresolved>>,
    pub(crate) database: Option<PathBuf>,
    pub(crate) host: Option<String>,
    pub(crate) key: Option<Key>,
}

impl Reporter {
    /// A reporter named `id`, every [`DEFAULT_INTERVAL`], to nowhere yet.
    /// An id longer than [`MAX_ID_BYTES`] (or a host name longer than
    /// [`MAX_HOST_BYTES`]) makes [`start`](Reporter::start) fail with
    /// [`HeartbeatError::TooLong`], before any daemon is started; so does
    /// one with a NUL byte ([`HeartbeatError::NulByte`]: no store keeps it).
    pub fn new(id: impl Into<String>) -> Reporter {
        Reporter {
            id: id.into(),
            interval: DEFAULT_INTERVAL,
            udp: None,
            database: None,
            host: None,
            key: None,
        }
    }

    /// Names the machine in every beat (default: [`hostname`](crate::hostname)):
    /// for a container whose host name is random, or the fleet's simulated
    /// machines. A fleet's [`Collector`](crate::fleet::Collector) keeps
    /// only beats naming its own machine.
    pub fn host(mut self, host: impl Into<String>) -> Reporter {
        self.host = Some(host.into());
        self
    }

    /// Reports every `interval` (at least [`MIN_INTERVAL`]).
    pub fn interval(mut self, interval: Duration) -> Reporter {
        self.interval = interval.max(MIN_INTERVAL);
        self
    }

    /// Sends each beat as a UDP datagram to `monitor` ("send"): anything
    /// [`Monitor::udp`](crate::Monitor::udp) takes, a `SocketAddr` or a
    /// string such as `"127.0.0.1:9999"` or `"monitor.lan:9999"`.
    ///
    /// The address is resolved here, once (a host name is looked up now,
    /// not at every beat), and beats go to the first address it resolves
    /// to. One that does not resolve makes [`start`](Reporter::start) fail
    /// with [`HeartbeatError::Io`], before any daemon is started.
    ///
    /// ```
    /// let reporter = heartbeat::Reporter::new("worker-1").udp("127.0.0.1:9999");
    /// # drop(reporter);
    /// ```
    pub fn udp(mut self, monitor: impl ToSocketAddrs) -> Reporter {
        let resolved = match monitor.to_socket_addrs() {
            Ok(mut addrs) => addrs.next().ok_or_else(|| Unresolved {
                kind: std::io::ErrorKind::NotFound,
                message: "it resolves to no address".to_string(),
            }),
            Err(e) => Err(Unresolved {
                kind: e.kind(),
                message: e.to_string(),
            }),
        };
        self.udp = Some(resolved);
        self
    }

    /// Signs every UDP beat with `key` (see [`Key::sign`]), for a monitor
    /// given the same key ([`Monitor::key`](crate::Monitor::key)), which
    /// drops unsigned and forged beats. Database rows are not signed: the
    /// file's permissions are their protection.
    pub fn key(mut self, key: Key) -> Reporter {
        self.key = Some(key);
        self
    }

    /// Upserts each beat into the table `heartbeats` of the SQLite file
    /// `path` ("写数据库"), creating both if needed. The file is put in WAL
    /// mode (`synchronous=NORMAL`), so that many reporters and monitors
    /// share it without waiting for each other; failed writes are counted in
    /// [`Heartbeat::status`]. Each start of a reporter has its own row
    /// (keyed by id, host and instance), so processes under one id are told
    /// apart; after its first write it deletes the rows of its id's earlier
    /// starts on this host whose main is gone (or was this process). All
    /// reporters of one file must be of this version: the table is re-keyed
    /// from `id` alone at the first open, and older reporters' upserts fail
    /// on it.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(mut self, path: impl Into<PathBuf>) -> Reporter {
        self.database = Some(path.into());
        self
    }

    /// The machine named in beats.
    fn host_name(&self) -> String {
        self.host.clone().unwrap_or_else(sys::hostname)
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
        if let Some(Err(unresolved)) = &self.udp {
            return Err(io_error("resolve the monitor's address")(
                std::io::Error::new(unresolved.kind, unresolved.message.clone()),
            ));
        }
        for (what, text, max) in [
            ("id", self.id.clone(), MAX_ID_BYTES),
            ("host name", self.host_name(), MAX_HOST_BYTES),
        ] {
            if text.len() > max {
                let len = text.len();
                return Err(HeartbeatError::TooLong { what, len, max });
            }
            if text.contains('\0') {
                return Err(HeartbeatError::NulByte { what });
            }
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
        let instance = sys::random_u64();
        let phase = sys::random_phase(self.interval);
        // Open the sinks here, so that errors reach the caller. SQLite
        // connections must not cross a fork: the daemon opens its own.
        let mut sinks = Sinks::open(&self)?;
        let keep = sinks.descriptors();
        let child = Process::new(|| {
            // A Ctrl-C to main's process group must not end the reporter
            // of a main that ignores or handles it.
            sys::ignore_group_signals();
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
            let beat = Beat {
                id: self.id.clone(),
                host: self.host_name(),
                pid: main_pid,
                seq: 0,
                progress: 0,
                sent_at_ms: 0,
                interval_ms: self.interval.as_millis() as u64,
                instance,
                mac: None,
            };
            report_until_main_ends(&self, beat, phase, &mut sinks, &board, main.as_ref())
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
            let mut child = child;
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
    database_reopens: AtomicU64,
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
    /// Times the database file was found deleted or replaced (by another
    /// file at its path) and opened afresh: writes into the old file would
    /// succeed and reach no monitor.
    pub database_reopens: u64,
}

/// The daemon's loop, until the main process ends (`main`, its pidfd;
/// without one, the parent-death signal ends this process): a beat at
/// once, then one at each tick `start + phase + k * interval`, k >= 0 (an
/// absolute schedule, so late wake-ups do not accumulate into drift). The
/// phase is random in [0, interval), so reporters started together do not
/// beat together for ever (a burst the monitor's receive buffer may not
/// hold, losing the same reporters each interval); the first gap is the
/// phase, shorter than an interval, so no gap is longer than an interval
/// and a wake-up's latency (it was 1-2 intervals: a false SILENT with
/// `silent_after(1)`). After a pause (the daemon stopped, the machine
/// suspended) it beats once and goes on at the next tick in the future:
/// the beats missed are not sent in a burst. Before each beat it looks
/// whether main has ended (it may have while the daemon was starting).
fn report_until_main_ends(
    config: &Reporter,
    mut beat: Beat,
    phase: Duration,
    sinks: &mut Sinks,
    board: &Board,
    main: Option<&OwnedFd>,
) {
    let now = Instant::now();
    let start = now.checked_add(phase).unwrap_or(now);
    for seq in 0.. {
        // Never a beat for a dead main: it may have died while the daemon
        // was not watching (its first database open waits up to the busy
        // timeout), and the wait below notices only deaths during it. (A
        // death between this look and the send is one beat late at most.)
        if main.is_some_and(|main| sys::wait_for_exit(main.as_fd(), Some(Duration::ZERO))) {
            return;
        }
        beat.seq = seq;
        beat.progress = board.progress.load(Ordering::Relaxed);
        beat.sent_at_ms = unix_ms();
        if let Some(key) = &config.key {
            key.sign(&mut beat);
        }
        sinks.send(&beat);
        board.beats.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "sqlite")]
        if let Some(counts) = sinks.database_counts() {
            // As of this beat: the writer thread cannot reach the board.
            for (to, from) in [
                (&board.database_writes, &counts.writes),
                (&board.database_errors, &counts.errors),
                (&board.database_skipped, &counts.skipped),
                (&board.database_reopens, &counts.reopens),
            ] {
                to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        // `None`: past the end of the clock (an interval of
        // `Duration::MAX`): no more beats after the first.
        let next = next_tick(start, config.interval, Instant::now());
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

/// The first tick `start + k * interval` after `now`: `start` itself if it
/// is later than `now`, else k >= 1; `None` past the end of the clock. Computed in 128 bits: no overflow however many
/// intervals have passed.
fn next_tick(start: Instant, interval: Duration, now: Instant) -> Option<Instant> {
    if now < start {
        return Some(start);
    }
    let interval = interval.as_nanos().max(1);
    let ticks = now.saturating_duration_since(start).as_nanos() / interval + 1;
    let offset = ticks.checked_mul(interval)?;
    let secs = u64::try_from(offset / 1_000_000_000).ok()?;
    start.checked_add(Duration::new(secs, (offset % 1_000_000_000) as u32))
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
            database_reopens: board.database_reopens.load(Ordering::Relaxed),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_tick_is_the_first_in_the_future() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(next_tick(start, ms(10), start), Some(start + ms(10)));
        assert_eq!(
            next_tick(start, ms(10), start + ms(9)),
            Some(start + ms(10))
        );
        assert_eq!(
            next_tick(start, ms(10), start + ms(10)),
            Some(start + ms(20))
        );
        // A pause of 3 s: the next tick after it, not the 300 missed.
        assert_eq!(
            next_tick(start, ms(10), start + ms(3_005)),
            Some(start + ms(3_010))
        );
    }

    #[test]
    fn the_next_tick_never_overflows() {
        let start = Instant::now();
        // More than 2^32 intervals after the start.
        let ms = Duration::from_millis;
        let far = start + ms(1 << 33);
        assert_eq!(next_tick(start, ms(1), far), Some(far + ms(1)));
        assert_eq!(next_tick(start, Duration::MAX, start), None);
    }
}
