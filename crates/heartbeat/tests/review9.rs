//! Review 9: a hostile review of the heartbeat after issue #15's fixes.
//! Each `#[ignore = "defect: ..."]` test reproduces a broken promise and
//! fails on the reviewed commit; the others are attacks the crate withstood.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use daemon::Process;
use heartbeat::{Health, Monitor, Reporter, DEFAULT_MAX_REPORTERS, MAX_ID_BYTES};
use shm::{Futex, Shared};
use testkit::{deadline, raise, wait_for, GENEROUS};

mod common;
use common::TempDir;

/// Lets `time` pass without watching anything (a futex nobody wakes): the
/// passing of time is what these tests are about, not a synchronisation.
fn let_pass(time: Duration) {
    let limit = Instant::now() + time;
    let idle = Futex::new(0);
    while Instant::now() < limit {
        idle.wait(0, Some(limit));
    }
}

/// A main process (one thread, so the SQLite sink is allowed) reporting as
/// `id` every `interval` over UDP to `udp` and/or into `db` until killed;
/// it stores its reporter's pid in `daemon_pid` once started.
fn reporting_main(
    id: &'static str,
    interval: Duration,
    udp: Option<SocketAddr>,
    db: Option<&Path>,
    daemon_pid: &Futex,
) -> daemon::Child<()> {
    Process::new(move || {
        let mut reporter = Reporter::new(id).interval(interval);
        if let Some(addr) = udp {
            reporter = reporter.udp(addr);
        }
        if let Some(db) = db {
            reporter = reporter.sqlite(db);
        }
        let beat = reporter.start().unwrap();
        daemon_pid.store(beat.pid().get(), Ordering::SeqCst);
        daemon_pid.wake_all();
        // Until killed (each park ends after GENEROUS at the latest).
        for _ in 0..6 {
            testkit::park_until_killed();
        }
        drop(beat);
    })
    .start()
    .unwrap()
}

/// Waits until `daemon_pid` holds a pid, and returns it.
fn daemon_pid_of(daemon_pid: &Futex) -> i32 {
    let limit = deadline(GENEROUS);
    while daemon_pid.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < limit, "the reporter never started");
        daemon_pid.wait(0, Some(limit));
    }
    daemon_pid.load(Ordering::SeqCst) as i32
}

/// Sends `signal` to process `pid`.
fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is a
    // reporting daemon of this test (a grandchild whose parent is alive and
    // not reaped while the test signals it, so the pid is not reused).
    let _ = unsafe { libc::kill(pid, signal) };
}

/// Reads `db` into `monitor` until `done`, every `every`, failing the test
/// with `what` after [`GENEROUS`].
fn read_until(
    monitor: &mut Monitor,
    db: &Path,
    every: Duration,
    what: &str,
    mut done: impl FnMut(&Monitor) -> bool,
) {
    let limit = deadline(GENEROUS);
    loop {
        let _ = monitor.read_database(db);
        if done(monitor) {
            return;
        }
        assert!(Instant::now() < limit, "never happened: {what}");
        let_pass(every);
    }
}

/// Stops (SIGSTOP) the reporting daemon `daemon`, which writes `db` every
/// millisecond, until it is stopped while holding the write lock (a write
/// transaction of ours fails at once, and again a while later, when
/// another reporter's short write would be over); whether it was caught so
/// within 20 s (it is left stopped then).
fn stop_inside_a_write(daemon: i32, db: &Path) -> bool {
    let probe = rusqlite::Connection::open(db).unwrap();
    let holds_lock = || {
        (0..2).all(|i| {
            if i == 1 {
                let_pass(Duration::from_millis(30));
            }
            match probe.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => {
                    probe.execute_batch("ROLLBACK").unwrap();
                    false
                }
                Err(_) => true,
            }
        })
    };
    let limit = deadline(GENEROUS * 2);
    while Instant::now() < limit {
        signal(daemon, libc::SIGSTOP);
        let pid = shm::pid::Pid::from_u32(daemon as u32).unwrap();
        assert!(testkit::wait_stopped_or_exited(pid), "the reporter ended");
        if holds_lock() {
            return true;
        }
        signal(daemon, libc::SIGCONT);
    }
    false
}

// ---- A live reporter judged SILENT ----

