//! [`RawLock`]: the lock word every procsync lock stands on, and what a
//! waiter needs to judge its holder: [`OwnerCheck`], [`Acquired`].
//!
//! It lives in the ground crate, not in `sync-lock`, because the other
//! primitives use it too (the robust semaphore's table lock) and must not
//! pull in the typed locks to get it.

use std::time::{Duration, Instant};

mod guard;

pub use guard::RawLockGuard;

use crate::futex::SLEEPERS;
use crate::pid::{self, Identity, Pid};
use crate::spin::Spin;
use crate::sync::atomic::Ordering;
use crate::{Futex64, ShmSafe};

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
            next: crate::sync::now(),
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

/// How an acquisition went. `#[must_use]`: a primitive built on the word
/// has to decide what a dead or panicked holder means for it.
#[must_use = "a dead or panicked holder leaves what the lock protects half-updated: report or repair it"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The lock was free or released normally.
    Clean,
    /// The previous holder's process died holding it. The caller now holds
    /// the lock and should repair what it protects.
    OwnerDied,
    /// The previous holder released it while its thread was panicking
    /// (std's poisoning): what it protects may be half-updated. Reported to
    /// the next acquirer only, as [`OwnerDied`](Acquired::OwnerDied) is.
    HolderPanicked,
}

// The word, one u64 changed only by 64-bit atomic operations:
//
// | bits   | meaning                                                     |
// |--------|-------------------------------------------------------------|
// | 0..30  | holder's pid (Linux pids are below 2^22); 0 when free       |
// | 30     | POISONED: free, and the last holder released while panicking|
// | 31     | WAITERS: some process may sleep on the word; unlock wakes   |
// | 32..64 | holder's start tag (see `shm::pid::Identity`); 0 when free  |
//
// | state                 | word                     | next                    |
// |-----------------------|--------------------------|-------------------------|
// | free                  | 0 (or POISONED)          | lock: CAS to me         |
// | held by H             | H (+ WAITERS)            | H unlocks: CAS to 0,    |
// |                       |                          | wake if WAITERS was set |
// | held by H, H dead     | H (+ WAITERS)            | a waiter that saw H dead|
// |                       |                          | CASes from exactly H    |
//
// A takeover compares the whole identity, pid *and* start tag: a new
// process that reuses a dead holder's pid writes a different word, so a
// waiter acting on its stale judgement of "H is dead" fails its CAS instead
// of entering beside the newcomer.

/// Set while some process may be asleep on the word: the unlocker must wake.
const WAITERS: u64 = SLEEPERS as u64;
/// What [`crate::placement::check`] calls a lock word in private memory.
const LOCK_KIND: &str = "a procsync lock (sync_lock::Lock, Mutex, RLock, Condition)";
/// And what it suggests instead.
const LOCK_SHARED_FORMS: &str =
    "Lock::shared(), Mutex::shared(value), RLock::shared(), Condition::shared()";
/// Set in a free word whose last holder released it while panicking.
const POISONED: u64 = 1 << 30;
/// The holder's pid.
const PID: u64 = POISONED - 1;
/// The holder's whole identity (pid and start tag).
const HOLDER: u64 = !(WAITERS | POISONED);

