//! [`Spin`]: how long a waiter spins before it sleeps on a futex word. One
//! policy for every primitive; each names its budget, measured on the
//! workload it serves (docs/benchmarks.md).
//!
//! Sleeping costs a system call each way and a cross-CPU wake takes tens
//! of microseconds, so a waiter whose wait will end soon does better to
//! spin. How soon is "soon" depends on what it waits for:
//!
//! - a lock's holder runs a short critical section: spin with exponential
//!   backoff, yielding at the end ([`Spin::snoozing`]);
//! - a semaphore's permits go round among more processes than CPUs:
//!   yielding hands the CPU to a peer that then contends for the same word
//!   (halving W4's throughput), so spin a few rounds without yielding
//!   ([`Spin::busy`]);
//! - an event's setter is another process that may be about to run on this
//!   very CPU: spin and yield for a fixed time ([`Spin::timed`]).
//!
//! Under `cfg(loom)` every budget is the model's few steps (timed spins
//! none: the model clock stands still), so the models explore the parking
//! path too.

use std::time::{Duration, Instant};

use crate::sync::Backoff;

/// Busy-wait rounds between two yields of a timed spin: each round is one
/// look at the word and one pause. Long enough to catch a store from
/// another CPU (a cache-line transfer, under a microsecond), short enough
/// that a peer waiting for this CPU gets it soon.
#[cfg(not(loom))]
const ROUNDS_PER_YIELD: u32 = 32;

/// How many times a backing-off timed spin doubles its pause (from one
/// spin hint to 32).
const BACKING_OFF_STEPS: u32 = 5;

/// A spin-then-park budget; see the [module documentation](self).
///
/// # Example
///
/// ```
/// use shm::spin::Spin;
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// let ready = AtomicBool::new(false);
/// let mut spin = Spin::busy(7);
/// while !ready.load(Ordering::Acquire) {
///     if !spin.spin_once() {
///         break; // the budget is spent: sleep on the futex word instead
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Spin {
    backoff: Backoff,
    budget: Budget,
    rounds: u32,
}

#[derive(Debug)]
enum Budget {
    /// crossbeam's schedule: pauses doubling, then yields, then done.
    Snoozing,
    /// This many backoff pauses, never yielding.
    Busy(u32),
    /// Pauses with a yield every `ROUNDS_PER_YIELD`, until the instant.
    Until(#[cfg_attr(loom, allow(dead_code))] Instant),
    /// As `Until`, but the pauses double (up to crossbeam's limit) instead
    /// of being one each.
    UntilBackingOff(#[cfg_attr(loom, allow(dead_code))] Instant),
}

impl Spin {
    /// Pauses doubling in length, then yields, about ten rounds in all
    /// (`crossbeam_utils::Backoff::snooze`): for a lock whose holder runs
    /// a short critical section.
    pub fn snoozing() -> Spin {
        Spin::with(Budget::Snoozing)
    }

    /// `rounds` pauses doubling in length, never yielding the CPU.
    pub fn busy(rounds: u32) -> Spin {
        Spin::with(Budget::Busy(rounds))
    }

    /// Pauses, yielding now and then, for `budget` from now, or until
    /// `deadline` if that is sooner.
    pub fn timed(budget: Duration, deadline: Option<Instant>) -> Spin {
        let until = Instant::now() + budget;
        Spin::with(Budget::Until(deadline.map_or(until, |d| d.min(until))))
    }

    /// As [`timed`](Spin::timed), but the pauses between two looks double
    /// (up to 32 spin hints) instead of being one each: for a waiter that
    /// reads a word another CPU writes at a high rate (a queue's position),
    /// so that its looks do not keep taking the line away from the writer.
    pub fn timed_backing_off(budget: Duration, deadline: Option<Instant>) -> Spin {
        let until = Instant::now() + budget;
        Spin::with(Budget::UntilBackingOff(
            deadline.map_or(until, |d| d.min(until)),
        ))
    }

    fn with(budget: Budget) -> Spin {
        Spin {
            backoff: Backoff::new(),
            budget,
            rounds: 0,
        }
    }

    /// Spins while `blocked()` holds and the budget allows: `true` once it
    /// no longer holds (go on without sleeping), `false` once the budget is
    /// spent with it still holding (the caller should then sleep).
    ///
    /// ```
    /// use shm::spin::Spin;
    ///
    /// let mut left = 3;
    /// assert!(Spin::busy(10).spin_while(|| { left -= 1; left > 0 }));
    /// assert!(!Spin::busy(2).spin_while(|| true));
    /// ```
    pub fn spin_while(&mut self, mut blocked: impl FnMut() -> bool) -> bool {
        while blocked() {
            if !self.spin_once() {
                return false;
            }
        }
        true
    }

    /// Spins one round if the budget allows; `false` once it is spent
    /// (the caller should then sleep).
    #[cfg(not(loom))]
    pub fn spin_once(&mut self) -> bool {
        match self.budget {
            Budget::Snoozing => {
                if self.backoff.is_completed() {
                    return false;
                }
                self.backoff.snooze();
            }
            Budget::Busy(rounds) => {
                if self.rounds >= rounds {
                    return false;
                }
                self.backoff.spin();
            }
            Budget::Until(until) | Budget::UntilBackingOff(until) => {
                if self.rounds > 0 && self.rounds.is_multiple_of(ROUNDS_PER_YIELD) {
                    std::thread::yield_now();
                    if Instant::now() >= until {
                        return false;
                    }
                }
                if matches!(self.budget, Budget::UntilBackingOff(_)) {
                    // 1, 2, 4, ... then 32 hints between two looks: few
                    // enough that a waiter whose word moves within a
                    // microsecond sees it soon after, many enough that its
                    // looks leave the writer's line alone (W9: 2.5x the
                    // throughput of one hint per look, the round trip the
                    // same).
                    for _ in 0..1u32 << self.rounds.min(BACKING_OFF_STEPS) {
                        std::hint::spin_loop();
                    }
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        self.rounds += 1;
        true
    }

    /// Under loom: the budget, cut to the model's few backoff steps; a
    /// timed spin none (the model clock stands still).
    #[cfg(loom)]
    pub fn spin_once(&mut self) -> bool {
        match self.budget {
            Budget::Until(_) | Budget::UntilBackingOff(_) => return false,
            Budget::Busy(rounds) if self.rounds >= rounds => return false,
            _ => {}
        }
        if self.backoff.is_completed() {
            return false;
        }
        self.backoff.spin();
        self.rounds += 1;
        true
    }
}
