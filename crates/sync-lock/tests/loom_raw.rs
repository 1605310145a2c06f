//! Loom models of the lock word ([`RawLock`]): mutual exclusion, no lost
//! wake-up, and exactly one takeover from a holder that died, pid reuse
//! included. Built only under `cfg(loom)`; see `shm::sync` for how to run.

#![cfg(loom)]

mod loom_support;

use loom::sync::Arc;
use loom::thread;
use shm::pid::Identity;
use shm::sync::model;
use sync_lock::{Acquired, RawLock};

use loom_support::{check, process, Guarded};

/// The lock and what it guards.
struct World {
    lock: RawLock,
    counter: Guarded,
}

fn world() -> Arc<World> {
    Arc::new(World {
        lock: RawLock::new(),
        counter: Guarded::new(),
    })
}

/// Locks (for ever), bumps the counter, unlocks; returns how it acquired.
fn critical_section(w: &World) -> Acquired {
    let how = w.lock.lock_until(None).expect("no deadline");
    w.counter.bump();
    // SAFETY: this thread made the acquisition it ends.
    assert!(unsafe { w.lock.unlock() }, "the holder can unlock");
    how
}

/// Starts a thread playing process `who` that runs `critical_section`.
fn locker(w: &Arc<World>, who: Identity) -> thread::JoinHandle<Acquired> {
    let w = Arc::clone(w);
    thread::spawn(move || {
        model::play(who);
        critical_section(&w)
    })
}

#[test]
fn two_processes_exclude_each_other_and_lose_no_wake_up() {
    check("raw: 2 processes", 3, || {
        let w = world();
        let a = locker(&w, process(10, 1));
        let b = locker(&w, process(20, 1));
        assert_eq!(a.join().unwrap(), Acquired::Clean);
        assert_eq!(b.join().unwrap(), Acquired::Clean);
        assert_eq!(w.counter.get(), 2);
        assert!(!w.lock.is_locked());
    });
}

#[test]
fn three_processes_exclude_each_other_and_lose_no_wake_up() {
    check("raw: 3 processes", 3, || {
        let w = world();
        let lockers: Vec<_> = (1..=3).map(|p| locker(&w, process(p * 10, 1))).collect();
        for l in lockers {
            assert_eq!(l.join().unwrap(), Acquired::Clean);
        }
        assert_eq!(w.counter.get(), 3);
        assert!(!w.lock.is_locked());
    });
}

#[test]
fn two_threads_of_one_process_and_one_of_another() {
    check("raw: 2 threads of P + 1 of Q", 3, || {
        let w = world();
        let p = process(10, 1);
        let lockers = [locker(&w, p), locker(&w, p), locker(&w, process(20, 1))];
        for l in lockers {
            assert_eq!(l.join().unwrap(), Acquired::Clean);
        }
        assert_eq!(w.counter.get(), 3);
        assert!(!w.lock.is_locked());
    });
}

/// The holder (the model's main thread) dies holding the lock at any point
/// of two waiters' attempts: exactly one of them learns `OwnerDied`, never
/// both (a double takeover), and they never hold it together.
#[test]
fn a_dead_holder_is_taken_over_exactly_once() {
    check("raw: dead holder, 2 waiters", 3, || {
        let w = world();
        model::play(process(10, 1));
        assert_eq!(w.lock.lock_until(None), Some(Acquired::Clean));
        let a = locker(&w, process(20, 1));
        let b = locker(&w, process(30, 1));
        model::die();
        let outcomes = [a.join().unwrap(), b.join().unwrap()];
        let takeovers = outcomes
            .iter()
            .filter(|&&how| how == Acquired::OwnerDied)
            .count();
        assert_eq!(takeovers, 1, "outcomes: {outcomes:?}");
        assert_eq!(w.counter.get(), 2);
        assert!(!w.lock.is_locked());
    });
}

/// The dead holder's pid comes back as a new process (another start tag)
/// that locks twice, racing a waiter that may have judged the old holder
/// dead: one takeover in all, and the newcomer is never taken for dead.
#[test]
fn a_new_process_with_a_dead_holders_pid_is_not_the_holder() {
    check("raw: dead holder, pid reused", 3, || {
        let w = world();
        model::play(process(10, 1));
        assert_eq!(w.lock.lock_until(None), Some(Acquired::Clean));
        let newcomer = {
            let w = Arc::clone(&w);
            thread::spawn(move || {
                model::play(process(10, 2));
                [critical_section(&w), critical_section(&w)]
            })
        };
        let waiter = locker(&w, process(20, 1));
        model::die();
        let [first, second] = newcomer.join().unwrap();
        let outcomes = [first, second, waiter.join().unwrap()];
        let takeovers = outcomes
            .iter()
            .filter(|&&how| how == Acquired::OwnerDied)
            .count();
        assert_eq!(takeovers, 1, "outcomes: {outcomes:?}");
        assert_eq!(second, Acquired::Clean, "outcomes: {outcomes:?}");
        assert_eq!(w.counter.get(), 3);
        assert!(!w.lock.is_locked());
    });
}
