//! Review 10: the fleet heartbeat (issue #16) attacked between real
//! processes: collectors and reporters as processes, a throwaway
//! PostgreSQL cluster of the test's own. Fifteen of these tests proved a
//! defect (each failed on the code of the review, and was un-ignored with
//! its fix); the others are promises that withstood the attack.

mod common;

#[path = "fleet_scenarios.rs"]
mod fleet_scenarios;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fleet_scenarios::{CollectorProcess, Fleet, StoreKind, INTERVAL};
use heartbeat::fleet::{
    Collector, FleetAlert, FleetAlertKind, HostHealth, PgStore, SqliteStore, Store, StoreTime,
};
use shm::Shared;
use testkit::postgres::Cluster;
use testkit::GENEROUS;

fn postgres() -> (Cluster, StoreKind) {
    let cluster = Cluster::start();
    let url = cluster.url();
    (cluster, StoreKind::Postgres(url))
}

fn sqlite() -> (common::TempDir, StoreKind) {
    let dir = common::TempDir::new("review10");
    let path = dir.0.join("fleet.db");
    (dir, StoreKind::Sqlite(path))
}

/// Watches `fleet` for `duration`, then asserts that `host` was never
/// called silent and is alive now.
fn assert_host_never_silent(fleet: &mut Fleet, host: &str, duration: Duration) {
    fleet.watch_for(duration);
    let silent = fleet.alerts_of(FleetAlertKind::HostSilent);
    assert!(
        silent.is_empty(),
        "{host} (its collector and a reporter alive) was called silent: {:#?}\nstatus: {:#?}",
        fleet.alerts,
        fleet.monitor.status()
    );
    assert_eq!(fleet.monitor.host_health(host), Some(HostHealth::Alive));
}

/// A reporter whose id holds a NUL byte (`Reporter::new` takes it; so does
/// the collector, keyed or not) makes the PostgreSQL store refuse the
/// collector's whole statement (text cannot hold NUL): every write of the
/// machine fails from then on, and the fleet monitor calls a live machine
/// with a live collector silent (its other reporters unknown). Anyone who
/// can send one datagram to an unkeyed collector can do the same.
#[test]
fn a_nul_byte_in_a_reporter_id_does_not_silence_its_machine_on_postgres() {
    let (_cluster, store) = postgres();
    let mut fleet = Fleet::new(store);
    let collector = fleet.collector("host-a");
    let good = fleet.reporter(&collector, "good", true);
    fleet.wait_alive("host-a", 1);
    let odd = fleet.reporter(&collector, "odd\0id", true);
    assert_host_never_silent(&mut fleet, "host-a", INTERVAL * 12);
    for child in [good, odd, collector.child] {
        let _ = child.kill();
    }
}

/// A reporter id of 3,000 bytes is within the crate's own limit
/// (`MAX_ID_BYTES`, 4,096: `Reporter::start` takes it, the collector keeps
/// it), but an incompressible one is over PostgreSQL's btree limit (2,704
/// bytes) for the `reporters` primary key: the whole statement fails, every
/// interval, and the live machine is called silent.
#[test]
fn a_long_reporter_id_within_the_limit_does_not_silence_its_machine_on_postgres() {
    let (_cluster, store) = postgres();
    let mut fleet = Fleet::new(store);
    let collector = fleet.collector("host-a");
    let good = fleet.reporter(&collector, "good", true);
    fleet.wait_alive("host-a", 1);
    let mut rng = testkit::Rng::new(16);
    let long: String = (0..3_000)
        .map(|_| char::from(b'!' + rng.below(94) as u8))
        .collect();
    assert!(long.len() <= heartbeat::MAX_ID_BYTES);
    let odd = fleet.reporter(&collector, &long, true);
    assert_host_never_silent(&mut fleet, "host-a", INTERVAL * 12);
    for child in [good, odd, collector.child] {
        let _ = child.kill();
    }
}

