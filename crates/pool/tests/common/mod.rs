//! What the pool's test files share: the tasks, and how a crash-point
//! run's outcomes are judged.

// Each test file uses a part of these.
#![allow(dead_code)]

use std::sync::OnceLock;

use pool::TaskError;
use shm::crash::Action;
use shm::{Futex, Shared};
use testkit::{park_until_killed, raise};

/// Raised by [`parks`] each time it starts (made by the test before its
/// pool, so the workers inherit it).
pub(crate) static PARK_FLAG: OnceLock<Shared<Futex>> = OnceLock::new();

/// Tells the test it runs (through [`PARK_FLAG`]), then waits to be
/// killed.
pub(crate) fn parks(x: u64) -> u64 {
    raise(PARK_FLAG.get().expect("set"));
    park_until_killed();
    x
}

/// The task every run maps.
pub(crate) fn add_one(x: u64) -> u64 {
    x + 1
}

/// A run's outcomes: exact, lost to the armed worker (killed: `WorkerDied`;
/// stopped: `TimedOut`), or wrong.
#[derive(Debug, Default)]
pub(crate) struct Judged {
    pub(crate) exact: u64,
    pub(crate) lost: u64,
    pub(crate) wrong: Vec<String>,
}

impl Judged {
    /// Judges the outcomes of `add_one` over `0..`, in order.
    pub(crate) fn judge(&mut self, outcomes: Vec<Result<u64, TaskError>>, action: Action) {
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(v) if v == i as u64 + 1 => self.exact += 1,
                Err(TaskError::WorkerDied { .. }) if action == Action::Kill => self.lost += 1,
                Err(TaskError::TimedOut) if action == Action::Stop => self.lost += 1,
                other => self.wrong.push(format!("task {i}: {other:?}")),
            }
        }
    }
}
