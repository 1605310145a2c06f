//! What more than one suite of this crate sets up.

use daemon::Process;
use shm::{Futex, Shared, ShmSafe};
use sync_lock::{Lock, TryLockError};
use testkit::{raise, start_with_pid, wait_for};

#[derive(ShmSafe)]
#[repr(C)]
struct Arena {
    lock: Lock,
    release: Futex,
}

/// Runs `judge` on a `Lock` whose holder died holding it while a live
/// newcomer, holding nothing, has the dead holder's pid (forced through
/// `testkit::start_with_pid`, so root only: check
/// `testkit::skip_unless_pids_can_be_forced` first). The newcomer lives
/// until `judge` returns.
pub(crate) fn with_a_dead_holders_pid_reused<R>(judge: impl FnOnce(&Lock) -> R) -> R {
    let arena = Shared::new(Arena {
        lock: Lock::new(),
        release: Futex::new(0),
    })
    .unwrap();
    let a = &*arena;
    let holder = Process::new(move || std::mem::forget(a.lock.lock().unwrap()))
        .start()
        .unwrap();
    let dead = holder.pid();
    holder.join().unwrap();
    assert_eq!(a.lock.owner(), Some(dead));
    let reuser = start_with_pid(dead, move || wait_for(&a.release, 1));
    let judged = judge(&a.lock);
    raise(&a.release);
    reuser.join().unwrap();
    judged
}

/// A lock attempt's outcome in a word, to cross a process boundary.
pub(crate) fn outcome<G>(result: Result<G, TryLockError<G>>) -> String {
    match result {
        Ok(_) => "clean",
        Err(TryLockError::OwnerDied(_)) => "owner-died",
        Err(TryLockError::WouldBlock) => "would-block",
        Err(TryLockError::TimedOut) => "timed-out",
    }
    .to_string()
}
