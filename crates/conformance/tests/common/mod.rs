//! What the ported tests share: Python's `Bunch` (N workers started at once,
//! joined later) as processes, a shared append-only list standing in for the
//! Python tests' `results` lists, and waits that fail instead of hanging.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use daemon::{Child, JoinError, Process};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shm::{Futex, ShmSafe};
use testkit::{deadline, raise, wait_for, GENEROUS};

/// Python's short timeouts (0.5 s in `lock_tests.py`, `TIMEOUT1`/`TIMEOUT2`
/// in `_test_multiprocessing.py`), scaled down to keep the suite fast.
pub const SHORT: Duration = Duration::from_millis(100);

/// How many values a [`Log`] holds.
pub const LOG_CAPACITY: usize = 64;

/// A list in shared memory that processes append to: the ported form of the
/// Python tests' `results = []` / `phase = []` lists.
#[derive(ShmSafe)]
#[repr(C)]
pub struct Log {
    /// Slots handed out.
    next: AtomicU32,
    /// Appends completed; raised (see `testkit::raise`) by each.
    done: Futex,
    /// The values, plus one (0: not written yet).
    items: [AtomicU32; LOG_CAPACITY],
}

impl Log {
    /// An empty list.
    pub const fn new() -> Log {
        Log {
            next: AtomicU32::new(0),
            done: Futex::new(0),
            items: [const { AtomicU32::new(0) }; LOG_CAPACITY],
        }
    }

    /// Appends `value` and wakes whoever waits for the length.
    pub fn push(&self, value: u32) {
        let i = self.next.fetch_add(1, Ordering::SeqCst) as usize;
        assert!(i < LOG_CAPACITY, "log full");
        self.items[i].store(value + 1, Ordering::SeqCst);
        raise(&self.done);
    }

    /// How many appends have completed.
    pub fn len(&self) -> usize {
        self.done.load(Ordering::SeqCst) as usize
    }

    /// Waits (at most `GENEROUS`, then fails) until `n` appends completed.
    pub fn wait_len(&self, n: usize) {
        wait_for(&self.done, n as u32);
    }

    /// The values appended so far, in order.
    pub fn values(&self) -> Vec<u32> {
        let n = (self.next.load(Ordering::SeqCst) as usize).min(LOG_CAPACITY);
        self.items[..n]
            .iter()
            .map(|v| v.load(Ordering::SeqCst))
            .filter(|&v| v != 0)
            .map(|v| v - 1)
            .collect()
    }

    /// The values, sorted (Python's `sorted(results)`).
    pub fn sorted(&self) -> Vec<u32> {
        let mut v = self.values();
        v.sort_unstable();
        v
    }
}

/// Python's `Bunch(f, n)`: `n` worker processes started at once, each
/// running `f(i)`; join them with [`Bunch::join`]. Workers still running
/// when a `Bunch` is dropped (a failed assertion) are killed and reaped.
pub struct Bunch<T> {
    children: Vec<Child<T>>,
}

impl<T: Serialize + DeserializeOwned> Bunch<T> {
    /// Starts `n` daemon processes running `f(0)`, …, `f(n - 1)`.
    pub fn start(n: usize, f: impl Fn(usize) -> T) -> Bunch<T> {
        let f = &f;
        let children = (0..n)
            .map(|i| start(Process::new(move || f(i)).daemon(true)))
            .collect();
        Bunch { children }
    }

    /// The workers' pids.
    pub fn pids(&self) -> Vec<shm::pid::Pid> {
        self.children.iter().map(Child::pid).collect()
    }

    /// Python's `wait_threads_blocked(n)`: waits until every worker is
    /// asleep in the kernel (its state in `/proc` is `S`).
    pub fn wait_all_asleep(&self) {
        for pid in self.pids() {
            wait_until_asleep(&format!("/proc/{pid}/stat"));
        }
    }

    /// Waits until every worker is asleep in the kernel or has finished:
    /// the moment to check that a wake-up reached no more workers than it
    /// should have.
    pub fn wait_all_asleep_or_finished(&self) {
        for pid in self.pids() {
            wait_for_state(&format!("/proc/{pid}/stat"), &['S', 'Z']);
        }
    }

