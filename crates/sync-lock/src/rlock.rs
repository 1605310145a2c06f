//! [`RLock`]: a re-entrant lock between processes.

use std::cell::Cell;
use std::marker::PhantomData;
use std::time::Duration;

use shm::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use shm::ShmSafe;

use crate::poison::{lock_result, try_lock_result, LockResult, TryLockError, TryLockResult};
use shm::lockword::{Acquired, RawLock};
use shm::pid::{self, Identity};

/// A lock the holding thread may take again (Python's `RLock`): each
/// `lock` needs its own release, and only the holding thread of the holding
/// process may release it.
///
/// [`lock`](RLock::lock) returns a guard (not `Send`: it belongs to the
/// thread); [`acquire`](RLock::acquire) / [`release`](RLock::release) are the
/// Python-style pair for acquisitions that do not nest in one scope, and
/// `release` from any other thread or process is an error
/// ([`NotOwner`]), never a silent release. A holder that dies is reported to
/// the next locker as [`OwnerDied`](crate::OwnerDied), as for
/// [`Lock`](crate::Lock).
///
/// # Example
///
/// ```
/// use sync_lock::RLock;
///
/// let lock = RLock::shared()?;
/// let outer = lock.lock().unwrap_or_else(|d| d.into_inner());
/// let inner = lock.lock().unwrap_or_else(|d| d.into_inner()); // same thread: no deadlock
/// assert_eq!(lock.depth(), 2);
/// drop(inner);
/// drop(outer);
/// assert!(!lock.is_locked());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
#[derive(Debug, Default)]
pub struct RLock {
    raw: RawLock,
    /// Holding thread's key within the holding process; 0 when free.
    owner_thread: AtomicU64,
    /// How many times the holder has locked it; changed only by the holder.
    depth: AtomicU32,
}

// SAFETY: a RawLock and two atomics in a repr(C) struct: plain data.
unsafe impl ShmSafe for RLock {
    fn describe_layout(out: &mut shm::layout::LayoutWriter) {
        out.protocol::<RLock>("RLock v1");
    }
}

/// `release` was called by a thread or process that does not hold the
/// [`RLock`] (Python raises `RuntimeError` / `AssertionError` there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotOwner {
    /// The pid holding it, if any.
    pub holder: Option<shm::pid::Pid>,
}

impl std::fmt::Display for NotOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.holder {
            None => f.write_str("cannot release an RLock that nobody holds"),
            Some(pid) => write!(
                f,
                "cannot release an RLock held by another thread or process (holder pid {pid})"
            ),
        }
    }
}

impl std::error::Error for NotOwner {}

