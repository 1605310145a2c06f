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
