//! The command line itself: help, bad input, `all`.

mod common;

use std::path::Path;
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

/// Every scenario's `--help` names the lesson's program as a short example:
/// a file under some crate's `examples/` that exists, and the command that
/// runs it, with the package its crate's Cargo.toml names.
#[test]
fn each_scenarios_help_names_its_example_and_its_source_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let scenarios = [
        "isolation",
        "daemon",
        "daemon-order",
        "result",
        "heartbeat",
        "heartbeat-monitor",
        "echo-server",
        "echo-client",
        "tickets",
        "ktv",
        "traffic",
        "queue",
        "pool",
        "fleet",
    ];
    for scenario in scenarios {
        let run = demos(&[scenario, "--help"], Duration::from_secs(30));
        assert_eq!(run.code, Some(0), "{scenario} --help: {}", run.stderr);
        let files: Vec<&str> = run
            .stdout
            .split_whitespace()
            .filter(|word| word.starts_with("crates/") && word.contains("/examples/"))
            .collect();
        assert!(
            !files.is_empty(),
            "{scenario} --help names no example:\n{}",
            run.stdout
        );
        for file in files {
            assert!(
                root.join(file).is_file(),
                "{scenario} --help names {file}: no such file"
            );
            let (krate, name) = file
                .strip_suffix(".rs")
                .and_then(|f| f.split_once("/examples/"))
                .unwrap_or_else(|| panic!("{scenario} --help: {file} is no example's source"));
            let manifest = std::fs::read_to_string(root.join(krate).join("Cargo.toml"))
                .expect("the crate's Cargo.toml");
            let package = manifest
                .lines()
                .find_map(|l| l.strip_prefix("name = \""))
                .and_then(|l| l.strip_suffix('"'))
                .expect("the package's name");
            let command = format!("cargo run -p {package} --example {name}");
            assert!(
                run.stdout.contains(&command),
                "{scenario} --help names {file} but not `{command}`:\n{}",
                run.stdout
            );
        }
    }
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
