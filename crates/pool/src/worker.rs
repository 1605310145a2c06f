//! The worker's side: a loop over its task queue, in a forked child.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

use queue::{GetError, Queue};

use crate::journal::{self, Journal};
use crate::wire::{outcome, Event, Items, TaskMsg, ITEM_OVERHEAD, MESSAGE_OVERHEAD};

/// The names of a worker's crash points (see `shm::crash`), in the order
/// it reaches them: its queue rows attached, a chunk taken from its queue,
/// an item's start recorded, an item's end recorded, its outcome kept in
/// the journal, a chunk's outcomes sent.
pub const POOL_CRASH_POINTS: &[&str] = &[
    "pool worker: attached",
    "pool worker: chunk taken",
    "pool worker: item started",
    "pool worker: item finished",
    "pool worker: outcome kept",
    "pool worker: outcomes sent",
];

/// Words of a worker slot's record (one cache line), the first of its
/// words (see [`slot_words`]).
pub(crate) const RECORD_WORDS: usize = 8;

/// Words of shared memory per worker slot: its record, then its journal
/// (see `journal`) for messages of `budget` bytes.
pub(crate) fn slot_words(budget: usize) -> usize {
    RECORD_WORDS + journal::words(budget)
}
/// The task id + 1 of the item the slot's worker is running (0: none).
pub(crate) const RUNNING: usize = 0;
/// CLOCK_MONOTONIC ns when that item started (written before `RUNNING`;
/// only when the pool has a timeout).
pub(crate) const STARTED: usize = 1;
/// 1 once the worker has run the initializer and attached to its queues
/// (reset to 0 by the manager before each fork).
pub(crate) const READY: usize = 2;
/// The task id + 1 of the last item the slot's worker started (0: none
/// yet; reset by the manager before each fork, never by the worker).
/// Written before the function is called: after a death, every item of the
/// taken chunk up to it has run, whole or in part, and is never run again
/// unless by `retries`; the items after it never started.
pub(crate) const BEGUN: usize = 3;

/// What a worker is told at its fork.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WorkerConfig {
    pub(crate) initializer: Option<fn()>,
    pub(crate) max_tasks: Option<u64>,
    pub(crate) timed: bool,
    pub(crate) budget: usize,
}

