//! Review 5: a process SIGSTOPped inside the queue's consumer lock wedges
//! nobody outside the consumers' side, and a row being reclaimed from a
//! dead process is never adopted half-freed.

use daemon::{Child, Process};
use queue::Queue;
use shm::crash::{self, Action};
use testkit::{wait_stopped_or_exited, GENEROUS};

/// Resumes and reaps a process stopped at a crash point.
fn resume(mut stopped: Child<()>) {
    stopped.signal(libc::SIGCONT).unwrap();
    stopped.join_timeout(GENEROUS).unwrap();
}

/// A consumer stopped inside `get` (holding the consumers' lock) must not
/// make a producer wait to close: dropping a sender has nothing to do with
/// what consumers took.
#[test]
fn a_consumer_stopped_inside_get_does_not_wedge_a_closing_producer() {
    let q = Queue::<u64>::new(4).unwrap();
    q.sender().unwrap().put(1).unwrap();
    let stopped = Process::new(|| {
        crash::arm("queue get: committed", Action::Stop);
        q.receiver().unwrap().get().unwrap();
    })
    .daemon(true)
    .start()
    .unwrap();
    assert!(wait_stopped_or_exited(stopped.pid()), "the consumer stops");
    let mut producer = Process::new(|| {
        let tx = q.sender().unwrap();
        tx.put(2).unwrap();
        drop(tx);
    })
    .daemon(true)
    .start()
    .unwrap();
    let closed = producer.join_timeout(GENEROUS);
    resume(stopped);
    closed.unwrap_or_else(|e| panic!("a producer could not close: {e}"));
    assert!(q.producers_gone());
}

/// A process that attaches when every row is taken reclaims the row of a
/// dead process; it is stopped half-way through freeing it. A process
/// holding a copy of the dead process's sender now uses it for the first
/// time, and puts: it must count as a producer. (Before review 5 it adopted
/// the half-freed row, whose owner was still the dead process and whose
/// role was already reset, so it counted for nothing; the resumed reclaimer
/// then freed the row under it and took it.)
#[test]
fn a_sender_first_used_while_its_dead_row_is_reclaimed_still_counts() {
    let q = Queue::<u64>::new(4).unwrap();
    let _rx = q.receiver().unwrap(); // row 0
    let gate = shm::Shared::new(shm::Futex::new(0)).unwrap();
    let done = shm::Shared::new(shm::Futex::new(0)).unwrap();
    let heir_pid = shm::Shared::new(shm::Futex::new(0)).unwrap();
    // The dead process: attaches a sender (row 1), forks the heir that
    // holds a copy of it, and exits.
    Process::new(|| {
        let tx = q.sender().unwrap();
        // SAFETY: the child only runs the closure below (waits on shared
        // futex words, puts, parks) and leaves with `_exit`, never
        // returning into this process's code.
        #[allow(unsafe_code)]
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                testkit::wait_for(&gate, 1);
                tx.put(5).unwrap();
                testkit::raise(&done);
                testkit::park_until_killed();
            }));
            // SAFETY: ends the forked copy without running the parent's
            // exit handlers or destructors.
            #[allow(unsafe_code)]
            unsafe {
                libc::_exit(i32::from(ran.is_err()))
            };
        }
        heir_pid.store(pid as u32, std::sync::atomic::Ordering::SeqCst);
        std::mem::forget(tx);
    })
    .start()
    .unwrap()
    .join()
    .unwrap();
    let heir = heir_pid.load(std::sync::atomic::Ordering::SeqCst) as i32;
    assert!(heir > 0);
    // Every other row: live consumers (they take no part in disconnection
    // of producers).
    let mut fill: Vec<_> = (2..queue::MAX_ENDPOINTS)
        .map(|_| q.receiver().unwrap())
        .collect();
    let reclaimer = Process::new(|| {
        crash::arm("queue fold: row reset", Action::Stop);
        let _tx = q.sender().unwrap();
    })
    .daemon(true)
    .start()
    .unwrap();
    assert!(
        wait_stopped_or_exited(reclaimer.pid()),
        "the reclaimer stops"
    );
    // A free row for the heir, should it not adopt the dead one (closing
    // a receiver of this queue needs no lock the reclaimer holds).
    drop(fill.pop());
    testkit::raise(&gate);
    testkit::wait_for(&done, 1);
    assert_eq!(q.len(), 1, "the heir put");
    let gone = q.producers_gone();
    // SAFETY: `heir` is our grandchild, alive (parked) until this kill; its
    // pid cannot have been reused.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(heir, libc::SIGKILL)
    };
    resume(reclaimer);
    drop(fill);
    assert!(
        !gone,
        "the heir, alive and having put, did not count as a producer"
    );
}
