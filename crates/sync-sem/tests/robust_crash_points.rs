//! The robust semaphore's crash points, each in turn: a process is killed
//! (SIGKILL), or stopped (SIGSTOP), right after each shared store it makes
//! under the internal lock, in every scenario that reaches it. Then: no
//! permit lost or doubled (every permit comes back, except one the dead
//! process had given away on purpose, or one moved into it that it died
//! before adopting: that one stays counted, exactly once, under the test
//! process that acquired it), nobody waits past its deadline
//! while the stopped process holds the internal lock, and the semaphore
//! works. The list of points comes from the code
//! (`ROBUST_SEMAPHORE_CRASH_POINTS`); a point that no scenario reaches
//! fails the test.

use std::time::{Duration, Instant};

use daemon::{Child, JoinError, Process};
use shm::crash::{self, Action};
use shm::Shared;
use sync_sem::{AcquireError, RobustSemaphore, ROBUST_SEMAPHORE_CRASH_POINTS};
use testkit::{process_state, wait_stopped_or_exited, wait_until, GENEROUS};

const PERMITS: u32 = 3;
/// How late past its deadline a call may return on a loaded machine.
const SLACK: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    /// The armed process takes and gives back a permit, takes one and
    /// forgets it (gives it away), then releases one.
    Holder,
    /// Every permit is taken; the armed process waits for one, asleep,
    /// until one is given back.
    Sleeper,
    /// A holder of a permit is killed; the armed process reclaims it.
    Sweeper,
    /// A process is killed inside the internal lock half-way through a
    /// change; the armed process takes the lock over and completes it.
    Replayer,
    /// A permit acquired by the test is moved into the armed process,
    /// which adopts it (a change of two rows) and drops it.
    Adopter,
    /// As `Replayer`, the change left half-way being an adopt (two rows).
    AdoptReplayer,
}

const SCENARIOS: [Scenario; 6] = [
    Scenario::Holder,
    Scenario::Sleeper,
    Scenario::Sweeper,
    Scenario::Replayer,
    Scenario::Adopter,
    Scenario::AdoptReplayer,
];

/// The stores an adopt makes before its journal is armed: killed at one of
/// them, the adopt never happened and the permit is still counted under
/// its acquirer.
fn before_armed(point: &str) -> bool {
    let armed = ROBUST_SEMAPHORE_CRASH_POINTS
        .iter()
        .position(|&p| p == "robust semaphore: journal armed")
        .expect("the journal is armed at a crash point");
    ROBUST_SEMAPHORE_CRASH_POINTS[..armed].contains(&point)
}

/// Moves a permit this process acquired into a process that adopts it and
/// drops it, with `point` armed there.
fn adopter(s: &RobustSemaphore, point: &'static str, action: Action) -> Child<()> {
    let permit = s.acquire().unwrap();
    armed(point, action, move || {
        let mut permit = permit;
        // SAFETY: moved into this closure; the test never drops it.
        unsafe { permit.adopt() }.expect("the acquirer (the test) lives");
        drop(permit);
    })
}

/// The point at which `Replayer` kills the first process: inside the lock,
/// with the journal armed and nothing applied.
const HALF_WAY: &str = "robust semaphore: journal armed";

/// What became of the armed process.
#[derive(Debug, PartialEq)]
enum Fate {
    Killed,
    Stopped,
    Finished,
}

fn armed(point: &'static str, action: Action, body: impl FnOnce()) -> Child<()> {
    Process::new(move || {
        crash::arm(point, action);
        body();
    })
    // Dies with the test if the test fails while it is stopped.
    .daemon(true)
    .start()
    .unwrap()
}

/// Waits until the armed process stops or ends. While it is stopped (it
/// holds the internal lock: every point is inside it), checks that
/// `try_acquire` and `acquire_timeout` still answer on time, then resumes
/// it. Calls `then` before joining it.
fn fate_of(
    sem: &RobustSemaphore,
    mut child: Child<()>,
    context: &str,
    then: impl FnOnce(),
) -> Fate {
    if wait_stopped_or_exited(child.pid()) {
        // Checked from another process, so that a call that waits for the
        // stopped one fails the test instead of hanging it.
        let timeout = Duration::from_millis(50);
        let mut checker = Process::new(|| {
            let started = Instant::now();
            let tried = format!("{:?}", sem.try_acquire().map(drop));
            let tried_for = started.elapsed();
            let started = Instant::now();
            let timed = format!("{:?}", sem.acquire_timeout(timeout).map(drop));
            (tried, tried_for, timed, started.elapsed())
        })
        .daemon(true)
        .start()
        .unwrap();
        let checked = checker.join_timeout(GENEROUS);
        child.signal(libc::SIGCONT).unwrap();
        let (tried, tried_for, timed, timed_for) =
            checked.unwrap_or_else(|e| panic!("{context}: blocked by a stopped process: {e}"));
        assert_eq!(tried, "Err(WouldBlock)", "{context}: try_acquire");
        assert!(
            tried_for < SLACK,
            "{context}: try_acquire took {tried_for:?}"
        );
        assert_eq!(timed, "Err(TimedOut)", "{context}: acquire_timeout");
        assert!(
            timed_for >= timeout && timed_for < timeout + SLACK,
            "{context}: a {timeout:?} acquire_timeout took {timed_for:?}"
        );
        then();
        child
            .join_timeout(GENEROUS)
            .unwrap_or_else(|e| panic!("{context}: resumed process: {e}"));
        return Fate::Stopped;
    }
    then();
    match child.join_timeout(GENEROUS) {
        Err(JoinError::Signaled { signal: 9, .. }) => Fate::Killed,
        Ok(()) => Fate::Finished,
        Err(e) => panic!("{context}: the armed process failed: {e}"),
    }
}

