//! Loom models of the semaphores' count word: permits never below zero nor
//! above the bound, no lost wake-up when a release races a sleeper, a
//! bounded release that is exact, a [`RobustSemaphore`] permit held by a
//! process that dies coming back exactly once, and one adopted by a child
//! never taken back from it. Built only under
//! `cfg(loom)`; see `shm::sync` for how to run.

#![cfg(loom)]

// The helpers of sync-lock's models, shared rather than copied.
#[path = "../../sync-lock/tests/loom_support/mod.rs"]
mod loom_support;

use loom::sync::atomic::{AtomicU32, Ordering};
use loom::sync::Arc;
use loom::thread;
use shm::pid::Identity;
use shm::sync::model;
use sync_sem::{AdoptError, ReleaseError, RobustSemaphore, Semaphore};

use loom_support::{check, process, Guarded};

/// A semaphore and a plain cell bumped by whoever holds its one permit.
struct Exclusive<S> {
    sem: S,
    inside: Guarded,
}

// SAFETY: `inside` is touched only by the holder of the one permit, or
// after every thread was joined; loom's cell fails the model if that
// claim is ever false.
unsafe impl<S: Sync> Sync for Exclusive<S> {}

fn spawn_as<T: Send + 'static>(
    who: Identity,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    thread::spawn(move || {
        model::play(who);
        f()
    })
}

/// One permit, two processes: never both inside (a plain loom cell, bumped
/// inside, would be touched by both at once), and the one that waits is
/// woken by the other's release.
#[test]
fn one_permit_excludes_and_loses_no_wake_up() {
    check("semaphore: 1 permit, 2 processes", 3, || {
        let w = Arc::new(Exclusive {
            sem: Semaphore::new(1),
            inside: Guarded::new(),
        });
        let users: Vec<_> = [10, 20]
            .into_iter()
            .map(|pid| {
                let w = Arc::clone(&w);
                spawn_as(process(pid, 1), move || {
                    let _permit = w.sem.acquire();
                    w.inside.bump();
                })
            })
            .collect();
        for u in users {
            u.join().unwrap();
        }
        assert_eq!(w.inside.get(), 2);
        assert_eq!(w.sem.value(), 1);
    });
}