/// The same 3,000-byte id on SQLite: no limit there (a promise kept). A
/// NUL in an id is refused at `Reporter::start` since the fix of
/// `a_nul_byte_in_a_reporter_id_does_not_silence_its_machine_on_postgres`.
#[test]
fn a_long_reporter_id_within_the_limit_is_written_on_sqlite() {
    let (_dir, store) = sqlite();
    let mut fleet = Fleet::new(store);
    let collector = fleet.collector("host-a");
    let mut rng = testkit::Rng::new(16);
    let long: String = (0..3_000)
        .map(|_| char::from(b'!' + rng.below(94) as u8))
        .collect();
    let odd = fleet.reporter(&collector, &long, true);
    let refused = heartbeat::Reporter::new("odd\0id")
        .udp(collector.addr)
        .start();
    assert!(
        matches!(
            refused,
            Err(heartbeat::HeartbeatError::NulByte { what: "id" })
        ),
        "{refused:?}"
    );
    fleet.wait_alive("host-a", 1);
    assert_host_never_silent(&mut fleet, "host-a", INTERVAL * 6);
    let (_, all) = fleet
        .monitor
        .store()
        .read_changes(Some(StoreTime(0)))
        .unwrap();
    let mut ids: Vec<_> = all.iter().map(|c| c.reporter.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, [long]);
    for child in [odd, collector.child] {
        let _ = child.kill();
    }
}

/// A collector process for `host` bound at `addr` (the port a collector
/// before it had: its reporters beat there), writing to `store`.
fn collector_at(store: &StoreKind, host: &str, addr: SocketAddr) -> daemon::Child<()> {
    let ready = Shared::new(AtomicU32::new(0)).unwrap();
    let (store, host) = (store.clone(), host.to_owned());
    let child = daemon::Process::new({
        let ready = &ready;
        move || {
            let mut collector = Collector::bind(addr, store.open())
                .unwrap()
                .host(host)
                .interval(INTERVAL);
            ready.store(1, Ordering::Release);
            collector.run_for(GENEROUS * 6).unwrap();
        }
    })
    .start()
    .unwrap();
    testkit::wait_until("the new collector listens", || {
        ready.load(Ordering::Acquire) != 0
    });
    child
}

/// A machine's collector restarted (SIGKILLed and started again on its
/// port: an upgrade, an OOM kill) while one of its reporters dies with it
/// (the same OOM kill, a reboot of the service). The new collector never
/// hears the dead reporter, so never judges it; its row stays `alive` in
/// the store, and the fleet monitor, which takes the collectors' verdicts
/// as they are, never reports it: a missed death (the row is deleted
/// silently 100 intervals later).
#[test]
fn a_reporter_dead_across_a_collector_restart_is_reported_silent() {
    let (_dir, store) = sqlite();
    let mut fleet = Fleet::new(store.clone());
    let old: CollectorProcess = fleet.collector("host-a");
    let survivor = fleet.reporter(&old, "survivor", true);
    let victim = fleet.reporter(&old, "victim", true);
    fleet.wait_alive("host-a", 2);
    fleet.watch_for(INTERVAL * 2);

    victim.kill().unwrap();
    let mut old_child = old.child;
    old_child.kill().unwrap();
    let killed = Instant::now();
    // Gone, its port free again.
    let _ = old_child.join_timeout(GENEROUS);
    let new = collector_at(&store, "host-a", old.addr);
    let limit = killed + INTERVAL * 16;
    while Instant::now() < limit && fleet.alerts_of(FleetAlertKind::ReporterSilent).is_empty() {
        fleet.watch_for(INTERVAL / 10);
    }
    let (_, rows) = fleet
        .monitor
        .store()
        .read_changes(Some(StoreTime(0)))
        .unwrap();
    let victim_row: Vec<_> = rows.iter().filter(|r| r.reporter.id == "victim").collect();
    assert!(
        fleet
            .alerts_of(FleetAlertKind::ReporterSilent)
            .iter()
            .any(|(_, a)| a.id.as_deref() == Some("victim")),
        "the victim, killed {:?} ago (16 intervals) with its collector, was never reported: \
         alerts {:#?}\nits row in the store: {victim_row:#?}",
        killed.elapsed(),
        fleet.alerts
    );
    for child in [survivor, new] {
        let _ = child.kill();
    }
}

