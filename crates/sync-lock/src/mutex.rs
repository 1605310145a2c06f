//! [`Mutex<T>`]: data guarded by a robust lock, between processes.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::mem::{align_of, offset_of, size_of};
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use shm::layout::LayoutWriter;
use shm::ShmSafe;

use crate::poison::{lock_result, try_lock_result, LockResult, TryLockError, TryLockResult};
use shm::lockword::{RawLock, RawLockGuard, RawRobustLock};

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
/// use shm::ShmSafe;
/// use sync_lock::Mutex;
///
/// #[derive(ShmSafe)]
/// #[repr(C)]
/// struct Tickets {
///     left: u32,
///     sold: u32,
/// }
///
/// let db = Mutex::shared(Tickets { left: 1, sold: 0 })?;
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
///
/// The raw lock underneath is a type parameter (`R`, [`RawLock`] unless
/// said otherwise): any [`RawRobustLock`] serves, as `lock_api`'s
/// `Mutex<R, T>` takes any `RawMutex`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Mutex<T, R: RawRobustLock = RawLock> {
    raw: R,
    data: UnsafeCell<T>,
}

// SAFETY: a raw lock (ShmSafe by its trait) and a ShmSafe value side by
// side in a repr(C) struct: plain data valid at any address.
unsafe impl<T: ShmSafe, R: RawRobustLock> ShmSafe for Mutex<T, R> {
    /// Described field by field, so that a named `Mutex<T>` whose `T` changed
    /// shape (even at the same size) is refused, naming the field; the data
    /// as behind its `UnsafeCell`, so that a plain struct of the same
    /// fields cannot open it and read what lock holders write.
    fn describe_layout(out: &mut LayoutWriter) {
        out.structure("Mutex", "C", size_of::<Self>(), align_of::<Self>(), 2);
        out.field::<R>("raw", offset_of!(Self, raw));
        out.cell_field::<T>("data", offset_of!(Self, data));
    }
}
// SAFETY: the lock lets one holder at a time reach the data, which may be
// sent to whichever thread holds it.
unsafe impl<T: Send, R: RawRobustLock> Sync for Mutex<T, R> {}
// SAFETY: as for std's Mutex.
unsafe impl<T: Send, R: RawRobustLock + Send> Send for Mutex<T, R> {}

impl<T> Mutex<T> {
    shm::const_unless_loom! {
        /// An unlocked mutex holding `value`.
        pub const fn new(value: T) -> Mutex<T> {
            Mutex {
                raw: RawLock::new(),
                data: UnsafeCell::new(value),
            }
        }
    }

    /// An unlocked mutex holding `value`, in anonymous shared memory that
    /// children forked afterwards share with this process: the one-line form
    /// of `Shared::new(Mutex::new(value))`. Python's `Value(..., lock=True)`.
    ///
    /// A `Mutex::new` kept in ordinary memory is copied by `fork`, and each
    /// process then locks its own copy: start here.
    ///
    /// ```
    /// use sync_lock::Mutex;
    ///
    /// let counter = Mutex::shared(0u64)?;
    /// let worker = daemon::Process::new(|| {
    ///     *counter.lock().unwrap_or_else(|died| died.into_inner()) += 1;
    /// })
    /// .start()?;
    /// worker.join()?;
    /// assert_eq!(*counter.lock().unwrap(), 1); // the child's increment is seen
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn shared(value: T) -> shm::Result<shm::Shared<Mutex<T>>>
    where
        T: ShmSafe + Send,
    {
        shm::Shared::new(Mutex::new(value))
    }
}

impl<T, R: RawRobustLock> Mutex<T, R> {
    /// A mutex over the raw lock `raw` (which should be free) holding
    /// `value`.
    pub const fn from_raw(raw: R, value: T) -> Mutex<T, R> {
        Mutex {
            raw,
            data: UnsafeCell::new(value),
        }
    }

    /// Locks, waiting as long as it takes.
    ///
    /// `Err(OwnerDied)` still holds the lock: the previous holder died or
    /// panicked holding it, so check or repair the data.
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T, R>> {
        let me = shm::pid::current_identity();
        // SAFETY: `me` is this process's identity.
        let how = unsafe { self.raw.lock_until_as(me, None) }.expect("no deadline");
        let guard = MutexGuard {
            mutex: self,
            // SAFETY: this process (`me`) has just acquired the lock; this
            // guard alone stands for it.
            held: unsafe { RawLockGuard::new(&self.raw, me) },
            _not_auto: PhantomData,
        };
        lock_result(how, guard)
    }