/// The worker loop: runs chunks from `tasks` until the queue is
/// disconnected (the pool closed) or `max_tasks` chunks are done, sending
/// outcomes to `inbox` and recording the running item in `record`.
pub(crate) fn run(
    slot: u32,
    tasks: &Queue<TaskMsg>,
    inbox: &Queue<Event>,
    slot_words: &[AtomicU64],
    config: WorkerConfig,
) {
    let (record, journal) = slot_words.split_at(RECORD_WORDS);
    let journal = Journal::new(journal);
    if let Some(initializer) = config.initializer {
        initializer();
    }
    // This process's own rows (claimed here, not moved from the owner).
    let (Ok(rx), Ok(tx)) = (tasks.receiver(), inbox.sender()) else {
        daemon::exit(EXIT_NO_ROW);
    };
    record[READY].store(1, Ordering::SeqCst);
    shm::crash_point!(POOL_CRASH_POINTS, "pool worker: attached");
    let mut chunks_done = 0u64;
    loop {
        let msg = match rx.get() {
            Ok(msg) => msg,
            Err(GetError::Disconnected) => return,
            Err(_) => daemon::exit(EXIT_BAD_TASK),
        };
        shm::crash_point!(POOL_CRASH_POINTS, "pool worker: chunk taken");
        // A result larger than this is refused (as large an argument was,
        // at submission).
        let max_result = config.budget - MESSAGE_OVERHEAD - ITEM_OVERHEAD;
        let mut outcomes = Items::default();
        let mut offset = 0u32;
        // Empty since the last message went (or since the fork).
        journal.begin(msg.first_tid, offset);
        for (k, arg) in msg.args.iter().enumerate() {
            if config.timed {
                // SeqCst, as `RUNNING` after it: the manager's reads
                // (RUNNING, STARTED, RUNNING) then see this item's start
                // whenever both reads of RUNNING name it.
                record[STARTED].store(shm::sync::monotonic_ns(), Ordering::SeqCst);
            }
            let tid = msg.first_tid + k as u64 + 1;
            // Read by the manager only after this process is dead (its
            // exit is the synchronisation): no stronger order needed.
            record[BEGUN].store(tid, Ordering::Release);
            record[RUNNING].store(tid, Ordering::SeqCst);
            shm::crash_point!(POOL_CRASH_POINTS, "pool worker: item started");
            let (mark, count) = (outcomes.byte_len(), outcomes.len());
            // The result is encoded straight after its tag in the buffer
            // of outcomes: no allocation per task.
            let ran = catch_unwind(AssertUnwindSafe(|| {
                outcomes.push_with(|bytes| {
                    bytes.push(outcome::OK);
                    msg.call.run(arg, bytes)
                })
            }));
            record[RUNNING].store(0, Ordering::SeqCst);
            shm::crash_point!(POOL_CRASH_POINTS, "pool worker: item finished");
            match ran {
                Ok(Ok(len)) if len - 1 > max_result => {
                    outcomes.truncate_to(mark, count);
                    outcome::push_too_large(&mut outcomes, len - 1, max_result);
                }
                Ok(Ok(_)) => {}
                Ok(Err(message)) => outcome::push_message(&mut outcomes, outcome::FAILED, &message),
                Err(payload) => {
                    // Unwound out of `push_with`: its partial item is
                    // still there.
                    outcomes.truncate_to(mark, count);
                    let message = panic_message(payload.as_ref(), config.budget);
                    outcome::push_message(&mut outcomes, outcome::PANICKED, &message);
                }
            }
            if outcomes.byte_len() + MESSAGE_OVERHEAD > config.budget && outcomes.len() > 1 {
                // The last one does not fit with the others: they go now,
                // and it starts the journal again.
                let last = outcomes.split_off(mark, count);
                let sent = outcomes.len() as u32;
                send(
                    &tx,
                    slot,
                    msg.first_tid,
                    offset,
                    std::mem::replace(&mut outcomes, last),
                );
                journal.clear();
                offset += sent;
                journal.begin(msg.first_tid, offset);
                journal.keep(&outcomes, 0);
            } else {
                journal.keep(&outcomes, mark);
            }
            shm::crash_point!(POOL_CRASH_POINTS, "pool worker: outcome kept");
        }
        send(&tx, slot, msg.first_tid, offset, outcomes);
        // Sent: a kill from here on must not count them again (they would
        // be passed over anyway, as delivered).
        journal.clear();
        shm::crash_point!(POOL_CRASH_POINTS, "pool worker: outcomes sent");
        chunks_done += 1;
        if config.max_tasks.is_some_and(|max| chunks_done >= max) {
            return;
        }
    }
}

fn send(tx: &queue::Sender<'_, Event>, slot: u32, first_tid: u64, offset: u32, outcomes: Items) {
    let event = Event::Results {
        slot,
        first_tid,
        offset,
        outcomes,
    };
    if tx.put(event).is_err() {
        // Cannot happen with the sizes checked above; the owner sees the
        // exit and re-dispatches what had no outcome.
        daemon::exit(EXIT_BAD_RESULT);
    }
}

/// A worker's exit codes when the pool's own machinery fails.
const EXIT_NO_ROW: i32 = 90;
const EXIT_BAD_TASK: i32 = 91;
const EXIT_BAD_RESULT: i32 = 92;

/// What ends a panic message that was cut to fit.
const CUT_MARK: &str = "… (cut)";

/// The panic's message (a `&str` or `String` payload), cut to fit a
/// message on its own: at most what an item may take (the budget less the
/// message's and the item's overhead, as for an argument), cut on a
/// character boundary and ended with [`CUT_MARK`]. So a panic is always
/// `Panicked`, never `TooLarge`, at any budget the builder allows.
fn panic_message(payload: &(dyn std::any::Any + Send), budget: usize) -> String {
    let mut message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a payload that is not a string".to_string()
    };
    let max = budget - MESSAGE_OVERHEAD - ITEM_OVERHEAD;
    if message.len() > max {
        let mut cut = max - CUT_MARK.len();
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(CUT_MARK);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cut message's outcome fits a message at every budget from the
    /// smallest the builder allows.
    #[test]
    fn a_cut_panic_message_fits_its_message() {
        for budget in [138, 139, 200, 1 << 10, 1 << 14, 1 << 16, 1 << 21] {
            for c in ["x", "é", "€", "🦀"] {
                let payload: Box<dyn std::any::Any + Send> = Box::new(c.repeat(budget));
                let message = panic_message(payload.as_ref(), budget);
                assert!(message.ends_with(CUT_MARK), "{budget}");
                let mut items = Items::default();
                outcome::push_message(&mut items, outcome::PANICKED, &message);
                let size = items.byte_len();
                assert!(size + MESSAGE_OVERHEAD <= budget, "{budget} {c}: {size}");
            }
        }
    }
}
