//! The world a loom model runs in: which process each thread plays, which
//! processes have died, who sleeps on which futex word, and the clock.
//!
//! Each loom thread plays one process: a model assigns it an
//! [`Identity`] with [`play`] before it touches a primitive (threads that
//! play one identity are threads of one process). A thread that calls
//! [`die`] and returns is a process killed at that point: what it holds
//! stays held, and from then on [`Identity::is_running`] says `false` for
//! it. A new process that reuses a dead one's pid is another identity with
//! that pid and a different start tag.
//!
//! A process can also die while one of its threads sleeps in a futex wait
//! (a waiter killed mid-wait): another thread of that process, having seen
//! it asleep with [`sleeping`], calls [`die`]. The sleeper then never runs
//! another instruction of the primitive: its wait ends by unwinding with
//! [`Gone`], which the model's thread catches (`std::panic::catch_unwind`).
//!
//! The futex model follows the kernel: one table of sleepers (keyed by the
//! word's address, as the kernel keys a futex by its page), guarded by one
//! lock that `wait` holds while it compares the word with the expected
//! value and goes to sleep, and that `wake` holds while it picks at most
//! `n` sleepers, first come first woken. Nothing else wakes a sleeper: no
//! spurious wake-ups, so a wake-up the protocol loses leaves a thread
//! asleep for ever, which loom reports as a deadlock.
//!
//! Time stands still except when a timed wait times out; then the clock
//! ([`now`]) jumps to that wait's deadline. When that happens is
//! [`Timers`]' choice, per execution.
//!
//! Every model execution starts from an empty world (loom's lazy statics
//! live for one execution).

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use loom::sync::{Condvar, Mutex};

use crate::identity::Identity;

/// When a timed futex wait (one with a deadline) times out in the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Timers {
    /// It sleeps until woken, or until a process dies that its thread has
    /// not yet timed out since: the model's stand-in for a waiter's
    /// periodic owner check, which only matters once somebody died. A
    /// wake-up lost between live processes is then a loom deadlock, and a
    /// waiter on a dead holder still gets to look. The default.
    #[default]
    OnDeath,
    /// It does not sleep at all (unless the word changed first, which
    /// returns as a wake-up): it yields to the other threads, the clock
    /// jumps to its deadline and it returns timed out. For models of
    /// timeouts; a waiter that re-waits in a loop then polls, so keep such
    /// models small (and their waits on a lock within one process, whose
    /// waits have no timer).
    AtOnce,
}

/// What loom sees: behind a loom mutex, so every look at it is a point
/// where loom may switch threads.
#[derive(Default)]
struct Kernel {
    dead: Vec<Identity>,
    deaths: u64,
    next_ticket: u64,
    sleepers: Vec<Sleeper>,
}

