//! Review 3: `RawRobustLock::lock_until_as` is a safe method that takes the
//! caller's identity on trust (checked only by a `debug_assert`).

use std::sync::atomic::{AtomicU32, Ordering};

use daemon::Process;
use shm::pid::Identity;
use shm::{Futex, Shared, ShmSafe};
use sync_lock::{Mutex, TryLockError};
use testkit::{raise, wait_for};

#[derive(ShmSafe)]
#[repr(C)]
struct Arena {
    mutex: Mutex<u64>,
    locked: Futex,
    checked: Futex,
    /// 1 once `lock_until_as` returned `Some` to the forger.
    forger_holds: AtomicU32,
}

/// The trait's promise ("once `lock_until_as` or `try_lock` has returned
/// `Some` to process P, no caller in any process gets `Some` until P
/// releases it or P dies") is broken by safe code in a release build: an
/// identity whose pid half is bit 30 (the word's POISONED bit) leaves the
/// word looking free, so the forger is told it holds the lock while a
/// `Mutex::try_lock` in another process gets in too.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "debug builds catch the forged identity with a debug_assert"
)]
#[cfg_attr(
    not(debug_assertions),
    ignore = "review3: safe lock_until_as with a forged identity returns Some yet leaves the lock free (release builds)"
)]
fn a_forged_identity_never_makes_two_holders() {
    let arena = Shared::new(Arena {
        mutex: Mutex::new(0),
        locked: Futex::new(0),
        checked: Futex::new(0),
        forger_holds: AtomicU32::new(0),
    })
    .unwrap();
    let a = &*arena;
    let forged = Identity::from_parts(1 << 30, 7).unwrap();
    let forger = Process::new(move || {
        let got = a.mutex.raw().lock_until_as(forged, None).is_some();
        a.forger_holds.store(u32::from(got), Ordering::SeqCst);
        raise(&a.locked);
        wait_for(&a.checked, 1);
    })
    .start()
    .unwrap();
    wait_for(&a.locked, 1);
    let second = Process::new(move || !matches!(a.mutex.try_lock(), Err(TryLockError::WouldBlock)))
        .start()
        .unwrap()
        .join()
        .unwrap();
    raise(&a.checked);
    forger.join().unwrap();
    let forger_holds = a.forger_holds.load(Ordering::SeqCst) == 1;
    println!(
        "forger (alive) told it holds the lock: {forger_holds}; another process then got it: {second}"
    );
    assert!(
        !(forger_holds && second),
        "two live processes were told they hold the lock"
    );
}
