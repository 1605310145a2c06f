//! The queue's protocol over its shared words: a ring of message slots
//! written by one producer at a time and read by one consumer at a time,
//! each side under its own robust lock, with endpoint rows for
//! disconnection and task accounting.
//!
//! # Words
//!
//! The shared memory is a run of [`Line`]s (eight 64-bit words each):
//!
//! | line | words | written by | meaning |
//! |------|-------|------------|---------|
//! | 0 | `MAGIC`, `VERSION`, `CAPACITY`, `SLOT_WORDS`, `ROWS`, `MAX_BYTES`, `FLAGS`, `TYPE_LEN` | the creator, before publishing | what this queue is |
//! | 1–2 | the message type's name, 128 bytes | the creator | checked by `open` |
//! | 3 | `PRODUCER_LOCK`, `CACHED_HEAD` | producers, under their lock | who puts now; a stale copy of `HEAD` |
//! | 4 | `TAIL`, `DATA_EVENTS` | producers | messages ever committed; consumers sleep here |
//! | 5 | `CONSUMER_LOCK`, `CACHED_TAIL`, `JOURNAL`, `JOURNAL_A`, `JOURNAL_B`, `LOST` | consumers, under their lock | who gets now; a stale copy of `TAIL`; a change half-made; messages lost with a consumer |
//! | 6 | `HEAD`, `SPACE_EVENTS` | consumers | messages ever taken; producers sleep here |
//! | 7 | `PRODUCERS_EVER`, `CONSUMERS_EVER`, `DONE_EVENTS`, `ATTACHES`, `CLOSES` | endpoints | whether each side ever attached; `join` sleeps here; rows claimed ever (see "Disconnection"); closes ever (a waiter judges liveness again when either moves) |
//! | 8.. | `ROWS` endpoint rows of four words: owner, role, taken, done | the row's owner (and consumers under their lock) | one per `Sender`/`Receiver`; owner 0 is free, `RECLAIMING` is being freed after its owner died |
//! | then | `CAPACITY` slots of `SLOT_WORDS` words: byte length, then the bytes | the side that owns the slot | messages |
//!
//! # Why a message is never torn, lost or delivered twice
//!
//! A slot between `HEAD` and `TAIL` holds a committed message; the slot at
//! `TAIL` belongs to the producer holding the producer lock, the slot at
//! `HEAD` to the consumer holding the consumer lock. Each side changes the
//! ring's state with exactly one store (`TAIL += 1` after the bytes are in;
//! `HEAD += 1` after they are copied out):
//!
//! - a producer killed before its store leaves bytes nobody will read (the
//!   next producer, told by its lock that the holder died, writes over
//!   them); killed after it, the message is whole and committed;
//! - a consumer killed before its store leaves the message in the queue for
//!   the next consumer (the dead one never returned it); killed after it,
//!   the message was taken, once.
//!
//! The robust locks ([`RawLock`]) hand a dead holder's lock to the next
//! process with [`Acquired::OwnerDied`]; the only state that needs repair
//! then is the consumers' task accounting, kept by a journal (below).
//!
//! # Sleeping without missing a wake-up
//!
//! `DATA_EVENTS` and `SPACE_EVENTS` are event counts: a sleeper reads the
//! count before it judges that it must wait, sets the [`SLEEPERS`] bit with
//! a compare-and-swap from that count (failing if anything changed since),
//! looks at the ring again, then sleeps on the word; the side that commits
//! stores `TAIL`/`HEAD`, reads the event word with a read-modify-write, and
//! only if the bit is set bumps the count and wakes. The two operations on
//! the event word are ordered: either the committer's sees the bit, or the
//! sleeper's CAS acquires the commit and its second look sees it.
//! Endpoint changes (an attach, a close) bump every count, so a sleeper
//! that judged "producers remain" before a close is woken to judge again. A committer killed between its store and its wake
//! delays a sleeper by at most [`RECHECK_AT_MOST`](shm::futex::RECHECK_AT_MOST):
//! sleepers look again on that schedule, which also notices dead endpoints.
//!
//! # Disconnection
//!
//! A side is disconnected when it ever attached and a scan of the rows
//! finds no live owner in its role. A scan is not atomic: an endpoint may
//! claim a row the scan has passed and then close the row the scan has not
//! reached yet (a `clone` then a `drop`, or a hand-over between two
//! processes), and the scan would see neither. So every claim counts
//! itself in `ATTACHES` once its row is complete (as does a process that
//! adopts a row, whose old owner may exit while the scan runs), and a scan that finds
//! nobody counts as disconnected only if `ATTACHES` did not move while it
//! ran: the release the scan saw happened after the claim it missed, so
//! the claim's count is visible to the scan's last look.
//!
//! # Task accounting (joinable queues)
//!
//! Each consumer row counts messages taken and marked done (a corrupt slot
//! that `get` skips is taken by nobody). A `get` on a joinable queue writes `JOURNAL_A` (the position taken) and `JOURNAL_B`
//! (the row's count before), arms `JOURNAL` with the row, stores the new
//! count, commits `HEAD`, and disarms. A consumer that takes the lock over
//! from a dead holder finds the journal armed and sets the count to what
//! `HEAD` says happened: before + 1 if the commit was made, before if not.
//! Folding a dead or closed row into `LOST` is journalled the same way
//! (`LOST` before, and the amount), so a replay stores the same values;
//! the row is first marked `RECLAIMING`, and a replay resets and frees it
//! only while it still is, so it never touches a row claimed since.

