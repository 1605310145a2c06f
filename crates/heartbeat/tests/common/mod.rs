//! Helpers shared by the heartbeat test binaries.

// Each binary uses some of them.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;

use std::time::{Duration, Instant};

use heartbeat::{Beat, Health, Key, Monitor, Reporter};
use testkit::GENEROUS;

/// A socket receiving beats, and its address.
pub(crate) fn beat_receiver() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(GENEROUS)).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// The next beat on `socket`, failing the test after [`GENEROUS`].
pub(crate) fn next_beat(socket: &UdpSocket) -> Beat {
    let mut buf = [0u8; 65536];
    let n = socket.recv(&mut buf).expect("a beat within GENEROUS");
    serde_json::from_slice(&buf[..n]).unwrap()
}

/// Sends `beats` to `addr` from another process, and returns once they
/// are all sent (on loopback: queued at the monitor's socket).
pub(crate) fn send_from_another_process(addr: SocketAddr, beats: Vec<Beat>) {
    send_datagrams_from_another_process(
        addr,
        beats
            .iter()
            .map(|beat| serde_json::to_vec(beat).unwrap())
            .collect(),
    );
}

/// Sends `datagrams` to `addr` from another process, and returns once they
/// are all sent (on loopback: queued at the monitor's socket).
pub(crate) fn send_datagrams_from_another_process(addr: SocketAddr, datagrams: Vec<Vec<u8>>) {
    daemon::Process::new(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        for datagram in &datagrams {
            socket.send_to(datagram, addr).unwrap();
        }
    })
    .start()
    .unwrap()
    .join()
    .unwrap();
}

/// Polls `monitor` until `done` holds, failing the test after
/// [`GENEROUS`].
pub(crate) fn poll_until(
    monitor: &mut Monitor,
    what: &str,
    mut done: impl FnMut(&Monitor) -> bool,
) {
    let limit = testkit::deadline(GENEROUS);
    while !done(monitor) {
        assert!(Instant::now() < limit, "never happened: {what}");
        monitor.poll(Duration::from_millis(5)).unwrap();
    }
}

/// A main process that reports as `id` every `interval` over UDP to
/// `addr` (signing its beats with `key`, if any) until killed.
pub(crate) fn udp_reporting_main(
    addr: SocketAddr,
    id: &'static str,
    interval: Duration,
    key: Option<Key>,
) -> daemon::Child<()> {
    daemon::Process::new(move || {
        let mut reporter = Reporter::new(id).interval(interval).udp(addr);
        if let Some(key) = key {
            reporter = reporter.key(key);
        }
        let _beat = reporter.start().unwrap();
        testkit::park_until_killed();
    })
    .start()
    .unwrap()
}

/// Polls `monitor` until `id` is SILENT, for at most 20 of its `interval`s
/// (a killed reporter is SILENT after 4), doing `meanwhile` before each
/// poll.
pub(crate) fn assert_turns_silent(
    monitor: &mut Monitor,
    id: &str,
    interval: Duration,
    mut meanwhile: impl FnMut(),
) {
    let limit = Instant::now() + interval * 20;
    while monitor.health(id) != Some(Health::Silent) {
        assert!(
            Instant::now() < limit,
            "{id} killed 20 intervals ago is still {:?}",
            monitor.health(id)
        );
        meanwhile();
        monitor.poll(interval / 5).unwrap();
    }
}

/// A fresh directory for one test's files (a database, say), removed on
/// drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(testkit::unique_name(tag));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// The database's path in it.
    pub(crate) fn db(&self) -> PathBuf {
        self.0.join("beats.sqlite")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Another program's connection holding the database file `db` in SQLite's
/// default (rollback) mode, exclusively, until it commits: opening the file
/// waits past the busy timeout meanwhile.
pub(crate) fn hold_exclusively(db: &std::path::Path) -> rusqlite::Connection {
    let locker = rusqlite::Connection::open(db).unwrap();
    locker
        .execute_batch(
            "CREATE TABLE other (n INTEGER); BEGIN EXCLUSIVE; INSERT INTO other VALUES (1)",
        )
        .unwrap();
    locker
}

/// A reporter row for the fleet store's tests.
pub(crate) fn fleet_reporter(id: &str, health: heartbeat::Health) -> heartbeat::fleet::ReporterRow {
    heartbeat::fleet::ReporterRow {
        id: id.to_owned(),
        instance: 7,
        pid: 4242,
        seq: 3,
        progress: 10,
        interval_ms: 1000,
        health,
        since_last_beat: std::time::Duration::from_millis(200),
    }
}

/// A complete collector report of `reporters` on `host`, for the fleet
/// store's tests.
pub(crate) fn fleet_report(
    host: &str,
    interval: std::time::Duration,
    reporters: Vec<heartbeat::fleet::ReporterRow>,
) -> heartbeat::fleet::CollectorReport {
    let count = |h| reporters.iter().filter(|r| r.health == h).count() as u64;
    heartbeat::fleet::CollectorReport {
        host: host.to_owned(),
        instance: 99,
        pid: 1234,
        interval,
        beats_received: 30,
        beats_rejected: 2,
        counts: (
            count(heartbeat::Health::Alive),
            count(heartbeat::Health::Stuck),
            count(heartbeat::Health::Silent),
        ),
        complete: true,
        reporters,
        forget_after: std::time::Duration::from_secs(100),
    }
}

/// A beat of a made-up reporter on host `sim` (pid 1, instance 1, sent at
/// 0 ms): for tests that send beats themselves.
pub(crate) fn made_up_beat(id: &str, seq: u64, interval_ms: u64) -> Beat {
    Beat {
        id: id.into(),
        host: "sim".into(),
        pid: shm::pid::Pid::from_u32(1).unwrap(),
        seq,
        progress: seq,
        sent_at_ms: 0,
        interval_ms,
        instance: 1,
        mac: None,
    }
}
