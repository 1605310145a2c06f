//! Review 5: a named queue's memory written by another process that does
//! not follow the protocol (garbage in the header after the queue was
//! opened, counters at the edge of their range) gives errors or odd
//! answers, never a panic in a safe-code caller.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use daemon::Process;
use queue::{GetError, Queue};
use testkit::unique_name;

/// Word indices of the queue's protocol (see the crate's `ring` module).
const W_MAGIC: u64 = 0;
const W_CAPACITY: u64 = 2;
const W_SLOT_WORDS: u64 = 3;
const W_FLAGS: u64 = 6;
const W_ROWS_START: u64 = 64;
const ROW_TAKEN: u64 = 2;
/// The first slot's length word: after the header's 8 lines and the 128
/// rows of 4 words.
const W_FIRST_SLOT: u64 = W_ROWS_START + 128 * 4;

/// Writes `words` (index, value) into the named queue's memory from
/// another process, through the file under /dev/shm: the queue starts at
/// its magic number.
fn scribble(name: &str, words: &[(u64, u64)]) {
    let path = std::path::Path::new("/dev/shm").join(name.trim_start_matches('/'));
    Process::new(move || {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let start = bytes
            .windows(8)
            .position(|w| w == b"PSQUEUE1")
            .expect("the queue's magic number") as u64;
        for &(word, value) in words {
            file.write_at(&value.to_le_bytes(), start + word * 8)
                .unwrap();
        }
    })
    .start()
    .unwrap()
    .join()
    .unwrap();
}

#[test]
fn a_header_overwritten_after_open_makes_no_call_panic() {
    let name = unique_name("queue-scribbled-header");
    let q = Queue::<u64>::builder().capacity(4).create(&name).unwrap();
    let rx = q.receiver().unwrap();
    let tx = q.sender().unwrap();
    tx.put(1).unwrap();
    scribble(
        &name,
        &[
            (W_MAGIC, 0xdead_beef),
            (W_CAPACITY, 0),
            (W_SLOT_WORDS, u64::MAX),
            (W_FLAGS, u64::MAX),
        ],
    );
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let len = q.len();
        tx.put(2).unwrap();
        (len, rx.try_get(), rx.try_get(), q.capacity())
    }));
    let (len, first, second, capacity) =
        outcome.expect("a call on a queue whose header was overwritten panicked");
    // The queue goes on with the shape it was opened with.
    assert_eq!((len, first, second, capacity), (1, Ok(1), Ok(2), 4));
    // A new open sees the garbage and says so.
    assert!(Queue::<u64>::open(&name).is_err());
}

#[test]
fn counters_at_the_end_of_their_range_make_no_call_panic() {
    let name = unique_name("queue-scribbled-counts");
    let q = Queue::<u64>::builder()
        .capacity(4)
        .joinable()
        .create(&name)
        .unwrap();
    let rx = q.receiver().unwrap(); // row 0
    let tx = q.sender().unwrap(); // row 1
    let rx2 = q.receiver().unwrap(); // row 2
    let taken = |row: u64| W_ROWS_START + row * 4 + ROW_TAKEN;
    scribble(&name, &[(taken(0), u64::MAX), (taken(2), u64::MAX)]);
    tx.put(1).unwrap();
    let got = catch_unwind(AssertUnwindSafe(|| rx.try_get()));
    assert_eq!(
        got.expect("get panicked on a crafted taken count"),
        Ok(1),
        "the message is delivered"
    );
    let lost = catch_unwind(AssertUnwindSafe(|| q.lost()));
    assert!(lost.is_ok(), "lost() panicked on crafted taken counts");
    let joined = catch_unwind(AssertUnwindSafe(|| {
        q.join_timeout(Duration::from_millis(10)).is_ok()
    }));
    assert!(
        joined.is_ok(),
        "join_timeout panicked on crafted taken counts"
    );
    assert_eq!(rx2.try_get(), Err(GetError::Empty));
}

/// A slot whose length word was overwritten is skipped by `get`
/// (`GetError::Corrupt`): nobody received a message, so on a joinable queue
/// there is no task to mark done, and `join` must not wait for one.
#[test]
fn a_skipped_corrupt_slot_is_no_task_join_waits_for() {
    let name = unique_name("queue-scribbled-slot");
    let q = Queue::<u64>::builder()
        .capacity(4)
        .joinable()
        .create(&name)
        .unwrap();
    let rx = q.receiver().unwrap();
    q.sender().unwrap().put(1).unwrap();
    scribble(&name, &[(W_FIRST_SLOT, u64::MAX)]);
    assert_eq!(rx.try_get(), Err(GetError::Corrupt { length: u64::MAX }));
    assert_eq!(rx.outstanding(), 0, "a skipped slot is not a task");
    let joined = q.join_timeout(Duration::from_millis(50));
    assert!(
        matches!(joined, Ok(report) if report.lost == 0),
        "join waits for a message nobody received: {joined:?}"
    );
}
