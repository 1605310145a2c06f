//! Review 4: the descriptor kept in reserve for liveness checks (review 3's
//! fix) is lost when two threads learn the process's identity at once.

use std::time::Duration;

use daemon::Process;
use shm::pid::Identity;

mod common;
use common::{outcome, with_a_dead_holders_pid_reused};

/// How many descriptors of this process are the reserve memfd.
fn spares() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains("procsync-spare-fd"))
        .count()
}

/// The first `current_identity` calls of a process, made by four threads
/// at once (any program whose threads start using procsync together).
fn learn_identity_in_threads() {
    let both = std::sync::Barrier::new(4);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                both.wait();
                let _ = shm::pid::current_identity();
            });
        }
    });
}

/// `reserve_spare_fd` stores `SPARE_INO` *before* its CAS on `SPARE_FD`;
/// threads reserving at once leave the winner's descriptor in
/// `SPARE_FD` and the loser's (closed) memfd's inode in `SPARE_INO`. From
/// then on `with_spare_fd` takes the reserve for "not ours", never frees
/// it (it stays open, unused, for the life of the process) and answers
/// `None`: `Identity::is_running` of a process out of descriptors falls
/// back to "some non-zombie process has this pid", ignoring the start tag:
/// exactly review 3's defect. Here: this process's own pid with another
/// start tag (a dead process whose pid this one reused) is "running".
#[test]
fn the_spare_descriptor_survives_threads_learning_the_identity_at_once() {
    let mut fooled = 0;
    let tries = 50;
    for _ in 0..tries {
        let (before, after, answer_one, answer_two) = Process::new(|| {
            let before = spares();
            learn_identity_in_threads();
            let after = spares();
            let me = shm::pid::current_identity();
            let newcomer_of_my_pid =
                Identity::from_parts(me.pid().get(), me.start_tag() ^ 1).expect("a valid identity");
            let files = testkit::exhaust_descriptors();
            let answer_one = newcomer_of_my_pid.is_running();
            let answer_two = newcomer_of_my_pid.is_running();
            drop(files);
            (before, after, answer_one, answer_two)
        })
        .start()
        .unwrap()
        .join()
        .unwrap();
        assert_eq!(before, 0, "the child began with a reserve (inherited)");
        assert_eq!(after, 1, "one reserve after learning the identity");
        if answer_one || answer_two {
            fooled += 1;
        }
    }
    println!(
        "{fooled} of {tries} processes whose four threads learnt the identity at once, once out \
         of descriptors, took another start tag of their pid for a running process"
    );
    assert_eq!(fooled, 0, "the reserve was lost: start tags went unchecked");
}

/// End to end, review 3's scenario: the holder of a `Lock` dies, a new
/// process reuses its pid, and a waiter that is out of descriptors must
/// take over. The waiter's threads learnt its identity at once (its
/// reserve is lost), so it waits on the dead lock until its timeout.
#[test]
fn a_waiter_whose_threads_learnt_its_identity_together_is_not_fooled_by_pid_reuse() {
    if testkit::skip_unless_pids_can_be_forced() {
        return;
    }
    // Waiters whose threads learn the identity at once (the race that used
    // to lose the reserve), each then out of descriptors: every one still
    // tells its own pid with another start tag from itself, and the first
    // takes the dead holder's lock over (the later ones find it free).
    let outcomes = with_a_dead_holders_pid_reused(|lock| {
        (0..10)
            .map(|_| {
                Process::new(move || {
                    learn_identity_in_threads();
                    let me = shm::pid::current_identity();
                    let other = Identity::from_parts(me.pid().get(), me.start_tag() ^ 1).unwrap();
                    let files = testkit::exhaust_descriptors();
                    let fooled = other.is_running();
                    let got = outcome(lock.lock_timeout(Duration::from_secs(1)));
                    drop(files);
                    (fooled, got)
                })
                .start()
                .unwrap()
                .join()
                .unwrap()
            })
            .collect::<Vec<_>>()
    });
    println!("holder dead, its pid reused: waiters out of descriptors got {outcomes:?}");
    assert!(
        outcomes.iter().all(|(fooled, _)| !fooled),
        "a waiter took another start tag of its pid for itself: {outcomes:?}"
    );
    assert_eq!(outcomes[0].1, "owner-died", "{outcomes:?}");
    assert!(
        outcomes[1..].iter().all(|(_, got)| got == "clean"),
        "{outcomes:?}"
    );
}

/// A program that closes every descriptor above stderr once it runs (the
/// daemon idiom) closes the reserve too. `with_spare_fd` notices ("the
/// program closed it") and leaves the number alone, but it used never to
/// reserve another: from then on, for the life of the process, a liveness
/// check made while out of descriptors ignored start tags (review 3's
/// defect). Now the next liveness check made with a descriptor free puts a
/// new one in reserve (nothing can while none is free).
#[test]
fn the_spare_descriptor_comes_back_after_the_program_closed_its_descriptors() {
    let (reserved, answers) = Process::new(|| {
        let me = shm::pid::current_identity();
        let reserved = spares();
        // The daemon idiom closes everything above stderr; here only the
        // part that matters (closing all would close the socket
        // `daemon::Process` returns the result through): the reserve.
        let spare: i32 = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| {
                let e = e.ok()?;
                let target = std::fs::read_link(e.path()).ok()?;
                target
                    .to_string_lossy()
                    .contains("procsync-spare-fd")
                    .then(|| e.file_name().to_string_lossy().parse().ok())?
            })
            .next()
            .expect("the reserve");
        // SAFETY: what a close-all does to it; nothing of this test uses
        // the number afterwards.
        assert_eq!(unsafe { libc::close(spare) }, 0);
        let newcomer_of_my_pid =
            Identity::from_parts(me.pid().get(), me.start_tag() ^ 1).expect("a valid identity");
        // Life goes on with descriptors to spare: some liveness check.
        assert!(me.is_running());
        let mut answers = Vec::new();
        for _ in 0..3 {
            let files = testkit::exhaust_descriptors();
            answers.push(newcomer_of_my_pid.is_running());
            drop(files);
        }
        (reserved, answers)
    })
    .start()
    .unwrap()
    .join()
    .unwrap();
    println!("reserve before closing: {reserved}; out of descriptors afterwards, another start tag of this pid running: {answers:?}");
    assert_eq!(reserved, 1);
    assert_eq!(answers, [false, false, false], "start tags unchecked");
}
