//! Child processes, the `multiprocessing` way.
//!
//! - [`Process`]: a closure to run in a forked child (Python's
//!   `Process(target=...)`); [`Process::start`] gives a [`Child`].
//! - [`Process::try_new`]: a closure that returns `Result<T, E>` and may
//!   use `?` (Python's target raising an exception): an `Err` comes back
//!   from [`join`](Child::join) as [`JoinError::Failed`], with the error's
//!   message and the messages of its `source()` chain ([`ChildError`] says
//!   which error types).
//! - [`Child`]: `pid`, [`name`](Child::name) (Python's `name`: the one
//!   given, or `Process-N`; in every [`JoinError`] and the child's panic
//!   report), [`join`](Child::join) (the closure's return value,
//!   sent back over a socket pair, or a [`JoinError`] saying it panicked,
//!   exited with a code or was killed), [`join_timeout`](Child::join_timeout),
//!   [`is_alive`](Child::is_alive), [`exit_code`](Child::exit_code)
//!   (Python's `exitcode`), [`terminate`](Child::terminate) and
//!   [`kill`](Child::kill), [`is_daemon`](Child::is_daemon) (Python's
//!   `daemon`) and [`sentinel`](Child::sentinel) (Python's `sentinel`: the
//!   child's pidfd).
//! - [`wait_first`]: wait for the first of several children to end
//!   (Python's `multiprocessing.connection.wait` on sentinels).
//! - [`exit`]: leave a child process with a code, flushing its output but
//!   running none of the parent's exit handlers.
//! - [`current_process`], [`parent_process`] and [`active_children`]
//!   (Python's functions of those names): this process's pid, name
//!   ([`MAIN_PROCESS_NAME`] in the main process) and identity numbers
//!   ([`ProcessInfo`]); the process that started it, with an
//!   [`is_alive`](ParentProcess::is_alive) that a new process taking its
//!   pid does not fool ([`ParentProcess`]); the children it started that
//!   still run.
//! - Python's lifetime rule ([`Process::daemon`]): when the main code ends,
//!   daemon children are terminated (SIGTERM, then SIGKILL after
//!   [`DAEMON_GRACE`]) and the others are joined; a daemon also dies at once
//!   if its parent is killed.
//! - A long-lived child closes what it inherited and does not need
//!   ([`Process::close_descriptors`]), so that pipes, listening sockets and
//!   connections this process closes are really closed.
//!
//! - [`ForkServer`]: Python's `forkserver` start method. A single-threaded
//!   server forked early in `main` forks the children, so that locks held
//!   by this process's later threads are never held in them; the task is a
//!   plain `fn` and a `serde` argument, [`ForkServer::spawn`] gives a
//!   [`ServedChild`]. [`Process::start`] itself still forks from a
//!   multithreaded process, but says so once on stderr
//!   ([`MULTITHREADED_WARNING`]; [`Process::threads_ok`] and
//!   [`THREADS_OK_ENV`] silence it). Python's third start method, `spawn`
//!   (exec a fresh interpreter), has no counterpart: a Rust program cannot
//!   find a closure or `fn` in a freshly exec'ed image.
//!
//! Heartbeats (报活), a daemon that reports "the main process is alive" and
//! a monitor that notices silence, are built on this crate in the
//! `heartbeat` crate.
//!
//! The seed lesson asks how a parent gets a child's result, since the two
//! share no memory. Its answer is a socket; here the closure's return value
//! (any `serde` type, see [`Returnable`]) travels back over a
//! `socketpair(2)`. The encoding is `postcard`, written without serde's
//! derive: this crate builds no proc-macro. To return a type of your own,
//! derive its serde traits (see [`serde`], re-exported here).
//!
//! # Example
//!
//! ```
//! use daemon::{JoinError, Process};
//!
//! let ok = Process::new(|| "forty-two".len()).start()?;
//! assert_eq!(ok.join()?, 9);
//!
//! let failing = Process::new(|| -> u8 { panic!("no tickets left") }).start()?;
//! match failing.join() {
//!     Err(JoinError::Panicked { message, .. }) => assert_eq!(message, "no tickets left"),
//!     other => panic!("unexpected: {other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_code)]

// Code addresses sent to the fork server: `unsafe` argued there.
#[allow(unsafe_code)]
mod call;
mod child;
mod current;
mod descriptors;
mod forkserver;
mod lifetime;
mod output;
mod process;
// The OS layer: with `call`, the only module with `unsafe` code, each
// block argued there.
#[allow(unsafe_code)]
mod sys;
mod threads;
mod wire;