    /// How many workers have finished.
    pub fn finished(&mut self) -> usize {
        self.children
            .iter_mut()
            .map(|c| !c.is_alive())
            .filter(|&done| done)
            .count()
    }

    /// Joins every worker (each within `GENEROUS`) and returns their
    /// results in order; a worker that failed fails the test.
    pub fn join(mut self) -> Vec<T> {
        std::mem::take(&mut self.children)
            .into_iter()
            .map(|mut child| match child.join_timeout(GENEROUS) {
                Ok(value) => value,
                Err(err) => {
                    let _ = child.kill();
                    let _ = child.join_timeout(GENEROUS);
                    panic!("a worker failed: {err}");
                }
            })
            .collect()
    }
}

impl<T> Drop for Bunch<T> {
    fn drop(&mut self) {
        for child in &self.children {
            let _ = child.kill();
        }
        for child in &mut self.children {
            let limit = deadline(GENEROUS);
            while child.status().is_none() && Instant::now() < limit {
                std::thread::yield_now();
            }
        }
    }
}

/// Starts `process`, failing the test if it cannot. (It once worked around
/// two fork-with-threads hangs, reproduced in `process.rs`, that are now
/// fixed: a stdout lock held by another thread at the fork, and a fork
/// during another thread's first pid lookup.)
pub fn start<F, T>(process: Process<F>) -> Child<T>
where
    F: FnOnce() -> T,
    T: Serialize,
{
    process.start().expect("start a child process")
}

/// Waits until the thread whose `/proc/.../stat` file is `stat` is asleep
/// (state `S`), failing after `GENEROUS`.
pub fn wait_until_asleep(stat: &str) {
    wait_for_state(stat, &['S']);
}

/// Waits until the thread whose `/proc/.../stat` file is `stat` is in one
/// of `states` (or gone, when `Z` is among them), failing after `GENEROUS`.
fn wait_for_state(stat: &str, states: &[char]) {
    let limit = deadline(GENEROUS);
    loop {
        let Ok(text) = std::fs::read_to_string(stat) else {
            assert!(states.contains(&'Z'), "{stat} is gone");
            return;
        };
        // "pid (comm) S ...": the state follows the last ')'.
        let state = text
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        if state.is_some_and(|s| states.contains(&s)) {
            return;
        }
        assert!(
            Instant::now() < limit,
            "{stat} never went to sleep (state {state:?})"
        );
        std::thread::yield_now();
    }
}

/// The `/proc` stat file of the calling thread, for another process to pass
/// to [`wait_until_asleep`].
pub fn my_thread_stat() -> String {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    format!("/proc/{}/stat", link.display())
}

/// Python's `assertTimeout(dt, timeout)`: procsync promises never to return
/// early, so the lower bound is the timeout itself (Python allows 0.6x).
pub fn assert_timeout(elapsed: Duration, timeout: Duration) {
    assert!(
        elapsed >= timeout,
        "returned early: {elapsed:?} < {timeout:?}"
    );
    assert!(
        elapsed < timeout + GENEROUS,
        "returned far too late: {elapsed:?}"
    );
}

/// Joins `child` within `GENEROUS`, failing the test otherwise.
pub fn join<T: DeserializeOwned>(mut child: Child<T>) -> Result<T, JoinError> {
    let result = child.join_timeout(GENEROUS);
    if let Err(JoinError::Timeout { .. }) = result {
        let _ = child.kill();
        let _ = child.join_timeout(GENEROUS);
        panic!("child {} did not finish in time", child.pid());
    }
    result
}

/// The timing half of `BaseLockTests::test_timeout`, for any lock held by
/// this process: in another process, `attempt(SHORT)` (a timed lock that
/// returns whether it timed out) must time out, and not early.
#[allow(dead_code)] // not every test file uses it
pub fn times_out_in_another_process(attempt: impl Fn(Duration) -> bool) {
    let results = Bunch::start(1, |_| {
        let started = Instant::now();
        (attempt(SHORT), started.elapsed())
    })
    .join();
    let (timed_out, elapsed) = results[0];
    assert!(timed_out);
    assert_timeout(elapsed, SHORT);
}
