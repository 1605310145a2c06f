//! [`Condvar`]: wait for a condition on a [`Mutex`]'s data, across processes.

use std::time::{Duration, Instant};

use shm::futex::Recheck;
use shm::sync::atomic::{AtomicU64, Ordering};
use shm::{Futex, ShmSafe};

use crate::mutex::MutexGuard;
use crate::poison::{lock_result, LockResult, OwnerDied};
use crate::raw::Acquired;

/// A condition variable between processes (Python's `Condition`): wait,
/// with a [`Mutex`](crate::Mutex) unlocked, until another process notifies.
///
/// Python's promises hold: [`notify(n)`](Condvar::notify) ends at most `n`
/// waits, and only waits that began before it; a wait ends only when
/// notified or timed out (no spurious wake-ups, though std allows them and
/// [`wait_while`](Condvar::wait_while) loops anyway). A waiter killed
/// mid-wait leaves nothing that blocks anyone: notifiers never wait for
/// waiters (Python's `Condition` can hang there, CPython gh-75158). The one
/// trace it leaves: if a notify had already chosen it, that notification is
/// left for a later waiter, so one later notify may end one wait more than
/// it asked.
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
    /// Three wrapping counters (see [`Tally`]): waits entered, grants made
    /// (by notifies, or by a timed-out waiter to itself), grants taken.
    tally: AtomicU64,
    /// Bumped after every grant; waiters sleep on the value they read
    /// before looking at the tally, so no grant is slept through.
    /// [`SLEEPERS`] says a wake system call is needed.
    sequence: Futex,
}

// SAFETY: an atomic and a futex word: plain data.
unsafe impl ShmSafe for Condvar {}

/// Set in `sequence` while some process may sleep on it.
const SLEEPERS: u32 = 1 << 31;

/// The condvar's bookkeeping, one u64 changed by compare-and-swap:
///
/// | bits   | counter  | changed by                                    |
/// |--------|----------|-----------------------------------------------|
/// | 0..21  | entered  | +1 by each wait as it begins                  |
/// | 21..42 | granted  | +k by notify(n), k = min(n, entered - granted)|
/// |        |          | +1 by a timed-out waiter nobody granted       |
/// | 42..63 | taken    | +1 by each wait that ends                     |
///
/// All three wrap at 2^21; only differences are read, and those stay below
/// the number of concurrent waiters. `entered - granted` is the number of
/// waiters no notify has chosen yet (what the next notify may end);
/// `granted - taken` the grants not yet taken. A waiter may take a grant
/// only once `granted` has moved since it entered: a notify never ends a
/// wait that began after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tally(u64);

const COUNTER_BITS: u32 = 21;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;

