//! The SQLite sink and the monitor's reading of it: safe after a fork,
//! robust to locks, clocks and bad rows.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use daemon::Process;
use heartbeat::{Health, HeartbeatError, Monitor, Reporter};
use shm::{Futex, Shared};
use testkit::{deadline, raise, wait_for, GENEROUS};

mod common;
use common::{beat_receiver, next_beat, TempDir};

const INTERVAL: Duration = Duration::from_millis(100);

/// Writes rows into `path` as fast as it can until `stop`: a thread that is
/// inside SQLite most of the time.
fn write_until(path: &Path, stop: &AtomicBool) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
        .unwrap();
    while !stop.load(Ordering::Relaxed) {
        let _ = db.execute("INSERT INTO t VALUES (1)", []);
    }
}

#[test]
fn a_database_reporter_is_refused_in_a_process_with_threads() {
    let dir = TempDir::new("hb-threads");
    let (db, other) = (dir.db(), dir.0.join("other.sqlite"));
    let main = Process::new(|| {
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            // A thread inside SQLite at the fork: its locks would stay
            // locked for ever in the reporting daemon.
            s.spawn(|| write_until(&other, &stop));
            let started = Reporter::new("threaded")
                .interval(INTERVAL)
                .sqlite(&db)
                .start();
            stop.store(true, Ordering::Relaxed);
            match started {
                Err(HeartbeatError::ThreadedDatabase { threads }) => Ok(threads),
                Err(other) => Err(format!("another error: {other}")),
                Ok(_) => Err("started in a process with threads".to_string()),
            }
        })
    })
    .start()
    .unwrap();
    let threads = main.join().unwrap().unwrap();
    assert!(threads >= 2, "{threads}");
}

/// Starts `n` main processes, each reporting as `{tag}-{i}` into `db` every
/// `interval`, and running until killed.
fn database_mains(db: &Path, tag: &str, n: usize, interval: Duration) -> Vec<daemon::Child<()>> {
    (0..n)
        .map(|i| {
            Process::new(|| {
                let beat = Reporter::new(format!("{tag}-{i}"))
                    .interval(interval)
                    .sqlite(db)
                    .start()
                    .unwrap();
                testkit::park_until_killed();
                drop(beat);
            })
            .start()
            .unwrap()
        })
        .collect()
}

fn kill_all(mains: Vec<daemon::Child<()>>) {
    for main in &mains {
        main.kill().unwrap();
    }
    for main in mains {
        let _ = main.join();
    }
}

#[test]
fn forty_reporters_on_one_database_raise_no_false_alarm() {
    const REPORTERS: usize = 40;
    let dir = TempDir::new("hb-forty");
    let db = dir.db();
    // The lesson's 100 ms gave 108-145 false SILENT in 8 s before WAL; 200
    // ms leaves room for a loaded two-core machine (80 processes here).
    let interval = INTERVAL * 2;
    let mains = database_mains(&db, "r", REPORTERS, interval);
    let mut monitor = Monitor::without_socket();
    // All seen first (starting 80 processes takes a while on two cores).
    let limit = deadline(GENEROUS);
    while monitor.reporters().len() < REPORTERS {
        if Instant::now() >= limit {
            // Why: a main whose `start` failed has ended.
            let ended: Vec<String> = mains
                .into_iter()
                .filter_map(|mut main| {
                    let _ = main.kill();
                    main.join_timeout(GENEROUS).err().map(|e| e.to_string())
                })
                .collect();
            panic!("not all reporters wrote a row: {ended:?}");
        }
        // Until the first reporter has made the file and its table.
        let _ = monitor.read_database(&db);
        let _ = monitor.take_alerts();
        monitor.poll(interval / 2).unwrap();
    }
    // Then 30 intervals without a false alarm.
    let watch = Instant::now() + interval * 30;
    while Instant::now() < watch {
        monitor.poll(interval / 2).unwrap();
        monitor.read_database(&db).unwrap();
    }
    let alerts = monitor.take_alerts();
    kill_all(mains);
    let mode: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(monitor.counts(), (0, REPORTERS, 0), "{alerts:?}");
    assert!(
        !alerts.iter().any(|a| a.to == Health::Silent),
        "{} false SILENT: {alerts:?}",
        alerts.iter().filter(|a| a.to == Health::Silent).count()
    );
}

#[test]
fn the_monitor_reads_read_only_and_creates_nothing() {
    let dir = TempDir::new("hb-read-only");
    let db = dir.db();
    let mut monitor = Monitor::without_socket();
    assert!(monitor.read_database(&db).is_err(), "a missing file read");
    assert!(!db.exists(), "the monitor created the file");
}

