//! `demos heartbeat-monitor`: the live table sees a reporter.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, ChildStdout, Command, Stdio};

/// Starts `demos heartbeat-monitor --listen 127.0.0.1:0` with `args`;
/// returns it, its stdout's lines after the first, and the address that
/// first line names.
fn start_monitor(args: &[&str]) -> (Child, std::io::Lines<BufReader<ChildStdout>>, String) {
    let mut monitor = Command::new(env!("CARGO_BIN_EXE_demos"))
        .args(["heartbeat-monitor", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(monitor.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .expect("address line")
        .to_string();
    (monitor, lines, addr)
}

#[test]
fn the_monitor_lists_a_reporter_that_beats() {
    let (mut monitor, lines, addr) = start_monitor(&["--for", "1.5"]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let beat = r#"{"id":"probe","host":"test","pid":1,"seq":0,"progress":7,"sent_at_ms":0,"interval_ms":10000}"#;
    socket.send_to(beat.as_bytes(), &addr).unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(monitor.wait().unwrap().success());
    assert!(
        rest.iter()
            .any(|l| l.starts_with("probe") && l.contains("ALIVE")),
        "{rest:?}"
    );
    assert_eq!(
        rest.last().unwrap(),
        "summary: reporters=1 alive=1 stuck=0 silent=0 beats=1"
    );
}

#[test]
fn the_monitor_reads_a_reporters_database() {
    let dir = std::env::temp_dir().join(format!("procsync-monitor-db-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("beats.sqlite");
    // A reporter writes the database ("写数据库"), started by a process with
    // one thread (this test process has several: the SQLite sink refuses).
    // (The monitor refuses a file that is not there yet: wait for start,
    // which returns once the daemon has made it.)
    let started = shm::Shared::new(shm::Futex::new(0)).unwrap();
    let main = daemon::Process::new(|| {
        let beat = heartbeat::Reporter::new("db-probe")
            .interval(std::time::Duration::from_millis(100))
            .sqlite(&db)
            .start()
            .unwrap();
        beat.progress(3);
        testkit::raise(&started);
        // Until killed (at most a minute, should the test fail first).
        let parked = shm::Futex::new(0);
        let limit = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while parked.wait(0, Some(limit)) {}
    })
    .start()
    .unwrap();
    testkit::wait_for(&started, 1);
    let out = Command::new(env!("CARGO_BIN_EXE_demos"))
        .args(["heartbeat-monitor", "--listen", "127.0.0.1:0", "--for", "1"])
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    main.kill().unwrap();
    let _ = main.join();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("db-probe") && l.contains("ALIVE")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("summary: reporters=1 alive=1"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_monitor_refuses_a_database_that_does_not_exist() {
    // In a directory that exists, where SQLite would create it.
    let missing = std::env::temp_dir().join(format!(
        "procsync-monitor-missing-{}.sqlite",
        std::process::id()
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_demos"))
        .args([
            "heartbeat-monitor",
            "--listen",
            "127.0.0.1:0",
            "--for",
            "0.2",
        ])
        .arg("--db")
        .arg(&missing)
        .output()
        .unwrap();
    let created = missing.exists();
    let _ = std::fs::remove_file(&missing);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "watched a database that is not there"
    );
    assert!(stderr.contains("no such database"), "{stderr}");
    assert!(!created, "the monitor created the database");
}

#[test]
fn the_monitor_goes_on_after_a_bad_row_and_a_locked_database() {
    let dir = std::env::temp_dir().join(format!("procsync-monitor-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("beats.sqlite");
    // A table with a row that is no beat (a pid out of range), and the
    // whole file locked (rollback mode, exclusive) for the first read.
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker
        .execute_batch(
            "CREATE TABLE heartbeats (id TEXT PRIMARY KEY, host TEXT NOT NULL,
                 pid INTEGER NOT NULL, seq INTEGER NOT NULL, progress INTEGER NOT NULL,
                 sent_at_ms INTEGER NOT NULL, interval_ms INTEGER NOT NULL);
             INSERT INTO heartbeats VALUES ('bad', 'h', 5000000000, 0, 0, 0, 100);
             BEGIN EXCLUSIVE; INSERT INTO heartbeats VALUES ('x', 'h', 1, 0, 0, 0, 100);",
        )
        .unwrap();
    let db_arg = db.to_str().expect("a UTF-8 path");
    let (mut monitor, mut lines, addr) = start_monitor(&["--for", "4", "--db", db_arg]);
    // The first read meets the lock (busy for 2 s, then an error).
    let error = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with("database error"));
    assert!(error.is_some(), "no database error reported");
    locker.execute_batch("ROLLBACK").unwrap();
    // UDP monitoring goes on: a beat sent now is listed.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let beat = r#"{"id":"probe","host":"test","pid":1,"seq":0,"progress":7,"sent_at_ms":0,"interval_ms":10000}"#;
    socket.send_to(beat.as_bytes(), &addr).unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(monitor.wait().unwrap().success(), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.starts_with("probe") && l.contains("ALIVE")),
        "{rest:?}"
    );
    assert!(
        rest.iter()
            .any(|l| l.contains("1 rows that are no beat, skipped")),
        "{rest:?}"
    );
    drop(locker);
    std::fs::remove_dir_all(&dir).unwrap();
}
