//! [`Barrier`]: wait until every party has arrived.
//!
//! # Design
//!
//! There is no internal lock: every step is one compare-and-swap (or one
//! store) on the barrier's own words, so a party killed or stopped between
//! two steps leaves a state every other party can read and go on from, and
//! no wait depends on another process making progress except through the
//! caller's own deadline.
//!
//! - `state` (64 bits) holds the generation (40 bits, wrapping), the
//!   arrivals of the current generation, `BROKEN`, and the outcome of the
//!   *previous* generation (`PREVIOUS_RELEASED`) with whether all its
//!   waiters have already been told (`PREVIOUS_SETTLED`). Arriving, releasing,
//!   breaking and resetting are each one CAS of it.
//! - Each waiting party holds a slot: its process (for the liveness check)
//!   and a word "waiting in generation g", which the party that ends g
//!   turns into "g was released" or "g was broken". So a waiter learns the
//!   exact outcome of *its* generation, however many generations and resets
//!   pass before it wakes.
//! - Until the slots of generation g are all told (`PREVIOUS_SETTLED`),
//!   `PREVIOUS_RELEASED` in `state` tells the outcome of g, and nobody ends
//!   g + 1 before telling them: a waiter that finds its slot untold and the
//!   generation moved on reads the outcome from `state`.
//! - With an action ([`Barrier::wait_with_action`]), the last party to
//!   arrive counts itself in like the others (the arrivals then equal the
//!   parties: complete, not yet released) and holds its slot, marked waiting,
//!   while it runs the action; only then does it release the generation. So
//!   the action window is covered by the same liveness check as any wait: if
//!   that party dies inside the action, a waiter finds its slot waiting with
//!   a dead owner and breaks the generation. A process arriving meanwhile (a
//!   spare party of the next generation) waits for the generation to end
//!   before it counts itself in.

use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use shm::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use shm::lockword::{OwnerCheck, OWNER_CHECK_INTERVAL};
use shm::{crash_point, pid, Futex, ShmSafe};

/// The most parties a barrier can have: it keeps a slot for each waiting
/// party, to check that it still runs and to tell it the outcome of its
/// generation. [`Barrier::new`] refuses more
/// ([`BarrierError::TooManyParties`]). If more processes than this wait at
/// once (more processes than parties share the barrier, and some are slow to
/// leave), the others wait for a slot to come free, within their timeout.
pub const MAX_PARTIES: u32 = 1024;

/// Slots: one per possible waiting party, or in the loom model
/// (`shm::sync`) four, enough for its few processes and cheap to explore.
#[cfg(not(loom))]
const SLOTS: usize = MAX_PARTIES as usize;
#[cfg(loom)]
const SLOTS: usize = 4;

/// The names of the barrier's crash points (see `shm::crash`), one after
/// each shared store of its multi-store paths.
pub const BARRIER_CRASH_POINTS: &[&str] = &[
    "barrier: slot claimed",
    "barrier: slot counted",
    "barrier: waiting recorded",
    "barrier: arrived",
    "barrier: generation ended",
    "barrier: outcome recorded",
    "barrier: generation settled",
    "barrier: bell rung",
    "barrier: unbroken",
    "barrier: check scheduled",
    "barrier: dead party's slot taken",
    "barrier: slot emptied",
    "barrier: slot freed",
];

/// How often, at most, some process checks that the waiting parties still
/// run (one check serves every waiter): half the interval at which each
/// waiter looks, so a death is noticed within about that interval.
const CHECK_EVERY: Duration = Duration::from_nanos(OWNER_CHECK_INTERVAL.as_nanos() as u64 / 2);

// `state`: generation << GENERATION_SHIFT | arrived << ARRIVED_SHIFT | flags.
/// The barrier is broken (until `reset`); the current generation gathers
/// nobody.
const BROKEN: u64 = 1;
/// The generation before the current one was released (else it broke).
const PREVIOUS_RELEASED: u64 = 1 << 1;
/// Every slot waiting in the previous generation has been told its outcome.
const PREVIOUS_SETTLED: u64 = 1 << 2;
const ARRIVED_SHIFT: u32 = 3;
const ARRIVED_BITS: u32 = 21;
const ONE_ARRIVAL: u64 = 1 << ARRIVED_SHIFT;
const ARRIVED_MASK: u64 = ((1 << ARRIVED_BITS) - 1) << ARRIVED_SHIFT;
const GENERATION_SHIFT: u32 = ARRIVED_SHIFT + ARRIVED_BITS;
const GENERATION_MASK: u64 = u64::MAX >> GENERATION_SHIFT;

const _: () = assert!(MAX_PARTIES as u64 <= ARRIVED_MASK >> ARRIVED_SHIFT);

/// `timeout_ns` of a barrier without a default timeout.
const NO_TIMEOUT: u64 = u64::MAX;

