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
//!   missed beats (no beat for `silent_after` intervals and one of slack)
//!   and [`Health::Stuck`] when its progress has not moved for
//!   `stuck_after` intervals.
//!   A reporter is one start of one `id` on one `host`: two processes
//!   reporting under one id are watched apart (so either one's death is
//!   SILENT, over UDP and in a database), a restart is seen at its first beat, and a beat that no start
//!   could have sent (an interval other than its own, a `seq` leap further
//!   than the time passed allows) is rejected. Without a key, beats carry
//!   no authentication: anyone who can reach the monitor can forge a *new*
//!   reporter, or replay a captured beat. With one (see [Signed
//!   beats](crate#signed-beats)), only holders of the key can.
//!   Its memory is bounded ([`Monitor::max_reporters`], default
//!   [`DEFAULT_MAX_REPORTERS`], each of an id of at most [`MAX_ID_BYTES`]
//!   and a host name of at most [`MAX_HOST_BYTES`]: longer beats are
//!   rejected, counted in [`Monitor::beats_rejected`], by reason in
//!   [`Monitor::rejections`]): SILENT reporters, once reported, are
//!   forgotten ([`Monitor::forget_after`]), and so is one named to
//!   [`Monitor::forget`].
//!   Its receive buffer decides how large a burst it survives: it asks for
//!   8 MiB, which without `CAP_NET_ADMIN` stays within `net.core.rmem_max`
//!   (212,992 bytes on an untuned kernel); [`Monitor::receive_buffer`] says
//!   what it got. Reporters beat at a random phase, so that those started
//!   together spread over the interval. A beat counts from when the kernel
//!   received it, not from when the monitor read it (see [`Monitor::poll`]).
//!
//! A beat is one JSON object, `{"id", "host", "pid", "seq", "progress",
//! "sent_at_ms", "interval_ms", "instance"}`, in one UDP datagram, or one
//! row of the table `heartbeats` (one per start: keyed by `id`, `host` and
//! `instance`; a table keyed by `id` alone, made by an older version, is
//! re-keyed at a reporter's first open, and older reporters can no longer
//! write it; a reporter deletes, after its first write, the rows of its
//! earlier starts whose main is gone). `instance` is random per
//! start of a reporter, so a restart (whose `seq` begins again at 0, maybe
//! under the same pid) is told from the reporter before it.
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
//!
//! # Signed beats
//!
//! On a network anyone can send a UDP datagram, and a forged beat hides a
//! dead process. A [`Key`] (HMAC-SHA256), read from a file that only its
//! owner may read ([`Key::from_file`] refuses any other; there is no way to
//! give a key on a command line) or made by [`Key::generate_file`], is
//! given to every reporter ([`Reporter::key`]) and to the monitor
//! ([`Monitor::key`]). Each UDP beat then carries `mac`, the MAC of its
//! other fields in a fixed binary encoding (see [`Key::sign`]); the monitor
//! drops, and counts by reason in [`Monitor::rejections`], every beat that
//! is unsigned, whose MAC fails (forged, another key, a field changed),
//! whose `seq` is not past the last one taken in from its reporter start (a
//! replay), or whose `sent_at_ms` is further than
//! [`Monitor::max_clock_skew`] (30 s) from the monitor's clock (a replay
//! after the monitor restarted). Database rows are not signed: the file's
//! permissions protect them.
//!
//! ```
//! use heartbeat::{Health, Key, Monitor, Reporter};
//! use std::time::Duration;
//!
//! let dir = std::env::temp_dir().join(format!("procsync-doc-key-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("heartbeat.key");
//! let key = Key::generate_file(&path)?; // mode 0600, never over a file
//! let mut monitor = Monitor::udp("127.0.0.1:0")?.key(Key::from_file(&path)?);
//! let beat = Reporter::new("signed")
//!     .interval(Duration::from_millis(50))
//!     .udp(monitor.local_addr()?)
//!     .key(key)
//!     .start()?;
//! monitor.poll(Duration::from_millis(60))?;
//! assert_eq!(monitor.health("signed"), Some(Health::Alive));
//! assert_eq!(monitor.beats_rejected(), 0);
//! # drop(beat);
//! std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The reporting daemon's lifetime
//!
//! The daemon lives exactly as long as the process that started it:
//!
//! - It watches that process itself (a pidfd, polled with its interval
//!   timer), not the thread that started it: a reporter started from a
//!   short-lived thread keeps reporting while the process works on.
//!   ([`Reporter::start`] returns once the daemon watches; the parent-death
//!   signal, which follows the forking thread, is only kept on kernels
//!   without pidfds, before Linux 5.3.)
//! - It ignores SIGINT, SIGQUIT and SIGHUP, which a terminal (Ctrl-C) or
//!   a shell sends main's whole process group: main's answer decides, and
//!   the daemon ends with main if main dies of them.
//! - It sends no beat once main has ended: before each beat it looks at
//!   main's pidfd, so a main killed while its daemon was starting (waiting
//!   for a locked database) gets no beat after its death.
//! - It ends when the process ends (killed or not), when its main code ends
//!   (the `daemon` crate's exit rule), or when the process that started it
//!   drops the [`Heartbeat`]; a forked child dropping its copy does not stop
//!   it.
//! - It keeps none of the process's descriptors but stdin, stdout, stderr
//!   and its UDP socket, so the pipes, connections and listening sockets the
//!   process closes are closed.
//!
//! # Sinks do not wait for each other
//!
//! The daemon's beat loop sends the UDP datagram itself and leaves the
//! database row to a writer thread of the daemon (made after the fork), one
//! beat at a time: a database lock held by another writer delays only the
//! rows (a beat the writer could not pick up in time is skipped, counted in
//! [`ReporterStatus::database_skipped`]), never the UDP beats. Before each
//! write the writer checks that the file at the path is still the one it
//! opened (device and inode): one deleted, or replaced by a cleanup and a
//! new reporter, is opened afresh, counted in
//! [`ReporterStatus::database_reopens`] (writes into the old file succeed
//! and reach no monitor).
//!
//! # SQLite and threads
//!
//! The reporting daemon is a forked child that does not exec. A fork copies
//! only the calling thread: a lock another thread held at that instant
//! stays locked in the child for ever. SQLite has such locks (its memory
//! and open-file mutexes); a main process with a thread inside SQLite at the
//! fork left the daemon alive but never writing (3 starts in about 40).
//! So the SQLite sink is refused ([`HeartbeatError::ThreadedDatabase`])
//! when the starting process has more than one thread (counted in
//! `/proc/self/task` just before the fork; the starting thread cannot make
//! another meanwhile).
//!
//! Why not exec instead, as Python's `spawn` start method does? The daemon
//! would have to re-run this program's `main` up to a hook that every
//! program using the crate must call first, and would lose the closure-free
//! simplicity of `Reporter::start`; a clear error at start is honest and
//! costs a program only ordering: start the reporter before the first
//! thread (or the thread pool, or the async runtime), or report over UDP,
//! which takes no lock after the fork.
//!
//! For the same reason the starting process must not have a connection of
//! its own open to the heartbeat file at that moment: SQLite keeps, per
//! process, what each open file is locked for and which descriptors it has
//! yet to close, and the daemon would inherit that state stale (a lock it
//! believes held for ever). `Reporter::start` itself never opens the file in
//! the starting process: the daemon opens it, and `start` returns the error
//! if that open fails for any other reason than a lock (a lock only delays
//! the first write: the open is retried at every beat and counted in
//! [`Heartbeat::status`] while it fails).
//!
//! # Where code lives
//!
//! - `reporter`: [`Reporter`] and the reporting daemon's loop, [`Heartbeat`].
//! - `monitor`: [`Monitor`] and its verdicts ([`Health`], [`Alert`],
//!   [`ReporterState`]).
//! - `sinks`: where beats go, a UDP socket and (feature `sqlite`, on by
//!   default) the SQLite table.
//! - `wire`: the [`Beat`] and its JSON form.
//! - `auth`: the [`Key`], its file, and the MAC of a beat.
//! - `postgres` (feature `postgres`): `postgres::connect`, a connection
//!   to a PostgreSQL server by URL (password from the URL, `PGPASSWORD` or
//!   a password file; TLS through rustls when the URL asks).
//! - [`fleet`]: heartbeats at fleet scale: a [`fleet::Collector`] per
//!   machine, a [`fleet::Store`] (SQLite, or PostgreSQL with feature
//!   `postgres`), the [`fleet::FleetMonitor`], and (feature `metrics`)
//!   Prometheus `/metrics`. The programs are in `procsync-heartbeat-cli`.
//! - `sys`: every system call, each wrapped once.

