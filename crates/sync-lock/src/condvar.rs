//! [`Condvar`]: wait for a condition on a [`Mutex`]'s data, across processes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shm::{Futex, ShmSafe};

use crate::mutex::MutexGuard;
use crate::poison::{lock_result, LockResult, OwnerDied};

/// A condition variable between processes (Python's `Condition`): wait,
/// with a [`Mutex`](crate::Mutex) unlocked, until another process notifies.
///
/// Waits may wake spuriously, as with std's; [`wait_while`](Condvar::wait_while)
/// loops for you. A waiter killed mid-wait leaves nothing that blocks
/// anyone: notifiers never wait for waiters (Python's `Condition` can hang
/// there, CPython gh-75158).
///
/// # Example
///
/// ```
/// use shm::{Shared, ShmSafe};
/// use sync_lock::{Condvar, Mutex};
///
/// #[derive(ShmSafe)]
/// #[repr(C)]
/// struct Mailbox {
///     ready: bool,
///     value: u64,
/// }
/// #[derive(ShmSafe)]
/// #[repr(C)]
/// struct Shared2 {
///     mailbox: Mutex<Mailbox>,
///     changed: Condvar,
/// }
///
/// let s = Shared::new(Shared2 {
///     mailbox: Mutex::new(Mailbox { ready: false, value: 0 }),
///     changed: Condvar::new(),
/// })?;
/// let consumer = daemon::Process::new(|| {
///     let guard = s.mailbox.lock().unwrap_or_else(|d| d.into_inner());
///     let guard = s.changed.wait_while(guard, |m| !m.ready).unwrap_or_else(|d| d.into_inner());
///     guard.value
/// })
/// .start()?;
/// {
///     let mut m = s.mailbox.lock().unwrap_or_else(|d| d.into_inner());
///     m.value = 42;
///     m.ready = true;
/// }
/// s.changed.notify_all();
/// assert_eq!(consumer.join()?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
#[derive(Debug, Default)]
pub struct Condvar {
    /// Bumped by every notify; waiters sleep on the value they saw.
    sequence: Futex,
    /// Processes inside `wait`: lets notify skip the wake system call when 0.
    /// A waiter killed inside leaves it too high, which costs only a wasted
    /// wake call per notify.
    waiters: AtomicU32,
}

// SAFETY: a futex word and an atomic: plain data.
unsafe impl ShmSafe for Condvar {}

/// Whether a timed wait returned because its time ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True if the wait ended because the timeout passed.
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl Condvar {
    /// A condition variable nobody waits on.
    pub const fn new() -> Condvar {
        Condvar {
            sequence: Futex::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// Unlocks the guard's mutex, sleeps until notified (or spuriously), and
    /// locks again. `Err(OwnerDied)` holds the lock and says a holder died
    /// meanwhile.
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        self.wait_until(guard, None)
            .map(|(g, _)| g)
            .map_err(|d| OwnerDied::new(d.into_inner().0))
    }

    /// [`wait`](Condvar::wait), giving up after `timeout`.
    pub fn wait_timeout<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        self.wait_until(guard, Instant::now().checked_add(timeout))
    }

    /// Waits until `condition` on the data is false; returns holding the lock.
    pub fn wait_while<'a, T>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<MutexGuard<'a, T>> {
        let mut died = false;
        while condition(&mut guard) {
            guard = match self.wait(guard) {
                Ok(g) => g,
                Err(d) => {
                    died = true;
                    d.into_inner()
                }
            };
        }
        if died {
            Err(OwnerDied::new(guard))
        } else {
            Ok(guard)
        }
    }

    /// [`wait_while`](Condvar::wait_while), giving up after `timeout`; the
    /// result says whether it timed out with the condition still true.
    pub fn wait_timeout_while<'a, T>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let deadline = Instant::now().checked_add(timeout);
        let mut died = false;
        loop {
            if !condition(&mut guard) {
                break;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let result = (guard, WaitTimeoutResult(true));
                return if died {
                    Err(OwnerDied::new(result))
                } else {
                    Ok(result)
                };
            }
            guard = match self.wait_until(guard, deadline) {
                Ok((g, _)) => g,
                Err(d) => {
                    died = true;
                    d.into_inner().0
                }
            };
        }
        let result = (guard, WaitTimeoutResult(false));
        if died {
            Err(OwnerDied::new(result))
        } else {
            Ok(result)
        }
    }

    fn wait_until<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let mutex = guard.mutex();
        // Read under the lock: a notify after our unlock changes it, so the
        // futex wait below returns at once instead of missing it.
        let seen = self.sequence.load(Ordering::Acquire);
        self.waiters.fetch_add(1, Ordering::SeqCst);
        drop(guard);
        let in_time = self.sequence.wait(seen, deadline);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        let how = mutex.raw().lock_until(None).expect("no deadline");
        let guard = crate::mutex::relocked(mutex);
        lock_result(how, (guard, WaitTimeoutResult(!in_time)))
    }

    /// Wakes one process waiting on this condition, if any.
    pub fn notify_one(&self) {
        self.sequence.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) != 0 {
            self.sequence.wake_one();
        }
    }

    /// Wakes every process waiting on this condition.
    pub fn notify_all(&self) {
        self.sequence.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) != 0 {
            self.sequence.wake_all();
        }
    }
}