/// A lock word in shared memory: 0 when free, else the holder's
/// [`Identity`] (pid and start tag), plus a bit saying sleepers may need
/// waking and one saying the last holder panicked.
///
/// This is the raw lock under `sync-lock`'s `Lock`, `Mutex` and `RLock` and
/// the robust semaphore's table; it has no guard and knows nothing of the
/// data it protects. Use it directly only to build another primitive.
///
/// - Uncontended, locking is one compare-and-swap and unlocking is another:
///   no system call, no other shared write.
/// - Contended, a locker spins briefly, then sleeps on the futex word; an
///   unlocker calls `futex_wake` only when the sleepers bit is set.
/// - A sleeper wakes every [`OWNER_CHECK_INTERVAL`] to check that the
///   holder's process still runs (zombies count as dead, and so does a new
///   process that reused the holder's pid). If it died, the sleeper takes
///   the lock over and learns [`Acquired::OwnerDied`].
/// - A waiter whose holder is another thread of its own process does not
///   check liveness (it runs); it too looks at the word again at least
///   every [`OWNER_CHECK_INTERVAL`], so a wake-up lost to a waiter that
///   gave up on its deadline delays the others by at most that.
///
/// Holding is per process: the lock records which process holds it, not
/// which thread.
///
/// # Example
///
/// ```
/// use shm::lockword::{Acquired, RawLock};
///
/// let raw = RawLock::new();
/// assert_eq!(raw.try_lock(), Some(Acquired::Clean));
/// assert!(raw.is_held_by_current_process());
/// // SAFETY: this code made the acquisition it ends.
/// assert!(unsafe { raw.unlock() });
/// assert!(!raw.is_locked());
/// ```
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawLock {
    word: Futex64,
}

// SAFETY: one 64-bit futex word, plain data valid at any 8-aligned address.
unsafe impl ShmSafe for RawLock {
    /// By protocol, not fields: a user's struct holding a `Futex64` must not
    /// pass for a lock word.
    fn describe_layout(out: &mut crate::layout::LayoutWriter) {
        out.protocol::<RawLock>("RawLock v1");
    }
}

impl RawLock {
    crate::const_unless_loom! {
        /// A free lock.
        pub const fn new() -> RawLock {
            RawLock {
                word: Futex64::new(0),
            }
        }
    }

    /// The lock word stored in `word`: for a primitive whose shared state
    /// is an array of words (a queue's header) rather than a struct with a
    /// `RawLock` field. A free lock is a word holding 0.
    ///
    /// ```
    /// use shm::lockword::{Acquired, RawLock};
    /// use shm::Futex64;
    ///
    /// let word = Futex64::new(0);
    /// let lock = RawLock::at(&word);
    /// assert_eq!(lock.try_lock(), Some(Acquired::Clean));
    /// assert!(word.load(std::sync::atomic::Ordering::Relaxed) != 0);
    /// // SAFETY: this code made the acquisition it ends.
    /// assert!(unsafe { lock.unlock() });
    /// ```
    pub fn at(word: &Futex64) -> &RawLock {
        // SAFETY: `RawLock` is `repr(C)` with one field, a `Futex64`: same
        // size, alignment and validity, the field at offset 0, so a
        // `&Futex64` is a valid `&RawLock` for the same lifetime. Every
        // state of the word is a state of the lock (see the table above).
        unsafe { &*std::ptr::from_ref(word).cast::<RawLock>() }
    }

