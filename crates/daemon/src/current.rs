//! Python's `current_process()`, `parent_process()` and
//! `active_children()`: what a process knows of itself, of the process that
//! started it and of the children it started.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use shm::pid::Pid;

use crate::child::poll_ms_until;
use crate::process::naming;
use crate::{lifetime, sys};

/// The name of the main process (one not started by
/// [`Process`](crate::Process)), as in Python.
pub const MAIN_PROCESS_NAME: &str = "MainProcess";

/// A process's pid, name, daemon flag and identity numbers: what
/// [`current_process`] says of this process and [`active_children`] of each
/// running child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pid: Pid,
    name: String,
    daemon: bool,
    identity: Vec<u64>,
}

impl ProcessInfo {
    /// The process id (Python's `pid`).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The name (Python's `name`): [`MAIN_PROCESS_NAME`] for the main
    /// process; for a child, the one given with
    /// [`Process::name`](crate::Process::name), or `Process-N` /
    /// `Process-N:M` (see there).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the process was started as a daemon (Python's `daemon`; see
    /// [`Process::daemon`](crate::Process::daemon)).
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Python's `_identity`: the process's numbers from the main process
    /// down. Empty for the main process, `[2]` for the second child it
    /// started, `[2, 1]` for that child's first child; a default name is
    /// `Process-` and these numbers joined by `:`.
    pub fn identity(&self) -> &[u64] {
        &self.identity
    }
}

/// The numbers of an identity kept as text (`"2:1"`).
fn identity_numbers(text: &str) -> Vec<u64> {
    text.split(':').filter_map(|n| n.parse().ok()).collect()
}

/// This process (Python's `multiprocessing.current_process()`): its pid,
/// its name ([`MAIN_PROCESS_NAME`] in the main process), whether it is a
/// daemon child, and its identity numbers.
///
/// A process forked by other means than [`Process::start`](crate::Process::start)
/// (a raw `fork(2)`) has a pid of its own but, as after `os.fork()` in Python,
/// the name and numbers of the process it was forked from.
///
/// # Example
///
/// ```
/// use daemon::{current_process, Process, MAIN_PROCESS_NAME};
///
/// let me = current_process();
/// assert_eq!(me.name(), MAIN_PROCESS_NAME);
/// assert_eq!(me.pid(), std::process::id());
/// assert!(me.identity().is_empty());
///
/// let child = Process::new(|| {
///     let me = current_process();
///     (me.name().to_string(), me.pid().get(), me.identity().to_vec())
/// })
/// .start()?;
/// let pid = child.pid();
/// let (name, child_pid, identity) = child.join()?;
/// assert_eq!(child_pid, pid.get());
/// assert_eq!(name, format!("Process-{}", identity[0]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn current_process() -> ProcessInfo {
    let naming = naming();
    ProcessInfo {
        pid: sys::getpid(),
        name: naming
            .name
            .clone()
            .unwrap_or_else(|| MAIN_PROCESS_NAME.to_string()),
        daemon: lifetime::is_daemon_process(),
        identity: identity_numbers(&naming.identity),
    }
}

/// The process that started this one (Python's `parent_process()`), as
/// [`parent_process`] gives it: pid, name, and whether that very process
/// still runs.
#[derive(Debug)]
pub struct ParentProcess {
    pid: Pid,
    name: String,
    sentinel: Sentinel,
}

/// The parent's pidfd, as far as [`parent_process`] could open it.
#[derive(Debug)]
enum Sentinel {
    /// It names the parent, which ran when it was opened.
    Open(OwnedFd),
    /// The parent had already ended.
    Ended,
    /// The parent ran, but no pidfd could be opened (out of descriptors).
    Unavailable(io::Error),
}

impl ParentProcess {
    /// The parent's process id (Python's `pid`). Once the parent has ended,
    /// the number may belong to another process: ask
    /// [`is_alive`](ParentProcess::is_alive), never the pid, whether it
    /// runs.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The parent's name (Python's `name`): [`MAIN_PROCESS_NAME`], or the
    /// name of the child of [`Process`](crate::Process) it is.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the parent still runs (Python's `is_alive()`): true exactly
    /// while that very process runs, never for another process that took
    /// its pid since.
    ///
    /// It asks whether this process's parent is still that pid
    /// (`getppid(2)`): when a process ends, the kernel hands its children
    /// to another (`init`, or a subreaper) before its pid can be reused,
    /// and no process that starts later can be given them.
    pub fn is_alive(&self) -> bool {
        sys::getppid() == Some(self.pid)
    }

