//! [`Barrier`]: wait until every party has arrived.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shm::{pid, Futex, ShmSafe};
use sync_lock::{OwnerCheck, RawLock};

/// How many waiting parties a barrier watches for death. With more parties
/// than this, the excess still wait correctly, but a death among them is
/// noticed only through the others' timeouts.
pub const MAX_TRACKED_PARTIES: usize = 64;

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
/// # Example
///
/// ```
/// use shm::Shared;
/// use std::time::Duration;
/// use sync_event::Barrier;
///
/// let start = Shared::new(Barrier::new(3)?)?;
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
#[derive(Debug)]
pub struct Barrier {
    parties: u32,
    /// The generation; bumped when a generation is released or reset.
    /// Waiters sleep on it.
    generation: Futex,
    /// 1 while the current generation is broken.
    broken: AtomicU32,
    /// The last generation that ended by `reset` while parties waited.
    reset_generation: AtomicU32,
    /// Parties arrived in the current generation.
    arrived: AtomicU32,
    /// Serialises arrivals, releases and breaks.
    guard: RawLock,
    /// Pids of the waiting parties of the current generation.
    waiting: [AtomicU32; MAX_TRACKED_PARTIES],
}

// SAFETY: a repr(C) struct of atomics and integers: plain data.
unsafe impl ShmSafe for Barrier {}

/// Holds the barrier's guard; unlocks on drop.
struct Held<'a>(&'a RawLock);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // SAFETY: the acquisition made in `Barrier::lock`.
        unsafe { self.0.unlock() };
    }
}

impl Barrier {
    /// A barrier for `parties` processes; `parties == 0` is
    /// [`BarrierError::NoParties`].
    pub const fn new(parties: u32) -> Result<Barrier, BarrierError> {
        if parties == 0 {
            return Err(BarrierError::NoParties);
        }
        Ok(Barrier {
            parties,
            generation: Futex::new(0),
            broken: AtomicU32::new(0),
            reset_generation: AtomicU32::new(u32::MAX),
            arrived: AtomicU32::new(0),
            guard: RawLock::new(),
            waiting: [const { AtomicU32::new(0) }; MAX_TRACKED_PARTIES],
        })
    }

    /// Waits until all parties have arrived.
    pub fn wait(&self) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_until(None)
    }

    /// Waits at most `timeout`; on timeout the barrier breaks for everyone
    /// and this party gets [`BarrierError::TimedOut`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<BarrierWaitResult, BarrierError> {
        let held = self.lock();
        if self.broken.load(Ordering::Relaxed) != 0 {
            return Err(BarrierError::Broken);
        }
        let generation = self.generation.load(Ordering::Relaxed);
        let index = self.arrived.load(Ordering::Relaxed);
        if index + 1 == self.parties {
            // The last to arrive releases the generation.
            self.arrived.store(0, Ordering::Relaxed);
            self.clear_waiting();
            self.generation
                .store(generation.wrapping_add(1), Ordering::Release);
            drop(held);
            self.generation.wake_all();
            return Ok(BarrierWaitResult {
                index,
                leader: true,
            });
        }
        self.arrived.store(index + 1, Ordering::Relaxed);
        if let Some(slot) = self.waiting.get(index as usize) {
            slot.store(pid::current(), Ordering::Relaxed);
        }
        drop(held);

        let mut check = OwnerCheck::starting_soon();
        loop {
            if let Some(outcome) = self.outcome(generation) {
                return outcome.map(|()| BarrierWaitResult {
                    index,
                    leader: false,
                });
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                let held = self.lock();
                // Released or broken at the last moment?
                if let Some(outcome) = self.outcome(generation) {
                    return outcome.map(|()| BarrierWaitResult {
                        index,
                        leader: false,
                    });
                }
                self.break_generation(held);
                return Err(BarrierError::TimedOut);
            }
            if check.due(now) {
                let held = self.lock();
                if self.outcome(generation).is_none() && self.a_waiter_died() {
                    self.break_generation(held);
                }
                continue;
            }
            if self.broken.load(Ordering::Acquire) == 0 {
                self.generation
                    .wait(generation, Some(check.wake_at(deadline)));
            }
        }
    }

    /// `None` while generation `generation` is still gathering.
    fn outcome(&self, generation: u32) -> Option<Result<(), BarrierError>> {
        let now = self.generation.load(Ordering::Acquire);
        if now == generation {
            return (self.broken.load(Ordering::Acquire) != 0).then_some(Err(BarrierError::Broken));
        }
        if self.reset_generation.load(Ordering::Acquire) == generation {
            Some(Err(BarrierError::Broken))
        } else {
            Some(Ok(()))
        }
    }

    /// Breaks the barrier: current and future waiters get
    /// [`BarrierError::Broken`] until [`reset`](Barrier::reset).
    pub fn abort(&self) {
        let held = self.lock();
        self.break_generation(held);
    }

    /// Returns the barrier to its initial, unbroken state. Parties waiting
    /// in it now get [`BarrierError::Broken`].
    pub fn reset(&self) {
        let held = self.lock();
        let generation = self.generation.load(Ordering::Relaxed);
        if self.arrived.load(Ordering::Relaxed) > 0 && self.broken.load(Ordering::Relaxed) == 0 {
            self.reset_generation.store(generation, Ordering::Release);
        }
        self.arrived.store(0, Ordering::Relaxed);
        self.clear_waiting();
        self.broken.store(0, Ordering::Release);
        self.generation
            .store(generation.wrapping_add(1), Ordering::Release);
        drop(held);
        self.generation.wake_all();
    }

    /// How many parties wait in the current generation.
    pub fn n_waiting(&self) -> u32 {
        if self.is_broken() {
            0
        } else {
            self.arrived.load(Ordering::Relaxed)
        }
    }

    /// The number of parties the barrier was made for.
    pub fn parties(&self) -> u32 {
        self.parties
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire) != 0
    }

    fn lock(&self) -> Held<'_> {
        // The guard protects only single-store updates, so a holder that
        // died inside leaves nothing half-done: the report needs no repair.
        let _ = self.guard.lock_until(None);
        Held(&self.guard)
    }

    fn break_generation(&self, held: Held<'_>) {
        self.broken.store(1, Ordering::Release);
        self.arrived.store(0, Ordering::Relaxed);
        self.clear_waiting();
        drop(held);
        self.generation.wake_all();
    }

    fn clear_waiting(&self) {
        for slot in &self.waiting {
            slot.store(0, Ordering::Relaxed);
        }
    }

    fn a_waiter_died(&self) -> bool {
        self.waiting.iter().any(|slot| {
            let pid = slot.load(Ordering::Relaxed);
            pid != 0 && !pid::is_running(pid)
        })
    }
}
