//! Helpers of the tracker's tests (tracker.rs, tracker_restart.rs and the
//! reviews' reproducers): processes that create names and die, a process
//! in a network namespace of its own (so the tracker a test starts, stops
//! or starves is its own), and waiting for a name to go.

// Each test binary uses some of these.
#![allow(dead_code)]

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use daemon::{Child, Process};
use shm::{Futex, Shared};
use testkit::{name_exists, raise, GENEROUS};

/// The promise: a dead creator's name is gone this soon after its death.
pub(crate) const PROMISED: Duration = Duration::from_millis(100);

/// Runs `body` in a forked process in a network namespace of its own (see
/// the module's doc), then kills the trackers it started, and fails the
/// test with what it returns as an error.
pub(crate) fn isolated(body: impl FnOnce() -> Result<(), String>) {
    let mut child = Process::new(move || {
        // SAFETY: unshare only moves this (single-threaded, freshly forked)
        // process into a new network namespace; no memory is involved.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare(CLONE_NEWNET) (needs root)");
        let outcome = body();
        // Nothing of the test outlives it: its trackers neither.
        kill_trackers_here();
        outcome
    })
    .start()
    .unwrap();
    match child.join_timeout(GENEROUS * 4) {
        Ok(outcome) => outcome.unwrap(),
        Err(e) => {
            let _ = child.kill();
            panic!("the isolated test process failed: {e}");
        }
    }
}

pub(crate) fn signal(pid: shm::pid::Pid, signal: rustix::process::Signal) {
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid.as_raw()).unwrap(),
        signal,
    );
}

/// Kills `child` and reaps it (a no-op for one already joined or gone).
pub(crate) fn finish(mut child: Child<()>) {
    let _ = child.kill();
    let _ = child.join_timeout(GENEROUS);
}

/// Removes every name under `/dev/shm` that starts with `base`.
pub(crate) fn remove_names(base: &str) {
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        for entry in dir.filter_map(|e| e.ok()) {
            if entry.file_name().to_string_lossy().starts_with(base) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// The trackers of this network namespace (by command name and namespace:
/// one whose listener is gone or full does not answer `tracker::running`).
pub(crate) fn trackers_here() -> Vec<shm::pid::Pid> {
    let mine = std::fs::read_link("/proc/self/ns/net").ok();
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|comm| comm.trim() == "procsync-track")
                        && std::fs::read_link(format!("/proc/{pid}/ns/net")).ok() == mine
                })
                .filter_map(shm::pid::Pid::from_u32)
                .collect()
        })
        .unwrap_or_default()
}

/// Kills this network namespace's trackers (the tests' own, see above).
pub(crate) fn kill_trackers_here() {
    for pid in trackers_here() {
        signal(pid, rustix::process::Signal::KILL);
    }
}

/// How long after `since` the name `name` was first seen gone, looking
/// until `limit` has passed; `None` if it was still there then.
pub(crate) fn gone_after(name: &str, since: Instant, limit: Duration) -> Option<Duration> {
    loop {
        if !name_exists(name) {
            return Some(since.elapsed());
        }
        if since.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// A child that creates `name`, says so on `ready`, then waits to be killed.
pub(crate) fn creator(name: &str, ready: &Futex) -> Child<()> {
    let name = name.to_string();
    Process::new(move || {
        let _segment = Shared::create(&name, AtomicU64::new(7)).unwrap();
        raise(ready);
        testkit::park_until_killed();
    })
    .start()
    .unwrap()
}

/// Kills `child` (a creator) and returns when it is dead and reaped.
pub(crate) fn kill_and_reap(child: &mut Child<()>) -> Instant {
    child.kill().unwrap();
    assert!(child.join_timeout(GENEROUS).is_err());
    Instant::now()
}
