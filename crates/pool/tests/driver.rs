//! A `map` runs the pool's bookkeeping on its own thread while it waits
//! (the manager thread steps aside): what must hold while it does, between
//! real worker processes. Other threads' jobs go on, `terminate` and
//! `close` from another thread are obeyed, and a caller that unwinds while
//! it holds the bookkeeping leaves a pool that still works.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::OnceLock;

use pool::{Pool, TaskError};
use serde::{Deserialize, Deserializer, Serialize};
use shm::{Futex, Shared};
use testkit::{raise, wait_for, wait_until, GENEROUS};

mod common;
use common::{add_one, parks, PARK_FLAG};

/// Runs `work` on a thread of its own and fails the test if it has not
/// returned within [`GENEROUS`].
fn on_a_thread<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        s.spawn(move || {
            let _ = tx.send(work());
        });
        rx.recv_timeout(GENEROUS)
            .expect("no answer within the deadline")
    })
}

#[test]
fn maps_on_three_threads_and_an_imap_all_come_back_exact() {
    let pool = Pool::new(2).expect("pool");
    let pool = &pool;
    on_a_thread(|| {
        std::thread::scope(|s| {
            let maps: Vec<_> = (0..3u64)
                .map(|t| {
                    s.spawn(move || {
                        let base = t * 100_000;
                        let out = pool.map_chunked(add_one, base..base + 20_000, 1);
                        assert_eq!(out.len(), 20_000);
                        for (i, r) in out.into_iter().enumerate() {
                            assert_eq!(r, Ok(base + i as u64 + 1), "thread {t}, task {i}");
                        }
                    })
                })
                .collect();
            let lazy: Vec<_> = pool.imap(add_one, 0..5_000u64).collect();
            assert!(lazy
                .into_iter()
                .enumerate()
                .all(|(i, r)| r == Ok(i as u64 + 1)));
            for map in maps {
                map.join().expect("map thread");
            }
        })
    });
    // The manager thread has the bookkeeping back: an `apply` (which never
    // runs it itself) is answered.
    assert_eq!(on_a_thread(|| pool.apply(add_one, 41)), Ok(42));
}

#[test]
fn terminate_from_another_thread_ends_a_map_its_caller_is_running() {
    PARK_FLAG.get_or_init(|| Shared::new(Futex::new(0)).expect("shm"));
    let pool = Pool::new(2).expect("pool");
    let outcomes = std::thread::scope(|s| {
        let mapped = s.spawn(|| pool.map_chunked(parks, 0..50u64, 1));
        // Both workers run a task: the map's caller holds the bookkeeping.
        wait_for(PARK_FLAG.get().expect("set"), 2);
        pool.terminate();
        on_a_thread(|| mapped.join().expect("map"))
    });
    assert_eq!(outcomes.len(), 50);
    // What the pool had is terminated; a part the caller was still
    // encoding when it closed is refused, as documented.
    assert!(
        outcomes
            .iter()
            .all(|r| matches!(r, Err(TaskError::Terminated) | Err(TaskError::PoolClosed))),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[0], Err(TaskError::Terminated));
    assert!(pool.worker_pids().is_empty());
    assert_eq!(pool.apply(add_one, 1), Err(TaskError::PoolClosed));
}

static GATE: OnceLock<Shared<Futex>> = OnceLock::new();
static STARTED: OnceLock<Shared<Futex>> = OnceLock::new();

/// Says it started, waits for the gate, then adds one.
fn gated(x: u64) -> u64 {
    raise(STARTED.get().expect("set"));
    wait_for(GATE.get().expect("set"), 1);
    x + 1
}

#[test]
fn close_from_another_thread_lets_a_running_map_finish() {
    GATE.get_or_init(|| Shared::new(Futex::new(0)).expect("shm"));
    STARTED.get_or_init(|| Shared::new(Futex::new(0)).expect("shm"));
    let pool = Pool::new(2).expect("pool");
    let outcomes = std::thread::scope(|s| {
        let mapped = s.spawn(|| pool.map_chunked(gated, 0..40u64, 1));
        // Both workers hold a task: the caller has (almost always) handed
        // in every part of its job and runs the bookkeeping.
        wait_for(STARTED.get().expect("set"), 2);
        pool.close();
        raise(GATE.get().expect("set"));
        on_a_thread(|| mapped.join().expect("map"))
    });
    // Every task handed in before the close runs; a part the caller was
    // still encoding when the pool closed is refused, as documented.
    let ran = outcomes.iter().take_while(|r| r.is_ok()).count();
    assert!(ran >= 2, "{outcomes:?}");
    for (i, outcome) in outcomes.iter().enumerate() {
        let expected = if i < ran {
            Ok(i as u64 + 1)
        } else {
            Err(TaskError::PoolClosed)
        };
        assert_eq!(*outcome, expected, "task {i}");
    }
    on_a_thread(|| pool.join()).expect("join");
    assert!(pool.worker_pids().is_empty());
}

/// A result whose decoding panics for one value: the caller unwinds out of
/// `map` (after it has let the bookkeeping go: it decodes only then).
#[derive(Debug, PartialEq, Serialize)]
struct Picky(u64);

impl<'de> Deserialize<'de> for Picky {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Picky, D::Error> {
        let value = u64::deserialize(deserializer)?;
        assert_ne!(value, 13, "13 refused while decoding");
        Ok(Picky(value))
    }
}

fn picky(x: u64) -> Picky {
    Picky(x)
}

static RUNS: OnceLock<Shared<AtomicU64>> = OnceLock::new();

fn counted(x: u64) -> u64 {
    RUNS.get().expect("set").fetch_add(1, SeqCst);
    x + 1
}

#[test]
fn a_caller_unwinding_out_of_its_map_leaves_the_pool_working() {
    RUNS.get_or_init(|| Shared::new(AtomicU64::new(0)).expect("shm"));
    let pool = Pool::new(2).expect("pool");
    let unwound = on_a_thread(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.map_chunked(picky, 0..2_000u64, 1)
        }))
    });
    let message = unwound.expect_err("the decode panics");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("13 refused"), "{message}");
    // The manager thread took the bookkeeping back: new work runs, every
    // task once, and the workers are the pool's two.
    let outcomes = on_a_thread(|| pool.map_chunked(counted, 0..1_000u64, 1));
    assert_eq!(outcomes, (1..=1_000).map(Ok).collect::<Vec<_>>());
    assert_eq!(RUNS.get().expect("set").load(SeqCst), 1_000);
    assert_eq!(on_a_thread(|| pool.apply(add_one, 7)), Ok(8));
    wait_until("two workers", || pool.worker_pids().len() == 2);
    assert_eq!(pool.workers_replaced(), 0);
}
