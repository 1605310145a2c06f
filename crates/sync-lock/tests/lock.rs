//! `Lock` between processes: mutual exclusion, timeouts, and every way a
//! process can die around it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use daemon::{JoinError, Process};
use shm::{Futex, Shared, ShmSafe};
use sync_lock::{Lock, TryLockError};
use testkit::{
    deadline, in_processes, monotonic_ns, park_until_killed, raise, sigkill_from_sibling, wait_for,
    Rng, GENEROUS,
};

#[derive(ShmSafe)]
#[repr(C)]
struct Guarded {
    lock: Lock,
    /// Incremented with a separate load and store: only the lock keeps it exact.
    counter: AtomicU64,
    /// Futex the holder raises once it holds the lock.
    holding: Futex,
}

fn guarded() -> Shared<Guarded> {
    Shared::new(Guarded {
        lock: Lock::new(),
        counter: AtomicU64::new(0),
        holding: Futex::new(0),
    })
    .unwrap()
}

/// Locks, raises `holding`, then keeps the lock until killed (or GENEROUS).
fn hold_until_killed(g: &Guarded) {
    let _guard = g.lock.lock().unwrap_or_else(|d| d.into_inner());
    raise(&g.holding);
    park_until_killed();
}

#[test]
fn four_processes_never_overlap() {
    const EACH: u64 = 100_000;
    let g = guarded();
    in_processes(4, |_| {
        for _ in 0..EACH {
            let _guard = g.lock.lock().expect("nobody dies here");
            let v = g.counter.load(Ordering::Relaxed);
            g.counter.store(v + 1, Ordering::Relaxed);
        }
    });
    assert_eq!(g.counter.load(Ordering::SeqCst), 4 * EACH);
    assert!(!g.lock.is_locked());
}

#[test]
fn try_lock_fails_at_once_while_another_process_holds_it() {
    let g = guarded();
    let holder = Process::new(|| hold_until_killed(&g)).start().unwrap();
    wait_for(&g.holding, 1);
    assert_eq!(g.lock.owner(), Some(holder.pid()));
    let started = Instant::now();
    assert!(matches!(g.lock.try_lock(), Err(TryLockError::WouldBlock)));
    assert!(started.elapsed() < GENEROUS / 2);
    holder.kill().unwrap();
    let _ = holder.join();
}

#[test]
fn lock_timeout_fails_on_time_and_succeeds_when_freed_in_time() {
    let g = guarded();
    // Held by a child that lets go when told.
    let release = Shared::new(Futex::new(0)).unwrap();
    let holder = Process::new(|| {
        let _guard = g.lock.lock().unwrap();
        raise(&g.holding);
        wait_for(&release, 1);
    })
    .start()
    .unwrap();
    wait_for(&g.holding, 1);

    let timeout = Duration::from_millis(20);
    let started = Instant::now();
    assert!(matches!(
        g.lock.lock_timeout(timeout),
        Err(TryLockError::TimedOut)
    ));
    assert!(
        started.elapsed() >= timeout,
        "gave up early: {:?}",
        started.elapsed()
    );

    raise(&release);
    let guard = g.lock.lock_timeout(GENEROUS).expect("freed in time");
    drop(guard);
    holder.join().unwrap();
}

#[test]
fn a_holder_killed_by_sigkill_is_reported_to_the_next_locker() {
    let g = guarded();
    let holder = Process::new(|| hold_until_killed(&g)).start().unwrap();
    wait_for(&g.holding, 1);

    // A killer process SIGKILLs the holder while we wait in lock(), and
    // notes the time; we note when lock() returns.
    let killer = sigkill_from_sibling(holder.pid());
    let result = g.lock.lock();
    let acquired_at = monotonic_ns();
    let guard = match result {
        Err(died) => died.into_inner(),
        Ok(_) => panic!("the holder's death was not reported"),
    };
    let killed_at = killer.join().unwrap();
    let detect = Duration::from_nanos(acquired_at.saturating_sub(killed_at));
    eprintln!("owner death detected {detect:?} after the kill");
    assert!(detect < Duration::from_secs(1), "took {detect:?}");
    assert!(matches!(
        holder.join(),
        Err(JoinError::Signaled { signal: 9, .. })
    ));

    // The lock works normally afterwards, for us and for others.
    drop(guard);
    assert!(!g.lock.is_locked());
    let child = Process::new(|| g.lock.lock().is_ok()).start().unwrap();
    assert!(child.join().unwrap(), "a clean lock after recovery");
    assert!(g.lock.try_lock().is_ok());
}

#[test]
fn a_zombie_holder_counts_as_dead() {
    let g = guarded();
    // The holder exits on its own while holding (guard leaked); we do not
    // reap it, so it stays a zombie.
    let holder = Process::new(|| -> u8 {
        std::mem::forget(g.lock.lock().unwrap());
        raise(&g.holding);
        daemon::exit(0)
    })
    .start()
    .unwrap();
    wait_for(&g.holding, 1);
    let guard = g.lock.lock_timeout(GENEROUS);
    assert!(
        matches!(guard, Err(TryLockError::OwnerDied(_))),
        "{guard:?}"
    );
    drop(guard);
    let _ = holder.join();
}

#[test]
fn a_waiter_killed_while_waiting_blocks_nobody() {
    let g = guarded();
    let guard = g.lock.lock().unwrap();
    let waiter = Process::new(|| {
        let _g = g.lock.lock();
    })
    .start()
    .unwrap();
    // Kill it once it sleeps in lock() (or after GENEROUS: a kill at any
    // point must leave the lock usable).
    let limit = deadline(GENEROUS);
    while !is_asleep(waiter.pid()) && Instant::now() < limit {
        std::thread::yield_now();
    }
    waiter.kill().unwrap();
    assert!(matches!(waiter.join(), Err(JoinError::Signaled { .. })));
    drop(guard);
    let other = Process::new(|| g.lock.lock_timeout(GENEROUS).is_ok())
        .start()
        .unwrap();
    assert!(other.join().unwrap());
}

/// Whether `pid` sleeps (state S in /proc).
fn is_asleep(pid: shm::pid::Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('S'))
        })
        .unwrap_or(false)
}

#[test]
fn killed_at_random_moments_in_a_loop_never_deadlocks() {
    let g = guarded();
    let mut rng = Rng::new(0x5EED_1234);
    let mut owner_deaths = 0;
    for round in 0..40 {
        g.counter.store(0, Ordering::SeqCst);
        let worker = Process::new(|| -> u8 {
            loop {
                let _guard = g.lock.lock().unwrap_or_else(|d| d.into_inner());
                let v = g.counter.load(Ordering::Relaxed);
                g.counter.store(v + 1, Ordering::Relaxed);
            }
        })
        // A daemon: if the test fails before the kill, the worker dies with
        // it instead of being joined for ever when the test binary exits.
        .daemon(true)
        .start()
        .unwrap();
        // Kill after a random amount of progress, not a random sleep.
        let target = 1 + rng.below(2_000);
        let limit = deadline(GENEROUS);
        while g.counter.load(Ordering::Relaxed) < target {
            assert!(
                Instant::now() < limit,
                "round {round}: worker made no progress"
            );
            std::hint::spin_loop();
        }
        worker.kill().unwrap();
        assert!(matches!(worker.join(), Err(JoinError::Signaled { .. })));
        match g.lock.lock_timeout(GENEROUS) {
            Ok(_) => {}
            Err(TryLockError::OwnerDied(_)) => owner_deaths += 1,
            Err(e) => panic!("round {round}: {e}"),
        }
    }
    eprintln!("40 kills, {owner_deaths} while holding the lock");
}