pub use child::{wait_first, Child};
pub use current::{
    active_children, current_process, parent_process, ParentProcess, ProcessInfo, MAIN_PROCESS_NAME,
};
pub use forkserver::{ForkServer, ServedChild};
pub use lifetime::{is_daemon_process, DAEMON_GRACE};
pub use output::{ChildError, Fallible, Returnable};
pub use process::{Process, PROCESS_CRASH_POINTS};
/// The `serde` (version 1) whose traits a child's result implements
/// ([`Returnable`]), re-exported: returning std types (numbers, strings,
/// `Vec`s, maps, tuples, `Option`s) needs no `serde` dependency of yours.
///
/// To return a struct or enum of your own, derive `Serialize` and
/// `Deserialize` for it. The derive macros come with serde's `derive`
/// feature, which this crate leaves off (it would build `syn` and
/// `serde_derive` for every user); add to your `Cargo.toml`
///
/// ```toml
/// serde = { version = "1", features = ["derive"] }
/// ```
///
/// and write `#[derive(serde::Serialize, serde::Deserialize)]`. Cargo
/// builds one serde with that feature, for you and for this crate, so the
/// derives are also reachable through this re-export; to name serde only
/// through it, add `#[serde(crate = "daemon::serde")]`:
///
/// ```
/// #[derive(Debug, PartialEq, daemon::serde::Serialize, daemon::serde::Deserialize)]
/// #[serde(crate = "daemon::serde")]
/// struct Ticket {
///     seat: u32,
///     holder: String,
/// }
///
/// let child = daemon::Process::new(|| Ticket { seat: 7, holder: "Ada".into() }).start()?;
/// assert_eq!(child.join()?, Ticket { seat: 7, holder: "Ada".into() });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub use serde;
pub use threads::{thread_count, MULTITHREADED_WARNING, THREADS_OK_ENV};
pub use wire::{FAILED_EXIT_CODE, PANIC_EXIT_CODE, UNSENDABLE_RESULT_EXIT_CODE};

use shm::pid::Pid;
use std::io::{self, Write};
use std::time::Duration;

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

impl ExitStatus {
    /// Python's `exitcode`: the exit code, or minus the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(signal) => -signal,
        }
    }
}

/// Starting a process failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A daemon process asked for a non-daemon child: it could not wait
    /// for it, since a daemon is terminated when its parent's main code ends.
    #[error(
        "a daemon process may start only daemon children (use .daemon(true)), which die with it"
    )]
    DaemonChild,
    /// A system call failed.
    #[error("{op} failed while starting a child process: {source}")]
    Os {
        /// The call.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// Joining a child gave no value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The closure of a [`Process::try_new`] returned an `Err`: its
    /// `Display`, and its sources' (see [`ChildError`]). The message reads
    /// `process "worker-3" (pid 123) failed: ` and the error's `Display`,
    /// then each cause after `": "`.
    #[error("process {name:?} (pid {pid}) failed: {}", with_causes(.message, .causes))]
    Failed {
        /// The child's pid.
        pid: Pid,
        /// The child's name ([`Child::name`]).
        name: String,
        /// The error's `Display`.
        message: String,
        /// The `Display` of its `source()`, of that one's, and so on (empty
        /// for a `String` error); at most 64, then a mark saying the chain
        /// was cut (a chain that goes round would never end).
        causes: Vec<String>,
    },
    /// The closure panicked.
    #[error("process {name:?} (pid {pid}) panicked: {message}")]
    Panicked {
        /// The child's pid.
        pid: Pid,
        /// The child's name ([`Child::name`]).
        name: String,
        /// The panic message.
        message: String,
    },
    /// The child exited with a code before returning a value.
    #[error("process {name:?} (pid {pid}) exited with code {code} without returning a value")]
    Exited {
        /// The child's pid.
        pid: Pid,
        /// The child's name ([`Child::name`]).
        name: String,
        /// Its exit code.
        code: i32,
    },
    /// The child was killed by a signal.
    #[error("process {name:?} (pid {pid}) was killed by signal {signal}")]
    Signaled {
        /// The child's pid.
        pid: Pid,
        /// The child's name ([`Child::name`]).
        name: String,
        /// The signal number.
        signal: i32,
    },
    /// The child sent something that is not a value of the expected type.
    #[error("process {name:?} (pid {pid}) sent an unreadable result: {reason}")]
    BadResult {
        /// The child's pid.
        pid: Pid,
        /// The child's name ([`Child::name`]).
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// `join_timeout` gave up; the child still runs.
    #[error("process {name:?} (pid {pid}) still running after {timeout:?}")]
    Timeout {
        /// The child's pid.
        pid: Pid,
        /// The child's name ([`Child::name`]).
        name: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The child's result was already taken.
    #[error("process {name:?} (pid {pid}) was already joined")]
    AlreadyJoined {
        /// The child's pid.
        pid: Pid,
        /// The child's name ([`Child::name`]).
        name: String,
    },
    /// A system call failed while waiting.
    #[error("{op} failed while joining a child: {source}")]
    Os {
        /// The call.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// `message: cause: cause ...`
fn with_causes(message: &str, causes: &[String]) -> String {
    std::iter::once(message)
        .chain(causes.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(": ")
}

/// Ends the calling process with `code` after flushing stdout and stderr,
/// without running exit handlers or destructors (`_exit(2)`).
///
/// Use it to leave a forked child with a specific exit code; unlike
/// `std::process::exit`, it runs nothing the parent registered.
pub fn exit(code: i32) -> ! {
    // stderr is unbuffered; only stdout can hold a partial line.
    let _ = io::stdout().flush();
    sys::exit_now(code)
}
