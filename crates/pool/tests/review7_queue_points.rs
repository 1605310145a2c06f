//! Review 7 of `Pool`: workers killed (SIGKILL) at each of the queue's own
//! crash points (inside `get` of their task queue and `put` of outcomes to
//! the manager's inbox), which the pool's suite (`crash_points.rs`, the
//! worker loop's points only) does not reach. The pool withstood them:
//! no outcome lost or doubled, no hang (a worker killed inside `put` of a
//! chunk's outcomes leaves them in its journal).

use std::time::Duration;

use daemon::Process;
use pool::Pool;
use queue::QUEUE_CRASH_POINTS;
use shm::crash::{self, Action};

mod common;

use common::{add_one, Judged};

/// (exact, died, other failures, workers replaced), or why the owner failed.
/// The owner arms `point` and builds its pool (the workers inherit it),
/// then disarms itself.
fn run(point: &'static str, action: Action) -> Result<(u64, u64, Vec<String>, u64), String> {
    let mut owner = Process::new(move || -> (u64, u64, Vec<String>, u64) {
        crash::arm(point, action);
        let mut builder = Pool::builder().workers(2);
        if action == Action::Stop {
            builder = builder.timeout(Duration::from_millis(300));
        }
        let pool = builder.build().expect("pool");
        crash::disarm();
        let mut judged = Judged::default();
        let mut judge = |outcomes| judged.judge(outcomes, action);
        judge(pool.map_chunked(add_one, 0..200u64, 4));
        judge(pool.map(add_one, 0..100u64));
        let replaced = pool.workers_replaced();
        (judged.exact, judged.lost, judged.wrong, replaced)
    })
    .daemon(true)
    .start()
    .expect("owner");
    match owner.join_timeout(Duration::from_secs(20)) {
        Ok(summary) => Ok(summary),
        Err(e) => {
            let _ = owner.kill();
            Err(format!("{e}"))
        }
    }
}

fn every_put_and_get_point(action: Action) {
    let mut report = Vec::new();
    // The row and fold points are reached by the owner's manager thread
    // too, while it builds the pool (armed then): only `put` and `get`,
    // which the owner reaches only after it disarmed, are the workers'.
    for &point in QUEUE_CRASH_POINTS
        .iter()
        .filter(|p| p.starts_with("queue put") || p.starts_with("queue get"))
    {
        let r = run(point, action);
        eprintln!("{point:?}: {r:?}");
        report.push((point, r));
    }
    for (point, r) in report {
        match r {
            Ok((exact, lost, wrong, _)) => {
                assert!(wrong.is_empty(), "{point:?}: {wrong:?}");
                // Two armed workers, each costing at most the task it ran:
                // killed inside `put` of a chunk's outcomes, they are in
                // its journal.
                assert!(lost <= 2, "{point:?}: {lost} lost");
                assert_eq!(exact + lost, 300, "{point:?}");
            }
            Err(e) => panic!("{point:?}: owner {e}"),
        }
    }
}

#[test]
fn workers_killed_at_the_queues_crash_points() {
    every_put_and_get_point(Action::Kill);
}

/// Stopped (SIGSTOP) there instead, with a timeout: inside `put` a stopped
/// worker holds the inbox's producers' lock.
#[test]
fn workers_stopped_at_the_queues_crash_points() {
    every_put_and_get_point(Action::Stop);
}
