//! The one-line shared constructors (`Mutex::shared`, `Lock::shared`,
//! `RLock::shared`, `Condvar::shared`): forked workers see one object.

use sync_lock::{Condvar, Lock, Mutex, RLock};
use testkit::{in_processes, GENEROUS};

/// The newcomer's first program: a worker pool over one shared counter.
#[test]
fn forked_workers_count_into_one_mutex_shared_counter() {
    let counter = Mutex::shared(0u64).unwrap();
    in_processes(4, |_| {
        for _ in 0..5_000 {
            *counter.lock().unwrap() += 1;
        }
    });
    assert_eq!(
        *counter.lock().unwrap(),
        20_000,
        "every worker's increments counted"
    );
}

#[test]
fn forked_workers_see_one_lock_and_one_rlock() {
    let lock = Lock::shared().unwrap();
    let rlock = RLock::shared().unwrap();
    let held = (lock.lock().unwrap(), rlock.lock().unwrap());
    let free = in_processes(2, |_| (lock.try_lock().is_ok(), rlock.try_lock().is_ok()));
    assert_eq!(
        free,
        vec![(false, false); 2],
        "the workers see the parent's holds"
    );
    drop(held);
    // Free now, for each worker in turn: the two workers run at once, and a
    // `try_lock` would fail while the other worker holds the lock for its
    // own look (CI saw it: a debug build's first use in a child reads
    // /proc/self/maps inside that window).
    let free = in_processes(2, |_| {
        let lock_free = lock.lock_timeout(GENEROUS).is_ok();
        let rlock_free = rlock.lock_timeout(GENEROUS).is_ok();
        (lock_free, rlock_free)
    });
    assert_eq!(free, vec![(true, true); 2]);
}

#[test]
fn forked_workers_wake_a_waiter_on_a_shared_condvar() {
    let done = Mutex::shared(0u32).unwrap();
    let changed = Condvar::shared().unwrap();
    let guard = done.lock().unwrap();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            daemon::Process::new(|| {
                *done.lock().unwrap() += 1;
                changed.notify_all();
            })
            .start()
            .unwrap()
        })
        .collect();
    let (guard, waited) = changed
        .wait_timeout_while(guard, GENEROUS, |n| *n < 3)
        .unwrap();
    assert!(
        !waited.timed_out(),
        "three workers' notifications reached the parent"
    );
    assert_eq!(*guard, 3);
    drop(guard);
    for w in workers {
        w.join().unwrap();
    }
}

/// Debug builds: the newcomer's mistake, a `Mutex::new` in ordinary memory
/// locked by forked workers (each would count into its own copy), is
/// refused in the child with what to use instead. The parent's own use is
/// not checked.
#[cfg(debug_assertions)]
#[test]
fn a_private_mutex_used_in_a_forked_child_is_refused_with_the_shared_form() {
    let counter = Mutex::new(0u64);
    *counter.lock().unwrap() += 1;
    let child = daemon::Process::new(|| *counter.lock().unwrap() += 1)
        .start()
        .unwrap();
    let refused = child
        .join()
        .expect_err("a private Mutex in a child")
        .to_string();
    assert!(
        refused.contains("private memory") && refused.contains("Mutex::shared(value)"),
        "{refused}"
    );
    let condvar = Condvar::new();
    let child = daemon::Process::new(|| condvar.notify_all())
        .start()
        .unwrap();
    let refused = child
        .join()
        .expect_err("a private Condvar in a child")
        .to_string();
    assert!(refused.contains("Condvar::shared()"), "{refused}");
    // In shared memory: no complaint.
    let shared = Mutex::shared(0u64).unwrap();
    let child = daemon::Process::new(|| *shared.lock().unwrap() += 1)
        .start()
        .unwrap();
    child.join().unwrap();
    assert_eq!(*shared.lock().unwrap(), 1);
}
