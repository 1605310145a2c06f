//! The fleet between real processes: reporters (each its own process and
//! reporting daemon) beat to a collector (a forked process) that writes a
//! store, and a fleet monitor reads the store. Run on SQLite here and on a
//! throwaway PostgreSQL cluster (feature `postgres`) in `fleet_postgres.rs`,
//! through the same scenarios (`fleet_scenarios` below).

mod common;

#[path = "fleet_scenarios.rs"]
mod fleet_scenarios;

use fleet_scenarios::{Fleet, StoreKind};

fn sqlite() -> (common::TempDir, StoreKind) {
    let dir = common::TempDir::new("fleet");
    let path = dir.0.join("fleet.db");
    (dir, StoreKind::Sqlite(path))
}

#[test]
fn a_killed_reporter_is_one_alert_within_two_intervals() {
    let (_dir, store) = sqlite();
    fleet_scenarios::killed_reporter(Fleet::new(store));
}

#[test]
fn a_killed_collector_is_one_host_alert_not_one_per_reporter() {
    let (_dir, store) = sqlite();
    fleet_scenarios::killed_collector(Fleet::new(store));
}

#[test]
fn a_reporter_whose_progress_stops_is_stuck() {
    let (_dir, store) = sqlite();
    fleet_scenarios::stuck_reporter(Fleet::new(store));
}

#[test]
fn beats_naming_another_host_are_not_kept() {
    let (_dir, store) = sqlite();
    fleet_scenarios::foreign_host(Fleet::new(store));
}

#[test]
fn a_keyed_collector_keeps_signed_reporters_and_drops_forged_beats() {
    let (dir, store) = sqlite();
    fleet_scenarios::forged_beats(Fleet::new(store), &dir.0);
}