/// `silent_after(1)` is allowed ("at least 1"): SILENT once a reporter has
/// missed one interval. But a reporter's first gap is between one and two
/// intervals (its random phase), and every later beat a little late (the
/// daemon's wake-up) is over one interval too: a reporter that missed no
/// beat is SILENT.
#[test]
fn a_reporter_that_misses_no_beat_is_never_silent_with_silent_after_one() {
    const INTERVAL: Duration = Duration::from_millis(100);
    let mut monitor = Monitor::udp("127.0.0.1:0").unwrap().silent_after(1);
    let addr = monitor.local_addr().unwrap();
    let pid = Shared::new(Futex::new(0)).unwrap();
    let main = reporting_main("punctual", INTERVAL, Some(addr), None, &pid);
    daemon_pid_of(&pid);
    let limit = Instant::now() + INTERVAL * 20;
    let mut silent = Vec::new();
    while Instant::now() < limit {
        monitor.poll(INTERVAL / 20).unwrap();
        for r in monitor.reporters() {
            if r.health == Health::Silent {
                silent.push((r.seq, r.since_last_beat));
            }
        }
    }
    main.kill().unwrap();
    let _ = main.join();
    assert!(
        silent.is_empty(),
        "a live reporter was SILENT {} times (seq, time since its last beat): {:?}",
        silent.len(),
        &silent[..silent.len().min(5)]
    );
}

/// One reporter stopped (SIGSTOP, a debugger, a Ctrl-Z of its job) while it
/// holds SQLite's write lock blocks every other reporter's writes on the
/// file: their rows stop changing and the monitor judges them all SILENT,
/// though they live. ("many reporters and monitors share it without
/// waiting for each other")
#[test]
fn a_stopped_reporter_holding_the_write_lock_silences_the_others() {
    const INTERVAL: Duration = Duration::from_millis(100);
    let dir = TempDir::new("hb-r9-stopped-writer");
    let db = dir.db();
    let (busy_pid, bystander_pid) = (
        Shared::new(Futex::new(0)).unwrap(),
        Shared::new(Futex::new(0)).unwrap(),
    );
    // A writes every millisecond, so that a stop often catches it writing.
    let busy = reporting_main("busy", Duration::from_millis(1), None, Some(&db), &busy_pid);
    let busy_daemon = daemon_pid_of(&busy_pid);
    let bystander = reporting_main("bystander", INTERVAL, None, Some(&db), &bystander_pid);
    daemon_pid_of(&bystander_pid);
    let mut monitor = Monitor::without_socket();
    read_until(&mut monitor, &db, INTERVAL / 4, "both rows", |m| {
        m.health("busy").is_some() && m.health("bystander").is_some()
    });
    let caught = stop_inside_a_write(busy_daemon, &db);
    let mut silent = None;
    if caught {
        // B lives on: it must stay ALIVE (or STUCK: it makes no progress).
        // (A monitor from now on: catching A may have delayed B already.)
        let mut monitor = Monitor::without_socket();
        let limit = Instant::now() + INTERVAL * 20;
        while Instant::now() < limit && silent.is_none() {
            let _ = monitor.read_database(&db);
            if monitor.health("bystander") == Some(Health::Silent) {
                silent = Some(limit - Instant::now());
            }
            let_pass(INTERVAL / 4);
        }
    }
    signal(busy_daemon, libc::SIGCONT);
    for main in [busy, bystander] {
        main.kill().unwrap();
        let _ = main.join();
    }
    assert!(caught, "never caught the busy reporter inside a write");
    assert!(
        silent.is_none(),
        "the live bystander was judged SILENT while another reporter was stopped inside its write"
    );
}

// ---- A dead reporter judged ALIVE ----

/// A monitor that did not poll for a while (busy, stopped, a slow loop)
/// takes the beats queued meanwhile as arriving now: a reporter killed
/// ten intervals ago, whose last beats sat in the socket's queue, is not
/// SILENT (STUCK, it made no progress, or ALIVE) with 0 s since its last
/// beat, and stays so for `silent_after` more intervals.
#[test]
fn a_reporter_killed_while_the_monitor_did_not_poll_is_silent_at_the_next_poll() {
    const INTERVAL: Duration = Duration::from_millis(50);
    let mut monitor = Monitor::udp("127.0.0.1:0").unwrap();
    let addr = monitor.local_addr().unwrap();
    let pid = Shared::new(Futex::new(0)).unwrap();
    let main = reporting_main("gone", INTERVAL, Some(addr), None, &pid);
    daemon_pid_of(&pid);
    let limit = deadline(GENEROUS);
    while monitor.health("gone") != Some(Health::Alive) {
        assert!(Instant::now() < limit, "never seen");
        monitor.poll(INTERVAL / 5).unwrap();
    }
    // The monitor stops polling; a few beats queue; main is killed (its
    // reporter ends with it), and ten intervals pass.
    let_pass(INTERVAL * 3);
    main.kill().unwrap();
    let _ = main.join();
    let killed = Instant::now();
    let_pass(INTERVAL * 10);
    monitor.poll(Duration::ZERO).unwrap();
    let state = monitor.reporters().into_iter().find(|r| r.id == "gone");
    assert_eq!(
        monitor.health("gone"),
        Some(Health::Silent),
        "killed {:?} ago, judged {state:?}",
        killed.elapsed()
    );
}

