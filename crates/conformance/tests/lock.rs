//! CPython's `Lock` tests, ported to `sync_lock::Lock` between processes.
//!
//! Sources: `Lib/test/lock_tests.py` (`BaseLockTests`, `LockTests`) and
//! `Lib/test/_test_multiprocessing.py` (`_TestLock`), CPython 3.11.
//!
//! Python's `acquire()` is `lock()`, `acquire(False)` is `try_lock()`,
//! `acquire(timeout=t)` is `lock_timeout(t)`, `release()` is dropping the
//! guard, `locked()` is `is_locked()`.
//!
//! | Python case | why it is not ported |
//! |---|---|
//! | `BaseLockTests::test_repr`, `test_locked_repr` | `repr` is Python-only (`Debug` output is no API) |
//! | `BaseLockTests::test_weakref_exists`, `test_weakref_deleted` | weak references to the lock object are Python-only |
//! | `LockTests::test_at_fork_reinit` | a private CPython hook; procsync locks need no reinitialisation after fork (holding is per process: a forked child never holds its parent's lock) |
//! | `BaseLockTests::test_timeout`, the `ValueError`/`OverflowError` half | a `Duration` cannot be negative, and `acquire(False, timeout)` has no counterpart; the timing half is ported |
//! | `LockTests::test_reacquire`, the release-from-another-thread half | a guard can only be released by the process holding it; ported as far as it applies (see the test) |
//! | `_TestLock::test_lock`, the "release twice raises" half | a guard is consumed by its release: a second release does not compile |

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{join, start, times_out_in_another_process, Bunch, Log, SHORT};
use daemon::Process;
use shm::{Futex, Shared, ShmSafe};
use sync_lock::{Lock, TryLockError};
use testkit::{
    helper_args, helper_report, raise, reported, run_helper, unique_name, wait_for, GENEROUS,
};

fn new_lock() -> Shared<Lock> {
    Shared::new(Lock::new()).unwrap()
}

/// Locks, panicking on an `OwnerDied` report (nobody dies in these tests).
fn lock(lock: &Lock) -> sync_lock::LockGuard<'_> {
    lock.lock().expect("no holder died")
}

// BaseLockTests::test_constructor
#[test]
fn lock_tests_lock_constructor() {
    let l = new_lock();
    assert!(!l.is_locked());
    assert_eq!(l.owner(), None);
}

// BaseLockTests::test_acquire_destroy: dropping the memory of a held lock
// is fine.
#[test]
fn lock_tests_lock_acquire_destroy() {
    let l = new_lock();
    std::mem::forget(lock(&l));
    drop(l);
}

// BaseLockTests::test_acquire_release
#[test]
fn lock_tests_lock_acquire_release() {
    let l = new_lock();
    let guard = lock(&l);
    assert!(l.is_locked());
    drop(guard);
    assert!(!l.is_locked());
}

// BaseLockTests::test_try_acquire
#[test]
fn lock_tests_lock_try_acquire() {
    let l = new_lock();
    let guard = l.try_lock().expect("a free lock");
    drop(guard);
}

// BaseLockTests::test_try_acquire_contended
#[test]
fn lock_tests_lock_try_acquire_contended() {
    let l = new_lock();
    let _held = lock(&l);
    let results = Bunch::start(1, |_| matches!(l.try_lock(), Err(TryLockError::WouldBlock)));
    assert_eq!(results.join(), [true], "try_lock fails while held");
}

#[derive(ShmSafe)]
#[repr(C)]
struct Contended {
    lock: Lock,
    finished: Log,
}

// BaseLockTests::test_acquire_contended
#[test]
fn lock_tests_lock_acquire_contended() {
    const N: usize = 5;
    let s = Shared::new(Contended {
        lock: Lock::new(),
        finished: Log::new(),
    })
    .unwrap();
    let held = lock(&s.lock);
    let mut bunch = Bunch::start(N, |i| {
        drop(lock(&s.lock));
        s.finished.push(i as u32);
    });
    // Workers block on lock().
    bunch.wait_all_asleep();
    assert_eq!(s.finished.len(), 0);
    assert_eq!(bunch.finished(), 0);
    // Workers unblocked.
    drop(held);
    bunch.join();
    assert_eq!(s.finished.len(), N);
}

// BaseLockTests::test_with: a scope guard releases, also when the scope
// ends by a panic (Python: an exception inside `with lock:`). procsync
// differs on purpose: a guard released by a panic tells the next locker
// (any process) once, with `OwnerDied` whose `holder_panicked()` is true,
// as std's poisoning does; Python says nothing.
#[test]
fn lock_tests_lock_with() {
    let l = new_lock();
    let f = |_| drop(lock(&l));
    {
        let _guard = lock(&l);
    }
    Bunch::start(1, f).join();
    let panicked = std::panic::catch_unwind(|| {
        let _guard = lock(&l);
        panic!("TypeError");
    });
    assert!(panicked.is_err());
    assert!(!l.is_locked());
    let told = Bunch::start(1, |_| match l.lock() {
        Err(died) => died.holder_panicked(),
        Ok(_) => false,
    })
    .join();
    assert_eq!(told, [true], "the next locker is told of the panic");
    Bunch::start(1, f).join();
    assert!(!l.is_locked());
}

