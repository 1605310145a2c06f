//! Process ids without system calls on hot paths, and a liveness check that
//! counts zombies as dead.
//!
//! The lock and semaphore record *which process* holds them in shared memory
//! so that a waiter can tell when the holder died. Recording must not cost a
//! `getpid(2)` call on every acquisition, so [`current`] caches the pid and a
//! `pthread_atfork(3)` child handler forgets it in every forked child.
//!
//! All processes sharing a primitive must live in one pid namespace: a pid
//! from another namespace names a different process here.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

static CACHED_PID: AtomicU32 = AtomicU32::new(0);
static FORGET_IN_CHILDREN: Once = Once::new();

/// This process's id, from a cache after the first call.
///
/// Correct in children made by `fork(3)` (including `daemon::Process` and
/// `nix::unistd::fork`), which run the `pthread_atfork` handlers. A child
/// made by a raw `clone(2)` system call skips them and would see its
/// parent's pid; procsync never does that.
#[inline]
pub fn current() -> u32 {
    match CACHED_PID.load(Ordering::Relaxed) {
        0 => refresh(),
        pid => pid,
    }
}

#[cold]
fn refresh() -> u32 {
    FORGET_IN_CHILDREN.call_once(|| {
        extern "C" fn forget() {
            CACHED_PID.store(0, Ordering::Relaxed);
        }
        // SAFETY: registers a handler that only stores to an atomic, which is
        // async-signal-safe and so fine in a just-forked child.
        unsafe { libc::pthread_atfork(None, None, Some(forget)) };
    });
    // SAFETY: getpid has no preconditions and cannot fail.
    let pid = unsafe { libc::getpid() } as u32;
    CACHED_PID.store(pid, Ordering::Relaxed);
    pid
}

/// Whether process `pid` is still running. A zombie (exited, not yet reaped
/// by its parent) is *not* running: it holds nothing any more.
///
/// Errs towards `true`: a process that exists but cannot be inspected
/// counts as running, because declaring a live holder dead would let two
/// processes into a lock at once. If `pid` died and its number was reused
/// before the check, the answer is `true` for the newcomer: a waiter then
/// waits on (liveness is lost), but never enters beside a live holder.
///
/// Costs three system calls (`pidfd_open(2)`, a zero-timeout `poll(2)`, and
/// `close`): a pidfd polls readable once its process has terminated, zombie
/// or not.
pub fn is_running(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0u32) };
    if fd < 0 {
        return match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ESRCH) => false,
            // Too old a kernel, or out of descriptors: ask /proc instead.
            _ => exists_and_not_zombie(raw),
        };
    }
    let fd = fd as libc::c_int;
    let mut poll_fd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; zero timeout.
    let ready = unsafe { libc::poll(&mut poll_fd, 1, 0) };
    // SAFETY: the descriptor pidfd_open gave us, closed once.
    unsafe { libc::close(fd) };
    !(ready == 1 && poll_fd.revents & libc::POLLIN != 0)
}

fn exists_and_not_zombie(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    if unsafe { libc::kill(pid, 0) } == -1
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    {
        return false;
    }
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // The command name may contain spaces and ')': the state follows the
    // last ')'.
    let state = stat
        .iter()
        .rposition(|&b| b == b')')
        .and_then(|close| stat.get(close + 2));
    !matches!(state, Some(b'Z') | Some(b'X'))
}
