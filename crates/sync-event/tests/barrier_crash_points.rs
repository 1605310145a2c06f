//! The barrier's crash points, each in turn: a party is killed (SIGKILL),
//! or stopped (SIGSTOP), right after each shared store of the barrier's
//! multi-store paths, in every scenario that reaches it. The others must
//! return by their timeouts with exact outcomes (one generation: all
//! released or none), and the barrier must work after a reset. The list of
//! points comes from the code (`BARRIER_CRASH_POINTS`); a point that no
//! scenario reaches fails the test.

use std::time::{Duration, Instant};

use daemon::{Child, JoinError, Process};
use shm::crash::{self, Action};
use shm::Shared;
use sync_event::{Barrier, BarrierError, BarrierWaitResult, BARRIER_CRASH_POINTS};
use testkit::{wait_stopped_or_exited, wait_until, GENEROUS};

const PARTIES: u32 = 3;
/// The timeout of parties that may have to wait for a party that never
/// comes.
const SHORT: Duration = Duration::from_millis(150);
/// How late past its timeout a party may return on a loaded machine.
const SLACK: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
enum Scenario {
    /// The armed party arrives first; two others follow, the last
    /// releasing.
    First,
    /// Two parties wait; the armed one arrives last and releases them.
    Leader,
    /// As `Leader`, but the two waiters are stopped before the armed party
    /// releases them, and wake only after a later generation has passed.
    LeaderThenMore,
    /// One party waits; the armed one arrives, times out, breaks it.
    Timeout,
    /// The barrier is broken; the armed party resets it.
    Reset,
    /// A party is killed while waiting; the armed one arrives, notices the
    /// death, breaks the generation and frees the dead party's slot.
    Reclaimer,
    /// Two parties wait; the armed one arrives last with an action, which
    /// it runs (holding its slot, counted in) before it releases them.
    ActionLeader,
}

const SCENARIOS: [Scenario; 7] = [
    Scenario::First,
    Scenario::Leader,
    Scenario::LeaderThenMore,
    Scenario::Timeout,
    Scenario::Reset,
    Scenario::Reclaimer,
    Scenario::ActionLeader,
];

/// A wait's outcome as a child sends it back.
type Outcome = (String, Duration);

fn describe(result: Result<BarrierWaitResult, BarrierError>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(BarrierError::Broken) => "broken".into(),
        Err(BarrierError::TimedOut) => "timed out".into(),
        Err(other) => other.to_string(),
    }
}

fn timed_wait(barrier: &Barrier, timeout: Duration) -> Outcome {
    let started = Instant::now();
    (describe(barrier.wait_timeout(timeout)), started.elapsed())
}

fn party(barrier: &Barrier, timeout: Duration) -> Child<Outcome> {
    Process::new(move || timed_wait(barrier, timeout))
        .start()
        .unwrap()
}

/// What became of the armed party.
#[derive(Debug)]
enum Fate {
    /// Killed at the point.
    Killed,
    /// Stopped at the point, then resumed, then finished with this.
    Stopped(Option<Outcome>),
    /// Never reached the point.
    Finished(Option<Outcome>),
}

impl Fate {
    fn hit(&self) -> bool {
        !matches!(self, Fate::Finished(_))
    }

    /// The armed party's own outcome, if it finished a wait.
    fn outcome(&self) -> Option<&Outcome> {
        match self {
            Fate::Stopped(o) | Fate::Finished(o) => o.as_ref(),
            Fate::Killed => None,
        }
    }
}

/// Starts the armed party: `point` armed with `action`, then `body`.
fn armed<'a>(
    point: &'static str,
    action: Action,
    body: impl FnOnce() -> Option<Outcome> + 'a,
) -> Child<Option<Outcome>> {
    Process::new(move || {
        crash::arm(point, action);
        body()
    })
    .start()
    .unwrap()
}