impl Tally {
    fn entered(self) -> u64 {
        self.0 & COUNTER_MASK
    }
    fn granted(self) -> u64 {
        (self.0 >> COUNTER_BITS) & COUNTER_MASK
    }
    fn taken(self) -> u64 {
        (self.0 >> (2 * COUNTER_BITS)) & COUNTER_MASK
    }
    fn from_counters(entered: u64, granted: u64, taken: u64) -> Tally {
        Tally(
            (entered & COUNTER_MASK)
                | (granted & COUNTER_MASK) << COUNTER_BITS
                | (taken & COUNTER_MASK) << (2 * COUNTER_BITS),
        )
    }
    /// Waiters that no notify has chosen yet.
    fn ungranted(self) -> u64 {
        self.entered().wrapping_sub(self.granted()) & COUNTER_MASK
    }
    /// Whether a waiter that entered when `granted` was `granted_at_entry`
    /// may take a grant now.
    fn grant_for(self, granted_at_entry: u64) -> bool {
        self.granted() != granted_at_entry && self.taken() != self.granted()
    }
    fn enter(self) -> Tally {
        Tally::from_counters(self.entered() + 1, self.granted(), self.taken())
    }
    fn grant(self, count: u64) -> Tally {
        Tally::from_counters(self.entered(), self.granted() + count, self.taken())
    }
    fn take(self) -> Tally {
        Tally::from_counters(self.entered(), self.granted(), self.taken() + 1)
    }
}

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
    shm::const_unless_loom! {
        /// A condition variable nobody waits on.
        pub const fn new() -> Condvar {
            Condvar {
                tally: AtomicU64::new(0),
                sequence: Futex::new(0),
            }
        }
    }

    /// Unlocks the guard's mutex, sleeps until notified, and locks again.
    /// `Err(OwnerDied)` holds the lock and says a holder died (or panicked)
    /// meanwhile.
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        self.wait_until(guard, None)
            .map(|(g, _)| g)
            .map_err(|d| d.map(|(g, _)| g))
    }

    /// [`wait`](Condvar::wait), giving up after `timeout`.
    pub fn wait_timeout<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        self.wait_until(guard, shm::sync::now().checked_add(timeout))
    }

    /// Waits until `condition` on the data is false; returns holding the lock.
    pub fn wait_while<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<MutexGuard<'a, T>> {
        self.wait_while_until(guard, None, &mut condition)
            .map(|(g, _)| g)
            .map_err(|d| d.map(|(g, _)| g))
    }

    /// [`wait_while`](Condvar::wait_while), giving up after `timeout`; the
    /// result says whether it timed out with the condition still true.
    pub fn wait_timeout_while<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        self.wait_while_until(guard, shm::sync::now().checked_add(timeout), &mut condition)
    }

    fn wait_while_until<'a, T>(
        &self,
        mut guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
        condition: &mut dyn FnMut(&mut T) -> bool,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        // The first unclean relock is the one reported, once, at the end.
        let mut report: Option<Acquired> = None;
        let mut timed_out = false;
        while condition(&mut guard) {
            if timed_out {
                break;
            }
            let (g, result) = match self.wait_until(guard, deadline) {
                Ok(done) => done,
                Err(died) => {
                    report.get_or_insert(if died.holder_panicked() {
                        Acquired::HolderPanicked
                    } else {
                        Acquired::OwnerDied
                    });
                    died.into_inner()
                }
            };
            guard = g;
            timed_out = result.timed_out();
        }
        let result = (guard, WaitTimeoutResult(timed_out));
        match report {
            None => Ok(result),
            Some(how) => Err(OwnerDied::new(result, how)),
        }
    }

    fn wait_until<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let mutex = guard.mutex();
        // Enter while still holding the mutex: a notify that follows our
        // unlock counts us among the waiters it may end.
        let entered = Tally(
            self.tally
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                    Some(Tally(t).enter().0)
                })
                .expect("the update always succeeds"),
        );
        let granted_at_entry = entered.granted();
        drop(guard);
        let notified = self.await_grant(granted_at_entry, deadline);
        let how = mutex.raw().lock_until(None).expect("no deadline");
        // SAFETY: this process has just acquired the mutex's raw lock.
        let guard = unsafe { MutexGuard::new(mutex) };
        lock_result(how, (guard, WaitTimeoutResult(!notified)))
    }

    /// Sleeps until this waiter takes a grant (`true`) or `deadline`
    /// passes with none to take (`false`, after withdrawing).
    fn await_grant(&self, granted_at_entry: u64, deadline: Option<Instant>) -> bool {
        // A notifier killed between its grant and its wake leaves the
        // grant and us asleep: look again now and then.
        let mut recheck = Recheck::new();
        loop {
            // Read the sequence before the tally: a grant made after this
            // read bumps the sequence, so the sleep below returns at once.
            let seen = self.sequence.load(Ordering::SeqCst);
            let mut tally = Tally(self.tally.load(Ordering::SeqCst));
            let out_of_time = deadline.is_some_and(|d| shm::sync::now() >= d);
            loop {
                let next = if tally.grant_for(granted_at_entry) {
                    tally.take()
                } else if out_of_time {
                    // Withdraw: grant ourselves and take it, so `entered -
                    // granted` counts only the waiters still waiting.
                    tally.grant(1).take()
                } else {
                    break;
                };
                match self.tally.compare_exchange(
                    tally.0,
                    next.0,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(_) => return next.granted() == tally.granted(),
                    Err(now) => tally = Tally(now),
                }
            }
            self.sequence
                .flag_and_wait(seen, SLEEPERS, recheck.wake_at(deadline));
        }
    }

    /// Ends at most `n` of the waits that began before this call (Python's
    /// `notify(n)`); returns how many it chose. Only a system call if some
    /// chosen waiter may sleep.
    pub fn notify(&self, n: u32) -> u32 {
        let mut tally = Tally(self.tally.load(Ordering::SeqCst));
        let chosen = loop {
            let chosen = tally.ungranted().min(u64::from(n));
            if chosen == 0 {
                return 0;
            }
            match self.tally.compare_exchange(
                tally.0,
                tally.grant(chosen).0,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break chosen,
                Err(now) => tally = Tally(now),
            }
        };
        let before = self
            .sequence
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                Some(s.wrapping_add(1) & !SLEEPERS)
            })
            .expect("the update always succeeds");
        if before & SLEEPERS != 0 {
            // Every sleeper looks: the grant is for any waiter that entered
            // before it, and the kernel cannot tell which those are.
            self.sequence.wake_all();
        }
        chosen as u32
    }

    /// Ends one wait that began before this call, if any (Python's
    /// `notify()`).
    pub fn notify_one(&self) {
        self.notify(1);
    }

    /// Ends every wait that began before this call (Python's
    /// `notify_all()`).
    pub fn notify_all(&self) {
        self.notify(u32::MAX);
    }
}
