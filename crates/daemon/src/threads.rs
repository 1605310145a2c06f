//! Forking from a multithreaded process: detected at
//! [`Process::start`](crate::Process::start), reported once.
//!
//! A forked child has one thread, the one that forked. A lock another
//! thread held at that instant (a `std::sync::Mutex`, the lock inside a
//! non-glibc allocator, a logger's) is held for ever in the child: the
//! child hangs the first time it takes it (issue #18). Python 3.12 warns
//! ("This process is multi-threaded, use of fork() may lead to deadlocks
//! in the child.") and 3.14 made `forkserver` the default on Linux.
//!
//! `start` does not refuse: forking from a thread is often right (the
//! test harness runs every test on a thread; the pool forks its workers
//! from its manager thread, and they run only the pool's code). Until it
//! has warned, it counts this process's threads (one read of
//! `/proc/self/stat`, about a microsecond) and, the first time it finds
//! more than one, prints
//! [`MULTITHREADED_WARNING`] to stderr once per process, naming the fixes:
//! a [`ForkServer`](crate::ForkServer) started early in `main`, or forking
//! before any thread starts. A caller that knows its child touches nothing
//! another thread may hold says so with
//! [`Process::threads_ok`](crate::Process::threads_ok); a whole program
//! sets [`THREADS_OK_ENV`].

use std::sync::atomic::{AtomicBool, Ordering};

use crate::sys;

/// The environment variable that silences the multithreaded-fork warning
/// for the whole process: set to anything but empty or `0`.
pub const THREADS_OK_ENV: &str = "PROCSYNC_FORK_THREADS_OK";

/// The warning [`Process::start`](crate::Process::start) prints to stderr,
/// once per process, the first time it forks while this process has more
/// than one thread (unless silenced: see
/// [`Process::threads_ok`](crate::Process::threads_ok) and
/// [`THREADS_OK_ENV`]). It is followed by the number of threads and the
/// fixes.
pub const MULTITHREADED_WARNING: &str =
    "This process is multi-threaded, use of fork() may lead to deadlocks in the child.";

/// Set once the warning is printed (or a fork found it silenced by the
/// environment): it is printed at most once per process, and a forked
/// child inherits the flag.
static WARNED: AtomicBool = AtomicBool::new(false);

/// How many threads this process has now (`/proc/self/stat`), or `None`
/// where `/proc` cannot tell. More than one means that a fork here may
/// leave a lock held for ever in the child (see
/// [`Process`](crate::Process)'s section on threads).
///
/// ```
/// assert!(daemon::thread_count().is_some_and(|n| n >= 1));
/// ```
pub fn thread_count() -> Option<usize> {
    sys::thread_count()
}

/// Called by `start` just before it forks: prints the warning the first
/// time this process forks with other threads, unless `threads_ok` or the
/// environment silences it. Once it has (or is silenced for the call),
/// the threads are not counted: no read of `/proc` at every start.
pub(crate) fn check_before_fork(threads_ok: bool) {
    if threads_ok || WARNED.load(Ordering::Relaxed) {
        return;
    }
    let threads = sys::thread_count().unwrap_or(1);
    if threads <= 1 || WARNED.swap(true, Ordering::Relaxed) {
        return;
    }
    let silenced = std::env::var_os(THREADS_OK_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    if !silenced {
        // `eprintln!`: under the test harness it goes to the test's
        // captured output, as the test's own prints do.
        eprintln!(
            "procsync: {MULTITHREADED_WARNING} (daemon::Process::start with {threads} threads; \
             start a daemon::ForkServer early in main, or fork before starting threads; \
             Process::threads_ok(true) or {THREADS_OK_ENV}=1 silences this)"
        );
    }
}