/// `Store::read_alerts` promises "the last `limit` alerts of the table".
/// The PostgreSQL store picks them by `at`, the monitor's wall clock: once
/// that clock steps back (NTP, a VM restored), every alert raised after
/// the step sorts before the ones raised before it, and `read_alerts`
/// returns old alerts instead of the newest (SQLite, by rowid, returns the
/// newest). Here: an alert dated 10:00 recorded, the clock steps back one
/// hour, an alert dated 09:00:01 recorded; the last one is the second.
fn last_alert_is_the_last_recorded(store: &mut dyn Store) {
    let first = FleetAlert::new(FleetAlertKind::HostSilent, "before-the-step", "first");
    let mut second = FleetAlert::new(FleetAlertKind::HostSilent, "after-the-step", "second");
    second.at = StoreTime(first.at.0 - 3_599_000);
    store.record_alerts(&[first]).unwrap();
    store.record_alerts(&[second]).unwrap();
    let last = store.read_alerts(1).unwrap();
    assert_eq!(
        last.iter().map(|a| a.host.as_str()).collect::<Vec<_>>(),
        ["after-the-step"],
        "the last alert recorded is not the last one read"
    );
}

#[test]
fn the_last_alert_recorded_is_the_last_read_on_postgres() {
    let cluster = Cluster::start();
    let mut store = PgStore::open(&cluster.url()).unwrap();
    last_alert_is_the_last_recorded(&mut store);
}

#[test]
fn the_last_alert_recorded_is_the_last_read_on_sqlite() {
    let dir = common::TempDir::new("review10-alerts");
    let mut store = SqliteStore::open(dir.0.join("fleet.db")).unwrap();
    last_alert_is_the_last_recorded(&mut store);
}

/// A password given in the URL's query (`?password=...`, which libpq and
/// the `postgres` crate take) is shown in the error of a failed connect:
/// the redaction masks only `user:password@`. The collector prints that
/// error on stderr (`store unreachable: ...`), into every log.
#[test]
fn a_password_in_the_urls_query_is_not_shown_in_errors() {
    let cluster = Cluster::start();
    let secret = "wrong-secret-7f3a9c";
    let url = format!("{}?password={secret}", cluster.url_without_password());
    let error = PgStore::open(&url).expect_err("a wrong password");
    let shown = format!("{error} / {error:?}");
    assert!(!shown.contains(secret), "the password is shown: {shown}");
}

/// A password that holds a `/` (not percent-encoded, as people paste
/// them) makes the URL unreadable, and the error shows the whole URL,
/// password and all.
#[test]
fn a_password_in_an_unreadable_url_is_not_shown_in_errors() {
    let secret = "pa/ss-7f3a9c";
    let url = format!("postgresql://tester:{secret}@127.0.0.1:1/postgres");
    let error = PgStore::open(&url).expect_err("an unreadable URL");
    let shown = format!("{error} / {error:?}");
    assert!(!shown.contains("7f3a9c"), "the password is shown: {shown}");
}

/// After an outage of the store, the monitor judges no machine silent
/// for one interval and the slack "time for every collector to write
/// again" (`FleetMonitor::check`'s docs), but it takes the *longest*
/// interval of any machine in the store for every machine: one machine
/// whose collector writes every 20 s (a batch host) stretches the grace
/// of a machine that writes every 250 ms to 30 s, and that machine's
/// collector, killed right after the store came back, is not reported
/// within 2 of its intervals (nor 16).
#[test]
fn a_machine_killed_after_the_store_came_back_is_reported_on_its_own_interval() {
    let (mut cluster, store) = postgres();
    let url = cluster.url();
    let mut fleet = Fleet::new(store);
    let a = fleet.collector("host-a");
    let r0 = fleet.reporter(&a, "r0", true);
    fleet.wait_alive("host-a", 1);
    PgStore::open(&url)
        .unwrap()
        .write(&common::fleet_report(
            "batch-host",
            Duration::from_secs(20),
            Vec::new(),
        ))
        .unwrap();
    fleet.watch_for(INTERVAL * 2);
    assert!(fleet.alerts.is_empty(), "{:#?}", fleet.alerts);

    cluster.stop();
    fleet.watch_until("the store unreachable", |alerts| {
        alerts
            .iter()
            .any(|(_, a)| a.kind == FleetAlertKind::StoreUnreachable)
    });
    cluster.start_again();
    fleet.watch_until("the store back", |alerts| {
        alerts
            .iter()
            .any(|(_, a)| a.kind == FleetAlertKind::StoreBack)
    });
    // host-a writes again; its own grace (1.5 intervals) is over.
    fleet.watch_for(INTERVAL * 3);
    let killed = Instant::now();
    a.child.kill().unwrap();
    let limit = killed + INTERVAL * 16;
    while Instant::now() < limit && fleet.alerts_of(FleetAlertKind::HostSilent).is_empty() {
        fleet.watch_for(INTERVAL / 10);
    }
    let silent = fleet.alerts_of(FleetAlertKind::HostSilent);
    assert!(
        silent.first().is_some_and(
            |(at, alert)| alert.host == "host-a" && *at - killed <= INTERVAL * 2 + INTERVAL / 2
        ),
        "host-a killed {:?} ago (interval {INTERVAL:?}): alerts {:#?}\nstatus {:#?}",
        killed.elapsed(),
        fleet.alerts,
        fleet.monitor.status()
    );
    let _ = r0.kill();
}

