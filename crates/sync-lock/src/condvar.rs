//! [`Condvar`]: wait for a condition on a [`Mutex`]'s data, across processes.

use std::time::{Duration, Instant};

use shm::futex::{Recheck, SLEEPERS};
use shm::lockword::{Acquired, RawRobustLock};
use shm::pid;
use shm::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use shm::{crash_point, Futex, ShmSafe};

use crate::mutex::MutexGuard;
use crate::poison::{lock_result, LockResult, OwnerDied};

/// A condition variable between processes (Python's `Condition`): wait,
/// with a [`Mutex`](crate::Mutex) unlocked, until another process notifies.
///
/// Python's promises hold: [`notify(n)`](Condvar::notify) ends at most `n`
/// waits, the oldest first, and only waits that began before it; a wait
/// ends only when notified or timed out (no spurious wake-ups, though std
/// allows them and [`wait_while`](Condvar::wait_while) loops anyway). A
/// notified waiter keeps its notification however long it takes to run
/// (stopped, descheduled). A waiter killed mid-wait blocks nobody:
/// notifiers never wait for waiters (Python's `Condition` can hang there,
/// CPython gh-75158), and a notify skips waiters whose process has died
/// instead of spending a notification on them.
///
/// At most [`MAX_WAITERS`] processes (or threads) wait on one condvar at
/// once; a wait that finds every slot taken returns at once, as a spurious
/// wake-up would (`wait_while` then waits again).
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
#[derive(Debug)]
pub struct Condvar {
    /// Bumped by every notify; waiters sleep on the value they read before
    /// looking at their slot, so no notification is slept through.
    /// [`SLEEPERS`] says a wake system call is needed.
    sequence: Futex,
    /// The arrival number of the next wait: notify ends the oldest first.
    next_arrival: AtomicU32,
    /// Every slot ever claimed is below this index.
    in_use: AtomicU32,
    _pad: u32,
    slots: [Slot; MAX_WAITERS],
}

/// How many waits one condvar holds at once (a slot each, 16 bytes: 16 KiB
/// in all; fewer in loom models, which explore every access).
#[cfg(not(loom))]
pub const MAX_WAITERS: usize = 1024;
/// How many waits one condvar holds at once (fewer in loom models).
#[cfg(loom)]
pub const MAX_WAITERS: usize = 3;

/// One waiting process (or thread): who, and where its wait stands.
///
/// `word` holds the wait's arrival number (high half) and its state (low
/// half):
///
/// | state      | meaning                                   | next                      |
/// |------------|-------------------------------------------|---------------------------|
/// | `FREE`     | nobody (if `owner` is set, being claimed or released) | claim: CAS `owner` 0 → me |
/// | `WAITING`  | `owner` waits, arrived as `arrival`       | notify: CAS → `NOTIFIED`; timeout: CAS → `FREE` |
/// | `NOTIFIED` | a notify chose this wait                  | the waiter sees it, frees the slot |
///
/// The CAS on `word` decides every race between a notify and a timeout:
/// exactly one of them wins, so a wait ends notified exactly when a notify
/// counted it. Carrying the arrival number, the CAS also fails on a slot
/// that was freed and claimed again by a later wait meanwhile.
#[repr(C)]
#[derive(Debug)]
struct Slot {
    /// The waiter's identity bits; 0 when free.
    owner: AtomicU64,
    /// `arrival << 32 | state`.
    word: AtomicU64,
}

