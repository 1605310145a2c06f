//! [`Semaphore`]: a counting semaphore between processes.

use std::time::{Duration, Instant};

use shm::futex::Recheck;
use shm::spin::Spin;
use shm::sync::atomic::Ordering;
use shm::{crash_point, Futex, ShmSafe};

/// The names of the semaphore's crash points (see `shm::crash`): a release
/// makes one store, but the wake that follows it is a second step a death
/// can separate from it.
pub const SEMAPHORE_CRASH_POINTS: &[&str] = &["semaphore: release stored"];

use crate::count::{
    checked_release, clamp_permits, has_sleepers, permits_in, public_bound, wake_sleepers_of,
    COUNT, SLEEPERS,
};
use crate::{AcquireError, Permit, ReleaseError, MAX_PERMITS};

/// Rounds of exponential spinning (about 130 pause instructions in all)
/// before a waiter sleeps.
/// (the model's few under loom: see `shm::spin`).
const SPIN_ROUNDS: u32 = 7;

/// A counting semaphore between processes: Python's
/// `multiprocessing.Semaphore`, or `BoundedSemaphore` when made with
/// [`bounded`](Semaphore::bounded).
///
/// [`acquire`](Semaphore::acquire) waits for a free permit and returns it as
/// a [`Permit`] that releases on drop; [`release`](Semaphore::release) adds
/// permits from anywhere, for signalling. Eight bytes in shared memory.
///
/// A process that dies holding permits does not give them back (as with
/// POSIX and Python semaphores); waiters with a timeout still return on time.
/// [`RobustSemaphore`](crate::RobustSemaphore) returns them.
///
/// # Example
///
/// The seed's KTV with two rooms: never more than two singers inside.
///
/// ```
/// use shm::Shared;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use sync_sem::Semaphore;
///
/// let rooms = Semaphore::shared(2)?;
/// let inside = Shared::new(AtomicU32::new(0))?;
/// let most = Shared::new(AtomicU32::new(0))?;
/// let singers: Vec<_> = (0..5)
///     .map(|_| {
///         daemon::Process::new(|| {
///             let _room = rooms.acquire();
///             let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
///             most.fetch_max(now, Ordering::SeqCst);
///             inside.fetch_sub(1, Ordering::SeqCst);
///         })
///         .start()
///     })
///     .collect::<Result<_, _>>()?;
/// for s in singers {
///     s.join()?;
/// }
/// assert!(most.load(Ordering::SeqCst) <= 2);
/// assert_eq!(rooms.value(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct Semaphore {
    /// Free permits, plus the sleepers bit.
    word: Futex,
    /// The largest value releases may reach; `MAX_PERMITS` if unbounded.
    bound: u32,
}

// SAFETY: a futex word and an integer: plain data.
unsafe impl ShmSafe for Semaphore {
    fn describe_layout(out: &mut shm::layout::LayoutWriter) {
        out.protocol::<Semaphore>("Semaphore v1");
    }
}

/// A semaphore of one free permit: Python's `Semaphore()`, whose `value`
/// defaults to 1 (a lock any process may release). Unbounded, as
/// [`new`](Semaphore::new); `Semaphore::bounded(1)` is Python's
/// `BoundedSemaphore()`.
///
/// Like every primitive here it works between processes once it lives in
/// shared memory:
///
/// ```
/// use shm::Shared;
/// use sync_sem::Semaphore;
///
/// let sem = Shared::new(Semaphore::default())?;
/// assert_eq!(sem.value(), 1);
/// let held = sem.acquire();
/// let child = daemon::Process::new(|| sem.try_acquire().is_err()).start()?;
/// assert!(child.join()?, "the one permit is taken");
/// drop(held);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl Default for Semaphore {
    fn default() -> Semaphore {
        Semaphore::new(1)
    }
}

impl Semaphore {
    shm::const_unless_loom! {
        /// A semaphore with `permits` free permits (at most
        /// [`MAX_PERMITS`]; larger values are clamped).
        pub const fn new(permits: u32) -> Semaphore {
            Semaphore {
                word: Futex::new(clamp_permits(permits)),
                bound: MAX_PERMITS,
            }
        }
    }

