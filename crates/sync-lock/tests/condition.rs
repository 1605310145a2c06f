//! `Condition` (Python's `Condition()`, owning an `RLock`) across processes:
//! a wait gives up every level and takes them back, a killed waiter blocks
//! nobody, a holder that dies is reported to the waiter, misuse panics.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use daemon::Process;
use shm::{Futex, Shared, ShmSafe};
use sync_lock::Condition;
use testkit::{park_until_killed, raise, wait_for, wait_until, GENEROUS};

#[derive(ShmSafe)]
#[repr(C)]
struct Flag {
    set: AtomicBool,
    cond: Condition,
}

fn flag() -> Shared<Flag> {
    Shared::new(Flag {
        set: AtomicBool::new(false),
        cond: Condition::new(),
    })
    .unwrap()
}

/// Python's wait releases the RLock however deep the caller holds it
/// (`_release_save`) and restores that depth (`_acquire_restore`): a
/// notifier in another process gets in although the waiter locked twice.
#[test]
fn a_wait_gives_up_every_level_and_takes_them_back() {
    let f = flag();
    let outer = f.cond.lock().unwrap();
    let inner = f.cond.lock().unwrap();
    assert_eq!(f.cond.n_waiting(), 0);
    let notifier = Process::new(|| {
        wait_until("the parent waits", || f.cond.n_waiting() == 1);
        // Blocks for ever if the waiter kept one of its two levels.
        let _guard = f
            .cond
            .lock_timeout(GENEROUS)
            .expect("the lock was given up");
        f.set.store(true, Ordering::SeqCst);
        f.cond.notify_all();
    })
    .start()
    .unwrap();
    let (inner, result) = f
        .cond
        .wait_timeout_while(inner, GENEROUS, || !f.set.load(Ordering::SeqCst))
        .unwrap();
    assert!(!result.timed_out(), "the notifier never got the lock");
    notifier.join().unwrap();
    assert!(f.cond.is_held_by_current_thread());
    drop(inner);
    // One level left: the outer guard's.
    assert!(f.cond.is_held_by_current_thread());
    let child_got_it = Process::new(|| f.cond.try_lock().is_ok()).start().unwrap();
    assert!(
        !child_got_it.join().unwrap(),
        "the outer level is held again"
    );
    drop(outer);
    let child_got_it = Process::new(|| f.cond.try_lock().is_ok()).start().unwrap();
    assert!(child_got_it.join().unwrap(), "both levels released");
}

#[test]
fn a_timed_out_wait_holds_every_level_again() {
    let f = flag();
    let outer = f.cond.lock().unwrap();
    let inner = f.cond.lock().unwrap();
    let (inner, result) = f
        .cond
        .wait_timeout(inner, Duration::from_millis(10))
        .unwrap();
    assert!(result.timed_out());
    let child_got_it = Process::new(|| f.cond.try_lock().is_ok()).start().unwrap();
    assert!(!child_got_it.join().unwrap());
    drop((inner, outer));
    let child_got_it = Process::new(|| f.cond.try_lock().is_ok()).start().unwrap();
    assert!(child_got_it.join().unwrap());
}

#[test]
fn notify_n_ends_n_waits_of_other_processes() {
    #[derive(ShmSafe)]
    #[repr(C)]
    struct Room {
        cond: Condition,
        woken: AtomicU32,
    }
    let room = Shared::new(Room {
        cond: Condition::new(),
        woken: AtomicU32::new(0),
    })
    .unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            Process::new(|| {
                let guard = room.cond.lock().unwrap();
                let (_guard, result) = room.cond.wait_timeout(guard, GENEROUS).unwrap();
                if !result.timed_out() {
                    room.woken.fetch_add(1, Ordering::SeqCst);
                }
            })
            .start()
            .unwrap()
        })
        .collect();
    wait_until("three waits", || room.cond.n_waiting() == 3);
    {
        let _guard = room.cond.lock().unwrap();
        assert_eq!(room.cond.notify(2), 2);
    }
    wait_until("two woken", || room.woken.load(Ordering::SeqCst) == 2);
    assert_eq!(room.cond.n_waiting(), 1, "exactly one still waits");
    room.cond.notify_all();
    for w in waiters {
        w.join().unwrap();
    }
    assert_eq!(room.woken.load(Ordering::SeqCst), 3);
}