struct Sleeper {
    who: Identity,
    key: usize,
    ticket: u64,
    timed: bool,
    state: Sleep,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sleep {
    Asleep,
    Woken,
    TimedOut,
}

/// What loom does not see: set by the model, or changed as a function of
/// the schedule alone (the clock), so reading it is deterministic.
#[derive(Default)]
struct Setup {
    timers: Timers,
    clock: Duration,
    played: Vec<Identity>,
}

loom::lazy_static! {
    static ref KERNEL: Mutex<Kernel> = Mutex::new(Kernel::default());
    static ref CHANGED: Condvar = Condvar::new();
    static ref SETUP: std::sync::Mutex<Setup> = std::sync::Mutex::new(Setup::default());
}

loom::thread_local! {
    static ME: Cell<Option<Identity>> = Cell::new(None);
    static DEATHS_SEEN: Cell<u64> = Cell::new(0);
}

fn setup() -> std::sync::MutexGuard<'static, Setup> {
    SETUP
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn kernel() -> loom::sync::MutexGuard<'static, Kernel> {
    KERNEL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes the calling loom thread play process `me` from now on.
pub fn play(me: Identity) {
    ME.with(|cell| cell.set(Some(me)));
    let mut setup = setup();
    if !setup.played.contains(&me) {
        setup.played.push(me);
    }
}

/// The process the calling loom thread plays.
///
/// # Panics
///
/// If the thread has not called [`play`].
pub fn current_identity() -> Identity {
    ME.with(Cell::get)
        .expect("in a loom model, every thread must play a process: call shm::sync::model::play")
}

/// The calling thread's process dies here: whatever it holds stays held,
/// and [`Identity::is_running`] says `false` for it from now on. The
/// thread should return without touching a primitive again. Under
/// [`Timers::OnDeath`], the timers of every timed sleeper fire.
pub fn die() {
    let me = current_identity();
    let mut kernel = kernel();
    if !kernel.dead.contains(&me) {
        kernel.dead.push(me);
        kernel.deaths += 1;
    }
    if timers() == Timers::OnDeath {
        for sleeper in kernel.sleepers.iter_mut() {
            if sleeper.timed && sleeper.state == Sleep::Asleep {
                sleeper.state = Sleep::TimedOut;
            }
        }
    }
    CHANGED.notify_all();
}

/// The payload a futex wait unwinds with when the waiting thread's process
/// has died (see the module's documentation): the thread is gone.
#[derive(Debug)]
pub struct Gone;

/// How many threads of process `who` sleep in a futex wait now.
pub fn sleeping(who: Identity) -> usize {
    kernel()
        .sleepers
        .iter()
        .filter(|s| s.who == who && s.state == Sleep::Asleep)
        .count()
}

/// Ends the calling thread, whose process has died: it unwinds with
/// [`Gone`] (without running the panic hook). Call it without holding the
/// kernel's lock.
fn gone() -> ! {
    std::panic::resume_unwind(Box::new(Gone))
}

/// Whether process `id` runs: it has played and has not died.
pub fn is_running(id: Identity) -> bool {
    let played = setup().played.contains(&id);
    played && !kernel().dead.contains(&id)
}

/// Whether some process with this pid runs.
pub fn pid_is_running(pid: u32) -> bool {
    let candidates: Vec<Identity> = setup()
        .played
        .iter()
        .copied()
        .filter(|id| id.pid() == pid)
        .collect();
    let kernel = kernel();
    candidates.iter().any(|id| !kernel.dead.contains(id))
}

/// Chooses how timed waits end in this execution (call it first in the
/// model closure; [`Timers::OnDeath`] otherwise).
pub fn set_timers(timers: Timers) {
    setup().timers = timers;
}

fn timers() -> Timers {
    setup().timers
}

/// The model clock: a fixed origin plus the time timed-out waits have
/// jumped it forward in this execution.
pub fn now() -> Instant {
    origin() + setup().clock
}

/// The clock's origin, one instant for the whole test process so that
/// every execution computes the same deadlines. (A primitive that keeps
/// time as a number, as `CLOCK_MONOTONIC` nanoseconds, counts from here.)
pub fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Moves the clock forward to `deadline` (never back).
fn advance_to(deadline: Instant) {
    let at = deadline.saturating_duration_since(origin());
    let mut setup = setup();
    setup.clock = setup.clock.max(at);
}

/// A timed wait times out: the clock jumps to its deadline. Returns what
/// `Futex::wait` returns then (`false`: the deadline passed).
fn time_out(deadline: Instant, deaths: u64) -> bool {
    DEATHS_SEEN.with(|seen| seen.set(deaths));
    advance_to(deadline);
    now() < deadline
}

/// The model of `FUTEX_WAIT` on the word at `key`: sleeps if `holds()`
/// (the word still holds the expected value), checked under the table's
/// lock, until woken or timed out. Returns as `Futex::wait` does.
pub(crate) fn futex_wait(key: usize, holds: impl Fn() -> bool, deadline: Option<Instant>) -> bool {
    if deadline.is_some_and(|d| now() >= d) {
        return false;
    }
    let me = current_identity();
    let mut kernel = kernel();
    if kernel.dead.contains(&me) {
        drop(kernel);
        gone();
    }
    if !holds() {
        return true; // EAGAIN
    }
    if let Some(deadline) = deadline {
        let at_once = timers() == Timers::AtOnce;
        if at_once || kernel.deaths > DEATHS_SEEN.with(Cell::get) {
            let deaths = kernel.deaths;
            drop(kernel);
            if at_once {
                // The caller may poll in a loop: let the others run.
                loom::thread::yield_now();
            }
            return time_out(deadline, deaths);
        }
    }
    let ticket = kernel.next_ticket;
    kernel.next_ticket += 1;
    kernel.sleepers.push(Sleeper {
        who: me,
        key,
        ticket,
        timed: deadline.is_some(),
        state: Sleep::Asleep,
    });
    loop {
        kernel = CHANGED
            .wait(kernel)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let at = kernel
            .sleepers
            .iter()
            .position(|s| s.ticket == ticket)
            .expect("a sleeper stays in the table until it leaves");
        match kernel.sleepers[at].state {
            Sleep::Asleep => continue,
            Sleep::Woken => {
                kernel.sleepers.remove(at);
                if kernel.dead.contains(&me) {
                    drop(kernel);
                    gone();
                }
                return true;
            }
            Sleep::TimedOut => {
                kernel.sleepers.remove(at);
                if kernel.dead.contains(&me) {
                    drop(kernel);
                    gone();
                }
                let deaths = kernel.deaths;
                drop(kernel);
                let deadline = deadline.expect("only timed sleepers time out");
                return time_out(deadline, deaths);
            }
        }
    }
}

/// The model of `FUTEX_WAKE`: wakes the first `count` sleepers on `key`.
pub(crate) fn futex_wake(key: usize, count: u32) -> u32 {
    let mut kernel = kernel();
    let mut woken = 0;
    for sleeper in kernel.sleepers.iter_mut() {
        if woken == count {
            break;
        }
        if sleeper.key == key && sleeper.state == Sleep::Asleep {
            sleeper.state = Sleep::Woken;
            woken += 1;
        }
    }
    if woken > 0 {
        CHANGED.notify_all();
    }
    woken
}

/// How many spins a model [`Backoff`] makes before it is completed.
pub const SPINS: u32 = 1;

/// `crossbeam_utils::Backoff` for the model: completed after [`SPINS`]
/// spins or snoozes, which do nothing else.
///
/// Not `loom::thread::yield_now()`: loom does not run a thread that
/// yielded until the others have blocked or finished, so a spinning
/// waiter would only ever look again after the holder left its critical
/// section, and the path where the waiter goes to sleep on a held lock
/// (where wake-ups get lost) would never be explored. The loops that spin
/// are bounded by the backoff itself, so loom needs no yield to end them.
#[derive(Debug, Default)]
pub struct Backoff {
    step: Cell<u32>,
}

impl Backoff {
    /// A fresh backoff.
    pub fn new() -> Backoff {
        Backoff::default()
    }

    /// Starts over.
    pub fn reset(&self) {
        self.step.set(0);
    }

    /// One spin: counted, nothing else.
    pub fn spin(&self) {
        self.step.set(self.step.get() + 1);
    }

    /// One snooze: counted, nothing else.
    pub fn snooze(&self) {
        self.spin();
    }

    /// Whether the caller should stop spinning and sleep.
    pub fn is_completed(&self) -> bool {
        self.step.get() >= SPINS
    }
}
