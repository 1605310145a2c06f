//! Signed beats (issue #16): a keyed monitor takes in only the beats of
//! reporters given its key, and counts every beat it drops by reason;
//! key files readable by others are refused.

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use heartbeat::{Beat, Health, HeartbeatError, Key, KeyProblem, Monitor, Rejections};

mod common;
use common::{
    assert_turns_silent, beat_receiver, next_beat, poll_until, send_datagrams_from_another_process,
    send_from_another_process, udp_reporting_main, TempDir,
};

const INTERVAL: Duration = Duration::from_millis(50);

/// A beat's JSON with one more field, `extra`.
const UNKNOWN_FIELD: &[u8] = br#"{"id":"x","host":"h","pid":5,"seq":0,"progress":0,"sent_at_ms":0,"interval_ms":100,"instance":1,"extra":1}"#;

/// A new key file in `dir`, and its key.
fn new_key(dir: &TempDir, name: &str) -> (std::path::PathBuf, Key) {
    let path = dir.0.join(name);
    let key = Key::generate_file(&path).unwrap();
    (path, key)
}

/// A monitor on a free port taking in beats signed with `key`.
fn keyed_monitor(key: Key) -> (Monitor, SocketAddr) {
    let monitor = Monitor::udp("127.0.0.1:0").unwrap().key(key);
    let addr = monitor.local_addr().unwrap();
    (monitor, addr)
}

/// Wall-clock milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A beat of a made-up reporter, sent now.
fn made_up(id: &str, seq: u64) -> Beat {
    Beat {
        sent_at_ms: unix_ms(),
        instance: 7,
        ..common::made_up_beat(id, seq, 100)
    }
}

/// Regression: a datagram that is no beat was not counted at all, and a
/// beat with a field a beat does not have was taken in as a reporter.
#[test]
fn datagrams_that_are_no_beat_are_counted_and_dropped() {
    let mut monitor = Monitor::udp("127.0.0.1:0").unwrap();
    let addr = monitor.local_addr().unwrap();
    send_datagrams_from_another_process(addr, vec![b"{".to_vec(), UNKNOWN_FIELD.to_vec()]);
    monitor.poll(Duration::ZERO).unwrap();
    assert_eq!(monitor.reporters(), vec![]);
    assert_eq!(monitor.beats_rejected(), 2);
    assert_eq!(monitor.rejections().malformed, 2);
    assert_eq!(monitor.beats_received(), 2);
}

#[test]
fn a_keyed_reporter_is_alive_at_a_keyed_monitor() {
    let dir = TempDir::new("hb-auth-alive");
    let (path, key) = new_key(&dir, "key");
    let (monitor, addr) = keyed_monitor(key);
    // Its progress never moves: never STUCK here (this is about its beats).
    let mut monitor = monitor.stuck_after(u32::MAX);
    // The reporter's main reads the key file itself.
    let main = udp_reporting_main(
        addr,
        "signed",
        INTERVAL,
        Some(Key::from_file(&path).unwrap()),
    );
    poll_until(&mut monitor, "three signed beats", |m| {
        m.reporters().first().is_some_and(|r| r.seq >= 3)
    });
    assert_eq!(monitor.health("signed"), Some(Health::Alive));
    assert_eq!(monitor.rejections(), Rejections::default());
    main.kill().unwrap();
    let _ = main.join();
}

#[test]
fn an_unkeyed_reporter_is_unseen_and_its_beats_counted_unsigned() {
    let dir = TempDir::new("hb-auth-unsigned");
    let (_, key) = new_key(&dir, "key");
    let (mut monitor, addr) = keyed_monitor(key);
    let main = udp_reporting_main(addr, "unsigned", INTERVAL, None);
    poll_until(&mut monitor, "three unsigned beats", |m| {
        m.rejections().unsigned >= 3
    });
    main.kill().unwrap();
    let _ = main.join();
    assert_eq!(monitor.reporters(), vec![]);
    assert_eq!(monitor.beats_rejected(), monitor.rejections().unsigned);
    assert_eq!(monitor.beats_rejected(), monitor.beats_received());
}