#[test]
fn failed_database_writes_are_counted() {
    let dir = TempDir::new("hb-write-errors");
    let db = dir.db();
    let phase = Shared::new(Futex::new(0)).unwrap();
    let main = Process::new(|| {
        let beat = Reporter::new("counted")
            .interval(INTERVAL)
            .sqlite(&db)
            .start()
            .unwrap();
        raise(&phase);
        // The test now holds the write lock: the next writes fail after
        // the busy timeout.
        let limit = deadline(GENEROUS);
        while beat.status().database_errors == 0 {
            assert!(Instant::now() < limit, "no write error counted");
            Futex::new(0).wait(0, Some(Instant::now() + INTERVAL));
        }
        beat.status()
    })
    .start()
    .unwrap();
    wait_for(&phase, 1);
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let status = main.join().unwrap();
    locker.execute_batch("COMMIT").unwrap();
    assert!(status.database_errors >= 1, "{status:?}");
    assert!(status.beats >= status.database_errors, "{status:?}");
}

/// Waits until `done()`, checking every quarter interval, failing the test
/// after [`GENEROUS`] with `what`.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let limit = deadline(GENEROUS);
    while !done() {
        assert!(Instant::now() < limit, "{what}");
        Futex::new(0).wait(0, Some(Instant::now() + INTERVAL / 4));
    }
}

#[test]
fn a_database_locked_at_start_is_opened_once_free() {
    let dir = TempDir::new("hb-reopen");
    let db = dir.db();
    // 1: locked; 2: the reporter counted a failure; 3: unlocked.
    let phase = Shared::new(Futex::new(0)).unwrap();
    let main = Process::new(|| {
        wait_for(&phase, 1);
        let beat = Reporter::new("reopened")
            .interval(INTERVAL)
            .sqlite(&db)
            .start()
            .map_err(|e| e.to_string())?;
        wait_until("no failed open counted", || {
            beat.status().database_errors > 0
        });
        raise(&phase);
        wait_for(&phase, 3);
        wait_until("never written once free", || {
            beat.status().database_writes > 0
        });
        Ok::<_, String>(beat.status())
    })
    .start()
    .unwrap();
    // Someone else's connection, in SQLite's default (rollback) mode,
    // holds the file exclusively: opening it waits past the busy timeout.
    // (Opened after the fork: SQLite's per-process state about the file and
    // its locks must not be copied into the reporter.)
    let locker = common::hold_exclusively(&db);
    raise(&phase);
    wait_for(&phase, 2);
    locker.execute_batch("COMMIT").unwrap();
    raise(&phase);
    let status = main.join().unwrap().unwrap();
    assert!(status.database_errors >= 1, "{status:?}");
    let mut monitor = Monitor::without_socket();
    monitor.read_database(&db).unwrap();
    assert_eq!(monitor.health("reopened"), Some(Health::Alive));
}

#[test]
fn a_database_that_cannot_be_opened_fails_start() {
    let dir = TempDir::new("hb-cannot-open");
    let db = dir.0.join("no-such-directory").join("beats.sqlite");
    let main = Process::new(|| {
        match Reporter::new("nowhere")
            .interval(INTERVAL)
            .sqlite(&db)
            .start()
        {
            Err(HeartbeatError::Database { .. }) => Ok(()),
            Err(other) => Err(format!("another error: {other}")),
            Ok(_) => Err("started".to_string()),
        }
    })
    .start()
    .unwrap();
    main.join().unwrap().unwrap();
}

#[test]
fn a_database_lock_does_not_stop_the_udp_beats() {
    let dir = TempDir::new("hb-lock-udp");
    let db = dir.db();
    let (socket, addr) = beat_receiver();
    let main = Process::new(|| {
        let beat = Reporter::new("both")
            .interval(INTERVAL)
            .udp(addr)
            .sqlite(&db)
            .start()
            .unwrap();
        testkit::park_until_killed();
        drop(beat);
    })
    .start()
    .unwrap();
    // The reporter runs (and made the file, in WAL mode).
    next_beat(&socket);
    // Another writer holds the write lock for 30 intervals, longer than
    // the sink's busy timeout (2 s).
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let mut gaps = Vec::new();
    let mut last = Instant::now();
    for _ in 0..30 {
        next_beat(&socket);
        gaps.push(last.elapsed());
        last = Instant::now();
    }
    locker.execute_batch("COMMIT").unwrap();
    main.kill().unwrap();
    let _ = main.join();
    // A monitor counts three missed intervals as SILENT.
    let longest = gaps.iter().max().unwrap();
    assert!(*longest < INTERVAL * 3, "a gap of {longest:?} in {gaps:?}");
}

/// The Unix time in milliseconds, by this machine's wall clock.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A process writing beats of `id` into `db` every [`INTERVAL`] as a
/// reporter would, but stamped by a wall clock `skew_ms` off this one's,
/// until killed.
fn skewed_writer(db: &Path, id: &str, skew_ms: i64) -> daemon::Child<()> {
    Process::new(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.busy_timeout(GENEROUS).unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS heartbeats (
                 id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
                 seq INTEGER NOT NULL, progress INTEGER NOT NULL,
                 sent_at_ms INTEGER NOT NULL, interval_ms INTEGER NOT NULL)",
        )
        .unwrap();
        let limit = deadline(GENEROUS * 2);
        for seq in 0i64.. {
            conn.execute(
                "INSERT OR REPLACE INTO heartbeats
                     (id, host, pid, seq, progress, sent_at_ms, interval_ms)
                 VALUES (?1, 'skewed', ?2, ?3, ?3, ?4, ?5)",
                rusqlite::params![
                    id,
                    std::process::id(),
                    seq,
                    unix_ms() + skew_ms,
                    INTERVAL.as_millis() as i64
                ],
            )
            .unwrap();
            if Instant::now() > limit {
                break;
            }
            Futex::new(0).wait(0, Some(Instant::now() + INTERVAL));
        }
    })
    .start()
    .unwrap()
}