#[test]
fn a_killed_waiter_blocks_neither_notifiers_nor_other_waiters() {
    let f = flag();
    let waiter = || {
        Process::new(|| {
            let guard = f.cond.lock().unwrap();
            let (_guard, result) = f
                .cond
                .wait_timeout_while(guard, GENEROUS, || !f.set.load(Ordering::SeqCst))
                .unwrap();
            !result.timed_out()
        })
        .start()
        .unwrap()
    };
    let doomed = waiter();
    wait_until("the first waits", || f.cond.n_waiting() == 1);
    let survivor = waiter();
    wait_until("both wait", || f.cond.n_waiting() == 2);
    doomed.kill().unwrap();
    let _ = doomed.join();
    {
        let _guard = f.cond.lock().unwrap();
        f.set.store(true, Ordering::SeqCst);
        // One notification: not spent on the dead waiter.
        assert_eq!(f.cond.notify(1), 1);
    }
    assert!(survivor.join().unwrap(), "the surviving waiter was woken");
}

/// The notifier dies holding the lock after its notify: the waiter takes
/// the lock over and is told (`OwnerDied`), holding it, with its levels.
#[test]
fn a_holder_that_dies_is_reported_to_the_waiter() {
    let f = flag();
    let holding = Shared::new(Futex::new(0)).unwrap();
    let mut waiter = Process::new(|| {
        let outer = f.cond.lock().unwrap();
        let inner = f.cond.lock().unwrap();
        let died = f
            .cond
            .wait_timeout_while(inner, GENEROUS, || !f.set.load(Ordering::SeqCst))
            .expect_err("the holder died: reported");
        let (inner, result) = died.into_inner();
        assert!(!result.timed_out());
        assert!(f.cond.is_held_by_current_thread());
        drop(inner);
        assert!(f.cond.is_held_by_current_thread(), "the outer level kept");
        drop(outer);
        !f.cond.is_held_by_current_thread()
    })
    .start()
    .unwrap();
    wait_until("the waiter waits", || f.cond.n_waiting() == 1);
    let holder = Process::new(|| {
        let guard = f.cond.lock().unwrap();
        f.set.store(true, Ordering::SeqCst);
        f.cond.notify_all();
        std::mem::forget(guard);
        raise(&holding);
        park_until_killed();
    })
    .start()
    .unwrap();
    wait_for(&holding, 1);
    holder.kill().unwrap();
    let _ = holder.join();
    assert!(waiter.join_timeout(GENEROUS * 2).unwrap());
}

#[test]
#[should_panic(expected = "another lock")]
fn waiting_with_another_conditions_guard_panics() {
    let (a, b) = (Condition::new(), Condition::new());
    let guard = a.lock().unwrap();
    let _ = b.wait_timeout(guard, Duration::from_millis(1));
}

/// A guard inherited through fork holds nothing in the child: waiting with
/// it is refused, never a release of the parent's lock.
#[test]
fn a_guard_inherited_through_fork_cannot_wait() {
    let f = flag();
    let guard = f.cond.lock().unwrap();
    let shared = &f;
    let child = Process::new(move || {
        let f = shared;
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = f.cond.wait_timeout(guard, Duration::from_millis(1));
        }))
        .is_err();
        refused
    })
    .start()
    .unwrap();
    assert!(child.join().unwrap());
    assert!(
        f.cond.is_held_by_current_thread(),
        "the parent's hold untouched"
    );
}
