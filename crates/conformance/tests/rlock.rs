//! CPython's `RLock` tests, ported to `sync_lock::RLock` between processes.
//!
//! Sources: `Lib/test/lock_tests.py` (`BaseLockTests` run on `RLock`,
//! `RLockTests`) and `Lib/test/_test_multiprocessing.py`
//! (`_TestLock::test_rlock`), CPython 3.11.
//!
//! Python's `acquire()`/`release()` are `RLock::acquire`/`RLock::release`
//! (or `lock()` and dropping its guard); `_is_owned()` is
//! `is_held_by_current_thread()`; `_recursion_count()` is `depth()`.
//!
//! | Python case | why it is not ported |
//! |---|---|
//! | `BaseLockTests::test_repr`, `test_locked_repr` | `repr` is Python-only |
//! | `BaseLockTests::test_weakref_exists`, `test_weakref_deleted` | weak references are Python-only |
//! | `BaseLockTests::test_timeout`, the `ValueError`/`OverflowError` half | a `Duration` cannot be negative; the timing half is ported |
//! | `RLockTests::test_release_save_unacquired` | `_release_save` is a private hook of `threading.Condition`; procsync's `Condvar` works with `Mutex`, not `RLock` |

mod common;

use std::time::{Duration, Instant};

use common::{join, start, times_out_in_another_process, Bunch, Log};
use daemon::Process;
use shm::{Futex, Shared, ShmSafe};
use sync_lock::{NotOwner, RLock, TryLockError};
use testkit::{raise, wait_for};

fn new_rlock() -> Shared<RLock> {
    Shared::new(RLock::new()).unwrap()
}

/// Python's `acquire()`, panicking on an `OwnerDied` report (nobody dies in
/// these tests).
fn acquire(lock: &RLock) {
    lock.acquire().expect("no holder died");
}

// BaseLockTests::test_constructor
#[test]
fn lock_tests_rlock_constructor() {
    let l = new_rlock();
    assert!(!l.is_locked());
    assert_eq!(l.depth(), 0);
}

// BaseLockTests::test_acquire_destroy
#[test]
fn lock_tests_rlock_acquire_destroy() {
    let l = new_rlock();
    acquire(&l);
    drop(l);
}

// BaseLockTests::test_acquire_release
#[test]
fn lock_tests_rlock_acquire_release() {
    let l = new_rlock();
    acquire(&l);
    l.release().unwrap();
    assert!(!l.is_locked());
}

// BaseLockTests::test_try_acquire
#[test]
fn lock_tests_rlock_try_acquire() {
    let l = new_rlock();
    let guard = l.try_lock().expect("a free lock");
    drop(guard);
    assert!(!l.is_locked());
}

// BaseLockTests::test_try_acquire_contended
#[test]
fn lock_tests_rlock_try_acquire_contended() {
    let l = new_rlock();
    acquire(&l);
    let results = Bunch::start(1, |_| matches!(l.try_lock(), Err(TryLockError::WouldBlock)));
    assert_eq!(results.join(), [true]);
    l.release().unwrap();
}

#[derive(ShmSafe)]
#[repr(C)]
struct Contended {
    lock: RLock,
    finished: Log,
}

// BaseLockTests::test_acquire_contended
#[test]
fn lock_tests_rlock_acquire_contended() {
    const N: usize = 5;
    let s = Shared::new(Contended {
        lock: RLock::new(),
        finished: Log::new(),
    })
    .unwrap();
    acquire(&s.lock);
    let mut bunch = Bunch::start(N, |i| {
        acquire(&s.lock);
        s.lock.release().unwrap();
        s.finished.push(i as u32);
    });
    bunch.wait_all_asleep();
    assert_eq!(s.finished.len(), 0);
    assert_eq!(bunch.finished(), 0);
    s.lock.release().unwrap();
    bunch.join();
    assert_eq!(s.finished.len(), N);
}

// BaseLockTests::test_with. procsync differs on purpose: the level
// released by a panic tells the next locker once (`holder_panicked()`), as
// std's poisoning does; Python says nothing.
#[test]
fn lock_tests_rlock_with() {
    let l = new_rlock();
    let f = |_| {
        acquire(&l);
        l.release().unwrap();
    };
    {
        let _guard = l.lock().unwrap();
    }
    Bunch::start(1, f).join();
    let panicked = std::panic::catch_unwind(|| {
        let _guard = l.lock().unwrap();
        panic!("TypeError");
    });
    assert!(panicked.is_err());
    assert!(!l.is_locked());
    let told = Bunch::start(1, |_| match l.acquire() {
        Err(died) => {
            l.release().unwrap();
            died.holder_panicked()
        }
        Ok(()) => false,
    })
    .join();
    assert_eq!(told, [true], "the next locker is told of the panic");
    Bunch::start(1, f).join();
    assert!(!l.is_locked());
}

