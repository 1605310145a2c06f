//! Review 9: the heartbeat demos' arguments. An `#[ignore = "defect: ..."]`
//! test fails on the reviewed commit; the others are attacks withstood.

mod common;

use std::time::Duration;

use common::demos;

/// Runs `demos ARGS` and checks it refused them with a message, not a
/// panic (exit 101).
fn refused_without_panic(args: &[&str]) {
    let run = demos(args, Duration::from_secs(30));
    assert!(
        run.code != Some(101) && !run.stderr.contains("panicked"),
        "demos {args:?} panicked (exit {:?}): {}",
        run.code,
        run.stderr
    );
    assert_ne!(run.code, Some(0), "demos {args:?} succeeded");
}

/// `--interval` is checked to be finite and positive, but a finite number
/// of seconds too large for a `Duration` panics.
#[test]
fn a_huge_interval_is_refused_without_a_panic() {
    refused_without_panic(&["heartbeat", "--interval", "1e30"]);
}

/// `--for` of `heartbeat-monitor` is not checked: a huge or infinite
/// number of seconds panics once the monitor listens.
#[test]
fn a_huge_or_infinite_watch_time_is_refused_without_a_panic() {
    for value in ["1e300", "inf"] {
        refused_without_panic(&[
            "heartbeat-monitor",
            "--listen",
            "127.0.0.1:0",
            "--for",
            value,
        ]);
    }
}

/// Withstood: bad speeds, intervals, beats, and a database that is a
/// directory or a FIFO are refused with a message (the monitor's own
/// `--db` check: "no such database").
#[test]
fn bad_heartbeat_arguments_are_refused() {
    for args in [
        &["--speed", "0", "heartbeat"][..],
        &["--speed", "nan", "heartbeat"],
        &["--speed", "1e300", "heartbeat"],
        &["heartbeat", "--interval", "-1"],
        &["heartbeat", "--interval", "nan"],
        &["heartbeat", "--beats", "0"],
        &[
            "heartbeat-monitor",
            "--listen",
            "127.0.0.1:0",
            "--db",
            "/tmp",
        ],
        &[
            "heartbeat-monitor",
            "--listen",
            "127.0.0.1:0",
            "--db",
            "/dev/stdin",
        ],
        &["--lang", "xx", "heartbeat"],
    ] {
        refused_without_panic(args);
    }
}

/// Withstood: an interval far below the shortest one (1e-300 s) runs at
/// the shortest, and the kill is detected.
#[test]
fn a_tiny_interval_runs_at_the_shortest_and_detects_the_kill() {
    let run = demos(
        &["heartbeat", "--interval", "1e-300"],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(run.value::<bool>("silent_detected"));
}