#[test]
fn forged_and_tampered_beats_are_counted_bad_mac() {
    let dir = TempDir::new("hb-auth-forged");
    let (path, key) = new_key(&dir, "key");
    let (_, other) = new_key(&dir, "other");
    // A real signed beat, captured on its way.
    let (capture, capture_addr) = beat_receiver();
    let main = udp_reporting_main(
        capture_addr,
        "real",
        INTERVAL,
        Some(Key::from_file(&path).unwrap()),
    );
    let real = next_beat(&capture);
    main.kill().unwrap();
    let _ = main.join();
    assert!(real.mac.is_some(), "the reporter signs: {real:?}");
    let mut wrong_mac = real.clone();
    let mut mac = wrong_mac.mac.take().unwrap().into_bytes();
    mac[0] = if mac[0] == b'0' { b'1' } else { b'0' };
    wrong_mac.mac = Some(String::from_utf8(mac).unwrap());
    let mut other_key = real.clone();
    other.sign(&mut other_key);
    let mut tampered = real.clone();
    tampered.progress += 1;
    let mut new_reporter = made_up("forged", 0);
    other.sign(&mut new_reporter);
    let (mut monitor, addr) = keyed_monitor(key);
    send_from_another_process(addr, vec![wrong_mac, other_key, tampered, new_reporter]);
    monitor.poll(Duration::ZERO).unwrap();
    assert_eq!(monitor.reporters(), vec![]);
    assert_eq!(monitor.rejections().bad_mac, 4);
    assert_eq!(monitor.rejections().total(), 4);
    // The real beat itself is taken in.
    send_from_another_process(addr, vec![real]);
    monitor.poll(Duration::ZERO).unwrap();
    assert_eq!(monitor.health("real"), Some(Health::Alive));
}

/// Forwards what a reporter sends to a monitor, keeping a copy of each
/// datagram forwarded: a man in the middle who captures beats.
struct Relay {
    socket: UdpSocket,
    to: SocketAddr,
    forwarded: Vec<Vec<u8>>,
}