    /// Takes the lock if it is free right now, or if its holder has died.
    /// Never sleeps.
    pub fn try_lock(&self) -> Option<Acquired> {
        crate::placement::check(self, LOCK_KIND, LOCK_SHARED_FORMS);
        let me = pid::current_identity().to_bits();
        if self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Some(Acquired::Clean);
        }
        let seen = self.word.load(Ordering::Relaxed);
        if seen & PID == 0 {
            return self.claim_free(seen, me);
        }
        let holder = seen & HOLDER;
        if holder != me && !pid::is_running_bits(holder) {
            return self.claim(seen, me | (seen & WAITERS), Acquired::OwnerDied);
        }
        None
    }

    /// Takes the lock, waiting until `deadline` (`None`: for ever). Returns
    /// `None` when the deadline passed first; never before it.
    #[inline]
    pub fn lock_until(&self, deadline: Option<Instant>) -> Option<Acquired> {
        // SAFETY: the identity is this process's.
        unsafe { self.lock_until_as(pid::current_identity(), deadline) }
    }

    /// [`lock_until`](RawLock::lock_until), returning with the outcome the
    /// guard that ends this acquisition when dropped (in this process): for
    /// a primitive that holds the word only inside one of its own calls.
    ///
    /// ```
    /// use shm::lockword::{Acquired, RawLock};
    ///
    /// let raw = RawLock::new();
    /// let (how, guard) = raw.lock_guarded(None).expect("no deadline");
    /// assert_eq!(how, Acquired::Clean);
    /// assert!(raw.is_held_by_current_process());
    /// drop(guard);
    /// assert!(!raw.is_locked());
    /// ```
    pub fn lock_guarded(&self, deadline: Option<Instant>) -> Option<(Acquired, RawLockGuard<'_>)> {
        let me = pid::current_identity();
        // SAFETY: `me` is this process's identity.
        let how = unsafe { self.lock_until_as(me, deadline) }?;
        // SAFETY: this process has just acquired the word; the guard is the
        // only one standing for this acquisition.
        Some((how, unsafe { RawLockGuard::new(self, me) }))
    }

    /// [`lock_until`](RawLock::lock_until) for a caller that has read this
    /// process's identity already (a guard keeps it).
    ///
    /// # Safety
    ///
    /// `me` is [`pid::current_identity`]. Another identity would hold the
    /// lock in the name of a process that does not know it (which then
    /// waits on itself for ever), or of none.
    ///
    /// ```compile_fail
    /// use shm::lockword::RawLock;
    /// let raw = RawLock::new();
    /// raw.lock_until_as(shm::pid::current_identity(), None); // needs unsafe
    /// ```
    #[inline]
    pub unsafe fn lock_until_as(
        &self,
        me: Identity,
        deadline: Option<Instant>,
    ) -> Option<Acquired> {
        debug_assert_eq!(
            me,
            pid::current_identity(),
            "lock_until_as: not this process"
        );
        crate::placement::check(self, LOCK_KIND, LOCK_SHARED_FORMS);
        let me = me.to_bits();
        // Fast path: free, never poisoned, nobody asleep.
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
    fn lock_contended(&self, me: u64, deadline: Option<Instant>) -> Option<Acquired> {
        // Spin while the holder is likely to release soon.
        let mut spin = Spin::snoozing();
        loop {
            let seen = self.word.load(Ordering::Relaxed);
            if seen & PID == 0 {
                if let Some(how) = self.claim_free(seen, me) {
                    return Some(how);
                }
            }
            if !spin.spin_once() {
                break;
            }
        }
        // Sleep, checking now and then that the holder still runs.
        let mut owner_check = OwnerCheck::starting_now();
        loop {
            let seen = self.word.load(Ordering::Relaxed);
            if seen & PID == 0 {
                // Others may sleep too: set the bit so our unlock wakes one.
                if let Some(how) = self.claim(seen, me | WAITERS, free_outcome(seen)) {
                    return Some(how);
                }
                continue;
            }
            let holder = seen & HOLDER;
            let now = crate::sync::now();
            let held_here = holder == me;
            // The schedule advances even when the holder is this process
            // (which runs, so its liveness needs no check): every sleep is
            // bounded by it. A wake-up can be lost without anyone dying: the
            // one sleeper an unlock woke may give up on its deadline after
            // a fast-path locker took the lock (whose unlock then sees no
            // sleepers flag), and the rest would sleep on.
            let check_due = owner_check.due(now);
            if !held_here && check_due && !pid::is_running_bits(holder) {
                // The holder died: take over from exactly that dead holder.
                if let Some(how) = self.claim(seen, me | WAITERS, Acquired::OwnerDied) {
                    return Some(how);
                }
                continue;
            }
            if deadline.is_some_and(|d| now >= d) {
                return None;
            }
            let wake_at = Some(owner_check.wake_at(deadline));
            self.word.flag_and_wait(seen, WAITERS, wake_at);
        }
    }

    /// Claims a free word `seen` (maybe poisoned), keeping the sleepers bit.
    fn claim_free(&self, seen: u64, me: u64) -> Option<Acquired> {
        self.claim(seen, me | (seen & WAITERS), free_outcome(seen))
    }

    /// CAS from `seen` to `new`, reporting `how` on success.
    fn claim(&self, seen: u64, new: u64, how: Acquired) -> Option<Acquired> {
        self.word
            .compare_exchange(seen, new, Ordering::Acquire, Ordering::Relaxed)
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
        // SAFETY: the caller's promise, passed on.
        unsafe { self.unlock_as(pid::current_identity()) }
    }

    /// [`unlock`](RawLock::unlock) for a caller that has read this
    /// process's identity already.
    ///
    /// # Safety
    ///
    /// As for [`unlock`](RawLock::unlock), and `me` is this process's
    /// identity.
    #[inline]
    pub unsafe fn unlock_as(&self, me: Identity) -> bool {
        let me = me.to_bits();
        if self
            .word
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return true;
        }
        self.unlock_contended(me, 0)
    }

    /// Releases the lock as [`unlock`](RawLock::unlock) does, and marks it
    /// so that the next acquirer learns [`Acquired::HolderPanicked`]. For
    /// guards dropped while their thread panics.
    ///
    /// # Safety
    ///
    /// As for [`unlock`](RawLock::unlock).
    pub unsafe fn unlock_poisoned(&self) -> bool {
        self.unlock_contended(pid::current_identity().to_bits(), POISONED)
    }

    #[cold]
    fn unlock_contended(&self, me: u64, released: u64) -> bool {
        let mut seen = self.word.load(Ordering::Relaxed);
        loop {
            if seen & HOLDER != me {
                // Not ours: a guard's bitwise copy in a forked child, say.
                return false;
            }
            match self
                .word
                .compare_exchange(seen, released, Ordering::Release, Ordering::Relaxed)
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
    pub fn owner(&self) -> Option<Pid> {
        self.owner_identity().map(Identity::pid)
    }

    /// The identity of the process holding the lock, if any (it may have
    /// died).
    pub fn owner_identity(&self) -> Option<Identity> {
        Identity::from_bits(self.word.load(Ordering::Relaxed) & HOLDER)
    }

    /// Whether some process holds the lock right now.
    pub fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) & PID != 0
    }

    /// Whether some process may be asleep waiting for the lock (the word's
    /// waiters bit: set by a locker before it sleeps, cleared by the unlock
    /// that wakes; it may stay set a moment after the last sleeper left).
    /// For tools that show a lock's state; reading it changes nothing.
    ///
    /// ```
    /// use shm::lockword::RawLock;
    ///
    /// let raw = RawLock::new();
    /// assert!(!raw.has_waiters());
    /// raw.try_lock();
    /// assert!(!raw.has_waiters()); // held, nobody asleep
    /// // SAFETY: this code made the acquisition it ends.
    /// assert!(unsafe { raw.unlock() });
    /// ```
    pub fn has_waiters(&self) -> bool {
        self.word.load(Ordering::Relaxed) & WAITERS != 0
    }

    /// Whether this process holds the lock.
    pub fn is_held_by_current_process(&self) -> bool {
        self.owner_identity() == Some(pid::current_identity())
    }
}

