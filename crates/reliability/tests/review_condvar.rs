//! Review: Condvar grants are anonymous. A notify that chose waiter W1 can
//! be taken by waiters that entered *after* that notify, as soon as a later
//! notify moves `granted` past their entry: a slow (here: stopped) W1 then
//! finds every grant taken and is never woken, while the later notify(1)
//! ends two waits.

use std::time::Duration;

use daemon::Process;
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

#[test]
fn a_notified_waiter_keeps_its_notification_when_later_waiters_arrive() {
    let arena = Shared::new(Arena {
        waiting: Mutex::new(0),
        cv: Condvar::new(),
    })
    .unwrap();
    let a = &*arena;
    // W1 waits (up to 4 s), and is stopped mid-wait.
    let w1 = Process::new(move || waiter(a, Duration::from_secs(4)))
        .start()
        .unwrap();
    wait_until("W1 waits", || entered(a) == 1);
    w1.signal(libc::SIGSTOP).unwrap();
    assert!(wait_stopped_or_exited(w1.pid()));
    // The only waiter is W1: this notify is W1's.
    assert_eq!(a.cv.notify(1), 1);
    // Two more waiters begin after that notify.
    let w2 = Process::new(move || waiter(a, Duration::from_secs(2)))
        .start()
        .unwrap();
    let w3 = Process::new(move || waiter(a, Duration::from_secs(2)))
        .start()
        .unwrap();
    wait_until("W2 and W3 wait", || entered(a) == 3);
    // Ends one of W2, W3.
    assert_eq!(a.cv.notify(1), 1);
    let ended_2 = w2.join().unwrap();
    let ended_3 = w3.join().unwrap();
    w1.signal(libc::SIGCONT).unwrap();
    let ended_1 = w1.join().unwrap();
    assert!(
        ended_1 && u32::from(ended_2) + u32::from(ended_3) == 1,
        "W1 (notified by the first notify(1)) ended notified: {ended_1}; of W2, W3 (which \
         began after it) the second notify(1) ended {} waits (W2 {ended_2}, W3 {ended_3})",
        u32::from(ended_2) + u32::from(ended_3)
    );
}
