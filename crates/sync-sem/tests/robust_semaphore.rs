//! `RobustSemaphore`: permits of dead processes come back.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use daemon::{JoinError, Process};
use shm::crash::{self, Action};
use shm::{pid, Futex, Shared, ShmSafe};
use sync_sem::{AcquireError, ReleaseError, RobustSemaphore, MAX_HOLDERS};
use testkit::{
    deadline, in_processes, monotonic_ns, park_until_killed, raise, sigkill_from_sibling, wait_for,
    wait_stopped_or_exited, Rng, GENEROUS,
};

#[derive(ShmSafe)]
#[repr(C)]
struct Room {
    sem: RobustSemaphore,
    inside: AtomicU32,
    most: AtomicU32,
    /// Raised by a child once it holds what the test needs.
    ready: Futex,
}

fn room(permits: u32) -> Shared<Room> {
    Shared::new(Room {
        sem: RobustSemaphore::new(permits),
        inside: AtomicU32::new(0),
        most: AtomicU32::new(0),
        ready: Futex::new(0),
    })
    .unwrap()
}

#[test]
fn never_more_inside_than_permits() {
    let room = room(3);
    in_processes(6, |_| {
        for _ in 0..3_000 {
            let _permit = room.sem.acquire().unwrap();
            let now = room.inside.fetch_add(1, Ordering::SeqCst) + 1;
            room.most.fetch_max(now, Ordering::SeqCst);
            room.inside.fetch_sub(1, Ordering::SeqCst);
        }
    });
    assert!(room.most.load(Ordering::SeqCst) <= 3);
    assert_eq!(room.sem.value(), 3);
}

#[test]
fn a_killed_holder_of_two_permits_gives_them_back_to_a_blocked_acquirer() {
    let room = room(3);
    let holder = Process::new(|| -> u8 {
        let a = room.sem.acquire().unwrap();
        let b = room.sem.acquire().unwrap();
        raise(&room.ready);
        park_until_killed();
        drop((a, b));
        0
    })
    .start()
    .unwrap();
    wait_for(&room.ready, 1);
    assert_eq!(room.sem.value(), 1);
    assert_eq!(room.sem.held_by(holder.pid()), 2);
    let mine = room.sem.acquire().unwrap();
    assert_eq!(room.sem.value(), 0);

    // A killer SIGKILLs the holder while we are blocked in acquire().
    let holder_pid = holder.pid();
    let killer = sigkill_from_sibling(holder_pid);
    let second = room
        .sem
        .acquire_timeout(GENEROUS)
        .expect("a reclaimed permit");
    let got_at = monotonic_ns();
    let killed_at = killer.join().unwrap();
    assert!(matches!(
        holder.join(),
        Err(JoinError::Signaled { signal: 9, .. })
    ));
    eprintln!(
        "reclaimed {:?} after the kill",
        Duration::from_nanos(got_at.saturating_sub(killed_at))
    );
    drop((mine, second));
    assert_eq!(room.sem.value(), 3, "every permit is back");
    assert_eq!(room.sem.held_by(holder_pid), 0);
}

#[test]
fn reclaim_returns_a_zombies_permits() {
    let room = room(2);
    let holder = Process::new(|| -> u8 {
        std::mem::forget(room.sem.acquire().unwrap());
        raise(&room.ready);
        daemon::exit(0)
    })
    .start()
    .unwrap();
    wait_for(&room.ready, 1);
    // Not reaped yet: a zombie still "exists" but holds nothing.
    let limit = deadline(GENEROUS);
    while room.sem.reclaim() == 0 {
        assert!(
            Instant::now() < limit,
            "the zombie's permit never came back"
        );
        std::thread::yield_now();
    }
    assert_eq!(room.sem.value(), 2);
    let _ = holder.join();
}

#[test]
fn forgotten_and_released_permits_are_never_taken_back() {
    let room = room(2);
    let child = Process::new(|| {
        room.sem.acquire().unwrap().forget(); // handed off on purpose
    })
    .start()
    .unwrap();
    child.join().unwrap();
    assert_eq!(room.sem.reclaim(), 0);
    assert_eq!(room.sem.value(), 1);
    room.sem.release().unwrap();
    assert_eq!(room.sem.value(), 2);
}

/// `adopt` in a child moves one permit from the acquirer's row to the
/// child's; in the acquirer it changes nothing. The child's drop then
/// releases it under the child's name.
#[test]
fn adopt_moves_one_permit_to_the_adopting_process() {
    let shared = room(3);
    let room = &*shared;
    let me = pid::current();
    let mut kept = room.sem.acquire().unwrap();
    let moved = room.sem.acquire().unwrap();
    // SAFETY: in the acquiring process: a no-op.
    let adopted_here = unsafe { kept.adopt() };
    assert_eq!(adopted_here, Ok(()), "adopting in the acquirer: no-op");
    assert_eq!(room.sem.held_by(me), 2);
    let child = Process::new(move || {
        let mut moved = moved;
        // SAFETY: moved into this closure; the parent never drops it.
        unsafe { moved.adopt() }.unwrap();
        raise(&room.ready);
        wait_for(&room.ready, 2);
        drop(moved);
    })
    .start()
    .unwrap();
    wait_for(&room.ready, 1);
    assert_eq!(
        room.sem.held_by(me),
        1,
        "one permit left this process's row"
    );
    assert_eq!(room.sem.held_by(child.pid()), 1, "and is the child's");
    assert_eq!(room.sem.value(), 1);
    raise(&room.ready);
    let child_pid = child.pid();
    child.join().unwrap();
    assert_eq!(room.sem.held_by(child_pid), 0);
    assert_eq!(room.sem.value(), 2, "the child's drop released it once");
    drop(kept);
    assert_eq!(room.sem.held_by(me), 0);
    assert_eq!(room.sem.value(), 3);
}

