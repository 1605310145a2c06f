//! The futex word: a 32-bit atomic that processes wait on and wake each other
//! through, wherever each of them has it mapped.
//!
//! This is the only place in procsync that calls the `futex(2)` system call
//! (through the crate's OS layer, `sys`).
//! The primitives in `sync-lock`, `sync-sem` and `sync-event` are built on
//! [`Futex`]; they spin briefly in user space first and only come here to
//! sleep.
//!
//! Two rules make it work between processes:
//!
//! - **No `FUTEX_PRIVATE_FLAG`.** A private futex is keyed by the address in
//!   one process's memory map and never wakes a waiter in another process. A
//!   shared futex is keyed by the underlying page (the memfd, the `/dev/shm`
//!   file or the shared anonymous mapping), so it works at a different address
//!   in every process.
//! - **The word lives in shared memory.** A `Futex` on the stack or in the
//!   heap of one process can only coordinate that process's threads. Put it in
//!   a [`Shared`](crate::Shared) (directly or inside a primitive).
//!
//! References: `futex(2)`, `futex(7)` and Ulrich Drepper's *Futexes Are
//! Tricky*.
//!
//! Under `cfg(loom)` the words are loom atomics and `wait`/`wake` are the
//! model's (see [`crate::sync`]).

use std::time::{Duration, Instant};

