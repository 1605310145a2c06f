//! Loom models of [`Condvar`]: a waiter that entered before a notify is
//! not left asleep, `notify(n)` ends at most `n` waits (and only waits that
//! began before it), and a timed-out waiter withdraws without taking or
//! losing a notification. Built only under `cfg(loom)`; see `shm::sync`.

#![cfg(loom)]

mod loom_support;

use std::time::Duration;

use loom::sync::Arc;
use loom::thread;
use shm::pid::Identity;
use shm::sync::model::{self, Timers};
use sync_lock::{Condvar, Mutex};

use loom_support::{check, process};

#[derive(Debug, Default)]
struct State {
    ready: bool,
    /// Waits begun (counted under the lock, just before waiting).
    entered: u32,
    /// Waits ended by a notification.
    ended: u32,
}

struct World {
    state: Mutex<State>,
    changed: Condvar,
}

fn world() -> Arc<World> {
    Arc::new(World {
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
    })
}

fn spawn_as<T: Send + 'static>(
    who: Identity,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    thread::spawn(move || {
        model::play(who);
        f()
    })
}

#[test]
fn a_waiter_that_entered_before_a_notify_is_not_left_asleep() {
    check("condvar: no lost notify", 3, || {
        let w = world();
        let waiter = {
            let w = Arc::clone(&w);
            spawn_as(process(10, 1), move || {
                let guard = w.state.lock().expect("clean");
                let guard = w.changed.wait_while(guard, |s| !s.ready).expect("clean");
                assert!(guard.ready);
            })
        };
        let notifier = {
            let w = Arc::clone(&w);
            spawn_as(process(20, 1), move || {
                w.state.lock().expect("clean").ready = true;
                w.changed.notify_one();
            })
        };
        waiter.join().unwrap();
        notifier.join().unwrap();
    });
}

/// Two single waits and a `notify(1)` that may come before, between or
/// after them: until every wait has begun, at most as many waits have
/// ended as the notify chose (0 if it came first); then a `notify_all`
/// ends the rest, and the choices add up to exactly the two waits.
#[test]
fn notify_n_ends_at_most_n_waits() {
    check("condvar: notify(n) ends <= n waits", 2, || {
        let w = world();
        let waiters: Vec<_> = [10, 20]
            .into_iter()
            .map(|pid| {
                let w = Arc::clone(&w);
                spawn_as(process(pid, 1), move || {
                    let mut guard = w.state.lock().expect("clean");
                    guard.entered += 1;
                    let mut guard = w.changed.wait(guard).expect("clean");
                    guard.ended += 1;
                })
            })
            .collect();
        let notifier = {
            let w = Arc::clone(&w);
            spawn_as(process(30, 1), move || {
                let first = w.changed.notify(1);
                assert!(first <= 1);
                loop {
                    let guard = w.state.lock().expect("clean");
                    assert!(
                        guard.ended <= first,
                        "notify(1) chose {first} but {} waits ended",
                        guard.ended
                    );
                    if guard.entered == 2 {
                        break;
                    }
                    drop(guard);
                    thread::yield_now();
                }
                first + w.changed.notify(u32::MAX)
            })
        };
        for waiter in waiters {
            waiter.join().unwrap();
        }
        assert_eq!(
            notifier.join().unwrap(),
            2,
            "every wait chosen exactly once"
        );
        assert_eq!(w.state.lock().expect("clean").ended, 2);
    });
}

/// Two waits that time out (the model's timers fire at once) race a
/// `notify(1)`: a waiter that times out withdraws, so the notify chooses
/// only waiters still waiting, and exactly the waits it chose end
/// notified: none is lost to a withdrawn waiter, none taken twice.
#[test]
fn timed_out_waiters_withdraw() {
    check("condvar: timeouts withdraw", 2, || {
        model::set_timers(Timers::AtOnce);
        let w = world();
        // One process: the relock after the wait then sleeps without a
        // timer, and only the condvar's own wait times out.
        let p = process(10, 1);
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let w = Arc::clone(&w);
                spawn_as(p, move || {
                    let guard = w.state.lock().expect("clean");
                    let (mut guard, result) = w
                        .changed
                        .wait_timeout(guard, Duration::from_secs(1))
                        .expect("clean");
                    if !result.timed_out() {
                        guard.ended += 1;
                    }
                })
            })
            .collect();
        let notifier = {
            let w = Arc::clone(&w);
            spawn_as(p, move || w.changed.notify(1))
        };
        for waiter in waiters {
            waiter.join().unwrap();
        }
        let chosen = notifier.join().unwrap();
        assert_eq!(w.state.lock().expect("clean").ended, chosen);
    });
}
