//! `Barrier` between processes: generations, leaders, and breaking instead
//! of hanging.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use daemon::Process;
use shm::crash::{self, Action};
use shm::{Shared, ShmSafe};
use sync_event::{Barrier, BarrierError, MAX_PARTIES};
use testkit::{deadline, in_processes, wait_stopped_or_exited, wait_until, GENEROUS};

#[derive(ShmSafe)]
#[repr(C)]
struct Race {
    barrier: Barrier,
    /// Per generation, how many parties arrived and how many passed.
    arrived: [AtomicU32; 100],
    passed: [AtomicU32; 100],
    leaders: AtomicU32,
}

/// Waits (at most GENEROUS) until `parties` processes wait in `barrier`.
fn wait_until_waiting(barrier: &Barrier, parties: u32) {
    let limit = deadline(GENEROUS);
    while barrier.n_waiting() < parties {
        assert!(
            Instant::now() < limit,
            "only {} parties arrived",
            barrier.n_waiting()
        );
        std::thread::yield_now();
    }
}

/// A child's error, as text that can travel back to the parent.
fn failure<T>(result: Result<T, BarrierError>) -> Option<String> {
    result.err().map(|e| e.to_string())
}

#[test]
fn four_processes_keep_step_for_a_hundred_generations() {
    let race = Shared::new(Race {
        barrier: Barrier::new(4).unwrap(),
        arrived: [const { AtomicU32::new(0) }; 100],
        passed: [const { AtomicU32::new(0) }; 100],
        leaders: AtomicU32::new(0),
    })
    .unwrap();
    in_processes(4, |_| {
        for generation in 0..100 {
            race.arrived[generation].fetch_add(1, Ordering::SeqCst);
            let result = race.barrier.wait_timeout(GENEROUS).expect("no party fails");
            // Nobody passes before all four have arrived.
            assert_eq!(race.arrived[generation].load(Ordering::SeqCst), 4);
            assert!(result.index() < 4);
            if result.is_leader() {
                race.leaders.fetch_add(1, Ordering::SeqCst);
            }
            race.passed[generation].fetch_add(1, Ordering::SeqCst);
        }
    });
    assert!(race.passed.iter().all(|p| p.load(Ordering::SeqCst) == 4));
    assert_eq!(
        race.leaders.load(Ordering::SeqCst),
        100,
        "one leader per generation"
    );
}

#[test]
fn a_party_killed_while_others_wait_breaks_the_barrier_for_them() {
    let barrier = Shared::new(Barrier::new(4).unwrap()).unwrap();
    let waiter = || {
        Process::new(|| {
            let started = Instant::now();
            (failure(barrier.wait_timeout(GENEROUS)), started.elapsed())
        })
        .start()
        .unwrap()
    };
    let doomed = waiter();
    let survivors = [waiter(), waiter()];
    wait_until_waiting(&barrier, 3);
    doomed.kill().unwrap();
    let _ = doomed.join();
    for survivor in survivors {
        let (error, waited) = survivor.join().unwrap();
        assert_eq!(error, Some(BarrierError::Broken.to_string()));
        assert!(waited < GENEROUS, "broken before the timeout: {waited:?}");
    }
    assert!(barrier.is_broken());
    assert_eq!(
        barrier.wait_timeout(GENEROUS).unwrap_err(),
        BarrierError::Broken
    );

    // reset makes it usable again.
    barrier.reset();
    assert!(!barrier.is_broken());
    let two = Shared::new(Barrier::new(2).unwrap()).unwrap();
    let other = Process::new(|| two.wait_timeout(GENEROUS).is_ok())
        .start()
        .unwrap();
    assert!(two.wait_timeout(GENEROUS).is_ok());
    assert!(other.join().unwrap());
}

#[test]
fn a_timeout_breaks_it_for_everyone() {
    let barrier = Shared::new(Barrier::new(3).unwrap()).unwrap();
    let patient = Process::new(|| failure(barrier.wait_timeout(GENEROUS)))
        .start()
        .unwrap();
    wait_until_waiting(&barrier, 1);
    let started = Instant::now();
    assert_eq!(
        barrier.wait_timeout(Duration::from_millis(20)).unwrap_err(),
        BarrierError::TimedOut
    );
    assert!(started.elapsed() >= Duration::from_millis(20));
    assert_eq!(
        patient.join().unwrap(),
        Some(BarrierError::Broken.to_string())
    );
}

