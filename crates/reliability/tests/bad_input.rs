//! Bad input across the primitives: zero and endless timeouts, impossible
//! sizes and counts. Each must give a clear error or the documented result,
//! at once, never undefined behaviour or a hang. (Names, types, foreign and
//! truncated segments are tested in `shm`'s suite; see docs/reliability.md.)

use std::time::{Duration, Instant};

use shm::{Futex, Segment, Shared, SharedSlice};
use sync_event::{Barrier, BarrierError, Event};
use sync_lock::{Lock, Mutex, RLock, TryLockError};
use sync_sem::{AcquireError, RobustSemaphore, Semaphore};
use testkit::GENEROUS;

/// Runs `f` and checks it returned well within GENEROUS.
fn promptly<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    assert!(
        started.elapsed() < GENEROUS / 2,
        "{what} took {:?}",
        started.elapsed()
    );
    out
}

#[test]
fn zero_timeouts_return_at_once_with_timed_out() {
    let lock = Lock::new();
    let _held = lock.lock().unwrap();
    assert!(matches!(
        promptly("Lock", || lock.lock_timeout(Duration::ZERO)),
        Err(TryLockError::TimedOut)
    ));

    let mutex = Mutex::new(1u32);
    let _held = mutex.lock().unwrap();
    assert!(matches!(
        promptly("Mutex", || mutex.lock_timeout(Duration::ZERO)),
        Err(TryLockError::TimedOut)
    ));

    let sem = Semaphore::new(0);
    assert_eq!(
        promptly("Semaphore", || sem.acquire_timeout(Duration::ZERO)).unwrap_err(),
        AcquireError::TimedOut
    );
    let robust = RobustSemaphore::new(0);
    assert_eq!(
        promptly("RobustSemaphore", || robust.acquire_timeout(Duration::ZERO)).unwrap_err(),
        AcquireError::TimedOut
    );

    let event = Event::new();
    assert!(!promptly("Event", || event.wait_timeout(Duration::ZERO)));

    let barrier = Barrier::new(2).unwrap();
    assert_eq!(
        promptly("Barrier", || barrier.wait_timeout(Duration::ZERO)).unwrap_err(),
        BarrierError::TimedOut
    );

    let futex = Futex::new(0);
    assert!(!promptly("Futex", || futex.wait(0, Some(Instant::now()))));
}

#[test]
fn endless_timeouts_succeed_at_once_when_free() {
    assert!(promptly("Lock", || Lock::new()
        .lock_timeout(Duration::MAX)
        .is_ok()));
    assert!(promptly("Mutex", || Mutex::new(0u8)
        .lock_timeout(Duration::MAX)
        .is_ok()));
    let rlock = RLock::new();
    assert!(promptly("RLock", || rlock
        .lock_timeout(Duration::MAX)
        .is_ok()));
    assert!(promptly("Semaphore", || Semaphore::new(1)
        .acquire_timeout(Duration::MAX)
        .is_ok()));
    assert!(promptly("RobustSemaphore", || RobustSemaphore::new(1)
        .acquire_timeout(Duration::MAX)
        .is_ok()));
    assert!(promptly("Event", || Event::new_set().wait_timeout(Duration::MAX)));
    assert!(promptly("Barrier", || Barrier::new(1)
        .unwrap()
        .wait_timeout(Duration::MAX)
        .is_ok()));

    // Opening a ready segment, joining a finished child.
    let name = testkit::unique_name("endless");
    let _segment = Segment::create(&name, 8).unwrap();
    assert!(promptly("Segment::open_timeout", || Segment::open_timeout(
        &name,
        Duration::MAX
    )
    .is_ok()));
    let value_name = format!("{name}-value");
    let _value = Shared::create(&value_name, Futex::new(1)).unwrap();
    assert!(promptly("Shared::open_timeout", || {
        Shared::<Futex>::open_timeout(&value_name, Duration::MAX).is_ok()
    }));
    let slice_name = format!("{name}-slice");
    let _slice = SharedSlice::create(&slice_name, 2, |_| Futex::new(0)).unwrap();
    assert!(promptly("SharedSlice::open_timeout", || {
        SharedSlice::<Futex>::open_timeout(&slice_name, Duration::MAX).is_ok()
    }));
    let mut child = daemon::Process::new(|| 5u8).start().unwrap();
    assert_eq!(
        promptly("Child::join_timeout", || child.join_timeout(Duration::MAX)).unwrap(),
        5
    );
}

#[test]
fn impossible_sizes_and_counts_are_errors() {
    assert!(matches!(
        Segment::anonymous(0),
        Err(shm::Error::InvalidSize { .. })
    ));
    assert!(matches!(
        SharedSlice::<u64>::from_fn(usize::MAX / 4, |_| 0),
        Err(shm::Error::InvalidSize { .. })
    ));
    assert!(matches!(Barrier::new(0), Err(BarrierError::NoParties)));
    assert!(Semaphore::new(sync_sem::MAX_PERMITS).release().is_err());
    assert!(RobustSemaphore::bounded(1).release().is_err());
    // A segment with a huge alignment requirement is refused, not misaligned.
    #[derive(shm::ShmSafe)]
    #[repr(C, align(8192))]
    struct TooAligned {
        x: u64,
    }
    assert!(matches!(
        Shared::new(TooAligned { x: 1 }),
        Err(shm::Error::InvalidSize { .. })
    ));
}
