//! [`Event`]: a flag processes wait on.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shm::{Futex, ShmSafe};

const SET: u32 = 1;
/// Some process may sleep on the word: `set` must wake.
const SLEEPERS: u32 = 1 << 31;

/// How long a waiter spins (yielding its CPU between checks) before it
/// sleeps in the kernel. A set on another CPU is seen within this window
/// without a sleep and a wake-up (about 40 µs here); when the setter needs
/// this very CPU, each yield lets it run.
pub const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(50);

/// Busy-wait checks between two yields: long enough to catch a set from
/// another CPU (a cache-line transfer, under a microsecond), short enough
/// that a setter waiting for this CPU gets it soon.
const SPINS_PER_YIELD: u32 = 32;

/// A flag, clear or set, that processes wait on: Python's
/// `multiprocessing.Event`.
///
/// [`wait`](Event::wait) returns at once while the flag is set and blocks
/// while it is clear; [`set`](Event::set) sets it and lets every waiter
/// through; [`clear`](Event::clear) clears it. Four bytes in shared memory.
///
/// `set`, `clear` and `is_set` never block and never wait for anyone: a
/// waiter killed mid-wait cannot disturb them or the other waiters (Python's
/// `Event` hangs there, CPython gh-75158).
///
/// # Example
///
/// The seed's traffic light: a car waits for green.
///
/// ```
/// use shm::Shared;
/// use std::time::Duration;
/// use sync_event::Event;
///
/// let green = Shared::new(Event::new())?;
/// let car = daemon::Process::new(|| green.wait_timeout(Duration::from_secs(10))).start()?;
/// green.set();
/// assert!(car.join()?, "the car saw green");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
#[derive(Debug, Default)]
pub struct Event {
    word: Futex,
}

// SAFETY: one futex word: plain data.
unsafe impl ShmSafe for Event {}

impl Event {
    /// A clear event.
    pub const fn new() -> Event {
        Event {
            word: Futex::new(0),
        }
    }

    /// An event that starts set.
    pub const fn new_set() -> Event {
        Event {
            word: Futex::new(SET),
        }
    }

    /// Whether the flag is set (Python's `is_set()`).
    #[inline]
    pub fn is_set(&self) -> bool {
        self.word.load(Ordering::Acquire) & SET != 0
    }

    /// Sets the flag and wakes every waiter. A system call only if some
    /// process sleeps on it.
    #[inline]
    pub fn set(&self) {
        // Always a release RMW, even when already set: what this process
        // wrote before `set` must be visible to whoever then sees the flag.
        let before = self.word.swap(SET, Ordering::Release);
        if before & SLEEPERS != 0 {
            self.word.wake_all();
        }
    }

    /// Clears the flag: waiters from now on block until the next `set`.
    #[inline]
    pub fn clear(&self) {
        self.word.fetch_and(!SET, Ordering::Release);
    }

    /// Blocks until the flag is set (Python's `wait()`).
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Blocks until the flag is set or `timeout` passes; returns the flag,
    /// as Python's `wait(timeout)` does. Never returns `false` early.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    /// Blocks until the flag is set or `deadline` (`None`: never) passes;
    /// returns the flag.
    #[inline]
    pub fn wait_until(&self, deadline: Option<Instant>) -> bool {
        self.is_set() || self.wait_contended(deadline)
    }

    #[cold]
    fn wait_contended(&self, deadline: Option<Instant>) -> bool {
        // Spin, yielding: on another CPU the setter is seen in a cache-line
        // transfer; on this CPU the yield lets it run.
        let started = Instant::now();
        let spin_until = deadline.map_or(started + SPIN_BEFORE_SLEEP, |d| {
            d.min(started + SPIN_BEFORE_SLEEP)
        });
        loop {
            for _ in 0..SPINS_PER_YIELD {
                if self.is_set() {
                    return true;
                }
                std::hint::spin_loop();
            }
            std::thread::yield_now();
            if Instant::now() >= spin_until {
                break;
            }
        }
        loop {
            let seen = self.word.load(Ordering::Acquire);
            if seen & SET != 0 {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            self.word.flag_and_wait(seen, SLEEPERS, deadline);
        }
    }
}