use std::time::Instant;

use shm::futex::{Recheck, SLEEPERS};
use shm::lockword::{Acquired, RawLock, RawLockGuard};
use shm::pid;
use shm::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use shm::Futex64;

use crate::line::Line;

/// Crash points after each shared store of the multi-store paths (see
/// `shm::crash`); the crash-point suite arms each in turn.
pub const QUEUE_CRASH_POINTS: &[&str] = &[
    "queue put: slot written",
    "queue put: committed",
    "queue put: unlocked",
    "queue get: journal armed",
    "queue get: taken counted",
    "queue get: committed",
    "queue get: journal cleared",
    "queue get: unlocked",
    "queue row: claimed",
    "queue row: role set",
    "queue fold: row taken",
    "queue fold: journal armed",
    "queue fold: lost added",
    "queue fold: row reset",
    "queue fold: row freed",
];

/// "PSQUEUE1", little-endian: the first word of every queue.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"PSQUEUE1");
/// The protocol's version; a queue of another version does not open.
pub(crate) const VERSION: u64 = 1;
/// Endpoint rows per queue: how many `Sender`s and `Receiver`s can be
/// attached at once (rows of dead processes are reclaimed).
pub const MAX_ENDPOINTS: usize = 128;
/// Bytes of the message type's name kept in the header.
pub(crate) const TYPE_NAME_BYTES: usize = 128;

/// Bit of `FLAGS`: the queue keeps task accounting (`task_done`, `join`).
pub(crate) const JOINABLE: u64 = 1;

// Line 0.
const W_MAGIC: usize = 0;
const W_VERSION: usize = 1;
const W_CAPACITY: usize = 2;
const W_SLOT_WORDS: usize = 3;
const W_ROWS: usize = 4;
const W_MAX_BYTES: usize = 5;
const W_FLAGS: usize = 6;
const W_TYPE_LEN: usize = 7;
// Lines 1-2.
const W_TYPE_NAME: usize = 8;
// Line 3.
const W_PRODUCER_LOCK: usize = 24;
const W_CACHED_HEAD: usize = 25;
// Line 4.
const W_TAIL: usize = 32;
const W_DATA_EVENTS: usize = 33;
// Line 5.
const W_CONSUMER_LOCK: usize = 40;
const W_CACHED_TAIL: usize = 41;
const W_JOURNAL: usize = 42;
const W_JOURNAL_A: usize = 43;
const W_JOURNAL_B: usize = 44;
const W_LOST: usize = 45;
// Line 6.
const W_HEAD: usize = 48;
const W_SPACE_EVENTS: usize = 49;
// Line 7.
const W_PRODUCERS_EVER: usize = 56;
const W_CONSUMERS_EVER: usize = 57;
const W_DONE_EVENTS: usize = 58;
const W_ATTACHES: usize = 59;
const W_CLOSES: usize = 60;
// Lines 8..: rows.
const W_ROWS_START: usize = 64;
const ROW_WORDS: usize = 4;
const ROW_OWNER: usize = 0;
const ROW_ROLE: usize = 1;
const ROW_TAKEN: usize = 2;
const ROW_DONE: usize = 3;

/// The owner word of a row being folded and freed, under the consumer
/// lock (taken from its dead owner by a reclaimer, or given up by a closing
/// consumer of a joinable queue): no identity (its pid field is
/// `PID_MAX_LIMIT`, which no process has), so it counts as dead, no handle
/// adopts it, and nobody claims it until the fold frees it.
const RECLAIMING: u64 = 1 << 22;

/// `JOURNAL` kinds (the row index + 1 is in the low 32 bits).
const JOURNAL_TAKE: u64 = 1 << 32;
const JOURNAL_FOLD: u64 = 2 << 32;
const JOURNAL_ROW: u64 = (1 << 32) - 1;

/// The counter bits of an event word (below the sleepers bit).
const EVENT_COUNT: u64 = SLEEPERS as u64 - 1;

/// What an endpoint row stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Producer = 1,
    Consumer = 2,
}

/// The first line of slots, after the header and the rows.
const fn first_slot_line(rows: usize) -> usize {
    (W_ROWS_START + rows * ROW_WORDS).div_ceil(8)
}

/// What the header keeps of a message type's name: its first
/// [`TYPE_NAME_BYTES`] bytes, as [`Ring::type_name`] reads them back. `open`
/// compares this, not the whole name, with what it finds (review 5: a
/// longer name never matched itself).
pub(crate) fn recorded_type_name(name: &str) -> String {
    let bytes = name.as_bytes();
    String::from_utf8_lossy(&bytes[..bytes.len().min(TYPE_NAME_BYTES)]).into_owned()
}

