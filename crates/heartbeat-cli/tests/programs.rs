//! `heartbeat-collector` and `heartbeat-monitor` run as programs: their
//! help, their refusals, and a machine's reporter seen, scraped over
//! `/metrics` and reported SILENT once it stops, on SQLite and PostgreSQL.

mod common;

use common::program;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use heartbeat::{Beat, Key};
use testkit::GENEROUS;

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(testkit::unique_name("hb-cli"));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child program killed on drop; its stdout lines arrive on `lines`.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(mut command: Command) -> Running {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tell, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tell.send(line).is_err() {
                    return;
                }
            }
        });
        Running { child, lines }
    }

    /// The first line (after those seen) for which `pick` says something.
    fn wait_line<T>(&self, what: &str, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let limit = Instant::now() + GENEROUS;
        loop {
            let left = limit.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("never printed: {what}"));
            if let Some(found) = pick(&line) {
                return found;
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address after `marker` in a line.
fn address_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest
        .find(|c: char| c == ',' || c == '/' || c.is_whitespace())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Sends signed beats of reporter `id` on `host` every `interval` until
/// `stop` is set (its process "died").
fn beat(key: Key, to: SocketAddr, host: &str, id: &str, interval: Duration, stop: Arc<AtomicBool>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut beat = Beat {
        id: id.to_owned(),
        host: host.to_owned(),
        pid: shm::pid::current(),
        seq: 0,
        progress: 0,
        sent_at_ms: 0,
        interval_ms: interval.as_millis() as u64,
        instance: 77,
        mac: None,
    };
    std::thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            beat.seq += 1;
            beat.progress += 1;
            beat.sent_at_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            key.sign(&mut beat);
            socket
                .send_to(&serde_json::to_vec(&beat).unwrap(), to)
                .unwrap();
            std::thread::sleep(interval); // the beat's own rhythm
        }
    });
}

/// GET `path` from `addr`: the status line and the body.
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(GENEROUS)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// The value of the sample line starting with `name` in a scrape.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l[name.len()..].trim().parse().ok())
}

/// A collector and a monitor on `store_args`; one reporter seen ALIVE,
/// scraped, then stopped and reported SILENT by both.
fn collector_and_monitor_see_a_reporter_die(store_args: &[&str], url: Option<&str>, dir: &Path) {
    let key_file = dir.join("fleet.key");
    let made = program("heartbeat-collector")
        .args(["--make-key-file", key_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let interval = Duration::from_millis(250);
    let collector = Running::start({
        let mut c = program("heartbeat-collector");
        if let Some(url) = url {
            c.env("PROCSYNC_FLEET_URL", url);
        }
        c.args(store_args)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--host",
                "web-1",
                "--interval",
                "0.25",
            ])
            .args(["--key-file", key_file.to_str().unwrap()]);
        c
    });
    let listen = collector.wait_line("the collector's address", |l| {
        address_after(l, "listening on ")
    });
    let monitor = Running::start({
        let mut m = program("heartbeat-monitor");
        if let Some(url) = url {
            m.env("PROCSYNC_FLEET_URL", url);
        }
        m.args(store_args)
            .args(["--metrics", "127.0.0.1:0", "--poll", "0.05"]);
        m
    });
    let metrics = monitor.wait_line("the metrics address", |l| address_after(l, "http://"));
    assert!(metrics.ip().is_loopback(), "{metrics}");
    let stop = Arc::new(AtomicBool::new(false));
    beat(
        Key::from_file(&key_file).unwrap(),
        listen,
        "web-1",
        "worker-1",
        interval,
        Arc::clone(&stop),
    );
    // Forged: signed with another key; and a beat naming another host.
    let other = dir.join("other.key");
    let other_key = Key::generate_file(&other).unwrap();
    let forged_stop = Arc::new(AtomicBool::new(false));
    beat(
        other_key,
        listen,
        "web-1",
        "forged",
        interval,
        Arc::clone(&forged_stop),
    );

    let limit = Instant::now() + GENEROUS;
    loop {
        let (status, body) = get(metrics, "/metrics");
        assert!(status.contains("200"), "{status}");
        if sample(&body, "heartbeat_reporters{health=\"alive\"}") == Some(1.0)
            && sample(&body, "heartbeat_hosts{health=\"alive\"}") == Some(1.0)
            && sample(&body, "heartbeat_beats_rejected_total").is_some_and(|n| n >= 1.0)
        {
            assert_eq!(sample(&body, "heartbeat_store_up"), Some(1.0), "{body}");
            break;
        }
        assert!(Instant::now() < limit, "never one reporter alive:\n{body}");
        std::thread::sleep(interval / 2); // scraping as Prometheus would
    }
    stop.store(true, Ordering::Release);
    let alert = monitor.wait_line("the reporter's alert", |l| {
        l.starts_with("ALERT ").then(|| l.to_owned())
    });
    assert!(
        alert.starts_with("ALERT reporter_silent host=web-1 id=worker-1"),
        "{alert}"
    );
    forged_stop.store(true, Ordering::Release);
}