/// A dead reporter's database row never changes again; once the monitor
/// forgets the reporter (SILENT for `forget_after` intervals), the next
/// read takes the stale row as a new reporter's first beat: ALIVE again,
/// then SILENT again, then ALIVE..., for ever.
#[test]
fn a_dead_reporters_row_does_not_come_back_alive_after_it_is_forgotten() {
    const INTERVAL: Duration = Duration::from_millis(20);
    let dir = TempDir::new("hb-r9-forgotten-row");
    let db = dir.db();
    let pid = Shared::new(Futex::new(0)).unwrap();
    let main = reporting_main("departed", INTERVAL, None, Some(&db), &pid);
    daemon_pid_of(&pid);
    let mut monitor = Monitor::without_socket();
    read_until(&mut monitor, &db, INTERVAL / 2, "the row", |m| {
        m.health("departed") == Some(Health::Alive)
    });
    main.kill().unwrap();
    let _ = main.join();
    read_until(&mut monitor, &db, INTERVAL / 2, "SILENT", |m| {
        m.health("departed") == Some(Health::Silent)
    });
    // Read for longer than forget_after (100 intervals).
    let limit = Instant::now() + INTERVAL * 150;
    let mut alive_again = None;
    while Instant::now() < limit && alive_again.is_none() {
        monitor.read_database(&db).unwrap();
        if monitor.health("departed") == Some(Health::Alive) {
            alive_again = monitor.reporters().into_iter().find(|r| r.id == "departed");
        }
        let_pass(INTERVAL / 2);
    }
    assert!(
        alive_again.is_none(),
        "the reporter killed long ago is ALIVE again: {alive_again:?}"
    );
}

// ---- The database replaced, and a FIFO for a database ----

/// The database file deleted and made anew (by an operator, or a cleanup
/// script, and the next reporter to start): a running reporter writes on
/// into the deleted file, with no error counted, and is never seen in the
/// new one: SILENT for ever while it lives. (`Database::write` reopens only
/// after a failed write, and writes into an unlinked file do not fail.)
#[test]
fn a_reporter_writes_into_the_file_that_replaced_its_database() {
    const INTERVAL: Duration = Duration::from_millis(50);
    let dir = TempDir::new("hb-r9-replaced");
    let db = dir.db();
    let (old_pid, new_pid) = (
        Shared::new(Futex::new(0)).unwrap(),
        Shared::new(Futex::new(0)).unwrap(),
    );
    // The veteran publishes its database writes and errors as it goes.
    let (writes, errors) = (
        Shared::new(Futex::new(0)).unwrap(),
        Shared::new(Futex::new(0)).unwrap(),
    );
    let old = Process::new(|| {
        let beat = Reporter::new("veteran")
            .interval(INTERVAL)
            .sqlite(&db)
            .start()
            .unwrap();
        old_pid.store(beat.pid().get(), Ordering::SeqCst);
        old_pid.wake_all();
        let limit = deadline(GENEROUS * 3);
        while Instant::now() < limit {
            let status = beat.status();
            writes.store(status.database_writes as u32, Ordering::SeqCst);
            errors.store(
                (status.database_errors + status.database_skipped) as u32,
                Ordering::SeqCst,
            );
            let_pass(INTERVAL);
        }
    })
    .start()
    .unwrap();
    daemon_pid_of(&old_pid);
    let mut monitor = Monitor::without_socket();
    read_until(&mut monitor, &db, INTERVAL / 2, "the veteran's row", |m| {
        m.health("veteran") == Some(Health::Alive)
    });
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.clone().into_os_string();
        path.push(suffix);
        let _ = std::fs::remove_file(path);
    }
    let new = reporting_main("newcomer", INTERVAL, None, Some(&db), &new_pid);
    daemon_pid_of(&new_pid);
    let mut fresh = Monitor::without_socket();
    read_until(&mut fresh, &db, INTERVAL / 2, "the newcomer's row", |m| {
        m.health("newcomer").is_some()
    });
    let limit = Instant::now() + INTERVAL * 40;
    while fresh.health("veteran").is_none() && Instant::now() < limit {
        let _ = fresh.read_database(&db);
        let_pass(INTERVAL / 2);
    }
    let seen = fresh.health("veteran");
    let (writes, errors) = (writes.load(Ordering::SeqCst), errors.load(Ordering::SeqCst));
    for main in [old, new] {
        main.kill().unwrap();
        let _ = main.join();
    }
    assert!(
        seen.is_some(),
        "the live veteran never appeared in the new database in 40 intervals, \
         while it counted {writes} database writes and {errors} errors or skips"
    );
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &Path) {
    let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `name` is a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
}

