//! The one-line shared constructors (`Event::shared`, `Barrier::shared`):
//! forked workers see one object.

use sync_event::{Barrier, BarrierError, Event, MAX_PARTIES};
use testkit::{in_processes, GENEROUS};

#[test]
fn forked_workers_pass_one_shared_barrier_with_one_leader() {
    let start = Barrier::shared(4).unwrap();
    let leaders = in_processes(4, |_| start.wait_timeout(GENEROUS).unwrap().is_leader());
    assert_eq!(
        leaders.iter().filter(|l| **l).count(),
        1,
        "one generation of four parties"
    );
}

#[test]
fn a_shared_barrier_refuses_what_new_refuses() {
    assert_eq!(Barrier::shared(0).err(), Some(BarrierError::NoParties));
    assert_eq!(
        Barrier::shared(MAX_PARTIES + 1).err(),
        Some(BarrierError::TooManyParties { max: MAX_PARTIES })
    );
}

#[test]
fn forked_workers_see_one_shared_event() {
    let go = Event::shared().unwrap();
    let seen = in_processes(2, |_| go.wait_timeout(std::time::Duration::ZERO));
    assert_eq!(seen, vec![false; 2]);
    go.set();
    let seen = in_processes(2, |_| go.wait_timeout(GENEROUS));
    assert_eq!(seen, vec![true; 2], "the workers see the parent's set");
    let cleared = in_processes(1, |_| go.clear());
    assert_eq!(cleared.len(), 1);
    assert!(!go.is_set(), "the parent sees a worker's clear");
}

/// Debug builds: an event in ordinary memory set by a forked child (the
/// parent would wait for ever on its own copy) is refused there with the
/// shared form.
#[cfg(debug_assertions)]
#[test]
fn a_private_event_or_barrier_used_in_a_forked_child_is_refused_with_the_shared_form() {
    let light = Event::new();
    let child = daemon::Process::new(|| light.set()).start().unwrap();
    let refused = child.join().expect_err("a private Event").to_string();
    assert!(refused.contains("Event::shared()"), "{refused}");
    assert!(!light.is_set());
    let gate = Barrier::new(1).unwrap();
    let child = daemon::Process::new(|| gate.wait().is_ok())
        .start()
        .unwrap();
    let refused = child.join().expect_err("a private Barrier").to_string();
    assert!(refused.contains("Barrier::shared(parties)"), "{refused}");
}
