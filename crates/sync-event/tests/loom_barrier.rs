//! Loom models of [`Barrier`] (lock-free: one CAS per step on its state
//! word, one slot per waiting party): every party of a generation gets the
//! same outcome, with exactly one leader and distinct indices; an abort
//! racing a generation gives all its parties one outcome; a party whose
//! process dies while it waits breaks the generation for the others
//! instead of leaving them asleep; an action runs once, before any party
//! returns, and a party that dies inside it breaks the generation. Built
//! only under `cfg(loom)`; see
//! `shm::sync` for how to run.

#![cfg(loom)]

// The helpers of sync-lock's models, shared rather than copied.
#[path = "../../sync-lock/tests/loom_support/mod.rs"]
mod loom_support;

use std::panic::{catch_unwind, AssertUnwindSafe};

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use shm::pid::Identity;
use shm::sync::model;
use sync_event::{Barrier, BarrierError, BarrierWaitResult};

use loom_support::{check, process};

type Outcome = Result<BarrierWaitResult, BarrierError>;

/// A thread playing `who` that waits at `barrier` `rounds` times (no
/// deadline) and returns the outcomes.
fn party(barrier: &Arc<Barrier>, who: Identity, rounds: usize) -> thread::JoinHandle<Vec<Outcome>> {
    let barrier = Arc::clone(barrier);
    thread::spawn(move || {
        model::play(who);
        (0..rounds).map(|_| barrier.wait()).collect()
    })
}

/// Checks one generation's outcomes: all released, indices `0..n` each
/// once, exactly one leader (the last index).
fn released_together(outcomes: &[Outcome]) {
    let mut indices: Vec<u32> = outcomes
        .iter()
        .map(|o| o.as_ref().expect("released").index())
        .collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..outcomes.len() as u32).collect::<Vec<_>>());
    let leaders: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().filter(|r| r.is_leader()))
        .collect();
    assert_eq!(leaders.len(), 1, "{outcomes:?}");
    assert_eq!(leaders[0].index(), outcomes.len() as u32 - 1);
}

#[test]
fn three_parties_are_released_together() {
    check("barrier: 3 parties", 2, || {
        let barrier = Arc::new(Barrier::new(3).expect("3 parties"));
        let others = [
            party(&barrier, process(10, 1), 1),
            party(&barrier, process(20, 1), 1),
        ];
        let mut outcomes = vec![barrier.wait()];
        for p in others {
            outcomes.extend(p.join().unwrap());
        }
        released_together(&outcomes);
        assert_eq!(barrier.n_waiting(), 0);
    });
}

/// Two parties through two generations: a fast party's second arrival
/// never counts in the first generation, nor leaves the slow one's outcome
/// untold.
#[test]
fn two_parties_two_generations() {
    check("barrier: 2 parties, 2 generations", 2, || {
        let barrier = Arc::new(Barrier::new(2).expect("2 parties"));
        let other = party(&barrier, process(10, 1), 2);
        let mine: Vec<Outcome> = (0..2).map(|_| barrier.wait()).collect();
        let theirs = other.join().unwrap();
        for round in 0..2 {
            released_together(&[mine[round].clone(), theirs[round].clone()]);
        }
    });
}

/// `abort` races two parties of a 2-party barrier: whether their
/// generation was released or broken, both get the same outcome.
#[test]
fn an_abort_racing_a_generation_gives_its_parties_one_outcome() {
    check("barrier: abort racing 2 parties", 3, || {
        let barrier = Arc::new(Barrier::new(2).expect("2 parties"));
        let parties = [
            party(&barrier, process(10, 1), 1),
            party(&barrier, process(20, 1), 1),
        ];
        barrier.abort();
        let outcomes: Vec<Outcome> = parties
            .into_iter()
            .flat_map(|p| p.join().unwrap())
            .collect();
        match &outcomes[..] {
            [Ok(_), Ok(_)] => released_together(&outcomes),
            [Err(BarrierError::Broken), Err(BarrierError::Broken)] => {}
            _ => panic!("one generation, two outcomes: {outcomes:?}"),
        }
        assert!(barrier.is_broken());
    });
}

/// A party waiting in `barrier` whose process another thread kills once it
/// sleeps: `None` if it died, its outcome if it finished first.
fn mortal_party(
    barrier: &Arc<Barrier>,
    who: Identity,
    done: &Arc<AtomicBool>,
) -> thread::JoinHandle<Option<Outcome>> {
    let (barrier, done) = (Arc::clone(barrier), Arc::clone(done));
    thread::spawn(move || {
        model::play(who);
        let outcome = catch_unwind(AssertUnwindSafe(|| barrier.wait()));
        done.store(true, Ordering::SeqCst);
        match outcome {
            Ok(outcome) => Some(outcome),
            Err(payload) => {
                assert!(payload.is::<model::Gone>(), "only death ends it");
                None
            }
        }
    })
}

/// Kills process `who` (the calling thread is another of its threads) once
/// one of its threads sleeps in the barrier, or it finished.
fn kill_when_asleep(who: Identity, done: &AtomicBool) {
    model::play(who);
    while model::sleeping(who) == 0 && !done.load(Ordering::SeqCst) {
        thread::yield_now();
    }
    model::die();
}

