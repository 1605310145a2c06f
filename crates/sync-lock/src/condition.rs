//! [`Condition`]: Python's `Condition()`, a condition variable that owns
//! its re-entrant lock.

use std::time::{Duration, Instant};

use shm::ShmSafe;

use crate::condvar::{wait_while_with, Condvar, WaitTimeoutResult};
use crate::poison::{lock_result, LockResult, TryLockResult};
use crate::rlock::{NotOwner, RLock, RLockGuard};

/// A condition variable with its own re-entrant lock, between processes:
/// Python's `multiprocessing.Condition()` (whose default lock is an
/// `RLock`).
///
/// Lock it as an [`RLock`] ([`lock`](Condition::lock), or
/// [`acquire`](Condition::acquire) / [`release`](Condition::release)), then
/// [`wait`](Condition::wait) with the guard: the wait gives up *every*
/// level this thread holds, as Python's does, so a caller that locked it
/// twice (a helper called under the lock) still lets the notifier in, and
/// gets all its levels back when the wait ends. The data the condition is
/// about lives beside it in shared memory (atomics, or plain fields read
/// and written only under the lock through a type of yours); for data
/// inside a lock, use [`Mutex`](crate::Mutex) with a [`Condvar`].
///
/// Everything [`Condvar`] promises holds here: `notify(n)` ends at most
/// `n` waits, oldest first, only waits begun before it; no spurious
/// wake-ups; a waiter killed mid-wait blocks nobody; a holder that dies is
/// reported to the next locker ([`OwnerDied`](crate::OwnerDied)), never a
/// deadlock.
///
/// | Python | here |
/// |---|---|
/// | `cond = Condition()` | `let cond = Condition::shared()?;` |
/// | `with cond:` | `let guard = cond.lock()?;` (released when `guard` drops) |
/// | `cond.wait(timeout)` | `cond.wait(guard)`, `cond.wait_timeout(guard, t)` |
/// | `cond.wait_for(predicate, timeout)` | `cond.wait_while(guard, \|\| !predicate())`, `wait_timeout_while` |
/// | `cond.notify(n)`, `notify_all()` | [`notify`](Condition::notify), [`notify_one`](Condition::notify_one), [`notify_all`](Condition::notify_all) |
///
/// # Example
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use shm::{Shared, ShmSafe};
/// use sync_lock::Condition;
///
/// #[derive(ShmSafe)]
/// #[repr(C)]
/// struct Light {
///     green: AtomicBool,
///     changed: Condition,
/// }
///
/// let light = Shared::new(Light { green: AtomicBool::new(false), changed: Condition::new() })?;
/// let car = daemon::Process::new(|| {
///     let guard = light.changed.lock().unwrap();
///     let _guard = light.changed.wait_while(guard, || !light.green.load(Ordering::SeqCst)).unwrap();
///     String::from("drove")
/// })
/// .start()?;
/// {
///     let _guard = light.changed.lock().unwrap();
///     light.green.store(true, Ordering::SeqCst);
///     light.changed.notify_all();
/// }
/// assert_eq!(car.join()?, "drove");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
#[derive(Debug, Default)]
pub struct Condition {
    lock: RLock,
    changed: Condvar,
}

// SAFETY: an RLock and a Condvar, both ShmSafe, in a repr(C) struct.
unsafe impl ShmSafe for Condition {
    fn describe_layout(out: &mut shm::layout::LayoutWriter) {
        out.protocol::<Condition>("Condition v1 (RLock v1, Condvar v1)");
    }
}

impl Condition {
    shm::const_unless_loom! {
        /// A condition nobody holds or waits on.
        pub const fn new() -> Condition {
            Condition {
                lock: RLock::new(),
                changed: Condvar::new(),
            }
        }
    }

    /// A condition in anonymous shared memory, which children forked
    /// afterwards share with this process: the one-line form of
    /// `Shared::new(Condition::new())`. Python's `Condition()`.
    ///
    /// ```
    /// use sync_lock::Condition;
    ///
    /// let cond = Condition::shared()?;
    /// let guard = cond.lock().unwrap();
    /// let (_guard, result) = cond.wait_timeout(guard, std::time::Duration::from_millis(5)).unwrap();
    /// assert!(result.timed_out()); // nobody notified
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn shared() -> shm::Result<shm::Shared<Condition>> {
        shm::Shared::new(Condition::new())
    }