/// Two permits, three processes: never more than two inside, nobody left
/// asleep, and both permits back at the end.
#[test]
fn two_permits_three_processes_stay_within_the_count() {
    check("semaphore: 2 permits, 3 processes", 2, || {
        let sem = Arc::new(Semaphore::new(2));
        let inside = Arc::new(AtomicU32::new(0));
        let users: Vec<_> = [10, 20, 30]
            .into_iter()
            .map(|pid| {
                let (sem, inside) = (Arc::clone(&sem), Arc::clone(&inside));
                spawn_as(process(pid, 1), move || {
                    let _permit = sem.acquire();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    assert!(now <= 2, "{now} inside a semaphore of 2");
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for u in users {
            u.join().unwrap();
        }
        assert_eq!(sem.value(), 2);
    });
}

/// No permit at first; two processes wait while a third signals with two
/// single releases (the first clears the sleepers bit while the other
/// waiter may still sleep): both waiters must get a permit.
#[test]
fn releases_racing_two_sleepers_wake_both() {
    check("semaphore: 2 releases racing 2 sleepers", 3, || {
        let sem = Arc::new(Semaphore::new(0));
        let waiters: Vec<_> = [10, 20]
            .into_iter()
            .map(|pid| {
                let sem = Arc::clone(&sem);
                spawn_as(process(pid, 1), move || sem.acquire().forget())
            })
            .collect();
        sem.release().expect("unbounded");
        sem.release().expect("unbounded");
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(sem.value(), 0);
    });
}

/// A bounded semaphore of 2 with one permit out: two processes release one
/// each while a third tries to take one. Exactly as many releases succeed
/// as there is room for, the failure says why, and the count is exact:
/// never above 2, never a permit made or lost.
#[test]
fn bounded_release_is_exact() {
    check("semaphore: bounded release", 3, || {
        let sem = Arc::new(Semaphore::bounded(2));
        sem.acquire().forget();
        let releasers: Vec<_> = [10, 20]
            .into_iter()
            .map(|pid| {
                let sem = Arc::clone(&sem);
                spawn_as(process(pid, 1), move || sem.release())
            })
            .collect();
        let taker = {
            let sem = Arc::clone(&sem);
            spawn_as(process(30, 1), move || {
                sem.try_acquire().map(|p| p.forget()).is_ok()
            })
        };
        let released: Vec<Result<(), ReleaseError>> =
            releasers.into_iter().map(|r| r.join().unwrap()).collect();
        let took = u32::from(taker.join().unwrap());
        let ok = released.iter().filter(|r| r.is_ok()).count() as u32;
        for r in &released {
            if let Err(e) = r {
                assert!(
                    matches!(e, ReleaseError::AboveBound { bound: 2, .. }),
                    "{e:?}"
                );
            }
        }
        assert!(ok >= 1, "one release always has room: {released:?}");
        assert_eq!(sem.value(), 1 + ok - took, "{released:?}, took {took}");
        assert!(sem.value() <= 2);
    });
}

/// A `RobustSemaphore(1)` whose holder (the model's main thread) dies
/// holding the permit at any point of two waiters' acquisitions: the
/// permit comes back exactly once (both waiters get in, one at a time, and
/// the count ends at 1, not 2).
#[test]
fn a_dead_holders_permit_comes_back_exactly_once() {
    check("robust semaphore: holder dies, 2 waiters", 3, || {
        let w = Arc::new(Exclusive {
            sem: RobustSemaphore::new(1),
            inside: Guarded::new(),
        });
        model::play(process(10, 1));
        // Held, as a dying process holds it: its drop never runs.
        std::mem::forget(w.sem.acquire().expect("a row is free"));
        let waiters: Vec<_> = [20, 30]
            .into_iter()
            .map(|pid| {
                let w = Arc::clone(&w);
                spawn_as(process(pid, 1), move || {
                    let _permit = w.sem.acquire().expect("a row is free");
                    w.inside.bump();
                })
            })
            .collect();
        model::die();
        for waiter in waiters {
            waiter.join().unwrap();
        }
        assert_eq!(w.inside.get(), 2);
        assert_eq!(w.sem.value(), 1, "the dead holder's permit came back once");
    });
}

/// A `RobustSemaphore(1)` permit acquired by one process (the model's main
/// thread) is moved into its "child" (a thread playing another process),
/// which adopts it; the acquirer dies at any point of that, and a third
/// process contends, sweeping the dead. Never two holders at once: the
/// child is inside only if its adopt succeeded, and then the sweep takes
/// nothing back from it; if the sweep came first, the adopt says
/// `Reclaimed`. The value ends at 1 either way.
#[test]
fn an_adopted_permit_survives_its_acquirers_death() {
    check(
        "robust semaphore: adopt, acquirer dies, contender",
        3,
        || {
            // Leaked: a permit moved into a thread must borrow a semaphore that
            // lives for ever (loom has no scoped threads). One per execution.
            let w: &'static Exclusive<RobustSemaphore> = Box::leak(Box::new(Exclusive {
                sem: RobustSemaphore::new(1),
                inside: Guarded::new(),
            }));
            model::play(process(10, 1));
            let permit = w.sem.acquire().expect("a row is free");
            let child = spawn_as(process(20, 1), move || {
                let mut permit = permit;
                // SAFETY: moved into this thread (playing the child); the acquirer never drops it.
                match unsafe { permit.adopt() } {
                    Ok(()) => {
                        w.inside.bump();
                        true
                    }
                    Err(AdoptError::Reclaimed) => false,
                    Err(e) => panic!("{e:?}"),
                }
            });
            let contender = spawn_as(process(30, 1), move || {
                let _permit = w.sem.acquire().expect("a row is free");
                w.inside.bump();
            });
            model::die();
            let adopted = child.join().unwrap();
            contender.join().unwrap();
            assert_eq!(w.inside.get(), 1 + u32::from(adopted));
            assert_eq!(w.sem.value(), 1, "the permit came back once");
        },
    );
}
