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
    /// Outcome items of one worker message; `indices` give the input of
    /// each item (or [`SKIP`] for an item already delivered).
    Outcomes { indices: Indices, items: Items },
    /// An outcome decided in the owner (a death, a timeout, a refused
    /// input, the end of the pool).
    Failed(usize, TaskError),
}

/// In [`Batch::outcomes`]' indices: an item to leave out.
pub(crate) const SKIP: usize = usize::MAX;

/// The inputs of a chunk's items (or of a worker message's outcomes), item
/// by item: their indices in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Indices {
    /// `first`, `first + 1`, ... (every chunk of a `map`): no allocation,
    /// so a chunk of one task costs none for its index on its way from the
    /// caller to the manager and back to the handle.
    Run { first: usize, len: usize },
    /// Any others (a died chunk's items run again); in outcomes, [`SKIP`]
    /// leaves an item out.
    List(Vec<usize>),
}

impl Default for Indices {
    fn default() -> Indices {
        Indices::Run { first: 0, len: 0 }
    }
}

impl Indices {
    pub(crate) fn len(&self) -> usize {
        match self {
            Indices::Run { len, .. } => *len,
            Indices::List(list) => list.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Item `k`'s index. Panics past the end, as a slice does.
    pub(crate) fn get(&self, k: usize) -> usize {
        match self {
            Indices::Run { first, len } => {
                assert!(k < *len, "index {k} of a run of {len}");
                first + k
            }
            Indices::List(list) => list[k],
        }
    }

    /// Adds `index` after the others: still a run while it follows them.
    pub(crate) fn push(&mut self, index: usize) {
        match self {
            Indices::Run { len: 0, .. } => {
                *self = Indices::Run {
                    first: index,
                    len: 1,
                }
            }
            Indices::Run { first, len } if index == *first + *len => *len += 1,
            Indices::Run { first, len } => {
                let mut list: Vec<usize> = (*first..*first + *len).collect();
                list.push(index);
                *self = Indices::List(list);
            }
            Indices::List(list) => list.push(index),
        }
    }

    /// Items `from..to`'s indices.
    pub(crate) fn range(&self, from: usize, to: usize) -> Indices {
        match self {
            Indices::Run { first, len } => {
                assert!(
                    from <= to && to <= *len,
                    "items {from}..{to} of a run of {len}"
                );
                Indices::Run {
                    first: first + from,
                    len: to - from,
                }
            }
            Indices::List(list) => Indices::List(list[from..to].to_vec()),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        let (run, list) = match self {
            Indices::Run { first, len } => (*first..first + len, &[][..]),
            Indices::List(list) => (0..0, &list[..]),
        };
        run.chain(list.iter().copied())
    }

    /// How many items are not left out.
    fn delivered(&self) -> usize {
        self.iter().filter(|&i| i != SKIP).count()
    }
}

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
    pub(crate) fn outcomes(&mut self, indices: Indices, items: Items) {
        debug_assert_eq!(indices.len(), items.len());
        let delivered = indices.delivered();
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
                    for (index, item) in indices.iter().zip(items.iter()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_stay_a_run_while_consecutive_and_keep_every_index_after() {
        let mut indices = Indices::default();
        assert!(indices.is_empty());
        for index in 5..9 {
            indices.push(index);
        }
        assert_eq!(indices, Indices::Run { first: 5, len: 4 });
        assert_eq!(indices.range(1, 3), Indices::Run { first: 6, len: 2 });
        indices.push(20);
        indices.push(21);
        assert_eq!(indices, Indices::List(vec![5, 6, 7, 8, 20, 21]));
        assert_eq!(indices.range(3, 5), Indices::List(vec![8, 20]));
        assert_eq!(indices.iter().collect::<Vec<_>>(), [5, 6, 7, 8, 20, 21]);
    }

    #[test]
    #[should_panic(expected = "index 2 of a run of 2")]
    fn a_run_refuses_an_item_past_its_end() {
        Indices::Run { first: 7, len: 2 }.get(2);
    }

    #[test]
    fn outcomes_go_to_their_inputs_and_skipped_ones_are_left_out() {
        let mut items = Items::default();
        for result in [b"a", b"b", b"c"] {
            outcome::push_message(
                &mut items,
                outcome::PANICKED,
                std::str::from_utf8(result).unwrap(),
            );
        }
        let mut batch = Batch::default();
        batch.outcomes(Indices::Run { first: 10, len: 3 }, items.clone());
        batch.outcomes(Indices::List(vec![4, SKIP, 6]), items);
        assert_eq!(batch.len(), 5);
        let mut seen = Vec::new();
        batch.for_each(|index, outcome| seen.push((index, outcome.is_err())));
        assert_eq!(
            seen,
            [(10, true), (11, true), (12, true), (4, true), (6, true)]
        );
    }
}