impl Slot {
    /// Moves the wait in this slot from `word` to `state`, keeping its
    /// arrival number; fails if the word changed since (a notify, a
    /// timeout or a new wait got there first). Every change of a wait's
    /// state is this one compare-and-swap.
    fn move_to(&self, word: u64, state: u32) -> bool {
        self.word
            .compare_exchange(
                word,
                slot_word(arrival_of(word), state),
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
    }

    shm::const_unless_loom! {
        /// A free slot.
        const fn free() -> Slot {
            Slot {
                owner: AtomicU64::new(0),
                word: AtomicU64::new(0),
            }
        }
    }
}

#[cfg(not(loom))]
const fn free_slots() -> [Slot; MAX_WAITERS] {
    [const { Slot::free() }; MAX_WAITERS]
}

#[cfg(loom)]
fn free_slots() -> [Slot; MAX_WAITERS] {
    std::array::from_fn(|_| Slot::free())
}

fn slot_word(arrival: u32, state: u32) -> u64 {
    (u64::from(arrival) << 32) | u64::from(state)
}

fn state_of(word: u64) -> u32 {
    word as u32
}

fn arrival_of(word: u64) -> u32 {
    (word >> 32) as u32
}

const FREE: u32 = 0;
const WAITING: u32 = 1;
const NOTIFIED: u32 = 2;

// SAFETY: repr(C) structs of atomics and integers with explicit padding:
// plain data.
unsafe impl ShmSafe for Condvar {
    fn describe_layout(out: &mut shm::layout::LayoutWriter) {
        out.protocol::<Condvar>("Condvar v1");
    }
}

/// Whether a timed wait returned because its time ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    pub(crate) fn new(timed_out: bool) -> WaitTimeoutResult {
        WaitTimeoutResult(timed_out)
    }

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
                sequence: Futex::new(0),
                next_arrival: AtomicU32::new(0),
                in_use: AtomicU32::new(0),
                _pad: 0,
                slots: free_slots(),
            }
        }
    }

    /// A condition variable nobody waits on, in anonymous shared memory,
    /// which children forked afterwards share with this process: the
    /// one-line form of `Shared::new(Condvar::new())`. Python's
    /// `Condition()`, paired with a [`Mutex::shared`](crate::Mutex::shared).
    ///
    /// ```
    /// use sync_lock::{Condvar, Mutex};
    ///
    /// let ready = Mutex::shared(false)?;
    /// let changed = Condvar::shared()?;
    /// let child = daemon::Process::new(|| {
    ///     *ready.lock().unwrap_or_else(|died| died.into_inner()) = true;
    ///     changed.notify_all();
    /// })
    /// .start()?;
    /// let guard = changed.wait_while(ready.lock().unwrap(), |ready| !*ready).unwrap();
    /// assert!(*guard);
    /// drop(guard);
    /// child.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn shared() -> shm::Result<shm::Shared<Condvar>> {
        shm::Shared::new(Condvar::new())
    }

    /// Unlocks the guard's mutex, sleeps until notified, and locks again.
    /// `Err(OwnerDied)` holds the lock and says a holder died (or panicked)
    /// meanwhile.
    pub fn wait<'a, T, R: RawRobustLock>(
        &self,
        guard: MutexGuard<'a, T, R>,
    ) -> LockResult<MutexGuard<'a, T, R>> {
        self.wait_until(guard, None)
            .map(|(g, _)| g)
            .map_err(|d| d.map(|(g, _)| g))
    }

    /// [`wait`](Condvar::wait), giving up after `timeout`.
    pub fn wait_timeout<'a, T, R: RawRobustLock>(
        &self,
        guard: MutexGuard<'a, T, R>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T, R>, WaitTimeoutResult)> {
        self.wait_until(guard, shm::sync::now().checked_add(timeout))
    }

    /// Waits until `condition` on the data is false; returns holding the lock.
    pub fn wait_while<'a, T, R: RawRobustLock>(
        &self,
        guard: MutexGuard<'a, T, R>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<MutexGuard<'a, T, R>> {
        self.wait_while_until(guard, None, &mut condition)
            .map(|(g, _)| g)
            .map_err(|d| d.map(|(g, _)| g))
    }

    /// [`wait_while`](Condvar::wait_while), giving up after `timeout`; the
    /// result says whether it timed out with the condition still true.
    pub fn wait_timeout_while<'a, T, R: RawRobustLock>(
        &self,
        guard: MutexGuard<'a, T, R>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<(MutexGuard<'a, T, R>, WaitTimeoutResult)> {
        self.wait_while_until(guard, shm::sync::now().checked_add(timeout), &mut condition)
    }

    fn wait_while_until<'a, T, R: RawRobustLock>(
        &self,
        guard: MutexGuard<'a, T, R>,
        deadline: Option<Instant>,
        condition: &mut dyn FnMut(&mut T) -> bool,
    ) -> LockResult<(MutexGuard<'a, T, R>, WaitTimeoutResult)> {
        wait_while_with(
            guard,
            |guard| condition(guard),
            |guard| self.wait_until(guard, deadline),
        )
    }

    fn wait_until<'a, T, R: RawRobustLock>(
        &self,
        guard: MutexGuard<'a, T, R>,
        deadline: Option<Instant>,
    ) -> LockResult<(MutexGuard<'a, T, R>, WaitTimeoutResult)> {
        // A copy inherited through fork holds nothing here: waiting with it
        // would lock again a mutex this process may hold itself.
        guard.assert_here("the MutexGuard given to Condvar::wait");
        let mutex = guard.mutex();
        let notified = self.release_and_await(|| drop(guard), deadline);
        let how = mutex.raw().lock_until(None).expect("no deadline");
        // SAFETY: this process has just acquired the mutex's raw lock.
        let guard = unsafe { MutexGuard::new(mutex) };
        lock_result(how, (guard, WaitTimeoutResult(!notified)))
    }

    /// The wait itself, for any lock: enters, runs `release` (which
    /// unlocks the caller's lock), and sleeps until notified (`true`) or
    /// `deadline` (`false`). The caller locks again.
    pub(crate) fn release_and_await(
        &self,
        release: impl FnOnce(),
        deadline: Option<Instant>,
    ) -> bool {
        // Enter while still holding the lock: a notify that follows our
        // unlock finds us waiting.
        let slot = self.enter();
        release();
        match slot {
            Some(slot) => self.await_notify(slot, deadline),
            // Every slot taken: return at once, as a spurious wake-up.
            None => true,
        }
    }

    /// Claims a free slot and records this wait in it; `None` if every
    /// slot is taken. Lock-free: claiming is a CAS on the slot's owner, and
    /// the slot counts as waiting only from its last store on.
    fn enter(&self) -> Option<usize> {
        shm::placement::check(self, "sync_lock::Condvar", "Condvar::shared()");
        let me = pid::current_identity().to_bits();
        let index = self
            .claim_slot(me, false)
            // Full: take back the slots of waiters killed mid-wait too.
            .or_else(|| self.claim_slot(me, true))?;
        crash_point!(CONDVAR_CRASH_POINTS, "condvar: slot claimed");
        self.in_use.fetch_max(index as u32 + 1, Ordering::Relaxed);
        let slot = &self.slots[index];
        let arrival = self.next_arrival.fetch_add(1, Ordering::SeqCst);
        slot.word
            .store(slot_word(arrival, WAITING), Ordering::SeqCst);
        crash_point!(CONDVAR_CRASH_POINTS, "condvar: entered");
        Some(index)
    }

    /// Claims a slot for `me`: a free one, or one whose owner died while it
    /// was not waiting (killed while claiming it, or after a notify chose
    /// it); with `dead_waiters`, also one whose owner died waiting (first
    /// freed with a CAS on its word, so a notify choosing it meanwhile
    /// wins or loses cleanly). Ownership changes only by CAS on `owner`.
    /// Liveness is checked only for slots that are owned but not waiting
    /// (rare) unless `dead_waiters`.
    fn claim_slot(&self, me: u64, dead_waiters: bool) -> Option<usize> {
        self.slots.iter().position(|slot| {
            let owner = slot.owner.load(Ordering::Acquire);
            if owner == 0 {
                return slot
                    .owner
                    .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok();
            }
            let word = slot.word.load(Ordering::SeqCst);
            let waiting = state_of(word) == WAITING;
            if owner == me || (waiting && !dead_waiters) || pid::is_running_bits(owner) {
                return false;
            }
            if waiting && !slot.move_to(word, FREE) {
                return false;
            }
            slot.owner
                .compare_exchange(owner, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })
    }

    /// Gives back the slot of a wait that has ended (its own waiter's call):
    /// its state is decided already; clearing the owner lets the next wait
    /// claim it.
    fn release_slot(&self, slot: &Slot) {
        slot.word.store(slot_word(0, FREE), Ordering::Relaxed);
        crash_point!(CONDVAR_CRASH_POINTS, "condvar: slot freed");
        slot.owner.store(0, Ordering::Release);
    }

    /// Sleeps until a notify chooses this wait (`true`) or `deadline`
    /// passes first (`false`: the wait withdrew, and no notify counted it).
    fn await_notify(&self, index: usize, deadline: Option<Instant>) -> bool {
        let slot = &self.slots[index];
        // A notifier killed between choosing us and its wake leaves us
        // chosen and asleep: look again now and then.
        let mut recheck = Recheck::new();
        loop {
            // Read the sequence before the slot: a notify after this read
            // bumps the sequence, so the sleep below returns at once.
            let seen = self.sequence.load(Ordering::SeqCst);
            let word = slot.word.load(Ordering::SeqCst);
            if state_of(word) == NOTIFIED {
                self.release_slot(slot);
                return true;
            }
            if deadline.is_some_and(|d| shm::sync::now() >= d) {
                // Withdraw, unless a notify chose us first: the CAS decides.
                let withdrew = slot.move_to(word, FREE);
                crash_point!(CONDVAR_CRASH_POINTS, "condvar: withdrawn");
                self.release_slot(slot);
                return !withdrew;
            }
            self.sequence
                .flag_and_wait(seen, SLEEPERS, recheck.wake_at(deadline));
        }
    }

    /// Ends at most `n` of the waits that began before this call, the
    /// oldest first (Python's `notify(n)`); returns how many it ended. A
    /// wait whose process has died is passed over (its slot freed), so no
    /// notification is spent on it. Never waits for anyone; a system call
    /// only if some chosen waiter may sleep.
    pub fn notify(&self, n: u32) -> u32 {
        shm::placement::check(self, "sync_lock::Condvar", "Condvar::shared()");
        let me = pid::current_identity().to_bits();
        let in_use = (self.in_use.load(Ordering::Acquire) as usize).min(MAX_WAITERS);
        let slots = &self.slots[..in_use];
        // Waits that began before this call: those with an arrival number
        // below the next one now.
        let horizon = self.next_arrival.load(Ordering::SeqCst);
        // The waits this call may end: waiting, and begun before it
        // (arrival numbers wrap: compare by distance back from the horizon).
        let age = |word: u64| horizon.wrapping_sub(arrival_of(word));
        let eligible =
            |word: u64| state_of(word) == WAITING && age(word) != 0 && age(word) <= MAX_ARRIVAL_AGE;
        let waiting = slots
            .iter()
            .filter(|slot| eligible(slot.word.load(Ordering::SeqCst)))
            .count();
        // Every eligible wait is to end: one pass in any order. Otherwise
        // the oldest first, one at a time.
        let everyone = waiting <= n as usize;
        let mut ended = 0;
        while ended < n {
            let chosen = if everyone {
                slots
                    .iter()
                    .map(|slot| (slot, slot.word.load(Ordering::SeqCst)))
                    .find(|&(_, word)| eligible(word))
            } else {
                slots
                    .iter()
                    .map(|slot| (slot, slot.word.load(Ordering::SeqCst)))
                    .filter(|&(_, word)| eligible(word))
                    .max_by_key(|&(_, word)| age(word))
            };
            let Some((slot, word)) = chosen else {
                break;
            };
            let owner = slot.owner.load(Ordering::Relaxed);
            let dead = owner != 0 && owner != me && !pid::is_running_bits(owner);
            // A waiter killed mid-wait is passed over: its slot is freed.
            let next_state = if dead { FREE } else { NOTIFIED };
            let won = slot.move_to(word, next_state);
            match (won, dead) {
                (true, false) => {
                    crash_point!(CONDVAR_CRASH_POINTS, "condvar: chosen");
                    ended += 1;
                }
                (true, true) => {
                    crash_point!(CONDVAR_CRASH_POINTS, "condvar: dead passed over");
                    // Only from the dead owner: a wait that has claimed the
                    // freed slot since keeps it.
                    let _ =
                        slot.owner
                            .compare_exchange(owner, 0, Ordering::AcqRel, Ordering::Relaxed);
                }
                // Lost the CAS: that wait timed out, or another notify
                // chose it; look again.
                (false, _) => {}
            }
        }
        if ended > 0 {
            let before = self
                .sequence
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                    Some(s.wrapping_add(1) & !SLEEPERS)
                })
                .expect("the update always succeeds");
            crash_point!(CONDVAR_CRASH_POINTS, "condvar: notified");
            if before & SLEEPERS != 0 {
                // Every sleeper looks: the kernel cannot tell which
                // sleepers were chosen; the others sleep again.
                self.sequence.wake_all();
            }
        }
        ended
    }

    /// Ends the oldest wait that began before this call, if any (Python's
    /// `notify()`).
    pub fn notify_one(&self) {
        self.notify(1);
    }

    /// Ends every wait that began before this call (Python's
    /// `notify_all()`).
    pub fn notify_all(&self) {
        self.notify(u32::MAX);
    }

    /// How many waits are in progress and not yet notified (a wait of a
    /// process that died counts until its slot is taken back). Reading it
    /// changes nothing (for tools such as `procsync inspect`).
    ///
    /// ```
    /// use sync_lock::{Condvar, Mutex};
    /// use std::time::Duration;
    ///
    /// let (m, cv) = (Mutex::new(false), Condvar::new());
    /// assert_eq!(cv.n_waiting(), 0);
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         let g = m.lock().unwrap();
    ///         drop(cv.wait_while(g, |done| !*done));
    ///     });
    ///     let deadline = std::time::Instant::now() + Duration::from_secs(10);
    ///     while cv.n_waiting() == 0 {
    ///         assert!(std::time::Instant::now() < deadline, "the waiter never waited");
    ///         std::thread::yield_now();
    ///     }
    ///     *m.lock().unwrap() = true;
    ///     cv.notify_all();
    /// });
    /// assert_eq!(cv.n_waiting(), 0);
    /// ```
    pub fn n_waiting(&self) -> usize {
        let in_use = (self.in_use.load(Ordering::Acquire) as usize).min(MAX_WAITERS);
        self.slots[..in_use]
            .iter()
            .filter(|slot| {
                slot.owner.load(Ordering::Relaxed) != 0
                    && state_of(slot.word.load(Ordering::Relaxed)) == WAITING
            })
            .count()
    }
}