/// A lock word held by a *process*, whose holder's death is reported: what
/// `sync-lock`'s typed locks are generic over (the shape of `lock_api`'s
/// `RawMutex`, plus [`Acquired`]'s owner-death report). [`RawLock`] is the
/// one procsync ships; another (a ticket lock, a pthread robust mutex) plugs
/// in under the same `Mutex<T, R>` and guards.
///
/// # Safety
///
/// An implementation is a lock between processes: once
/// [`lock_until_as`](RawRobustLock::lock_until_as) or
/// [`try_lock`](RawRobustLock::try_lock) has returned `Some` to process P,
/// no caller in any process gets `Some` until P releases it
/// ([`unlock_as`](RawRobustLock::unlock_as),
/// [`unlock_poisoned`](RawRobustLock::unlock_poisoned)) or P dies, and the
/// first acquirer after a death is told [`Acquired::OwnerDied`]. Acquiring
/// synchronizes-with the release before it (acquire/release ordering). The
/// typed locks hand out `&mut T` on this promise.
///
/// # Example
///
/// ```
/// use shm::lockword::{Acquired, RawLock, RawRobustLock};
/// use shm::pid;
///
/// fn locked_twice<R: RawRobustLock>(raw: &R) -> bool {
///     let me = pid::current_identity();
///     assert_eq!(raw.lock_until(None), Some(Acquired::Clean));
///     let again = raw.try_lock().is_some();
///     // SAFETY: this process made the acquisition it ends.
///     unsafe { raw.unlock_as(me) };
///     again
/// }
/// assert!(!locked_twice(&RawLock::new()));
/// ```
pub unsafe trait RawRobustLock: ShmSafe + Sync {
    /// Takes the lock for this process (`me` is its identity), waiting
    /// until `deadline` (`None`: for ever); `None` when the deadline passed
    /// first.
    ///
    /// # Safety
    ///
    /// `me` is [`pid::current_identity`] (the caller has read it already:
    /// that saves a load on the uncontended path).
    unsafe fn lock_until_as(&self, me: Identity, deadline: Option<Instant>) -> Option<Acquired>;

