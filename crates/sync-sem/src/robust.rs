//! [`RobustSemaphore`]: a semaphore that takes back the permits of
//! processes that die.

use std::time::{Duration, Instant};

use shm::lockword::{Acquired, OwnerCheck, RawLock, RawLockGuard};
use shm::spin::Spin;
use shm::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use shm::{crash_point, pid, Futex, ShmSafe};

use crate::count::{
    checked_release, clamp_permits, has_sleepers, permits_in, public_bound, wake_sleepers_of,
    COUNT, SLEEPERS,
};
use crate::{AcquireError, AdoptError, Permit, ReleaseError, MAX_PERMITS};

/// What `shm::placement::check` calls this primitive, and its shared form.
const ROBUST_KIND: &str = "sync_sem::RobustSemaphore";
const ROBUST_SHARED_FORM: &str = "RobustSemaphore::shared(permits)";

/// How many processes can hold permits of one [`RobustSemaphore`] at once
/// (one row each in its holder table; 16 KiB of shared memory). An
/// acquisition by one more process first takes back the rows of dead
/// holders, then fails with [`AcquireError::TooManyHolders`].
pub const MAX_HOLDERS: usize = 1024;

/// The rows of the holder table: [`MAX_HOLDERS`], or in the loom model
/// (`shm::sync`) four, enough for its few processes and cheap to explore.
#[cfg(not(loom))]
const ROWS: usize = MAX_HOLDERS;
#[cfg(loom)]
const ROWS: usize = 4;

/// The names of the semaphore's crash points (see `shm::crash`), one after
/// each shared store made under its internal lock (the `second` ones only
/// in a [`Permit::adopt`], which changes two holder rows at once).
pub const ROBUST_SEMAPHORE_CRASH_POINTS: &[&str] = &[
    "robust semaphore: journal word",
    "robust semaphore: journal slot",
    "robust semaphore: journal row count",
    "robust semaphore: journal row",
    "robust semaphore: journal second row count",
    "robust semaphore: journal second row",
    "robust semaphore: journal armed",
    "robust semaphore: row count applied",
    "robust semaphore: row applied",
    "robust semaphore: second row count applied",
    "robust semaphore: second row applied",
    "robust semaphore: count applied",
    "robust semaphore: journal disarmed",
    "robust semaphore: count stored",
    "robust semaphore: sleepers flagged",
    "robust semaphore: row disowned",
    "robust semaphore: replay disarmed",
];

/// How many times `try_acquire` tries the internal lock before answering
/// "would block": a running holder keeps it well under a microsecond; a
/// holder that is stopped or not scheduled must not make `try_acquire`
/// block.
/// (The model's few under loom: see `shm::spin`.)
const TRY_LOCK_ROUNDS: u32 = 7;

