//! Heartbeats ("报活"): a daemon child reports that its main process is
//! alive, and how far it has got, to a [`Monitor`].
//!
//! The lesson's question: with 10,000 processes on 100 machines, how do you
//! know each one still works? Its answer: a daemon process that every
//! interval *sends* a message or *writes a database*. A daemon, because it
//! ends with its main process (so silence means death), costs almost no CPU,
//! and keeps its rhythm while the main process is busy, which the main
//! process itself could not promise.
//!
//! - [`Reporter`]: configure and [`start`](Reporter::start) the reporting
//!   daemon; it returns a [`Heartbeat`] whose [`progress`](Heartbeat::progress)
//!   counter the main process bumps as it works, so a monitor can tell
//!   *alive but stuck* from *working*.
//! - [`Monitor`]: receives beats over UDP (and/or reads the SQLite table),
//!   and reports each reporter [`Health::Silent`] after `silent_after`
//!   missed intervals and [`Health::Stuck`] when its progress has not moved
//!   for `stuck_after` intervals.
//!
//! A beat is one JSON object, `{"id", "host", "pid", "seq", "progress",
//! "sent_at_ms", "interval_ms"}`, in one UDP datagram, or one row of the
//! table `heartbeats` (keyed by `id`).
//!
//! # Example
//!
//! ```
//! use heartbeat::{Health, Monitor, Reporter};
//! use std::time::Duration;
//!
//! let mut monitor = Monitor::udp("127.0.0.1:0")?;
//! let beat = Reporter::new("worker-1")
//!     .interval(Duration::from_millis(50))
//!     .udp(monitor.local_addr()?)
//!     .start()?;
//! monitor.poll(Duration::from_millis(60))?;
//! let seen = monitor.reporters();
//! assert_eq!(seen[0].id, "worker-1");
//! assert_eq!(seen[0].health, Health::Alive);
//!
//! // Beats keep coming, but the work does not move: STUCK after three
//! // intervals. (`beat.progress(1)` as the work advances prevents that.)
//! monitor.poll(Duration::from_millis(300))?;
//! assert_eq!(monitor.health("worker-1"), Some(Health::Stuck));
//! # drop(beat);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use shm::Shared;

use daemon::{Child, Process};

/// The lesson's interval: one report a minute. Most users want less.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Missed intervals before a reporter counts as silent.
pub const DEFAULT_SILENT_AFTER: u32 = 3;
/// Intervals without progress before a reporter counts as stuck.
pub const DEFAULT_STUCK_AFTER: u32 = 3;

/// One report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    /// The reporter's name, unique among those a monitor watches.
    pub id: String,
    /// The machine it runs on.
    pub host: String,
    /// The pid of the main process it reports for.
    pub pid: u32,
    /// 0, 1, 2, ... one per interval.
    pub seq: u64,
    /// The main process's progress counter.
    pub progress: u64,
    /// Wall-clock time of sending, in milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
    /// The reporter's interval, so a monitor knows when to expect the next.
    pub interval_ms: u64,
}

/// A heartbeat failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeartbeatError {
    /// A socket, file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The SQLite database could not be used.
    #[cfg(feature = "sqlite")]
    #[error("heartbeat database {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// Starting the reporting daemon failed.
    #[error("starting the heartbeat reporter: {0}")]
    Start(#[from] daemon::Error),
    /// A reporter needs somewhere to report to.
    #[error("a reporter needs a UDP address or a database file to report to")]
    NoSink,
    /// The shared progress counter could not be made.
    #[error("shared memory for the progress counter: {0}")]
    Shared(#[from] shm::Error),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> HeartbeatError {
    let what = what.into();
    move |source| HeartbeatError::Io { what, source }
}

/// Configures a heartbeat reporter (see the [module](self) documentation).
#[derive(Debug, Clone)]
#[must_use = "a Reporter does nothing until started"]
pub struct Reporter {
    id: String,
    interval: Duration,
    udp: Option<SocketAddr>,
    database: Option<PathBuf>,
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
    /// `path` ("写数据库"), creating both if needed.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(mut self, path: impl Into<PathBuf>) -> Reporter {
        self.database = Some(path.into());
        self
    }

    /// Starts the reporting daemon and returns the handle whose progress
    /// counter this process bumps. The daemon ends when this process's
    /// main code ends, when this process dies, or when the handle is
    /// dropped.
    pub fn start(self) -> Result<Heartbeat, HeartbeatError> {
        if self.udp.is_none() && self.database.is_none() {
            return Err(HeartbeatError::NoSink);
        }
        let progress = Shared::new(AtomicU64::new(0))?;
        // SAFETY: getpid has no preconditions.
        let main_pid = unsafe { libc::getpid() } as u32;
        // Open the sinks here, so that errors reach the caller. SQLite
        // connections must not cross a fork: the child opens its own.
        let mut sinks = Sinks::open(&self)?;
        #[cfg(feature = "sqlite")]
        sinks.database.take();
        let child = Process::new(|| {
            #[cfg(feature = "sqlite")]
            if let Some(path) = &self.database {
                sinks.database = open_database(path).ok().map(|db| (db, path.clone()));
            }
            report_forever(&self, &sinks, &progress, main_pid)
        })
        .name(format!("heartbeat-{}", self.id))
        .daemon(true)
        .start()?;
        Ok(Heartbeat { progress, child })
    }
}

