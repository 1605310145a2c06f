//! Review 3: owner identity when the judging process is out of file
//! descriptors.

use std::time::Duration;

use daemon::Process;

mod common;
use common::{outcome, with_a_dead_holders_pid_reused};

/// `Identity::is_running` falls back to "does a non-zombie process with
/// this pid exist" when `pidfd_open` fails (EMFILE), ignoring the start
/// tag. A waiter that is out of descriptors then takes a new process that
/// reused a dead holder's pid for the holder and waits on a dead lock for
/// as long as the newcomer lives (here: `lock_timeout(1 s)` times out
/// instead of taking over with `OwnerDied`).
#[test]
fn a_waiter_out_of_descriptors_is_not_fooled_by_pid_reuse() {
    if testkit::skip_unless_pids_can_be_forced() {
        return;
    }
    let (waiter, control) = with_a_dead_holders_pid_reused(|lock| {
        let waiter = Process::new(move || {
            // Learn this process's own identity while a descriptor is free.
            let _ = shm::pid::current_identity();
            let files = testkit::exhaust_descriptors();
            let got = outcome(lock.lock_timeout(Duration::from_secs(1)));
            drop(files);
            got
        })
        .start()
        .unwrap()
        .join()
        .unwrap();
        // After it: the takeover was reported once, and the lock is free.
        let control = Process::new(move || outcome(lock.lock_timeout(Duration::from_secs(1))))
            .start()
            .unwrap()
            .join()
            .unwrap();
        (waiter, control)
    });
    println!(
        "holder dead, its pid reused: a waiter out of descriptors got {waiter}; \
         the next locker got {control}"
    );
    assert_eq!(
        waiter, "owner-died",
        "the waiter out of descriptors took the newcomer for the dead holder"
    );
    assert_eq!(control, "clean", "the death was reported once");
}
