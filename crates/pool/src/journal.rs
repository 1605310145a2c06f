//! A worker's outcomes kept in shared memory until they are sent, so that a
//! worker killed in the middle of a chunk costs only the task it was
//! running.
//!
//! A worker sends a chunk's outcomes in one message at the end of the chunk
//! (or when a message is full): one message per task would cost a round
//! trip per task. Until that message is sent, the outcomes of the tasks
//! that finished exist only in the worker, and a kill would lose them: they
//! could only be run again (a task run twice) or failed (a death costing a
//! whole chunk). So every outcome is also written here, in the slot's
//! journal, and made part of it by one store: the journal's `COMMITTED`
//! word, which holds the count of outcomes and their length in bytes
//! together. The manager reads a journal only once its worker is dead,
//! and takes the outcomes committed there as if they had been sent.
//!
//! | word | written by the worker | read by the manager (worker dead) |
//! |---|---|---|
//! | `FIRST_TID` | the chunk's first task id, while `COMMITTED` is 0 | which chunk |
//! | `OFFSET` | the index in the chunk of the first outcome kept | which items |
//! | `COMMITTED` | `count << 32 \| bytes` after the bytes; 0 once sent | how many |
//! | data | the outcome items (`Items`' bytes), 8 per word | the outcomes |
//!
//! A kill between a store of data and the store of `COMMITTED` leaves the
//! data beyond what is committed, never read. A kill after the message was
//! sent and before `COMMITTED` went back to 0 leaves outcomes that also
//! came by the message: the manager delivers each task's outcome once
//! (its per-item `done` flags), whichever comes first (the message: the
//! worker's exit reaches the manager after everything it sent).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::Items;

const FIRST_TID: usize = 0;
const OFFSET: usize = 1;
const COMMITTED: usize = 2;
/// Words before the data.
const HEADER: usize = 3;

/// Words of a journal for messages of at most `budget` bytes.
pub(crate) fn words(budget: usize) -> usize {
    HEADER + budget.div_ceil(8)
}

/// One slot's journal: [`words`] words of shared memory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Journal<'a> {
    words: &'a [AtomicU64],
}

/// Outcomes found in a dead worker's journal.
#[derive(Debug)]
pub(crate) struct Kept {
    pub(crate) first_tid: u64,
    pub(crate) offset: u32,
    pub(crate) outcomes: Items,
}

impl<'a> Journal<'a> {
    pub(crate) fn new(words: &'a [AtomicU64]) -> Journal<'a> {
        debug_assert!(words.len() > HEADER);
        Journal { words }
    }

    /// Empties the journal: the manager, before it forks the slot's
    /// worker, and the worker once the outcomes it kept are sent.
    pub(crate) fn clear(&self) {
        self.words[COMMITTED].store(0, Ordering::Release);
    }

    /// Starts keeping the outcomes of the chunk `first_tid` from its item
    /// `offset` on. The journal is empty (the store of `COMMITTED` that
    /// emptied it came first), so a kill in between leaves nothing to read.
    pub(crate) fn begin(&self, first_tid: u64, offset: u32) {
        self.words[FIRST_TID].store(first_tid, Ordering::Relaxed);
        self.words[OFFSET].store(u64::from(offset), Ordering::Relaxed);
    }

    /// Keeps `outcomes` (all of them, kept since [`begin`](Journal::begin)):
    /// copies the bytes not copied yet (`from` on: the length of what was
    /// kept before), then commits them with one store.
    pub(crate) fn keep(&self, outcomes: &Items, from: usize) {
        let bytes = outcomes.as_bytes();
        let data = &self.words[HEADER..];
        if bytes.len() > data.len() * 8 {
            // Cannot happen: a message's outcomes fit its budget, and the
            // journal holds a budget. Not kept, rather than kept torn.
            return;
        }
        // From the word holding byte `from`: its first bytes are copied
        // again, unchanged.
        for (w, chunk) in bytes.chunks(8).enumerate().skip(from / 8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            data[w].store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        let committed = (outcomes.len() as u64) << 32 | bytes.len() as u64;
        // Release: the data above is in place for whoever reads this.
        self.words[COMMITTED].store(committed, Ordering::Release);
    }

    /// What a dead worker kept: `None` if nothing, or if the journal does
    /// not hold whole items (it cannot, but it is read from shared memory).
    pub(crate) fn kept(&self) -> Option<Kept> {
        let committed = self.words[COMMITTED].load(Ordering::Acquire);
        let (count, len) = (
            (committed >> 32) as usize,
            (committed & 0xffff_ffff) as usize,
        );
        let data = &self.words[HEADER..];
        if count == 0 || len > data.len() * 8 {
            return None;
        }
        let mut bytes = Vec::with_capacity(len.next_multiple_of(8));
        for word in &data[..len.div_ceil(8)] {
            bytes.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        bytes.truncate(len);
        let outcomes = Items::from_bytes(bytes).filter(|items| items.len() == count)?;
        Some(Kept {
            first_tid: self.words[FIRST_TID].load(Ordering::Relaxed),
            offset: self.words[OFFSET].load(Ordering::Relaxed) as u32,
            outcomes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(budget: usize) -> Vec<AtomicU64> {
        (0..words(budget)).map(|_| AtomicU64::new(0)).collect()
    }

    /// What is kept is read back whole, item by item as it grew; nothing
    /// once cleared.
    #[test]
    fn kept_outcomes_read_back_as_they_grew() {
        let words = journal(1024);
        let j = Journal::new(&words);
        assert!(j.kept().is_none());
        j.begin(41, 3);
        let mut items = Items::default();
        for n in 0..20u64 {
            let from = items.byte_len();
            items.push_encoded(&(n * 1000)).expect("encode");
            j.keep(&items, from);
            let kept = j.kept().expect("kept");
            assert_eq!((kept.first_tid, kept.offset), (41, 3));
            assert_eq!(kept.outcomes, items);
        }
        j.clear();
        assert!(j.kept().is_none());
    }

    /// A commit word that promises more than the data holds reads as
    /// nothing, not as torn items.
    #[test]
    fn a_torn_journal_reads_as_nothing() {
        let words = journal(64);
        let j = Journal::new(&words);
        let mut items = Items::default();
        items.push(&[1, 2, 3]);
        j.keep(&items, 0);
        words[COMMITTED].store(1 << 32 | 5, Ordering::Release);
        assert!(j.kept().is_none());
        words[COMMITTED].store(2 << 32 | 7, Ordering::Release);
        assert!(j.kept().is_none());
    }
}