#[test]
fn rows_are_judged_by_the_monitors_clock_not_the_writers() {
    let dir = TempDir::new("hb-clocks");
    let db = dir.db();
    let behind = skewed_writer(&db, "behind", -60_000);
    let ahead = skewed_writer(&db, "ahead", 60_000);
    let mut monitor = Monitor::without_socket();
    wait_until("both rows written", || {
        let _ = monitor.read_database(&db);
        monitor.reporters().len() == 2
    });
    // Both write every interval: neither is SILENT, whatever its clock.
    for _ in 0..20 {
        monitor.poll(INTERVAL / 2).unwrap();
        monitor.read_database(&db).unwrap();
        for id in ["behind", "ahead"] {
            assert_ne!(monitor.health(id), Some(Health::Silent), "{id}");
        }
    }
    // Both stop: both SILENT, however far ahead the last stamp.
    behind.kill().unwrap();
    ahead.kill().unwrap();
    let _ = (behind.join(), ahead.join());
    wait_until("a stopped writer never SILENT", || {
        monitor.read_database(&db).unwrap();
        monitor.counts().2 == 2
    });
}

#[test]
fn a_bad_row_is_skipped_and_counted_and_the_others_judged() {
    let dir = TempDir::new("hb-bad-row");
    let db = dir.db();
    let mut mains = database_mains(&db, "good", 1, INTERVAL);
    let mut monitor = Monitor::without_socket();
    wait_until("the good reporter never wrote", || {
        let _ = monitor.read_database(&db);
        monitor.health("good-0").is_some()
    });
    // A row that is no beat: a pid out of range.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO heartbeats (id, host, pid, seq, progress, sent_at_ms, interval_ms)
             VALUES ('bad', 'h', 5000000000, 0, 0, 0, 100)",
            [],
        )
        .unwrap();
    monitor.read_database(&db).unwrap();
    assert!(monitor.bad_rows() >= 1);
    assert_eq!(monitor.health("bad"), None);
    // The good reporter's death is still seen.
    mains.pop().unwrap().kill().unwrap();
    wait_until("the killed reporter never SILENT", || {
        monitor.read_database(&db).unwrap();
        monitor.health("good-0") == Some(Health::Silent)
    });
}

/// A table keyed by `id` alone (made before review 9) is re-keyed by
/// (id, host, instance) at a reporter's first open, its rows kept; a
/// reporter restarted under its id leaves no row of its dead start behind.
#[test]
fn an_old_table_is_rekeyed_and_a_restart_leaves_no_dead_row() {
    let dir = TempDir::new("hb-rekey");
    let db = dir.db();
    // Each look opens its own connection, closed before any fork: the
    // starting process must not have the file open (see the crate docs).
    let count = |sql: &str| -> i64 {
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    };
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE heartbeats (id TEXT PRIMARY KEY, host TEXT NOT NULL,
                 pid INTEGER NOT NULL, seq INTEGER NOT NULL, progress INTEGER NOT NULL,
                 sent_at_ms INTEGER NOT NULL, interval_ms INTEGER NOT NULL,
                 instance INTEGER NOT NULL DEFAULT 0);
             INSERT INTO heartbeats VALUES ('elder', 'elsewhere', 7, 3, 0, 0, 100, 5);",
        )
        .unwrap();
    let start = |started: &Futex| {
        Process::new(|| {
            let _beat = Reporter::new("phoenix")
                .interval(INTERVAL)
                .sqlite(&db)
                .start()
                .unwrap();
            raise(started);
            testkit::park_until_killed();
        })
        .start()
        .unwrap()
    };
    let first_started = Shared::new(Futex::new(0)).unwrap();
    let first = start(&first_started);
    wait_for(&first_started, 1);
    let phoenix = "SELECT COUNT(*) FROM heartbeats WHERE id = 'phoenix'";
    testkit::wait_until("the first start's row", || count(phoenix) == 1);
    assert_eq!(
        count("SELECT COUNT(*) FROM pragma_table_info('heartbeats') WHERE pk > 0"),
        3,
        "not re-keyed"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM heartbeats WHERE id = 'elder'"),
        1,
        "the old row was lost"
    );
    let first_instance = count("SELECT instance FROM heartbeats WHERE id = 'phoenix'");
    first.kill().unwrap();
    let _ = first.join();
    let second_started = Shared::new(Futex::new(0)).unwrap();
    let second = start(&second_started);
    wait_for(&second_started, 1);
    // The second start's row written, the first's deleted.
    testkit::wait_until("one row, the second start's", || {
        count(phoenix) == 1
            && count("SELECT instance FROM heartbeats WHERE id = 'phoenix'") != first_instance
    });
    second.kill().unwrap();
    let _ = second.join();
}