/// "A store made by a newer version is refused rather than written
/// wrongly" (`SCHEMA_VERSION`). The SQLite store refuses a file of schema
/// version 2, but only after creating this version's tables and index in
/// it (`collectors`, `reporters`, `alerts`): the newer file is written.
#[test]
fn a_newer_sqlite_store_is_refused_untouched() {
    let dir = common::TempDir::new("review10-schema");
    let path = dir.0.join("fleet.db");
    let newer = rusqlite::Connection::open(&path).unwrap();
    newer
        .execute_batch(
            "CREATE TABLE heartbeat_schema (version INTEGER NOT NULL);
             INSERT INTO heartbeat_schema VALUES (2);
             CREATE TABLE machines_v2 (host TEXT PRIMARY KEY);",
        )
        .unwrap();
    let tables = || -> Vec<String> {
        let mut names = newer
            .prepare("SELECT name FROM sqlite_master ORDER BY name")
            .unwrap();
        names
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let before = tables();
    let error = SqliteStore::open(&path).expect_err("a newer schema");
    assert!(error.to_string().contains("newer"), "{error}");
    assert_eq!(tables(), before, "the newer file was written");
}

/// The same on PostgreSQL: refused, and nothing created (the migration's
/// transaction is rolled back): a promise kept.
#[test]
fn a_newer_postgres_store_is_refused_untouched() {
    let cluster = Cluster::start();
    let mut client = postgres::Client::connect(&cluster.url(), postgres::NoTls).unwrap();
    client
        .batch_execute(
            "CREATE SCHEMA heartbeat;
             CREATE TABLE heartbeat.schema_version (version integer NOT NULL);
             INSERT INTO heartbeat.schema_version VALUES (2);",
        )
        .unwrap();
    let error = PgStore::open(&cluster.url()).expect_err("a newer schema");
    assert!(error.to_string().contains("newer"), "{error}");
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = 'heartbeat' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tables, ["schema_version"]);
}

/// A store that stalls for a second (a checkpoint's I/O, a lock, a
/// failover's pause: here the server SIGSTOPped for 4 collector intervals,
/// less than the monitor's read timeout) is a slow store, not dead
/// machines: every collector was writing, and wrote again as soon as the
/// server answered. The monitor's read, answered at the same moment,
/// finds every machine late by the stall and calls each of them silent
/// (then back): one false alarm per machine of the fleet.
#[test]
fn a_store_stalled_for_a_second_calls_no_machine_silent() {
    let (cluster, store) = postgres();
    let mut fleet = Fleet::new(store);
    let a = fleet.collector("host-a");
    let b = fleet.collector("host-b");
    let ra = fleet.reporter(&a, "ra", true);
    let rb = fleet.reporter(&b, "rb", true);
    fleet.wait_alive("host-a", 1);
    fleet.wait_alive("host-b", 1);
    fleet.watch_for(INTERVAL * 2);
    assert!(fleet.alerts.is_empty(), "{:#?}", fleet.alerts);
    std::thread::scope(|s| {
        cluster.pause();
        s.spawn(|| {
            std::thread::sleep(INTERVAL * 4); // the stall's length
            cluster.resume();
        });
        fleet.watch_for(INTERVAL * 12);
    });
    let silent = fleet.alerts_of(FleetAlertKind::HostSilent);
    assert!(
        silent.is_empty(),
        "a stall of {:?} (read timeout {:?}) made live machines silent: {:#?}",
        INTERVAL * 4,
        heartbeat::fleet::DEFAULT_READ_TIMEOUT,
        fleet.alerts
    );
    for child in [ra, rb, a.child, b.child] {
        let _ = child.kill();
    }
}