    /// Python's `parent_process().sentinel`: a descriptor (a pidfd of the
    /// parent, opened by [`parent_process`]) that polls readable once the
    /// parent has ended, for `poll(2)`, `epoll(7)` or `queue::wait`.
    /// `None` if the parent had already ended when `parent_process` was
    /// called (or no descriptor was free then). Reading from it or closing
    /// it is not allowed; it is closed with the `ParentProcess`.
    pub fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        match &self.sentinel {
            Sentinel::Open(fd) => Some(fd.as_fd()),
            _ => None,
        }
    }

    /// Waits until the parent has ended, for at most `timeout`: `Ok(true)`
    /// once it has (at once if it had already), `Ok(false)` once `timeout`
    /// has passed with the parent running (Python's
    /// `parent_process().join(timeout)`, which says it by `is_alive()`).
    /// Never returns `false` before `timeout` has passed.
    ///
    /// Wakes when the parent ends (it polls the
    /// [`sentinel`](ParentProcess::sentinel)), not by looking at intervals.
    /// Errors are those of `poll(2)` (interruptions are retried), or the
    /// one that kept [`parent_process`] from opening the sentinel while the
    /// parent ran.
    pub fn wait_timeout(&self, timeout: Duration) -> io::Result<bool> {
        let fd = match &self.sentinel {
            Sentinel::Open(fd) => fd.as_fd(),
            Sentinel::Ended => return Ok(true),
            Sentinel::Unavailable(_) if !self.is_alive() => return Ok(true),
            Sentinel::Unavailable(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("no pidfd of the parent process to wait on: {e}"),
                ))
            }
        };
        // A timeout past the clock's end: no limit.
        let deadline = Instant::now().checked_add(timeout);
        loop {
            match sys::poll_readable(fd, None, deadline.map(poll_ms_until)) {
                Ok((true, _)) => return Ok(true),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }
}

/// The process that started this one through
/// [`Process::start`](crate::Process::start) (Python's
/// `multiprocessing.parent_process()`); `None` in the main process, and in
/// a process forked by other means.
///
/// The [`ParentProcess`] says whether that very process still runs
/// ([`is_alive`](ParentProcess::is_alive), which a new process with the
/// same pid does not fool), and holds a pidfd of it, opened here, to wait
/// on ([`sentinel`](ParentProcess::sentinel),
/// [`wait_timeout`](ParentProcess::wait_timeout)). The pidfd is checked to
/// be the parent's: it is kept only if this process's parent is still that
/// pid once it is open.
///
/// # Example
///
/// ```
/// use daemon::{current_process, parent_process, Process, MAIN_PROCESS_NAME};
///
/// assert!(parent_process().is_none(), "the main process has no parent here");
///
/// let child = Process::new(|| {
///     let parent = parent_process().expect("started by Process");
///     (parent.pid().get(), parent.name().to_string(), parent.is_alive())
/// })
/// .start()?;
/// let (pid, name, alive) = child.join()?;
/// assert_eq!(pid, std::process::id());
/// assert_eq!(name, MAIN_PROCESS_NAME);
/// assert!(alive);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    let (pid, name) = {
        let naming = naming();
        let parent = naming.parent.as_ref()?;
        if naming.started_as != Some(sys::getpid()) {
            // Forked by other means from a child of `Process`.
            return None;
        }
        let name = parent
            .name
            .clone()
            .unwrap_or_else(|| MAIN_PROCESS_NAME.to_string());
        (parent.pid, name)
    };
    let opened = sys::pidfd_open(pid);
    // Checked once the pidfd is open: if the parent still is our parent
    // now, it ran when the pidfd was opened, so the pidfd names it (and
    // not a process that took its pid since).
    let sentinel = match opened {
        _ if sys::getppid() != Some(pid) => Sentinel::Ended,
        Ok(fd) => Sentinel::Open(fd),
        Err(e) => Sentinel::Unavailable(e),
    };
    Some(ParentProcess {
        pid,
        name,
        sentinel,
    })
}

/// The children this process started through
/// [`Process::start`](crate::Process::start) that still run (Python's
/// `multiprocessing.active_children()`), in the order they were started.
///
/// Unlike Python's, it collects nothing: a child that has ended is left
/// out, but its exit status stays for its [`Child`](crate::Child) handle
/// (so [`join`](crate::Child::join) still gives its result or error). A
/// child whose handle was dropped stays a zombie until this process exits.
/// A child that ended but was not yet joined counts as ended.
///
/// # Example
///
/// ```
/// use daemon::{active_children, Process};
///
/// let (tx, rx) = std::sync::mpsc::channel::<()>(); // keeps `waiting` running
/// let waiting = Process::new(move || { let _ = rx.recv(); }).name("waiting").start()?;
/// let running = active_children();
/// assert!(running.iter().any(|c| c.pid() == waiting.pid() && c.name() == "waiting"));
/// waiting.kill()?;
/// assert!(waiting.join().is_err(), "killed");
/// assert!(active_children().iter().all(|c| c.name() != "waiting"));
/// # drop(tx);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn active_children() -> Vec<ProcessInfo> {
    let me = sys::getpid();
    let identity = identity_numbers(&naming().identity);
    // Held while looking: a child in the registry is not collected yet (its
    // `Child` collects it under this lock), so its pid is still its own.
    let children = lifetime::registry();
    children
        .iter()
        .filter(|c| c.parent == me && !sys::exited_uncollected(c.pid))
        .map(|c| ProcessInfo {
            pid: c.pid,
            name: c.name.clone(),
            daemon: c.daemon,
            identity: identity.iter().copied().chain([c.number]).collect(),
        })
        .collect()
}