    /// Locks if nobody holds it now.
    pub fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T, R>> {
        try_lock_result(self.raw.try_lock(), TryLockError::WouldBlock, || {
            // SAFETY: called only once the lock is acquired.
            unsafe { MutexGuard::new(self) }
        })
    }

    /// Locks, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<MutexGuard<'_, T, R>> {
        let deadline = shm::sync::now().checked_add(timeout);
        try_lock_result(
            self.raw.lock_until(deadline),
            TryLockError::TimedOut,
            // SAFETY: called only once the lock is acquired.
            || unsafe { MutexGuard::new(self) },
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

    /// The raw lock underneath: to read its state (`is_locked`, the
    /// holder). Locking it directly gives no guard and no access to the
    /// data; releasing it is `unsafe`.
    pub fn raw(&self) -> &R {
        &self.raw
    }
}

/// Holds a [`Mutex`]: `&mut T` while it lives; dropping it unlocks.
///
/// The guard belongs to the process that locked: in any other process (a
/// forked child that inherited a copy, or a `daemon::Process` closure it
/// was moved into) reaching the data panics, and dropping it leaves the
/// lock alone, still held by the locking process until that process drops
/// its own guard or ends.
///
/// It may move to another thread of its process (the lock is held by the
/// process, not the thread) when `T: Send`, and be shared between threads
/// when `T: Sync`, as std's guard. A guard over a `Cell` is not `Sync`, so
/// two threads cannot both reach the `Cell` through `&guard`:
///
/// ```compile_fail
/// fn shared_between_threads<T: Sync>() {}
/// shared_between_threads::<sync_lock::MutexGuard<'static, std::cell::Cell<u32>>>();
/// ```
///
/// ```
/// fn shared_between_threads<T: Sync>() {}
/// shared_between_threads::<sync_lock::MutexGuard<'static, u32>>();
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct MutexGuard<'a, T, R: RawRobustLock = RawLock> {
    mutex: &'a Mutex<T, R>,
    /// Unlocks on drop, in the acquiring process only (see
    /// [`RawLockGuard`]).
    held: RawLockGuard<'a, R>,
    /// Opts out of the auto traits: `Send` and `Sync` are argued below.
    _not_auto: PhantomData<*const ()>,
}

// SAFETY: the lock is held by the process, so any of its threads may end
// the acquisition; moving the guard moves the right to `&mut T`, which needs
// `T: Send`, as for std's `Mutex<T>: Sync`.
unsafe impl<T: Send, R: RawRobustLock> Send for MutexGuard<'_, T, R> {}
// SAFETY: `&MutexGuard` hands out only `&T`, on as many threads as share
// the reference: that needs `T: Sync` (std's rule; `T: Send` is not enough,
// a `Cell` would be mutated from two threads).
unsafe impl<T: Sync, R: RawRobustLock> Sync for MutexGuard<'_, T, R> {}

impl<'a, T, R: RawRobustLock> MutexGuard<'a, T, R> {
    /// The guard of an acquisition just made.
    ///
    /// # Safety
    ///
    /// The calling process has just acquired `mutex`'s raw lock, and no
    /// other guard stands for that acquisition.
    pub(crate) unsafe fn new(mutex: &'a Mutex<T, R>) -> MutexGuard<'a, T, R> {
        MutexGuard {
            mutex,
            // SAFETY: the caller's promise, passed on; the identity is ours.
            held: unsafe { RawLockGuard::new(&mutex.raw, shm::pid::current_identity()) },
            _not_auto: PhantomData,
        }
    }

    pub(crate) fn mutex(&self) -> &'a Mutex<T, R> {
        self.mutex
    }

    /// Panics, naming `guard`, unless this process made the acquisition
    /// (a copy inherited through fork stands for nothing here).
    pub(crate) fn assert_here(&self, guard: &str) {
        self.held.assert_here(guard);
    }
}

impl<T, R: RawRobustLock> Deref for MutexGuard<'_, T, R> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        self.held.assert_here("MutexGuard");
        // SAFETY: the guard proves that this process (checked just above to be
        // the one that acquired it)
        // holds the lock.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T, R: RawRobustLock> DerefMut for MutexGuard<'_, T, R> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        self.held.assert_here("MutexGuard");
        // SAFETY: the guard proves that this process (checked just above to be
        // the one that acquired it)
        // holds the lock, and `&mut self` that this is the only reference
        // through it.
        unsafe { &mut *self.mutex.data.get() }
    }
}
