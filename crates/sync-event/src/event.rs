//! [`Event`]: a flag processes wait on.

use std::time::{Duration, Instant};

use shm::futex::{Recheck, SLEEPERS};
use shm::spin::Spin;
use shm::sync::atomic::Ordering;
use shm::{crash_point, Futex, ShmSafe};

/// The names of the event's crash points (see `shm::crash`): `set` makes
/// one store, but the wake that follows it is a second step a death can
/// separate from it.
pub const EVENT_CRASH_POINTS: &[&str] = &["event: set stored"];

/// The flag.
const SET: u32 = 1;
/// The set generation, bits 1 to 30: bumped by every `set`. A waiter that
/// sees it move was let through by a set, even if a `clear` followed before
/// it woke (Python's `wait` returns True when notified).
const GENERATION: u32 = !(SET | SLEEPERS);
/// One step of the set generation.
const ONE_SET: u32 = 1 << 1;

/// How long a waiter spins (yielding its CPU between checks) before it
/// sleeps in the kernel. A set on another CPU is seen within this window
/// without a sleep and a wake-up (about 40 µs here); when the setter needs
/// this very CPU, each yield lets it run.
pub const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(50);

/// A flag, clear or set, that processes wait on: Python's
/// `multiprocessing.Event`.
///
/// [`wait`](Event::wait) returns at once while the flag is set and blocks
/// while it is clear; [`set`](Event::set) sets it and lets through every
/// process waiting at that moment, even if a [`clear`](Event::clear) follows
/// before the waiter wakes (as Python's `wait` returns True once notified);
/// `clear` clears it for waiters that arrive afterwards. Four bytes in
/// shared memory: the flag, a count of sets (so a sleeper can tell that a
/// set happened while it slept) and a sleepers bit.
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
/// use std::time::Duration;
/// use sync_event::Event;
///
/// let green = Event::shared()?;
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
unsafe impl ShmSafe for Event {
    fn describe_layout(out: &mut shm::layout::LayoutWriter) {
        out.protocol::<Event>("Event v1");
    }
}

impl Event {
    shm::const_unless_loom! {
        /// A clear event.
        pub const fn new() -> Event {
            Event {
                word: Futex::new(0),
            }
        }
    }

    /// A clear event in anonymous shared memory, which children forked
    /// afterwards share with this process: the one-line form of
    /// `Shared::new(Event::new())`. Python's `Event()`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sync_event::Event;
    ///
    /// let go = Event::shared()?;
    /// let child = daemon::Process::new(|| go.wait_timeout(Duration::from_secs(10))).start()?;
    /// go.set();
    /// assert!(child.join()?, "the child saw the parent's set");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn shared() -> shm::Result<shm::Shared<Event>> {
        shm::Shared::new(Event::new())
    }

    shm::const_unless_loom! {
        /// An event that starts set.
        pub const fn new_set() -> Event {
            Event {
                word: Futex::new(SET | ONE_SET),
            }
        }
    }

    /// Whether the flag is set (Python's `is_set()`).
    #[inline]
    pub fn is_set(&self) -> bool {
        self.word.load(Ordering::Acquire) & SET != 0
    }

    /// Whether some process may be asleep waiting for the flag (the word's
    /// sleepers bit: set by a waiter before it sleeps, cleared by the `set`
    /// that wakes; it may stay set a moment after the last waiter left).
    /// Reading it changes nothing (for tools such as `procsync inspect`).
    ///
    /// ```
    /// let event = sync_event::Event::new();
    /// assert!(!event.has_sleepers());
    /// ```
    pub fn has_sleepers(&self) -> bool {
        self.word.load(Ordering::Relaxed) & SLEEPERS != 0
    }

    /// Sets the flag and lets through every process waiting now, even one
    /// that wakes only after a later [`clear`](Event::clear). One
    /// compare-and-swap (repeated only if another process changed the word
    /// in between); a system call only if some process sleeps on it.
    #[inline]
    pub fn set(&self) {
        shm::placement::check(self, "sync_event::Event", "Event::shared()");
        // Always a release RMW, even when already set: what this process
        // wrote before `set` must be visible to whoever then sees the flag.
        // It bumps the set generation and clears the sleepers bit (a woken
        // sleeper that goes back to sleep sets it again).
        let mut seen = self.word.load(Ordering::Relaxed);
        loop {
            let next = (seen.wrapping_add(ONE_SET) & GENERATION) | SET;
            match self
                .word
                .compare_exchange_weak(seen, next, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => seen = now,
            }
        }
        crash_point!(EVENT_CRASH_POINTS, "event: set stored");
        if seen & SLEEPERS != 0 {
            self.word.wake_all();
        }
    }

    /// Clears the flag: processes that start waiting from now on block
    /// until the next `set`. A process already waiting when a `set` came is
    /// let through all the same.
    #[inline]
    pub fn clear(&self) {
        self.word.fetch_and(!SET, Ordering::Release);
    }

    /// Blocks until the flag is set (Python's `wait()`).
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Blocks until the flag is set or `timeout` passes. Returns `true` if
    /// the flag was set or a `set` let this waiter through (even if a
    /// `clear` followed), `false` on timeout, as Python's `wait(timeout)`
    /// does. Never returns `false` early.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(shm::sync::now().checked_add(timeout))
    }

    /// Blocks until the flag is set, or a `set` comes, or `deadline`
    /// (`None`: never) passes; `true` unless the deadline passed first.
    #[inline]
    pub fn wait_until(&self, deadline: Option<Instant>) -> bool {
        shm::placement::check(self, "sync_event::Event", "Event::shared()");
        let start = self.word.load(Ordering::Acquire);
        start & SET != 0 || self.wait_contended(start, deadline)
    }

    #[cold]
    fn wait_contended(&self, start: u32, deadline: Option<Instant>) -> bool {
        // Let through by a set since `start` (the flag was clear then): the
        // flag is set now, or the set generation moved (set, then clear).
        let let_through = |word: u32| word & SET != 0 || (word ^ start) & GENERATION != 0;
        if self.spin_for(let_through, deadline) {
            return true;
        }
        // A setter killed between its store and its wake leaves the flag
        // set and us asleep: look again now and then.
        let mut recheck = Recheck::new();
        loop {
            let seen = self.word.load(Ordering::Acquire);
            if let_through(seen) {
                return true;
            }
            if deadline.is_some_and(|d| shm::sync::now() >= d) {
                return false;
            }
            self.word
                .flag_and_wait(seen, SLEEPERS, recheck.wake_at(deadline));
        }
    }

    /// Spins, yielding, for [`SPIN_BEFORE_SLEEP`] at most (`shm::spin`'s
    /// timed budget): true if the word let the waiter through meanwhile. On
    /// another CPU the setter is seen in a cache-line transfer; on this CPU
    /// the yield lets it run.
    fn spin_for(&self, let_through: impl Fn(u32) -> bool, deadline: Option<Instant>) -> bool {
        let mut spin = Spin::timed(SPIN_BEFORE_SLEEP, deadline);
        loop {
            if let_through(self.word.load(Ordering::Acquire)) {
                return true;
            }
            if !spin.spin_once() {
                return false;
            }
        }
    }
}
