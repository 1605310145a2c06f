//! What a lock reports besides the guard: the previous owner died (or
//! panicked), the lock was busy, the wait timed out.

use std::fmt;

/// The lock was acquired, but its previous holder's process died while
/// holding it, or the holder's thread panicked while holding it (std's
/// poisoning; [`holder_panicked`](OwnerDied::holder_panicked) tells which):
/// what the lock protects may be half-updated.
///
/// Like std's `PoisonError`, it carries the guard: repair the data through it
/// (or check it is consistent), then carry on. Unlike std's poisoning, the
/// report is made once, to the next acquirer (in whatever process); the
/// lock is usable again afterwards.
///
/// ```
/// use sync_lock::Mutex;
///
/// let m = Mutex::new(5);
/// let guard = m.lock().unwrap_or_else(|died| {
///     // Repair here if needed, then use the lock as usual.
///     died.into_inner()
/// });
/// assert_eq!(*guard, 5);
/// ```
pub struct OwnerDied<G> {
    guard: G,
    panicked: bool,
}

impl<G> OwnerDied<G> {
    /// The report of an acquisition that was not clean.
    pub(crate) fn new(guard: G, how: shm::lockword::Acquired) -> OwnerDied<G> {
        debug_assert!(how != shm::lockword::Acquired::Clean);
        OwnerDied {
            guard,
            panicked: how == shm::lockword::Acquired::HolderPanicked,
        }
    }

    /// The same report around another guard (or guard-carrying value).
    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> OwnerDied<H> {
        OwnerDied {
            guard: f(self.guard),
            panicked: self.panicked,
        }
    }

    /// `true` if the previous holder's thread panicked while holding the
    /// lock (its process may still run); `false` if its process died.
    pub fn holder_panicked(&self) -> bool {
        self.panicked
    }

    /// The guard: this process holds the lock.
    pub fn into_inner(self) -> G {
        self.guard
    }

    /// A reference to the guard.
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// A mutable reference to the guard.
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerDied")
            .field("holder_panicked", &self.panicked)
            .finish_non_exhaustive()
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.panicked {
            "the previous holder panicked while holding the lock; \
             this process now holds it and should check the protected data"
        } else {
            "the previous holder's process died while holding the lock; \
             this process now holds it and should check the protected data"
        })
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

/// Why `try_lock` or `lock_timeout` gave no plain guard.
pub enum TryLockError<G> {
    /// `try_lock`: another process (or thread) holds the lock.
    WouldBlock,
    /// `lock_timeout`: the timeout passed while another held the lock.
    TimedOut,
    /// Acquired, but the previous holder died holding it.
    OwnerDied(OwnerDied<G>),
}

impl<G> From<OwnerDied<G>> for TryLockError<G> {
    fn from(died: OwnerDied<G>) -> TryLockError<G> {
        TryLockError::OwnerDied(died)
    }
}

impl<G> fmt::Debug for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock => f.write_str("WouldBlock"),
            TryLockError::TimedOut => f.write_str("TimedOut"),
            TryLockError::OwnerDied(died) => died.fmt(f),
        }
    }
}

impl<G> fmt::Display for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock => {
                f.write_str("the lock is held by another process or thread")
            }
            TryLockError::TimedOut => f.write_str("timed out waiting for the lock"),
            TryLockError::OwnerDied(died) => died.fmt(f),
        }
    }
}

impl<G> std::error::Error for TryLockError<G> {}

/// The result of `lock`: the guard, or the guard wrapped in [`OwnerDied`].
pub type LockResult<G> = Result<G, OwnerDied<G>>;

/// The result of `try_lock` and `lock_timeout`.
pub type TryLockResult<G> = Result<G, TryLockError<G>>;

/// Turns a raw acquisition into the std-style results.
pub(crate) fn lock_result<G>(how: shm::lockword::Acquired, guard: G) -> LockResult<G> {
    match how {
        shm::lockword::Acquired::Clean => Ok(guard),
        how => Err(OwnerDied::new(guard, how)),
    }
}

/// Like [`lock_result`], with `None` (not acquired) becoming `absent`.
pub(crate) fn try_lock_result<G>(
    how: Option<shm::lockword::Acquired>,
    absent: TryLockError<G>,
    guard: impl FnOnce() -> G,
) -> TryLockResult<G> {
    match how {
        None => Err(absent),
        Some(how) => lock_result(how, guard()).map_err(TryLockError::OwnerDied),
    }
}