// BaseLockTests::test_thread_leak: many processes lock and unlock.
#[test]
fn lock_tests_lock_thread_leak() {
    let l = new_lock();
    Bunch::start(15, |_| drop(lock(&l))).join();
    assert!(!l.is_locked());
}

// BaseLockTests::test_timeout (the timing half; Python's 0.5 s is SHORT).
// TIMEOUT_MAX is `Duration::MAX` here: "wait for ever".
#[test]
fn lock_tests_lock_timeout() {
    let l = new_lock();
    drop(l.lock_timeout(Duration::MAX).expect("a free lock"));
    let started = Instant::now();
    let guard = l.lock_timeout(Duration::from_secs(5)).expect("a free lock");
    assert!(started.elapsed() < Duration::from_secs(5));
    times_out_in_another_process(|timeout| {
        matches!(l.lock_timeout(timeout), Err(TryLockError::TimedOut))
    });
    drop(guard);
}

#[derive(ShmSafe)]
#[repr(C)]
struct Phased {
    lock: Lock,
    phase: Futex,
}

// LockTests::test_reacquire: a Lock is not re-entrant, so its holder's
// second acquire blocks. Python then releases it from the main thread to
// unblock the worker; a procsync guard can be released only by the process
// holding it, so the port checks that the second acquire blocks (it times
// out) and goes no further (procsync difference).
#[test]
fn lock_tests_lock_reacquire() {
    let s = Shared::new(Phased {
        lock: Lock::new(),
        phase: Futex::new(0),
    })
    .unwrap();
    let worker = start(Process::new(|| {
        let _first = lock(&s.lock);
        raise(&s.phase);
        let second = s.lock.lock_timeout(SHORT);
        matches!(second, Err(TryLockError::TimedOut))
    }));
    wait_for(&s.phase, 1);
    assert!(join(worker).unwrap(), "the holder's second lock() blocked");
}

// LockTests::test_different_thread: in Python any thread may release a
// Lock. A procsync guard that reaches another process (a copy made by
// fork) does not release the lock there: only the holding process can
// (procsync difference; a Semaphore of one permit is the lock that any
// process may release).
#[test]
fn lock_tests_lock_different_thread() {
    let l = new_lock();
    let mut held = Some(lock(&l));
    let child = start(Process::new(|| {
        drop(held.take());
        l.is_locked()
    }));
    assert!(join(child).unwrap(), "still locked after the child's drop");
    assert!(l.is_locked());
    drop(held);
    drop(lock(&l));
    assert!(!l.is_locked());
}

// LockTests::test_state_after_timeout (CPython issue #11618)
#[test]
fn lock_tests_lock_state_after_timeout() {
    let l = new_lock();
    let guard = lock(&l);
    assert!(matches!(
        l.lock_timeout(Duration::from_millis(10)),
        Err(TryLockError::TimedOut)
    ));
    drop(guard);
    assert!(!l.is_locked());
    assert!(l.try_lock().is_ok());
}

// _TestLock::test_lock: held, a second acquire(False) fails, also from
// another process.
#[test]
fn mp_lock_lock() {
    let l = new_lock();
    let guard = lock(&l);
    assert!(matches!(l.try_lock(), Err(TryLockError::WouldBlock)));
    let other = Bunch::start(1, |_| l.try_lock().is_err()).join();
    assert_eq!(other, [true]);
    drop(guard);
    assert!(!l.is_locked());
}

// _TestLock::test_lock_context
#[test]
fn mp_lock_lock_context() {
    let l = new_lock();
    {
        let _guard = lock(&l);
    }
    assert!(!l.is_locked());
}

#[derive(ShmSafe)]
#[repr(C)]
struct NamedLock {
    lock: Lock,
    tries: AtomicU32,
}

/// The unrelated process's side of
/// `lock_tests_lock_try_acquire_contended_named`.
#[test]
fn helper_try_lock_by_name() {
    let Some(args) = helper_args() else { return };
    let s = Shared::<NamedLock>::open(&args[0]).expect("open by name");
    s.tries.fetch_add(1, Ordering::SeqCst);
    let outcome = match s.lock.try_lock() {
        Ok(_) => "acquired",
        Err(TryLockError::WouldBlock) => "would-block",
        Err(_) => "other",
    };
    helper_report("try_lock", outcome);
}

// BaseLockTests::test_try_acquire_contended, with the other party an
// unrelated program that opens the lock by name.
#[test]
fn lock_tests_lock_try_acquire_contended_named() {
    let name = unique_name("conf-lock");
    let s = Shared::create(
        &name,
        NamedLock {
            lock: Lock::new(),
            tries: AtomicU32::new(0),
        },
    )
    .unwrap();
    let held = lock(&s.lock);
    let out = run_helper("helper_try_lock_by_name", &[&name], GENEROUS);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(reported(&out, "try_lock").as_deref(), Some("would-block"));
    drop(held);
    let out = run_helper("helper_try_lock_by_name", &[&name], GENEROUS);
    assert_eq!(reported(&out, "try_lock").as_deref(), Some("acquired"));
    assert_eq!(s.tries.load(Ordering::SeqCst), 2);
    assert!(!s.lock.is_locked(), "the helper's guard released on exit");
}