fn generation_of(state: u64) -> u64 {
    state >> GENERATION_SHIFT
}

fn arrived_of(state: u64) -> u32 {
    ((state & ARRIVED_MASK) >> ARRIVED_SHIFT) as u32
}

fn next_generation(generation: u64) -> u64 {
    generation.wrapping_add(1) & GENERATION_MASK
}

fn previous_generation(generation: u64) -> u64 {
    generation.wrapping_sub(1) & GENERATION_MASK
}

// A slot's word: generation << 2 | status; 0 when empty.
const EMPTY: u64 = 0;
const WAITING: u64 = 1;
const RELEASED: u64 = 2;
const BROKE: u64 = 3;
const STATUS: u64 = 3;

fn slot_word(generation: u64, status: u64) -> u64 {
    generation << 2 | status
}

// Who a slot belongs to. The only place the barrier knows what identifies a
// process: its identity (pid and start tag, so that a new process reusing a
// dead party's pid is not taken for it), 0 for nobody.
type Who = u64;
type WhoCell = AtomicU64;
const NOBODY: Who = 0;

fn me() -> Who {
    pid::current_identity().to_bits()
}

/// Why a barrier wait did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierError {
    /// The barrier was broken: a party timed out, died while waiting (or
    /// while running the action), or called [`abort`](Barrier::abort), the
    /// action panicked, or [`reset`](Barrier::reset) ran while this party
    /// waited (Python's `BrokenBarrierError`).
    #[error("the barrier is broken (a party timed out, died, aborted, or it was reset)")]
    Broken,
    /// The wait ran out of time (`wait_timeout`'s, or the barrier's default
    /// timeout); the barrier is now broken for everyone, as in Python.
    #[error("timed out waiting at the barrier; it is now broken for every party")]
    TimedOut,
    /// `Barrier::new(0)`: a barrier needs at least one party.
    #[error("a barrier needs at least one party")]
    NoParties,
    /// `Barrier::new` with more than [`MAX_PARTIES`] parties.
    #[error("a barrier has at most {max} parties")]
    TooManyParties {
        /// The limit, [`MAX_PARTIES`].
        max: u32,
    },
    /// [`Barrier::shared`] could not put the barrier in shared memory (the
    /// `shm` error's message: `BarrierError` is `Clone` and `Eq`, which
    /// `shm::Error` is not).
    #[error("could not put the barrier in shared memory: {0}")]
    Memory(String),
}

/// What a completed [`Barrier::wait`] tells a party.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult {
    index: u32,
    leader: bool,
}

impl BarrierWaitResult {
    /// The arrival index, 0 to `parties - 1`, different for each party of
    /// a generation (Python's return value of `wait`).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// True for exactly one party per generation: the last to arrive (the
    /// one that ran the action, if one was given).
    pub fn is_leader(&self) -> bool {
        self.leader
    }
}

/// A barrier between processes: Python's `multiprocessing.Barrier`.
///
/// `parties` processes call [`wait`](Barrier::wait); each blocks until all
/// have, then all go on and the barrier is ready for the next generation.
/// Unlike Python's (CPython gh-123899), a party that dies while others wait
/// breaks the barrier within about a millisecond, so nobody hangs.
///
/// Every waiter learns the exact outcome of its own generation: released
/// (`Ok`) or broken ([`BarrierError::Broken`]), even if it wakes only after
/// later generations, aborts and resets. There is no internal lock: a party
/// killed or stopped at any instruction leaves a state the others go on
/// from, and `wait_timeout` returns by its deadline whatever other parties
/// do (a stopped party is waited for only until then).
///
/// At most [`MAX_PARTIES`] parties; the barrier takes about 16 KiB of
/// shared memory, one slot per possible waiting party.
///
/// Python's `Barrier(parties, action, timeout)`: the default `timeout` is
/// kept in the barrier itself ([`with_timeout`](Barrier::with_timeout),
/// [`shared_with_timeout`](Barrier::shared_with_timeout)), so every process
/// sharing it waits by it in [`wait`](Barrier::wait); the `action` is given
/// to the wait ([`wait_with_action`](Barrier::wait_with_action)), since
/// code cannot live in shared memory.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use sync_event::Barrier;
///
/// let start = Barrier::shared(3)?;
/// let runners: Vec<_> = (0..2)
///     .map(|_| daemon::Process::new(|| start.wait_timeout(Duration::from_secs(10)).is_ok()).start())
///     .collect::<Result<_, _>>()?;
/// start.wait_timeout(Duration::from_secs(10))?;
/// for r in runners {
///     assert!(r.join()?);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
pub struct Barrier {
    parties: u32,
    /// Bumped after every end of a generation that had waiters; waiters
    /// sleep on it.
    bell: Futex,
    /// Generation, arrivals, flags: see the module's documentation.
    state: AtomicU64,
    /// CLOCK_MONOTONIC nanoseconds before which nobody need check that the
    /// waiting parties still run.
    next_check: AtomicU64,
    /// The default timeout of [`wait`](Barrier::wait) in nanoseconds, or
    /// `NO_TIMEOUT`. Set when the barrier is made, never changed.
    timeout_ns: u64,
    /// Every slot ever claimed is below this index.
    in_use: AtomicU32,
    _pad: u32,
    slots: [Slot; SLOTS],
}

