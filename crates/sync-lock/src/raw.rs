//! [`RawLock`]: the word under every lock in this crate.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;
use shm::{pid, Futex, ShmSafe};

/// Set while some process may be asleep on the word: the unlocker must wake.
const WAITERS: u32 = 1 << 31;
/// The holder's pid (Linux pids are below 2^22), or 0 when free.
const OWNER: u32 = !WAITERS;

/// The longest a sleeping waiter goes without checking whether the holder
/// still runs. Bounds how long after a holder's death a waiter takes over,
/// and how long a wake-up lost to a holder killed between its release and
/// its wake can delay the next owner.
pub const OWNER_CHECK_INTERVAL: Duration = Duration::from_micros(500);

/// The first interval of an [`OwnerCheck`]: a holder that was killed just
/// now takes about a tenth of a millisecond to finish exiting.
const FIRST_CHECK_INTERVAL: Duration = Duration::from_micros(50);

/// When a waiter next looks at the holder's liveness: at once, then after
/// 50 µs, doubling up to [`OWNER_CHECK_INTERVAL`]. A holder killed just
/// before the wait began is noticed quickly; a long wait on a live holder
/// costs a check every half millisecond.
#[derive(Debug, Clone, Copy)]
pub struct OwnerCheck {
    next: Instant,
    interval: Duration,
}

impl OwnerCheck {
    /// A schedule whose first check is due now.
    pub fn starting_now() -> OwnerCheck {
        OwnerCheck {
            next: Instant::now(),
            interval: FIRST_CHECK_INTERVAL,
        }
    }

    /// A schedule whose first check is due after the first interval.
    pub fn starting_soon() -> OwnerCheck {
        let mut check = OwnerCheck::starting_now();
        check.next += check.interval;
        check
    }

    /// Whether a check is due at `now`; if so, schedules the next one.
    pub fn due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.interval = (self.interval * 2).min(OWNER_CHECK_INTERVAL);
        self.next = now + self.interval;
        true
    }

    /// When to wake for the next check, or at `deadline` if that is sooner.
    pub fn wake_at(&self, deadline: Option<Instant>) -> Instant {
        deadline.map_or(self.next, |d| d.min(self.next))
    }
}

/// How an acquisition went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The lock was free or released normally.
    Clean,
    /// The previous holder's process died holding it. The caller now holds
    /// the lock and should repair what it protects.
    OwnerDied,
}

/// A lock word in shared memory: 0 when free, else the holder's pid, plus a
/// bit saying sleepers may need waking.
///
/// This is the raw lock under [`Lock`](crate::Lock), [`Mutex`](crate::Mutex)
/// and [`RLock`](crate::RLock); it has no guard and knows nothing of the
/// data it protects. Use it directly only to build another primitive.
///
/// - Uncontended, locking is one compare-and-swap and unlocking is another:
///   no system call, no other shared write.
/// - Contended, a locker spins briefly, then sleeps on the futex word; an
///   unlocker calls `futex_wake` only when the sleepers bit is set.
/// - A sleeper wakes every [`OWNER_CHECK_INTERVAL`] to check that the
///   holder's process still runs (zombies count as dead). If it died, the
///   sleeper takes the lock over and learns [`Acquired::OwnerDied`].
///
/// Holding is per process: the lock records which process holds it, not
/// which thread.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawLock {
    word: Futex,
}

// SAFETY: one futex word, plain data valid at any address.
unsafe impl ShmSafe for RawLock {}

impl RawLock {
    /// A free lock.
    pub const fn new() -> RawLock {
        RawLock {
            word: Futex::new(0),
        }
    }

    /// Takes the lock if it is free right now, or if its holder has died.
    /// Never sleeps.
    pub fn try_lock(&self) -> Option<Acquired> {
        let me = pid::current();
        if self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Some(Acquired::Clean);
        }
        let seen = self.word.load(Ordering::Relaxed);
        match seen & OWNER {
            0 => self.claim(seen, me, Acquired::Clean),
            owner if owner != me && !pid::is_running(owner) => {
                self.claim(seen, me, Acquired::OwnerDied)
            }
            _ => None,
        }
    }

    /// Takes the lock, waiting until `deadline` (`None`: for ever). Returns
    /// `None` when the deadline passed first; never before it.
    #[inline]
    pub fn lock_until(&self, deadline: Option<Instant>) -> Option<Acquired> {
        let me = pid::current();
        if self
            .word
            .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Some(Acquired::Clean);
        }
        self.lock_contended(me, deadline)
    }

    #[cold]
    fn lock_contended(&self, me: u32, deadline: Option<Instant>) -> Option<Acquired> {
        // Spin while the holder is likely to release soon.
        let backoff = Backoff::new();
        while !backoff.is_completed() {
            let seen = self.word.load(Ordering::Relaxed);
            if seen & OWNER == 0 {
                if let Some(how) = self.claim(seen, me, Acquired::Clean) {
                    return Some(how);
                }
            }
            backoff.snooze();
        }
        // Sleep, checking now and then that the holder still runs.
        let mut owner_check = OwnerCheck::starting_now();
        loop {
            let seen = self.word.load(Ordering::Relaxed);
            let owner = seen & OWNER;
            if owner == 0 {
                // Others may sleep too: keep the bit so our unlock wakes one.
                if self
                    .word
                    .compare_exchange(seen, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(Acquired::Clean);
                }
                continue;
            }
            let now = Instant::now();
            if owner != me && owner_check.due(now) && !pid::is_running(owner) {
                // The holder died: take over from exactly that dead holder.
                if self
                    .word
                    .compare_exchange(seen, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(Acquired::OwnerDied);
                }
                continue;
            }
            if deadline.is_some_and(|d| now >= d) {
                return None;
            }
            self.word
                .flag_and_wait(seen, WAITERS, Some(owner_check.wake_at(deadline)));
        }
    }

    /// CAS from `seen` to held-by-`me`, keeping the sleepers bit.
    fn claim(&self, seen: u32, me: u32, how: Acquired) -> Option<Acquired> {
        self.word
            .compare_exchange(
                seen,
                me | (seen & WAITERS),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()
            .map(|_| how)
    }

    /// Releases the lock if this process holds it; returns whether it did.
    ///
    /// # Safety
    ///
    /// The caller must be the acquisition being ended: releasing on behalf of
    /// another thread of this process that still believes it holds the lock
    /// lets two threads in at once.
    #[inline]
    pub unsafe fn unlock(&self) -> bool {
        let me = pid::current();
        if self
            .word
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return true;
        }
        self.unlock_contended(me)
    }

    #[cold]
    fn unlock_contended(&self, me: u32) -> bool {
        let mut seen = self.word.load(Ordering::Relaxed);
        loop {
            if seen & OWNER != me {
                // Not ours: a handle copied into a forked child, say.
                return false;
            }
            match self
                .word
                .compare_exchange(seen, 0, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => seen = now,
            }
        }
        if seen & WAITERS != 0 {
            self.word.wake_one();
        }
        true
    }

    /// The pid of the process holding the lock, if any (it may have died).
    pub fn owner(&self) -> Option<u32> {
        match self.word.load(Ordering::Relaxed) & OWNER {
            0 => None,
            pid => Some(pid),
        }
    }

    /// Whether some process holds the lock right now.
    pub fn is_locked(&self) -> bool {
        self.owner().is_some()
    }

    /// Whether this process holds the lock.
    pub fn is_held_by_current_process(&self) -> bool {
        self.owner() == Some(pid::current())
    }
}
