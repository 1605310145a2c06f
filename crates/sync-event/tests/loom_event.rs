//! Loom models of [`Event`]'s word (flag, set generation, sleepers bit): a
//! waiter asleep through `set(); clear()` is let through, and no set is
//! lost on a waiter going to sleep. Built only under `cfg(loom)`; see
//! `shm::sync` for how to run.

#![cfg(loom)]

// The helpers of sync-lock's models, shared rather than copied.
#[path = "../../sync-lock/tests/loom_support/mod.rs"]
mod loom_support;

use loom::sync::Arc;
use loom::thread;
use shm::pid::Identity;
use shm::sync::model;
use sync_event::Event;

use loom_support::{check, process};

/// A thread playing `who` that waits for `event` with no deadline.
fn waiter(event: &Arc<Event>, who: Identity) -> thread::JoinHandle<bool> {
    let event = Arc::clone(event);
    thread::spawn(move || {
        model::play(who);
        event.wait_until(None)
    })
}

/// Two processes asleep on a clear event; another sets it and at once
/// clears it: both are let through (`wait` returns `true`), whichever
/// order they wake in, instead of going back to sleep on the cleared flag.
#[test]
fn waiters_asleep_through_set_then_clear_are_let_through() {
    check("event: 2 asleep through set; clear", 3, || {
        let event = Arc::new(Event::new());
        let (a, b) = (process(10, 1), process(20, 1));
        let waiters = [waiter(&event, a), waiter(&event, b)];
        while model::sleeping(a) + model::sleeping(b) < 2 {
            thread::yield_now();
        }
        event.set();
        event.clear();
        for w in waiters {
            assert!(w.join().unwrap(), "a sleeper was let through");
        }
        assert!(!event.is_set());
    });
}

/// Two processes start waiting while a third sets the event, at any point
/// of their way to sleep: neither is left asleep.
#[test]
fn a_set_racing_two_waiters_loses_no_wake_up() {
    check("event: set racing 2 waiters", 3, || {
        let event = Arc::new(Event::new());
        let waiters = [
            waiter(&event, process(10, 1)),
            waiter(&event, process(20, 1)),
        ];
        let setter = {
            let event = Arc::clone(&event);
            thread::spawn(move || {
                model::play(process(30, 1));
                event.set();
            })
        };
        setter.join().unwrap();
        for w in waiters {
            assert!(w.join().unwrap());
        }
        assert!(event.is_set());
    });
}
