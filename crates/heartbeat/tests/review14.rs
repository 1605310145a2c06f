//! Review 14 (issue #18): reproducers for `Monitor::expect_reporter`,
//! between real processes; fixed since, regression tests now.

use std::time::Duration;

use std::time::Instant;

use daemon::Process;
use heartbeat::{Health, Monitor, Reporter};
use shm::{Futex, Shared};
use testkit::{deadline, raise, wait_for, GENEROUS};

mod common;
use common::{udp_reporting_main, TempDir};

const INTERVAL: Duration = Duration::from_millis(100);

/// A child beating as `id` every INTERVAL over UDP until killed.
fn beating(addr: std::net::SocketAddr, id: &'static str) -> daemon::Child<()> {
    udp_reporting_main(addr, id, INTERVAL, None)
}

/// `expect_reporter` counts the expectation against `max_reporters` (it is
/// refused when tracked + expected reach it), but a beat of a new reporter
/// was refused only when the *tracked* ones alone reached it. So at
/// `max_reporters(2)`, one expectation and two reporters nobody expected
/// (three in all) left no room for the expected reporter's own beats:
/// every one was refused, and the expectation turned SILENT, with an
/// alert, while its reporter beat. Now an expectation holds its place: the
/// second unexpected reporter is refused, and the expected one is tracked.
#[test]
fn an_expected_reporter_is_not_refused_by_reporters_that_came_after_its_expectation() {
    let mut monitor = Monitor::udp("127.0.0.1:0")
        .unwrap()
        .max_reporters(2)
        .stuck_after(1_000);
    let addr = monitor.local_addr().unwrap();
    // Counted: one of the two places.
    assert!(monitor.expect_reporter("expected", INTERVAL * 10));
    let others = [beating(addr, "other-1"), beating(addr, "other-2")];
    let limit = deadline(GENEROUS);
    // One of them takes the free place; the other is refused: the
    // expectation holds its own.
    while monitor.reporters().is_empty() || monitor.reporters_refused() == 0 {
        assert!(std::time::Instant::now() < limit, "the others never beat");
        monitor.poll(INTERVAL / 10).unwrap();
    }
    let counted = monitor.counts();
    let expected = beating(addr, "expected");
    while !monitor.awaited().is_empty() && monitor.health("expected") != Some(Health::Silent) {
        assert!(
            std::time::Instant::now() < limit,
            "neither tracked nor SILENT"
        );
        monitor.poll(INTERVAL / 10).unwrap();
    }
    let (awaited, health, refused) = (
        monitor.awaited(),
        monitor.health("expected"),
        monitor.reporters_refused(),
    );
    let alerts = monitor.take_alerts();
    for child in others.into_iter().chain([expected]) {
        let _ = child.kill();
        let _ = child.join();
    }
    assert!(
        awaited.is_empty() && health == Some(Health::Alive),
        "the expected reporter beats, yet: awaited {awaited:?}, health {health:?}, {refused} \
         beats refused, counts {counted:?} at max_reporters(2), alerts {alerts:?}"
    );
}

/// A child writing its beats into the SQLite file `db` as `id`, until
/// killed.
fn writing(db: &std::path::Path, id: &'static str) -> daemon::Child<()> {
    Process::new(move || {
        let _beat = Reporter::new(id)
            .interval(INTERVAL)
            .sqlite(db)
            .start()
            .unwrap();
        testkit::park_until_killed();
    })
    .start()
    .unwrap()
}

/// `read_database` promises that a read finding the file's write lock held
/// (a writer stopped inside its write) "judges no reporter of the file
/// SILENT": every writer waits for that lock, so no news is no sign of
/// death. The tracked reporters of the file are spared so; an expected
/// reporter is not: its first row waits behind the same lock, yet the
/// expectation turns SILENT, with an alert, at a read that counted the
/// stall, while the tracked reporter beside it is spared. The expectation
/// promises no such false alarm for a reporter that is alive and beating.
#[test]
fn a_stalled_database_read_turns_no_expected_reporter_silent() {
    let dir = TempDir::new("hb-r14-stalled-expected");
    let db = dir.db();
    let existing = writing(&db, "existing");
    let mut monitor = Monitor::without_socket().stuck_after(1_000);
    let limit = deadline(GENEROUS);
    while monitor.health("existing").is_none() {
        assert!(Instant::now() < limit, "the existing reporter never wrote");
        let _ = monitor.read_database(&db);
        Futex::new(0).wait(0, Some(Instant::now() + INTERVAL / 4));
    }
    // A writer stuck inside its write: it holds the write lock (WAL mode,
    // set by the reporter) and never commits.
    let locked = Shared::new(Futex::new(0)).unwrap();
    let locker = Process::new(|| {
        let db = rusqlite::Connection::open(&db).unwrap();
        db.execute_batch("BEGIN IMMEDIATE").unwrap();
        raise(&locked);
        testkit::park_until_killed();
    })
    .start()
    .unwrap();
    wait_for(&locked, 1);
    assert!(monitor.expect_reporter("newcomer", INTERVAL));
    let expected_at = Instant::now();
    // Alive, trying to write its first row behind the lock.
    let newcomer = writing(&db, "newcomer");
    // Well past when the expectation would turn SILENT (3 intervals and
    // the slack), reading a few times an interval.
    while expected_at.elapsed() < INTERVAL * 8 && monitor.health("newcomer") != Some(Health::Silent)
    {
        assert!(Instant::now() < limit, "the monitor never got that far");
        let _ = monitor.read_database(&db);
        Futex::new(0).wait(0, Some(Instant::now() + INTERVAL / 4));
    }
    let (newcomer_health, existing_health, stalls) = (
        monitor.health("newcomer"),
        monitor.health("existing"),
        monitor.database_stalls(),
    );
    let alerts = monitor.take_alerts();
    for child in [locker, newcomer, existing] {
        let _ = child.kill();
        let _ = child.join();
    }
    assert!(stalls > 0, "no read found the write lock held");
    assert_ne!(
        existing_health,
        Some(Health::Silent),
        "the tracked reporter is spared"
    );
    assert_ne!(
        newcomer_health,
        Some(Health::Silent),
        "the expected reporter, alive and blocked behind the held write lock like the tracked \
         one, was judged SILENT at reads that counted the stall ({stalls} stalls); alerts \
         {alerts:?}"
    );
}
