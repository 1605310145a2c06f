//! Review 3: owner identity when the judging process is out of file
//! descriptors.

use std::time::Duration;

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

fn outcome<G>(result: Result<G, TryLockError<G>>) -> String {
    match result {
        Ok(_) => "clean",
        Err(TryLockError::OwnerDied(_)) => "owner-died",
        Err(TryLockError::WouldBlock) => "would-block",
        Err(TryLockError::TimedOut) => "timed-out",
    }
    .to_string()
}

/// `Identity::is_running` falls back to "does a non-zombie process with
/// this pid exist" when `pidfd_open` fails (EMFILE), ignoring the start
/// tag. A waiter that is out of descriptors then takes a new process that
/// reused a dead holder's pid for the holder and waits on a dead lock for
/// as long as the newcomer lives (here: `lock_timeout(1 s)` times out
/// instead of taking over with `OwnerDied`).
#[test]
fn a_waiter_out_of_descriptors_is_not_fooled_by_pid_reuse() {
    if testkit::skip_unless_pids_can_be_forced() {
        return;
    }
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
    // A live newcomer with the dead holder's pid, holding nothing.
    let reuser = start_with_pid(dead, move || wait_for(&a.release, 1));
    let waiter = Process::new(move || {
        // Learn this process's own identity while a descriptor is free.
        let _ = shm::pid::current_identity();
        let files = testkit::exhaust_descriptors();
        let got = outcome(a.lock.lock_timeout(Duration::from_secs(1)));
        drop(files);
        got
    })
    .start()
    .unwrap()
    .join()
    .unwrap();
    // After it: the takeover was reported once, and the lock is free.
    let control = Process::new(move || outcome(a.lock.lock_timeout(Duration::from_secs(1))))
        .start()
        .unwrap()
        .join()
        .unwrap();
    raise(&a.release);
    reuser.join().unwrap();
    println!(
        "holder dead, its pid reused: a waiter out of descriptors got {waiter}; \
         the next locker got {control}"
    );
    assert_eq!(
        waiter, "owner-died",
        "the waiter out of descriptors took the newcomer for the dead holder"
    );
    assert_eq!(control, "clean", "the death was reported once");
}