/// Unblocks whoever waits on the FIFO at `path` (a reader waiting for a
/// writer, or a reader waiting for data): opens it for writing without
/// blocking and closes it.
fn release_fifo(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
}

/// The children of process `pid` (its main thread's), from /proc.
fn children_of(pid: shm::pid::Pid) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A path that is a FIFO, not a file (a named pipe someone left there):
/// `Reporter::start` returns an error, and leaves no daemon behind.
#[test]
fn a_fifo_for_a_database_fails_start_instead_of_hanging() {
    let dir = TempDir::new("hb-r9-fifo-start");
    let fifo = dir.0.join("beats.sqlite");
    mkfifo(&fifo);
    let mut main = Process::new(|| {
        Reporter::new("piped")
            .interval(Duration::from_millis(50))
            .sqlite(&fifo)
            .start()
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .start()
    .unwrap();
    let outcome = main.join_timeout(GENEROUS);
    let daemons = children_of(main.pid());
    main.kill().unwrap();
    let _ = main.join_timeout(GENEROUS);
    // Whatever is left blocked on the FIFO: released and killed.
    for daemon in &daemons {
        signal(*daemon, libc::SIGKILL);
    }
    release_fifo(&fifo);
    assert!(
        matches!(outcome, Ok(Err(_))),
        "Reporter::start gave {outcome:?} (its daemons {daemons:?})"
    );
    assert!(daemons.is_empty(), "daemons left: {daemons:?}");
}

/// The monitor's read of a FIFO given as the database blocks for ever in
/// open(2) (read-only opens of a FIFO wait for a writer): the monitor
/// hangs, and with it its UDP side.
#[test]
fn reading_a_fifo_as_the_database_returns() {
    let dir = TempDir::new("hb-r9-fifo-read");
    let fifo = dir.0.join("beats.sqlite");
    mkfifo(&fifo);
    let mut reader = Process::new(|| {
        Monitor::without_socket()
            .read_database(&fifo)
            .map_err(|e| e.to_string())
    })
    .start()
    .unwrap();
    let outcome = reader.join_timeout(GENEROUS);
    reader.kill().unwrap();
    release_fifo(&fifo);
    let _ = reader.join_timeout(GENEROUS);
    assert!(
        outcome.is_ok(),
        "read_database did not return in {GENEROUS:?}"
    );
}

// ---- Memory ----

/// This process's resident memory, in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// A beat as a datagram, of a made-up reporter named `id`.
fn made_up(id: &str) -> Vec<u8> {
    serde_json::to_vec(&heartbeat::Beat {
        id: id.into(),
        host: "made-up".into(),
        pid: shm::pid::Pid::from_u32(1).unwrap(),
        seq: 0,
        progress: 0,
        sent_at_ms: 0,
        interval_ms: 60_000,
        instance: 1,
        mac: None,
    })
    .unwrap()
}

/// The cap bounds how many reporters are tracked, not their size: an id may
/// be as long as a datagram (60,000 bytes; reporters themselves are held to
/// MAX_ID_BYTES, 4,096), kept twice (key and beat). At the default cap,
/// made-up ids from the network took gigabytes ("so that made-up ids from
/// the network cannot exhaust memory"). Half the made-up ids here are of
/// 60,000 bytes (rejected and counted since the fix), half of MAX_ID_BYTES
/// (tracked).
#[test]
fn made_up_reporters_with_huge_ids_stay_within_a_gigabyte_at_the_default_cap() {
    const SENT: u32 = 400;
    const BATCH: u32 = 4;
    let mut monitor = Monitor::udp("127.0.0.1:0").unwrap();
    let addr = monitor.local_addr().unwrap();
    let (sent, taken) = (
        Shared::new(Futex::new(0)).unwrap(),
        Shared::new(Futex::new(0)).unwrap(),
    );
    monitor.poll(Duration::ZERO).unwrap();
    let before = resident_bytes();
    // Another process sends, a few datagrams at a time (the receive buffer
    // holds only a few of 60 KB), waiting for the monitor to take them.
    let sender = Process::new(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        for batch in 0..SENT / BATCH {
            for n in 0..BATCH {
                let len = if n % 2 == 0 { 60_000 } else { MAX_ID_BYTES };
                let id = format!("{:0>len$}", batch * BATCH + n);
                socket.send_to(&made_up(&id), addr).unwrap();
            }
            raise(&sent);
            wait_for(&taken, batch + 1);
        }
    })
    .start()
    .unwrap();
    for batch in 0..SENT / BATCH {
        wait_for(&sent, batch + 1);
        monitor.poll(Duration::ZERO).unwrap();
        raise(&taken);
    }
    sender.join().unwrap();
    let tracked = monitor.reporters().len() as u64;
    let grown = resident_bytes().saturating_sub(before);
    let per_reporter = grown / tracked.max(1);
    let at_cap = per_reporter * DEFAULT_MAX_REPORTERS as u64;
    assert!(tracked > 0, "nothing tracked");
    assert!(
        at_cap < 1 << 30,
        "{tracked} made-up reporters grew the monitor by {grown} bytes, \
         {per_reporter} each: {} MiB at the default cap of {DEFAULT_MAX_REPORTERS}",
        at_cap >> 20
    );
    assert_eq!(
        monitor.beats_rejected(),
        u64::from(SENT / 2),
        "the ids over MAX_ID_BYTES are not all rejected"
    );
}

// ---- Attacks withstood ----

/// Datagrams that are no beat, or odd beats, neither crash the monitor nor
/// change a live reporter's verdict.
#[test]
fn malformed_and_odd_datagrams_crash_nothing_and_a_live_reporter_stays_alive() {
    const INTERVAL: Duration = Duration::from_millis(50);
    let mut monitor = Monitor::udp("127.0.0.1:0").unwrap();
    let addr = monitor.local_addr().unwrap();
    let pid = Shared::new(Futex::new(0)).unwrap();
    let main = reporting_main("steady", INTERVAL, Some(addr), None, &pid);
    daemon_pid_of(&pid);
    let nested = "[".repeat(50_000);
    let odd: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"{".to_vec(),
        b"null".to_vec(),
        vec![0xff; 65_000],
        nested.into_bytes(),
        br#"{"id":"x","host":"h","pid":0,"seq":0,"progress":0,"sent_at_ms":0,"interval_ms":1}"#.to_vec(),
        br#"{"id":"x","host":"h","pid":-1,"seq":0,"progress":0,"sent_at_ms":0,"interval_ms":1}"#.to_vec(),
        br#"{"id":"x","host":"h","pid":5,"seq":1e400,"progress":0,"sent_at_ms":0,"interval_ms":1}"#.to_vec(),
        br#"{"id":"\ud800","host":"h","pid":5,"seq":0,"progress":0,"sent_at_ms":0,"interval_ms":1}"#.to_vec(),
        br#"{"id":"odd","host":"h","pid":5,"seq":18446744073709551615,"progress":18446744073709551615,"sent_at_ms":18446744073709551615,"interval_ms":0,"instance":18446744073709551615}"#.to_vec(),
        br#"{"id":"odd2","host":"h","pid":4194304,"seq":0,"progress":0,"sent_at_ms":0,"interval_ms":18446744073709551615}"#.to_vec(),
        br#"{"id":"dup","id":"dup","host":"h","pid":5,"seq":0,"progress":0,"sent_at_ms":0,"interval_ms":1}"#.to_vec(),
    ];
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let limit = Instant::now() + INTERVAL * 10;
    while Instant::now() < limit {
        for datagram in &odd {
            let _ = socket.send_to(datagram, addr);
        }
        monitor.poll(INTERVAL / 5).unwrap();
        monitor.judge(Instant::now());
        let _ = monitor.reporters();
        let _ = monitor.take_alerts();
    }
    let healthy = monitor.health("steady");
    // The odd beats at u64::MAX go on to odd judgements, never a panic:
    // judged far in the future too.
    monitor.judge(Instant::now() + Duration::from_secs(1 << 40));
    let mut monitor2 = Monitor::udp("127.0.0.1:0").unwrap();
    let addr2 = monitor2.local_addr().unwrap();
    for datagram in &odd {
        let _ = socket.send_to(datagram, addr2);
    }
    monitor2.poll(Duration::ZERO).unwrap();
    main.kill().unwrap();
    let _ = main.join();
    // It makes no progress: ALIVE, then STUCK; never SILENT.
    assert!(
        matches!(healthy, Some(Health::Alive | Health::Stuck)),
        "{healthy:?}"
    );
}