    /// A semaphore with `permits` free permits in anonymous shared memory,
    /// which children forked afterwards share with this process: the
    /// one-line form of `Shared::new(Semaphore::new(permits))`. Python's
    /// `Semaphore(n)`.
    ///
    /// ```
    /// use sync_sem::Semaphore;
    ///
    /// let sem = Semaphore::shared(1)?;
    /// let held = sem.acquire();
    /// let child = daemon::Process::new(|| sem.try_acquire().is_ok()).start()?;
    /// assert!(!child.join()?, "the one permit is the parent's");
    /// drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn shared(permits: u32) -> shm::Result<shm::Shared<Semaphore>> {
        shm::Shared::new(Semaphore::new(permits))
    }

    shm::const_unless_loom! {
        /// A bounded semaphore (Python's `BoundedSemaphore`): a release that
        /// would take the value above `permits` fails with
        /// [`ReleaseError::AboveBound`] and changes nothing. The check and the
        /// increment are one atomic step, so racing releasers cannot slip past
        /// it (CPython's check and increment are separate).
        pub const fn bounded(permits: u32) -> Semaphore {
            let permits = clamp_permits(permits);
            Semaphore {
                word: Futex::new(permits),
                bound: permits,
            }
        }
    }

    /// Takes one permit, waiting as long as it takes (Python's `acquire()`).
    #[inline]
    pub fn acquire(&self) -> Permit<'_> {
        if !self.try_take() {
            self.take_contended(None);
        }
        Permit::plain(self)
    }

    /// Takes a permit if one is free now (Python's `acquire(False)`).
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, AcquireError> {
        if self.try_take() {
            Ok(Permit::plain(self))
        } else {
            Err(AcquireError::WouldBlock)
        }
    }

    /// Takes a permit, waiting at most `timeout` (Python's
    /// `acquire(timeout=...)`). [`AcquireError::TimedOut`] once it has
    /// passed, never before.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Permit<'_>, AcquireError> {
        if self.try_take() || self.take_contended(shm::sync::now().checked_add(timeout)) {
            Ok(Permit::plain(self))
        } else {
            Err(AcquireError::TimedOut)
        }
    }

    /// Adds one permit (Python's `release()`), waking a waiter if any.
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.release_n(1)
    }

    /// Adds `n` permits at once, waking waiters if any. Nothing is added if
    /// it would pass the bound or [`MAX_PERMITS`].
    #[inline]
    pub fn release_n(&self, n: u32) -> Result<(), ReleaseError> {
        shm::placement::check(self, "sync_sem::Semaphore", "Semaphore::shared(permits)");
        let mut seen = self.word.load(Ordering::Relaxed);
        loop {
            let would_be = checked_release(seen & COUNT, n, self.bound)?;
            // Clearing the sleepers bit here is safe: a sleeper that finds no
            // permit after waking sets it again before sleeping.
            match self.word.compare_exchange_weak(
                seen,
                would_be,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => seen = now,
            }
        }
        crash_point!(SEMAPHORE_CRASH_POINTS, "semaphore: release stored");
        wake_sleepers_of(&self.word, seen);
        Ok(())
    }

    /// The number of free permits now (Python's `get_value()`).
    pub fn value(&self) -> u32 {
        permits_in(&self.word)
    }

    /// The bound of a [`bounded`](Semaphore::bounded) semaphore, or `None`.
    pub fn bound(&self) -> Option<u32> {
        public_bound(self.bound)
    }

    /// Whether some process may be asleep waiting for a permit (the word's
    /// sleepers bit: set by an acquirer before it sleeps, cleared by the
    /// release that wakes; it may stay set a moment after the last sleeper
    /// left). Reading it changes nothing (for tools such as `procsync
    /// inspect`).
    ///
    /// ```
    /// let sem = sync_sem::Semaphore::new(1);
    /// assert!(!sem.has_sleepers());
    /// ```
    pub fn has_sleepers(&self) -> bool {
        has_sleepers(&self.word)
    }

    /// One permit back from a dropped [`Permit`]. It can only fail if
    /// `release` calls already refilled a bounded semaphore (or filled an
    /// unbounded one to [`MAX_PERMITS`]) while the permit was out: the
    /// program released more than it took. That is reported by a panic
    /// (a drop cannot return an error), and the count is left unchanged.
    #[inline]
    pub(crate) fn give_back_one(&self) {
        if let Err(err) = self.release_n(1) {
            if !std::thread::panicking() {
                panic!("dropping a semaphore permit: {err}");
            }
        }
    }

    #[inline]
    fn try_take(&self) -> bool {
        shm::placement::check(self, "sync_sem::Semaphore", "Semaphore::shared(permits)");
        let seen = self.word.load(Ordering::Relaxed);
        seen & COUNT != 0
            && self
                .word
                .compare_exchange(seen, seen - 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Waits for a permit until `deadline`; true if one was taken.
    #[cold]
    fn take_contended(&self, deadline: Option<Instant>) -> bool {
        let mut spin = Spin::busy(SPIN_ROUNDS);
        let mut recheck = Recheck::new();
        loop {
            let seen = self.word.load(Ordering::Relaxed);
            if seen & COUNT != 0 {
                if self
                    .word
                    .compare_exchange_weak(seen, seen - 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return true;
                }
                continue;
            }
            if deadline.is_some_and(|d| shm::sync::now() >= d) {
                return false;
            }
            // Spin briefly, without yielding: measured on two CPUs with four
            // processes, yielding to a peer that then contends for the same
            // word halves the throughput (docs/benchmarks.md, W4).
            if spin.spin_once() {
                continue;
            }
            // A releaser killed between its store and its wake leaves a
            // permit free and us asleep: look again now and then.
            self.word
                .flag_and_wait(seen, SLEEPERS, recheck.wake_at(deadline));
        }
    }
}
