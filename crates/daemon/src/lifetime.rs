//! Python's exit rule for child processes: when the main code ends, daemon
//! children are terminated, then the others are joined.
//!
//! Every child [`Process::start`](crate::Process::start) makes is recorded
//! here until it is collected. The first start installs an `atexit(3)`
//! handler; when this process leaves through `exit` (returning from `main`,
//! or `std::process::exit`) it
//!
//! 1. sends SIGTERM to every daemon child still running,
//! 2. gives them [`DAEMON_GRACE`] to go, then sends SIGKILL to the rest
//!    (Python waits for ever on a daemon that ignores SIGTERM),
//! 3. waits for every non-daemon child to finish.
//!
//! This is the order that makes the lesson's `fun2` (a daemon printing
//! every 0.5 s) print only twice while `fun` (not a daemon) still finishes.
//!
//! A process that dies without `exit` (killed, or `_exit`) runs no handler;
//! its daemon children die anyway, by the parent-death signal each one set
//! when it started.

use shm::pid::Pid;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::sys;

/// How long daemon children get between SIGTERM and SIGKILL when the main
/// code ends.
pub const DAEMON_GRACE: Duration = Duration::from_millis(500);

/// A started, not yet collected child.
#[derive(Debug)]
pub(crate) struct Registered {
    pub(crate) pid: Pid,
    pub(crate) daemon: bool,
    /// The process that started it: only that process ends or joins it.
    pub(crate) parent: Pid,
    /// Its name ([`Child::name`](crate::Child::name)).
    pub(crate) name: String,
    /// Its number among the children its parent started (the last of its
    /// identity numbers, see [`ProcessInfo::identity`](crate::ProcessInfo::identity)).
    pub(crate) number: u64,
}

static CHILDREN: Mutex<Vec<Registered>> = Mutex::new(Vec::new());
static INSTALL_HANDLER: Once = Once::new();
/// True in a process started as a daemon (it may start only daemons).
static IS_DAEMON: AtomicBool = AtomicBool::new(false);

/// Whether this process was started as a daemon child.
pub fn is_daemon_process() -> bool {
    IS_DAEMON.load(Ordering::Relaxed)
}

pub(crate) fn mark_daemon_process() {
    IS_DAEMON.store(true, Ordering::Relaxed);
}

/// The registry, locked. Held across `fork` by the starting thread, so the
/// child inherits it unlocked-by-its-own-guard and can reset it.
pub(crate) fn registry() -> MutexGuard<'static, Vec<Registered>> {
    INSTALL_HANDLER.call_once(|| {
        // A failure (no room) only loses the exit rule.
        sys::at_exit(at_exit);
    });
    CHILDREN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Forgets `pid`, collected by its `Child`.
pub(crate) fn forget(registry: &mut Vec<Registered>, pid: Pid) {
    registry.retain(|r| r.pid != pid);
}

extern "C" fn at_exit() {
    let mut children = std::mem::take(&mut *CHILDREN.lock().unwrap_or_else(|p| p.into_inner()));
    // A child forked by other means (not `Process::start`, which clears the
    // registry) inherits a copy of it; if that child leaves through `exit`,
    // it must not end or join its parent's children.
    let me = sys::getpid();
    children.retain(|c| c.parent == me);
    end_children(&children, DAEMON_GRACE);
}

/// Terminates the daemons (SIGTERM, then SIGKILL after `grace`) and joins
/// the others, in Python's order.
fn end_children(children: &[Registered], grace: Duration) {
    let daemons: Vec<Pid> = children
        .iter()
        .filter(|c| c.daemon)
        .map(|c| c.pid)
        .collect();
    for &pid in &daemons {
        // An uncollected child of ours: the pid cannot be reused.
        let _ = sys::kill(pid, Signal::TERM);
    }
    // `None`: no limit (a grace past the end of the clock).
    let deadline = Instant::now().checked_add(grace);
    let mut left: Vec<Pid> = daemons;
    while !left.is_empty() && deadline.is_none_or(|d| Instant::now() < d) {
        left.retain(|&pid| !collect(pid, false));
        if !left.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    for &pid in &left {
        // As above; it ignored SIGTERM.
        let _ = sys::kill(pid, Signal::KILL);
        collect(pid, true);
    }
    for child in children.iter().filter(|c| !c.daemon) {
        collect(child.pid, true);
    }
}

/// `waitpid(pid)`, waiting only with `block`; true once the child is
/// collected (or gone).
fn collect(pid: Pid, block: bool) -> bool {
    loop {
        match sys::waitpid(pid, block) {
            Ok(collected) => return collected.is_some(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}
