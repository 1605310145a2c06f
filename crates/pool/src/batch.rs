//! Outcomes on their way from the manager to a job's handle, in the
//! workers' buffers as they came (decoded only by the handle, in its own
//! thread).

use crate::error::TaskError;
use crate::wire::{outcome, Items};

/// Outcomes for one job: each with the index of its input in the job.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    parts: Vec<Part>,
    len: usize,
}

#[derive(Debug)]
enum Part {
    /// Outcome items of one worker message; `indices[k]` is the input of
    /// item `k`, or [`SKIP`] for an item already delivered.
    Outcomes { indices: Vec<usize>, items: Items },
    /// An outcome decided in the owner (a death, a timeout, a refused
    /// input, the end of the pool).
    Failed(usize, TaskError),
}

/// In [`Batch::outcomes`]' indices: an item to leave out.
pub(crate) const SKIP: usize = usize::MAX;

impl Batch {
    /// Outcomes in the handle's hands: how many.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether there is none.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds the outcome items of a worker message, item `k` for the input
    /// `indices[k]` (left out where that is [`SKIP`]).
    pub(crate) fn outcomes(&mut self, indices: Vec<usize>, items: Items) {
        debug_assert_eq!(indices.len(), items.len());
        let delivered = indices.iter().filter(|&&i| i != SKIP).count();
        if delivered > 0 {
            self.len += delivered;
            self.parts.push(Part::Outcomes { indices, items });
        }
    }

    /// Adds an outcome decided in the owner.
    pub(crate) fn failed(&mut self, index: usize, error: TaskError) {
        self.len += 1;
        self.parts.push(Part::Failed(index, error));
    }

    /// Adds every outcome of `other`.
    pub(crate) fn append(&mut self, mut other: Batch) {
        self.len += other.len;
        self.parts.append(&mut other.parts);
    }

    /// Each outcome with its input's index: the encoded result, or the
    /// task's error.
    pub(crate) fn for_each(self, mut f: impl FnMut(usize, Result<&[u8], TaskError>)) {
        for part in self.parts {
            match part {
                Part::Outcomes { indices, items } => {
                    for (&index, item) in indices.iter().zip(items.iter()) {
                        if index != SKIP {
                            f(index, outcome::read(item));
                        }
                    }
                }
                Part::Failed(index, error) => f(index, Err(error)),
            }
        }
    }
}
