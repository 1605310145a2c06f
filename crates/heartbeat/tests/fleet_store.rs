//! One conformance suite for the fleet's stores, written once against the
//! `Store` trait and run on each store: SQLite always, PostgreSQL (a
//! throwaway cluster of the test's own) with the `postgres` feature.

mod common;

use common::fleet_reporter as reporter;

fn report(host: &str, reporters: Vec<ReporterRow>) -> CollectorReport {
    common::fleet_report(host, Duration::from_secs(1), reporters)
}

use std::time::Duration;

use heartbeat::fleet::{
    CollectorReport, FleetAlert, FleetAlertKind, ReporterRow, Store, StoreTime,
};
use heartbeat::Health;

fn ids(changes: &[heartbeat::fleet::StoredReporter]) -> Vec<(String, String, Health)> {
    let mut all: Vec<_> = changes
        .iter()
        .map(|c| (c.host.clone(), c.reporter.id.clone(), c.reporter.health))
        .collect();
    all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    all
}

/// Every promise of the `Store` trait, on one empty store.
fn conformance(store: &mut dyn Store) {
    // Empty.
    assert!(store.read_hosts().unwrap().is_empty());
    let (t0, changes) = store.read_changes(None).unwrap();
    assert!(changes.is_empty());

    // One write: the machine, dated by the store's clock; every reporter
    // is a change since before it; only those not ALIVE are problems.
    store
        .write(&report(
            "web-1",
            vec![
                reporter("a", Health::Alive),
                reporter("b", Health::Stuck),
                reporter("c", Health::Silent),
            ],
        ))
        .unwrap();
    let hosts = store.read_hosts().unwrap();
    assert_eq!(hosts.len(), 1);
    let h = &hosts[0];
    assert_eq!((h.host.as_str(), h.instance, h.pid), ("web-1", 99, 1234));
    assert_eq!(h.interval, Duration::from_secs(1));
    assert_eq!((h.beats_received, h.beats_rejected), (30, 2));
    assert_eq!(h.counts, (1, 1, 1));
    assert!(h.since_last_write < Duration::from_secs(5), "{h:?}");
    let (_, all) = store.read_changes(Some(StoreTime(t0.0 - 1000))).unwrap();
    assert_eq!(all.len(), 3);
    let a = all.iter().find(|c| c.reporter.id == "a").unwrap();
    assert_eq!(
        a.reporter,
        ReporterRow {
            since_last_beat: a.reporter.since_last_beat,
            ..reporter("a", Health::Alive)
        }
    );
    // The beat is dated by the store's clock less its age at the write.
    assert!(
        a.reporter.since_last_beat >= Duration::from_millis(150),
        "{a:?}"
    );
    assert!(a.reporter.since_last_beat < Duration::from_secs(5), "{a:?}");
    let (t1, problems) = store.read_changes(None).unwrap();
    assert_eq!(
        ids(&problems),
        [
            ("web-1".into(), "b".into(), Health::Stuck),
            ("web-1".into(), "c".into(), Health::Silent)
        ]
    );

    // The same healths again: no change after t1 (a write does not move
    // `changed` unless the health moves); a health that moves is one.
    std::thread::sleep(Duration::from_millis(20)); // distinct store times
    store
        .write(&report(
            "web-1",
            vec![
                reporter("a", Health::Alive),
                reporter("b", Health::Alive),
                reporter("c", Health::Silent),
            ],
        ))
        .unwrap();
    let (_, changed) = store.read_changes(Some(StoreTime(t1.0 + 1))).unwrap();
    assert_eq!(ids(&changed), [("web-1".into(), "b".into(), Health::Alive)]);
    assert_eq!(store.read_hosts().unwrap()[0].counts, (2, 0, 1));

    // Another machine's write touches only its own rows.
    let mut other = report("web-2", vec![reporter("a", Health::Silent)]);
    other.forget_after = Duration::ZERO;
    store.write(&other).unwrap();
    let (_, problems) = store.read_changes(None).unwrap();
    assert_eq!(
        ids(&problems),
        [
            ("web-1".into(), "c".into(), Health::Silent),
            ("web-2".into(), "a".into(), Health::Silent)
        ]
    );
    assert_eq!(store.read_hosts().unwrap().len(), 2);

    // Rows a write no longer names are deleted after `forget_after`.
    std::thread::sleep(Duration::from_millis(20));
    let mut forgetting = report("web-1", vec![reporter("a", Health::Alive)]);
    forgetting.forget_after = Duration::from_millis(1);
    store.write(&forgetting).unwrap();
    let (_, problems) = store.read_changes(None).unwrap();
    assert_eq!(
        ids(&problems),
        [("web-2".into(), "a".into(), Health::Silent)]
    );
    let (_, left) = store.read_changes(Some(StoreTime(0))).unwrap();
    assert_eq!(
        ids(&left),
        [
            ("web-1".into(), "a".into(), Health::Alive),
            ("web-2".into(), "a".into(), Health::Silent)
        ]
    );

    // u64 values round-trip, all 64 bits.
    let mut huge = reporter("huge", Health::Stuck);
    huge.instance = u64::MAX;
    huge.seq = u64::MAX - 1;
    huge.progress = 1 << 63;
    store.write(&report("web-3", vec![huge.clone()])).unwrap();
    let (_, problems) = store.read_changes(None).unwrap();
    let got = problems.iter().find(|c| c.reporter.id == "huge").unwrap();
    assert_eq!(
        (
            got.reporter.instance,
            got.reporter.seq,
            got.reporter.progress
        ),
        (huge.instance, huge.seq, huge.progress)
    );

    // Ids as long as a reporter may send (4,096 bytes: a PostgreSQL
    // B-tree entry holds about 2,700; review 10), unicode, quotes.
    let long = "x".repeat(heartbeat::MAX_ID_BYTES);
    let odd = "名字 '\"; DROP TABLE reporters; --";
    store
        .write(&report(
            "web-4",
            vec![
                reporter(&long, Health::Silent),
                reporter(odd, Health::Silent),
            ],
        ))
        .unwrap();
    let (_, problems) = store.read_changes(None).unwrap();
    let mut web4: Vec<_> = problems
        .iter()
        .filter(|c| c.host == "web-4")
        .map(|c| c.reporter.id.clone())
        .collect();
    web4.sort();
    assert_eq!(web4, [long, odd.to_owned()]);

    // Alerts, in the order recorded.
    let mut silent = FleetAlert::new(FleetAlertKind::HostSilent, "web-2", "no write for 2.0 s");
    silent.at = StoreTime(1_700_000_000_000);
    let mut stuck = FleetAlert::new(FleetAlertKind::ReporterStuck, "web-1", "progress 10");
    stuck.id = Some("b".into());
    stuck.instance = Some(u64::MAX);
    stuck.at = StoreTime(1_700_000_001_000);
    store
        .record_alerts(&[silent.clone(), stuck.clone()])
        .unwrap();
    assert_eq!(store.read_alerts(10).unwrap(), [silent, stuck.clone()]);
    assert_eq!(store.read_alerts(1).unwrap(), [stuck]);
}