    /// Locks its lock (again, if this thread holds it already): Python's
    /// `with cond:` / `cond.acquire()`.
    pub fn lock(&self) -> LockResult<RLockGuard<'_>> {
        self.lock.lock()
    }

    /// Locks if free now or already held by this thread.
    pub fn try_lock(&self) -> TryLockResult<RLockGuard<'_>> {
        self.lock.try_lock()
    }

    /// Locks, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<RLockGuard<'_>> {
        self.lock.lock_timeout(timeout)
    }

    /// Python's `acquire()`: locks without a guard; pair it with
    /// [`release`](Condition::release).
    pub fn acquire(&self) -> LockResult<()> {
        self.lock.acquire()
    }

    /// Python's `release()`: undoes one `acquire`; [`NotOwner`] unless this
    /// thread holds the lock.
    pub fn release(&self) -> Result<(), NotOwner> {
        self.lock.release()
    }

    /// Whether the calling thread holds the lock.
    pub fn is_held_by_current_thread(&self) -> bool {
        self.lock.is_held_by_current_thread()
    }

    /// Gives up every level of the lock this thread holds, sleeps until
    /// notified, and takes them all back. `Err(OwnerDied)` holds the lock
    /// and says a holder died meanwhile.
    ///
    /// # Panics
    ///
    /// If `guard` holds another lock than this condition's (std's
    /// `Condvar` panics alike when used with two mutexes).
    pub fn wait<'a>(&'a self, guard: RLockGuard<'a>) -> LockResult<RLockGuard<'a>> {
        self.wait_until(guard, None)
            .map(|(g, _)| g)
            .map_err(|d| d.map(|(g, _)| g))
    }

    /// [`wait`](Condition::wait), giving up after `timeout` (with the lock
    /// held again either way).
    pub fn wait_timeout<'a>(
        &'a self,
        guard: RLockGuard<'a>,
        timeout: Duration,
    ) -> LockResult<(RLockGuard<'a>, WaitTimeoutResult)> {
        self.wait_until(guard, shm::sync::now().checked_add(timeout))
    }

    /// Waits while `condition` holds (checked with the lock held, before
    /// each wait): Python's `wait_for(predicate)` is
    /// `wait_while(guard, || !predicate())`.
    pub fn wait_while<'a>(
        &'a self,
        guard: RLockGuard<'a>,
        condition: impl FnMut() -> bool,
    ) -> LockResult<RLockGuard<'a>> {
        self.wait_while_until(guard, None, condition)
            .map(|(g, _)| g)
            .map_err(|d| d.map(|(g, _)| g))
    }

    /// [`wait_while`](Condition::wait_while), giving up after `timeout`;
    /// the result says whether it timed out with the condition still true.
    pub fn wait_timeout_while<'a>(
        &'a self,
        guard: RLockGuard<'a>,
        timeout: Duration,
        condition: impl FnMut() -> bool,
    ) -> LockResult<(RLockGuard<'a>, WaitTimeoutResult)> {
        self.wait_while_until(guard, shm::sync::now().checked_add(timeout), condition)
    }

    fn wait_while_until<'a>(
        &'a self,
        guard: RLockGuard<'a>,
        deadline: Option<Instant>,
        mut condition: impl FnMut() -> bool,
    ) -> LockResult<(RLockGuard<'a>, WaitTimeoutResult)> {
        wait_while_with(
            guard,
            |_| condition(),
            |guard| self.wait_until(guard, deadline),
        )
    }

    fn wait_until<'a>(
        &'a self,
        guard: RLockGuard<'a>,
        deadline: Option<Instant>,
    ) -> LockResult<(RLockGuard<'a>, WaitTimeoutResult)> {
        assert!(
            std::ptr::eq(guard.lock(), &self.lock),
            "Condition::wait: the guard holds another lock than this condition's"
        );
        // A guard proves its thread holds the lock, unless it is a copy
        // inherited through fork: it stands for no level here, even if this
        // process has since locked the lock itself.
        assert!(
            guard.taken_here() && self.lock.is_held_by_current_thread(),
            "Condition::wait: this thread does not hold the condition's lock (a guard inherited \
             through fork holds nothing in the child)"
        );
        let mut depth = 0;
        let notified = self
            .changed
            .release_and_await(|| depth = self.lock.release_all(), deadline);
        let how = self.lock.reacquire(depth);
        lock_result(how, (guard, WaitTimeoutResult::new(!notified)))
    }

    /// Ends at most `n` of the waits that began before this call, the
    /// oldest first (Python's `notify(n)`); returns how many it ended. Like
    /// Python, call it holding the lock, so that a waiter cannot miss the
    /// change the notify is about (not checked: a notify without the lock
    /// is safe, only racy for the caller's logic).
    pub fn notify(&self, n: u32) -> u32 {
        self.changed.notify(n)
    }

    /// Ends the oldest wait that began before this call (Python's
    /// `notify()`).
    pub fn notify_one(&self) {
        self.changed.notify_one();
    }

    /// Ends every wait that began before this call (Python's
    /// `notify_all()`).
    pub fn notify_all(&self) {
        self.changed.notify_all();
    }

    /// How many waits are in progress and not yet notified.
    pub fn n_waiting(&self) -> usize {
        self.changed.n_waiting()
    }
}
