//! The typed locks are generic over the raw lock (`RawRobustLock`): a
//! `Mutex` and `Condvar` over a raw lock of the user's own work, between
//! processes, with owner death still reported.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use daemon::Process;
use shm::lockword::{Acquired, RawLock, RawRobustLock};
use shm::pid::Identity;
use shm::{Futex, Shared, ShmSafe};
use sync_lock::{Condvar, Mutex};
use testkit::{in_processes, park_until_killed, raise, wait_for, GENEROUS};

/// A raw lock of a user's own: procsync's word, counting acquisitions.
#[derive(Default, Debug, ShmSafe)]
#[repr(C)]
struct Counting {
    raw: RawLock,
    acquisitions: AtomicU32,
}

impl Counting {
    fn counted(&self, how: Option<Acquired>) -> Option<Acquired> {
        if how.is_some() {
            self.acquisitions.fetch_add(1, Ordering::Relaxed);
        }
        how
    }
}

// SAFETY: every call is passed to a RawLock, which is such a lock.
unsafe impl RawRobustLock for Counting {
    unsafe fn lock_until_as(&self, me: Identity, deadline: Option<Instant>) -> Option<Acquired> {
        // SAFETY: the caller's promise, passed on.
        self.counted(unsafe { self.raw.lock_until_as(me, deadline) })
    }
    fn try_lock(&self) -> Option<Acquired> {
        self.counted(self.raw.try_lock())
    }
    unsafe fn unlock_as(&self, me: Identity) -> bool {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.raw.unlock_as(me) }
    }
    unsafe fn unlock_poisoned(&self) -> bool {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.raw.unlock_poisoned() }
    }
    fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }
    fn owner_identity(&self) -> Option<Identity> {
        self.raw.owner_identity()
    }
}

#[test]
fn a_mutex_over_another_raw_lock_excludes_between_processes() {
    const EACH: u64 = 2_000;
    let m: Shared<Mutex<u64, Counting>> =
        Shared::new(Mutex::from_raw(Counting::default(), 0)).unwrap();
    in_processes(3, |_| {
        for _ in 0..EACH {
            *m.lock().unwrap() += 1;
        }
    });
    assert_eq!(
        *m.lock().unwrap(),
        3 * EACH,
        "two processes were in at once"
    );
    let acquisitions = m.raw().acquisitions.load(Ordering::Relaxed);
    assert_eq!(
        u64::from(acquisitions),
        3 * EACH + 1,
        "every lock went through the raw lock"
    );
}

#[test]
fn a_holder_that_dies_is_reported_through_another_raw_lock() {
    #[derive(ShmSafe)]
    #[repr(C)]
    struct Arena {
        m: Mutex<u32, Counting>,
        holding: Futex,
    }
    let arena = Shared::new(Arena {
        m: Mutex::from_raw(Counting::default(), 0),
        holding: Futex::new(0),
    })
    .unwrap();
    let a = &*arena;
    let holder = Process::new(move || {
        let mut guard = a.m.lock().unwrap();
        *guard = 1;
        raise(&a.holding);
        park_until_killed();
    })
    .start()
    .unwrap();
    wait_for(&a.holding, 1);
    holder.kill().unwrap();
    let died = match a.m.lock_timeout(GENEROUS) {
        Err(sync_lock::TryLockError::OwnerDied(died)) => died,
        other => panic!("expected OwnerDied, got {:?}", other.map(|g| *g)),
    };
    assert_eq!(*died.into_inner(), 1);
}

#[test]
fn a_condvar_waits_on_a_mutex_over_another_raw_lock() {
    #[derive(ShmSafe)]
    #[repr(C)]
    struct Arena {
        m: Mutex<u32, Counting>,
        ready: Condvar,
    }
    let arena = Shared::new(Arena {
        m: Mutex::from_raw(Counting::default(), 0),
        ready: Condvar::new(),
    })
    .unwrap();
    let a = &*arena;
    let setter = Process::new(move || {
        *a.m.lock().unwrap() = 42;
        a.ready.notify_all();
    })
    .start()
    .unwrap();
    let guard = a.m.lock().unwrap();
    let (guard, timed_out) = a
        .ready
        .wait_timeout_while(guard, Duration::from_secs(10), |v| *v != 42)
        .unwrap();
    assert!(!timed_out.timed_out(), "the notify never came");
    assert_eq!(*guard, 42);
    drop(guard);
    setter.join().unwrap();
}
