//! `RLock`: re-entry by the holding thread, refusal for everyone else.

use std::time::Duration;

use daemon::Process;
use shm::{Futex, Shared};
use sync_lock::{NotOwner, RLock, TryLockError};
use testkit::{park_until_killed, raise, wait_for, GENEROUS};

#[test]
fn the_holding_thread_nests_to_any_depth() {
    let lock = Shared::new(RLock::new()).unwrap();
    let guards: Vec<_> = (0..100).map(|_| lock.lock().unwrap()).collect();
    assert_eq!(lock.depth(), 100);
    assert!(lock.is_held_by_current_thread());
    drop(guards);
    assert_eq!(lock.depth(), 0);
    assert!(!lock.is_locked());
}

#[test]
fn another_process_waits_until_every_level_is_released() {
    let lock = Shared::new(RLock::new()).unwrap();
    lock.acquire().unwrap();
    lock.acquire().unwrap();
    let prober = || {
        Process::new(|| matches!(lock.try_lock(), Err(TryLockError::WouldBlock)))
            .start()
            .unwrap()
    };
    assert!(prober().join().unwrap(), "held at depth 2");
    lock.release().unwrap();
    assert!(prober().join().unwrap(), "still held at depth 1");
    lock.release().unwrap();
    let taker = Process::new(|| lock.lock_timeout(GENEROUS).is_ok())
        .start()
        .unwrap();
    assert!(taker.join().unwrap(), "free after the last release");
}

#[test]
fn releasing_from_another_process_is_an_error() {
    let lock = Shared::new(RLock::new()).unwrap();
    lock.acquire().unwrap();
    let my_pid = shm::pid::current();
    let child = Process::new(|| lock.release().map_err(|e| e.holder))
        .start()
        .unwrap();
    assert_eq!(child.join().unwrap(), Err(Some(my_pid)));
    assert_eq!(lock.depth(), 1, "the refused release changed nothing");
    lock.release().unwrap();
    assert_eq!(lock.release(), Err(NotOwner { holder: None }));
}

#[test]
fn releasing_from_another_thread_is_an_error() {
    let lock = RLock::new();
    lock.acquire().unwrap();
    let result = std::thread::scope(|s| s.spawn(|| lock.release()).join().unwrap());
    assert!(matches!(result, Err(NotOwner { .. })));
    let message = result.unwrap_err().to_string();
    assert!(message.contains("another thread or process"), "{message}");
    lock.release().unwrap();
}

#[test]
fn a_dead_holder_is_reported_and_the_depth_restarts() {
    let lock = Shared::new(RLock::new()).unwrap();
    let holding = Shared::new(Futex::new(0)).unwrap();
    let child = Process::new(|| -> u8 {
        for _ in 0..3 {
            lock.acquire().unwrap();
        }
        raise(&holding);
        park_until_killed();
        0
    })
    .start()
    .unwrap();
    wait_for(&holding, 1);
    child.kill().unwrap();
    let _ = child.join();
    let guard = match lock.lock_timeout(GENEROUS) {
        Err(TryLockError::OwnerDied(died)) => died.into_inner(),
        other => panic!("expected OwnerDied, got {other:?}"),
    };
    assert_eq!(lock.depth(), 1);
    drop(guard);
    assert!(!lock.is_locked());
}

#[test]
fn lock_timeout_gives_up_on_time() {
    let lock = Shared::new(RLock::new()).unwrap();
    lock.acquire().unwrap();
    let child = Process::new(|| {
        let started = std::time::Instant::now();
        let timed_out = matches!(
            lock.lock_timeout(Duration::from_millis(20)),
            Err(TryLockError::TimedOut)
        );
        (timed_out, started.elapsed() >= Duration::from_millis(20))
    })
    .start()
    .unwrap();
    assert_eq!(child.join().unwrap(), (true, true));
    lock.release().unwrap();
}
