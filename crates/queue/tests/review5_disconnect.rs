//! Review 5: disconnection is judged by one scan of the endpoint rows. A
//! process that always holds a live sender, but hands it over from one row
//! to another (clone, then drop the old one), must never make an empty
//! queue's `get` say `Disconnected`.

use std::sync::atomic::Ordering::SeqCst;

use daemon::Process;
use queue::{GetError, Queue};

/// Rows of dead producers between the two rows the hand-over alternates
/// between: each costs the scan a liveness check, so the scan is slow
/// enough for hand-overs to happen while it runs.
const DEAD_ROWS: usize = 100;
/// How many times the consumer looks at the empty queue.
const LOOKS: usize = 20_000;

#[test]
fn a_sender_handed_over_between_rows_never_looks_disconnected() {
    let q = Queue::<u64>::new(8).unwrap();
    let rx = q.receiver().unwrap(); // row 0
    let placeholder = q.sender().unwrap(); // row 1, freed below
                                           // Rows 2..=DEAD_ROWS+1: senders of a process that died holding them.
    Process::new(|| {
        let senders: Vec<_> = (0..DEAD_ROWS).map(|_| q.sender().unwrap()).collect();
        std::mem::forget(senders);
    })
    .start()
    .unwrap()
    .join()
    .unwrap();
    drop(placeholder);
    let stop = shm::Shared::new(shm::Futex::new(0)).unwrap();
    let started = shm::Shared::new(shm::Futex::new(0)).unwrap();
    let producer = Process::new(|| {
        // Always at least one live sender, on row 1 or the row after the
        // dead ones, in turn.
        let mut tx = q.sender().unwrap();
        testkit::raise(&started);
        let mut handovers = 0u64;
        while stop.load(SeqCst) == 0 {
            let next = tx.clone();
            drop(tx);
            tx = next;
            handovers += 1;
        }
        handovers
    })
    .start()
    .unwrap();
    testkit::wait_for(&started, 1);
    let mut disconnected_at = None;
    for look in 0..LOOKS {
        match rx.try_get() {
            Err(GetError::Empty) => {}
            Err(GetError::Disconnected) => {
                disconnected_at = Some(look);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    testkit::raise(&stop);
    let handovers = producer.join().unwrap();
    assert!(handovers > 0);
    assert_eq!(
        disconnected_at, None,
        "an empty queue said Disconnected while its producer held a live sender \
         ({handovers} hand-overs)"
    );
}