use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The sleepers bit: by convention, bit 31 of every procsync futex word (the
/// low half of a [`Futex64`]) says "some process may sleep here". A waiter
/// sets it ([`Futex::flag_and_wait`]) before it sleeps; a releaser calls
/// `futex_wake` only when it clears a word that had it, so a release makes
/// no system call while nobody sleeps.
pub const SLEEPERS: u32 = 1 << 31;

/// A 32-bit word that processes can sleep on until another process changes
/// it and wakes them.
///
/// It dereferences to its [`AtomicU32`], so the value is read and changed
/// with the ordinary atomic operations; [`wait`](Futex::wait) and
/// [`wake`](Futex::wake) add the sleeping.
///
/// # Example
///
/// A child process waits until its parent flips the word.
///
/// ```
/// use shm::{Futex, Shared};
/// use std::sync::atomic::Ordering;
/// use std::time::{Duration, Instant};
///
/// let flag = Shared::new(Futex::new(0))?;
/// let child = daemon::Process::new(|| {
///     let deadline = Instant::now() + Duration::from_secs(10);
///     while flag.load(Ordering::Acquire) == 0 {
///         if !flag.wait(0, Some(deadline)) {
///             return false; // timed out
///         }
///     }
///     true
/// })
/// .start()?;
/// flag.store(1, Ordering::Release);
/// flag.wake_all();
/// assert!(child.join()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(transparent)]
#[derive(Debug, Default)]
pub struct Futex {
    word: AtomicU32,
}

#[allow(unsafe_code)] // a hand impl of the unsafe trait ShmSafe
                      // SAFETY: a single AtomicU32: plain data, valid at any address, and its
                      // futex key is the shared page, not this process's address.
unsafe impl crate::ShmSafe for Futex {
    fn describe_layout(out: &mut crate::layout::LayoutWriter) {
        out.structure(
            "Futex",
            "transparent",
            size_of::<Futex>(),
            align_of::<Futex>(),
            1,
        );
        out.field::<std::sync::atomic::AtomicU32>("word", std::mem::offset_of!(Futex, word));
    }
}

impl std::ops::Deref for Futex {
    type Target = AtomicU32;

    fn deref(&self) -> &AtomicU32 {
        &self.word
    }
}

impl Futex {
    crate::const_unless_loom! {
        /// A futex word holding `value`.
        pub const fn new(value: u32) -> Futex {
            Futex {
                word: AtomicU32::new(value),
            }
        }
    }

    /// Sleeps while the word holds `expected`, until another thread or
    /// process calls [`wake`](Futex::wake) or the `deadline` passes.
    ///
    /// Returns `false` only when the deadline has passed (checked on the
    /// monotonic clock, so never early); `true` otherwise. A `true` does not
    /// mean the word changed: the call also returns when the word did not
    /// hold `expected` to begin with, on a signal (`EINTR`) and on spurious
    /// wake-ups. Callers re-check their condition in a loop.
    ///
    /// `deadline: None` waits without a time limit.
    #[cfg(not(loom))]
    pub fn wait(&self, expected: u32, deadline: Option<Instant>) -> bool {
        futex_wait(&self.word, expected, deadline)
    }

    /// [`wait`](Futex::wait) in a loom model (see [`crate::sync::model`]).
    #[cfg(loom)]
    pub fn wait(&self, expected: u32, deadline: Option<Instant>) -> bool {
        let holds = || self.word.load(Ordering::SeqCst) == expected;
        crate::sync::model::futex_wait(self.key(), holds, deadline)
    }

    /// The sleeping half of a primitive with a "sleepers" flag: sets `flag`
    /// in the word if it still holds `seen` (telling the next releaser a
    /// wake-up is needed), then sleeps while the word holds `seen | flag`,
    /// until woken or `deadline`. Returns at once if the word changed first.
    ///
    /// Like [`wait`](Futex::wait), a return says nothing about why: the
    /// caller re-checks its condition (and its deadline) in a loop.
    pub fn flag_and_wait(&self, seen: u32, flag: u32, deadline: Option<Instant>) {
        if seen & flag == 0
            && self
                .word
                .compare_exchange(seen, seen | flag, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.wait(seen | flag, deadline);
    }

    /// Wakes at most `count` waiters sleeping in [`wait`](Futex::wait) on this
    /// word, in any process. Returns how many were woken.
    ///
    /// This is a system call even when nobody waits: primitives keep their own
    /// record of sleepers and skip it when there are none.
    #[cfg(not(loom))]
    pub fn wake(&self, count: u32) -> u32 {
        futex_wake(&self.word, count)
    }

    /// [`wake`](Futex::wake) in a loom model (see [`crate::sync::model`]).
    #[cfg(loom)]
    pub fn wake(&self, count: u32) -> u32 {
        crate::sync::model::futex_wake(self.key(), count)
    }

    /// The model's key for this word: its address.
    #[cfg(loom)]
    fn key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Wakes one waiter, if any. See [`wake`](Futex::wake).
    pub fn wake_one(&self) -> u32 {
        self.wake(1)
    }

    /// Wakes every waiter. See [`wake`](Futex::wake).
    pub fn wake_all(&self) -> u32 {
        self.wake(u32::MAX)
    }

    /// Loads the word with `Acquire` ordering (a shorthand for the most
    /// common read before a [`wait`](Futex::wait)).
    pub fn value(&self) -> u32 {
        self.word.load(Ordering::Acquire)
    }
}

/// A 64-bit atomic word whose low 32 bits are a futex word: wide enough to
/// hold a whole [`Identity`](crate::pid::Identity) beside a few flags, and
/// changed only by 64-bit atomic operations, so a compare-and-swap compares
/// the identity as a whole.
///
/// Sleepers wait on the low half (the kernel's futex word is 32 bits), so a
/// change of the high half alone does not end a [`wait`](Futex64::wait):
/// a primitive built on it must change the low half, or wake, whenever a
/// sleeper needs to look again. The lock word does: every release clears
/// the low half.
///
/// # Example
///
/// ```
/// use shm::{futex::Futex64, Shared};
/// use std::sync::atomic::Ordering;
/// use std::time::{Duration, Instant};
///
/// let word = Shared::new(Futex64::new(0))?;
/// let child = daemon::Process::new(|| {
///     let deadline = Instant::now() + Duration::from_secs(10);
///     while word.load(Ordering::Acquire) == 0 {
///         if !word.wait(0, Some(deadline)) {
///             return false;
///         }
///     }
///     true
/// })
/// .start()?;
/// word.store(1 << 40 | 1, Ordering::Release);
/// word.wake_all();
/// assert!(child.join()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C, align(8))]
#[derive(Debug, Default)]
pub struct Futex64 {
    word: AtomicU64,
}

#[allow(unsafe_code)] // a hand impl of the unsafe trait ShmSafe
                      // SAFETY: a single AtomicU64: plain data, valid at any 8-aligned address;
                      // its futex key is the shared page, not this process's address.
unsafe impl crate::ShmSafe for Futex64 {
    fn describe_layout(out: &mut crate::layout::LayoutWriter) {
        out.structure(
            "Futex64",
            "C, align(8)",
            size_of::<Futex64>(),
            align_of::<Futex64>(),
            1,
        );
        out.field::<std::sync::atomic::AtomicU64>("word", std::mem::offset_of!(Futex64, word));
    }
}

impl std::ops::Deref for Futex64 {
    type Target = AtomicU64;

    fn deref(&self) -> &AtomicU64 {
        &self.word
    }
}

impl Futex64 {
    crate::const_unless_loom! {
        /// A word holding `value`.
        pub const fn new(value: u64) -> Futex64 {
            Futex64 {
                word: AtomicU64::new(value),
            }
        }
    }

    /// The low half, which the kernel sees as the futex word. Only ever
    /// handed to the kernel: Rust reads and writes the word as a whole
    /// `AtomicU64`, never through this.
    #[cfg(not(loom))]
    fn low_half(&self) -> &std::sync::atomic::AtomicU32 {
        crate::sys::low_half(&self.word)
    }

    /// Sleeps while the word's low half equals `expected`'s low half, until
    /// woken or `deadline`. Returns as [`Futex::wait`] does: `false` only
    /// once the deadline has passed; callers re-check in a loop.
    #[cfg(not(loom))]
    pub fn wait(&self, expected: u64, deadline: Option<Instant>) -> bool {
        futex_wait(self.low_half(), expected as u32, deadline)
    }

    /// [`wait`](Futex64::wait) in a loom model (see [`crate::sync::model`]):
    /// compares the low half only, as the kernel does.
    #[cfg(loom)]
    pub fn wait(&self, expected: u64, deadline: Option<Instant>) -> bool {
        let holds = || self.word.load(Ordering::SeqCst) as u32 == expected as u32;
        crate::sync::model::futex_wait(self.key(), holds, deadline)
    }

    /// Sets `flag` (a bit of the low half) if the word still holds `seen`,
    /// then sleeps while it holds `seen | flag`; see
    /// [`Futex::flag_and_wait`].
    pub fn flag_and_wait(&self, seen: u64, flag: u64, deadline: Option<Instant>) {
        debug_assert!(
            flag != 0 && flag >> 32 == 0,
            "the flag is a bit of the low half"
        );
        if seen & flag == 0
            && self
                .word
                .compare_exchange(seen, seen | flag, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.wait(seen | flag, deadline);
    }

    /// Wakes at most `count` sleepers; see [`Futex::wake`].
    #[cfg(not(loom))]
    pub fn wake(&self, count: u32) -> u32 {
        futex_wake(self.low_half(), count)
    }

    /// [`wake`](Futex64::wake) in a loom model (see [`crate::sync::model`]).
    #[cfg(loom)]
    pub fn wake(&self, count: u32) -> u32 {
        crate::sync::model::futex_wake(self.key(), count)
    }

    /// The model's key for this word: its address.
    #[cfg(loom)]
    fn key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Wakes one sleeper, if any.
    pub fn wake_one(&self) -> u32 {
        self.wake(1)
    }

    /// Wakes every sleeper.
    pub fn wake_all(&self) -> u32 {
        self.wake(u32::MAX)
    }
}

/// The longest a sleeper goes without looking at its word again, when the
/// one that would wake it could die between changing the word and calling
/// wake: a setter killed there leaves the flag set and every sleeper
/// asleep. Bounds how long such a death can delay a waiter with no
/// deadline (it would otherwise sleep for ever).
pub const RECHECK_AT_MOST: Duration = Duration::from_millis(50);

/// The first interval of a [`Recheck`].
const FIRST_RECHECK: Duration = Duration::from_millis(1);

/// When a sleeper next looks at its word even if nobody woke it: after
/// 1 ms, doubling up to [`RECHECK_AT_MOST`]. A wake-up lost to a waker's
/// death costs a waiter at most that long; a long wait costs one spare
/// wake-up every 50 ms.
///
/// ```
/// use shm::futex::{Recheck, RECHECK_AT_MOST};
/// use std::time::Instant;
///
/// let mut recheck = Recheck::new();
/// let wake_at = recheck.wake_at(None).expect("always a time to look again");
/// assert!(wake_at <= Instant::now() + RECHECK_AT_MOST);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Recheck {
    interval: Duration,
}

impl Default for Recheck {
    fn default() -> Recheck {
        Recheck::new()
    }
}

impl Recheck {
    /// A schedule whose first re-check is 1 ms away.
    pub fn new() -> Recheck {
        Recheck {
            interval: FIRST_RECHECK,
        }
    }

    /// When the next sleep should end: at the next re-check or at
    /// `deadline`, whichever is sooner. Schedules the re-check after it.
    pub fn wake_at(&mut self, deadline: Option<Instant>) -> Option<Instant> {
        // In the loom model a timed sleep ends at once or at a death (see
        // `shm::sync::model`), never by the clock: the re-check adds
        // nothing there but iterations to explore, except to an endless
        // sleep, which it turns into one a death ends.
        #[cfg(loom)]
        if deadline.is_some() {
            return deadline;
        }
        let next = crate::sync::now().checked_add(self.interval);
        self.interval = (self.interval * 2).min(RECHECK_AT_MOST);
        match (next, deadline) {
            (Some(next), Some(deadline)) => Some(next.min(deadline)),
            (next, deadline) => next.or(deadline),
        }
    }
}

/// `FUTEX_WAIT` on `word` while it holds `expected`; see [`Futex::wait`].
#[cfg(not(loom))]
fn futex_wait(
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    deadline: Option<Instant>,
) -> bool {
    let timeout = match deadline {
        None => None,
        Some(deadline) => {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            Some(deadline - now)
        }
    };
    if !crate::sys::futex_wait(word, expected, timeout) {
        // The kernel's timer never fires early, but our `now` above was
        // read before the syscall; confirm against the clock ourselves.
        return deadline.is_none_or(|d| Instant::now() < d);
    }
    // Woken (or spurious), the word no longer held `expected`, or a signal
    // arrived. In every case the caller re-checks.
    true
}

/// `FUTEX_WAKE` of at most `count` sleepers on `word`; see [`Futex::wake`].
#[cfg(not(loom))]
fn futex_wake(word: &std::sync::atomic::AtomicU32, count: u32) -> u32 {
    crate::sys::futex_wake(word, count)
}
