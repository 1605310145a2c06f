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
    /// The barrier was broken: a party timed out, died while waiting, or
    /// called [`abort`](Barrier::abort), or [`reset`](Barrier::reset) ran
    /// while this party waited (Python's `BrokenBarrierError`).
    #[error("the barrier is broken (a party timed out, died, aborted, or it was reset)")]
    Broken,
    /// `wait_timeout` ran out of time; the barrier is now broken for
    /// everyone, as in Python.
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

    /// True for exactly one party per generation: the last to arrive.
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
        out.protocol::<Barrier>("Barrier v1");
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
            if parties == 0 {
                return Err(BarrierError::NoParties);
            }
            if parties > MAX_PARTIES {
                return Err(BarrierError::TooManyParties { max: MAX_PARTIES });
            }
            Ok(Barrier::starting_at(parties, 0))
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
                in_use: AtomicU32::new(0),
                _pad: 0,
                slots: Slot::table(),
            }
        }
    }

    /// Waits until all parties have arrived.
    pub fn wait(&self) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_until(None)
    }

    /// Waits at most `timeout`; on timeout the barrier breaks for everyone
    /// and this party gets [`BarrierError::TimedOut`] (unless its generation
    /// was released or broken at that very moment: then that outcome).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_until(shm::sync::now().checked_add(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<BarrierWaitResult, BarrierError> {
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
            if index + 1 == self.parties {
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
    /// [`BarrierError::Broken`] until [`reset`](Barrier::reset).
    pub fn abort(&self) {
        self.break_generation(None);
    }

    /// Returns the barrier to its initial, unbroken state. Parties waiting
    /// in it now get [`BarrierError::Broken`].
    pub fn reset(&self) {
        loop {
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

    /// How many parties wait in the current generation.
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