#[test]
fn reset_and_abort_break_current_waiters() {
    let barrier = Shared::new(Barrier::new(2).unwrap()).unwrap();
    let waiting = Process::new(|| failure(barrier.wait_timeout(GENEROUS)))
        .start()
        .unwrap();
    wait_until_waiting(&barrier, 1);
    barrier.reset();
    assert_eq!(
        waiting.join().unwrap(),
        Some(BarrierError::Broken.to_string())
    );
    assert!(!barrier.is_broken(), "reset leaves it usable");

    barrier.abort();
    assert!(barrier.is_broken());
    assert_eq!(barrier.wait().unwrap_err(), BarrierError::Broken);
}

#[test]
fn zero_parties_is_an_error_and_one_party_never_waits() {
    assert_eq!(Barrier::new(0).unwrap_err(), BarrierError::NoParties);
    let alone = Barrier::new(1).unwrap();
    assert_eq!(alone.parties(), 1);
    for _ in 0..3 {
        assert!(alone.wait().unwrap().is_leader());
    }
}

/// A waiter that is stopped (SIGSTOP) while it waits in `barrier`, so that
/// it wakes only when the test says: the slowest possible waiter.
fn stopped_waiter(barrier: &Barrier, waiting_before: u32) -> daemon::Child<Option<String>> {
    let waiter = Process::new(|| failure(barrier.wait_timeout(GENEROUS * 2)))
        .start()
        .unwrap();
    wait_until_waiting(barrier, waiting_before + 1);
    waiter.signal(libc::SIGSTOP).unwrap();
    assert!(wait_stopped_or_exited(waiter.pid()));
    waiter
}

/// Two processes (this one and a child) pass `rounds` generations of a
/// two-party barrier.
fn pass_generations(barrier: &Barrier, rounds: usize) {
    let partner = Process::new(|| (0..rounds).all(|_| barrier.wait_timeout(GENEROUS).is_ok()))
        .start()
        .unwrap();
    for round in 0..rounds {
        assert!(barrier.wait_timeout(GENEROUS).is_ok(), "round {round}");
    }
    assert!(partner.join().unwrap());
}

#[test]
fn a_waiter_of_a_broken_generation_gets_broken_whatever_broke_it_and_after_reset() {
    for cause in ["abort", "timeout", "dead party"] {
        let barrier = Shared::new(Barrier::new(4).unwrap()).unwrap();
        let slow = stopped_waiter(&barrier, 0);
        match cause {
            "abort" => barrier.abort(),
            "timeout" => assert_eq!(
                barrier.wait_timeout(Duration::from_millis(5)).unwrap_err(),
                BarrierError::TimedOut
            ),
            _ => {
                let doomed = Process::new(|| failure(barrier.wait())).start().unwrap();
                wait_until_waiting(&barrier, 2);
                doomed.kill().unwrap();
                let _ = doomed.join();
                // The third party notices the death.
                assert_eq!(
                    barrier.wait_timeout(GENEROUS).unwrap_err(),
                    BarrierError::Broken
                );
            }
        }
        assert!(barrier.is_broken(), "{cause}");
        barrier.reset();
        assert!(!barrier.is_broken());
        slow.signal(libc::SIGCONT).unwrap();
        assert_eq!(
            slow.join().unwrap(),
            Some(BarrierError::Broken.to_string()),
            "{cause}, then reset: the slow waiter's generation was broken"
        );
    }
}

