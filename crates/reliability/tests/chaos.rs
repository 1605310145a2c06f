//! The chaos test: worker processes hammer Lock, Mutex<T>, RLock, Condvar,
//! RobustSemaphore, Event and Barrier in shared memory while this test
//! SIGKILLs a random worker at a random moment, round after round (in the
//! spirit of glibc's tst-robust8).
//!
//! After every kill each primitive must be acquirable within its timeout
//! (no deadlock) and the invariants must hold: the Mutex's pair is equal or
//! its owner's death was reported; never more than three inside the
//! semaphore; events settable; the barrier usable after a reset. Survivors
//! keep working. Quick by default (40 kills); set `PROCSYNC_CHAOS_KILLS`
//! for the long run.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use daemon::{Child, Process};
use shm::{pid, Shared, ShmSafe};
use sync_event::{Barrier, Event};
use sync_lock::{Condvar, Lock, Mutex, RLock, TryLockError};
use sync_sem::RobustSemaphore;
use testkit::{deadline, Rng, GENEROUS};

const WORKERS: usize = 4;
const PERMITS: u32 = 3;
/// How long a waiting operation inside a worker may take (short: workers
/// retry), and how long the checker waits before calling it a deadlock.
const OP_TIMEOUT: Duration = Duration::from_millis(20);

/// Two halves every update keeps equal; a torn update shows as a != b.
#[derive(ShmSafe)]
#[repr(C)]
struct Pair {
    a: u64,
    b: u64,
}

#[derive(ShmSafe)]
#[repr(C)]
struct Arena {
    lock: Lock,
    pair: Mutex<Pair>,
    rlock: RLock,
    cond_data: Mutex<u64>,
    cond: Condvar,
    rooms: RobustSemaphore,
    /// Pid of the worker in each semaphore slot (0: none).
    inside: [AtomicU32; WORKERS],
    event: Event,
    barrier: Barrier,
    /// Operations done by all workers: the progress the killer waits for.
    progress: AtomicU64,
    violations: AtomicU64,
    repairs: AtomicU64,
}

fn arena() -> Shared<Arena> {
    Shared::new(Arena {
        lock: Lock::new(),
        pair: Mutex::new(Pair { a: 0, b: 0 }),
        rlock: RLock::new(),
        cond_data: Mutex::new(0),
        cond: Condvar::new(),
        rooms: RobustSemaphore::new(PERMITS),
        inside: [const { AtomicU32::new(0) }; WORKERS],
        event: Event::new(),
        barrier: Barrier::new(2).unwrap(),
        progress: AtomicU64::new(0),
        violations: AtomicU64::new(0),
        repairs: AtomicU64::new(0),
    })
    .unwrap()
}

fn violation(arena: &Arena, what: &str) {
    eprintln!("invariant violated: {what}");
    arena.violations.fetch_add(1, Ordering::SeqCst);
}

/// Updates the pair under the Mutex, repairing it if a previous holder
/// died half-way (that is what the report is for).
fn update_pair(arena: &Arena, timeout: Duration) -> bool {
    let mut pair = match arena.pair.lock_timeout(timeout) {
        Ok(pair) => pair,
        Err(TryLockError::OwnerDied(died)) => {
            let mut pair = died.into_inner();
            if pair.a != pair.b {
                pair.b = pair.a;
                arena.repairs.fetch_add(1, Ordering::SeqCst);
            }
            pair
        }
        Err(_) => return false,
    };
    if pair.a != pair.b {
        violation(arena, "the pair was torn without an owner-death report");
    }
    pair.a += 1;
    // Widen the window in which a kill leaves the pair torn, so the
    // owner-death repair path really runs.
    for _ in 0..2_000 {
        std::hint::spin_loop();
    }
    std::hint::black_box(&mut *pair);
    pair.b += 1;
    true
}

fn worker(arena: &Arena, slot: usize, seed: u64) {
    let me = pid::current();
    let mut rng = Rng::new(seed);
    loop {
        match rng.below(7) {
            0 => {
                update_pair(arena, OP_TIMEOUT);
            }
            1 => {
                let _ = arena.lock.lock_timeout(OP_TIMEOUT);
            }
            2 => {
                if let Ok(outer) = arena.rlock.lock_timeout(OP_TIMEOUT) {
                    let inner = arena.rlock.lock_timeout(OP_TIMEOUT);
                    if inner.is_err() {
                        violation(arena, "an RLock holder could not re-enter");
                    }
                    drop((inner, outer));
                }
            }
            3 => {
                if let Ok(data) = arena.cond_data.lock_timeout(OP_TIMEOUT) {
                    arena.cond.notify_all();
                    let _ = arena.cond.wait_timeout(data, Duration::from_micros(200));
                }
            }
            4 => {
                if let Ok(permit) = arena.rooms.acquire_timeout(OP_TIMEOUT) {
                    arena.inside[slot].store(me.get(), Ordering::SeqCst);
                    let inside = arena
                        .inside
                        .iter()
                        .map(|p| p.load(Ordering::SeqCst))
                        .filter(|&p| pid::Pid::from_u32(p).is_some_and(pid::is_running))
                        .count();
                    if inside > PERMITS as usize {
                        violation(arena, "more processes inside the semaphore than permits");
                    }
                    arena.inside[slot].store(0, Ordering::SeqCst);
                    drop(permit);
                }
            }
            5 => {
                if rng.below(2) == 0 {
                    arena.event.set();
                } else {
                    arena.event.clear();
                }
                let _ = arena.event.wait_timeout(Duration::from_micros(100));
            }
            _ => {
                let _ = arena.barrier.wait_timeout(Duration::from_micros(500));
            }
        }
        arena.progress.fetch_add(1, Ordering::Relaxed);
    }
}