#[test]
fn a_machine_on_sqlite_seen_scraped_and_its_dead_reporter_reported() {
    let dir = TempDir::new();
    let db = dir.0.join("fleet.db");
    collector_and_monitor_see_a_reporter_die(&["--sqlite", db.to_str().unwrap()], None, &dir.0);
}

#[test]
fn a_machine_on_postgres_seen_scraped_and_its_dead_reporter_reported() {
    let dir = TempDir::new();
    let cluster = testkit::postgres::Cluster::start();
    let url = cluster.url();
    // The URL (with its password) in the environment, never on the
    // command line (see `a_password_on_the_command_line_is_refused`).
    collector_and_monitor_see_a_reporter_die(&[], Some(&url), &dir.0);
}

#[test]
fn help_explains_both_programs() {
    for (name, words) in [
        (
            "heartbeat-collector",
            [
                "--key-file",
                "--url",
                "--sqlite",
                "one statement per interval",
            ],
        ),
        (
            "heartbeat-monitor",
            ["--metrics", "--url", "--sqlite", "alerts"],
        ),
    ] {
        let out = program(name).arg("--help").output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        for word in words {
            assert!(text.contains(word), "{name} --help lacks {word}:\n{text}");
        }
    }
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    let dir = TempDir::new();
    let key = dir.0.join("open.key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let db = dir.0.join("fleet.db");
    let out = program("heartbeat-collector")
        .args([
            "--sqlite",
            db.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
            "--for",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn a_collector_needs_a_key_or_says_it_takes_none() {
    let dir = TempDir::new();
    let db = dir.0.join("fleet.db");
    let out = program("heartbeat-collector")
        .args(["--sqlite", db.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("--key-file"));
    let out = program("heartbeat-collector")
        .args([
            "--sqlite",
            db.to_str().unwrap(),
            "--no-key",
            "--listen",
            "127.0.0.1:0",
            "--for",
            "0.3",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("summary: writes="));
}

#[test]
fn a_store_is_required() {
    let out = program("heartbeat-monitor").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--url") && err.contains("--sqlite"), "{err}");
}

#[test]
fn a_password_on_the_command_line_is_refused() {
    for name in ["heartbeat-collector", "heartbeat-monitor"] {
        let out = program(name)
            .args([
                "--url",
                "postgresql://fleet:s3cret@127.0.0.1:1/fleet",
                "--no-key",
            ])
            .args(if name == "heartbeat-monitor" {
                &[][..]
            } else {
                &["--for", "1"][..]
            })
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        if name == "heartbeat-monitor" && err.contains("--no-key") {
            continue; // the monitor has no --no-key: checked below
        }
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains("PGPASSWORD"), "{name}: {err}");
        assert!(!err.contains("s3cret"), "{name} shows the password: {err}");
    }
    let out = program("heartbeat-monitor")
        .args([
            "--url",
            "postgresql://fleet@127.0.0.1:1/fleet?password=s3cret",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("PGPASSWORD") && !err.contains("s3cret"),
        "{err}"
    );
}