#[test]
fn a_slow_waiter_learns_its_own_generation_however_many_follow() {
    // Released, then fifty more generations, an abort and two resets
    // before it wakes: Ok.
    let barrier = Shared::new(Barrier::new(2).unwrap()).unwrap();
    let slow = stopped_waiter(&barrier, 0);
    assert!(barrier.wait_timeout(GENEROUS).unwrap().is_leader());
    pass_generations(&barrier, 25);
    barrier.abort();
    barrier.reset();
    barrier.reset();
    pass_generations(&barrier, 25);
    slow.signal(libc::SIGCONT).unwrap();
    assert_eq!(slow.join().unwrap(), None, "its generation was released");

    // Reset, then fifty released generations: Broken.
    let barrier = Shared::new(Barrier::new(2).unwrap()).unwrap();
    let slow = stopped_waiter(&barrier, 0);
    barrier.reset();
    pass_generations(&barrier, 50);
    slow.signal(libc::SIGCONT).unwrap();
    assert_eq!(slow.join().unwrap(), Some(BarrierError::Broken.to_string()));

    // Two resets, each with a waiter, before the slow one wakes: Broken,
    // and so for the second one.
    let barrier = Shared::new(Barrier::new(3).unwrap()).unwrap();
    let slow = stopped_waiter(&barrier, 0);
    barrier.reset();
    let second = stopped_waiter(&barrier, 0);
    barrier.reset();
    pass_generations(&Shared::new(Barrier::new(2).unwrap()).unwrap(), 1);
    for waiter in [second, slow] {
        waiter.signal(libc::SIGCONT).unwrap();
        assert_eq!(
            waiter.join().unwrap(),
            Some(BarrierError::Broken.to_string())
        );
    }
}

#[test]
fn more_than_sixty_four_parties_are_watched_and_the_limit_is_stated() {
    assert_eq!(
        Barrier::new(MAX_PARTIES + 1).unwrap_err(),
        BarrierError::TooManyParties { max: MAX_PARTIES }
    );
    assert_eq!(Barrier::new(MAX_PARTIES).unwrap().parties(), MAX_PARTIES);

    // 80 parties: the last to arrive (beyond the old limit of 64 watched
    // parties) dies; the others learn it at once instead of at their
    // timeout.
    const PARTIES: u32 = 80;
    let barrier = Shared::new(Barrier::new(PARTIES).unwrap()).unwrap();
    let waiters: Vec<_> = (0..PARTIES - 2)
        .map(|_| {
            Process::new(|| {
                let started = Instant::now();
                (failure(barrier.wait_timeout(GENEROUS)), started.elapsed())
            })
            .start()
            .unwrap()
        })
        .collect();
    wait_until_waiting(&barrier, PARTIES - 2);
    let doomed = Process::new(|| failure(barrier.wait())).start().unwrap();
    wait_until_waiting(&barrier, PARTIES - 1);
    doomed.kill().unwrap();
    let _ = doomed.join();
    for waiter in waiters {
        let (error, waited) = waiter.join().unwrap();
        assert_eq!(error, Some(BarrierError::Broken.to_string()));
        assert!(waited < GENEROUS / 2, "noticed the death late: {waited:?}");
    }
}

#[test]
fn a_stopped_party_delays_nobody_past_their_timeout() {
    // A party stopped half-way through arriving (its slot says it waits,
    // its arrival is not counted yet): the others return on time.
    let barrier = Shared::new(Barrier::new(3).unwrap()).unwrap();
    let stopped = Process::new(|| {
        crash::arm("barrier: waiting recorded", Action::Stop);
        failure(barrier.wait_timeout(GENEROUS))
    })
    .start()
    .unwrap();
    assert!(wait_stopped_or_exited(stopped.pid()), "never stopped");
    let timeout = Duration::from_millis(100);
    let started = Instant::now();
    let mine = barrier.wait_timeout(timeout);
    let waited = started.elapsed();
    assert!(mine.is_err(), "{mine:?}");
    assert!(
        waited >= timeout && waited < timeout + Duration::from_millis(500),
        "{waited:?}"
    );
    stopped.signal(libc::SIGCONT).unwrap();
    assert_eq!(
        stopped.join().unwrap(),
        Some(BarrierError::Broken.to_string())
    );
    wait_until("the barrier broken by the timeout", || barrier.is_broken());
}

/// Shared memory for the action tests: the barrier, and what the action
/// and the parties saw.
#[derive(ShmSafe)]
#[repr(C)]
struct Acted {
    barrier: Barrier,
    /// Per generation, how many times the action ran.
    runs: [AtomicU32; 20],
    /// Per generation, parties that returned before the action had run.
    early: [AtomicU32; 20],
}

