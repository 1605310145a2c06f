//! `Barrier` between processes: generations, leaders, and breaking instead
//! of hanging.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use daemon::Process;
use shm::{Shared, ShmSafe};
use sync_event::{Barrier, BarrierError};
use testkit::{deadline, in_processes, GENEROUS};

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
