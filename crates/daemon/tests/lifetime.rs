//! Python's exit rule and the no-orphans rule, checked from outside the
//! process whose main code ends.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use daemon::{Error, Process, DAEMON_GRACE};
use shm::{Futex, Shared};
use testkit::{
    deadline, helper_args, helper_report, raise, reported, run_helper, wait_for, GENEROUS,
};

/// Loops until killed (bounded by GENEROUS so a broken rule cannot leave
/// it running for ever).
fn run_until_killed() {
    let limit = deadline(GENEROUS);
    while Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A "main" that ends with a daemon and a non-daemon child still running.
#[test]
fn helper_main_with_daemon_and_worker() {
    let Some(args) = helper_args() else { return };
    let ignore_sigterm = args.first().is_some_and(|a| a == "ignore-sigterm");
    let daemon_ready = Shared::new(Futex::new(0)).unwrap();
    let main_done = Shared::new(Futex::new(0)).unwrap();
    let daemon = Process::new(|| {
        if ignore_sigterm {
            // SAFETY: setting a signal's disposition to "ignore".
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
        }
        raise(&daemon_ready);
        run_until_killed();
        println!("daemon finished");
    })
    .daemon(true)
    .start()
    .unwrap();
    let worker = Process::new(|| {
        // Still running when main's code ends; finishes only after that.
        wait_for(&main_done, 1);
        println!("worker finished");
    })
    .start()
    .unwrap();
    helper_report("daemon_pid", daemon.pid());
    helper_report("worker_pid", worker.pid());
    wait_for(&daemon_ready, 1);
    println!("main finished");
    raise(&main_done);
    // Dropping the handles detaches nothing: the exit rule still applies.
    drop((daemon, worker));
    std::process::exit(0);
}

fn pid_exists(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn when_main_ends_daemons_are_terminated_and_workers_joined() {
    let started = Instant::now();
    let out = run_helper("helper_main_with_daemon_and_worker", &["plain"], GENEROUS);
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let main_at = stdout.find("main finished").expect("main's line");
    let worker_at = stdout
        .find("worker finished")
        .expect("the worker was joined, not killed");
    assert!(
        main_at < worker_at,
        "the worker finished after main's code ended:\n{stdout}"
    );
    assert!(
        !stdout.contains("daemon finished"),
        "the daemon was terminated:\n{stdout}"
    );
    for key in ["daemon_pid", "worker_pid"] {
        let pid: i32 = reported(&out, key).unwrap().parse().unwrap();
        assert!(!pid_exists(pid), "{key} {pid} was left behind");
    }
    assert!(took < DAEMON_GRACE + GENEROUS / 2, "the exit took {took:?}");
}

#[test]
fn a_daemon_ignoring_sigterm_is_killed_after_the_grace_period() {
    let started = Instant::now();
    let out = run_helper(
        "helper_main_with_daemon_and_worker",
        &["ignore-sigterm"],
        GENEROUS,
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0));
    let pid: i32 = reported(&out, "daemon_pid").unwrap().parse().unwrap();
    assert!(!pid_exists(pid), "the stubborn daemon survived");
    assert!(
        took >= DAEMON_GRACE,
        "SIGKILL came only after the grace period ({took:?})"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("daemon finished"));
}

#[test]
fn a_daemon_dies_within_100_ms_of_its_parent_being_killed() {
    let daemon_pid = Shared::new(AtomicI32::new(0)).unwrap();
    let parent = Process::new(|| {
        let daemon = Process::new(run_until_killed).daemon(true).start().unwrap();
        daemon_pid.store(daemon.pid().as_raw(), Ordering::SeqCst);
        run_until_killed();
    })
    .start()
    .unwrap();
    let limit = deadline(GENEROUS);
    let pid = loop {
        match daemon_pid.load(Ordering::SeqCst) {
            0 => {
                assert!(
                    Instant::now() < limit,
                    "the parent never started its daemon"
                );
                std::thread::yield_now();
            }
            pid => break shm::pid::Pid::from_raw(pid).expect("a pid"),
        }
    };
    parent.kill().unwrap();
    let killed = Instant::now();
    while shm::pid::is_running(pid) {
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "orphan daemon {pid} survived"
        );
        std::thread::yield_now();
    }
    let gone_after = killed.elapsed();
    eprintln!("daemon gone {gone_after:?} after its parent's SIGKILL");
    assert!(
        gone_after < Duration::from_millis(100),
        "took {gone_after:?}"
    );
    let _ = parent.join();
}

#[test]
fn a_daemon_may_start_only_daemons() {
    let outcome = Process::new(|| {
        let refused = matches!(Process::new(|| ()).start(), Err(Error::DaemonChild));
        let allowed = Process::new(|| 5)
            .daemon(true)
            .start()
            .map(|c| c.join().ok());
        (daemon::is_daemon_process(), refused, allowed.ok().flatten())
    })
    .daemon(true)
    .start()
    .unwrap()
    .join()
    .unwrap();
    assert_eq!(outcome, (true, true, Some(5)));
    assert!(!daemon::is_daemon_process());
}

#[test]
fn a_child_forked_by_other_means_leaves_its_parents_children_alone() {
    let mut daemon = Process::new(testkit::park_until_killed)
        .daemon(true)
        .start()
        .unwrap();
    // A plain fork inherits this process's record of children; its `exit`
    // runs the exit rule, which must not touch them.
    // SAFETY: the child only leaves through `exit`, the point of the test.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        std::process::exit(0);
    }
    let mut status = 0;
    // SAFETY: our child; a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status));
    assert!(
        daemon.is_alive(),
        "the plain fork's exit ended its parent's daemon"
    );
    daemon.kill().unwrap();
    assert!(daemon.join_timeout(GENEROUS).is_err());
}