#[test]
fn the_action_runs_once_per_generation_before_any_party_returns() {
    const PARTIES: usize = 4;
    const ROUNDS: usize = 20;
    let acted = Shared::new(Acted {
        barrier: Barrier::new(PARTIES as u32).unwrap(),
        runs: [const { AtomicU32::new(0) }; ROUNDS],
        early: [const { AtomicU32::new(0) }; ROUNDS],
    })
    .unwrap();
    let leaders = in_processes(PARTIES, |_| {
        let mut led = 0;
        for round in 0..ROUNDS {
            let result = acted
                .barrier
                .wait_timeout_with_action(GENEROUS, || {
                    // Every party is in: nobody has returned yet.
                    assert_eq!(acted.barrier.n_waiting(), PARTIES as u32);
                    acted.runs[round].fetch_add(1, Ordering::SeqCst);
                })
                .expect("no party fails");
            if acted.runs[round].load(Ordering::SeqCst) == 0 {
                acted.early[round].fetch_add(1, Ordering::SeqCst);
            }
            led += u32::from(result.is_leader());
        }
        led
    });
    for round in 0..ROUNDS {
        assert_eq!(acted.runs[round].load(Ordering::SeqCst), 1, "round {round}");
        assert_eq!(
            acted.early[round].load(Ordering::SeqCst),
            0,
            "round {round}"
        );
    }
    assert_eq!(
        leaders.iter().sum::<u32>(),
        ROUNDS as u32,
        "the leader ran it"
    );
}

#[test]
fn a_panicking_action_breaks_the_barrier_for_every_party_and_propagates() {
    let barrier = Barrier::shared(3).unwrap();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            Process::new(|| failure(barrier.wait_timeout_with_action(GENEROUS, || {})))
                .start()
                .unwrap()
        })
        .collect();
    wait_until_waiting(&barrier, 2);
    let started = Instant::now();
    let panicked = std::panic::catch_unwind(|| {
        barrier.wait_timeout_with_action(GENEROUS, || panic!("the action failed"))
    });
    let payload = panicked.expect_err("the panic propagates in the party that ran it");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"the action failed"));
    for waiter in waiters {
        assert_eq!(
            waiter.join().unwrap(),
            Some(BarrierError::Broken.to_string())
        );
    }
    assert!(
        started.elapsed() < GENEROUS,
        "broken at once, not by timeout"
    );
    assert!(barrier.is_broken());
    assert_eq!(barrier.wait().unwrap_err(), BarrierError::Broken);
}

#[test]
fn a_party_killed_inside_the_action_leaves_nobody_hanging() {
    let barrier = Barrier::shared(3).unwrap();
    let entered = Shared::new(shm::Futex::new(0)).unwrap();
    let waiter = || {
        Process::new(|| {
            let started = Instant::now();
            (failure(barrier.wait_timeout(GENEROUS)), started.elapsed())
        })
        .start()
        .unwrap()
    };
    let survivors = [waiter(), waiter()];
    wait_until_waiting(&barrier, 2);
    let doomed = Process::new(|| {
        failure(barrier.wait_with_action(|| {
            testkit::raise(&entered);
            testkit::park_until_killed();
        }))
    })
    .start()
    .unwrap();
    testkit::wait_for(&entered, 1);
    // It holds the generation: every party is in, nobody released.
    assert_eq!(barrier.n_waiting(), 3);
    let killer = testkit::sigkill_from_sibling(doomed.pid());
    killer.join().unwrap();
    let _ = doomed.join();
    for survivor in survivors {
        let (error, waited) = survivor.join().unwrap();
        assert_eq!(error, Some(BarrierError::Broken.to_string()));
        assert!(waited < GENEROUS, "broken before the timeout: {waited:?}");
    }
    assert!(barrier.is_broken());
}

