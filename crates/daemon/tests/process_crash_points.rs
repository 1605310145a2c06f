//! A child's crash points, each in turn: the child is killed (SIGKILL), or
//! stopped (SIGSTOP), right after each step of its way from the fork to
//! `_exit`, with a small result and with one too big for the socket
//! buffer. `join` must then return on time with the exact result (only if
//! the whole of it was sent) or `Signaled`, never a torn result and never
//! a hang; a stopped child makes `join_timeout` time out on time and, once
//! resumed, is joined with its exact result. The list of points comes from
//! the code (`PROCESS_CRASH_POINTS`); a point never reached fails the test.
//!
//! Each run is arranged from a middle process, which arms the point (an
//! armed point is per process and inherited across the fork) and starts
//! the child: the test process itself never has anything armed.

use std::time::{Duration, Instant};

use daemon::{JoinError, Process, PROCESS_CRASH_POINTS};
use shm::crash::{self, Action};
use testkit::{process_state, GENEROUS};

/// The timeout of a join that meets a stopped child.
const SHORT: Duration = Duration::from_millis(150);
/// How late past its timeout a join may return on a loaded machine.
const SLACK: Duration = Duration::from_secs(1);

/// The child's result: `len` bytes, each its index's low byte.
fn result(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}

/// With `point` armed, starts a child returning `result(len)` and checks
/// what join makes of it. Runs in the middle process; returns whether the
/// point was hit, or the violated invariant.
fn run(point: &'static str, action: Action, len: usize) -> Result<bool, String> {
    crash::arm(point, action);
    let mut child = Process::new(move || result(len))
        .daemon(true)
        .start()
        .map_err(|e| e.to_string())?;
    crash::disarm();
    // Joining from the start: a large result is read while it is written.
    // Each join_timeout must return on time; a child that is slow to reach
    // its point (a loaded machine) is joined again until it stops or ends.
    let started = Instant::now();
    let joined = loop {
        let call = Instant::now();
        let joined = child.join_timeout(SHORT);
        let waited = call.elapsed();
        if waited > SHORT + SLACK {
            return Err(format!("join_timeout({SHORT:?}) took {waited:?}"));
        }
        match joined {
            Err(JoinError::Timeout { .. }) if process_state(child.pid()) == Some(b'T') => {
                child.signal(libc::SIGCONT).map_err(|e| e.to_string())?;
                return match child.join_timeout(GENEROUS) {
                    Ok(got) if got == result(len) => Ok(true),
                    Ok(got) => Err(format!("resumed: a torn result of {} bytes", got.len())),
                    Err(e) => Err(format!("resumed: {e}")),
                };
            }
            // Neither stopped nor ended yet: slow, not stopped.
            Err(JoinError::Timeout { .. }) if started.elapsed() < GENEROUS => continue,
            joined => break joined,
        }
    };
    match joined {
        // The whole result was sent before the child was killed: it is
        // the child's result (a killed child's status says so).
        Ok(got) if got == result(len) => Ok(matches!(
            child.status(),
            Some(daemon::ExitStatus::Signaled(_))
        )),
        Ok(got) => Err(format!("a torn result of {} bytes", got.len())),
        Err(JoinError::Signaled { signal: 9, .. }) => Ok(true),
        Err(e) => Err(format!("join: {e}")),
    }
}

fn every_point(action: Action) {
    let mut unreached = Vec::new();
    for &point in PROCESS_CRASH_POINTS {
        let mut hit = false;
        for len in [16, 1 << 20] {
            let mut middle = Process::new(move || run(point, action, len))
                .start()
                .unwrap();
            let outcome = middle
                .join_timeout(GENEROUS * 2)
                .unwrap_or_else(|e| panic!("{point:?} ({action:?}), {len} bytes: {e}"));
            match outcome {
                Ok(h) => {
                    eprintln!("{point:?} ({action:?}), {len} bytes: hit {h}");
                    hit |= h;
                }
                Err(e) => panic!("{point:?} ({action:?}), {len} bytes: {e}"),
            }
        }
        if !hit {
            unreached.push(point);
        }
    }
    assert!(
        unreached.is_empty(),
        "crash points never reached: {unreached:?}"
    );
}

#[test]
fn a_child_killed_at_any_crash_point_is_joined_on_time_with_its_whole_result_or_an_error() {
    every_point(Action::Kill);
}

#[test]
fn a_child_stopped_at_any_crash_point_times_a_join_out_on_time() {
    every_point(Action::Stop);
}