/// One waiting party: its process and what it waits for.
#[repr(C)]
struct Slot {
    owner: WhoCell,
    /// `slot_word(generation, WAITING | RELEASED | BROKE)`, or `EMPTY`.
    word: AtomicU64,
}

// SAFETY: repr(C) structs of atomics and integers, with explicit padding:
// plain data.
unsafe impl ShmSafe for Barrier {
    fn describe_layout(out: &mut shm::layout::LayoutWriter) {
        out.protocol::<Barrier>("Barrier v2");
    }
}

impl Slot {
    shm::const_unless_loom! {
        /// An empty slot.
        const fn empty() -> Slot {
            Slot {
                owner: WhoCell::new(NOBODY),
                word: AtomicU64::new(EMPTY),
            }
        }
    }

    /// Every slot, empty.
    #[cfg(not(loom))]
    const fn table() -> [Slot; SLOTS] {
        [const { Slot::empty() }; SLOTS]
    }

    /// Every slot, empty (loom's atomics cannot be made in a const
    /// context).
    #[cfg(loom)]
    fn table() -> [Slot; SLOTS] {
        std::array::from_fn(|_| Slot::empty())
    }
}

thread_local! {
    /// The address of the barrier whose action this thread is running (0:
    /// none): `reset` or `abort` called from inside an action must not wait
    /// for that action to end.
    static RUNNING_ACTION_OF: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How a generation ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Every party arrived.
    Release,
    /// A timeout, a death or `abort`: broken until `reset`.
    Break,
    /// `reset` while parties waited: they get `Broken`, the next
    /// generation starts at once.
    Reset,
}

impl Barrier {
    shm::const_unless_loom! {
        /// A barrier for `parties` processes; `parties == 0` is
        /// [`BarrierError::NoParties`], more than [`MAX_PARTIES`] is
        /// [`BarrierError::TooManyParties`].
        pub const fn new(parties: u32) -> Result<Barrier, BarrierError> {
            Barrier::with_timeout_ns(parties, NO_TIMEOUT)
        }
    }

    shm::const_unless_loom! {
        /// A barrier for `parties` processes whose [`wait`](Barrier::wait)
        /// (and [`wait_with_action`](Barrier::wait_with_action)) times out
        /// after `timeout`: Python's `Barrier(parties, timeout=timeout)`.
        /// The timeout is kept in the barrier, so it holds in every process
        /// that shares it; [`wait_timeout`](Barrier::wait_timeout) still
        /// sets its own. A timeout too long to count in nanoseconds (about
        /// 584 years) is none. The same errors as [`new`](Barrier::new).
        ///
        /// ```
        /// use std::time::Duration;
        /// use sync_event::{Barrier, BarrierError};
        ///
        /// let barrier = Barrier::with_timeout(2, Duration::from_millis(10))?;
        /// assert_eq!(barrier.default_timeout(), Some(Duration::from_millis(10)));
        /// // Nobody else comes: wait() gives up after the default timeout,
        /// // and the barrier is broken, as in Python.
        /// assert_eq!(barrier.wait().unwrap_err(), BarrierError::TimedOut);
        /// assert!(barrier.is_broken());
        /// # Ok::<(), BarrierError>(())
        /// ```
        pub const fn with_timeout(parties: u32, timeout: Duration) -> Result<Barrier, BarrierError> {
            let ns = timeout.as_nanos();
            let timeout_ns = if ns >= NO_TIMEOUT as u128 {
                NO_TIMEOUT
            } else {
                ns as u64
            };
            Barrier::with_timeout_ns(parties, timeout_ns)
        }
    }

    shm::const_unless_loom! {
        /// [`new`](Barrier::new) and [`with_timeout`](Barrier::with_timeout):
        /// checks `parties`, then a barrier with `timeout_ns`.
        const fn with_timeout_ns(parties: u32, timeout_ns: u64) -> Result<Barrier, BarrierError> {
            if parties == 0 {
                return Err(BarrierError::NoParties);
            }
            if parties > MAX_PARTIES {
                return Err(BarrierError::TooManyParties { max: MAX_PARTIES });
            }
            let mut barrier = Barrier::starting_at(parties, 0);
            barrier.timeout_ns = timeout_ns;
            Ok(barrier)
        }
    }