// BaseLockTests::test_thread_leak
#[test]
fn lock_tests_rlock_thread_leak() {
    let l = new_rlock();
    Bunch::start(15, |_| {
        acquire(&l);
        l.release().unwrap();
    })
    .join();
    assert!(!l.is_locked());
}

// BaseLockTests::test_timeout (the timing half; 0.5 s is SHORT here)
#[test]
fn lock_tests_rlock_timeout() {
    let l = new_rlock();
    drop(l.lock_timeout(Duration::MAX).expect("a free lock"));
    let started = Instant::now();
    let guard = l.lock_timeout(Duration::from_secs(5)).expect("a free lock");
    assert!(started.elapsed() < Duration::from_secs(5));
    times_out_in_another_process(|timeout| {
        matches!(l.lock_timeout(timeout), Err(TryLockError::TimedOut))
    });
    drop(guard);
}

// RLockTests::test_reacquire
#[test]
fn lock_tests_rlock_reacquire() {
    let l = new_rlock();
    acquire(&l);
    acquire(&l);
    l.release().unwrap();
    acquire(&l);
    l.release().unwrap();
    l.release().unwrap();
    assert!(!l.is_locked());
}

// RLockTests::test_release_unacquired: Python raises RuntimeError; procsync
// returns Err(NotOwner).
#[test]
fn lock_tests_rlock_release_unacquired() {
    let l = new_rlock();
    assert_eq!(l.release(), Err(NotOwner { holder: None }));
    acquire(&l);
    acquire(&l);
    l.release().unwrap();
    acquire(&l);
    l.release().unwrap();
    l.release().unwrap();
    assert_eq!(l.release(), Err(NotOwner { holder: None }));
}

#[derive(ShmSafe)]
#[repr(C)]
struct Phased {
    lock: RLock,
    phase: Futex,
}

// RLockTests::test_recursion_count. Python's `_recursion_count()` is 0 for
// a thread that does not hold the lock; procsync's `depth()` is the
// holder's count whoever asks (procsync difference), so while the worker
// holds the lock the main process sees 1 and `is_held_by_current_thread()`
// false.
#[test]
fn lock_tests_rlock_recursion_count() {
    let s = Shared::new(Phased {
        lock: RLock::new(),
        phase: Futex::new(0),
    })
    .unwrap();
    let l = &s.lock;
    assert_eq!(l.depth(), 0);
    acquire(l);
    assert_eq!(l.depth(), 1);
    acquire(l);
    acquire(l);
    assert_eq!(l.depth(), 3);
    l.release().unwrap();
    assert_eq!(l.depth(), 2);
    l.release().unwrap();
    l.release().unwrap();
    assert_eq!(l.depth(), 0);

    let worker = start(Process::new(|| {
        acquire(l);
        raise(&s.phase);
        wait_for(&s.phase, 2);
        l.release().unwrap();
        raise(&s.phase);
    }));
    wait_for(&s.phase, 1);
    assert!(!l.is_held_by_current_thread());
    assert_eq!(l.depth(), 1, "the worker's count (procsync difference)");
    raise(&s.phase);
    wait_for(&s.phase, 3);
    assert_eq!(l.depth(), 0);
    join(worker).unwrap();
}

// RLockTests::test_different_thread: releasing a lock another process holds
// fails (Python: RuntimeError; procsync: Err(NotOwner) naming the holder).
#[test]
fn lock_tests_rlock_different_thread() {
    let s = Shared::new(Phased {
        lock: RLock::new(),
        phase: Futex::new(0),
    })
    .unwrap();
    let worker = start(Process::new(|| {
        acquire(&s.lock);
        raise(&s.phase);
        wait_for(&s.phase, 2);
        s.lock.release().unwrap();
    }));
    wait_for(&s.phase, 1);
    assert_eq!(
        s.lock.release(),
        Err(NotOwner {
            holder: Some(worker.pid())
        })
    );
    raise(&s.phase);
    join(worker).unwrap();
    assert!(!s.lock.is_locked());
}

// RLockTests::test__is_owned
#[test]
fn lock_tests_rlock_is_owned() {
    let l = new_rlock();
    assert!(!l.is_held_by_current_thread());
    acquire(&l);
    assert!(l.is_held_by_current_thread());
    acquire(&l);
    assert!(l.is_held_by_current_thread());
    let result = Bunch::start(1, |_| l.is_held_by_current_thread()).join();
    assert_eq!(
        result,
        [false],
        "a forked child does not own its parent's hold"
    );
    l.release().unwrap();
    assert!(l.is_held_by_current_thread());
    l.release().unwrap();
    assert!(!l.is_held_by_current_thread());
}

// _TestLock::test_rlock
#[test]
fn mp_lock_rlock() {
    let l = new_rlock();
    acquire(&l);
    acquire(&l);
    acquire(&l);
    l.release().unwrap();
    l.release().unwrap();
    l.release().unwrap();
    assert!(matches!(l.release(), Err(NotOwner { .. })));
}