/// A key for the calling thread: 64 random bits, drawn anew in each
/// process (a forked child's thread does not keep its parent's key).
///
/// The key must never match a key left in an `RLock` by a thread of a dead
/// process: when this process takes over from a dead holder, the raw lock
/// already names this process while `owner_thread` still holds the dead
/// thread's key, and a thread that matched it would re-enter beside the
/// taker. A per-process counter fails there (every main thread is key 1);
/// random keys collide with probability 2^-64.
fn thread_key() -> u64 {
    shm::sync::thread_local! {
        /// (the process the key was drawn in, the key)
        static KEY: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    let here = shm::pid::current_identity().to_bits();
    KEY.with(|key| match key.get() {
        (drawn_in, key) if drawn_in == here => key,
        _ => {
            let fresh = random_key();
            key.set((here, fresh));
            fresh
        }
    })
}

/// 64 random bits from the kernel, never 0 (0 means "no thread").
#[cold]
fn random_key() -> u64 {
    loop {
        let key = crate::sys::random_u64();
        if key != 0 {
            return key;
        }
    }
}

impl RLock {
    shm::const_unless_loom! {
        /// A free re-entrant lock.
        pub const fn new() -> RLock {
            RLock {
                raw: RawLock::new(),
                owner_thread: AtomicU64::new(0),
                depth: AtomicU32::new(0),
            }
        }
    }

    /// A free re-entrant lock in anonymous shared memory, which children
    /// forked afterwards share with this process: the one-line form of
    /// `Shared::new(RLock::new())`. Python's `RLock()`.
    ///
    /// ```
    /// use sync_lock::RLock;
    ///
    /// let lock = RLock::shared()?;
    /// let held = lock.lock().unwrap();
    /// let child = daemon::Process::new(|| lock.try_lock().is_ok()).start()?;
    /// assert!(!child.join()?, "the child sees the parent's hold");
    /// drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn shared() -> shm::Result<shm::Shared<RLock>> {
        shm::Shared::new(RLock::new())
    }

    #[inline]
    fn held_by_me(&self) -> bool {
        self.raw.is_held_by_current_process()
            && self.owner_thread.load(Ordering::Relaxed) == thread_key()
    }

    /// Takes it once more if this thread holds it; `None` otherwise.
    #[inline]
    fn reenter(&self) -> Option<()> {
        if self.held_by_me() {
            self.depth.fetch_add(1, Ordering::Relaxed);
            Some(())
        } else {
            None
        }
    }

    #[inline]
    fn took(&self, how: Acquired) -> Acquired {
        self.owner_thread.store(thread_key(), Ordering::Relaxed);
        self.depth.store(1, Ordering::Relaxed);
        how
    }

    /// Locks (again, if this thread already holds it).
    #[inline]
    pub fn lock(&self) -> LockResult<RLockGuard<'_>> {
        let how = match self.reenter() {
            Some(()) => Acquired::Clean,
            None => self.took(self.raw.lock_until(None).expect("no deadline")),
        };
        lock_result(how, RLockGuard::new(self))
    }

    /// Locks if free now or already held by this thread.
    #[inline]
    pub fn try_lock(&self) -> TryLockResult<RLockGuard<'_>> {
        let how = match self.reenter() {
            Some(()) => Some(Acquired::Clean),
            None => self.raw.try_lock().map(|how| self.took(how)),
        };
        try_lock_result(how, TryLockError::WouldBlock, || RLockGuard::new(self))
    }

    /// Locks, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<RLockGuard<'_>> {
        let how = match self.reenter() {
            Some(()) => Some(Acquired::Clean),
            None => self
                .raw
                .lock_until(shm::sync::now().checked_add(timeout))
                .map(|how| self.took(how)),
        };
        try_lock_result(how, TryLockError::TimedOut, || RLockGuard::new(self))
    }

    /// Python's `acquire()`: locks without a guard; pair it with
    /// [`release`](RLock::release). `Err(OwnerDied)` still holds the lock.
    #[inline]
    pub fn acquire(&self) -> LockResult<()> {
        self.lock()
            .map(std::mem::forget)
            .map_err(|died| died.map(std::mem::forget))
    }

    /// Python's `release()`: undoes one `acquire` (or one guard's worth).
    /// Fails with [`NotOwner`] unless this thread of this process holds it.
    #[inline]
    pub fn release(&self) -> Result<(), NotOwner> {
        if !self.held_by_me() {
            return Err(NotOwner {
                holder: self.raw.owner(),
            });
        }
        if self.depth.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.owner_thread.store(0, Ordering::Relaxed);
            // SAFETY: this thread holds the lock (checked above) and this is
            // its last level. A level released while the thread panics
            // (a guard dropped in unwinding) tells the next locker.
            unsafe {
                if std::thread::panicking() {
                    self.raw.unlock_poisoned();
                } else {
                    self.raw.unlock();
                }
            }
        }
        Ok(())
    }

    /// Releases every level the calling thread holds, for a wait on a
    /// [`Condition`](crate::Condition); returns how many, for
    /// [`reacquire`](RLock::reacquire). The caller has checked that this
    /// thread holds it.
    pub(crate) fn release_all(&self) -> u32 {
        debug_assert!(self.held_by_me());
        let depth = self.depth.load(Ordering::Relaxed);
        self.owner_thread.store(0, Ordering::Relaxed);
        // SAFETY: this thread holds the lock (the caller's check), and every
        // level of it is given up here at once.
        unsafe { self.raw.unlock() };
        depth
    }

    /// Locks again after [`release_all`](RLock::release_all), with the
    /// levels it returned.
    pub(crate) fn reacquire(&self, depth: u32) -> Acquired {
        let how = self.took(self.raw.lock_until(None).expect("no deadline"));
        self.depth.store(depth, Ordering::Relaxed);
        how
    }

    /// How many times the holding thread has it locked (0 when free).
    pub fn depth(&self) -> u32 {
        if self.raw.is_locked() {
            self.depth.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Whether some thread of some process holds it.
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// The holding process's identity (pid and start tag), if any. Reading
    /// it changes nothing (for tools such as `procsync inspect`).
    ///
    /// ```
    /// use sync_lock::RLock;
    ///
    /// let lock = RLock::new();
    /// assert_eq!(lock.owner_identity(), None);
    /// let _held = lock.lock().unwrap();
    /// assert_eq!(lock.owner_identity(), Some(shm::pid::current_identity()));
    /// ```
    pub fn owner_identity(&self) -> Option<shm::pid::Identity> {
        self.raw.owner_identity()
    }

    /// Whether some process may be asleep waiting for it (see
    /// [`RawLock::has_waiters`](shm::lockword::RawLock::has_waiters)).
    ///
    /// ```
    /// assert!(!sync_lock::RLock::new().has_waiters());
    /// ```
    pub fn has_waiters(&self) -> bool {
        self.raw.has_waiters()
    }

    /// Whether the calling thread holds it.
    pub fn is_held_by_current_thread(&self) -> bool {
        self.held_by_me()
    }
}

/// One level of an [`RLock`] held by this thread; dropping it releases that
/// level.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    /// The process whose thread took this level.
    acquirer: Identity,
    /// Stays on the holding thread.
    _not_send: PhantomData<*const ()>,
}

impl<'a> RLockGuard<'a> {
    #[inline]
    fn new(lock: &'a RLock) -> RLockGuard<'a> {
        RLockGuard {
            lock,
            acquirer: pid::current_identity(),
            _not_send: PhantomData,
        }
    }
}

impl<'a> RLockGuard<'a> {
    /// The lock this guard holds a level of.
    pub(crate) fn lock(&self) -> &'a RLock {
        self.lock
    }

    /// Whether this process took the level (not a copy inherited through
    /// fork, which stands for nothing here).
    pub(crate) fn taken_here(&self) -> bool {
        self.acquirer == pid::current_identity()
    }
}

impl Drop for RLockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // A guard is only ever dropped by its thread (it is not Send). A
        // bitwise copy in a forked child stands for no level there, even if
        // that child's thread (whose key is redrawn, but whose process may
        // have locked the RLock itself since) holds the lock: it leaves the
        // lock alone.
        if pid::current_identity() == self.acquirer {
            let _ = self.lock.release();
        }
    }
}