#[test]
fn killed_at_random_moments_the_count_always_comes_back() {
    let room = room(2);
    let mut rng = Rng::new(0xC0FFEE);
    let progress = Shared::new(AtomicU64::new(0)).unwrap();
    for round in 0..30 {
        progress.store(0, Ordering::SeqCst);
        let workers: Vec<_> = (0..2)
            .map(|_| {
                Process::new(|| -> u8 {
                    loop {
                        let permit = room.sem.acquire().unwrap();
                        progress.fetch_add(1, Ordering::Relaxed);
                        drop(permit);
                    }
                })
                // Dies with the test if it fails before the kill.
                .daemon(true)
                .start()
                .unwrap()
            })
            .collect();
        let target = 1 + rng.below(3_000);
        let limit = deadline(GENEROUS);
        while progress.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < limit, "round {round}: no progress");
            std::hint::spin_loop();
        }
        for w in &workers {
            w.kill().unwrap();
        }
        for w in workers {
            assert!(w.join().is_err());
        }
        // Every holder is gone: all permits must come back, and both must
        // be acquirable (the internal lock recovered too).
        room.sem.reclaim();
        assert_eq!(room.sem.value(), 2, "round {round}");
        let a = room.sem.acquire_timeout(GENEROUS).expect("first");
        let b = room.sem.acquire_timeout(GENEROUS).expect("second");
        drop((a, b));
    }
}

#[test]
fn bounded_over_release_is_an_error() {
    let sem = RobustSemaphore::bounded(1);
    assert!(matches!(
        sem.release(),
        Err(ReleaseError::AboveBound { .. })
    ));
    let permit = sem.try_acquire().unwrap();
    assert!(matches!(sem.try_acquire(), Err(AcquireError::WouldBlock)));
    drop(permit);
    assert_eq!(sem.value(), 1);
}

#[test]
fn acquire_timeout_is_never_early() {
    let sem = RobustSemaphore::new(0);
    let timeout = Duration::from_millis(20);
    let started = Instant::now();
    assert!(matches!(
        sem.acquire_timeout(timeout),
        Err(AcquireError::TimedOut)
    ));
    assert!(started.elapsed() >= timeout);
}

#[test]
fn dead_holders_swept_to_make_room_give_their_permits_back() {
    // Every row of the holder table belongs to a dead holder: the next
    // acquisition sweeps them to find a row, and must count the permits
    // the sweep gave back. (The old code then committed a count read
    // before the sweep: a semaphore made with 70 ended at 66.)
    let extra = 6;
    let total = MAX_HOLDERS as u32 + extra;
    let sem = Shared::new(RobustSemaphore::new(total)).unwrap();
    let mut pids = Vec::new();
    for _ in 0..MAX_HOLDERS / 64 {
        pids.extend(in_processes(64, |_| {
            std::mem::forget(sem.acquire().unwrap());
            pid::current()
        }));
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), MAX_HOLDERS, "a row each");
    assert_eq!(sem.value(), extra);
    let mine = sem.acquire().expect("a row freed by the sweep");
    assert_eq!(sem.value(), total - 1, "the swept permits are counted");
    drop(mine);
    assert_eq!(sem.value(), total);
}

#[test]
fn a_stopped_holder_of_the_internal_lock_delays_nobody_past_their_deadline() {
    // A process stopped (SIGSTOP) inside the semaphore's internal lock,
    // half-way through an acquisition. try_acquire answers at once and
    // acquire_timeout on time (they used to wait until it was resumed).
    let room = room(2);
    let stopped = Process::new(|| {
        crash::arm("robust semaphore: journal armed", Action::Stop);
        drop(room.sem.acquire().unwrap());
    })
    .daemon(true)
    .start()
    .unwrap();
    assert!(wait_stopped_or_exited(stopped.pid()), "never stopped");
    let mut checker = Process::new(|| {
        let started = Instant::now();
        let tried = matches!(room.sem.try_acquire(), Err(AcquireError::WouldBlock));
        let tried_for = started.elapsed();
        let timeout = Duration::from_millis(100);
        let started = Instant::now();
        let timed = matches!(
            room.sem.acquire_timeout(timeout),
            Err(AcquireError::TimedOut)
        );
        (tried, tried_for, timed, started.elapsed())
    })
    .daemon(true)
    .start()
    .unwrap();
    let checked = checker.join_timeout(GENEROUS);
    stopped.signal(libc::SIGCONT).unwrap();
    let (tried, tried_for, timed, timed_for) = checked.expect("blocked by the stopped process");
    assert!(
        tried && tried_for < Duration::from_millis(50),
        "try_acquire: {tried_for:?}"
    );
    assert!(timed, "acquire_timeout");
    assert!(
        timed_for >= Duration::from_millis(100) && timed_for < Duration::from_millis(600),
        "a 100 ms acquire_timeout took {timed_for:?}"
    );
    stopped.join().unwrap();
    assert_eq!(room.sem.value(), 2);
}