/// What a new queue is: the fixed part of its header.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) capacity: u64,
    pub(crate) max_bytes: usize,
    pub(crate) joinable: bool,
    pub(crate) type_name: String,
}

impl Config {
    /// Words per slot: the length word and the bytes, in whole lines.
    pub(crate) fn slot_words(&self) -> usize {
        (1 + self.max_bytes.div_ceil(8)).div_ceil(8) * 8
    }

    /// How many lines the queue takes.
    pub(crate) fn lines(&self) -> Option<usize> {
        let slots = usize::try_from(self.capacity)
            .ok()?
            .checked_mul(self.slot_words() / 8)?;
        first_slot_line(MAX_ENDPOINTS).checked_add(slots)
    }

    /// Line `i` of a new queue: the header's first three lines, zeros after.
    pub(crate) fn line(&self, i: usize) -> Line {
        let name = self.type_name.as_bytes();
        let name = &name[..name.len().min(TYPE_NAME_BYTES)];
        match i {
            0 => Line::of([
                MAGIC,
                VERSION,
                self.capacity,
                self.slot_words() as u64,
                MAX_ENDPOINTS as u64,
                self.max_bytes as u64,
                if self.joinable { JOINABLE } else { 0 },
                name.len() as u64,
            ]),
            1 | 2 => {
                let mut words = [0u64; 8];
                let start = (i - 1) * 64;
                for (w, word) in words.iter_mut().enumerate() {
                    let mut bytes = [0u8; 8];
                    for (b, byte) in bytes.iter_mut().enumerate() {
                        *byte = name.get(start + w * 8 + b).copied().unwrap_or(0);
                    }
                    *word = u64::from_le_bytes(bytes);
                }
                Line::of(words)
            }
            _ => Line::zeroed(),
        }
    }
}

/// Why a run of lines is not a queue this program can use.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Invalid {
    NotAQueue,
    Version(u64),
    Shape,
}

/// A queue's fixed header, as read and checked once ([`Ring::new`]) when
/// the queue was made or opened. Kept by the handle: words that another
/// process overwrites later change nothing about the shape this process
/// uses, which the mapping's length fixes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    capacity: u64,
    slot_words: usize,
    max_bytes: usize,
    joinable: bool,
    rows: usize,
}

/// A view of a queue's lines, with its fixed header read once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ring<'a> {
    lines: &'a [Line],
    capacity: u64,
    slot_words: usize,
    max_bytes: usize,
    joinable: bool,
    rows: usize,
}

/// Why a put could not commit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PutFailure {
    Full,
}

/// Why a get found nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GetFailure {
    Empty,
    /// The slot's length word is beyond the queue's limit: the slot was
    /// written by something that does not follow the protocol. The slot is
    /// skipped (taken), so the queue goes on.
    Corrupt(u64),
}

impl<'a> Ring<'a> {
    /// Reads the header of `lines` and checks that it describes them.
    pub(crate) fn new(lines: &'a [Line]) -> Result<Ring<'a>, Invalid> {
        let word = |i: usize| lines[i / 8].0[i % 8].load(Relaxed);
        if lines.len() < first_slot_line(MAX_ENDPOINTS) || word(W_MAGIC) != MAGIC {
            return Err(Invalid::NotAQueue);
        }
        if word(W_VERSION) != VERSION {
            return Err(Invalid::Version(word(W_VERSION)));
        }
        let capacity = word(W_CAPACITY);
        let slot_words = usize::try_from(word(W_SLOT_WORDS)).map_err(|_| Invalid::Shape)?;
        let max_bytes = usize::try_from(word(W_MAX_BYTES)).map_err(|_| Invalid::Shape)?;
        let rows = usize::try_from(word(W_ROWS)).map_err(|_| Invalid::Shape)?;
        let expected = Config {
            capacity,
            max_bytes,
            joinable: false,
            type_name: String::new(),
        };
        if capacity == 0
            || rows != MAX_ENDPOINTS
            || slot_words != expected.slot_words()
            || expected.lines() != Some(lines.len())
        {
            return Err(Invalid::Shape);
        }
        Ok(Ring {
            lines,
            capacity,
            slot_words,
            max_bytes,
            joinable: word(W_FLAGS) & JOINABLE != 0,
            rows,
        })
    }

    /// The header this view was checked with.
    pub(crate) fn header(&self) -> Header {
        Header {
            capacity: self.capacity,
            slot_words: self.slot_words,
            max_bytes: self.max_bytes,
            joinable: self.joinable,
            rows: self.rows,
        }
    }

    /// A view of `lines` with `header`, which [`Ring::new`] checked
    /// against these very lines (their number never changes).
    #[inline]
    pub(crate) fn with_header(lines: &'a [Line], header: Header) -> Ring<'a> {
        Ring {
            lines,
            capacity: header.capacity,
            slot_words: header.slot_words,
            max_bytes: header.max_bytes,
            joinable: header.joinable,
            rows: header.rows,
        }
    }

    #[inline]
    fn w(&self, i: usize) -> &'a Futex64 {
        &self.lines[i / 8].0[i % 8]
    }

    fn row_word(&self, row: usize, field: usize) -> &'a Futex64 {
        self.w(W_ROWS_START + row * ROW_WORDS + field)
    }

