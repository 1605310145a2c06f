//! Review 14 (issue #18): reproducers for `Barrier`'s action, between real
//! processes. Ignored: they fail on the code as reviewed.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use daemon::{JoinError, Process};
use shm::{Futex, Shared, ShmSafe};
use sync_event::Barrier;
use testkit::{deadline, GENEROUS};

/// Waits (at most GENEROUS) until `parties` processes wait in `barrier`.
fn wait_until_waiting(barrier: &Barrier, parties: u32) {
    let limit = deadline(GENEROUS);
    while barrier.n_waiting() < parties {
        assert!(
            Instant::now() < limit,
            "only {} arrived",
            barrier.n_waiting()
        );
        std::thread::yield_now();
    }
}

#[derive(ShmSafe)]
#[repr(C)]
struct Acting {
    barrier: Barrier,
    /// Raised when the action starts.
    entered: Futex,
    /// Raised to let the action finish.
    go: Futex,
    /// 1 once the action has finished.
    finished: AtomicU32,
}

/// `wait_with_action` promises "no party of the generation returns before
/// [the action] has finished", and lists the exceptions (a panic, a death,
/// another party's timeout, a spare's timeout): `reset` is none of them.
/// Yet `reset()` called while the action runs ends the generation at once
/// (as for plain waiters): the other party returns `Broken` while the
/// action is still running, and the barrier is ready for a next generation
/// whose action may then run at the same time as this one. (Python's
/// `reset` cannot: the action runs under the barrier's lock, so `reset`
/// waits for it.)
#[test]
#[ignore = "review 14: reset() during the action releases the other parties (Broken) before the action has finished"]
fn reset_during_the_action_returns_no_party_before_the_action_finishes() {
    let acting = Shared::new(Acting {
        barrier: Barrier::new(2).unwrap(),
        entered: Futex::new(0),
        go: Futex::new(0),
        finished: AtomicU32::new(0),
    })
    .unwrap();
    let mut waiter = Process::new(|| {
        let result = acting.barrier.wait_timeout(GENEROUS);
        // What the action had done when this party returned.
        (
            result.err().map(|e| e.to_string()),
            acting.finished.load(Ordering::SeqCst),
        )
    })
    .start()
    .unwrap();
    wait_until_waiting(&acting.barrier, 1);
    let leader = Process::new(|| {
        acting
            .barrier
            .wait_timeout_with_action(GENEROUS, || {
                testkit::raise(&acting.entered);
                testkit::wait_for(&acting.go, 1);
                acting.finished.store(1, Ordering::SeqCst);
            })
            .err()
            .map(|e| e.to_string())
    })
    .start()
    .unwrap();
    testkit::wait_for(&acting.entered, 1);
    // A third process resets the barrier while the action runs (in a child:
    // should reset wait for the action, as Python's does, it must not hold
    // this test up).
    let resetter = Process::new(|| acting.barrier.reset()).start().unwrap();
    // The waiter must not return while the action runs: give it a bounded
    // while to (wrongly) do so, then let the action finish.
    let early = waiter.join_timeout(Duration::from_secs(2));
    testkit::raise(&acting.go);
    let (error, finished_then) = match early {
        Ok(outcome) => outcome,
        Err(JoinError::Timeout { .. }) => waiter.join_timeout(GENEROUS).unwrap(),
        Err(other) => panic!("the waiter: {other}"),
    };
    let led = leader.join().unwrap();
    resetter.join().unwrap();
    assert_eq!(
        finished_then, 1,
        "a party returned ({error:?}) while the action was still running, because reset() \
         was called during it (the leader then got {led:?}); reset is not among the documented \
         exceptions"
    );
}

/// The same cause, seen from the next generation: once `reset()` has ended
/// the generation whose action still runs, the barrier gathers the next
/// one, and its last party runs *its* action at the same time. Python runs
/// every action under the barrier's lock: one at a time, each generation's
/// after the last one's.
#[test]
#[ignore = "review 14: after reset() during an action, the next generation's action runs while the first still runs"]
fn after_reset_during_an_action_the_next_action_does_not_overlap_it() {
    let acting = Shared::new(Acting {
        barrier: Barrier::new(2).unwrap(),
        entered: Futex::new(0),
        go: Futex::new(0),
        finished: AtomicU32::new(0),
    })
    .unwrap();
    let waiter = Process::new(|| {
        // Its first wait ends (Broken, by the reset); it comes again.
        let _ = acting.barrier.wait_timeout(GENEROUS);
        acting.barrier.wait_timeout(GENEROUS).is_ok()
    })
    .start()
    .unwrap();
    wait_until_waiting(&acting.barrier, 1);
    let leader = Process::new(|| {
        let _ = acting.barrier.wait_timeout_with_action(GENEROUS, || {
            testkit::raise(&acting.entered);
            testkit::wait_for(&acting.go, 1);
            acting.finished.store(1, Ordering::SeqCst);
        });
    })
    .start()
    .unwrap();
    testkit::wait_for(&acting.entered, 1);
    // Bounded: the first action is let go after GENEROUS at the latest
    // (should reset() wait for it, as Python's does).
    let letgo = Process::new(|| {
        let _ = acting.go.wait(0, Some(Instant::now() + GENEROUS));
        testkit::raise(&acting.go);
    })
    .start()
    .unwrap();
    acting.barrier.reset();
    // The next generation: the waiter and this process.
    let mut first_still_running = None;
    let second = acting.barrier.wait_timeout_with_action(GENEROUS, || {
        first_still_running = Some(acting.finished.load(Ordering::SeqCst) == 0);
    });
    testkit::raise(&acting.go);
    letgo.join().unwrap();
    leader.join().unwrap();
    let _ = waiter.join();
    assert!(second.is_ok(), "{second:?}");
    assert_eq!(
        first_still_running,
        Some(false),
        "the second generation's action ran while the first generation's was still running"
    );
}