/// Odd poll durations: a nanosecond, and one past the end of the clock on
/// a monitor with no socket, return or run as documented; none panics.
#[test]
fn odd_poll_durations_return() {
    let mut monitor = Monitor::udp("127.0.0.1:0").unwrap();
    for d in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::new(0, 999_999_999),
    ] {
        let start = Instant::now();
        monitor.poll(d).unwrap();
        assert!(start.elapsed() < GENEROUS);
    }
    let mut none = Monitor::without_socket();
    none.poll(Duration::from_nanos(1)).unwrap();
}

/// A reporter SIGKILLed while it holds the database's write lock leaves the
/// file usable: the lock dies with it, and the others' rows go on.
#[test]
fn a_reporter_killed_inside_its_write_leaves_the_others_writing() {
    const INTERVAL: Duration = Duration::from_millis(100);
    let dir = TempDir::new("hb-r9-killed-writer");
    let db = dir.db();
    let (busy_pid, bystander_pid) = (
        Shared::new(Futex::new(0)).unwrap(),
        Shared::new(Futex::new(0)).unwrap(),
    );
    let busy = reporting_main("busy", Duration::from_millis(1), None, Some(&db), &busy_pid);
    let busy_daemon = daemon_pid_of(&busy_pid);
    let bystander = reporting_main("bystander", INTERVAL, None, Some(&db), &bystander_pid);
    daemon_pid_of(&bystander_pid);
    let mut monitor = Monitor::without_socket();
    read_until(&mut monitor, &db, INTERVAL / 4, "both rows", |m| {
        m.health("busy").is_some() && m.health("bystander").is_some()
    });
    assert!(
        stop_inside_a_write(busy_daemon, &db),
        "never caught the busy reporter inside a write"
    );
    signal(busy_daemon, libc::SIGKILL);
    // B's row keeps changing: ALIVE (or STUCK) for 20 intervals, never
    // SILENT; A is SILENT. (A monitor from now on: catching A may have
    // delayed B already: that is the test above.) A, at 1 ms, would be
    // forgotten 100 ms after its silence (and its unchanged row with it).
    let mut monitor = Monitor::without_socket().forget_after(u32::MAX);
    let limit = Instant::now() + INTERVAL * 20;
    let killed = Instant::now();
    let mut silent = false;
    let mut seen = Vec::new();
    while Instant::now() < limit {
        monitor.read_database(&db).unwrap();
        silent |= monitor.health("bystander") == Some(Health::Silent);
        if let Some(r) = monitor
            .reporters()
            .into_iter()
            .find(|r| r.id == "bystander")
        {
            seen.push((killed.elapsed().as_millis(), r.seq, r.health));
        }
        let_pass(INTERVAL / 4);
    }
    let busy_health = monitor.health("busy");
    for main in [busy, bystander] {
        main.kill().unwrap();
        let _ = main.join();
    }
    assert!(
        !silent,
        "the bystander was SILENT: (ms since the kill, seq, health) {seen:?}"
    );
    assert_eq!(busy_health, Some(Health::Silent));
}

