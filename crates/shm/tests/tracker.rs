//! The tracker: a named segment whose creator dies by any signal is removed
//! within 100 ms, unless another process still maps it (then when the last
//! one lets go), or it was made persistent; the tracker's own death loses
//! nothing.

mod common;
use common::*;

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use daemon::{Child, Process};
use shm::{Futex, Shared};
use testkit::{name_exists, raise, unique_name, wait_for, GENEROUS};

/// A child that creates `name`, says so on `ready`, then waits to be
/// killed (at most GENEROUS).
fn creator(name: &str, ready: &Futex, persist: bool) -> Child<()> {
    let name = name.to_string();
    Process::new(move || {
        let mut segment = Shared::create(&name, AtomicU64::new(7)).unwrap();
        if persist {
            segment.persist();
        }
        raise(ready);
        testkit::park_until_killed();
    })
    .start()
    .unwrap()
}

fn a_creator_killed_by(signal: i32) {
    let name = unique_name("tracker-signal");
    let ready = Shared::new(Futex::new(0)).unwrap();
    let mut child = creator(&name, &ready, false);
    wait_for(&ready, 1);
    assert!(name_exists(&name));
    child.signal(signal).unwrap();
    let outcome = child.join_timeout(GENEROUS);
    let died = Instant::now();
    assert!(outcome.is_err(), "the creator was killed by {signal}");
    let gone = gone_after(&name, died, GENEROUS);
    assert!(
        gone.is_some_and(|after| after <= PROMISED),
        "signal {signal}: the name was removed {gone:?} after its creator died (promised {PROMISED:?})"
    );
}

#[test]
fn a_creator_killed_by_sigkill_leaves_no_name() {
    a_creator_killed_by(libc::SIGKILL);
}

#[test]
fn a_creator_ended_by_sigterm_leaves_no_name() {
    a_creator_killed_by(libc::SIGTERM);
}

#[test]
fn a_creator_interrupted_by_sigint_leaves_no_name() {
    a_creator_killed_by(libc::SIGINT);
}

#[test]
fn a_name_a_survivor_maps_is_kept_until_it_lets_go() {
    let name = unique_name("tracker-survivor");
    let signals = Shared::new([Futex::new(0), Futex::new(0), Futex::new(0)]).unwrap();
    let [ready, mapped, release] = &*signals;
    let mut made = creator(&name, ready, false);
    wait_for(ready, 1);
    let mut survivor = {
        let name = name.clone();
        Process::new(move || {
            let kept = Shared::<AtomicU64>::open(&name).unwrap();
            raise(mapped);
            wait_for(release, 1);
            drop(kept);
        })
        .start()
        .unwrap()
    };
    wait_for(mapped, 1);
    made.kill().unwrap();
    assert!(made.join_timeout(GENEROUS).is_err());
    // The tracker sees the death at once; the survivor's mapping keeps the
    // name. (Watched for several times the promise.)
    let died = Instant::now();
    assert_eq!(
        gone_after(&name, died, PROMISED * 5),
        None,
        "the name was removed while a live process mapped it"
    );
    raise(release);
    survivor.join_timeout(GENEROUS).unwrap();
    let let_go = Instant::now();
    let gone = gone_after(&name, let_go, GENEROUS);
    assert!(
        gone.is_some_and(|after| after <= PROMISED),
        "removed {gone:?} after the last user let go (promised {PROMISED:?})"
    );
}

#[test]
fn a_persistent_name_outlives_its_creator() {
    let name = unique_name("tracker-persistent");
    let ready = Shared::new(Futex::new(0)).unwrap();
    let mut child = creator(&name, &ready, true);
    wait_for(&ready, 1);
    child.kill().unwrap();
    assert!(child.join_timeout(GENEROUS).is_err());
    let died = Instant::now();
    assert_eq!(gone_after(&name, died, PROMISED * 5), None);
    assert_eq!(
        shm::inventory::inspect(&name).unwrap().persistent,
        Some(true)
    );
    shm::inventory::remove(&name, false).unwrap();
}

#[test]
fn a_creator_that_removes_its_name_leaves_nothing_for_the_tracker() {
    let name = unique_name("tracker-own");
    let segment = Shared::create(&name, AtomicU64::new(1)).unwrap();
    drop(segment);
    assert!(!name_exists(&name));
    // A name made again under the same name by someone else is theirs.
    let again = Shared::create(&name, AtomicU64::new(2)).unwrap();
    assert!(name_exists(&name));
    drop(again);
}

#[test]
fn a_creator_killed_at_any_step_of_create_or_unlink_leaves_no_name() {
    use shm::crash::{self, Action};
    for &point in shm::SEGMENT_CRASH_POINTS {
        let name = unique_name("tracker-crash");
        let child = {
            let name = name.clone();
            Process::new(move || {
                crash::arm(point, Action::Kill);
                let made = Shared::create(&name, AtomicU64::new(3)).unwrap();
                drop(made);
            })
            .start()
            .unwrap()
        };
        // Killed at the point (or finished, if the point lies elsewhere).
        let _ = child.join();
        let died = Instant::now();
        let gone = gone_after(&name, died, GENEROUS);
        assert!(
            gone.is_some_and(|after| after <= PROMISED),
            "killed at {point:?}: the name was removed {gone:?} after (promised {PROMISED:?})"
        );
    }
}
