//! Review 7 of `Pool`: attacks that the pool withstood (kept as tests):
//! tasks that exit or abort their worker, the replacement killed again,
//! `max_tasks_per_child(1)` over many tasks, the bounds on the worker
//! count, an `imap` dropped half-way, `terminate` while outcomes stream,
//! a pool dropped on another thread.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pool::{Pool, PoolError, TaskError, MAX_WORKERS};
use shm::Shared;
use testkit::within;

fn add_one(x: u64) -> u64 {
    x + 1
}

/// Input 13 leaves its worker with `std::process::exit(0)`, input 14 with
/// `abort`; the others are `x + 1`.
fn exits_or_aborts(x: u64) -> u64 {
    match x {
        13 => std::process::exit(0),
        14 => std::process::abort(),
        _ => x + 1,
    }
}

#[test]
fn a_task_that_exits_or_aborts_costs_itself_only() {
    let out = within(|| {
        let pool = Pool::new(2).expect("pool");
        let out = pool.map_chunked(exits_or_aborts, 0..40u64, 3);
        (out, pool.workers_replaced())
    });
    let (out, replaced) = out;
    for (i, r) in out.into_iter().enumerate() {
        match i {
            13 => assert_eq!(
                r,
                Err(TaskError::WorkerDied {
                    signal: None,
                    exit_code: Some(0)
                })
            ),
            14 => assert_eq!(
                r,
                Err(TaskError::WorkerDied {
                    signal: Some(libc::SIGABRT),
                    exit_code: None
                })
            ),
            _ => assert_eq!(r, Ok(i as u64 + 1), "task {i}"),
        }
    }
    assert_eq!(replaced, 2);
}

static RUNS: OnceLock<Shared<AtomicU64>> = OnceLock::new();

/// Kills its own worker on its first three runs, then returns `x`.
fn dies_three_times(x: u64) -> u64 {
    if RUNS.get().expect("set").fetch_add(1, SeqCst) < 3 {
        // SAFETY: kill(2) on this very process; no memory is involved.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    x
}

#[test]
fn replacements_killed_in_a_row_and_retries() {
    RUNS.get_or_init(|| Shared::new(AtomicU64::new(0)).expect("shm"));
    let (out, more, replaced) = within(|| {
        let pool = Pool::builder().workers(1).retries(3).build().expect("pool");
        let out = pool.map_chunked(dies_three_times, 0..10u64, 1);
        let more = pool.map(add_one, 0..100u64);
        (out, more, pool.workers_replaced())
    });
    assert!(out.into_iter().enumerate().all(|(i, r)| r == Ok(i as u64)));
    assert!(more
        .into_iter()
        .enumerate()
        .all(|(i, r)| r == Ok(i as u64 + 1)));
    assert_eq!(replaced, 3);
}

#[test]
fn max_tasks_per_child_1_over_many_tasks() {
    let (out, replaced) = within(|| {
        let pool = Pool::builder()
            .workers(2)
            .max_tasks_per_child(1)
            .build()
            .expect("pool");
        let out = pool.map_chunked(add_one, 0..300u64, 1);
        (out, pool.workers_replaced())
    });
    assert!(out
        .into_iter()
        .enumerate()
        .all(|(i, r)| r == Ok(i as u64 + 1)));
    assert!(replaced >= 298, "{replaced}");
}

#[test]
fn worker_count_bounds() {
    assert!(matches!(Pool::new(0), Err(PoolError::Workers { .. })));
    assert!(matches!(
        Pool::new(MAX_WORKERS + 1),
        Err(PoolError::Workers { .. })
    ));
    let out = within(|| {
        let pool = Pool::builder()
            .workers(MAX_WORKERS)
            .max_message_bytes(0)
            .build()
            .expect("pool");
        pool.map_chunked(add_one, 0..1000u64, 1)
    });
    assert!(out
        .into_iter()
        .enumerate()
        .all(|(i, r)| r == Ok(i as u64 + 1)));
}

#[test]
fn imap_dropped_half_way_then_close_and_join() {
    within(|| {
        let pool = Pool::new(2).expect("pool");
        let mut it = pool.imap(add_one, 0..10_000u64);
        for i in 0..100 {
            assert_eq!(it.next(), Some(Ok(i + 1)));
        }
        drop(it);
        assert_eq!(pool.apply(add_one, 1), Ok(2));
        pool.close();
        pool.join().expect("join");
    });
}

#[test]
fn terminate_while_outcomes_stream() {
    within(|| {
        let pool = std::sync::Arc::new(Pool::new(2).expect("pool"));
        let mut it = pool.imap(add_one, 0..200_000u64);
        for i in 0..1000 {
            assert_eq!(it.next(), Some(Ok(i + 1)));
        }
        let p = std::sync::Arc::clone(&pool);
        std::thread::spawn(move || p.terminate())
            .join()
            .expect("terminate");
        let rest: Vec<_> = it.collect();
        assert_eq!(rest.len(), 199_000);
        // Each is exact or Terminated (in any mix: outcomes of other
        // workers may have come before the terminate).
        for (j, r) in rest.iter().enumerate() {
            let i = 1000 + j as u64;
            assert!(
                *r == Ok(i + 1) || *r == Err(TaskError::Terminated),
                "task {i}: {r:?}"
            );
        }
        assert_eq!(pool.apply(add_one, 1), Err(TaskError::PoolClosed));
    });
}

#[test]
fn a_pool_dropped_on_another_thread() {
    within(|| {
        let pool = Pool::new(2).expect("pool");
        let pids = pool.worker_pids();
        std::thread::spawn(move || {
            assert_eq!(pool.apply(add_one, 1), Ok(2));
            drop(pool);
        })
        .join()
        .expect("drop");
        for pid in pids {
            assert_eq!(testkit::process_state(pid), None, "worker {pid:?} left");
        }
    });
}

/// A pool with a 1 µs `timeout`: the "quiet worker" rule (a worker with
/// chunks queued that starts none within the limit is killed, its chunks
/// re-dispatched) could kill every fresh worker before its first task, for
/// ever. It does not: every task comes back, `TimedOut` (or `Ok`).
#[test]
fn a_tiny_timeout_gives_timed_out_not_a_livelock() {
    let pool = Pool::builder()
        .workers(1)
        .timeout(Duration::from_micros(1))
        .build()
        .expect("pool");
    let pending: Vec<_> = (0..20).map(|i| pool.apply_async(add_one, i)).collect();
    let limit = Instant::now() + Duration::from_secs(3);
    let outcomes: Vec<_> = pending
        .iter()
        .map(|p| p.get_timeout(limit.saturating_duration_since(Instant::now())))
        .collect();
    let replaced = pool.workers_replaced();
    drop(pool);
    for (i, outcome) in outcomes.iter().enumerate() {
        assert!(
            matches!(outcome, Some(Ok(v)) if *v == i as u64 + 1)
                || *outcome == Some(Err(TaskError::TimedOut)),
            "task {i}: {outcome:?} after 3 s; {replaced} workers forked and killed meanwhile"
        );
    }
}