/// A collector restarted (on its port) while one of its reporters is
/// STUCK: the new collector has no history of the reporter's progress and
/// writes it ALIVE, so the monitor raises `reporter_back` ("beats and
/// moves again": it does not move) and, `stuck_after` intervals later, a
/// second `reporter_stuck`: a false alert and a doubled one.
#[test]
fn a_stuck_reporter_stays_stuck_across_a_collector_restart() {
    let (_dir, store) = sqlite();
    let mut fleet = Fleet::new(store.clone());
    let old = fleet.collector("host-a");
    let stuck = fleet.reporter(&old, "stuck", false);
    fleet.watch_until("the stuck reporter's alert", |alerts| {
        alerts
            .iter()
            .any(|(_, a)| a.kind == FleetAlertKind::ReporterStuck)
    });
    let mut old_child = old.child;
    old_child.kill().unwrap();
    let _ = old_child.join_timeout(GENEROUS);
    let new = collector_at(&store, "host-a", old.addr);
    fleet.watch_for(INTERVAL * 24);
    let kinds: Vec<_> = fleet
        .alerts
        .iter()
        .filter(|(_, a)| a.id.is_some())
        .map(|(_, a)| a.kind)
        .collect();
    assert_eq!(
        kinds,
        [FleetAlertKind::ReporterStuck],
        "{:#?}",
        fleet.alerts
    );
    for child in [stuck, new] {
        let _ = child.kill();
    }
}

/// Hostile but storable ids (SQL metacharacters, unicode, a right-to-left
/// override) and u64 values at their extremes are written and read back
/// unchanged by both stores: promises kept.
fn hostile_ids_and_extreme_numbers_round_trip(store: &mut dyn Store) {
    let ids = [
        "'; DROP TABLE reporters; --",
        "a\"b\\c$1%_*",
        "进程-😀",
        "\u{202e}evil",
    ];
    let rows: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| heartbeat::fleet::ReporterRow {
            instance: u64::MAX - i as u64,
            pid: u32::MAX,
            seq: u64::MAX,
            progress: 1 << 63,
            interval_ms: 3_600_000,
            ..common::fleet_reporter(id, heartbeat::Health::Silent)
        })
        .collect();
    store
        .write(&common::fleet_report("host-'\"", INTERVAL, rows.clone()))
        .unwrap();
    let (_, mut read) = store.read_changes(Some(StoreTime(0))).unwrap();
    read.sort_by_key(|r| std::cmp::Reverse(r.reporter.instance));
    assert_eq!(read.len(), rows.len(), "{read:#?}");
    for (got, want) in read.iter().zip(&rows) {
        assert_eq!(got.host, "host-'\"");
        let got = &got.reporter;
        assert_eq!(
            (&got.id, got.instance, got.pid, got.seq, got.progress),
            (&want.id, want.instance, want.pid, want.seq, want.progress)
        );
    }
    let hosts = store.read_hosts().unwrap();
    assert_eq!(hosts[0].host, "host-'\"");
}

#[test]
fn hostile_ids_and_extreme_numbers_round_trip_on_postgres() {
    let cluster = Cluster::start();
    let mut store = PgStore::open(&cluster.url()).unwrap();
    hostile_ids_and_extreme_numbers_round_trip(&mut store);
}

#[test]
fn hostile_ids_and_extreme_numbers_round_trip_on_sqlite() {
    let dir = common::TempDir::new("review10-ids");
    let mut store = SqliteStore::open(dir.0.join("fleet.db")).unwrap();
    hostile_ids_and_extreme_numbers_round_trip(&mut store);
}