    /// Takes the lock for this process, waiting until `deadline` (`None`:
    /// for ever); `None` when the deadline passed first.
    fn lock_until(&self, deadline: Option<Instant>) -> Option<Acquired> {
        // SAFETY: the identity is this process's.
        unsafe { self.lock_until_as(pid::current_identity(), deadline) }
    }

    /// Takes the lock if it is free now or its holder has died; never
    /// sleeps.
    fn try_lock(&self) -> Option<Acquired>;

    /// Releases this process's acquisition; whether it held the lock.
    ///
    /// # Safety
    ///
    /// The caller is the acquisition being ended (in process `me`, which
    /// is the calling process).
    unsafe fn unlock_as(&self, me: Identity) -> bool;

    /// Releases as [`unlock_as`](RawRobustLock::unlock_as), and tells the
    /// next acquirer [`Acquired::HolderPanicked`].
    ///
    /// # Safety
    ///
    /// As for [`unlock_as`](RawRobustLock::unlock_as).
    unsafe fn unlock_poisoned(&self) -> bool;

    /// Whether some process holds it now.
    fn is_locked(&self) -> bool;

    /// The holder's identity, if any (it may have died).
    fn owner_identity(&self) -> Option<Identity>;
}

// SAFETY: RawLock is such a lock: taking it is a CAS from free (or from
// exactly a dead holder's identity) to the taker's identity with acquire
// ordering, releasing a CAS from the holder's identity with release
// ordering, and a takeover from a dead holder reports `OwnerDied`; the loom
// models of sync-lock explore these protocols.
unsafe impl RawRobustLock for RawLock {
    #[inline]
    unsafe fn lock_until_as(&self, me: Identity, deadline: Option<Instant>) -> Option<Acquired> {
        // SAFETY: the caller's promise, passed on.
        unsafe { RawLock::lock_until_as(self, me, deadline) }
    }

    fn try_lock(&self) -> Option<Acquired> {
        RawLock::try_lock(self)
    }

    #[inline]
    unsafe fn unlock_as(&self, me: Identity) -> bool {
        // SAFETY: the caller's promise, passed on.
        unsafe { RawLock::unlock_as(self, me) }
    }

    unsafe fn unlock_poisoned(&self) -> bool {
        // SAFETY: the caller's promise, passed on.
        unsafe { RawLock::unlock_poisoned(self) }
    }

    fn is_locked(&self) -> bool {
        RawLock::is_locked(self)
    }

    fn owner_identity(&self) -> Option<Identity> {
        RawLock::owner_identity(self)
    }
}

/// What claiming a free word `seen` reports.
fn free_outcome(seen: u64) -> Acquired {
    if seen & POISONED != 0 {
        Acquired::HolderPanicked
    } else {
        Acquired::Clean
    }
}
