//! [`Lock`]: Python's `multiprocessing.Lock`, robust to its holder's death.

use std::time::Duration;

use shm::lockword::RawLockGuard;
use shm::ShmSafe;

use crate::poison::{lock_result, try_lock_result, LockResult, TryLockError, TryLockResult};
use shm::lockword::RawLock;

/// A lock between processes (Python's `multiprocessing.Lock`): while one
/// process holds it, every other process that asks waits.
///
/// Put it in shared memory (`shm::Shared<Lock>`, anonymous or named) and
/// lock it from any process. [`lock`](Lock::lock) returns a guard that
/// unlocks when dropped. Four bytes; uncontended lock and unlock are one
/// compare-and-swap each, with no system call.
///
/// **A dead holder does not wedge it.** If the holding process dies (even
/// by SIGKILL, at any instruction), the next process to lock it gets the
/// lock within about a millisecond together with an
/// [`OwnerDied`](crate::OwnerDied) report, so it can repair what the lock
/// protects. Python's `Lock` deadlocks there for ever.
///
/// # Example
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use sync_lock::Lock;
///
/// let lock = Lock::shared()?;
/// let child = daemon::Process::new(|| {
///     let _guard = lock.lock().unwrap_or_else(|died| died.into_inner());
///     // ... read, change and write a file only one process may touch ...
/// })
/// .start()?;
/// {
///     let _guard = lock.lock().unwrap_or_else(|died| died.into_inner());
/// }
/// child.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
#[derive(Debug, Default)]
pub struct Lock {
    raw: RawLock,
}

// SAFETY: a RawLock: plain data valid at any address.
unsafe impl ShmSafe for Lock {
    fn describe_layout(out: &mut shm::layout::LayoutWriter) {
        let (size, align) = (std::mem::size_of::<Lock>(), std::mem::align_of::<Lock>());
        out.structure("Lock", "C", size, align, 1);
        out.field::<RawLock>("raw", std::mem::offset_of!(Lock, raw));
    }
}

impl Lock {
    shm::const_unless_loom! {
        /// An unlocked lock.
        pub const fn new() -> Lock {
            Lock {
                raw: RawLock::new(),
            }
        }
    }

    /// An unlocked lock in anonymous shared memory, which children forked
    /// afterwards share with this process: the one-line form of
    /// `Shared::new(Lock::new())`. Python's `Lock()`.
    ///
    /// ```
    /// use sync_lock::Lock;
    ///
    /// let lock = Lock::shared()?;
    /// let held = lock.lock().unwrap();
    /// let child = daemon::Process::new(|| lock.try_lock().is_ok()).start()?;
    /// assert!(!child.join()?, "the child sees the parent's hold");
    /// drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn shared() -> shm::Result<shm::Shared<Lock>> {
        shm::Shared::new(Lock::new())
    }

    /// Locks, waiting as long as it takes (Python's `acquire()`).
    ///
    /// `Err(OwnerDied)` still holds the lock: it says the previous holder
    /// died holding it.
    #[inline]
    pub fn lock(&self) -> LockResult<LockGuard<'_>> {
        let me = shm::pid::current_identity();
        // SAFETY: `me` is this process's identity.
        let how = unsafe { self.raw.lock_until_as(me, None) }.expect("no deadline");
        let guard = LockGuard {
            // SAFETY: this process (`me`) has just acquired the lock; this
            // guard alone stands for it.
            _held: unsafe { RawLockGuard::new(&self.raw, me) },
        };
        lock_result(how, guard)
    }

    /// Locks if nobody holds the lock now (Python's `acquire(False)`);
    /// [`TryLockError::WouldBlock`] otherwise.
    #[inline]
    pub fn try_lock(&self) -> TryLockResult<LockGuard<'_>> {
        try_lock_result(self.raw.try_lock(), TryLockError::WouldBlock, || {
            // SAFETY: called only once the lock is acquired.
            unsafe { LockGuard::new(self) }
        })
    }

    /// Locks, waiting at most `timeout` (Python's `acquire(timeout=...)`);
    /// [`TryLockError::TimedOut`] once it has passed, never earlier.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<LockGuard<'_>> {
        let deadline = shm::sync::now().checked_add(timeout);
        try_lock_result(
            self.raw.lock_until(deadline),
            TryLockError::TimedOut,
            // SAFETY: called only once the lock is acquired.
            || unsafe { LockGuard::new(self) },
        )
    }

    /// Whether some process holds the lock right now.
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// The pid of the holder, if any.
    pub fn owner(&self) -> Option<shm::pid::Pid> {
        self.raw.owner()
    }

    /// The holder's identity (pid and start tag), if any: unlike a pid, it
    /// tells whether the holder still runs even after its pid was reused.
    /// Reading it changes nothing (for tools such as `procsync inspect`).
    ///
    /// ```
    /// use sync_lock::Lock;
    ///
    /// let lock = Lock::new();
    /// assert_eq!(lock.owner_identity(), None);
    /// let _held = lock.lock().unwrap();
    /// let holder = lock.owner_identity().expect("held");
    /// assert_eq!(holder, shm::pid::current_identity());
    /// assert!(holder.is_running());
    /// ```
    pub fn owner_identity(&self) -> Option<shm::pid::Identity> {
        self.raw.owner_identity()
    }

    /// Whether some process may be asleep waiting for the lock (see
    /// [`RawLock::has_waiters`](shm::lockword::RawLock::has_waiters)).
    ///
    /// ```
    /// let lock = sync_lock::Lock::new();
    /// assert!(!lock.has_waiters());
    /// ```
    pub fn has_waiters(&self) -> bool {
        self.raw.has_waiters()
    }
}

/// Holds a [`Lock`]; dropping it unlocks (Python's `release()`).
///
/// The guard belongs to the process that locked: dropped in any other
/// process (a forked child's copy, or moved into a `daemon::Process`
/// closure) it leaves the lock alone, held by the locking process until
/// that process drops its own guard or ends. Dropped while its thread
/// panics, it releases the lock and the next locker learns
/// [`OwnerDied`](crate::OwnerDied) with
/// [`holder_panicked`](crate::OwnerDied::holder_panicked).
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard<'a> {
    /// Unlocks on drop, in the acquiring process only (see
    /// [`RawLockGuard`]); `Send` and `Sync` are its, argued there.
    _held: RawLockGuard<'a>,
}

impl<'a> LockGuard<'a> {
    /// The guard of an acquisition just made.
    ///
    /// # Safety
    ///
    /// The calling process has just acquired `lock`, and no other guard
    /// stands for that acquisition.
    unsafe fn new(lock: &'a Lock) -> LockGuard<'a> {
        // SAFETY: the caller's promise, passed on; the identity is ours.
        let held = unsafe { RawLockGuard::new(&lock.raw, shm::pid::current_identity()) };
        LockGuard { _held: held }
    }
}