#[test]
fn a_spare_party_arriving_during_the_action_waits_for_the_next_generation() {
    // Three processes at a two-party barrier: the third, arriving while
    // the action runs, is not counted in that generation (nor released by
    // it) but opens the next one.
    let barrier = Barrier::shared(2).unwrap();
    let entered = Shared::new(shm::Futex::new(0)).unwrap();
    let go = Shared::new(shm::Futex::new(0)).unwrap();
    let first = Process::new(|| failure(barrier.wait_timeout(GENEROUS)))
        .start()
        .unwrap();
    wait_until_waiting(&barrier, 1);
    let runner = Process::new(|| {
        failure(barrier.wait_timeout_with_action(GENEROUS, || {
            testkit::raise(&entered);
            testkit::wait_for(&go, 1);
        }))
    })
    .start()
    .unwrap();
    testkit::wait_for(&entered, 1);
    let generation = barrier.generation();
    let spare = Process::new(|| {
        testkit::raise(&entered);
        let result = barrier.wait_timeout(GENEROUS);
        (failure(result), barrier.generation())
    })
    .start()
    .unwrap();
    // Once the spare sleeps in its wait, it has seen the generation
    // complete: it must not be counted in (three "waiting" at a two-party
    // barrier) nor released with it.
    testkit::wait_for(&entered, 2);
    wait_until("the spare sleeps in its wait", || {
        testkit::process_state(spare.pid()) == Some(b'S')
    });
    assert_eq!(barrier.n_waiting(), 2);
    assert_eq!(barrier.generation(), generation);
    testkit::raise(&go);
    assert_eq!(first.join().unwrap(), None);
    assert_eq!(runner.join().unwrap(), None);
    wait_until_waiting(&barrier, 1);
    assert_eq!(barrier.generation(), generation + 1);
    assert!(barrier.wait_timeout(GENEROUS).is_ok());
    assert_eq!(spare.join().unwrap(), (None, generation + 2));
}

/// Runs `wait` in a child: its error and how long it took. A wait that
/// does not return within GENEROUS fails the test (the child is killed)
/// instead of hanging it.
fn timed_in_a_child<T>(wait: impl Fn() -> Result<T, BarrierError>) -> (Option<String>, Duration) {
    let mut child = Process::new(|| {
        let started = Instant::now();
        (failure(wait()), started.elapsed())
    })
    .start()
    .unwrap();
    let outcome = child.join_timeout(GENEROUS);
    if outcome.is_err() {
        let _ = child.kill();
    }
    outcome.expect("the wait returned by the barrier's default timeout")
}

#[test]
fn the_default_timeout_applies_to_wait_in_every_process() {
    let timeout = Duration::from_millis(100);
    let barrier = Barrier::shared_with_timeout(3, timeout).unwrap();
    assert_eq!(barrier.default_timeout(), Some(timeout));
    assert_eq!(Barrier::new(3).unwrap().default_timeout(), None);
    // A child's plain wait() gives up after the barrier's timeout (the
    // third party never comes) and breaks it for the other waiter.
    let patient = Process::new(|| failure(barrier.wait_timeout(GENEROUS)))
        .start()
        .unwrap();
    wait_until_waiting(&barrier, 1);
    let (error, waited) = timed_in_a_child(|| barrier.wait());
    assert_eq!(error, Some(BarrierError::TimedOut.to_string()));
    assert!(waited >= timeout, "timed out after {waited:?}");
    assert_eq!(
        patient.join().unwrap(),
        Some(BarrierError::Broken.to_string())
    );
    // wait_with_action uses it too.
    barrier.reset();
    let (error, waited) = timed_in_a_child(|| barrier.wait_with_action(|| {}));
    assert_eq!(error, Some(BarrierError::TimedOut.to_string()));
    assert!(waited >= timeout, "timed out after {waited:?}");
    // wait_timeout overrides it.
    barrier.reset();
    let longer = Process::new(|| failure(barrier.wait_timeout(GENEROUS)))
        .start()
        .unwrap();
    let late = Process::new(|| {
        let started = Instant::now();
        (failure(barrier.wait_timeout(GENEROUS)), started.elapsed())
    })
    .start()
    .unwrap();
    // Both wait past the default timeout, by their own.
    wait_until_waiting(&barrier, 2);
    // The passage of time is what is tested here, not a synchronisation:
    // both are known to wait already.
    std::thread::sleep(timeout * 3);
    assert_eq!(barrier.n_waiting(), 2, "nobody timed out by the default");
    assert!(barrier.wait().is_ok());
    assert_eq!(longer.join().unwrap(), None);
    let (error, waited) = late.join().unwrap();
    assert_eq!(error, None);
    assert!(waited >= timeout * 3, "{waited:?}");
}