#[test]
fn sqlite_store_keeps_every_promise() {
    let dir = common::TempDir::new("fleet-store");
    let mut store = heartbeat::fleet::SqliteStore::open(dir.0.join("fleet.db")).unwrap();
    conformance(&mut store);
}

#[test]
fn sqlite_store_refuses_tables_of_a_newer_version() {
    let dir = common::TempDir::new("fleet-store-version");
    let path = dir.0.join("fleet.db");
    drop(heartbeat::fleet::SqliteStore::open(&path).unwrap());
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute("INSERT INTO heartbeat_schema (version) VALUES (99)", [])
        .unwrap();
    let error = heartbeat::fleet::SqliteStore::open(&path).unwrap_err();
    assert!(error.to_string().contains("schema version 99"), "{error}");
}

#[cfg(feature = "postgres")]
mod postgres_store {
    use super::*;

    #[test]
    fn postgres_store_keeps_every_promise() {
        let cluster = testkit::postgres::Cluster::start();
        let mut store = heartbeat::fleet::PgStore::open(&cluster.url()).unwrap();
        conformance(&mut store);
    }

    #[test]
    fn postgres_store_refuses_tables_of_a_newer_version() {
        let cluster = testkit::postgres::Cluster::start();
        drop(heartbeat::fleet::PgStore::open(&cluster.url()).unwrap());
        let mut client = heartbeat::postgres::connect(&cluster.url()).unwrap();
        client
            .execute(
                "INSERT INTO heartbeat.schema_version (version) VALUES (99)",
                &[],
            )
            .unwrap();
        let error = heartbeat::fleet::PgStore::open(&cluster.url()).unwrap_err();
        assert!(error.to_string().contains("schema version 99"), "{error}");
    }

    #[test]
    fn many_collectors_migrating_at_once_all_succeed() {
        let cluster = testkit::postgres::Cluster::start();
        let url = cluster.url();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || heartbeat::fleet::PgStore::open(&url).map(drop))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
    }
}