/// "Two processes reporting under one id are watched apart (so either
/// one's death is SILENT)" (the crate docs; udp.rs's
/// killing_one_of_two_processes_on_one_id_is_seen). Over the database it
/// is not: the table is keyed by `id` alone, so the two overwrite one row,
/// and each read sees only the last writer. After one of them is killed,
/// the row goes on changing (the survivor's beats) and the monitor never
/// says SILENT.
#[test]
fn killing_one_of_two_processes_on_one_id_is_seen_in_the_database() {
    const INTERVAL: Duration = Duration::from_millis(50);
    let dir = TempDir::new("hb-r9-shared-id");
    let db = dir.db();
    let (one_pid, two_pid) = (
        Shared::new(Futex::new(0)).unwrap(),
        Shared::new(Futex::new(0)).unwrap(),
    );
    let one = reporting_main("twin", INTERVAL, None, Some(&db), &one_pid);
    daemon_pid_of(&one_pid);
    let two = reporting_main("twin", INTERVAL, None, Some(&db), &two_pid);
    daemon_pid_of(&two_pid);
    // Both rows seen beating side by side (each beat at least twice: they
    // start within milliseconds). Until then, one row beating once and the
    // other first seen after that is, to any monitor, a restart.
    let mut monitor = Monitor::without_socket();
    read_until(&mut monitor, &db, INTERVAL / 4, "both rows", |m| {
        let twins = m.reporters();
        twins.len() == 2 && twins.iter().all(|r| r.seq >= 2)
    });
    // Each has its own row (one row, overwritten by both, shows the monitor
    // only the last writer: a live one unseen is SILENT, a dead one hidden).
    let rows: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM heartbeats WHERE id = 'twin'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 2, "two processes on one id share one row");
    one.kill().unwrap();
    let _ = one.join();
    let limit = Instant::now() + INTERVAL * 20;
    let mut seen = Vec::new();
    while Instant::now() < limit && monitor.health("twin") != Some(Health::Silent) {
        monitor.read_database(&db).unwrap();
        seen.extend(monitor.take_alerts());
        let_pass(INTERVAL / 4);
    }
    let health = monitor.health("twin");
    two.kill().unwrap();
    let _ = two.join();
    assert_eq!(
        health,
        Some(Health::Silent),
        "one of two processes on one id killed 20 intervals ago; alerts {seen:?}"
    );
}