#![deny(unsafe_code)]

// The guide's examples (docs/guide.md) are tested with this crate's.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/guide.md")]
struct GuideExamples;

mod auth;
pub mod fleet;
mod monitor;
#[cfg(feature = "postgres")]
pub mod postgres;
mod reporter;
mod sinks;
mod sys;
mod wire;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use auth::{Key, KeyProblem, MAX_KEY_FILE_BYTES, MIN_KEY_BYTES};
pub use monitor::{
    Alert, Health, Monitor, Rejections, ReporterState, DEFAULT_FORGET_AFTER,
    DEFAULT_MAX_CLOCK_SKEW, DEFAULT_MAX_INTERVAL, DEFAULT_MAX_REPORTERS,
};
pub use reporter::{Heartbeat, Reporter, ReporterStatus};
pub use sys::hostname;
pub use wire::Beat;

/// The lesson's interval: one report a minute. Most users want less.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// The shortest interval a reporter beats at: [`Reporter::interval`]
/// raises shorter ones to it.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// Missed intervals before a reporter counts as silent.
pub const DEFAULT_SILENT_AFTER: u32 = 3;
/// Intervals without progress before a reporter counts as stuck.
pub const DEFAULT_STUCK_AFTER: u32 = 3;

/// The longest reporter id, in bytes: with the longest host name
/// ([`MAX_HOST_BYTES`]) and every character escaped in JSON (6 bytes each),
/// a beat still fits one UDP datagram (65,507 bytes), which a monitor
/// receives whole.
pub const MAX_ID_BYTES: usize = 4096;
/// The longest host name a reporter sends, in bytes (Linux allows 64).
pub const MAX_HOST_BYTES: usize = 255;

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
    /// A PostgreSQL server could not be reached or used (feature
    /// `postgres`). `what` names the server by its URL without the
    /// password.
    #[cfg(feature = "postgres")]
    #[error("{what}: {source}")]
    Store {
        /// What was being done, and with which server.
        what: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Starting the reporting daemon failed.
    #[error("starting the heartbeat reporter: {0}")]
    Start(#[from] daemon::Error),
    /// A reporter's id ([`MAX_ID_BYTES`]) or host name ([`MAX_HOST_BYTES`])
    /// is too long for its beats to fit a datagram.
    #[error("the reporter's {what} is {len} bytes, more than the {max} a beat may carry")]
    TooLong {
        /// `"id"` or `"host name"`.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A reporter's id or host name holds a NUL byte: no store keeps one
    /// (PostgreSQL refuses it), and monitors reject such beats.
    #[error("the reporter's {what} holds a NUL byte, which no heartbeat store can keep")]
    NulByte {
        /// `"id"` or `"host name"`.
        what: &'static str,
    },
    /// The SQLite sink was asked for in a process with more than one
    /// thread (see [SQLite and threads](crate#sqlite-and-threads)).
    #[cfg(feature = "sqlite")]
    #[error(
        "the SQLite sink needs a process with one thread at start, this one has {threads}: \
         a SQLite lock held by another thread at the fork would stay locked for ever in the \
         reporting daemon. Start the reporter before any thread, or report over UDP"
    )]
    ThreadedDatabase {
        /// The threads this process had.
        threads: usize,
    },
    /// A reporter needs somewhere to report to.
    #[error("a reporter needs a UDP address or a database file to report to")]
    NoSink,
    /// A key file was refused (see [`Key::from_file`] and
    /// [`Key::generate_file`]).
    #[error("key file {path}: {problem}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        problem: KeyProblem,
    },
    /// The shared progress counter could not be made.
    #[error("shared memory for the progress counter: {0}")]
    Shared(#[from] shm::Error),
}

impl HeartbeatError {
    /// Whether this is a file (or its directory) that is not there, as
    /// [`Monitor::read_database`] of a deleted database returns.
    pub fn is_missing_file(&self) -> bool {
        matches!(self, HeartbeatError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

pub(crate) fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> HeartbeatError {
    let what = what.into();
    move |source| HeartbeatError::Io { what, source }
}