impl Relay {
    fn new(to: SocketAddr) -> Relay {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        Relay {
            socket,
            to,
            forwarded: Vec::new(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Forwards (or, if not `forward`, drops) every datagram queued.
    fn pump(&mut self, forward: bool) {
        let mut buf = [0u8; 65536];
        while let Ok(n) = self.socket.recv(&mut buf) {
            if forward {
                self.socket.send_to(&buf[..n], self.to).unwrap();
                self.forwarded.push(buf[..n].to_vec());
            }
        }
    }
}

#[test]
fn replayed_beats_are_counted_and_keep_no_killed_reporter_alive() {
    let dir = TempDir::new("hb-auth-replay");
    let (path, key) = new_key(&dir, "key");
    let (mut monitor, addr) = keyed_monitor(key);
    let mut relay = Relay::new(addr);
    let main = udp_reporting_main(
        relay.addr(),
        "replayed",
        INTERVAL,
        Some(Key::from_file(&path).unwrap()),
    );
    let limit = testkit::deadline(testkit::GENEROUS);
    while monitor.reporters().first().is_none_or(|r| r.seq < 5) {
        assert!(Instant::now() < limit, "the reporter's beats never came");
        relay.pump(true);
        monitor.poll(Duration::from_millis(5)).unwrap();
    }
    let seen = monitor.reporters().remove(0);
    main.kill().unwrap();
    let _ = main.join();
    // Beats sent after the kill are not forwarded (nor kept).
    relay.pump(false);
    let captured = relay.forwarded.clone();
    let mut replays = 0;
    assert_turns_silent(&mut monitor, "replayed", INTERVAL, || {
        relay.pump(false);
        send_datagrams_from_another_process(addr, captured.clone());
        replays += captured.len() as u64;
    });
    monitor.poll(Duration::ZERO).unwrap();
    assert!(replays > 0, "the reporter went silent before any replay");
    assert_eq!(monitor.rejections().replayed, replays);
    assert_eq!(monitor.beats_rejected(), replays);
    // No replay was taken in.
    assert_eq!(monitor.reporters()[0].seq, seen.seq);
}

#[test]
fn a_replay_to_a_reporter_forgotten_or_of_an_older_seq_is_counted() {
    let dir = TempDir::new("hb-auth-forgotten");
    let (_, key) = new_key(&dir, "key");
    let mut monitor = Monitor::without_socket().key(key.clone()).forget_after(1);
    let signed = |seq| {
        let mut beat = made_up("gone", seq);
        key.sign(&mut beat);
        beat
    };
    let now = Instant::now();
    monitor.record(signed(5), now);
    monitor.record(signed(5), now);
    monitor.record(signed(4), now);
    assert_eq!(monitor.rejections().replayed, 2);
    monitor.record(signed(6), now);
    assert_eq!(monitor.reporters()[0].seq, 6);
    // Silent (reported), then forgotten.
    monitor.judge(now + Duration::from_secs(1));
    monitor.judge(now + Duration::from_secs(2));
    assert_eq!(monitor.reporters(), vec![]);
    monitor.record(signed(6), now + Duration::from_secs(2));
    assert_eq!(monitor.reporters(), vec![]);
    assert_eq!(monitor.rejections().replayed, 3);
    // A later beat of it is news.
    monitor.record(signed(7), now + Duration::from_secs(2));
    assert_eq!(monitor.reporters()[0].seq, 7);
}

/// A start the monitor dropped as restarted (a later start of its id
/// began after its last beat) is remembered like a forgotten one: its
/// captured beats, replayed, were a new reporter that turned SILENT (a
/// false alarm for a process restarted on purpose).
#[test]
fn a_replay_of_a_restarted_start_is_counted() {
    let dir = TempDir::new("hb-auth-restarted");
    let (_, key) = new_key(&dir, "key");
    let mut monitor = Monitor::without_socket().key(key.clone());
    let signed = |instance, seq| {
        let mut beat = made_up("restarted", seq);
        beat.instance = instance;
        key.sign(&mut beat);
        beat
    };
    let start = Instant::now();
    let ms = Duration::from_millis;
    for seq in 0..3 {
        monitor.record(signed(1, seq), start + ms(100 * seq));
    }
    monitor.record(signed(2, 0), start + ms(1_000));
    monitor.judge(start + ms(1_050));
    let instances: Vec<u64> = monitor.reporters().iter().map(|r| r.instance).collect();
    assert_eq!(instances, [2], "the first start is dropped as restarted");
    assert_eq!(monitor.take_alerts(), vec![]);
    monitor.record(signed(1, 2), start + ms(1_100));
    let instances: Vec<u64> = monitor.reporters().iter().map(|r| r.instance).collect();
    assert_eq!(instances, [2], "the replay made a reporter again");
    assert_eq!(monitor.rejections().replayed, 1);
}

#[test]
fn a_signed_beat_an_hour_old_is_stale() {
    let dir = TempDir::new("hb-auth-stale");
    let (_, key) = new_key(&dir, "key");
    let mut old = made_up("old", 0);
    old.sent_at_ms -= 3_600_000;
    key.sign(&mut old);
    let mut ahead = made_up("ahead", 0);
    ahead.sent_at_ms += 3_600_000;
    key.sign(&mut ahead);
    let mut fresh = made_up("fresh", 0);
    key.sign(&mut fresh);
    let (mut monitor, addr) = keyed_monitor(key);
    send_from_another_process(addr, vec![old, ahead, fresh]);
    monitor.poll(Duration::ZERO).unwrap();
    assert_eq!(monitor.rejections().stale, 2);
    assert_eq!(monitor.rejections().total(), 2);
    let seen: Vec<String> = monitor.reporters().into_iter().map(|r| r.id).collect();
    assert_eq!(seen, ["fresh"]);
}

#[test]
fn a_signed_beat_with_an_unknown_field_is_malformed() {
    let dir = TempDir::new("hb-auth-unknown");
    let (_, key) = new_key(&dir, "key");
    let mut beat = made_up("extra", 0);
    key.sign(&mut beat);
    let mut json = serde_json::to_value(&beat).unwrap();
    json["extra"] = 1.into();
    let (mut monitor, addr) = keyed_monitor(key);
    send_datagrams_from_another_process(addr, vec![serde_json::to_vec(&json).unwrap()]);
    monitor.poll(Duration::ZERO).unwrap();
    assert_eq!(monitor.reporters(), vec![]);
    assert_eq!(monitor.rejections().malformed, 1);
    assert_eq!(monitor.beats_rejected(), 1);
}

// ---- Key files ----

/// The problem `Key::from_file` finds with `path`.
fn refusal(path: &Path) -> (KeyProblem, String) {
    let error = Key::from_file(path).unwrap_err();
    let message = error.to_string();
    match error {
        HeartbeatError::KeyFile { path: p, problem } => {
            assert_eq!(p, path);
            (problem, message)
        }
        other => panic!("not a key file error: {other:?}"),
    }
}

/// A key file holding `bytes`, of mode 0600.
fn key_file(dir: &TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.0.join(name);
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn a_key_file_readable_by_others_is_refused_with_the_chmod_to_run() {
    let dir = TempDir::new("hb-auth-mode");
    let path = key_file(&dir, "key", b"0123456789abcdef\n");
    Key::from_file(&path).unwrap();
    for mode in [0o644, 0o640, 0o602] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let (problem, message) = refusal(&path);
        assert!(
            matches!(problem, KeyProblem::Exposed { mode: m, .. } if m == mode),
            "{problem:?}"
        );
        assert!(
            message.contains(&format!("chmod 600 {}", path.display())),
            "{message}"
        );
    }
}

#[test]
fn a_key_file_of_another_user_is_refused() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: only root can give a file to another user");
        return;
    }
    let dir = TempDir::new("hb-auth-owner");
    let path = key_file(&dir, "key", b"0123456789abcdef\n");
    std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
    let (problem, _) = refusal(&path);
    assert!(
        matches!(
            problem,
            KeyProblem::NotOwned {
                owner: 65534,
                euid: 0
            }
        ),
        "{problem:?}"
    );
}

#[test]
fn a_key_shorter_than_16_bytes_is_refused() {
    let dir = TempDir::new("hb-auth-short");
    // 15 bytes and a newline, which is no part of the key.
    let path = key_file(&dir, "key", b"0123456789abcde\n");
    let (problem, _) = refusal(&path);
    assert!(
        matches!(problem, KeyProblem::TooShort { len: 15 }),
        "{problem:?}"
    );
    let empty = key_file(&dir, "empty", b"");
    assert!(matches!(refusal(&empty).0, KeyProblem::TooShort { len: 0 }));
    // 16 is enough.
    Key::from_file(key_file(&dir, "sixteen", b"0123456789abcdef")).unwrap();
    let huge = key_file(&dir, "huge", &[b'k'; 5000]);
    assert!(matches!(refusal(&huge).0, KeyProblem::TooLong));
}

#[test]
fn a_directory_or_a_fifo_is_no_key_file() {
    let dir = TempDir::new("hb-auth-dir");
    let sub = dir.0.join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(matches!(refusal(&sub).0, KeyProblem::NotRegular));
    // A FIFO is refused at once, not waited on for a writer.
    let fifo = dir.0.join("fifo");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::RUSR).unwrap();
    let refused = testkit::within(move || matches!(refusal(&fifo).0, KeyProblem::NotRegular));
    assert!(refused);
    assert!(matches!(
        refusal(&dir.0.join("missing")).0,
        KeyProblem::Io(e) if e.kind() == std::io::ErrorKind::NotFound
    ));
}

#[test]
fn a_generated_key_file_is_private_and_never_overwritten() {
    let dir = TempDir::new("hb-auth-generate");
    let (path, key) = new_key(&dir, "key");
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.len(), 65, "{text:?}");
    assert!(text.ends_with('\n'));
    assert!(text[..64]
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    // The file read back is the same key.
    let mut beat = made_up("k", 0);
    key.sign(&mut beat);
    assert!(Key::from_file(&path).unwrap().verify(&beat));
    assert_eq!(format!("{key:?}"), "Key(..)");
    // Never over an existing file, which is left as it was.
    let error = Key::generate_file(&path).unwrap_err();
    assert!(
        matches!(
            error,
            HeartbeatError::KeyFile {
                problem: KeyProblem::Exists,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    // Two keys are two.
    let (_, second) = new_key(&dir, "second");
    assert!(!second.verify(&beat));
}