/// A 3-party barrier where only two wait, and one of them dies asleep:
/// the other is not left asleep for ever, it gets `Broken`.
#[test]
fn a_party_that_dies_waiting_breaks_the_generation() {
    check("barrier: a party dies waiting", 3, || {
        let barrier = Arc::new(Barrier::new(3).expect("3 parties"));
        let (mortal, done) = (process(30, 1), Arc::new(AtomicBool::new(false)));
        let dying = mortal_party(&barrier, mortal, &done);
        let survivor = party(&barrier, process(20, 1), 1);
        kill_when_asleep(mortal, &done);
        assert!(dying.join().unwrap().is_none(), "it could not pass");
        let outcome = survivor.join().unwrap();
        assert_eq!(outcome, [Err(BarrierError::Broken)]);
        assert!(barrier.is_broken());
    });
}

/// A 3-party barrier where all three wait and one dies asleep: the two
/// survivors get one outcome (released, if the last arrived before the
/// death was noticed; else broken).
///
/// Out of `.ci/run`: four threads make it slow (582,562 interleavings,
/// 138 s, at preemption bound 1). Run it with `--ignored`.
#[test]
#[ignore = "slow: 582,562 interleavings (138 s) at preemption bound 1; run with --ignored"]
fn the_survivors_of_a_death_get_one_outcome() {
    check("barrier: a party dies, 2 survivors", 1, || {
        let barrier = Arc::new(Barrier::new(3).expect("3 parties"));
        let (mortal, done) = (process(30, 1), Arc::new(AtomicBool::new(false)));
        let dying = mortal_party(&barrier, mortal, &done);
        let survivors = [
            party(&barrier, process(10, 1), 1),
            party(&barrier, process(20, 1), 1),
        ];
        kill_when_asleep(mortal, &done);
        let died = dying.join().unwrap();
        let outcomes: Vec<Outcome> = survivors
            .into_iter()
            .flat_map(|p| p.join().unwrap())
            .collect();
        match &outcomes[..] {
            [Ok(_), Ok(_)] => {
                let mut all = outcomes.clone();
                all.extend(died);
                if all.len() == 3 {
                    released_together(&all);
                }
            }
            [Err(BarrierError::Broken), Err(BarrierError::Broken)] => {}
            _ => panic!("one generation, two outcomes: {outcomes:?}"),
        }
    });
}

/// A party of a 2-party barrier that passes `action`: its outcome, and how
/// many times the action had run when it returned.
fn acting_party(
    barrier: &Arc<Barrier>,
    who: Identity,
    runs: &Arc<AtomicUsize>,
) -> thread::JoinHandle<(Outcome, usize)> {
    let (barrier, runs) = (Arc::clone(barrier), Arc::clone(runs));
    thread::spawn(move || {
        model::play(who);
        let outcome = barrier.wait_with_action(|| {
            runs.fetch_add(1, Ordering::SeqCst);
        });
        (outcome, runs.load(Ordering::SeqCst))
    })
}

/// Two parties pass the same action: it runs exactly once, in the leader,
/// and neither party returns before it has run.
#[test]
fn the_action_runs_once_before_anyone_is_released() {
    check("barrier: 2 parties with an action", 2, || {
        let barrier = Arc::new(Barrier::new(2).expect("2 parties"));
        let runs = Arc::new(AtomicUsize::new(0));
        let other = acting_party(&barrier, process(10, 1), &runs);
        let mine = barrier.wait_with_action(|| {
            runs.fetch_add(1, Ordering::SeqCst);
        });
        let seen = runs.load(Ordering::SeqCst);
        let (theirs, seen_by_them) = other.join().unwrap();
        released_together(&[mine, theirs]);
        assert_eq!((seen, seen_by_them), (1, 1), "once, before any return");
    });
}

/// A 2-party barrier: the last party's process dies inside the action
/// (parked there): the other gets `Broken` instead of sleeping for ever.
#[test]
fn a_party_that_dies_in_the_action_breaks_the_generation() {
    check("barrier: a party dies in the action", 2, || {
        let barrier = Arc::new(Barrier::new(2).expect("2 parties"));
        let waiter_process = process(20, 1);
        let waiter = party(&barrier, waiter_process, 1);
        // The mortal party comes once the other sleeps in the barrier: it
        // is the last to arrive, and runs the action.
        while model::sleeping(waiter_process) == 0 {
            thread::yield_now();
        }
        let mortal = process(30, 1);
        let dying = {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                model::play(mortal);
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    barrier.wait_with_action(|| {
                        // Parked inside the action until killed (a timed
                        // wait: the model ends those at a death).
                        let parked = shm::Futex::new(0);
                        let far = shm::sync::now() + std::time::Duration::from_secs(3600);
                        parked.wait(0, Some(far));
                        unreachable!("nobody wakes it");
                    })
                }));
                let payload = outcome.expect_err("it can only die");
                assert!(payload.is::<model::Gone>(), "only death ends it");
            })
        };
        kill_when_asleep(mortal, &AtomicBool::new(false));
        dying.join().unwrap();
        assert_eq!(waiter.join().unwrap(), [Err(BarrierError::Broken)]);
        assert!(barrier.is_broken());
    });
}