/// A counting semaphore whose permits come back when a process holding
/// them dies.
///
/// The same API as [`Semaphore`](crate::Semaphore): `acquire`,
/// `try_acquire`, `acquire_timeout` (each giving a [`Permit`]), `release`,
/// `release_n`, `value`, and a [`bounded`](RobustSemaphore::bounded) form.
///
/// # How permits come back
///
/// Besides the count, the semaphore keeps a table of which processes hold
/// how many permits ([`MAX_HOLDERS`] rows). Every change (count and table
/// row together) is made under an internal robust lock and written through
/// a one-entry redo journal, so a process killed half-way through an
/// acquisition or release leaves a state the next process completes rather
/// than a permit counted twice or lost. A process waiting for a permit
/// checks the table at least every
/// [`OWNER_CHECK_INTERVAL`](shm::lockword::OWNER_CHECK_INTERVAL) and returns the permits
/// of holders that have died (zombies included), waking the other waiters.
/// [`reclaim`](RobustSemaphore::reclaim) does the same on demand.
///
/// Permits given up with [`Permit::forget`] or added with `release` belong
/// to no process and are never taken back.
///
/// A permit moved into a child process (a `daemon::Process` closure) still
/// counts under the process that acquired it, and is taken back when that
/// process dies, even while the child holds it (and the child's drop
/// releases nothing): the child makes it its own with [`Permit::adopt`],
/// first thing.
///
/// # Stopped processes
///
/// A process stopped (SIGSTOP, a debugger, a frozen cgroup) inside the
/// internal lock, during the microsecond a change takes, holds up the
/// others only as far as their deadlines allow: `acquire_timeout` returns
/// [`AcquireError::TimedOut`] on time and `try_acquire` answers
/// [`AcquireError::WouldBlock`] without waiting. `acquire`, `release`,
/// `reclaim` and dropping a [`Permit`] have no deadline: they wait until it
/// resumes (or dies).
///
/// # Cost
///
/// The bookkeeping costs on every acquisition and release (an internal
/// lock and a few stores), about twice a POSIX semaphore: see
/// `docs/benchmarks.md`. [`Semaphore`](crate::Semaphore) does without.
///
/// # Example
///
/// A singer takes the only room and is thrown out mid-song (the process
/// dies without releasing); the room comes back.
///
/// ```
/// use std::time::Duration;
/// use sync_sem::RobustSemaphore;
///
/// let rooms = RobustSemaphore::shared(1)?;
/// let singer = daemon::Process::new(|| -> u8 {
///     let _room = rooms.acquire().expect("a free room");
///     std::process::abort(); // dies holding the permit
/// })
/// .start()?;
/// assert!(singer.join().is_err());
/// assert_eq!(rooms.reclaim(), 1);
/// let room = rooms.acquire_timeout(Duration::from_secs(5))?;
/// drop(room);
/// assert_eq!(rooms.value(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct RobustSemaphore {
    /// Free permits, plus the sleepers bit. Changed only under `guard`;
    /// waiters read it and sleep on it without the guard.
    word: Futex,
    /// The largest value releases may reach; `MAX_PERMITS` if unbounded.
    bound: u32,
    /// Serialises every change to `word` and `holders`.
    guard: RawLock,
    journal: Journal,
    /// Row per holding process: its identity and the permits it holds.
    holders: [HolderRow; ROWS],
}

/// One holder: the process's [`Identity`](pid::Identity) as bits (0 when the
/// row is free) and how many permits it holds. Two words, changed under the
/// internal lock through the journal; `held` is written before `owner`, and
/// a row is free exactly when `owner` is 0 (its `held` then means nothing).
#[repr(C)]
#[derive(Debug)]
struct HolderRow {
    owner: AtomicU64,
    held: AtomicU32,
    _pad: u32,
}

impl HolderRow {
    shm::const_unless_loom! {
        const fn free() -> HolderRow {
            HolderRow {
                owner: AtomicU64::new(0),
                held: AtomicU32::new(0),
                _pad: 0,
            }
        }
    }

    /// A table of free rows.
    #[cfg(not(loom))]
    const fn table() -> [HolderRow; ROWS] {
        [const { HolderRow::free() }; ROWS]
    }

    /// A table of free rows (loom's atomics cannot be made in a const
    /// context).
    #[cfg(loom)]
    fn table() -> [HolderRow; ROWS] {
        std::array::from_fn(|_| HolderRow::free())
    }

    fn load(&self) -> Row {
        Row {
            owner: self.owner.load(Ordering::Relaxed),
            held: self.held.load(Ordering::Relaxed),
        }
    }
}

/// What a holder row says, or is to say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Row {
    owner: Who,
    held: u32,
}

impl Row {
    const FREE: Row = Row { owner: 0, held: 0 };

    /// `who`'s row holding `held` permits (free if none).
    fn of(who: Who, held: u32) -> Row {
        if held == 0 {
            Row::FREE
        } else {
            Row { owner: who, held }
        }
    }

    /// Permits `who` holds according to this row.
    fn held_by(self, who: Who) -> u32 {
        if self.owner == who && who != 0 {
            self.held
        } else {
            0
        }
    }
}