impl Default for Condvar {
    fn default() -> Condvar {
        Condvar::new()
    }
}

/// The loop of a `wait_while` for any guard: waits (with `wait`) while
/// `condition` holds and the last wait did not time out; reports the first
/// unclean relock (a holder that died or panicked), once, at the end.
pub(crate) fn wait_while_with<G>(
    mut guard: G,
    mut condition: impl FnMut(&mut G) -> bool,
    mut wait: impl FnMut(G) -> LockResult<(G, WaitTimeoutResult)>,
) -> LockResult<(G, WaitTimeoutResult)> {
    let mut report: Option<Acquired> = None;
    let mut timed_out = false;
    while condition(&mut guard) {
        if timed_out {
            break;
        }
        let (g, result) = match wait(guard) {
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

/// The names of the condvar's crash points (see `shm::crash`): one after
/// each shared store of a wait (claiming a slot, entering, withdrawing,
/// freeing the slot) and of a notify (choosing a waiter, bumping the
/// sequence before the wake).
pub const CONDVAR_CRASH_POINTS: &[&str] = &[
    "condvar: slot claimed",
    "condvar: entered",
    "condvar: withdrawn",
    "condvar: slot freed",
    "condvar: chosen",
    "condvar: dead passed over",
    "condvar: notified",
];

/// Waits older than this many arrivals are not told apart from waits that
/// began after the notify (arrival numbers wrap at 2^32): far beyond the
/// number of waits that can be outstanding at once.
const MAX_ARRIVAL_AGE: u32 = 1 << 31;
