//! Pid reuse on demand for the primitives that record holders beside the
//! lock word: a `RobustSemaphore` row and a `Barrier` slot name a process
//! by its identity (pid and start tag), so a new process that gets a dead
//! holder's pid is not taken for it. Pids are forced as root through
//! `ns_last_pid` (`testkit::start_with_pid`); without root these tests say
//! they were skipped.

use std::time::Duration;

use daemon::Process;
use shm::Shared;
use sync_event::{Barrier, BarrierError};
use sync_sem::RobustSemaphore;
use testkit::{park_until_killed, start_with_pid, wait_until, GENEROUS};

fn skip() -> bool {
    testkit::skip_unless_pids_can_be_forced()
}

/// A dead holder's permit comes back even when a live process now has its
/// pid (the old pid-keyed rows took the newcomer for the holder: the permit
/// was lost for as long as the newcomer ran, and the newcomer's own drop
/// could release it).
#[test]
fn a_robust_semaphore_takes_back_a_dead_holders_permit_from_under_a_reused_pid() {
    if skip() {
        return;
    }
    let sem = Shared::new(RobustSemaphore::new(1)).unwrap();
    let holder = Process::new(|| std::mem::forget(sem.acquire().unwrap()))
        .start()
        .unwrap();
    let dead = holder.pid();
    holder.join().unwrap();
    assert_eq!(sem.value(), 0);
    let reuser = start_with_pid(dead, || {
        let taken_back = sem.reclaim();
        // The newcomer holds nothing, whatever its pid says.
        let got = sem.try_acquire().map(drop).is_ok();
        (taken_back, got)
    });
    assert_eq!(reuser.join().unwrap(), (1, true));
    assert_eq!(sem.value(), 1);
}

/// A party that died waiting breaks the barrier even when a live process
/// now has its pid (with pid-keyed slots the newcomer looked like the
/// waiting party, alive, and the others waited until their timeout).
#[test]
fn a_barrier_breaks_for_a_dead_party_whose_pid_is_reused() {
    if skip() {
        return;
    }
    let barrier = Shared::new(Barrier::new(3).unwrap()).unwrap();
    let party = Process::new(|| barrier.wait_timeout(GENEROUS).is_ok())
        .daemon(true)
        .start()
        .unwrap();
    wait_until("the party waits at the barrier", || {
        barrier.n_waiting() == 1
    });
    party.kill().unwrap();
    let dead = party.pid();
    assert!(party.join().is_err(), "killed");
    let reuser = start_with_pid(dead, park_until_killed);
    let outcome = barrier.wait_timeout(Duration::from_secs(5));
    reuser.kill().unwrap();
    let _ = reuser.join();
    assert_eq!(outcome, Err(BarrierError::Broken));
}

/// `held_by(pid)` counts what the process running under `pid` holds: a
/// dead holder's row not yet swept is not counted for a new process that
/// got its pid (the old check compared the pid alone and said 1).
#[test]
fn held_by_does_not_count_a_dead_holders_row_for_the_process_that_reuses_its_pid() {
    if skip() {
        return;
    }
    let sem = Shared::new(RobustSemaphore::new(2)).unwrap();
    let holder = Process::new(|| std::mem::forget(sem.acquire().unwrap()))
        .start()
        .unwrap();
    let dead = holder.pid();
    holder.join().unwrap();
    assert_eq!(sem.held_by(dead), 0, "a dead process holds nothing");
    let sem_ref = &*sem;
    let reuser = start_with_pid(dead, move || sem_ref.held_by(shm::pid::current()));
    assert_eq!(
        reuser.join().unwrap(),
        0,
        "the newcomer was counted as holding the dead process's permit"
    );
    assert_eq!(
        sem.value(),
        1,
        "nobody swept the dead row: held_by only reads"
    );
}
