//! Review 5: replaying a closing consumer's fold, after it was killed
//! between freeing its row and disarming the journal, must not wipe the
//! row of whoever claimed it since.

use daemon::{JoinError, Process};
use queue::{GetError, Queue};
use shm::crash::{self, Action};
use testkit::GENEROUS;

#[test]
fn a_replayed_fold_leaves_the_row_claimed_since_alone() {
    let q = Queue::<u64>::builder()
        .capacity(4)
        .joinable()
        .anonymous()
        .unwrap();
    let rx = q.receiver().unwrap(); // row 0
    let mut closer = Process::new(|| {
        let closing = q.receiver().unwrap(); // row 1
        crash::arm("queue fold: row freed", Action::Kill);
        drop(closing);
    })
    .daemon(true)
    .start()
    .unwrap();
    assert!(
        matches!(
            closer.join_timeout(GENEROUS),
            Err(JoinError::Signaled { signal: 9, .. })
        ),
        "the closer dies after freeing its row, its fold journalled"
    );
    // Row 1 is free: a producer takes it.
    let tx = q.sender().unwrap();
    tx.put(1).unwrap();
    // This get takes the dead closer's lock over and replays its journal.
    assert_eq!(rx.try_get(), Ok(1));
    rx.task_done().unwrap();
    assert_eq!(
        rx.try_get(),
        Err(GetError::Empty),
        "the live producer's row was wiped by the replay"
    );
    tx.put(2).unwrap();
    assert_eq!(rx.try_get(), Ok(2));
    rx.task_done().unwrap();
    assert_eq!(q.lost(), 0);
}