    /// The lines of the slot for `position`: its index computed once per
    /// message, not once per word.
    #[inline]
    fn slot(&self, position: u64) -> &'a [Line] {
        // The slot index is below `capacity`, which fits usize (checked by
        // `Config::lines` when the lines were counted, and `Ring::new`
        // checked that the lines are all there).
        let slot = (position % self.capacity) as usize;
        let lines = self.slot_words / 8;
        let first = first_slot_line(self.rows) + slot * lines;
        &self.lines[first..first + lines]
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(crate) fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    pub(crate) fn joinable(&self) -> bool {
        self.joinable
    }

    /// The message type's name the creator recorded.
    pub(crate) fn type_name(&self) -> String {
        let len = (self.w(W_TYPE_LEN).load(Relaxed) as usize).min(TYPE_NAME_BYTES);
        let bytes: Vec<u8> = (0..TYPE_NAME_BYTES / 8)
            .flat_map(|i| self.w(W_TYPE_NAME + i).load(Relaxed).to_le_bytes())
            .take(len)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Messages committed and not yet taken, read from `HEAD` and `TAIL`
    /// as they stand, or why those words cannot be a queue's (for
    /// `inspect`, which reads a copy whose words nothing keeps true).
    pub(crate) fn checked_len(&self) -> Result<u64, String> {
        let head = self.w(W_HEAD).load(Acquire);
        let tail = self.w(W_TAIL).load(Acquire);
        let Some(len) = tail.checked_sub(head) else {
            return Err(format!(
                "its head ({head}: messages ever taken) is past its tail ({tail}: messages ever put)"
            ));
        };
        if len > self.capacity {
            return Err(format!(
                "its head and tail ({head}, {tail}) say {len} messages, more than its capacity ({})",
                self.capacity
            ));
        }
        Ok(len)
    }

    /// Messages committed and not yet taken, at some moment during the call.
    pub(crate) fn len(&self) -> u64 {
        let head = self.w(W_HEAD).load(Acquire);
        let tail = self.w(W_TAIL).load(Acquire);
        tail.saturating_sub(head)
    }

    /// Rows attached in `role` whose owner runs now (for `inspect`).
    pub(crate) fn live_endpoints(&self, role: Role) -> usize {
        (0..self.rows)
            .filter(|&row| {
                let owner = self.row_word(row, ROW_OWNER).load(Acquire);
                owner != 0
                    && self.row_word(row, ROW_ROLE).load(Acquire) == role as u64
                    && pid::is_running_bits(owner)
            })
            .count()
    }

    /// `LOST` as it stands, read without the consumer lock (a fold that a
    /// dead consumer left half-made is not replayed: see `all_done`).
    pub(crate) fn lost_now(&self) -> u64 {
        self.w(W_LOST).load(Acquire)
    }

    /// The processes holding the producer and the consumer lock now, if
    /// any (they may have died).
    pub(crate) fn lock_holders(&self) -> (Option<pid::Identity>, Option<pid::Identity>) {
        (
            RawLock::at(self.w(W_PRODUCER_LOCK)).owner_identity(),
            RawLock::at(self.w(W_CONSUMER_LOCK)).owner_identity(),
        )
    }

    // ----- putting -------------------------------------------------------

    /// Tries once to commit `bytes` (at most `max_bytes`): takes the
    /// producer lock (waiting for other producers until `deadline`), and
    /// commits if there is a free slot.
    pub(crate) fn try_put(
        &self,
        bytes: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), Option<PutFailure>> {
        debug_assert!(bytes.len() <= self.max_bytes);
        // `None`: the deadline passed while other producers held the lock.
        let (_how, guard) = RawLock::at(self.w(W_PRODUCER_LOCK))
            .lock_guarded(deadline)
            .ok_or(None)?;
        // A producer that died holding the lock (`Acquired::OwnerDied`)
        // left at most bytes past `TAIL`, which nobody reads: nothing to
        // repair. The same holds for one that panicked.
        let tail = self.w(W_TAIL).load(Relaxed);
        let mut head = self.w(W_CACHED_HEAD).load(Relaxed);
        if tail.wrapping_sub(head) >= self.capacity {
            // Acquire: the consumer's copy out of the slot we are about
            // to overwrite happened before its `HEAD` store.
            head = self.w(W_HEAD).load(Acquire);
            self.w(W_CACHED_HEAD).store(head, Relaxed);
            if tail.wrapping_sub(head) >= self.capacity {
                return Err(Some(PutFailure::Full));
            }
        }
        let slot = self.slot(tail);
        let words = slot.iter().flat_map(|line| &line.0);
        for (chunk, word) in bytes.chunks(8).zip(words.skip(1)) {
            let mut bytes = [0u8; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_le_bytes(bytes), Relaxed);
        }
        slot[0].0[0].store(bytes.len() as u64, Relaxed);
        shm::crash_point!(QUEUE_CRASH_POINTS, "queue put: slot written");
        // The commit: releases the slot's bytes to the consumer.
        self.w(W_TAIL).store(tail.wrapping_add(1), Release);
        shm::crash_point!(QUEUE_CRASH_POINTS, "queue put: committed");
        drop(guard);
        shm::crash_point!(QUEUE_CRASH_POINTS, "queue put: unlocked");
        notify(self.w(W_DATA_EVENTS));
        Ok(())
    }

    /// The producers' event count, read before a caller judges that it
    /// must wait (the queue full, consumers gone or not): any change after
    /// this read makes [`wait_for_space`](Ring::wait_for_space) return.
    pub(crate) fn space_events(&self) -> u64 {
        self.w(W_SPACE_EVENTS).load(Acquire)
    }

    /// Sleeps until a slot may be free, an endpoint changes (since `seen`,
    /// from [`space_events`](Ring::space_events)), or the next re-check (or
    /// `deadline`).
    pub(crate) fn wait_for_space(
        &self,
        seen: u64,
        deadline: Option<Instant>,
        recheck: &mut Recheck,
    ) {
        let full = || {
            self.w(W_TAIL)
                .load(Acquire)
                .wrapping_sub(self.w(W_HEAD).load(Acquire))
                >= self.capacity
        };
        sleep_while(self.w(W_SPACE_EVENTS), seen, full, deadline, recheck);
    }

    // ----- getting -------------------------------------------------------

    /// Tries once to take the message at `HEAD` into `out`, counting it
    /// for `row` on a joinable queue.
    pub(crate) fn try_get(
        &self,
        row: usize,
        out: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<(), Option<GetFailure>> {
        let guard = self.lock_consumers(deadline).ok_or(None)?;
        let head = self.w(W_HEAD).load(Relaxed);
        let mut tail = self.w(W_CACHED_TAIL).load(Relaxed);
        if head == tail {
            // Acquire: the producer's slot stores happened before its
            // `TAIL` store.
            tail = self.w(W_TAIL).load(Acquire);
            self.w(W_CACHED_TAIL).store(tail, Relaxed);
            if head == tail {
                return Err(Some(GetFailure::Empty));
            }
        }
        let slot = self.slot(head);
        let len = slot[0].0[0].load(Relaxed);
        let corrupt = len > self.max_bytes as u64;
        if !corrupt {
            out.clear();
            out.resize(len as usize, 0);
            let words = slot.iter().flat_map(|line| &line.0);
            for (chunk, word) in out.chunks_mut(8).zip(words.skip(1)) {
                let bytes = word.load(Relaxed).to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
        }
        // A corrupt slot is skipped, not received: no task to mark done
        // (review 5: `join` waited for it).
        let counted = self.joinable && !corrupt;
        if counted {
            let taken = self.row_word(row, ROW_TAKEN);
            let before = taken.load(Relaxed);
            self.w(W_JOURNAL_A).store(head, Relaxed);
            self.w(W_JOURNAL_B).store(before, Relaxed);
            self.w(W_JOURNAL)
                .store(JOURNAL_TAKE | (row as u64 + 1), Release);
            shm::crash_point!(QUEUE_CRASH_POINTS, "queue get: journal armed");
            // Wrapping: only a count written by something else reaches the
            // end of the range, and that must not panic (review 5).
            taken.store(before.wrapping_add(1), Relaxed);
            shm::crash_point!(QUEUE_CRASH_POINTS, "queue get: taken counted");
        }
        // The commit: releases the slot back to producers after our copy
        // out.
        self.w(W_HEAD).store(head.wrapping_add(1), Release);
        shm::crash_point!(QUEUE_CRASH_POINTS, "queue get: committed");
        if counted {
            self.w(W_JOURNAL).store(0, Release);
            shm::crash_point!(QUEUE_CRASH_POINTS, "queue get: journal cleared");
        }
        drop(guard);
        shm::crash_point!(QUEUE_CRASH_POINTS, "queue get: unlocked");
        notify(self.w(W_SPACE_EVENTS));
        if corrupt {
            return Err(Some(GetFailure::Corrupt(len)));
        }
        Ok(())
    }

    /// The consumers' event count, read before a caller judges that it
    /// must wait (the queue empty, producers gone or not): any change after
    /// this read makes [`wait_for_data`](Ring::wait_for_data) return.
    pub(crate) fn data_events(&self) -> u64 {
        self.w(W_DATA_EVENTS).load(Acquire)
    }

    /// Sleeps until a message may be there, an endpoint changes (since
    /// `seen`, from [`data_events`](Ring::data_events)), or the next
    /// re-check (or `deadline`).
    pub(crate) fn wait_for_data(
        &self,
        seen: u64,
        deadline: Option<Instant>,
        recheck: &mut Recheck,
    ) {
        let empty = || self.w(W_TAIL).load(Acquire) == self.w(W_HEAD).load(Acquire);
        sleep_while(self.w(W_DATA_EVENTS), seen, empty, deadline, recheck);
    }

    /// Takes the consumer lock, finishing a change a dead holder left
    /// half-made.
    fn lock_consumers(&self, deadline: Option<Instant>) -> Option<RawLockGuard<'a>> {
        let (how, guard) = RawLock::at(self.w(W_CONSUMER_LOCK)).lock_guarded(deadline)?;
        if how != Acquired::Clean {
            self.replay_journal();
        }
        Some(guard)
    }

    /// Completes the journalled change of a holder that died (or panicked)
    /// inside the consumer lock. Stores only values the journal fixes, so
    /// a replay killed half-way is replayed again to the same end.
    fn replay_journal(&self) {
        let journal = self.w(W_JOURNAL).load(Acquire);
        let row = (journal & JOURNAL_ROW) as usize;
        if row == 0 || row > self.rows {
            self.w(W_JOURNAL).store(0, Release);
            return;
        }
        let row = row - 1;
        let a = self.w(W_JOURNAL_A).load(Relaxed);
        let b = self.w(W_JOURNAL_B).load(Relaxed);
        match journal & !JOURNAL_ROW {
            JOURNAL_TAKE => {
                let committed = self.w(W_HEAD).load(Relaxed) != a;
                self.row_word(row, ROW_TAKEN)
                    .store(b.wrapping_add(u64::from(committed)), Relaxed);
            }
            JOURNAL_FOLD => self.apply_fold(row, a, b),
            _ => {}
        }
        self.w(W_JOURNAL).store(0, Release);
    }

    // ----- endpoints -----------------------------------------------------

    /// Claims a free row (or one whose owner died) for this process in
    /// `role`. `None` when every row is held by a live process.
    pub(crate) fn claim_row(&self, role: Role) -> Option<usize> {
        let me = pid::current_identity().to_bits();
        let row = (0..self.rows)
            .find(|&row| {
                self.row_word(row, ROW_OWNER)
                    .compare_exchange(0, me, Acquire, Relaxed)
                    .is_ok()
            })
            .or_else(|| self.reclaim_dead_row(me))?;
        shm::crash_point!(QUEUE_CRASH_POINTS, "queue row: claimed");
        self.row_word(row, ROW_ROLE).store(role as u64, Release);
        shm::crash_point!(QUEUE_CRASH_POINTS, "queue row: role set");
        let ever = match role {
            Role::Producer => W_PRODUCERS_EVER,
            Role::Consumer => W_CONSUMERS_EVER,
        };
        self.w(ever).store(1, Release);
        // After the row is whole: see "Disconnection".
        self.w(W_ATTACHES).fetch_add(1, SeqCst);
        Some(row)
    }

    /// Frees a row whose owner died (folding what it had taken and not
    /// finished into `LOST`) and claims it for `me`.
    fn reclaim_dead_row(&self, me: u64) -> Option<usize> {
        let _guard = self.lock_consumers(None)?;
        for row in 0..self.rows {
            let owner = self.row_word(row, ROW_OWNER).load(Acquire);
            // First take the row from its dead owner: a process holding a
            // copy of the dead owner's handle would otherwise adopt the
            // row half-freed (its role reset, its owner about to be
            // zeroed under it). Ours is `RECLAIMING`, dead to everyone;
            // a reclaimer that dies holding it leaves the row to the next.
            if owner != 0
                && !pid::is_running_bits(owner)
                && (owner == RECLAIMING
                    || self
                        .row_word(row, ROW_OWNER)
                        .compare_exchange(owner, RECLAIMING, AcqRel, Relaxed)
                        .is_ok())
            {
                self.fold(row);
            }
            if self
                .row_word(row, ROW_OWNER)
                .compare_exchange(0, me, Acquire, Relaxed)
                .is_ok()
            {
                return Some(row);
            }
        }
        None
    }

    /// Moves `row` from `from` (the process a handle last ran in) to this
    /// process: the handle was moved or copied into it. Fails if the row
    /// has meanwhile been freed or reclaimed by someone else.
    pub(crate) fn adopt_row(&self, row: usize, from: u64, me: u64) -> bool {
        let adopted = self
            .row_word(row, ROW_OWNER)
            .compare_exchange(from, me, AcqRel, Relaxed)
            .is_ok();
        if adopted {
            // A scan that read `from` and then found it dead (it exited
            // after handing the row over) must not miss us: see
            // "Disconnection".
            self.w(W_ATTACHES).fetch_add(1, SeqCst);
        }
        adopted
    }

    /// Gives `row` back (its owner closes it). A consumer row of a
    /// joinable queue first folds what it took and did not finish into
    /// `LOST`, under the consumer lock; any other row is freed without it. Wakes sleepers of both sides, whose
    /// disconnection may have come.
    pub(crate) fn release_row(&self, row: usize, owner: u64) {
        if self.row_word(row, ROW_OWNER).load(Relaxed) != owner {
            return;
        }
        let counts_tasks =
            self.joinable && self.row_word(row, ROW_ROLE).load(Relaxed) == Role::Consumer as u64;
        if counts_tasks {
            let _guard = match self.lock_consumers(None) {
                Some(guard) => guard,
                None => unreachable!("no deadline"),
            };
            // Marked as being freed first, as a reclaimer marks a dead
            // row: see `fold`. (Fails only if a copy of this handle in
            // another process adopted the row meanwhile: it is theirs.)
            if self
                .row_word(row, ROW_OWNER)
                .compare_exchange(owner, RECLAIMING, AcqRel, Relaxed)
                .is_ok()
            {
                shm::crash_point!(QUEUE_CRASH_POINTS, "queue fold: row taken");
                self.fold(row);
            }
        } else {
            // Nothing taken to count: no need for the consumers' lock,
            // which a stopped consumer may hold for ever (review 5). The
            // row is ours and alive, so no reclaimer folds it meanwhile.
            self.free_row(row);
        }
        self.wake_everyone();
    }

    /// How many times an endpoint attached or closed: a waiter that saw
    /// this change judges the other side's liveness again at once (deaths
    /// it judges on a schedule).
    pub(crate) fn endpoint_changes(&self) -> u64 {
        self.w(W_ATTACHES)
            .load(Acquire)
            .wrapping_add(self.w(W_CLOSES).load(Acquire))
    }

    /// Whether the ring is at capacity, at some moment during the call.
    pub(crate) fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    /// Wakes every sleeper of the queue, to look again (an endpoint
    /// closed).
    pub(crate) fn wake_everyone(&self) {
        self.w(W_CLOSES).fetch_add(1, AcqRel);
        for events in [W_DATA_EVENTS, W_SPACE_EVENTS, W_DONE_EVENTS] {
            bump(self.w(events));
        }
    }

    /// Under the consumer lock, with `row`'s owner `RECLAIMING`: adds what
    /// `row` took and did not finish to `LOST`, resets it and frees it.
    ///
    /// The owner word is what makes a replay safe: a fold killed after
    /// freeing the row, before disarming the journal, is replayed by the
    /// next holder of the lock, and by then someone may have claimed the
    /// row; the replay resets and frees the row only while it is still
    /// `RECLAIMING` (review 5: it wiped the new owner's row).
    fn fold(&self, row: usize) {
        let taken = self.row_word(row, ROW_TAKEN).load(Relaxed);
        let done = self.row_word(row, ROW_DONE).load(Relaxed);
        let lost_before = self.w(W_LOST).load(Relaxed);
        let amount = taken.saturating_sub(done);
        self.w(W_JOURNAL_A).store(lost_before, Relaxed);
        self.w(W_JOURNAL_B).store(amount, Relaxed);
        self.w(W_JOURNAL)
            .store(JOURNAL_FOLD | (row as u64 + 1), Release);
        shm::crash_point!(QUEUE_CRASH_POINTS, "queue fold: journal armed");
        self.apply_fold(row, lost_before, amount);
        self.w(W_JOURNAL).store(0, Release);
    }

    /// The stores of a fold, each fixed by the journal (and the row's
    /// owner word: see `fold`).
    fn apply_fold(&self, row: usize, lost_before: u64, amount: u64) {
        self.w(W_LOST)
            .store(lost_before.saturating_add(amount), Relaxed);
        shm::crash_point!(QUEUE_CRASH_POINTS, "queue fold: lost added");
        // Nobody but a holder of the consumer lock changes a `RECLAIMING`
        // owner, so the check and the stores after it do not race.
        if self.row_word(row, ROW_OWNER).load(Acquire) == RECLAIMING {
            self.free_row(row);
        }
    }

    /// Resets `row` and frees it (its owner last: a row is claimed by its
    /// owner word alone).
    fn free_row(&self, row: usize) {
        // Release: whoever reads a reset field (a consumer judging whether
        // producers remain) also sees everything the row's owner did
        // before it closed, its last commit included.
        for field in [ROW_ROLE, ROW_TAKEN, ROW_DONE] {
            self.row_word(row, field).store(0, Release);
        }
        shm::crash_point!(QUEUE_CRASH_POINTS, "queue fold: row reset");
        self.row_word(row, ROW_OWNER).store(0, Release);
        shm::crash_point!(QUEUE_CRASH_POINTS, "queue fold: row freed");
    }

    /// Whether `role` ever attached and no row of it has a live owner now:
    /// a scan that finds none while no endpoint attached (see
    /// "Disconnection"). Under a stream of attachments that never lets a
    /// scan finish undisturbed, `false`: callers judge again later.
    pub(crate) fn disconnected(&self, role: Role) -> bool {
        /// Scans before giving up on an undisturbed one.
        const SCANS: usize = 8;
        let ever = match role {
            Role::Producer => W_PRODUCERS_EVER,
            Role::Consumer => W_CONSUMERS_EVER,
        };
        if self.w(ever).load(Acquire) == 0 {
            return false;
        }
        // A row of this very process is live without a look at /proc or
        // a pidfd: a consumer that also puts (a pool's manager, or the
        // caller running its bookkeeping, on their inbox) judges the
        // producers at every empty look, and a system call each time was
        // 6% of its time. (Only the identity already learnt: a process
        // that never claimed a row may not have it, and learning it could
        // need a descriptor.)
        let me = pid::known_identity().map_or(0, |me| me.to_bits());
        for _ in 0..SCANS {
            let attaches = self.w(W_ATTACHES).load(SeqCst);
            let live = (0..self.rows).any(|row| {
                let owner = self.row_word(row, ROW_OWNER).load(Acquire);
                owner != 0
                    && self.row_word(row, ROW_ROLE).load(Acquire) == role as u64
                    && (owner == me || pid::is_running_bits(owner))
            });
            if live {
                return false;
            }
            if self.w(W_ATTACHES).load(SeqCst) == attaches {
                return true;
            }
        }
        false
    }

    // ----- tasks ---------------------------------------------------------

    /// Marks one message taken by `row` as done. `false` if the row has
    /// none outstanding.
    pub(crate) fn task_done(&self, row: usize) -> bool {
        let taken = self.row_word(row, ROW_TAKEN).load(Relaxed);
        let done = self.row_word(row, ROW_DONE);
        let mut seen = done.load(Relaxed);
        loop {
            if seen >= taken {
                return false;
            }
            match done.compare_exchange(seen, seen + 1, Release, Relaxed) {
                Ok(_) => break,
                Err(now) => seen = now,
            }
        }
        notify(self.w(W_DONE_EVENTS));
        true
    }

    /// Messages taken by `row` and not yet marked done.
    pub(crate) fn outstanding(&self, row: usize) -> u64 {
        let taken = self.row_word(row, ROW_TAKEN).load(Acquire);
        let done = self.row_word(row, ROW_DONE).load(Acquire);
        taken.saturating_sub(done)
    }

    /// Whether every message ever put has been taken and marked done (or
    /// lost with its consumer); and the messages lost so far.
    ///
    /// Judged under the consumer lock (finishing a dead holder's change
    /// first), so that a message is never counted both in `LOST` and in
    /// the dead row a fold was emptying.
    /// `None` if the consumers' lock stayed held past `deadline`.
    pub(crate) fn all_done(&self, deadline: Option<Instant>) -> Option<(bool, u64)> {
        let _guard = self.lock_consumers(deadline)?;
        let mut lost = self.w(W_LOST).load(Acquire);
        let mut unfinished = self.len();
        for row in 0..self.rows {
            let owner = self.row_word(row, ROW_OWNER).load(Acquire);
            if owner == 0 || self.row_word(row, ROW_ROLE).load(Acquire) != Role::Consumer as u64 {
                continue;
            }
            let outstanding = self.outstanding(row);
            // Saturating: counts written by something else must not
            // panic the caller (review 5).
            if pid::is_running_bits(owner) {
                unfinished = unfinished.saturating_add(outstanding);
            } else {
                lost = lost.saturating_add(outstanding);
            }
        }
        Some((unfinished == 0, lost))
    }

    /// Sleeps until a task is marked done, an endpoint changes, or the
    /// next re-check (or `deadline`).
    pub(crate) fn wait_for_done(
        &self,
        unfinished: impl Fn() -> bool,
        deadline: Option<Instant>,
        recheck: &mut Recheck,
    ) {
        let seen = self.w(W_DONE_EVENTS).load(Acquire);
        sleep_while(self.w(W_DONE_EVENTS), seen, unfinished, deadline, recheck);
    }
}

/// Wakes the sleepers of an event word, if one flagged itself: the
/// committing side's half of "Sleeping without missing a wake-up".
///
/// The read of the sleepers bit is a read-modify-write (adding 0), not a
/// load: it reads the latest value of the word, so either it sees a
/// sleeper's flag, or the sleeper's flagging CAS comes after it and
/// acquires what it releases, the commit before it included, and the
/// sleeper's second look finds the commit. (A plain load would need
/// sequentially consistent ordering between two different words, which
/// the C++ model gives only with care and loom does not model.) The word
/// shares its line with the commit word, so the write costs no extra line
/// transfer; one locked instruction when nobody sleeps.
#[inline]
fn notify(events: &Futex64) {
    if events.fetch_add(0, AcqRel) & u64::from(SLEEPERS) != 0 {
        bump(events);
    }
}

/// Advances an event word's count, clears its sleepers bit and wakes every
/// sleeper (cold: only when someone sleeps, or an endpoint changed).
#[cold]
fn bump(events: &Futex64) {
    let mut seen = events.load(Acquire);
    loop {
        let next = (seen & EVENT_COUNT).wrapping_add(1) & EVENT_COUNT;
        match events.compare_exchange(seen, next, AcqRel, Acquire) {
            Ok(_) => break,
            Err(now) => seen = now,
        }
    }
    events.wake_all();
}

/// The sleeping half: flags the event word if it still holds `seen` (read
/// by the caller before it judged that it must wait: an endpoint change
/// since then bumped the count, and this returns at once), looks at
/// `blocked()` again, and sleeps while it holds until woken, the next
/// re-check or `deadline`. The caller loops and judges its condition and
/// deadline itself.
fn sleep_while(
    events: &Futex64,
    seen: u64,
    blocked: impl Fn() -> bool,
    deadline: Option<Instant>,
    recheck: &mut Recheck,
) {
    let flagged = seen | u64::from(SLEEPERS);
    if seen != flagged
        && events
            .compare_exchange(seen, flagged, AcqRel, Acquire)
            .is_err()
    {
        return;
    }
    if !blocked() {
        return;
    }
    events.wait(flagged, recheck.wake_at(deadline));
}