/// Where a reporter writes.
struct Sinks {
    udp: Option<(UdpSocket, SocketAddr)>,
    #[cfg(feature = "sqlite")]
    database: Option<(rusqlite::Connection, PathBuf)>,
}

impl Sinks {
    fn open(config: &Reporter) -> Result<Sinks, HeartbeatError> {
        let udp = match config.udp {
            None => None,
            Some(addr) => {
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
        #[cfg(feature = "sqlite")]
        let database = match &config.database {
            None => None,
            Some(path) => Some((open_database(path)?, path.clone())),
        };
        Ok(Sinks {
            udp,
            #[cfg(feature = "sqlite")]
            database,
        })
    }

    /// Best effort: a monitor that is down must not stop the beats.
    fn send(&self, beat: &Beat) {
        if let Some((socket, addr)) = &self.udp {
            if let Ok(json) = serde_json::to_vec(beat) {
                let _ = socket.send_to(&json, addr);
            }
        }
        #[cfg(feature = "sqlite")]
        if let Some((db, _)) = &self.database {
            let _ = upsert(db, beat);
        }
    }
}

/// The daemon's loop: a beat at start + k * interval, for k = 0, 1, ...
/// (an absolute schedule, so late wake-ups do not accumulate into drift).
fn report_forever(config: &Reporter, sinks: &Sinks, progress: &AtomicU64, main_pid: u32) {
    let host = hostname();
    // The next beat's time; `None` once past the end of the clock (an
    // interval of `Duration::MAX`): no more beats after the first.
    let mut next = Some(Instant::now());
    for seq in 0.. {
        sinks.send(&Beat {
            id: config.id.clone(),
            host: host.clone(),
            pid: main_pid,
            seq,
            progress: progress.load(Ordering::Relaxed),
            sent_at_ms: unix_ms(),
            interval_ms: config.interval.as_millis() as u64,
        });
        next = next.and_then(|n| n.checked_add(config.interval));
        match next {
            Some(next) => {
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            None => loop {
                std::thread::park();
            },
        }
    }
}

/// The running reporter of this process.
#[derive(Debug)]
pub struct Heartbeat {
    progress: Shared<AtomicU64>,
    child: Child<()>,
}

impl Heartbeat {
    /// Adds `amount` to the progress counter the beats carry.
    pub fn progress(&self, amount: u64) {
        self.progress.fetch_add(amount, Ordering::Relaxed);
    }

    /// The progress counter's value.
    pub fn progress_value(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    /// The reporting daemon's pid.
    pub fn pid(&self) -> i32 {
        self.child.pid()
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.join_timeout(Duration::from_secs(5));
    }
}

/// How a monitor judges a reporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Health {
    /// Beats arrive and progress moves (or has not yet had time to).
    Alive,
    /// Beats arrive, but progress has not moved for `stuck_after` intervals.
    Stuck,
    /// No beat for `silent_after` intervals: the main process is presumed dead.
    Silent,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Alive => "ALIVE",
            Health::Stuck => "STUCK",
            Health::Silent => "SILENT",
        })
    }
}

/// What a monitor knows of one reporter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReporterState {
    /// The reporter's id.
    pub id: String,
    /// Its host.
    pub host: String,
    /// Its main process's pid.
    pub pid: u32,
    /// The last sequence number seen.
    pub seq: u64,
    /// The last progress value seen.
    pub progress: u64,
    /// The verdict now.
    pub health: Health,
    /// Time since the last beat.
    pub since_last_beat: Duration,
}

/// A change of a reporter's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The reporter's id.
    pub id: String,
    /// The health before.
    pub from: Health,
    /// The health now.
    pub to: Health,
}

#[derive(Debug)]
struct Tracked {
    beat: Beat,
    last_seen: Instant,
    progress_moved: Instant,
    interval: Duration,
    health: Health,
}

