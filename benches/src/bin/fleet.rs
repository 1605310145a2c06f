//! W12: the fleet heartbeat at the lesson's scale, 100 machines x 100
//! reporters at a 1 s interval, on PostgreSQL (a throwaway cluster of this
//! run's own, at full durability: fsync, synchronous commit) and on SQLite.
//! Each run is `demos fleet` (release build) watched for `W12_MINUTES`
//! (default 10) before two reporters and one machine are killed. Prints one
//! JSON object per store: the demo's summary (false alarms, ms to the
//! slowest alert, store writes and rows per second, CPU per 1,000 beats).
//!
//! Needs `cargo build --release -p demos` first (`benches/run-all.sh` does).
//! Each run's whole output (every alert line) is kept in
//! `target/procsync-bench/fleet-STORE.log`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Map, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let minutes: f64 = std::env::var("W12_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(10.0);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let demos = target.join("release/demos");
    if !demos.exists() {
        return Err(format!(
            "{} is missing: run `cargo build --release -p demos` first",
            demos.display()
        )
        .into());
    }
    // A hundred collectors hold a connection each.
    let cluster = testkit::postgres::Cluster::start_with(&[
        "max_connections=200",
        "fsync=on",
        "synchronous_commit=on",
        "full_page_writes=on",
    ]);
    let url = cluster.url();
    let watch = format!("{}", minutes * 60.0);
    for store in ["postgres", "sqlite"] {
        let mut command = Command::new(&demos);
        command.args([
            "fleet",
            "--hosts",
            "100",
            "--per-host",
            "100",
            "--speed",
            "1",
            "--watch",
            &watch,
        ]);
        command.args(["--store", store]);
        if store == "postgres" {
            command.args(["--url", &url]);
        }
        command.env_remove("PROCSYNC_FLEET_URL");
        let out = command.output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        // Every alert line of the run, for a look at any false alarm.
        let log = target.join(format!("procsync-bench/fleet-{store}.log"));
        std::fs::write(&log, out.stdout.as_slice())?;
        let summary = stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("summary: "))
            .ok_or_else(|| {
                format!(
                    "demos fleet --store {store} printed no summary:\n{stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        let mut row = Map::new();
        row.insert("workload".into(), "W12".into());
        for pair in summary.split_whitespace() {
            if let Some((k, v)) = pair.split_once('=') {
                let value = v
                    .parse::<u64>()
                    .map_or_else(|_| Value::from(v), Value::from);
                row.insert(k.to_owned(), value);
            }
        }
        row.insert("minutes".into(), minutes.into());
        println!("{}", Value::Object(row));
    }
    Ok(())
}
