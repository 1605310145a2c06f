//! The one-line shared constructors (`Semaphore::shared`,
//! `RobustSemaphore::shared`): forked workers see one semaphore.

use sync_sem::{RobustSemaphore, Semaphore};
use testkit::{in_processes, GENEROUS};

#[test]
fn forked_workers_count_into_one_shared_semaphore() {
    let sem = Semaphore::shared(0).unwrap();
    in_processes(4, |_| {
        for _ in 0..1_000 {
            sem.release().unwrap();
        }
    });
    assert_eq!(sem.value(), 4_000, "every worker's releases counted");
}

#[test]
fn forked_workers_see_the_permits_of_one_robust_semaphore() {
    let sem = RobustSemaphore::shared(2).unwrap();
    let held = (sem.acquire().unwrap(), sem.acquire().unwrap());
    let got = in_processes(3, |_| sem.try_acquire().is_ok());
    assert_eq!(got, vec![false; 3], "the parent holds both permits");
    drop(held);
    // Three workers at once on two permits: each may wait a moment for
    // another's (a `try_acquire` could find both taken, or the internal
    // lock busy), never for the parent's.
    let got = in_processes(3, |_| sem.acquire_timeout(GENEROUS).is_ok());
    assert_eq!(
        got,
        vec![true; 3],
        "each worker's permit is back once it ends"
    );
}

/// Debug builds: a semaphore in ordinary memory used by a forked child (its
/// own copy, limiting nobody) is refused there with the shared form.
#[cfg(debug_assertions)]
#[test]
fn a_private_semaphore_used_in_a_forked_child_is_refused_with_the_shared_form() {
    let rooms = Semaphore::new(4);
    let child = daemon::Process::new(|| drop(rooms.acquire()))
        .start()
        .unwrap();
    let refused = child.join().expect_err("a private Semaphore").to_string();
    assert!(refused.contains("Semaphore::shared(permits)"), "{refused}");
    let robust = RobustSemaphore::new(4);
    let child = daemon::Process::new(|| robust.release().is_ok())
        .start()
        .unwrap();
    let refused = child
        .join()
        .expect_err("a private RobustSemaphore")
        .to_string();
    assert!(
        refused.contains("RobustSemaphore::shared(permits)"),
        "{refused}"
    );
}