/// Runs `scenario` with `point` armed; returns whether it was hit.
fn run(scenario: Scenario, point: &'static str, action: Action) -> bool {
    let context = format!("{point:?} ({action:?}) in {scenario:?}");
    let sem = Shared::new(RobustSemaphore::new(PERMITS)).unwrap();
    let s: &RobustSemaphore = &sem;
    // Permits given away for good by the armed process.
    let mut given_away = 0;
    let fate = match scenario {
        Scenario::Holder => {
            let child = armed(point, action, || {
                drop(s.acquire().unwrap());
                s.acquire().unwrap().forget();
                s.release().unwrap();
            });
            let fate = fate_of(s, child, &context, || {});
            if fate == Fate::Killed && point == "robust semaphore: row disowned" {
                // Died after forgetting, before releasing.
                given_away = 1;
            }
            fate
        }
        Scenario::Sleeper => {
            let mut mine: Vec<_> = (0..PERMITS).map(|_| s.acquire().unwrap()).collect();
            let one = mine.pop();
            let child = armed(point, action, || {
                drop(s.acquire_timeout(GENEROUS).expect("a permit given back"));
            });
            let pid = child.pid();
            // Asleep waiting for a permit, or stopped or dead at a point
            // before.
            wait_until("the armed process waits", || {
                !matches!(process_state(pid), Some(b'R'))
            });
            let fate = if process_state(pid) == Some(b'T') {
                // Stopped inside the internal lock: a permit can be given
                // back only once it is resumed.
                fate_of(s, child, &context, || drop(one))
            } else {
                drop(one);
                fate_of(s, child, &context, || {})
            };
            drop(mine);
            fate
        }
        Scenario::Sweeper => {
            let holder = Process::new(|| -> u8 {
                std::mem::forget(s.acquire().unwrap());
                testkit::park_until_killed();
                0
            })
            .start()
            .unwrap();
            wait_until("the holder holds", || s.value() == PERMITS - 1);
            holder.kill().unwrap();
            assert!(holder.join().is_err());
            let child = armed(point, action, || {
                s.reclaim();
            });
            fate_of(s, child, &context, || {})
        }
        Scenario::Replayer | Scenario::AdoptReplayer => {
            let half_way = match scenario {
                Scenario::Replayer => armed(HALF_WAY, Action::Kill, || {
                    drop(s.acquire().unwrap());
                }),
                _ => adopter(s, HALF_WAY, Action::Kill),
            };
            assert_eq!(fate_of(s, half_way, &context, || {}), Fate::Killed);
            let child = armed(point, action, || {
                drop(s.acquire().unwrap());
            });
            fate_of(s, child, &context, || {})
        }
        Scenario::Adopter => {
            let child = adopter(s, point, action);
            fate_of(s, child, &context, || {})
        }
    };
    // Every process but this one is gone: every permit comes back, but
    // for one given away on purpose, none twice.
    s.reclaim();
    // A permit moved into an adopter that was killed before its adopt was
    // journalled is still counted under this process, its acquirer, and
    // comes back when this process dies; otherwise it moved to the
    // adopter's row, and came back with the adopter's death or drop.
    let lent = s.held_by(shm::pid::current());
    let not_adopted = scenario == Scenario::Adopter && fate == Fate::Killed && before_armed(point);
    assert_eq!(
        lent,
        u32::from(not_adopted),
        "{context}: permits counted under the test process"
    );
    given_away += lent;
    assert_eq!(
        s.value(),
        PERMITS - given_away,
        "{context}: permits lost or doubled"
    );
    let all: Vec<_> = (0..PERMITS - given_away)
        .map(|_| {
            s.acquire_timeout(GENEROUS)
                .unwrap_or_else(|e| panic!("{context}: {e}"))
        })
        .collect();
    assert!(matches!(s.try_acquire(), Err(AcquireError::WouldBlock)));
    drop(all);
    assert_eq!(s.value(), PERMITS - given_away, "{context}");
    fate != Fate::Finished
}

fn every_point(action: Action) {
    testkit::every_crash_point(
        ROBUST_SEMAPHORE_CRASH_POINTS,
        &SCENARIOS,
        action,
        |scenario, point| run(scenario, point, action),
    );
}

#[test]
fn a_process_killed_at_any_crash_point_loses_and_doubles_no_permit() {
    every_point(Action::Kill);
}

#[test]
fn a_process_stopped_at_any_crash_point_holds_up_nobody_past_their_deadline() {
    every_point(Action::Stop);
}
