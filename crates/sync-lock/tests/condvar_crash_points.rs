//! The condvar's crash points, each in turn: a waiter or a notifier is
//! killed (SIGKILL), or stopped (SIGSTOP), right after each shared store it
//! makes (a waiter's slot claimed, entered, withdrawn, freed; a notifier's
//! choice and its sequence bump). The others must go on: notifiers never
//! wait, every live waiter a notify chose wakes (within the sleepers'
//! re-check if the notifier died before waking it), and afterwards
//! `notify(1)` ends at least one wait (a dead waiter is passed over) and at
//! most one. The list of points comes from the code
//! (`CONDVAR_CRASH_POINTS`); a point no scenario reaches fails the test.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use daemon::{Child, JoinError, Process};
use shm::crash::{self, Action};
use shm::{Shared, ShmSafe};
use sync_lock::{Condvar, Mutex, TryLockError, CONDVAR_CRASH_POINTS};
use testkit::{process_state, wait_stopped_or_exited, wait_until, GENEROUS};

/// The timeout of waits that are meant to time out.
const SHORT: Duration = Duration::from_millis(150);
/// How late a wait may end on a loaded machine.
const SLACK: Duration = Duration::from_secs(1);

#[derive(ShmSafe)]
#[repr(C)]
struct Room {
    lock: Mutex<u32>,
    changed: Condvar,
    /// Waits begun: counted under the lock, just before `wait`.
    waiting: AtomicU32,
}

#[derive(Clone, Copy, Debug)]
enum Scenario {
    /// A waits (no timeout to speak of) behind another waiter B; then a
    /// `notify_all`.
    Waiter,
    /// A waits with a short timeout behind B and withdraws; then a
    /// `notify(1)`, which must end B's wait.
    TimedOut,
    /// B sleeps; A notifies it; then a second notify from elsewhere.
    Notifier,
    /// D waits and is killed, then B waits; A's `notify(1)` passes D over
    /// and must end B's wait.
    DeadWaiter,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario::Waiter,
    Scenario::TimedOut,
    Scenario::Notifier,
    Scenario::DeadWaiter,
];

/// A wait's outcome: whether it was notified, and how long it took.
type Outcome = (bool, Duration);

fn wait_in(room: &Room, timeout: Duration) -> Outcome {
    let guard = room.lock.lock().unwrap_or_else(|d| d.into_inner());
    room.waiting.fetch_add(1, Ordering::SeqCst);
    let started = Instant::now();
    let (guard, result) = room
        .changed
        .wait_timeout(guard, timeout)
        .unwrap_or_else(|d| d.into_inner());
    drop(guard);
    (!result.timed_out(), started.elapsed())
}

fn waiter(room: &Room, timeout: Duration) -> Child<Outcome> {
    Process::new(move || wait_in(room, timeout))
        .start()
        .unwrap()
}

/// Whether process `pid` is stopped or gone.
fn halted(pid: shm::pid::Pid) -> bool {
    !matches!(process_state(pid), Some(b'R' | b'S' | b'D'))
}

/// Waits until `count` waits have begun and their waiters have let go of
/// the lock (so all are inside `wait`), or until `armed` halted.
fn inside(room: &Room, count: u32, armed: Option<shm::pid::Pid>) {
    wait_until("the waiters are inside wait", || {
        if armed.is_some_and(halted) {
            return true;
        }
        room.waiting.load(Ordering::SeqCst) == count
            && match room.lock.try_lock() {
                Ok(_) | Err(TryLockError::OwnerDied(_)) => true,
                Err(_) => false,
            }
    });
}

/// What became of the armed process.
#[derive(Debug)]
enum Fate {
    Killed,
    Stopped,
    Finished,
}

/// Starts the armed process: `point` armed with `action`, then `body`.
fn armed(point: &'static str, action: Action, body: impl FnOnce() -> Outcome) -> Child<Outcome> {
    Process::new(move || {
        crash::arm(point, action);
        body()
    })
    // Killed, not waited for, if the test fails while it is stopped.
    .daemon(true)
    .start()
    .unwrap()
}

/// Waits until the armed process is stopped (left stopped) or gone.
fn fate_of(party: &mut Child<Outcome>) -> Fate {
    if wait_stopped_or_exited(party.pid()) {
        return Fate::Stopped;
    }
    match party.join_timeout(GENEROUS) {
        Err(JoinError::Signaled { signal: 9, .. }) => Fate::Killed,
        Ok(_) => Fate::Finished,
        Err(e) => panic!("the armed process failed: {e}"),
    }
}

/// Resumes a stopped armed process and joins it.
fn resume(
    fate: &Fate,
    mut party: Child<Outcome>,
    then: impl FnOnce(),
    context: &str,
) -> Option<Outcome> {
    match fate {
        Fate::Stopped => {
            party.signal(libc::SIGCONT).unwrap();
            then();
            Some(
                party
                    .join_timeout(GENEROUS)
                    .unwrap_or_else(|e| panic!("{context}: resumed: {e}")),
            )
        }
        _ => None,
    }
}

/// Joins a wait that must end, notified, within `SLACK` of now.
fn notified_on_time(party: Child<Outcome>, context: &str) {
    let mut party = party;
    let started = Instant::now();
    let (notified, _) = party
        .join_timeout(GENEROUS)
        .unwrap_or_else(|e| panic!("{context}: a waiter failed: {e}"));
    let late = started.elapsed();
    assert!(notified, "{context}: a waiter timed out instead");
    assert!(late <= SLACK, "{context}: a waiter woke {late:?} late");
}

/// Notifies from this process; a notify must never wait for anyone.
fn notify(room: &Room, n: u32, context: &str) -> u32 {
    let started = Instant::now();
    let chosen = room.changed.notify(n);
    assert!(
        started.elapsed() < SLACK,
        "{context}: notify took {:?}",
        started.elapsed()
    );
    chosen
}

