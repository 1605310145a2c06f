//! Review 16: a `map`'s caller runs the pool's bookkeeping while it waits
//! (`Driver`). Each test here fails on the code it was written against and
//! is ignored until the defect it shows is fixed; between real worker
//! processes, with bounded waits only.

use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use pool::{Pool, TaskError};
use serde::{Deserialize, Deserializer, Serialize};
use shm::{Futex, Shared};
use testkit::{park_until_killed, raise, wait_for, GENEROUS};

fn add_one(x: u64) -> u64 {
    x + 1
}

fn flag(cell: &'static OnceLock<Shared<Futex>>) -> &'static Futex {
    cell.get_or_init(|| Shared::new(Futex::new(0)).expect("shm"))
}

/// Waits until `gate` is raised, at most three times [`GENEROUS`]: longer
/// than the test waits for what it checks meanwhile, so the check, not
/// this wait, is what fails.
fn wait_long(gate: &Futex) {
    let limit = testkit::deadline(GENEROUS * 3);
    while gate.load(std::sync::atomic::Ordering::SeqCst) == 0 && gate.wait(0, Some(limit)) {}
}

/// Raised by [`Slow`]'s decoding as it starts; [`SLOW_RELEASE`] lets it end.
static SLOW_DECODING: OnceLock<Shared<Futex>> = OnceLock::new();
static SLOW_RELEASE: OnceLock<Shared<Futex>> = OnceLock::new();

/// A result whose decoding (user code, run by the map's caller) takes its
/// time: it waits for the test to release it.
#[derive(Debug, PartialEq, Serialize)]
struct Slow(u64);

impl<'de> Deserialize<'de> for Slow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Slow, D::Error> {
        let value = u64::deserialize(deserializer)?;
        raise(flag(&SLOW_DECODING));
        wait_long(flag(&SLOW_RELEASE));
        Ok(Slow(value))
    }
}

fn slow(x: u64) -> Slow {
    Slow(x)
}

/// While one thread's `map` decodes an outcome slowly (its `R`'s
/// `Deserialize` is user code), another thread's `apply_async` must still
/// be answered: the crate promises imap/apply callers their outcomes while
/// another thread's map drives. The decode runs inside the driver loop with
/// the bookkeeping held, so nothing runs the pool meanwhile.
#[test]
fn an_apply_is_answered_while_a_maps_caller_decodes_slowly() {
    flag(&SLOW_DECODING);
    flag(&SLOW_RELEASE);
    let pool = Pool::new(2).expect("pool");
    let (answer, mapped) = std::thread::scope(|s| {
        let mapped = s.spawn(|| pool.map_chunked(slow, 0..4u64, 1));
        wait_for(flag(&SLOW_DECODING), 1);
        let answer = pool.apply_async(add_one, 41).get_timeout(GENEROUS);
        raise(flag(&SLOW_RELEASE));
        (answer, mapped.join().expect("map"))
    });
    assert_eq!(mapped, (0..4).map(|x| Ok(Slow(x))).collect::<Vec<_>>());
    assert_eq!(
        answer,
        Some(Ok(42)),
        "no answer within {GENEROUS:?} while another thread's map decoded"
    );
}

static TIMED_DECODING: OnceLock<Shared<Futex>> = OnceLock::new();
static TIMED_RELEASE: OnceLock<Shared<Futex>> = OnceLock::new();

/// As [`Slow`], on flags of its own.
#[derive(Debug, PartialEq, Serialize)]
struct SlowToo(u64);

impl<'de> Deserialize<'de> for SlowToo {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SlowToo, D::Error> {
        let value = u64::deserialize(deserializer)?;
        raise(flag(&TIMED_DECODING));
        wait_long(flag(&TIMED_RELEASE));
        Ok(SlowToo(value))
    }
}

fn slow_too(x: u64) -> SlowToo {
    SlowToo(x)
}

fn parks(x: u64) -> u64 {
    park_until_killed();
    x
}

/// The pool's per-task timeout is enforced while a map's caller decodes:
/// a task that overruns it ends as `TimedOut` (its worker killed) soon
/// after the limit, not whenever the other thread's decoding ends.
#[test]
fn a_timeout_is_enforced_while_a_maps_caller_decodes_slowly() {
    flag(&TIMED_DECODING);
    flag(&TIMED_RELEASE);
    let pool = Pool::builder()
        .workers(2)
        .timeout(Duration::from_millis(200))
        .build()
        .expect("pool");
    let (answer, mapped) = std::thread::scope(|s| {
        let mapped = s.spawn(|| pool.map_chunked(slow_too, 0..4u64, 1));
        wait_for(flag(&TIMED_DECODING), 1);
        let answer = pool.apply_async(parks, 1).get_timeout(GENEROUS);
        raise(flag(&TIMED_RELEASE));
        (answer, mapped.join().expect("map"))
    });
    assert_eq!(mapped, (0..4).map(|x| Ok(SlowToo(x))).collect::<Vec<_>>());
    assert_eq!(
        answer,
        Some(Err(TaskError::TimedOut)),
        "a 200 ms timeout not enforced within {GENEROUS:?} while another thread's map decoded"
    );
}