/// Watches reporters (see the [module](self) documentation).
#[derive(Debug)]
pub struct Monitor {
    socket: Option<UdpSocket>,
    silent_after: u32,
    stuck_after: u32,
    tracked: HashMap<String, Tracked>,
    alerts: Vec<Alert>,
    beats: u64,
}

impl Monitor {
    /// A monitor receiving UDP beats on `addr` (`"0.0.0.0:9999"`, or
    /// `"127.0.0.1:0"` for any free port: see
    /// [`local_addr`](Monitor::local_addr)).
    pub fn udp(addr: impl ToSocketAddrs) -> Result<Monitor, HeartbeatError> {
        let socket = UdpSocket::bind(addr).map_err(io_error("bind the monitor's UDP socket"))?;
        enlarge_receive_buffer(&socket);
        Ok(Monitor {
            socket: Some(socket),
            ..Monitor::without_socket()
        })
    }

    /// A monitor that only reads databases (see [`read_database`](Monitor::read_database)).
    pub fn without_socket() -> Monitor {
        Monitor {
            socket: None,
            silent_after: DEFAULT_SILENT_AFTER,
            stuck_after: DEFAULT_STUCK_AFTER,
            tracked: HashMap::new(),
            alerts: Vec::new(),
            beats: 0,
        }
    }

    /// Counts a reporter silent after `intervals` missed intervals (at least 1).
    pub fn silent_after(mut self, intervals: u32) -> Monitor {
        self.silent_after = intervals.max(1);
        self
    }

    /// Counts a reporter stuck after `intervals` intervals without progress
    /// (at least 1).
    pub fn stuck_after(mut self, intervals: u32) -> Monitor {
        self.stuck_after = intervals.max(1);
        self
    }

    /// The UDP address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, HeartbeatError> {
        match &self.socket {
            Some(socket) => socket
                .local_addr()
                .map_err(io_error("read the monitor's address")),
            None => Err(HeartbeatError::NoSink),
        }
    }

    /// Receives beats for `duration`, then re-judges every reporter.
    /// `Duration::MAX` receives for ever.
    pub fn poll(&mut self, duration: Duration) -> Result<(), HeartbeatError> {
        // `None`: no end (`Duration::MAX`, or past the end of the clock).
        let until = Instant::now().checked_add(duration);
        let mut buf = [0u8; 2048];
        if let Some(socket) = self.socket.take() {
            let result = loop {
                let left = until.map(|u| u.saturating_duration_since(Instant::now()));
                if left.is_some_and(|l| l.is_zero()) {
                    break Ok(());
                }
                socket
                    .set_read_timeout(left)
                    .map_err(io_error("set the monitor's timeout"))?;
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        if let Ok(beat) = serde_json::from_slice::<Beat>(&buf[..n]) {
                            self.record(beat, Instant::now());
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(io_error("receive heartbeats")(e)),
                }
            };
            self.socket = Some(socket);
            result?;
        } else {
            std::thread::sleep(duration);
        }
        self.judge(Instant::now());
        Ok(())
    }

    /// Takes in one beat received at `now` (from any transport).
    pub fn record(&mut self, beat: Beat, now: Instant) {
        self.beats += 1;
        let interval = Duration::from_millis(beat.interval_ms.max(1));
        match self.tracked.get_mut(&beat.id) {
            Some(t) => {
                if beat.seq < t.beat.seq && beat.pid == t.beat.pid {
                    return; // reordered datagram: older news
                }
                if beat.progress != t.beat.progress || beat.pid != t.beat.pid {
                    t.progress_moved = now;
                }
                t.beat = beat;
                t.last_seen = now;
                t.interval = interval;
            }
            None => {
                self.tracked.insert(
                    beat.id.clone(),
                    Tracked {
                        beat,
                        last_seen: now,
                        progress_moved: now,
                        interval,
                        health: Health::Alive,
                    },
                );
            }
        }
    }

    /// Re-judges every reporter as of `now`, recording changes as alerts.
    pub fn judge(&mut self, now: Instant) {
        for (id, t) in &mut self.tracked {
            // Saturating: the interval comes from the beat (the network).
            let silent = now.saturating_duration_since(t.last_seen)
                > t.interval.saturating_mul(self.silent_after);
            let stuck = now.saturating_duration_since(t.progress_moved)
                > t.interval.saturating_mul(self.stuck_after);
            let health = if silent {
                Health::Silent
            } else if stuck {
                Health::Stuck
            } else {
                Health::Alive
            };
            if health != t.health {
                self.alerts.push(Alert {
                    id: id.clone(),
                    from: t.health,
                    to: health,
                });
                t.health = health;
            }
        }
    }

    /// Every reporter seen, sorted by id.
    pub fn reporters(&self) -> Vec<ReporterState> {
        let now = Instant::now();
        let mut all: Vec<ReporterState> = self
            .tracked
            .values()
            .map(|t| ReporterState {
                id: t.beat.id.clone(),
                host: t.beat.host.clone(),
                pid: t.beat.pid,
                seq: t.beat.seq,
                progress: t.beat.progress,
                health: t.health,
                since_last_beat: now.saturating_duration_since(t.last_seen),
            })
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// The health of reporter `id`, if seen.
    pub fn health(&self, id: &str) -> Option<Health> {
        self.tracked.get(id).map(|t| t.health)
    }

    /// How many reporters are in each state: (alive, stuck, silent).
    pub fn counts(&self) -> (usize, usize, usize) {
        self.tracked
            .values()
            .fold((0, 0, 0), |(a, st, si), t| match t.health {
                Health::Alive => (a + 1, st, si),
                Health::Stuck => (a, st + 1, si),
                Health::Silent => (a, st, si + 1),
            })
    }

    /// Takes the health changes recorded since the last call.
    pub fn take_alerts(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.alerts)
    }

    /// Beats received so far.
    pub fn beats_received(&self) -> u64 {
        self.beats
    }

    /// Reads the `heartbeats` table of a reporter's SQLite file: each row
    /// counts as a beat seen at the time it was written (by the wall clock,
    /// so the writer's and this machine's clocks must agree), then re-judges.
    #[cfg(feature = "sqlite")]
    pub fn read_database(&mut self, path: impl AsRef<Path>) -> Result<(), HeartbeatError> {
        let path = path.as_ref();
        let db = open_database(path)?;
        let database = |source| HeartbeatError::Database {
            path: path.to_path_buf(),
            source,
        };
        let mut query = db
            .prepare("SELECT id, host, pid, seq, progress, sent_at_ms, interval_ms FROM heartbeats")
            .map_err(database)?;
        let rows = query
            .query_map([], |r| {
                Ok(Beat {
                    id: r.get(0)?,
                    host: r.get(1)?,
                    pid: r.get(2)?,
                    seq: r.get::<_, i64>(3)? as u64,
                    progress: r.get::<_, i64>(4)? as u64,
                    sent_at_ms: r.get::<_, i64>(5)? as u64,
                    interval_ms: r.get::<_, i64>(6)? as u64,
                })
            })
            .map_err(database)?;
        let now = Instant::now();
        let now_ms = unix_ms();
        for beat in rows {
            let beat = beat.map_err(database)?;
            let age = Duration::from_millis(now_ms.saturating_sub(beat.sent_at_ms));
            let seen = self.tracked.get(&beat.id).map(|t| (t.beat.seq, t.beat.pid));
            if seen == Some((beat.seq, beat.pid)) {
                continue; // nothing new
            }
            self.record(beat, now.checked_sub(age).unwrap_or(now));
        }
        self.judge(now);
        Ok(())
    }
}

