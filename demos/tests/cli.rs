//! The command line itself: help, bad input, `all`.

mod common;

use std::time::Duration;

use common::demos;

/// Every scenario `demos all` runs, in order.
const SCENARIOS: &[&str] = &[
    "isolation",
    "result",
    "daemon",
    "daemon-order",
    "heartbeat",
    "echo",
    "tickets",
    "ktv",
    "traffic",
    "queue",
    "pool",
    "fleet",
];

#[test]
fn help_lists_every_scenario() {
    let run = demos(&["--help"], Duration::from_secs(30));
    assert_eq!(run.code, Some(0));
    let listed = [
        "isolation",
        "result",
        "daemon",
        "daemon-order",
        "heartbeat",
        "heartbeat-monitor",
    ];
    let more = [
        "echo-server",
        "echo-client",
        "tickets",
        "ktv",
        "traffic",
        "all",
    ];
    for scenario in listed.iter().chain(&more) {
        assert!(
            run.stdout.contains(scenario),
            "--help lacks {scenario}:\n{}",
            run.stdout
        );
    }
    assert!(run.stdout.contains("--speed") && run.stdout.contains("--lang"));
}

#[test]
fn a_bad_speed_is_refused_with_a_reason() {
    for bad in ["0", "-2", "fast", "inf", "1e-300", "1e300"] {
        let run = demos(&["isolation", "--speed", bad], Duration::from_secs(30));
        assert_eq!(run.code, Some(2), "speed {bad} accepted");
        assert!(
            run.stderr.contains("speed") || run.stderr.contains("number"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn all_runs_every_scenario_and_counts_them() {
    let run = demos(&["all", "--speed", "10"], Duration::from_secs(60));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for scenario in SCENARIOS {
        assert!(
            run.stdout.contains(&format!("=== {scenario} ===")),
            "{scenario} missing"
        );
    }
    assert_eq!(
        run.stdout.matches("summary: ").count(),
        SCENARIOS.len() + 1,
        "one per scenario, one for all"
    );
    assert_eq!(run.value::<usize>("scenarios"), SCENARIOS.len());
}
