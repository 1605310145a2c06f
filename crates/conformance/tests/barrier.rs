//! CPython's `Barrier` tests, ported to `sync_event::Barrier` between
//! processes.
//!
//! Sources: `Lib/test/lock_tests.py` (`BarrierTests`) and
//! `Lib/test/_test_multiprocessing.py` (`_TestBarrier`, "adapted from
//! tests in test/lock_tests.py"), CPython 3.11. Where the two classes have
//! the same case, one Rust test ports both (its comment cites both).
//!
//! Python's barrier has a default timeout (2 s in `BarrierTests`, 30 s in
//! `_TestBarrier`); procsync's has one only when made with it
//! (`Barrier::with_timeout`, ported in `lock_tests_barrier_default_timeout`),
//! so every other wait here is `wait_timeout(GENEROUS)` unless the case is
//! about timeouts. Python's `action` is passed to each wait
//! (`wait_with_action`: a closure cannot live in shared memory).
//! `wait()` returns a `BarrierWaitResult` whose `index()` is Python's
//! return value; `BrokenBarrierError` is `Err(BarrierError::Broken)` (or
//! `TimedOut` for the party whose own timeout broke the barrier);
//! `broken` is `is_broken()`.
//!
//! | Python case | why it is not ported |
//! |---|---|
//! | `BarrierTests::test_repr` | `repr` is Python-only; its content ("waiters=2/3") is checked through `n_waiting()` and `parties()` (`lock_tests_barrier_repr`) |

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use common::{Bunch, Log, SHORT};
use shm::{Shared, ShmSafe};
use sync_event::{Barrier, BarrierError};
use sync_lock::Mutex;
use testkit::{deadline, helper_args, helper_report, reported, run_helper, unique_name, GENEROUS};

/// Parties in the Python tests.
const N: u32 = 5;

/// `barrier.wait()` with the test's timeout.
fn wait(b: &Barrier) -> Result<u32, BarrierError> {
    b.wait_timeout(GENEROUS).map(|r| r.index())
}

/// Waits (at most GENEROUS) until `parties` wait in `barrier` (Python's
/// `sleeping_retry` loop on `n_waiting`).
fn wait_until_waiting(barrier: &Barrier, parties: u32) {
    let limit = deadline(GENEROUS);
    while barrier.n_waiting() < parties {
        assert!(
            Instant::now() < limit,
            "only {} waiting",
            barrier.n_waiting()
        );
        std::thread::yield_now();
    }
}

#[derive(ShmSafe)]
#[repr(C)]
struct Passes {
    barrier: Barrier,
    results0: AtomicU32,
    results1: AtomicU32,
}

/// BarrierTests::multipass: every party passes `n` times in lockstep.
fn multipass(s: &Passes, n: u32) {
    let m = s.barrier.parties();
    assert_eq!(m, N);
    for i in 0..n {
        s.results0.fetch_add(1, Ordering::SeqCst);
        assert_eq!(s.results1.load(Ordering::SeqCst), i * m);
        wait(&s.barrier).unwrap();
        s.results1.fetch_add(1, Ordering::SeqCst);
        assert_eq!(s.results0.load(Ordering::SeqCst), (i + 1) * m);
        wait(&s.barrier).unwrap();
    }
    assert_eq!(s.barrier.n_waiting(), 0);
    assert!(!s.barrier.is_broken());
}

fn barrier_passes(passes: u32) {
    let s = Shared::new(Passes {
        barrier: Barrier::new(N).unwrap(),
        results0: AtomicU32::new(0),
        results1: AtomicU32::new(0),
    })
    .unwrap();
    Bunch::start(N as usize, |_| multipass(&s, passes)).join();
}

// BarrierTests::test_barrier, _TestBarrier::test_barrier
#[test]
fn lock_tests_barrier_barrier() {
    barrier_passes(1);
}

// BarrierTests::test_barrier_10, _TestBarrier::test_barrier_10
#[test]
fn lock_tests_barrier_barrier_10() {
    barrier_passes(10);
}

// BarrierTests::test_wait_return (the indices sum to 0 + 1 + ... + N-1),
// _TestBarrier::test_wait_return (exactly one index is 0)
#[test]
fn lock_tests_barrier_wait_return() {
    let b = Shared::new(Barrier::new(N).unwrap()).unwrap();
    let results = Bunch::start(N as usize, |_| wait(&b).unwrap()).join();
    assert_eq!(results.iter().sum::<u32>(), (0..N).sum::<u32>());
    assert_eq!(results.iter().filter(|&&i| i == 0).count(), 1);
}

#[derive(ShmSafe)]
#[repr(C)]
struct Acted {
    barrier: Barrier,
    results: Log,
}

