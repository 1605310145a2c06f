//! `Futex` between processes: a wake crosses the process boundary, and
//! timeouts are never early.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use daemon::Process;
use shm::{Futex, Shared};
use testkit::{deadline, GENEROUS};

#[test]
fn a_wake_reaches_a_waiter_in_another_process() {
    let word = Shared::new(Futex::new(0)).unwrap();
    // One wait, no loop: `true` means it returned before its deadline.
    let child = Process::new(|| word.wait(0, Some(deadline(GENEROUS))))
        .start()
        .unwrap();
    // `wake` counts 1 only once the child really sleeps on the word, which
    // proves the futex is keyed by the shared page, not by our address.
    let limit = deadline(GENEROUS);
    while word.wake_one() == 0 {
        assert!(Instant::now() < limit, "the child never slept on the word");
        std::thread::yield_now();
    }
    assert!(child.join().unwrap(), "the child was woken, not timed out");
}

#[test]
fn wake_all_wakes_every_sleeper_and_counts_them() {
    let word = Shared::new(Futex::new(0)).unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Process::new(|| {
                let limit = deadline(GENEROUS);
                while word.load(Ordering::SeqCst) == 0 {
                    if !word.wait(0, Some(limit)) {
                        return false;
                    }
                }
                true
            })
            .start()
            .unwrap()
        })
        .collect();
    let limit = deadline(GENEROUS);
    // Set the word, then wake until every child has finished: a child that
    // had not slept yet sees the new value instead.
    word.store(1, Ordering::SeqCst);
    let mut woken = 0;
    for child in children {
        loop {
            woken += word.wake_all();
            if !child.is_alive() {
                break;
            }
            assert!(Instant::now() < limit, "a sleeper was never woken");
            std::thread::yield_now();
        }
        assert!(child.join().unwrap());
    }
    assert!(woken <= 4, "woke {woken} sleepers, only 4 exist");
}

#[test]
fn wait_returns_at_once_when_the_word_differs() {
    let word = Futex::new(5);
    let started = Instant::now();
    assert!(word.wait(4, Some(deadline(GENEROUS))));
    assert!(started.elapsed() < GENEROUS / 2);
}

#[test]
fn a_deadline_is_never_early() {
    let word = Futex::new(0);
    for timeout_ms in [0u64, 1, 5, 30] {
        let timeout = Duration::from_millis(timeout_ms);
        let started = Instant::now();
        let limit = started + timeout;
        while word.wait(0, Some(limit)) {}
        let waited = started.elapsed();
        assert!(
            waited >= timeout,
            "returned after {waited:?}, before {timeout:?}"
        );
        assert!(waited < timeout + GENEROUS / 2, "overslept: {waited:?}");
    }
}

#[test]
fn a_past_deadline_returns_false_without_sleeping() {
    let word = Futex::new(0);
    assert!(!word.wait(0, Some(Instant::now() - Duration::from_millis(1))));
}
