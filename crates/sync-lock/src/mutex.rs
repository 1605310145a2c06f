//! [`Mutex<T>`]: data guarded by a robust lock, between processes.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use shm::ShmSafe;

use crate::poison::{lock_result, try_lock_result, LockResult, TryLockError, TryLockResult};
use crate::raw::RawLock;

/// Data that one process at a time may change: Python's
/// `Value(..., lock=True)`, for any `ShmSafe` struct.
///
/// `shm::Shared<Mutex<T>>` puts it in shared memory (anonymous for forked
/// children, named for unrelated processes). [`lock`](Mutex::lock) gives a
/// guard with `&mut T` while held. If a holder dies mid-update, the next
/// locker gets [`OwnerDied`](crate::OwnerDied) carrying the guard, to repair
/// the data.
///
/// # Example
///
/// ```
/// use shm::{Shared, ShmSafe};
/// use sync_lock::Mutex;
///
/// #[derive(ShmSafe)]
/// #[repr(C)]
/// struct Tickets {
///     left: u32,
///     sold: u32,
/// }
///
/// let db = Shared::new(Mutex::new(Tickets { left: 1, sold: 0 }))?;
/// let buy = || {
///     let mut t = db.lock().unwrap_or_else(|died| died.into_inner());
///     if t.left > 0 {
///         t.left -= 1;
///         t.sold += 1;
///     }
/// };
/// let buyers: Vec<_> = (0..3).map(|_| daemon::Process::new(buy).start()).collect::<Result<_, _>>()?;
/// for b in buyers {
///     b.join()?;
/// }
/// let t = db.lock().unwrap_or_else(|died| died.into_inner());
/// assert_eq!((t.left, t.sold), (0, 1)); // never oversold
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
#[derive(Debug, Default)]
pub struct Mutex<T> {
    raw: RawLock,
    data: UnsafeCell<T>,
}

// SAFETY: a RawLock and a ShmSafe value side by side in a repr(C) struct:
// plain data valid at any address.
unsafe impl<T: ShmSafe> ShmSafe for Mutex<T> {}
// SAFETY: the lock lets one holder at a time reach the data, which may be
// sent to whichever thread holds it.
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: as for std's Mutex.
unsafe impl<T: Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    /// An unlocked mutex holding `value`.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            raw: RawLock::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Locks, waiting as long as it takes.
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        let how = self.raw.lock_until(None).expect("no deadline");
        lock_result(how, MutexGuard { mutex: self })
    }

    /// Locks if nobody holds it now.
    pub fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
        try_lock_result(self.raw.try_lock(), TryLockError::WouldBlock, || {
            MutexGuard { mutex: self }
        })
    }

    /// Locks, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<MutexGuard<'_, T>> {
        let deadline = Instant::now().checked_add(timeout);
        try_lock_result(
            self.raw.lock_until(deadline),
            TryLockError::TimedOut,
            || MutexGuard { mutex: self },
        )
    }

    /// Whether some process holds the lock right now.
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// The data, through an exclusive reference (no other process can have
    /// one of those).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// The data, taking the mutex apart.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }

    pub(crate) fn raw(&self) -> &RawLock {
        &self.raw
    }
}

/// Holds a [`Mutex`]: `&mut T` while it lives; dropping it unlocks.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct MutexGuard<'a, T> {
    mutex: &'a Mutex<T>,
}

impl<'a, T> MutexGuard<'a, T> {
    pub(crate) fn mutex(&self) -> &'a Mutex<T> {
        self.mutex
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard proves this process holds the lock.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves this process holds the lock, and `&mut
        // self` that this is the only reference through it.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard is this acquisition; it ends here.
        unsafe { self.mutex.raw.unlock() };
    }
}

/// A guard for a mutex this process has just locked through its raw lock.
pub(crate) fn relocked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    MutexGuard { mutex }
}
