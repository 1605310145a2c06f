//! The tracker's own death loses nothing: the next create starts a new
//! one, which watches the names of creators that still run. (A binary of
//! its own: killing the tracker while other tests' creators rely on it
//! would make them wait for their next create.)

mod common;
use common::*;

use std::time::Instant;

use shm::{tracker, Futex, Shared};
use testkit::{unique_name, wait_for, GENEROUS};

#[test]
fn a_tracker_killed_is_replaced_and_adopts_the_names_of_live_creators() {
    let name = unique_name("tracker-adopted");
    let ready = Shared::new([Futex::new(0), Futex::new(0)]).unwrap();
    let mut first = creator(&name, &ready[0]);
    wait_for(&ready[0], 1);
    let old = tracker::running().expect("the creator started a tracker");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(old.as_raw()).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    testkit::wait_until("the old tracker is gone", || {
        tracker::running() != Some(old)
    });
    // The next create anywhere starts a new tracker, which finds the first
    // creator's name and watches its creator.
    let other = unique_name("tracker-restarter");
    let mut second = creator(&other, &ready[1]);
    wait_for(&ready[1], 1);
    let new = tracker::running().expect("a new tracker");
    assert_ne!(new, old);
    first.kill().unwrap();
    assert!(first.join_timeout(GENEROUS).is_err());
    let died = Instant::now();
    let gone = gone_after(&name, died, GENEROUS);
    assert!(
        gone.is_some_and(|after| after <= PROMISED),
        "the adopted name was removed {gone:?} after its creator died"
    );
    second.kill().unwrap();
    let _ = second.join_timeout(GENEROUS);
    assert!(gone_after(&other, Instant::now(), GENEROUS).is_some());
}