/// A reporter dies before its main process: a Ctrl-C (SIGINT to the
/// terminal's foreground process group) or a `kill -INT -PGID` reaches the
/// reporting daemon too, which is in main's process group. A main that
/// ignores or handles SIGINT (set after `Reporter::start`, as the docs ask
/// the reporter to be started first) works on; its daemon, with the default
/// action, is dead: SILENT for ever, though main lives. ("The daemon lives
/// exactly as long as the process that started it.")
#[test]
fn a_sigint_to_the_process_group_that_main_ignores_leaves_its_reporter_beating() {
    const INTERVAL: Duration = Duration::from_millis(50);
    let mut monitor = Monitor::udp("127.0.0.1:0").unwrap();
    let addr = monitor.local_addr().unwrap();
    let pid = Shared::new(Futex::new(0)).unwrap();
    let main = Process::new(|| {
        // SAFETY: setpgid(2) on this process only: a group of its own, as a
        // shell's job would be.
        unsafe { libc::setpgid(0, 0) };
        let beat = Reporter::new("interrupted")
            .interval(INTERVAL)
            .udp(addr)
            .start()
            .unwrap();
        // SAFETY: SIG_IGN is no handler: nothing runs in signal context.
        unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
        pid.store(beat.pid().get(), Ordering::SeqCst);
        pid.wake_all();
        for _ in 0..6 {
            testkit::park_until_killed();
        }
        drop(beat);
    })
    .start()
    .unwrap();
    let daemon = daemon_pid_of(&pid);
    let limit = deadline(GENEROUS);
    while monitor.health("interrupted") != Some(Health::Alive) {
        assert!(Instant::now() < limit, "never seen");
        monitor.poll(INTERVAL / 5).unwrap();
    }
    // Ctrl-C: the whole group.
    signal(-(main.pid().get() as i32), libc::SIGINT);
    let limit = Instant::now() + INTERVAL * 20;
    while Instant::now() < limit && monitor.health("interrupted") != Some(Health::Silent) {
        monitor.poll(INTERVAL / 5).unwrap();
    }
    let health = monitor.health("interrupted");
    let daemon_state = testkit::process_state(shm::pid::Pid::from_u32(daemon as u32).unwrap());
    let main_alive = main.is_alive();
    main.kill().unwrap();
    let _ = main.join();
    assert!(main_alive, "main died of the SIGINT it ignores");
    assert_ne!(
        health,
        Some(Health::Silent),
        "main lives, its reporter (state {:?}) is gone",
        daemon_state.map(char::from)
    );
}

/// Main killed while its reporter is still starting (its first open of a
/// database another program holds locked waits for the busy timeout): the
/// daemon, no longer bound to main's thread by the parent-death signal and
/// not yet watching main's pidfd, opens on, then sends a beat for the dead
/// main (a new reporter, ALIVE, seconds after the death) before it notices.
#[test]
fn a_main_killed_during_start_gets_no_beat_after_its_death() {
    let dir = TempDir::new("hb-r9-killed-in-start");
    let db = dir.db();
    let mut monitor = Monitor::udp("127.0.0.1:0").unwrap();
    let addr = monitor.local_addr().unwrap();
    let go = Shared::new(Futex::new(0)).unwrap();
    let main = Process::new(|| {
        wait_for(&go, 1);
        let _beat = Reporter::new("ghost")
            .interval(Duration::from_millis(50))
            .udp(addr)
            .sqlite(&db)
            .start();
        testkit::park_until_killed();
    })
    .start()
    .unwrap();
    // Another program holds the file (rollback mode, exclusively).
    let locker = common::hold_exclusively(&db);
    raise(&go);
    let limit = deadline(GENEROUS);
    let daemon = loop {
        if let Some(&daemon) = children_of(main.pid()).first() {
            break daemon;
        }
        assert!(Instant::now() < limit, "the reporter never forked");
        let_pass(Duration::from_millis(1));
    };
    main.kill().unwrap();
    let _ = main.join();
    let killed = Instant::now();
    // The daemon opens for a few seconds (busy timeouts), then beats.
    let limit = Instant::now() + Duration::from_secs(6);
    while Instant::now() < limit && monitor.beats_received() == 0 {
        monitor.poll(Duration::from_millis(50)).unwrap();
    }
    let beats = monitor.beats_received();
    let state = monitor.reporters();
    locker.execute_batch("COMMIT").unwrap();
    // It does end (it watches main once it beats): nothing left behind.
    let daemon = shm::pid::Pid::from_u32(daemon as u32).unwrap();
    testkit::wait_until("the orphaned reporter ends", || {
        matches!(testkit::process_state(daemon), None | Some(b'Z'))
    });
    assert_eq!(
        beats,
        0,
        "{:?} after main's death, a beat for it: {state:?}",
        killed.elapsed()
    );
}