fn start_worker(arena: &Arena, slot: usize, seed: u64) -> Child<()> {
    // A daemon: if this test fails, its workers die with it instead of
    // being joined (for ever) when the test binary exits.
    Process::new(|| worker(arena, slot, seed))
        .name(format!("chaos-{slot}"))
        .daemon(true)
        .start()
        .expect("start a worker")
}

/// Every primitive must be usable from here within GENEROUS.
fn check_everything_usable(arena: &Arena, round: u64) {
    assert!(
        update_pair(arena, GENEROUS),
        "round {round}: Mutex deadlocked"
    );
    match arena.lock.lock_timeout(GENEROUS) {
        Ok(_) | Err(TryLockError::OwnerDied(_)) => {}
        Err(e) => panic!("round {round}: Lock deadlocked: {e}"),
    }
    match arena.rlock.lock_timeout(GENEROUS) {
        Ok(_) | Err(TryLockError::OwnerDied(_)) => {}
        Err(e) => panic!("round {round}: RLock deadlocked: {e}"),
    }
    let data = match arena.cond_data.lock_timeout(GENEROUS) {
        Ok(d) => d,
        Err(TryLockError::OwnerDied(d)) => d.into_inner(),
        Err(e) => panic!("round {round}: Condvar's mutex deadlocked: {e}"),
    };
    let started = Instant::now();
    arena.cond.notify_all();
    assert!(
        started.elapsed() < GENEROUS / 2,
        "round {round}: notify blocked"
    );
    drop(data);
    let permit = arena.rooms.acquire_timeout(GENEROUS);
    assert!(
        permit.is_ok(),
        "round {round}: semaphore deadlocked: {permit:?}"
    );
    drop(permit);
    // Live workers clear the event at random, so only "set() returns at
    // once" can be checked here; the end of the test checks the flag.
    let started = Instant::now();
    arena.event.set();
    arena.event.clear();
    assert!(
        started.elapsed() < GENEROUS / 2,
        "round {round}: set/clear blocked"
    );
}

#[test]
fn random_sigkills_never_wedge_any_primitive() {
    let kills: u64 = std::env::var("PROCSYNC_CHAOS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let arena = arena();
    let mut rng = Rng::new(0xC4A05);
    let mut workers: Vec<Child<()>> = (0..WORKERS)
        .map(|i| start_worker(&arena, i, rng.below(u64::MAX)))
        .collect();
    let started = Instant::now();
    for round in 0..kills {
        // Kill after a random amount of progress, not a random sleep.
        let target = arena.progress.load(Ordering::Relaxed) + 1 + rng.below(400);
        let limit = deadline(GENEROUS);
        while arena.progress.load(Ordering::Relaxed) < target {
            assert!(
                Instant::now() < limit,
                "round {round}: workers stopped making progress"
            );
            std::thread::yield_now();
        }
        let victim = rng.below(WORKERS as u64) as usize;
        workers[victim].kill().unwrap();
        let _ = workers[victim].join_timeout(GENEROUS);
        arena.inside[victim].store(0, Ordering::SeqCst);
        check_everything_usable(&arena, round);
        // The barrier: a party killed mid-wait broke it; reset and prove it
        // works again between us and a fresh process.
        arena.barrier.reset();
        workers[victim] = start_worker(&arena, victim, rng.below(u64::MAX));
    }
    for w in &workers {
        w.kill().unwrap();
    }
    for mut w in workers {
        let _ = w.join_timeout(GENEROUS);
    }
    for slot in &arena.inside {
        slot.store(0, Ordering::SeqCst);
    }
    // Every holder is gone: the permits all come back.
    arena.rooms.reclaim();
    assert_eq!(arena.rooms.value(), PERMITS, "permits lost");
    check_everything_usable(&arena, kills);
    arena.event.set();
    assert!(
        arena.event.wait_timeout(Duration::ZERO),
        "the event is not settable"
    );
    arena.barrier.reset();
    let partner = Process::new(|| arena.barrier.wait_timeout(GENEROUS).is_ok())
        .start()
        .unwrap();
    assert!(
        arena.barrier.wait_timeout(GENEROUS).is_ok(),
        "barrier unusable after reset"
    );
    assert!(partner.join().unwrap());

    let violations = arena.violations.load(Ordering::SeqCst);
    eprintln!(
        "chaos: {kills} kills in {:.1} s, {} operations, {} torn pairs repaired after owner death, \
         deadlocks 0, invariant violations {violations}",
        started.elapsed().as_secs_f64(),
        arena.progress.load(Ordering::SeqCst),
        arena.repairs.load(Ordering::SeqCst),
    );
    assert_eq!(violations, 0);
}