/// Every connection of every collector and monitor runs the migration,
/// even on a store already at this version: under the advisory lock, the
/// whole schema script, whose `CREATE INDEX IF NOT EXISTS` took a SHARE
/// lock on `heartbeat.reporters` (taken before the index is found to
/// exist) until the migration commits. A migrator that stalls there (a
/// monitor starting while its host swaps, a SIGSTOP, a network stall
/// before its COMMIT; here the same statements in a session that does not
/// commit yet) blocks every collector's write, while reads go on: the
/// monitor calls every live machine silent.
#[test]
fn a_stalled_migration_does_not_silence_the_fleet() {
    let (cluster, store) = postgres();
    let mut fleet = Fleet::new(store);
    let a = fleet.collector("host-a");
    let ra = fleet.reporter(&a, "ra", true);
    fleet.wait_alive("host-a", 1);
    fleet.watch_for(INTERVAL * 2);
    assert!(fleet.alerts.is_empty(), "{:#?}", fleet.alerts);
    let mut migrator = postgres::Client::connect(&cluster.url(), postgres::NoTls).unwrap();
    let mut stalled = migrator.transaction().unwrap();
    // What `PgStore`'s migration runs on a store already made, since the
    // fix: a read of the version, nothing that locks out writers (before:
    // the advisory lock and the whole script, `CREATE INDEX IF NOT EXISTS`
    // on `reporters` included, which stopped every write here).
    stalled
        .batch_execute(
            "SELECT max(version) FROM heartbeat.schema_version
             WHERE to_regclass('heartbeat.schema_version') IS NOT NULL",
        )
        .unwrap();
    // And a store opened meanwhile (a monitor starting) is not held up.
    drop(heartbeat::fleet::PgStore::open(&cluster.url()).unwrap());
    fleet.watch_for(INTERVAL * 8);
    stalled.commit().unwrap();
    fleet.watch_for(INTERVAL * 2);
    let silent = fleet.alerts_of(FleetAlertKind::HostSilent);
    assert!(
        silent.is_empty(),
        "a migration held open for {:?} silenced live machines: {:#?}",
        INTERVAL * 8,
        fleet.alerts
    );
    for child in [ra, a.child] {
        let _ = child.kill();
    }
}

/// "`Duration::MAX` timeouts: treated as no limit, never an overflow
/// panic" (docs/reliability.md). `Collector::interval(Duration::MAX)` (a
/// machine that should never be judged silent, say) panics at once:
/// `forget_after = interval * 100` overflows.
#[test]
fn a_collector_interval_of_duration_max_does_not_panic() {
    let dir = common::TempDir::new("review10-max");
    let collector = Collector::bind(
        "127.0.0.1:0",
        SqliteStore::open(dir.0.join("fleet.db")).unwrap(),
    )
    .unwrap();
    let set = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(collector.interval(Duration::MAX));
    }));
    assert!(set.is_ok(), "Collector::interval(Duration::MAX) panicked");
}

/// The fix of `a_stalled_migration_does_not_silence_the_fleet`, directly:
/// opening a store whose schema is current takes no lock that writers
/// conflict with. Here a writer's own lock (ROW EXCLUSIVE on `reporters`,
/// as an upsert holds until it commits) is held while a store opens: the
/// old migration's `CREATE INDEX IF NOT EXISTS` wanted a SHARE lock on the
/// table and waited behind it (and every later write behind that).
#[test]
fn opening_a_current_store_takes_no_lock_against_writers() {
    let (cluster, _store) = postgres();
    drop(heartbeat::fleet::PgStore::open(&cluster.url()).unwrap());
    let mut writer = postgres::Client::connect(&cluster.url(), postgres::NoTls).unwrap();
    let mut writing = writer.transaction().unwrap();
    writing
        .batch_execute("LOCK TABLE heartbeat.reporters IN ROW EXCLUSIVE MODE")
        .unwrap();
    let url = cluster.url();
    let opened = testkit::within(move || heartbeat::fleet::PgStore::open(&url).map(drop));
    assert!(opened.is_ok(), "{opened:?}");
    writing.commit().unwrap();
}