/// Waits until the armed party is stopped (resuming it) or gone.
fn fate_of(mut party: Child<Option<Outcome>>) -> Fate {
    if wait_stopped_or_exited(party.pid()) {
        party.signal(libc::SIGCONT).unwrap();
        return Fate::Stopped(party.join_timeout(GENEROUS).expect("resumed party"));
    }
    match party.join_timeout(GENEROUS) {
        Err(JoinError::Signaled { signal: 9, .. }) => Fate::Killed,
        Ok(outcome) => Fate::Finished(outcome),
        Err(e) => panic!("the armed party failed: {e}"),
    }
}

/// Joins a party that must return within `timeout` (plus slack).
fn join_on_time(party: Child<Outcome>, timeout: Duration, context: &str) -> String {
    let mut party = party;
    let (outcome, waited) = party
        .join_timeout(GENEROUS + timeout)
        .unwrap_or_else(|e| panic!("{context}: a party hung: {e}"));
    assert!(
        waited <= timeout + SLACK,
        "{context}: returned {waited:?} after a {timeout:?} timeout"
    );
    outcome
}

fn ok(outcome: &str) -> bool {
    outcome == "ok"
}

/// Runs `scenario` with `point` armed; returns whether the point was hit.
fn run(scenario: Scenario, point: &'static str, action: Action) -> bool {
    let context = format!("{point:?} ({action:?}) in {scenario:?}");
    let barrier = Shared::new(Barrier::new(PARTIES).unwrap()).unwrap();
    let b: &Barrier = &barrier;
    let fate = match scenario {
        Scenario::First => {
            let armed = armed(point, action, || Some(timed_wait(b, GENEROUS)));
            let pid = armed.pid();
            // Until it waits, or stops or dies before.
            wait_until("the armed party arrives", || {
                b.n_waiting() == 1 || !matches!(testkit::process_state(pid), Some(b'R' | b'S'))
            });
            let others = [party(b, SHORT), party(b, SHORT)];
            let outcomes: Vec<String> = others
                .into_iter()
                .map(|p| join_on_time(p, SHORT, &context))
                .collect();
            let fate = fate_of(armed);
            // One generation: all released or none.
            assert_eq!(
                ok(&outcomes[0]),
                ok(&outcomes[1]),
                "{context}: {outcomes:?}"
            );
            if let Some((mine, _)) = fate.outcome() {
                assert_eq!(
                    ok(mine),
                    ok(&outcomes[0]),
                    "{context}: {mine} vs {outcomes:?}"
                );
            }
            fate
        }
        Scenario::Leader => {
            let others = [party(b, GENEROUS), party(b, GENEROUS)];
            wait_until("two parties wait", || b.n_waiting() == 2);
            let armed = armed(point, action, || Some(timed_wait(b, GENEROUS)));
            // Released by the armed party's arrival, whatever becomes of it
            // after: told even while it is stopped.
            for p in others {
                assert_eq!(join_on_time(p, Duration::ZERO, &context), "ok", "{context}");
            }
            let fate = fate_of(armed);
            if let Some((mine, _)) = fate.outcome() {
                assert_eq!(mine, "ok", "{context}");
            }
            fate
        }
        Scenario::LeaderThenMore => {
            let others = [party(b, GENEROUS), party(b, GENEROUS)];
            wait_until("two parties wait", || b.n_waiting() == 2);
            for p in &others {
                p.signal(libc::SIGSTOP).unwrap();
                assert!(wait_stopped_or_exited(p.pid()));
            }
            let armed = armed(point, action, || Some(timed_wait(b, GENEROUS)));
            // Released by the armed party (even if it died or stopped right
            // after): a new generation gathers, while A and the two
            // released parties are away.
            let pid = armed.pid();
            wait_until("the next generation", || {
                b.n_waiting() == 0 && !matches!(testkit::process_state(pid), Some(b'R' | b'S'))
            });
            let next = [party(b, GENEROUS), party(b, GENEROUS)];
            assert!(
                b.wait_timeout(GENEROUS).is_ok(),
                "{context}: the next generation"
            );
            for p in next {
                assert_eq!(join_on_time(p, GENEROUS, &context), "ok", "{context}");
            }
            for p in &others {
                p.signal(libc::SIGCONT).unwrap();
            }
            for p in others {
                assert_eq!(join_on_time(p, GENEROUS, &context), "ok", "{context}");
            }
            let fate = fate_of(armed);
            if let Some((mine, _)) = fate.outcome() {
                assert_eq!(mine, "ok", "{context}");
            }
            fate
        }
        Scenario::Timeout => {
            let other = party(b, SHORT * 4);
            wait_until("one party waits", || b.n_waiting() == 1);
            let armed = armed(point, action, || {
                Some(timed_wait(b, Duration::from_millis(20)))
            });
            let theirs = join_on_time(other, SHORT * 4, &context);
            assert!(!ok(&theirs), "{context}: released without a third party");
            let fate = fate_of(armed);
            if let Some((mine, _)) = fate.outcome() {
                assert!(!ok(mine), "{context}");
            }
            fate
        }
        Scenario::Reset => {
            b.abort();
            let armed = armed(point, action, || {
                b.reset();
                None
            });
            let fate = fate_of(armed);
            if !matches!(fate, Fate::Killed) {
                assert!(!b.is_broken(), "{context}: reset left it broken");
            }
            fate
        }
        Scenario::ActionLeader => {
            let others = [party(b, SHORT * 4), party(b, SHORT * 4)];
            wait_until("two parties wait", || b.n_waiting() == 2);
            let armed = armed(point, action, || {
                let started = Instant::now();
                let result = b.wait_timeout_with_action(GENEROUS, || {});
                Some((describe(result), started.elapsed()))
            });
            // Resumed first if stopped: the others wait for it (until their
            // timeouts) once it has counted itself in.
            let fate = fate_of(armed);
            let outcomes: Vec<String> = others
                .into_iter()
                .map(|p| join_on_time(p, SHORT * 4, &context))
                .collect();
            // One generation: all released or none.
            assert_eq!(
                ok(&outcomes[0]),
                ok(&outcomes[1]),
                "{context}: {outcomes:?}"
            );
            if let Some((mine, _)) = fate.outcome() {
                assert_eq!(
                    ok(mine),
                    ok(&outcomes[0]),
                    "{context}: {mine} vs {outcomes:?}"
                );
            }
            fate
        }
        Scenario::Reclaimer => {
            let doomed = party(b, GENEROUS);
            wait_until("the doomed party waits", || b.n_waiting() == 1);
            doomed.kill().unwrap();
            assert!(doomed.join().is_err());
            let armed = armed(point, action, || Some(timed_wait(b, SHORT * 4)));
            let fate = fate_of(armed);
            if let Some((mine, waited)) = fate.outcome() {
                assert_eq!(mine, "broken", "{context}");
                if matches!(fate, Fate::Finished(_)) {
                    assert!(*waited < SHORT * 4, "{context}: death noticed late");
                }
            }
            fate
        }
    };
    // Whatever happened, a reset makes it work again for three fresh
    // parties, within their timeouts.
    barrier.reset();
    let fresh = [party(b, GENEROUS), party(b, GENEROUS)];
    assert!(
        barrier.wait_timeout(GENEROUS).is_ok(),
        "{context}: unusable after reset"
    );
    for p in fresh {
        assert_eq!(join_on_time(p, GENEROUS, &context), "ok", "{context}");
    }
    fate.hit()
}

fn every_point(action: Action) {
    testkit::every_crash_point(
        BARRIER_CRASH_POINTS,
        &SCENARIOS,
        action,
        |scenario, point| run(scenario, point, action),
    );
}

#[test]
fn a_party_killed_at_any_crash_point_wedges_nobody_and_every_outcome_is_exact() {
    every_point(Action::Kill);
}

#[test]
fn a_party_stopped_at_any_crash_point_delays_nobody_past_their_timeout() {
    every_point(Action::Stop);
}
