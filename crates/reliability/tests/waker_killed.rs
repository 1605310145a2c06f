//! A waker killed between its store and its wake-up call (the crash points
//! `event: set stored`, `semaphore: release stored`, and the Condvar's
//! grant): the flag is set, or the permit free, but nobody was woken. A
//! waiter with no deadline must still notice, within
//! `shm::futex::RECHECK_AT_MOST`, instead of sleeping for ever.

use daemon::{JoinError, Process};
use shm::crash::{self, Action};
use shm::Shared;
use sync_event::{Event, EVENT_CRASH_POINTS};
use sync_lock::{Condvar, Mutex, CONDVAR_CRASH_POINTS};
use sync_sem::{Semaphore, SEMAPHORE_CRASH_POINTS};
use testkit::{wait_until, GENEROUS};

/// Runs `wait` in a child until it sleeps in the kernel, then `wake` in a
/// child that dies at `point` right after its store; the waiter must
/// finish on its own.
fn waiter_survives_a_waker_killed_at(
    point: &'static str,
    wait: impl Fn() -> bool,
    wake: impl Fn(),
) {
    let mut waiter = Process::new(&wait).start().unwrap();
    let pid = waiter.pid();
    wait_until("the waiter sleeps in the kernel", || {
        testkit::process_state(pid) == Some(b'S')
    });
    let waker = Process::new(|| {
        crash::arm(point, Action::Kill);
        wake();
    })
    .start()
    .unwrap();
    assert!(
        matches!(waker.join(), Err(JoinError::Signaled { .. })),
        "the waker died at {point}"
    );
    assert_eq!(
        waiter.join_timeout(GENEROUS).map_err(|e| e.to_string()),
        Ok(true),
        "the waiter noticed what the dead waker stored"
    );
}

#[test]
fn an_event_waiter_survives_a_setter_killed_before_its_wake() {
    for &point in EVENT_CRASH_POINTS {
        let event = Shared::new(Event::new()).unwrap();
        waiter_survives_a_waker_killed_at(
            point,
            || {
                event.wait();
                true
            },
            || event.set(),
        );
    }
}

#[test]
fn a_semaphore_waiter_survives_a_releaser_killed_before_its_wake() {
    for &point in SEMAPHORE_CRASH_POINTS {
        let sem = Shared::new(Semaphore::new(0)).unwrap();
        waiter_survives_a_waker_killed_at(
            point,
            || {
                sem.acquire().forget();
                true
            },
            || sem.release().unwrap(),
        );
    }
}

#[derive(shm::ShmSafe)]
#[repr(C)]
struct Signal {
    ready: Mutex<u32>,
    changed: Condvar,
}

#[test]
fn a_condvar_waiter_survives_a_notifier_killed_before_its_wake() {
    // The notifier's points (the others are a waiter's: see
    // sync-lock/tests/condvar_crash_points.rs).
    for point in ["condvar: chosen", "condvar: notified"] {
        assert!(
            CONDVAR_CRASH_POINTS.contains(&point),
            "{point} is a crash point"
        );
        let signal = Shared::new(Signal {
            ready: Mutex::new(0),
            changed: Condvar::new(),
        })
        .unwrap();
        waiter_survives_a_waker_killed_at(
            point,
            || {
                let guard = signal.ready.lock().unwrap();
                let guard = signal
                    .changed
                    .wait_while(guard, |ready| *ready == 0)
                    .unwrap();
                *guard == 1
            },
            || {
                *signal.ready.lock().unwrap() = 1;
                signal.changed.notify_one();
            },
        );
    }
}
