//! What the pool's crash-point suites share: the task, and how a run's
//! outcomes are judged.

use pool::TaskError;
use shm::crash::Action;

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
