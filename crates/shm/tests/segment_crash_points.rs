//! A named segment's crash points, each in turn: the creator is killed
//! (SIGKILL), or stopped (SIGSTOP), right after each step of `create` that
//! others can see and each step of its unlink on drop. An opener must then
//! get, on time, either the finished segment (exactly its value), or
//! `NotFound`, or `Uninitialized` — at once when the creator is known dead,
//! never before its timeout while the creator lives or is unknown — and
//! never a half-initialised segment, another error, or a hang. The list of
//! points comes from the code (`SEGMENT_CRASH_POINTS`); a point never
//! reached fails the test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use daemon::{Child, JoinError, Process};
use shm::crash::{self, Action};
use shm::{Error, Shared, SEGMENT_CRASH_POINTS};
use testkit::{name_exists, unique_name, wait_stopped_or_exited, GENEROUS};

/// The opener's timeout.
const SHORT: Duration = Duration::from_millis(300);
/// How late past its timeout an opener may return on a loaded machine.
const SLACK: Duration = Duration::from_secs(1);
/// The value the creator puts in the segment.
const VALUE: u64 = 0x5eed_cafe;

/// What became of the creator.
#[derive(Debug, PartialEq)]
enum Fate {
    Killed,
    Stopped,
    Finished,
}

/// Opens `name` once with the short timeout and checks the outcome against
/// the invariants. `creator` is the creator's pid; `stopped` whether it is
/// stopped (alive) right now.
fn open_and_check(name: &str, creator: shm::pid::Pid, stopped: bool, context: &str) {
    let started = Instant::now();
    let result = Shared::<AtomicU64>::open_timeout(name, SHORT);
    let waited = started.elapsed();
    assert!(
        waited <= SHORT + SLACK,
        "{context}: open returned after {waited:?} with a {SHORT:?} timeout"
    );
    match result {
        Ok(shared) => assert_eq!(
            shared.load(Ordering::SeqCst),
            VALUE,
            "{context}: opened a segment without its value"
        ),
        Err(Error::NotFound { .. }) => {}
        Err(Error::Uninitialized {
            creator_pid,
            creator_alive,
            ..
        }) => {
            if creator_pid.is_none() {
                // The creator is not recorded yet: nobody can tell whether
                // it lives, so the open waits out its timeout.
                assert!(waited >= SHORT, "{context}: gave up early ({waited:?})");
            } else {
                assert_eq!(creator_pid, Some(creator), "{context}: the wrong creator");
                assert_eq!(creator_alive, stopped, "{context}: creator_alive");
                if stopped {
                    assert!(waited >= SHORT, "{context}: gave up early ({waited:?})");
                } else {
                    assert!(
                        waited < SHORT,
                        "{context}: a dead creator noticed only after {waited:?}"
                    );
                }
            }
        }
        Err(other) => panic!("{context}: open failed with {other:?}"),
    }
}

/// Runs the creator with `point` armed; returns whether it was hit.
fn run(point: &'static str, action: Action) -> bool {
    let context = format!("{point:?} ({action:?})");
    let name = unique_name("crash-segment");
    let mut creator: Child<()> = Process::new(|| {
        crash::arm(point, action);
        let shared = Shared::create(&name, AtomicU64::new(VALUE)).unwrap();
        drop(shared);
    })
    .start()
    .unwrap();
    let pid = creator.pid();
    let fate = if wait_stopped_or_exited(pid) {
        open_and_check(&name, pid, true, &context);
        creator.signal(libc::SIGCONT).unwrap();
        creator
            .join_timeout(GENEROUS)
            .unwrap_or_else(|e| panic!("{context}: the resumed creator failed: {e}"));
        assert!(
            !name_exists(&name),
            "{context}: the resumed creator left its name"
        );
        Fate::Stopped
    } else {
        match creator.join_timeout(GENEROUS) {
            Err(JoinError::Signaled { signal: 9, .. }) => {
                open_and_check(&name, pid, false, &context);
                Fate::Killed
            }
            Ok(()) => {
                assert!(!name_exists(&name), "{context}: the creator left its name");
                Fate::Finished
            }
            Err(e) => panic!("{context}: the creator failed: {e}"),
        }
    };
    // A killed creator's name is removed by the tracker (see
    // tests/tracker.rs); in case it is still there, remove it.
    let _ = Shared::<AtomicU64>::unlink(&name);
    eprintln!("{context}: {fate:?}");
    fate != Fate::Finished
}

fn every_point(action: Action) {
    let unreached: Vec<_> = SEGMENT_CRASH_POINTS
        .iter()
        .filter(|&&point| !run(point, action))
        .collect();
    assert!(
        unreached.is_empty(),
        "crash points never reached: {unreached:?}"
    );
}

#[test]
fn a_creator_killed_at_any_crash_point_never_hands_out_a_half_made_segment_or_a_hang() {
    every_point(Action::Kill);
}

#[test]
fn a_creator_stopped_at_any_crash_point_makes_openers_time_out_on_time() {
    every_point(Action::Stop);
}