/// The database file deleted (a cleanup, a volume unmounted): every read
/// fails, and by `read_database`'s rule ("no verdict changes on no news")
/// nothing is judged again: a reporter killed meanwhile stays ALIVE for as
/// long as the file is missing, while `since_last_beat` grows past any
/// `silent_after`.
#[test]
fn a_reporter_killed_while_its_database_is_gone_turns_silent() {
    const INTERVAL: Duration = Duration::from_millis(50);
    let dir = TempDir::new("hb-r9-db-gone");
    let db = dir.db();
    let pid = Shared::new(Futex::new(0)).unwrap();
    let main = reporting_main("orphan", INTERVAL, None, Some(&db), &pid);
    daemon_pid_of(&pid);
    let mut monitor = Monitor::without_socket();
    read_until(&mut monitor, &db, INTERVAL / 4, "the row", |m| {
        m.health("orphan") == Some(Health::Alive)
    });
    main.kill().unwrap();
    let _ = main.join();
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.clone().into_os_string();
        path.push(suffix);
        let _ = std::fs::remove_file(path);
    }
    let limit = Instant::now() + INTERVAL * 20;
    let mut errors = 0;
    while Instant::now() < limit {
        errors += u32::from(monitor.read_database(&db).is_err());
        let_pass(INTERVAL / 4);
    }
    let state = monitor.reporters();
    assert_eq!(
        monitor.health("orphan"),
        Some(Health::Silent),
        "killed 20 intervals ago, {errors} failed reads since: {state:?}"
    );
}

/// Two processes under one id are "watched apart (so either one's death is
/// SILENT)". But the restart rule (a silent start is forgotten without an
/// alert when a later start of the same host and id began after its last
/// beat) cannot tell whose restart a new start is: process A killed, and
/// process B restarted a moment later (a deploy, B's supervisor), A's
/// death is taken for a restart and never reported.
#[test]
fn a_death_beside_anothers_restart_is_reported() {
    const INTERVAL: Duration = Duration::from_millis(50);
    let mut monitor = Monitor::udp("127.0.0.1:0").unwrap();
    let addr = monitor.local_addr().unwrap();
    let pids: Vec<_> = (0..3)
        .map(|_| Shared::new(Futex::new(0)).unwrap())
        .collect();
    let a = reporting_main("pair", INTERVAL, Some(addr), None, &pids[0]);
    let b = reporting_main("pair", INTERVAL, Some(addr), None, &pids[1]);
    daemon_pid_of(&pids[0]);
    daemon_pid_of(&pids[1]);
    // Both seen beating side by side (each beat at least twice, so after
    // the other's first beat: they start within milliseconds). Until then,
    // A beating once and B starting after that beat is, to any monitor, a
    // restart of A as B.
    let limit = deadline(GENEROUS);
    while monitor.reporters().len() < 2 || monitor.reporters().iter().any(|r| r.seq < 2) {
        assert!(Instant::now() < limit, "never saw both");
        monitor.poll(INTERVAL / 5).unwrap();
    }
    // A dies; B is restarted (killed, and started again) right after.
    a.kill().unwrap();
    let _ = a.join();
    b.kill().unwrap();
    let _ = b.join();
    let b_again = reporting_main("pair", INTERVAL, Some(addr), None, &pids[2]);
    daemon_pid_of(&pids[2]);
    let limit = Instant::now() + INTERVAL * 20;
    let mut alerts = Vec::new();
    while Instant::now() < limit {
        monitor.poll(INTERVAL / 5).unwrap();
        alerts.extend(monitor.take_alerts());
    }
    let health = monitor.health("pair");
    b_again.kill().unwrap();
    let _ = b_again.join();
    assert!(
        alerts.iter().any(|a| a.to == Health::Silent),
        "A's death was never SILENT: alerts {alerts:?}, health now {health:?}"
    );
}