/// Runs `scenario` with `point` armed; returns whether the point was hit.
fn run(scenario: Scenario, point: &'static str, action: Action) -> bool {
    let context = format!("{point:?} ({action:?}) in {scenario:?}");
    let room = Shared::new(Room {
        lock: Mutex::new(0),
        changed: Condvar::new(),
        waiting: AtomicU32::new(0),
    })
    .unwrap();
    let r: &Room = &room;
    // Waiters killed so far: each may leave one grant for a later wait.
    let mut killed = 0;
    let fate = match scenario {
        Scenario::Waiter | Scenario::TimedOut => {
            let other = waiter(r, GENEROUS);
            inside(r, 1, None);
            let timeout = match scenario {
                Scenario::Waiter => GENEROUS,
                _ => Duration::from_millis(20),
            };
            let mut a = armed(point, action, move || wait_in(r, timeout));
            let pid = a.pid();
            inside(r, 2, Some(pid));
            if let Scenario::TimedOut = scenario {
                // Until A has withdrawn (or stopped or died on the way).
                wait_until("the armed waiter times out", || halted(pid));
            }
            // Halted already (stopped or killed on the way in, or after
            // withdrawing), or still waiting until the notify below.
            let early = halted(pid).then(|| fate_of(&mut a));
            match scenario {
                Scenario::Waiter => {
                    notify(r, u32::MAX, &context);
                }
                _ => {
                    notify(r, 1, &context);
                }
            }
            let fate = early.unwrap_or_else(|| fate_of(&mut a));
            // A stopped waiter may hold the lock (stopped right after
            // entering): the other wakes but relocks only once it goes on.
            // A waiter stopped before it entered still held the mutex: its
            // wait had not begun (as with std, a notify that does not take
            // the mutex may miss it), so it gets one more notify_all once
            // resumed and inside (or done: the lock is free either way).
            let began = point != "condvar: slot claimed";
            let mine = resume(
                &fate,
                a,
                || {
                    inside(r, 2, None);
                    r.changed.notify_all();
                },
                &context,
            );
            notified_on_time(other, &context);
            if let Some((notified, _)) = mine {
                if let Scenario::Waiter = scenario {
                    assert!(
                        notified || !began,
                        "{context}: the armed waiter missed notify_all"
                    );
                }
            }
            if let Fate::Killed = fate {
                killed += 1;
            }
            fate
        }
        Scenario::Notifier => {
            let other = waiter(r, GENEROUS);
            inside(r, 1, None);
            wait_until("the waiter sleeps", || {
                process_state(other.pid()) == Some(b'S')
            });
            // The outcome says whether it chose one waiter.
            let mut a = armed(point, action, move || {
                (r.changed.notify(1) == 1, Duration::ZERO)
            });
            let fate = fate_of(&mut a);
            // A notify chose the waiter: it wakes within its re-check, or
            // at the next notify's wake, while the first notifier is dead
            // or still stopped.
            notify(r, 1, &context);
            notified_on_time(other, &context);
            if let Some((chose_one, _)) = resume(&fate, a, || {}, &context) {
                assert!(chose_one, "{context}: the resumed notifier");
            }
            fate
        }
        Scenario::DeadWaiter => {
            let dead = waiter(r, GENEROUS);
            inside(r, 1, None);
            dead.kill().unwrap();
            assert!(dead.join().is_err(), "{context}: the waiter was killed");
            let other = waiter(r, GENEROUS);
            inside(r, 2, None);
            wait_until("the live waiter sleeps", || {
                process_state(other.pid()) == Some(b'S')
            });
            let mut a = armed(point, action, move || {
                (r.changed.notify(1) == 1, Duration::ZERO)
            });
            let fate = fate_of(&mut a);
            // Whatever became of A, the live waiter is not left asleep:
            // a further notify ends it if A did not.
            if !matches!(fate, Fate::Finished) {
                notify(r, 1, &context);
            }
            notified_on_time(other, &context);
            if let Some((chose, _)) = resume(&fate, a, || {}, &context) {
                // Resumed after the live waiter was ended by our notify:
                // A may find nobody left.
                let _ = chose;
            }
            fate
        }
    };
    // Afterwards: notify(1) ends exactly one of two fresh waits (a killed
    // waiter's slot is passed over, not spent). The other times out: a
    // second wake (a grant left by a dead party) would end it at once, well
    // inside its timeout.
    room.waiting.store(0, Ordering::SeqCst);
    let fresh = [waiter(r, SHORT), waiter(r, SHORT)];
    inside(r, 2, None);
    notify(r, 1, &context);
    let ended = fresh
        .into_iter()
        .map(|mut p| {
            let (notified, waited) = p
                .join_timeout(GENEROUS)
                .unwrap_or_else(|e| panic!("{context}: a fresh waiter failed: {e}"));
            assert!(waited <= SHORT + SLACK, "{context}: {waited:?}");
            notified
        })
        .filter(|&notified| notified)
        .count();
    assert_eq!(
        ended, 1,
        "{context}: notify(1) ended {ended} waits with {killed} waiters killed"
    );
    !matches!(fate, Fate::Finished)
}

fn every_point(action: Action) {
    testkit::every_crash_point(
        CONDVAR_CRASH_POINTS,
        &SCENARIOS,
        action,
        |scenario, point| run(scenario, point, action),
    );
}

#[test]
fn a_waiter_or_notifier_killed_at_any_crash_point_leaves_no_live_waiter_asleep() {
    every_point(Action::Kill);
}

#[test]
fn a_waiter_or_notifier_stopped_at_any_crash_point_holds_up_no_notifier() {
    every_point(Action::Stop);
}
