//! Review 2: the rewritten Condvar (a slot per waiter).

use std::time::Duration;

use daemon::Process;
use shm::crash::{self, Action};
use shm::{Shared, ShmSafe};
use sync_lock::{Condvar, Mutex};
use testkit::{wait_stopped_or_exited, wait_until};

#[derive(ShmSafe)]
#[repr(C)]
struct Arena {
    /// How many waiters have entered their wait.
    waiting: Mutex<u32>,
    cv: Condvar,
}

fn arena() -> Shared<Arena> {
    Shared::new(Arena {
        waiting: Mutex::new(0),
        cv: Condvar::new(),
    })
    .unwrap()
}

/// Enters a wait and returns whether it ended notified (not timed out).
fn waiter(arena: &Arena, timeout: Duration) -> bool {
    let mut g = arena.waiting.lock().unwrap_or_else(|d| d.into_inner());
    *g += 1;
    let (_g, result) = arena
        .cv
        .wait_timeout(g, timeout)
        .unwrap_or_else(|d| d.into_inner());
    !result.timed_out()
}

fn entered(arena: &Arena) -> u32 {
    *arena.waiting.lock().unwrap_or_else(|d| d.into_inner())
}

/// A notify that passes over a dead waiter frees its slot in two stores
/// (word, then owner). Between them the slot reads FREE with a dead owner,
/// so a new waiter claims it (CAS dead → me) and records its wait; the
/// notifier then stores owner 0 over the new waiter's claim. The live
/// waiter's slot now reads WAITING with owner 0, which the next notify
/// takes for a dead waiter: it frees the slot instead of notifying, returns
/// 0, and the waiter is never woken (without a timeout: for ever).
#[test]
fn a_waiter_that_claims_a_slot_being_freed_by_a_notify_is_notified() {
    let arena = arena();
    let a = &*arena;
    // D enters a wait and is killed right after (holding the mutex).
    let dead = Process::new(move || {
        crash::arm("condvar: entered", Action::Kill);
        waiter(a, Duration::from_secs(30))
    })
    .start()
    .unwrap();
    assert!(dead.join().is_err(), "D was killed mid-wait");
    // N notifies, passes D over, and stops between freeing D's slot word
    // and giving up D's ownership.
    let notifier = Process::new(move || {
        crash::arm("condvar: dead passed over", Action::Stop);
        a.cv.notify(1)
    })
    .start()
    .unwrap();
    assert!(
        wait_stopped_or_exited(notifier.pid()),
        "N stops after passing D over"
    );
    // W begins a wait meanwhile (and so claims D's slot).
    let w = Process::new(move || waiter(a, Duration::from_secs(3)))
        .start()
        .unwrap();
    wait_until("W waits", || entered(a) == 2);
    notifier.signal(libc::SIGCONT).unwrap();
    assert_eq!(notifier.join().unwrap(), 0, "N found only dead D");
    // W waits, alive, since before this notify: it must end W's wait.
    let ended = a.cv.notify(1);
    let w_notified = w.join().unwrap();
    assert!(
        ended == 1 && w_notified,
        "notify(1) with one live waiter ended {ended} waits; W ended notified: {w_notified}"
    );
}

/// Waiters killed mid-wait keep their slots until some notify passes over
/// them: `enter` reclaims a dead waiter's slot only when it is not WAITING.
/// So `MAX_WAITERS` kills with no notify between them fill the table for
/// good, and every later wait "returns at once, as a spurious wake-up":
/// a `wait_timeout` reports notified (not timed out) though nobody
/// notified, and `wait_while` spins. Killed waiters do block the living.
#[test]
fn waiters_killed_mid_wait_do_not_fill_the_table() {
    let arena = arena();
    let a = &*arena;
    for i in 1..=sync_lock::MAX_WAITERS as u32 {
        let w = Process::new(move || waiter(a, Duration::from_secs(60)))
            .start()
            .unwrap();
        wait_until("the waiter waits", || entered(a) == i);
        w.kill().unwrap();
        assert!(w.join().is_err());
    }
    let g = a.waiting.lock().unwrap_or_else(|d| d.into_inner());
    let start = std::time::Instant::now();
    let (_g, result) =
        a.cv.wait_timeout(g, Duration::from_millis(500))
            .unwrap_or_else(|d| d.into_inner());
    assert!(
        result.timed_out(),
        "with every waiter dead and no notify, wait_timeout(500 ms) returned after {:?} \
         reporting a notification",
        start.elapsed()
    );
}
