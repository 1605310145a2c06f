//! `Semaphore` between processes: never more than N inside, exact counts,
//! timeouts, and the bounded form.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use daemon::Process;
use shm::{Futex, Shared, ShmSafe};
use sync_sem::{AcquireError, ReleaseError, Semaphore, MAX_PERMITS};
use testkit::{in_processes, raise, wait_for, GENEROUS};

#[derive(ShmSafe)]
#[repr(C)]
struct Room {
    sem: Semaphore,
    inside: AtomicU32,
    most: Futex,
}

#[test]
fn eight_processes_never_exceed_three_inside_and_reach_three() {
    let room = Shared::new(Room {
        sem: Semaphore::new(3),
        inside: AtomicU32::new(0),
        most: Futex::new(0),
    })
    .unwrap();
    let enter = |room: &Room| {
        let now = room.inside.fetch_add(1, Ordering::SeqCst) + 1;
        if room.most.fetch_max(now, Ordering::SeqCst) < now {
            room.most.wake_all();
        }
    };
    in_processes(8, |_| {
        // First, gather: stay inside until three have been inside at once
        // (three permits exist, so three get in).
        {
            let _permit = room.sem.acquire();
            enter(&room);
            wait_for(&room.most, 3);
            room.inside.fetch_sub(1, Ordering::SeqCst);
        }
        // Then hammer.
        for _ in 0..20_000 {
            let _permit = room.sem.acquire();
            enter(&room);
            room.inside.fetch_sub(1, Ordering::SeqCst);
        }
    });
    assert_eq!(room.most.load(Ordering::SeqCst), 3);
    assert_eq!(room.sem.value(), 3);
}

#[test]
fn release_n_and_value_are_exact() {
    let sem = Semaphore::new(0);
    assert_eq!(sem.value(), 0);
    sem.release_n(5).unwrap();
    assert_eq!(sem.value(), 5);
    let permits: Vec<_> = (0..5).map(|_| sem.try_acquire().unwrap()).collect();
    assert_eq!(sem.value(), 0);
    drop(permits);
    assert_eq!(sem.value(), 5);
    sem.release_n(0).unwrap();
    assert_eq!(sem.value(), 5);
}

#[test]
fn try_acquire_on_zero_fails_at_once() {
    let sem = Semaphore::new(0);
    let started = Instant::now();
    assert!(matches!(sem.try_acquire(), Err(AcquireError::WouldBlock)));
    assert!(started.elapsed() < GENEROUS / 2);
}

#[test]
fn acquire_timeout_fails_on_time_and_succeeds_when_a_permit_arrives() {
    let sem = Shared::new(Semaphore::new(0)).unwrap();
    let timeout = Duration::from_millis(20);
    let started = Instant::now();
    assert!(matches!(
        sem.acquire_timeout(timeout),
        Err(AcquireError::TimedOut)
    ));
    assert!(started.elapsed() >= timeout, "gave up early");

    // Another process hands one over while we wait.
    let child = Process::new(|| sem.release().is_ok()).start().unwrap();
    let permit = sem.acquire_timeout(GENEROUS).expect("the released permit");
    assert!(child.join().unwrap());
    permit.forget();
    assert_eq!(sem.value(), 0, "forget kept it taken");
}

#[test]
fn a_bounded_semaphore_refuses_to_go_above_its_bound() {
    let sem = Semaphore::bounded(2);
    assert_eq!(sem.bound(), Some(2));
    assert!(matches!(
        sem.release(),
        Err(ReleaseError::AboveBound {
            bound: 2,
            would_be: 3,
            ..
        })
    ));
    assert_eq!(sem.value(), 2, "nothing was added");
    let permit = sem.acquire();
    assert!(sem.release_n(2).is_err());
    sem.release_n(0).unwrap();
    drop(permit);
    assert_eq!(sem.value(), 2);
}

#[test]
fn racing_releases_never_pass_the_bound() {
    // Four processes each try to release 1 into a bounded(4) semaphore
    // emptied of 2: exactly 2 releases succeed.
    let sem = Shared::new(Semaphore::bounded(4)).unwrap();
    sem.acquire().forget();
    sem.acquire().forget();
    let children: Vec<_> = (0..4)
        .map(|_| Process::new(|| sem.release().is_ok()).start().unwrap())
        .collect();
    let ok = children
        .into_iter()
        .filter(|_| true)
        .map(|c| c.join().unwrap())
        .filter(|&ok| ok)
        .count();
    assert_eq!(ok, 2);
    assert_eq!(sem.value(), 4);
}

#[test]
fn the_count_stops_at_its_maximum() {
    let sem = Semaphore::new(MAX_PERMITS);
    assert_eq!(sem.value(), MAX_PERMITS);
    assert!(matches!(sem.release(), Err(ReleaseError::Overflow { .. })));
    assert_eq!(Semaphore::new(u32::MAX).value(), MAX_PERMITS, "clamped");
}

#[test]
fn a_dead_holder_never_hangs_a_waiter_with_a_timeout() {
    let sem = Shared::new(Semaphore::new(1)).unwrap();
    let holding = Shared::new(Futex::new(0)).unwrap();
    let child = Process::new(|| -> u8 {
        std::mem::forget(sem.acquire());
        raise(&holding);
        std::process::abort()
    })
    .start()
    .unwrap();
    wait_for(&holding, 1);
    assert!(child.join().is_err());
    let timeout = Duration::from_millis(20);
    let started = Instant::now();
    assert!(matches!(
        sem.acquire_timeout(timeout),
        Err(AcquireError::TimedOut)
    ));
    assert!(started.elapsed() >= timeout);
    assert_eq!(
        sem.value(),
        0,
        "the plain semaphore does not reclaim (RobustSemaphore does)"
    );
}

/// A plain semaphore counts no holders, so a permit moved into a child
/// needs no adopting: `adopt` there is `Ok` and changes nothing, and the
/// child's drop releases the permit once.
#[test]
fn adopting_a_plain_permit_in_a_child_changes_nothing() {
    let shared = Shared::new(Semaphore::new(1)).unwrap();
    let sem = &*shared;
    let permit = sem.acquire();
    let child = Process::new(move || {
        let mut permit = permit;
        // SAFETY: moved into this closure; the parent never drops it.
        let adopted = unsafe { permit.adopt() };
        (adopted.is_ok(), sem.value())
    })
    .start()
    .unwrap();
    assert_eq!(child.join().unwrap(), (true, 0));
    assert_eq!(sem.value(), 1);
}

/// `Semaphore::default()` is Python's `Semaphore()`: one permit, shared the
/// usual way; a child finds it taken while the parent holds it and gets it
/// once the parent lets it go. It is also unbounded, as Python's.
#[test]
fn the_default_semaphore_has_one_permit() {
    let sem = Shared::new(Semaphore::default()).unwrap();
    assert_eq!(sem.value(), 1);
    let held = Shared::new(Futex::new(0)).unwrap();
    let let_go = Shared::new(Futex::new(0)).unwrap();
    let permit = sem.acquire();
    let child = Process::new(|| {
        let busy = matches!(sem.try_acquire(), Err(AcquireError::WouldBlock));
        raise(&held);
        wait_for(&let_go, 1);
        let got = sem.acquire_timeout(GENEROUS).is_ok();
        (busy, got)
    })
    .start()
    .unwrap();
    wait_for(&held, 1);
    drop(permit);
    raise(&let_go);
    assert_eq!(child.join().unwrap(), (true, true));
    assert_eq!(sem.value(), 1, "the child released its permit");
    sem.release().unwrap();
    assert_eq!(sem.value(), 2, "unbounded");
}