/// The change being made, written before it is applied: whoever takes over
/// the guard from a dead holder applies it again (every value is absolute,
/// so applying twice is the same as once). A change sets the word and one
/// row, or (a [`Permit::adopt`]) two rows.
#[repr(C)]
#[derive(Debug)]
struct Journal {
    /// 1 while the other fields describe a change not yet fully applied.
    armed: AtomicU32,
    word: AtomicU32,
    /// The rows changed, packed by [`slots`]: written whole by every
    /// change, so a second row is never one left from an earlier change.
    slots: AtomicU32,
    row_owner: AtomicU64,
    row_held: AtomicU32,
    /// The second row's new value, meant only when `slots` names one.
    second_held: AtomicU32,
    second_owner: AtomicU64,
}

/// In the journal's `slots`: no second row.
const NO_ROW: u32 = 0xFFFF;
const _: () = assert!(ROWS < NO_ROW as usize, "a slot fits in half a word");

/// The journal's `slots` word for a change of row `first` and maybe row
/// `second`.
fn slots(first: usize, second: Option<usize>) -> u32 {
    first as u32 | second.map_or(NO_ROW, |s| s as u32) << 16
}

/// The rows a journal's `slots` word names (a value of [`ROWS`] or more
/// means none).
fn unpack(slots: u32) -> (usize, usize) {
    ((slots & 0xFFFF) as usize, (slots >> 16) as usize)
}

// SAFETY: a repr(C) struct of atomics and integers: plain data.
unsafe impl ShmSafe for RobustSemaphore {
    fn describe_layout(out: &mut shm::layout::LayoutWriter) {
        out.protocol::<RobustSemaphore>("RobustSemaphore v1");
    }
}

// Who holds a row: a process's identity (pid and start tag) as one word,
// so that a new process that reuses a dead holder's pid is not taken for
// it. The only place the semaphore knows what identifies a process.
pub(crate) type Who = u64;

pub(crate) fn me() -> Who {
    pid::current_identity().to_bits()
}

/// The row to start looking at for `who` (by its pid).
fn home_row(who: Who) -> usize {
    (who as u32) as usize % ROWS
}

/// Holds the internal lock; releases it on drop (the ground's guard).
type Held<'a> = RawLockGuard<'a>;

impl RobustSemaphore {
    shm::const_unless_loom! {
        /// A semaphore with `permits` free permits (at most [`MAX_PERMITS`];
        /// larger values are clamped).
        pub const fn new(permits: u32) -> RobustSemaphore {
            RobustSemaphore::with_bound(permits, MAX_PERMITS)
        }
    }