/// A monitor of many reporters receives bursts; the default buffer (about
/// 200 KiB) drops datagrams, which would read as false silence.
fn enlarge_receive_buffer(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 8 << 20;
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: a valid socket and a pointer to an int of the given size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&size as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

#[cfg(feature = "sqlite")]
fn open_database(path: &Path) -> Result<rusqlite::Connection, HeartbeatError> {
    let database = |source| HeartbeatError::Database {
        path: path.to_path_buf(),
        source,
    };
    let db = rusqlite::Connection::open(path).map_err(database)?;
    db.busy_timeout(Duration::from_secs(2)).map_err(database)?;
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS heartbeats (
             id TEXT PRIMARY KEY,
             host TEXT NOT NULL,
             pid INTEGER NOT NULL,
             seq INTEGER NOT NULL,
             progress INTEGER NOT NULL,
             sent_at_ms INTEGER NOT NULL,
             interval_ms INTEGER NOT NULL
         )",
    )
    .map_err(database)?;
    Ok(db)
}

#[cfg(feature = "sqlite")]
fn upsert(db: &rusqlite::Connection, beat: &Beat) -> rusqlite::Result<usize> {
    db.execute(
        "INSERT INTO heartbeats (id, host, pid, seq, progress, sent_at_ms, interval_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(id) DO UPDATE SET host = ?2, pid = ?3, seq = ?4, progress = ?5,
             sent_at_ms = ?6, interval_ms = ?7",
        rusqlite::params![
            beat.id,
            beat.host,
            beat.pid,
            beat.seq as i64,
            beat.progress as i64,
            beat.sent_at_ms as i64,
            beat.interval_ms as i64
        ],
    )
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// This machine's name (`gethostname(2)`), or "unknown".
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: a writable buffer of the given length.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
