//! Promises of issue 11 that the first release broke: a guard belongs to
//! the process that locked, a panicking holder is reported, a same-process
//! waiter sleeps, `notify(n)` ends at most n waits.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use daemon::Process;
use shm::{Futex, Shared, ShmSafe};
use sync_lock::{Condvar, Lock, Mutex, RLock, TryLockError};
use testkit::{deadline, raise, wait_for, GENEROUS};

/// Defect 2: a guard alive at the fork gave the child `&mut T` while the
/// parent held the lock and wrote too.
#[test]
fn a_mutex_guard_refuses_the_data_in_a_forked_child() {
    let m = Shared::new(Mutex::new(7u64)).unwrap();
    let guard = m.lock().unwrap();
    let child = Process::new(|| {
        let read = catch_unwind(AssertUnwindSafe(|| *guard));
        let message = match read {
            Ok(value) => format!("read {value}"),
            Err(panic) => panic.downcast_ref::<String>().cloned().unwrap_or_default(),
        };
        // Dropping the child's bitwise copy leaves the parent's lock alone.
        // SAFETY: a copy of the guard that the child owns from here on.
        drop(unsafe { std::ptr::read(&guard) });
        message
    })
    .start()
    .unwrap();
    let message = child.join().unwrap();
    assert!(
        message.contains("belongs to the process that locked it"),
        "{message}"
    );
    assert!(m.is_locked(), "the child's drop must not unlock");
    assert_eq!(*guard, 7, "the parent still holds it and reads");
    drop(guard);
    assert!(!m.is_locked());
}

/// Defect 9: a guard dropped while its thread panicked released the lock
/// silently; the next locker (in another process) must be told.
#[test]
fn a_holder_that_panicked_is_reported_to_the_next_process() {
    let m = Shared::new(Mutex::new(0u64)).unwrap();
    let child = Process::new(|| {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            let mut guard = m.lock().unwrap();
            *guard = 1; // half of an update
            panic!("the update failed half-way");
        }));
    })
    .start()
    .unwrap();
    child.join().unwrap();
    let died = m.lock().expect_err("the panic must be reported");
    assert!(died.holder_panicked());
    assert_eq!(*died.into_inner(), 1);
    // Reported once: the next lock is clean.
    assert!(m.lock().is_ok());
}

#[test]
fn a_lock_and_an_rlock_report_a_panicking_holder_too() {
    let lock = Lock::new();
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let _guard = lock.lock().unwrap();
        panic!("inside");
    }));
    assert!(lock.lock().expect_err("reported").holder_panicked());
    let rlock = RLock::new();
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let _outer = rlock.lock().unwrap();
        let _inner = rlock.lock().unwrap();
        panic!("inside");
    }));
    assert!(rlock.lock().expect_err("reported").holder_panicked());
}

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Defect 14: a thread waiting for a lock that another thread of its own
/// process holds busy-looped (~94% of a CPU).
#[test]
fn a_thread_waiting_on_its_own_process_sleeps() {
    const WAIT: Duration = Duration::from_millis(200);
    let lock = Lock::new();
    let m = Mutex::new(0u32);
    let rlock = RLock::new();
    let release = std::sync::atomic::AtomicBool::new(false);
    let _held = (lock.lock().unwrap(), m.lock().unwrap());
    /// Runs a wait that must time out; returns the CPU time it used.
    fn cpu_of(what: &str, wait: impl FnOnce() -> bool) -> Duration {
        let before = thread_cpu_time();
        assert!(wait(), "{what}: the wait must time out");
        thread_cpu_time() - before
    }
    std::thread::scope(|s| {
        let rlock_holder = s.spawn(|| {
            // Held by this other thread: the waiter below must sleep too.
            let guard = rlock.lock().unwrap();
            while !release.load(Ordering::SeqCst) {
                std::thread::park();
            }
            drop(guard);
        });
        while !rlock.is_locked() {
            std::thread::yield_now();
        }
        let used = s
            .spawn(|| {
                [
                    (
                        "Lock",
                        cpu_of("Lock", || {
                            matches!(lock.lock_timeout(WAIT), Err(TryLockError::TimedOut))
                        }),
                    ),
                    (
                        "Mutex",
                        cpu_of("Mutex", || {
                            matches!(m.lock_timeout(WAIT), Err(TryLockError::TimedOut))
                        }),
                    ),
                    (
                        "RLock",
                        cpu_of("RLock", || {
                            matches!(rlock.lock_timeout(WAIT), Err(TryLockError::TimedOut))
                        }),
                    ),
                ]
            })
            .join()
            .unwrap();
        release.store(true, Ordering::SeqCst);
        rlock_holder.thread().unpark();
        for (what, cpu) in used {
            assert!(
                cpu < WAIT / 5,
                "{what}: waiting {WAIT:?} on its own process used {cpu:?} of CPU"
            );
        }
    });
}

#[derive(ShmSafe)]
#[repr(C)]
struct Waiters {
    /// How many notifications the parent has made (changed under `m`).
    m: Mutex<u32>,
    cond: Condvar,
    /// Raised by each waiter once it is inside `wait`.
    entered: Futex,
    /// Raised by each waiter whose wait ended before its timeout.
    woken: Futex,
}

/// Defect 16: `notify_one` could end two waits (CPython's test_notify saw
/// it 1 run in 100). Three waiters are notified once, right after they
/// entered (when a bare sequence-number condvar lets every waiter not yet
/// asleep through); exactly one wait must end.
#[test]
fn notify_one_ends_exactly_one_wait() {
    for round in 0..20 {
        let w = Shared::new(Waiters {
            m: Mutex::new(0),
            cond: Condvar::new(),
            entered: Futex::new(0),
            woken: Futex::new(0),
        })
        .unwrap();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                Process::new(|| {
                    let guard = w.m.lock().unwrap();
                    raise(&w.entered);
                    let (_guard, result) = w.cond.wait_timeout(guard, GENEROUS).unwrap();
                    if !result.timed_out() {
                        raise(&w.woken);
                    }
                })
                .start()
                .unwrap()
            })
            .collect();
        wait_for(&w.entered, 3);
        {
            // Every waiter raised `entered` holding the mutex and entered
            // the wait before releasing it: all three are waiting now.
            let mut notifications = w.m.lock().unwrap();
            *notifications += 1;
            assert_eq!(w.cond.notify(1), 1, "round {round}: one chosen");
        }
        wait_for(&w.woken, 1);
        // Give a wrongly ended second wait time to show.
        let window = deadline(Duration::from_millis(50));
        while Instant::now() < window {
            let seen = w.woken.load(Ordering::SeqCst);
            assert_eq!(seen, 1, "round {round}: notify(1) ended {seen} waits");
            w.woken.wait(seen, Some(window));
        }
        assert_eq!(w.cond.notify(2), 2, "round {round}: the other two");
        for waiter in waiters {
            waiter.join().unwrap();
        }
        assert_eq!(w.woken.load(Ordering::SeqCst), 3);
    }
}

/// Python's `notify(n)`: at most n, and never a wait that began after it.
#[test]
fn notify_n_counts_only_waits_that_began_before_it() {
    let c = Condvar::new();
    assert_eq!(c.notify(5), 0, "nobody waits: nothing to end");
    let m = Mutex::new(());
    // A notify with nobody waiting is not stored for a later waiter.
    let guard = m.lock().unwrap();
    let (_guard, result) = c.wait_timeout(guard, Duration::from_millis(20)).unwrap();
    assert!(result.timed_out());
}