    /// A barrier for `parties` processes in anonymous shared memory, which
    /// children forked afterwards share with this process: the one-line
    /// form of `Shared::new(Barrier::new(parties)?)`. Python's
    /// `Barrier(parties)`. A count [`new`](Barrier::new) refuses is refused
    /// here with the same error; a failure to map the memory is
    /// [`BarrierError::Memory`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use sync_event::Barrier;
    ///
    /// let start = Barrier::shared(2)?;
    /// let child = daemon::Process::new(|| start.wait_timeout(Duration::from_secs(10)).is_ok()).start()?;
    /// start.wait_timeout(Duration::from_secs(10))?;
    /// assert!(child.join()?);
    /// assert!(Barrier::shared(0).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn shared(parties: u32) -> Result<shm::Shared<Barrier>, BarrierError> {
        let barrier = Barrier::new(parties)?;
        shm::Shared::new(barrier).map_err(|e| BarrierError::Memory(e.to_string()))
    }

    /// [`shared`](Barrier::shared) with a default timeout (see
    /// [`with_timeout`](Barrier::with_timeout)): Python's
    /// `Barrier(parties, timeout=timeout)`, shared with the children forked
    /// afterwards.
    #[cfg(not(loom))]
    pub fn shared_with_timeout(
        parties: u32,
        timeout: Duration,
    ) -> Result<shm::Shared<Barrier>, BarrierError> {
        let barrier = Barrier::with_timeout(parties, timeout)?;
        shm::Shared::new(barrier).map_err(|e| BarrierError::Memory(e.to_string()))
    }

    shm::const_unless_loom! {
        /// A barrier whose first generation is `generation` (tests of the
        /// wrap-around).
        const fn starting_at(parties: u32, generation: u64) -> Barrier {
            Barrier {
                parties,
                bell: Futex::new(0),
                // No generation before the first: nothing to settle.
                state: AtomicU64::new(
                    (generation & GENERATION_MASK) << GENERATION_SHIFT | PREVIOUS_SETTLED,
                ),
                next_check: AtomicU64::new(0),
                timeout_ns: NO_TIMEOUT,
                in_use: AtomicU32::new(0),
                _pad: 0,
                slots: Slot::table(),
            }
        }
    }

    /// Waits until all parties have arrived, or for at most the barrier's
    /// default timeout if it has one ([`with_timeout`](Barrier::with_timeout):
    /// then as [`wait_timeout`](Barrier::wait_timeout) with it).
    pub fn wait(&self) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_until(self.default_deadline(), None::<fn()>)
    }

    /// Waits at most `timeout` (whatever the barrier's default timeout); on
    /// timeout the barrier breaks for everyone and this party gets
    /// [`BarrierError::TimedOut`] (unless its generation was released or
    /// broken at that very moment: then that outcome).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_until(shm::sync::now().checked_add(timeout), None::<fn()>)
    }

    /// [`wait`](Barrier::wait), and if this party is the last to arrive, it
    /// runs `action` before any party is released: Python's
    /// `Barrier(parties, action=action)`. The action runs exactly once per
    /// generation, in the party that returns
    /// [`is_leader`](BarrierWaitResult::is_leader); no party of the
    /// generation returns before it has finished. The other parties' actions
    /// are dropped unrun.
    ///
    /// # Why the action is given to the wait
    ///
    /// The barrier lives in shared memory, where a closure cannot: its code
    /// and captures are this process's. So each party passes the action to
    /// its wait, and only the one that completes the generation runs it.
    /// Every party should pass the same action (a process-local wrapper that
    /// keeps it is one line); a party calling plain `wait` passes none, and
    /// if it arrives last no action runs for that generation. The parties
    /// may also pass different closures on purpose: the last one's runs.
    ///
    /// # Failures
    ///
    /// - The action panics: the barrier breaks (every other party of the
    ///   generation gets [`BarrierError::Broken`], as do later waiters until
    ///   [`reset`](Barrier::reset)), and the panic goes on unwinding from
    ///   this call, in the party that ran it (Python: the action raised,
    ///   the barrier is broken, the exception propagates in that thread).
    /// - The process running the action dies (killed inside it): it still
    ///   holds its slot, marked waiting, so the others notice the death as
    ///   they notice any party's (within about a millisecond) and get
    ///   [`BarrierError::Broken`] instead of hanging.
    /// - The action outlasts another party's timeout: that party breaks the
    ///   generation ([`BarrierError::TimedOut`] for it, `Broken` for the
    ///   others, and for the party that ran the action, when it finishes).
    ///   The action itself is never interrupted; the deadline of the party
    ///   running it does not count while it runs.
    /// - A process arriving while the action runs (more processes than
    ///   parties share the barrier) is not counted in that generation: it
    ///   waits for it to end and joins the next; should its timeout run out
    ///   first, it breaks the barrier, as any timeout does.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    /// use shm::Shared;
    /// use sync_event::Barrier;
    ///
    /// let barrier = Barrier::shared_with_timeout(3, Duration::from_secs(10))?;
    /// let runs = Shared::new(AtomicU32::new(0))?;
    /// let action = || {
    ///     runs.fetch_add(1, Ordering::SeqCst);
    /// };
    /// let parties: Vec<_> = (0..2)
    ///     .map(|_| {
    ///         daemon::Process::new(|| {
    ///             barrier.wait_with_action(action).is_ok()
    ///                 // The action ran before anyone was released.
    ///                 && runs.load(Ordering::SeqCst) == 1
    ///         })
    ///         .start()
    ///     })
    ///     .collect::<Result<_, _>>()?;
    /// barrier.wait_with_action(action)?;
    /// assert_eq!(runs.load(Ordering::SeqCst), 1);
    /// for p in parties {
    ///     assert!(p.join()?);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_with_action(
        &self,
        action: impl FnOnce(),
    ) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_until(self.default_deadline(), Some(action))
    }

    /// [`wait_with_action`](Barrier::wait_with_action) with a timeout of its
    /// own, as [`wait_timeout`](Barrier::wait_timeout).
    pub fn wait_timeout_with_action(
        &self,
        timeout: Duration,
        action: impl FnOnce(),
    ) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_until(shm::sync::now().checked_add(timeout), Some(action))
    }

    /// The default timeout of [`wait`](Barrier::wait), if the barrier was
    /// made with one ([`with_timeout`](Barrier::with_timeout)).
    pub fn default_timeout(&self) -> Option<Duration> {
        (self.timeout_ns != NO_TIMEOUT).then(|| Duration::from_nanos(self.timeout_ns))
    }

    /// The deadline of a wait by the default timeout: none without one.
    fn default_deadline(&self) -> Option<Instant> {
        self.default_timeout()
            .and_then(|timeout| shm::sync::now().checked_add(timeout))
    }

    fn wait_until<F: FnOnce()>(
        &self,
        deadline: Option<Instant>,
        mut action: Option<F>,
    ) -> Result<BarrierWaitResult, BarrierError> {
        shm::placement::check(self, "sync_event::Barrier", "Barrier::shared(parties)");
        // Claimed only when this party has to wait.
        let mut slot: Option<&Slot> = None;
        loop {
            let state = self.state.load(Ordering::Acquire);
            if state & BROKEN != 0 {
                self.leave(slot);
                return Err(BarrierError::Broken);
            }
            let generation = generation_of(state);
            let index = arrived_of(state);
            if index >= self.parties {
                // Complete: its last party runs the action. Wait for the
                // generation to end, then join the next. (A slot this party
                // marked waiting in it, before its arrival failed, is
                // unmarked: its death now is no party's.)
                if let Some(mine) = slot {
                    mine.word.store(EMPTY, Ordering::Release);
                }
                if !self.wait_for_generation_end(generation, deadline) {
                    self.leave(slot);
                    self.break_generation(None);
                    return Err(BarrierError::TimedOut);
                }
                continue;
            }
            let last = index + 1 == self.parties;
            if last && action.is_none() {
                // The last to arrive releases the generation.
                if self.end(state, Ending::Release) {
                    self.leave(slot);
                    return Ok(BarrierWaitResult {
                        index,
                        leader: true,
                    });
                }
                continue;
            }
            let Some(mine) = slot else {
                match self.claim_slot(deadline) {
                    Some(claimed) => slot = Some(claimed),
                    None => {
                        // Not even a slot came free in time.
                        self.break_generation(None);
                        return Err(BarrierError::TimedOut);
                    }
                }
                continue;
            };
            // Recorded before arriving, so that whoever ends this generation
            // finds it. If the arrival fails, it is written again.
            mine.word
                .store(slot_word(generation, WAITING), Ordering::Release);
            crash_point!(BARRIER_CRASH_POINTS, "barrier: waiting recorded");
            if self
                .state
                .compare_exchange(
                    state,
                    state + ONE_ARRIVAL,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                crash_point!(BARRIER_CRASH_POINTS, "barrier: arrived");
                if last {
                    if let Some(action) = action.take() {
                        return self.run_action(mine, generation, index, action);
                    }
                }
                return self.wait_for_outcome(mine, generation, index, deadline);
            }
        }
    }

    /// Having arrived in `generation`: waits until it ends or `deadline`.
    fn wait_for_outcome(
        &self,
        slot: &Slot,
        generation: u64,
        index: u32,
        deadline: Option<Instant>,
    ) -> Result<BarrierWaitResult, BarrierError> {
        let passed = BarrierWaitResult {
            index,
            leader: false,
        };
        let mut check = OwnerCheck::starting_soon();
        loop {
            let bell = self.bell.load(Ordering::Acquire);
            if let Some(outcome) = self.outcome(slot, generation) {
                self.leave(Some(slot));
                return outcome.map(|()| passed);
            }
            let now = shm::sync::now();
            if deadline.is_some_and(|d| now >= d) {
                if self.break_generation(Some(generation)) {
                    self.leave(Some(slot));
                    return Err(BarrierError::TimedOut);
                }
                // It ended just now: its outcome is readable.
                continue;
            }
            if check.due(now) {
                self.check_parties();
                continue;
            }
            self.bell.wait(bell, Some(check.wake_at(deadline)));
        }
    }

    /// Having arrived last in `generation` (holding `slot`, marked waiting,
    /// so that a death inside `action` is noticed): runs `action`, then
    /// releases the generation, or breaks it if `action` panics (and
    /// resumes the panic).
    fn run_action(
        &self,
        slot: &Slot,
        generation: u64,
        index: u32,
        action: impl FnOnce(),
    ) -> Result<BarrierWaitResult, BarrierError> {
        let address = std::ptr::from_ref(self) as usize;
        let outer = RUNNING_ACTION_OF.with(|running| running.replace(address));
        let ran = panic::catch_unwind(AssertUnwindSafe(action));
        RUNNING_ACTION_OF.with(|running| running.set(outer));
        if let Err(panic) = ran {
            // In a loom model a process killed inside the action unwinds
            // with `Gone`; a killed process runs nothing more, so neither
            // does this one (the others must notice the death).
            #[cfg(loom)]
            if panic.is::<shm::sync::model::Gone>() {
                panic::resume_unwind(panic);
            }
            self.break_generation(Some(generation));
            self.leave(Some(slot));
            panic::resume_unwind(panic);
        }
        loop {
            let state = self.state.load(Ordering::Acquire);
            if generation_of(state) == generation {
                // Still ours (the CAS fails only if a flag changed: retry).
                if self.end(state, Ending::Release) {
                    self.leave(Some(slot));
                    return Ok(BarrierWaitResult {
                        index,
                        leader: true,
                    });
                }
                continue;
            }
            // Broken (a timeout, a death noticed, abort) or reset while the
            // action ran: the slot tells how.
            if let Some(outcome) = self.outcome(slot, generation) {
                self.leave(Some(slot));
                return outcome.map(|()| BarrierWaitResult {
                    index,
                    leader: true,
                });
            }
        }
    }

    /// Waits (not counted in: a party of the next generation) until the
    /// complete `generation` ends; false at `deadline`.
    fn wait_for_generation_end(&self, generation: u64, deadline: Option<Instant>) -> bool {
        let mut check = OwnerCheck::starting_soon();
        loop {
            let bell = self.bell.load(Ordering::Acquire);
            if generation_of(self.state.load(Ordering::Acquire)) != generation {
                return true;
            }
            let now = shm::sync::now();
            if deadline.is_some_and(|d| now >= d) {
                return false;
            }
            if check.due(now) {
                // The party running the action may have died.
                self.check_parties();
                continue;
            }
            self.bell.wait(bell, Some(check.wake_at(deadline)));
        }
    }

    /// The outcome of `generation` for the party waiting in `slot`; `None`
    /// while it is still gathering.
    fn outcome(&self, slot: &Slot, generation: u64) -> Option<Result<(), BarrierError>> {
        loop {
            let told = slot.word.load(Ordering::Acquire);
            debug_assert_eq!(told >> 2, generation, "a slot holds its own generation");
            match told & STATUS {
                RELEASED => return Some(Ok(())),
                BROKE => return Some(Err(BarrierError::Broken)),
                _ => {}
            }
            let state = self.state.load(Ordering::Acquire);
            if generation_of(state) == generation {
                return None;
            }
            if slot.word.load(Ordering::Acquire) != told {
                continue; // told just now
            }
            // Still untold after seeing the generation move: nobody has
            // ended the next one (it settles ours first), so `state` is the
            // next generation's and records ours as the previous.
            debug_assert_eq!(generation_of(state), next_generation(generation));
            return Some(if state & PREVIOUS_RELEASED != 0 {
                Ok(())
            } else {
                Err(BarrierError::Broken)
            });
        }
    }

    /// Ends the generation of `state` (which must be the current value):
    /// one CAS, then the waiters are told. False if `state` changed first.
    fn end(&self, state: u64, ending: Ending) -> bool {
        let generation = generation_of(state);
        if state & PREVIOUS_SETTLED == 0 {
            // The record of the previous generation's outcome is about to
            // be overwritten: its waiters must all hold it first.
            self.settle(
                previous_generation(generation),
                state & PREVIOUS_RELEASED != 0,
            );
        }
        let had_waiters = arrived_of(state) > 0;
        let released = ending == Ending::Release;
        let mut next = next_generation(generation) << GENERATION_SHIFT;
        if released {
            next |= PREVIOUS_RELEASED;
        }
        if ending == Ending::Break {
            next |= BROKEN;
        }
        if !had_waiters {
            next |= PREVIOUS_SETTLED;
        }
        if self
            .state
            .compare_exchange(state, next, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        crash_point!(BARRIER_CRASH_POINTS, "barrier: generation ended");
        if had_waiters {
            self.settle(generation, released);
            self.mark_settled(next_generation(generation));
            self.bell.fetch_add(1, Ordering::Release);
            crash_point!(BARRIER_CRASH_POINTS, "barrier: bell rung");
            self.bell.wake_all();
        }
        true
    }

    /// Tells every slot waiting in `generation` its outcome (idempotent:
    /// any process may do it, any number of times).
    fn settle(&self, generation: u64, released: bool) {
        let waiting = slot_word(generation, WAITING);
        let told = slot_word(generation, if released { RELEASED } else { BROKE });
        for slot in self.slots_in_use() {
            if slot.word.load(Ordering::Relaxed) == waiting
                && slot
                    .word
                    .compare_exchange(waiting, told, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
            {
                crash_point!(BARRIER_CRASH_POINTS, "barrier: outcome recorded");
            }
        }
    }

    /// Records that the generation before `generation` is settled, if
    /// `generation` is still the current one.
    fn mark_settled(&self, generation: u64) {
        let mut state = self.state.load(Ordering::Acquire);
        while generation_of(state) == generation && state & PREVIOUS_SETTLED == 0 {
            match self.state.compare_exchange_weak(
                state,
                state | PREVIOUS_SETTLED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    crash_point!(BARRIER_CRASH_POINTS, "barrier: generation settled");
                    return;
                }
                Err(now) => state = now,
            }
        }
    }

    /// If every party has arrived and the last one runs its action: waits
    /// until that generation ends (released, or broken by a death inside
    /// the action, which the wait looks for). Not when called from inside
    /// that action (it would wait for itself).
    fn let_action_finish(&self) {
        let state = self.state.load(Ordering::Acquire);
        let address = std::ptr::from_ref(self) as usize;
        if state & BROKEN == 0
            && arrived_of(state) == self.parties
            && RUNNING_ACTION_OF.with(|running| running.get()) != address
        {
            self.wait_for_generation_end(generation_of(state), None);
        }
    }

    /// Breaks the current generation (only if it is `only`, when given);
    /// true if this call broke it.
    fn break_generation(&self, only: Option<u64>) -> bool {
        loop {
            let state = self.state.load(Ordering::Acquire);
            if state & BROKEN != 0 || only.is_some_and(|g| generation_of(state) != g) {
                return false;
            }
            if self.end(state, Ending::Break) {
                return true;
            }
        }
    }

    /// Breaks the barrier: current and future waiters get
    /// [`BarrierError::Broken`] until [`reset`](Barrier::reset). A
    /// generation whose action is running is let finish first (its parties
    /// pass), as in Python, where the action runs under the barrier's lock.
    pub fn abort(&self) {
        self.let_action_finish();
        self.break_generation(None);
    }

    /// Returns the barrier to its initial, unbroken state. Parties waiting
    /// in it now get [`BarrierError::Broken`]. A generation whose action is
    /// running is let finish first (its parties pass), as in Python.
    pub fn reset(&self) {
        loop {
            self.let_action_finish();
            let state = self.state.load(Ordering::Acquire);
            if state & BROKEN != 0 {
                // Broken generations have no waiters: just mend it.
                if self
                    .state
                    .compare_exchange(state, state & !BROKEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    crash_point!(BARRIER_CRASH_POINTS, "barrier: unbroken");
                    return;
                }
            } else if arrived_of(state) == 0 || self.end(state, Ending::Reset) {
                return;
            }
        }
    }

    /// How many parties wait in the current generation (all of them while
    /// the last runs the action, as in Python).
    pub fn n_waiting(&self) -> u32 {
        let state = self.state.load(Ordering::Acquire);
        if state & BROKEN != 0 {
            0
        } else {
            arrived_of(state)
        }
    }

    /// The number of parties the barrier was made for.
    pub fn parties(&self) -> u32 {
        self.parties
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> bool {
        self.state.load(Ordering::Acquire) & BROKEN != 0
    }

    /// The current generation: how many generations have ended (released,
    /// or broken) since the barrier was made, modulo 2^40.
    /// Reading it changes nothing (for tools such as `procsync inspect`).
    ///
    /// ```
    /// let barrier = sync_event::Barrier::new(1)?;
    /// assert_eq!(barrier.generation(), 0);
    /// barrier.wait()?; // one party: released at once
    /// assert_eq!(barrier.generation(), 1);
    /// # Ok::<(), sync_event::BarrierError>(())
    /// ```
    pub fn generation(&self) -> u64 {
        generation_of(self.state.load(Ordering::Acquire))
    }

    fn slots_in_use(&self) -> &[Slot] {
        let in_use = self.in_use.load(Ordering::Acquire) as usize;
        &self.slots[..in_use.min(SLOTS)]
    }

    /// A free slot for this party, the lowest one; waits (until `deadline`)
    /// only if every slot is taken.
    fn claim_slot(&self, deadline: Option<Instant>) -> Option<&Slot> {
        let me = me();
        let mut check = OwnerCheck::starting_now();
        loop {
            for (i, slot) in self.slots.iter().enumerate() {
                if slot.owner.load(Ordering::Relaxed) == NOBODY
                    && slot
                        .owner
                        .compare_exchange(NOBODY, me, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    crash_point!(BARRIER_CRASH_POINTS, "barrier: slot claimed");
                    self.in_use.fetch_max(i as u32 + 1, Ordering::AcqRel);
                    crash_point!(BARRIER_CRASH_POINTS, "barrier: slot counted");
                    return Some(slot);
                }
            }
            let now = shm::sync::now();
            if check.due(now) && self.reclaim_dead() {
                continue;
            }
            if deadline.is_some_and(|d| now >= d) {
                return None;
            }
            std::thread::sleep(check.wake_at(deadline).saturating_duration_since(now));
        }
    }

    /// Gives up a slot (this party's, or one taken from a dead party).
    fn leave(&self, slot: Option<&Slot>) {
        if let Some(slot) = slot {
            slot.word.store(EMPTY, Ordering::Release);
            crash_point!(BARRIER_CRASH_POINTS, "barrier: slot emptied");
            slot.owner.store(NOBODY, Ordering::Release);
            crash_point!(BARRIER_CRASH_POINTS, "barrier: slot freed");
        }
    }

    /// A waiter's periodic check, shared: at most one process checks per
    /// `CHECK_EVERY`, however many wait.
    fn check_parties(&self) {
        let now = shm::sync::monotonic_ns();
        let due = self.next_check.load(Ordering::Relaxed);
        if now < due
            || self
                .next_check
                .compare_exchange(
                    due,
                    now + CHECK_EVERY.as_nanos() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        crash_point!(BARRIER_CRASH_POINTS, "barrier: check scheduled");
        self.reclaim_dead();
    }

    /// Breaks the current generation if a party waiting in it died, and
    /// frees the slots of dead processes. True if a slot was freed.
    fn reclaim_dead(&self) -> bool {
        let mut freed = false;
        for slot in self.slots_in_use() {
            let owner = slot.owner.load(Ordering::Acquire);
            if owner == NOBODY || pid::is_running_bits(owner) {
                continue;
            }
            let state = self.state.load(Ordering::Acquire);
            let generation = generation_of(state);
            if state & BROKEN == 0
                && slot.word.load(Ordering::Acquire) == slot_word(generation, WAITING)
            {
                // A party of the gathering generation died.
                self.break_generation(Some(generation));
            }
            // Only one process takes it from the dead owner (who writes
            // nothing more), then frees it like its own.
            if slot
                .owner
                .compare_exchange(owner, me(), Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                crash_point!(BARRIER_CRASH_POINTS, "barrier: dead party's slot taken");
                self.leave(Some(slot));
                freed = true;
            }
        }
        freed
    }
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.load(Ordering::Acquire);
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .field("generation", &generation_of(state))
            .field("arrived", &arrived_of(state))
            .field("broken", &(state & BROKEN != 0))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `parties` threads through `rounds` generations of `barrier`;
    /// every wait must pass.
    fn run_generations(barrier: &Barrier, rounds: usize) {
        std::thread::scope(|s| {
            for _ in 0..barrier.parties() {
                s.spawn(|| {
                    for round in 0..rounds {
                        barrier
                            .wait_timeout(Duration::from_secs(10))
                            .unwrap_or_else(|e| panic!("round {round}: {e}"));
                    }
                });
            }
        });
    }

    #[test]
    fn generations_wrap_around_without_a_sentinel() {
        // The old barrier used u32::MAX as "no reset generation": its
        // waiters got Broken. Around both the old and the new wrap point,
        // every generation passes.
        for first in [
            u64::from(u32::MAX) - 2,
            GENERATION_MASK - 2,
            GENERATION_MASK,
        ] {
            let barrier = Barrier::starting_at(3, first);
            run_generations(&barrier, 6);
            assert_eq!(
                generation_of(barrier.state.load(Ordering::SeqCst)),
                (first + 6) & GENERATION_MASK
            );
        }
    }

    #[test]
    fn the_state_fields_do_not_overlap() {
        let state = (GENERATION_MASK << GENERATION_SHIFT) | ARRIVED_MASK;
        assert_eq!(generation_of(state), GENERATION_MASK);
        assert_eq!(arrived_of(state), (1 << ARRIVED_BITS) - 1);
        assert_eq!(state & (BROKEN | PREVIOUS_RELEASED | PREVIOUS_SETTLED), 0);
        assert_eq!(next_generation(GENERATION_MASK), 0);
        assert_eq!(previous_generation(0), GENERATION_MASK);
    }
}