// BarrierTests::test_action, _TestBarrier::test_action: the action runs
// once, before any party returns from its wait. Each party passes the
// action to its wait (procsync difference: Python gives it to the
// constructor); the leader flag marks the party that ran it.
#[test]
fn lock_tests_barrier_action() {
    let s = Shared::new(Acted {
        barrier: Barrier::new(N).unwrap(),
        results: Log::new(),
    })
    .unwrap();
    let outcomes = Bunch::start(N as usize, |_| {
        let result = s
            .barrier
            .wait_timeout_with_action(GENEROUS, || s.results.push(1))
            .unwrap();
        (s.results.len(), result.is_leader())
    })
    .join();
    assert_eq!(s.results.len(), 1);
    assert!(outcomes.iter().all(|&(len, _)| len == 1), "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|&&(_, l)| l).count(), 1);
}

// BarrierTests::test_default_timeout, _TestBarrier::test_default_timeout:
// one party is later than the barrier's default timeout; the others'
// plain wait() gives up by it, and the late party finds it broken. Python
// makes the party late with a sleep; here it arrives once the other four
// have given up. Python raises BrokenBarrierError in every party; procsync
// tells the party whose timeout broke the barrier `TimedOut` and the
// others `Broken` (procsync difference).
// (The first wait, which only gathers the parties, passes GENEROUS: Python
// sized its default timeout for that, 1 s.)
#[test]
fn lock_tests_barrier_default_timeout() {
    let s = Shared::new(Acted {
        barrier: Barrier::with_timeout(N, SHORT).unwrap(),
        results: Log::new(),
    })
    .unwrap();
    let outcomes = Bunch::start(N as usize, |_| {
        let i = wait(&s.barrier).unwrap();
        if i == N / 2 {
            // One party is later than the default timeout!
            s.results.wait_len(N as usize - 1);
        }
        let outcome = match s.barrier.wait() {
            Ok(_) => "passed",
            Err(BarrierError::TimedOut) => "timed out",
            Err(BarrierError::Broken) => "broken",
            Err(_) => "other",
        };
        s.results.push(0);
        outcome.to_string()
    })
    .join();
    let count = |what: &str| outcomes.iter().filter(|o| *o == what).count();
    assert_eq!(count("timed out"), 1, "{outcomes:?}");
    assert_eq!(count("broken"), N as usize - 1, "{outcomes:?}");
}

#[derive(ShmSafe)]
#[repr(C)]
struct Outcomes {
    barrier: Barrier,
    barrier2: Barrier,
    results1: Log,
    results2: Log,
    results3: Log,
}

fn new_outcomes() -> Shared<Outcomes> {
    Shared::new(Outcomes {
        barrier: Barrier::new(N).unwrap(),
        barrier2: Barrier::new(N).unwrap(),
        results1: Log::new(),
        results2: Log::new(),
        results3: Log::new(),
    })
    .unwrap()
}

impl Outcomes {
    /// The first half of `_test_abort_f` / `_test_abort_and_reset_f`: the
    /// party with index N/2 aborts instead of waiting again; the others
    /// find the barrier broken.
    fn abort_f(&self) {
        match wait(&self.barrier) {
            Ok(i) if i == N / 2 => self.barrier.abort(),
            Ok(_) => match wait(&self.barrier) {
                Ok(_) => self.results1.push(0),
                Err(BarrierError::Broken) => self.results2.push(0),
                Err(other) => panic!("second wait: {other}"),
            },
            Err(err) => panic!("first wait: {err}"),
        }
    }
}

// BarrierTests::test_abort, _TestBarrier::test_abort
#[test]
fn lock_tests_barrier_abort() {
    let s = new_outcomes();
    Bunch::start(N as usize, |_| s.abort_f()).join();
    assert_eq!(s.results1.len(), 0);
    assert_eq!(s.results2.len(), N as usize - 1);
    assert!(s.barrier.is_broken());
}

// BarrierTests::test_reset, _TestBarrier::test_reset: a reset frees the
// waiting parties (with BrokenBarrierError), and the barrier works again.
#[test]
fn lock_tests_barrier_reset() {
    let s = new_outcomes();
    Bunch::start(N as usize, |_| {
        let i = wait(&s.barrier).unwrap();
        if i == N / 2 {
            // Wait until the other parties are all in the barrier.
            wait_until_waiting(&s.barrier, N - 1);
            s.barrier.reset();
        } else {
            match wait(&s.barrier) {
                Ok(_) => s.results1.push(0),
                Err(BarrierError::Broken) => s.results2.push(0),
                Err(other) => panic!("second wait: {other}"),
            }
        }
        // Now, pass the barrier again.
        wait(&s.barrier).unwrap();
        s.results3.push(0);
    })
    .join();
    assert_eq!(s.results1.len(), 0);
    assert_eq!(s.results2.len(), N as usize - 1);
    assert_eq!(s.results3.len(), N as usize);
}

// BarrierTests::test_abort_and_reset, _TestBarrier::test_abort_and_reset
#[test]
fn lock_tests_barrier_abort_and_reset() {
    let s = new_outcomes();
    Bunch::start(N as usize, |_| {
        s.abort_f();
        // Synchronize and reset the barrier. Must synchronize first so
        // that everyone has left it when we reset, and after so that no
        // one enters it before the reset.
        if wait(&s.barrier2).unwrap() == N / 2 {
            s.barrier.reset();
        }
        wait(&s.barrier2).unwrap();
        wait(&s.barrier).unwrap();
        s.results3.push(0);
    })
    .join();
    assert_eq!(s.results1.len(), 0);
    assert_eq!(s.results2.len(), N as usize - 1);
    assert_eq!(s.results3.len(), N as usize);
}

// BarrierTests::test_timeout, _TestBarrier::test_timeout: one party is
// late; the others' short waits break the barrier, and the late party
// finds it broken. Python makes the party late with a sleep; here it
// arrives once the other four have given up. Python raises
// BrokenBarrierError in every party; procsync tells the party whose
// timeout broke the barrier `TimedOut` and the others `Broken` (procsync
// difference).
#[test]
fn lock_tests_barrier_timeout() {
    let s = new_outcomes();
    let outcomes = Bunch::start(N as usize, |_| {
        let i = wait(&s.barrier).unwrap();
        if i == N / 2 {
            // One party is late!
            s.results1.wait_len(N as usize - 1);
        }
        let outcome = match s.barrier.wait_timeout(SHORT) {
            Ok(_) => "passed",
            Err(BarrierError::TimedOut) => "timed out",
            Err(BarrierError::Broken) => "broken",
            Err(_) => "other",
        };
        s.results1.push(0);
        outcome.to_string()
    })
    .join();
    let count = |what: &str| outcomes.iter().filter(|o| *o == what).count();
    assert_eq!(count("timed out"), 1, "{outcomes:?}");
    assert_eq!(count("broken"), N as usize - 1, "{outcomes:?}");
}

// BarrierTests::test_single_thread, _TestBarrier::test_single_thread
#[test]
fn lock_tests_barrier_single_thread() {
    let b = Barrier::new(1).unwrap();
    assert!(b.wait().unwrap().is_leader());
    assert!(b.wait().unwrap().is_leader());
}

// BarrierTests::test_repr: "waiters=0/3", then "waiters=2/3" while two
// parties wait, through n_waiting() and parties().
#[test]
fn lock_tests_barrier_repr() {
    let b = Shared::new(Barrier::new(3).unwrap()).unwrap();
    assert_eq!((b.n_waiting(), b.parties()), (0, 3));
    let bunch = Bunch::start(2, |_| wait(&b).is_ok());
    wait_until_waiting(&b, 2);
    assert_eq!((b.n_waiting(), b.parties()), (2, 3));
    wait(&b).unwrap();
    assert_eq!(bunch.join(), [true, true]);
}

#[derive(ShmSafe)]
#[repr(C)]
struct Thousand {
    barrier: Barrier,
    /// Python sends `i` down a pipe under a lock after each pass; here the
    /// count of values sent, under a Mutex, and a check of each.
    sent: Mutex<u32>,
}

// _TestBarrier::test_thousand: five processes pass the barrier 1000 times;
// every process reports pass i before any reports pass i + 1.
#[test]
fn mp_barrier_thousand() {
    const PASSES: u32 = 1000;
    let s = Shared::new(Thousand {
        barrier: Barrier::new(N).unwrap(),
        sent: Mutex::new(0),
    })
    .unwrap();
    Bunch::start(N as usize, |_| {
        for i in 0..PASSES {
            wait(&s.barrier).unwrap();
            let mut sent = s.sent.lock().unwrap();
            assert_eq!(*sent / N, i, "a value out of order");
            *sent += 1;
        }
    })
    .join();
    assert_eq!(*s.sent.lock().unwrap(), N * PASSES);
}

/// The unrelated process's side of `lock_tests_barrier_wait_return_named`.
#[test]
fn helper_barrier_by_name() {
    let Some(args) = helper_args() else { return };
    let b = Shared::<Barrier>::open(&args[0]).expect("open by name");
    helper_report("index", wait(&b).expect("passed"));
}

// BarrierTests::test_wait_return, with one party an unrelated program that
// opens the barrier by name.
#[test]
fn lock_tests_barrier_wait_return_named() {
    let name = unique_name("conf-barrier");
    let b = Shared::create(&name, Barrier::new(2).unwrap()).unwrap();
    let helper = {
        let name = name.clone();
        std::thread::spawn(move || run_helper("helper_barrier_by_name", &[&name], GENEROUS))
    };
    let mine = wait(&b).unwrap();
    let out = helper.join().expect("the helper thread");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: u32 = reported(&out, "index").unwrap().parse().unwrap();
    assert_eq!(mine + theirs, 1, "indices 0 and 1");
}