static A_PARKED: OnceLock<Shared<Futex>> = OnceLock::new();
static A_DECODED: OnceLock<Shared<Futex>> = OnceLock::new();
static A_GATE: OnceLock<Shared<Futex>> = OnceLock::new();

/// A result that says when the map's caller decodes it (it then holds the
/// bookkeeping).
#[derive(Debug, PartialEq, Serialize)]
struct Noted(u64);

impl<'de> Deserialize<'de> for Noted {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Noted, D::Error> {
        let value = u64::deserialize(deserializer)?;
        raise(flag(&A_DECODED));
        Ok(Noted(value))
    }
}

/// Input 0 returns at once; the others say they run, then wait for the
/// gate (bounded: a worker never waits for ever).
fn gated(x: u64) -> Noted {
    if x > 0 {
        raise(flag(&A_PARKED));
        wait_long(flag(&A_GATE));
    }
    Noted(x)
}

/// A one-task `map` whose task has run returns, whatever another thread's
/// map is waiting for. Here the other map's tasks wait for what the
/// one-task map's caller does next: the one-task map's caller waits for
/// the bookkeeping (`Driver::begin` locks `Shared::drive`) that the other
/// caller holds for the whole of its map, so it does not return until the
/// other map has ended.
#[test]
fn a_one_task_map_returns_while_another_threads_map_drives() {
    flag(&A_PARKED);
    flag(&A_DECODED);
    flag(&A_GATE);
    let pool = Pool::new(3).expect("pool");
    let (answer, mapped) = std::thread::scope(|s| {
        let mapped = s.spawn(|| pool.map_chunked(gated, 0..3u64, 1));
        // Inputs 1 and 2 hold two workers (so the whole job is handed in
        // and its caller drives, or is about to), the third is free. (The
        // driving caller decodes only after its job, since the fix: it no
        // longer says "decoded" here.)
        wait_for(flag(&A_PARKED), 2);
        let (tx, rx) = mpsc::channel();
        let pool = &pool;
        let one = s.spawn(move || {
            let _ = tx.send(pool.map(add_one, [1u64]));
        });
        let answer = rx.recv_timeout(GENEROUS);
        raise(flag(&A_GATE));
        one.join().expect("one-task map");
        (answer, mapped.join().expect("map"))
    });
    assert_eq!(mapped, (0..3).map(|x| Ok(Noted(x))).collect::<Vec<_>>());
    assert_eq!(
        answer,
        Ok(vec![Ok(2)]),
        "a one-task map did not return within {GENEROUS:?} while another thread's map drove"
    );
}

/// The pool a [`Nested`] result's decoding asks.
static NESTED_POOL: OnceLock<&'static Pool> = OnceLock::new();

/// A result whose decoding asks the pool something (an `apply`, waited
/// for at most [`GENEROUS`]): `.1` is the answer it got.
#[derive(Debug, PartialEq)]
struct Nested(u64, Option<Result<u64, TaskError>>);

impl Serialize for Nested {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Nested {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Nested, D::Error> {
        let value = u64::deserialize(deserializer)?;
        let pool = NESTED_POOL.get().expect("set");
        let answer = pool.apply_async(add_one, value).get_timeout(GENEROUS);
        Ok(Nested(value, answer))
    }
}

fn nested(x: u64) -> Nested {
    Nested(x, None)
}

/// A map's caller that uses the pool while it decodes its outcomes (an
/// `apply` in its result's `Deserialize`) gets an answer: before the
/// caller ran the bookkeeping, the manager thread answered it; now the
/// caller holds the bookkeeping while it decodes, and waits on itself.
/// (With a `map` there instead, `Driver::begin` would lock `Shared::drive`
/// a second time on the same thread: a deadlock for ever.)
#[test]
fn a_maps_caller_can_use_the_pool_while_it_decodes() {
    let pool: &'static Pool = Box::leak(Box::new(Pool::new(2).expect("pool")));
    NESTED_POOL.get_or_init(|| pool);
    let (tx, rx) = mpsc::channel();
    let mapped = std::thread::spawn(move || {
        let _ = tx.send(pool.map_chunked(nested, 0..1u64, 1));
    });
    let outcome = rx.recv_timeout(GENEROUS * 2);
    pool.terminate();
    let _ = rx.recv_timeout(GENEROUS);
    let _ = mapped.join();
    pool.join().expect("join");
    assert_eq!(
        outcome,
        Ok(vec![Ok(Nested(0, Some(Ok(1))))]),
        "the apply made while decoding got no answer"
    );
}