    /// A semaphore with `permits` free permits in anonymous shared memory,
    /// which children forked afterwards share with this process: the
    /// one-line form of `Shared::new(RobustSemaphore::new(permits))`.
    ///
    /// ```
    /// use sync_sem::RobustSemaphore;
    ///
    /// let sem = RobustSemaphore::shared(1)?;
    /// let held = sem.acquire()?;
    /// let child = daemon::Process::new(|| sem.try_acquire().is_ok()).start()?;
    /// assert!(!child.join()?, "the one permit is the parent's");
    /// drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn shared(permits: u32) -> shm::Result<shm::Shared<RobustSemaphore>> {
        shm::Shared::new(RobustSemaphore::new(permits))
    }

    shm::const_unless_loom! {
        /// A bounded one: releasing above `permits` is an error.
        pub const fn bounded(permits: u32) -> RobustSemaphore {
            let permits = clamp_permits(permits);
            RobustSemaphore::with_bound(permits, permits)
        }
    }

    shm::const_unless_loom! {
        const fn with_bound(permits: u32, bound: u32) -> RobustSemaphore {
            RobustSemaphore {
                word: Futex::new(clamp_permits(permits)),
                bound,
                guard: RawLock::new(),
                journal: Journal {
                    armed: AtomicU32::new(0),
                    word: AtomicU32::new(0),
                    slots: AtomicU32::new(0),
                    row_owner: AtomicU64::new(0),
                    row_held: AtomicU32::new(0),
                    second_held: AtomicU32::new(0),
                    second_owner: AtomicU64::new(0),
                },
                holders: HolderRow::table(),
            }
        }
    }

    /// Takes one permit, waiting as long as it takes.
    ///
    /// Fails only with [`AcquireError::TooManyHolders`]: [`MAX_HOLDERS`]
    /// live processes already hold permits.
    pub fn acquire(&self) -> Result<Permit<'_>, AcquireError> {
        self.take(Wait::Forever)
    }

    /// Takes a permit if one is free now (after taking back the permits of
    /// dead holders, if none is). Never waits for another process: if the
    /// semaphore's internal lock is held by a process that is not running
    /// (stopped by SIGSTOP or a debugger, frozen, or not scheduled), the
    /// answer is [`AcquireError::WouldBlock`] after a few tries.
    pub fn try_acquire(&self) -> Result<Permit<'_>, AcquireError> {
        self.take(Wait::No)
    }

    /// Takes a permit, waiting at most `timeout`, including any wait for the
    /// internal lock (whose holder may be stopped).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Permit<'_>, AcquireError> {
        self.take(match shm::sync::now().checked_add(timeout) {
            Some(deadline) => Wait::Until(deadline),
            None => Wait::Forever,
        })
    }

    /// Adds one permit that belongs to no process (for signalling).
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.release_n(1)
    }

    /// Adds `n` permits that belong to no process. Nothing is added if it
    /// would pass the bound or [`MAX_PERMITS`].
    pub fn release_n(&self, n: u32) -> Result<(), ReleaseError> {
        shm::placement::check(self, ROBUST_KIND, ROBUST_SHARED_FORM);
        let held = self.lock();
        let seen = self.word.load(Ordering::Relaxed);
        let new_count = checked_release(seen & COUNT, n, self.bound)?;
        self.commit(new_count, None);
        drop(held);
        wake_sleepers_of(&self.word, seen);
        Ok(())
    }

    /// The number of free permits now. Permits of dead holders are counted
    /// once taken back (by a waiter, `try_acquire` or
    /// [`reclaim`](RobustSemaphore::reclaim)).
    pub fn value(&self) -> u32 {
        permits_in(&self.word)
    }

    /// The bound of a [`bounded`](RobustSemaphore::bounded) semaphore, or `None`.
    pub fn bound(&self) -> Option<u32> {
        public_bound(self.bound)
    }

    /// Whether some process may be asleep waiting for a permit (see
    /// [`Semaphore::has_sleepers`](crate::Semaphore::has_sleepers)).
    ///
    /// ```
    /// assert!(!sync_sem::RobustSemaphore::new(1).has_sleepers());
    /// ```
    pub fn has_sleepers(&self) -> bool {
        has_sleepers(&self.word)
    }

    /// Every process the holder table names and the permits it holds, in
    /// table order; dead processes included until a sweep (a waiter,
    /// `try_acquire` or [`reclaim`](RobustSemaphore::reclaim)) takes their
    /// permits back: check [`Identity::is_running`](shm::pid::Identity::is_running).
    /// Read without the internal lock, so a row being changed may be seen
    /// half-way; reading changes nothing (for tools such as `procsync
    /// inspect`).
    ///
    /// ```
    /// use sync_sem::RobustSemaphore;
    ///
    /// let sem = RobustSemaphore::new(3);
    /// let _a = sem.acquire()?;
    /// let _b = sem.acquire()?;
    /// assert_eq!(sem.holders(), vec![(shm::pid::current_identity(), 2)]);
    /// # Ok::<(), sync_sem::AcquireError>(())
    /// ```
    pub fn holders(&self) -> Vec<(pid::Identity, u32)> {
        self.holders
            .iter()
            .map(HolderRow::load)
            .filter(|row| row.held > 0)
            .filter_map(|row| Some((pid::Identity::from_bits(row.owner)?, row.held)))
            .collect()
    }

    /// Takes back the permits of every holder that has died and returns how
    /// many came back.
    pub fn reclaim(&self) -> u32 {
        let held = self.lock();
        let (returned, had_sleepers) = self.sweep_dead();
        drop(held);
        if returned > 0 && had_sleepers {
            self.word.wake_all();
        }
        returned
    }

    /// How many permits the process now running under `pid` holds (the
    /// ones it acquired or adopted and has not released; not those given
    /// up with [`Permit::forget`]). A dead process holds none: its rows, until a sweep returns
    /// them, belong to nobody, and a new process that reuses its pid is not
    /// taken for it (rows record the whole identity). Checks liveness, a
    /// few system calls per row of that pid.
    pub fn held_by(&self, pid: shm::pid::Pid) -> u32 {
        self.holders
            .iter()
            .map(HolderRow::load)
            .filter(|r| {
                r.owner != 0 && r.owner as u32 == pid.get() && pid::is_running_bits(r.owner)
            })
            .map(|r| r.held)
            .sum()
    }

    fn take(&self, wait: Wait) -> Result<Permit<'_>, AcquireError> {
        shm::placement::check(self, ROBUST_KIND, ROBUST_SHARED_FORM);
        let me = me();
        // First try without reading the clock: the uncontended path.
        let held = self.lock_for(wait)?;
        if self.take_one(me)? {
            return Ok(Permit::robust(self, me));
        }
        drop(held);
        self.take_contended(me, wait)
    }

    /// With the internal lock held: takes a permit if one is free.
    fn take_one(&self, me: Who) -> Result<bool, AcquireError> {
        if permits_in(&self.word) == 0 {
            return Ok(false);
        }
        // Finding a row may sweep dead holders, which changes the count:
        // read it only after.
        let slot = self.slot_for(me).ok_or(AcquireError::TooManyHolders {
            holders: MAX_HOLDERS,
        })?;
        let seen = self.word.load(Ordering::Relaxed);
        let current = self.holders[slot].load();
        self.commit(
            ((seen & COUNT) - 1) | (seen & SLEEPERS),
            Some((slot, Row::of(me, current.held_by(me) + 1))),
        );
        Ok(true)
    }

    #[cold]
    fn take_contended(&self, me: Who, wait: Wait) -> Result<Permit<'_>, AcquireError> {
        let mut spin = Spin::snoozing();
        // `try_acquire` looks for dead holders at once; a waiter first
        // spins and sleeps, then checks every interval.
        let mut sweep = match wait {
            Wait::No => OwnerCheck::starting_now(),
            _ => OwnerCheck::starting_soon(),
        };
        loop {
            let held = self.lock_for(wait)?;
            if self.take_one(me)? {
                return Ok(Permit::robust(self, me));
            }
            let now = shm::sync::now();
            if sweep.due(now) {
                let (returned, had_sleepers) = self.sweep_dead();
                if returned > 0 {
                    drop(held);
                    if returned > 1 && had_sleepers {
                        // One is ours; the others are for the sleepers.
                        self.word.wake_all();
                    }
                    continue;
                }
            }
            match wait {
                Wait::No => return Err(AcquireError::WouldBlock),
                Wait::Until(deadline) if now >= deadline => return Err(AcquireError::TimedOut),
                _ => {}
            }
            if spin.spin_once() {
                drop(held);
                continue;
            }
            // A single store: no journal needed.
            self.word.store(SLEEPERS, Ordering::Relaxed);
            crash_point!(
                ROBUST_SEMAPHORE_CRASH_POINTS,
                "robust semaphore: sleepers flagged"
            );
            drop(held);
            self.word
                .wait(SLEEPERS, Some(sweep.wake_at(wait.deadline())));
        }
    }

    /// One permit back from a [`Permit`] dropped by its owner, counted
    /// under `acquirer`: the process that acquired it, or the one that
    /// adopted it since.
    pub(crate) fn give_back_one(&self, acquirer: Who) {
        let held = self.lock();
        let seen = self.word.load(Ordering::Relaxed);
        let Some(slot) = self.slot_holding(acquirer) else {
            // The acquirer died and its permits were taken back already.
            return;
        };
        let current = self.holders[slot].load();
        let new_row = Row::of(acquirer, current.held - 1);
        // Fails only if `release` calls refilled the semaphore while this
        // permit was out: the program released more than it took. A drop
        // cannot return an error, so it panics, and the count is unchanged.
        let new_count = match checked_release(seen & COUNT, 1, self.bound) {
            Ok(count) => count,
            Err(err) => {
                drop(held);
                if !std::thread::panicking() {
                    panic!("dropping a semaphore permit: {err}");
                }
                return;
            }
        };
        self.commit(new_count, Some((slot, new_row)));
        drop(held);
        wake_sleepers_of(&self.word, seen);
    }

    /// [`Permit::adopt`]: moves one permit from `acquirer`'s row to the
    /// calling process's, as one journalled change (a death at any store
    /// leaves it counted on exactly one of the two rows, never both nor
    /// neither). Returns the calling process, under which the permit now
    /// counts.
    pub(crate) fn adopt_one(&self, acquirer: Who) -> Result<Who, AdoptError> {
        let me = me();
        if me == acquirer {
            return Ok(me);
        }
        let _held = self.lock();
        // Finding a row may sweep dead holders, the acquirer among them:
        // look for the acquirer's row only after.
        let mine = self.slot_for(me);
        let theirs = self.slot_holding(acquirer).ok_or(AdoptError::Reclaimed)?;
        let mine = mine.ok_or(AdoptError::TooManyHolders {
            holders: MAX_HOLDERS,
        })?;
        let from = self.holders[theirs].load();
        let to = self.holders[mine].load();
        self.journalled(
            self.word.load(Ordering::Relaxed),
            (mine, Row::of(me, to.held_by(me) + 1)),
            Some((theirs, Row::of(acquirer, from.held - 1))),
        );
        Ok(me)
    }

    /// A forgotten permit: stays taken, no longer `acquirer`'s.
    pub(crate) fn disown_one(&self, acquirer: Who) {
        let _held = self.lock();
        if let Some(slot) = self.slot_holding(acquirer) {
            let current = self.holders[slot].load();
            // No journal needed: a death between the row's two stores
            // leaves the row counting one permit fewer (the one disowned)
            // under a dead owner, which a sweep frees.
            self.store_row(slot, Row::of(acquirer, current.held - 1), || {
                crash_point!(
                    ROBUST_SEMAPHORE_CRASH_POINTS,
                    "robust semaphore: row count applied"
                );
            });
            crash_point!(
                ROBUST_SEMAPHORE_CRASH_POINTS,
                "robust semaphore: row disowned"
            );
        }
    }

    /// Takes the internal lock, however long it takes.
    #[inline]
    fn lock(&self) -> Held<'_> {
        match self.lock_for(Wait::Forever) {
            Ok(held) => held,
            Err(_) => unreachable!("an endless wait for the lock cannot time out"),
        }
    }

    /// Takes the internal lock within what `wait` allows, finishing the
    /// change of a holder that died inside it.
    #[inline(always)]
    fn lock_for(&self, wait: Wait) -> Result<Held<'_>, AcquireError> {
        let how = match wait {
            Wait::No => self.try_lock(),
            Wait::Until(_) | Wait::Forever => self.guard.lock_until(wait.deadline()),
        };
        match how {
            // SAFETY: this process has just acquired the internal lock, and
            // this guard alone stands for it.
            Some(Acquired::Clean) => Ok(unsafe { Held::new(&self.guard, pid::current_identity()) }),
            // A holder that died (or panicked: a panic inside is a bug, but
            // the guard marks it) may have left a change half-applied.
            Some(Acquired::OwnerDied | Acquired::HolderPanicked) => {
                self.replay();
                // SAFETY: as above.
                Ok(unsafe { Held::new(&self.guard, pid::current_identity()) })
            }
            None => Err(wait.gave_up()),
        }
    }

    /// A few tries of the lock, spinning in between; never sleeps.
    #[cold]
    fn try_lock(&self) -> Option<Acquired> {
        let mut spin = Spin::busy(TRY_LOCK_ROUNDS);
        loop {
            // `try_lock` on a held lock checks that the holder runs (system
            // calls): only the last try does that.
            if !self.guard.is_locked() {
                if let Some(how) = self.guard.try_lock() {
                    return Some(how);
                }
            }
            if !spin.spin_once() {
                break;
            }
        }
        self.guard.try_lock()
    }

    #[cold]
    fn replay(&self) {
        if self.journal.armed.load(Ordering::Acquire) == 1 {
            self.apply(
                self.journal.word.load(Ordering::Relaxed),
                self.journal.slots.load(Ordering::Relaxed),
                Row {
                    owner: self.journal.row_owner.load(Ordering::Relaxed),
                    held: self.journal.row_held.load(Ordering::Relaxed),
                },
                Row {
                    owner: self.journal.second_owner.load(Ordering::Relaxed),
                    held: self.journal.second_held.load(Ordering::Relaxed),
                },
            );
            self.journal.armed.store(0, Ordering::Release);
            crash_point!(
                ROBUST_SEMAPHORE_CRASH_POINTS,
                "robust semaphore: replay disarmed"
            );
        }
    }

    /// Sets the word and (maybe) one holder row as one crash-safe step.
    /// Called with the internal lock held.
    fn commit(&self, new_word: u32, row_change: Option<(usize, Row)>) {
        match row_change {
            Some(row) => self.journalled(new_word, row, None),
            None => {
                // One store: atomic by itself.
                self.word.store(new_word, Ordering::Release);
                crash_point!(
                    ROBUST_SEMAPHORE_CRASH_POINTS,
                    "robust semaphore: count stored"
                );
            }
        }
    }

    /// Sets the word and one or two holder rows as one crash-safe step,
    /// through the journal. Called with the internal lock held.
    fn journalled(&self, new_word: u32, first: (usize, Row), second: Option<(usize, Row)>) {
        let (slot, new_row) = first;
        self.journal.word.store(new_word, Ordering::Relaxed);
        crash_point!(
            ROBUST_SEMAPHORE_CRASH_POINTS,
            "robust semaphore: journal word"
        );
        let slots = slots(slot, second.map(|(s, _)| s));
        self.journal.slots.store(slots, Ordering::Relaxed);
        crash_point!(
            ROBUST_SEMAPHORE_CRASH_POINTS,
            "robust semaphore: journal slot"
        );
        self.journal.row_held.store(new_row.held, Ordering::Relaxed);
        crash_point!(
            ROBUST_SEMAPHORE_CRASH_POINTS,
            "robust semaphore: journal row count"
        );
        self.journal
            .row_owner
            .store(new_row.owner, Ordering::Relaxed);
        crash_point!(
            ROBUST_SEMAPHORE_CRASH_POINTS,
            "robust semaphore: journal row"
        );
        let second_row = match second {
            Some((_, row)) => {
                self.journal.second_held.store(row.held, Ordering::Relaxed);
                crash_point!(
                    ROBUST_SEMAPHORE_CRASH_POINTS,
                    "robust semaphore: journal second row count"
                );
                self.journal
                    .second_owner
                    .store(row.owner, Ordering::Relaxed);
                crash_point!(
                    ROBUST_SEMAPHORE_CRASH_POINTS,
                    "robust semaphore: journal second row"
                );
                row
            }
            // Not read: `slots` names no second row.
            None => Row::FREE,
        };
        self.journal.armed.store(1, Ordering::Release);
        crash_point!(
            ROBUST_SEMAPHORE_CRASH_POINTS,
            "robust semaphore: journal armed"
        );
        self.apply(new_word, slots, new_row, second_row);
        self.journal.armed.store(0, Ordering::Release);
        crash_point!(
            ROBUST_SEMAPHORE_CRASH_POINTS,
            "robust semaphore: journal disarmed"
        );
    }

    /// Applies a journalled change: the rows `slots` names, then the word.
    fn apply(&self, new_word: u32, slots: u32, new_row: Row, second_row: Row) {
        let (slot, second) = unpack(slots);
        if slot < ROWS {
            self.store_row(slot, new_row, || {
                crash_point!(
                    ROBUST_SEMAPHORE_CRASH_POINTS,
                    "robust semaphore: row count applied"
                );
            });
            crash_point!(
                ROBUST_SEMAPHORE_CRASH_POINTS,
                "robust semaphore: row applied"
            );
        }
        if second < ROWS {
            self.store_row(second, second_row, || {
                crash_point!(
                    ROBUST_SEMAPHORE_CRASH_POINTS,
                    "robust semaphore: second row count applied"
                );
            });
            crash_point!(
                ROBUST_SEMAPHORE_CRASH_POINTS,
                "robust semaphore: second row applied"
            );
        }
        self.word.store(new_word, Ordering::Release);
        crash_point!(
            ROBUST_SEMAPHORE_CRASH_POINTS,
            "robust semaphore: count applied"
        );
    }

    /// Writes a row: the count first, then the owner, so that a row is never
    /// seen owned with a count that was not meant for its owner.
    /// `between` runs between the two stores (a crash point).
    #[inline(always)]
    fn store_row(&self, slot: usize, row: Row, between: impl FnOnce()) {
        let cell = &self.holders[slot];
        cell.held.store(row.held, Ordering::Relaxed);
        between();
        cell.owner.store(row.owner, Ordering::Relaxed);
    }

    /// Returns the permits of dead holders; (permits returned, whether
    /// sleepers were flagged). Called with the internal lock held.
    fn sweep_dead(&self) -> (u32, bool) {
        let mut returned = 0;
        let mut had_sleepers = false;
        for (slot, cell) in self.holders.iter().enumerate() {
            let current = cell.load();
            if current.owner == 0 || pid::is_running_bits(current.owner) {
                continue;
            }
            let seen = self.word.load(Ordering::Relaxed);
            had_sleepers |= seen & SLEEPERS != 0;
            // The sleepers bit stays: whoever next adds a permit wakes them.
            let count = ((seen & COUNT) + current.held).min(self.bound);
            self.commit(count | (seen & SLEEPERS), Some((slot, Row::FREE)));
            returned += current.held;
        }
        (returned, had_sleepers)
    }

    /// The row to count a new permit of `me` in: one `me` already has, or a
    /// free one (reclaiming dead holders' rows if none is free).
    fn slot_for(&self, me: Who) -> Option<usize> {
        let start = home_row(me);
        let probe = || (0..ROWS).map(|i| (start + i) % ROWS);
        let find = || {
            probe().find(|&s| {
                let owner = self.holders[s].owner.load(Ordering::Relaxed);
                owner == 0 || owner == me
            })
        };
        find().or_else(|| {
            self.sweep_dead();
            find()
        })
    }

    /// A row where `me` holds at least one permit.
    fn slot_holding(&self, me: Who) -> Option<usize> {
        let start = home_row(me);
        (0..ROWS)
            .map(|i| (start + i) % ROWS)
            .find(|&s| self.holders[s].load().held_by(me) > 0)
    }
}

/// How long an acquisition may wait, for a permit and for the internal lock.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// `try_acquire`: not at all.
    No,
    /// `acquire_timeout`.
    Until(Instant),
    /// `acquire`.
    Forever,
}

impl Wait {
    /// The error when the wait ran out (for the lock or for a permit).
    fn gave_up(self) -> AcquireError {
        match self {
            Wait::No => AcquireError::WouldBlock,
            Wait::Until(_) | Wait::Forever => AcquireError::TimedOut,
        }
    }

    fn deadline(self) -> Option<Instant> {
        match self {
            Wait::Until(deadline) => Some(deadline),
            Wait::No | Wait::Forever => None,
        }
    }
}
