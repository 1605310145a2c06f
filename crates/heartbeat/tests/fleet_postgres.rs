//! The fleet between real processes on a PostgreSQL store: a throwaway
//! cluster of the test's own (never a system one), the same scenarios as
//! on SQLite (`fleet.rs`), and the store's own faults: down, restarted.

mod common;

#[path = "fleet_scenarios.rs"]
mod fleet_scenarios;

use std::time::Instant;

use fleet_scenarios::{Fleet, StoreKind, INTERVAL};
use heartbeat::fleet::FleetAlertKind;
use testkit::postgres::Cluster;

fn postgres() -> (Cluster, StoreKind) {
    let cluster = Cluster::start();
    let url = cluster.url();
    (cluster, StoreKind::Postgres(url))
}

#[test]
fn a_killed_reporter_is_one_alert_within_two_intervals() {
    let (_cluster, store) = postgres();
    fleet_scenarios::killed_reporter(Fleet::new(store));
}

#[test]
fn a_killed_collector_is_one_host_alert_not_one_per_reporter() {
    let (_cluster, store) = postgres();
    fleet_scenarios::killed_collector(Fleet::new(store));
}

#[test]
fn a_reporter_whose_progress_stops_is_stuck() {
    let (_cluster, store) = postgres();
    fleet_scenarios::stuck_reporter(Fleet::new(store));
}

#[test]
fn beats_naming_another_host_are_not_kept() {
    let (_cluster, store) = postgres();
    fleet_scenarios::foreign_host(Fleet::new(store));
}

#[test]
fn a_keyed_collector_keeps_signed_reporters_and_drops_forged_beats() {
    let (_cluster, store) = postgres();
    let dir = common::TempDir::new("fleet-pg-keys");
    fleet_scenarios::forged_beats(Fleet::new(store), &dir.0);
}

/// The store down for several intervals, then back (same data): the
/// monitor says so, once each way, and raises no false alarm for any
/// machine or reporter; a reporter killed during the outage is reported
/// once the store is back.
fn outage(restart: bool) {
    let (mut cluster, store) = postgres();
    let mut fleet = Fleet::new(store);
    let collector = fleet.collector("host-a");
    let survivor = fleet.reporter(&collector, "survivor", true);
    let victim = fleet.reporter(&collector, "victim", true);
    fleet.wait_alive("host-a", 2);
    fleet.watch_for(INTERVAL * 2);
    assert!(fleet.alerts.is_empty(), "{:#?}", fleet.alerts);

    if restart {
        cluster.stop();
    } else {
        cluster.kill();
    }
    fleet.watch_until("the store unreachable", |alerts| {
        alerts
            .iter()
            .any(|(_, a)| a.kind == FleetAlertKind::StoreUnreachable)
    });
    victim.kill().unwrap();
    fleet.watch_for(INTERVAL * 6);
    cluster.start_again();
    let back = Instant::now();
    fleet.watch_until("the victim's alert after the outage", |alerts| {
        alerts
            .iter()
            .any(|(_, a)| a.kind == FleetAlertKind::ReporterSilent)
    });
    fleet.watch_for(INTERVAL * 4);
    let kinds: Vec<_> = fleet.alerts.iter().map(|(_, a)| a.kind).collect();
    assert_eq!(
        kinds,
        [
            FleetAlertKind::StoreUnreachable,
            FleetAlertKind::StoreBack,
            FleetAlertKind::ReporterSilent
        ],
        "{:#?}",
        fleet.alerts
    );
    let silent = fleet.alerts_of(FleetAlertKind::ReporterSilent);
    assert_eq!(silent[0].1.id.as_deref(), Some("victim"));
    assert!(
        silent[0].0 - back < INTERVAL * 8,
        "reported {:?} after the store came back",
        silent[0].0 - back
    );
    // The alerts raised while it was down were written once it was back.
    let stored: Vec<_> = fleet
        .monitor
        .store()
        .read_alerts(10)
        .unwrap()
        .into_iter()
        .map(|a| a.kind)
        .collect();
    assert_eq!(stored, kinds);
    for child in [survivor, collector.child] {
        let _ = child.kill();
    }
}

#[test]
fn the_store_killed_and_started_again_raises_no_false_alarm() {
    outage(false);
}

#[test]
fn the_store_restarted_raises_no_false_alarm() {
    outage(true);
}

/// A frozen server (SIGSTOP: it accepts connections, answers nothing) is
/// an unreachable store at the monitor within its read timeout, never a
/// hung monitor; thawed, it is back, with no false alarm.
#[test]
fn a_frozen_store_is_unreachable_not_a_hung_monitor() {
    let (cluster, store) = postgres();
    let mut fleet = Fleet::new(store);
    let collector = fleet.collector("host-a");
    let reporter = fleet.reporter(&collector, "r0", true);
    fleet.wait_alive("host-a", 1);
    cluster.pause();
    let frozen = Instant::now();
    fleet.watch_until("the store unreachable", |alerts| {
        alerts
            .iter()
            .any(|(_, a)| a.kind == FleetAlertKind::StoreUnreachable)
    });
    let waited = frozen.elapsed();
    assert!(
        waited < heartbeat::fleet::DEFAULT_READ_TIMEOUT + INTERVAL * 4,
        "the monitor waited {waited:?} for a frozen store"
    );
    fleet.watch_for(INTERVAL * 4);
    cluster.resume();
    fleet.watch_until("the store back", |alerts| {
        alerts
            .iter()
            .any(|(_, a)| a.kind == FleetAlertKind::StoreBack)
    });
    fleet.watch_for(INTERVAL * 6);
    let kinds: Vec<_> = fleet.alerts.iter().map(|(_, a)| a.kind).collect();
    assert_eq!(
        kinds,
        [FleetAlertKind::StoreUnreachable, FleetAlertKind::StoreBack],
        "{:#?}",
        fleet.alerts
    );
    for child in [reporter, collector.child] {
        let _ = child.kill();
    }
}
