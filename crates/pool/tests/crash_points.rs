//! The worker's crash points, each in turn: both workers of a pool are
//! SIGKILLed (or stopped, SIGSTOP) right after each shared store of the
//! worker loop (rows attached, chunk taken, item start and end recorded,
//! outcomes sent), in every scenario that reaches it. Then: every task's
//! outcome is exact or, for the item a worker died (or stopped) in,
//! `WorkerDied` (`TimedOut`), at most one per armed worker; nothing else
//! fails, nothing hangs, and the pool is back to full strength and works. The list of points comes from
//! the code (`POOL_CRASH_POINTS`); a point that no scenario reaches fails
//! the test.
//!
//! Each run is its own owner process: arming a point is per process, and
//! the workers inherit it at their fork (the owner disarms itself once its
//! pool is built, so replacements run clean).

use std::time::Duration;

use daemon::Process;
use pool::{Pool, TaskError, POOL_CRASH_POINTS};
use shm::crash::{self, Action};
use testkit::{wait_until, GENEROUS};

mod common;

use common::{add_one, Judged};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    /// `map` of 200 tasks in chunks of 4.
    Map,
    /// 20 `apply` calls, one after the other.
    Apply,
}

const SCENARIOS: [Scenario; 2] = [Scenario::Map, Scenario::Apply];

/// What the owner saw: (tasks exact, tasks died or timed out, other
/// failures, workers replaced).
type Summary = (u64, u64, Vec<String>, u64);

fn run(scenario: Scenario, point: &'static str, action: Action) -> bool {
    let owner = Process::new(move || -> Summary {
        crash::arm(point, action);
        let mut builder = Pool::builder().workers(2);
        if action == Action::Stop {
            builder = builder.timeout(Duration::from_millis(300));
        }
        let pool = builder.build().expect("pool");
        crash::disarm();
        let outcomes: Vec<Result<u64, TaskError>> = match scenario {
            Scenario::Map => pool.map_chunked(add_one, 0..200u64, 4),
            Scenario::Apply => (0..20u64).map(|i| pool.apply(add_one, i)).collect(),
        };
        let mut judged = Judged::default();
        let mut judge = |outcomes| judged.judge(outcomes, action);
        judge(outcomes);
        // The pool works after (an armed worker that had no task yet may
        // cost one here).
        judge(pool.map(add_one, 0..100u64));
        wait_until("two workers again", || pool.worker_pids().len() == 2);
        let replaced = pool.workers_replaced();
        (judged.exact, judged.lost, judged.wrong, replaced)
    })
    .daemon(true)
    .start()
    .expect("owner");
    let mut owner = owner;
    let (exact, lost, wrong, replaced) = match owner.join_timeout(GENEROUS * 3) {
        Ok(summary) => summary,
        Err(e) => {
            // Its workers die with it.
            let _ = owner.kill();
            panic!("{point:?} ({scenario:?}, {action:?}): {e}");
        }
    };
    assert!(
        wrong.is_empty(),
        "{point:?} ({scenario:?}, {action:?}): {wrong:?}"
    );
    // Two armed workers: at most two tasks cost.
    assert!(
        lost <= 2 && lost <= replaced,
        "{point:?} ({scenario:?}, {action:?}): {lost} lost, {replaced} replaced"
    );
    let total = if scenario == Scenario::Map { 300 } else { 120 };
    assert_eq!(exact + lost, total);
    replaced > 0
}

#[test]
fn every_crash_point_costs_at_most_the_task_in_hand() {
    testkit::every_crash_point(
        POOL_CRASH_POINTS,
        &SCENARIOS,
        Action::Kill,
        |scenario, point| run(scenario, point, Action::Kill),
    );
}

#[test]
fn a_worker_stopped_at_any_point_is_killed_at_the_timeout() {
    testkit::every_crash_point(
        POOL_CRASH_POINTS,
        &SCENARIOS,
        Action::Stop,
        |scenario, point| run(scenario, point, Action::Stop),
    );
}
