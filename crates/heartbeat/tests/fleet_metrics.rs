//! The fleet monitor's `/metrics`, scraped over real HTTP (std `TcpStream`):
//! what it says of a fleet read from a store, and how its one thread stands
//! wrong requests, silent clients, huge requests and its own drop.
#![cfg(feature = "metrics")]

mod common;

use common::{fleet_report as report, fleet_reporter as reporter};

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use heartbeat::fleet::{
    FleetMonitor, FleetStatus, HostHealth, HostRow, MetricsServer, SqliteStore, Store,
    CONTENT_TYPE, REQUEST_TIMEOUT,
};
use heartbeat::Health;
use testkit::GENEROUS;

/// An answer: its status line, its headers (each ending in CRLF), its body.
struct Answer {
    status: String,
    headers: String,
    body: String,
}

/// Connects to `addr`, failing the test rather than waiting for ever.
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(GENEROUS)).unwrap();
    stream.set_write_timeout(Some(GENEROUS)).unwrap();
    stream
}

/// Reads a whole answer (the server closes after it).
fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("an answer, then EOF");
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header end");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    Answer {
        status: status.to_owned(),
        headers: format!("{headers}\r\n"),
        body: body.to_owned(),
    }
}

/// Sends `request` whole and reads the answer.
fn ask(addr: SocketAddr, request: &str) -> Answer {
    let mut stream = connect(addr);
    stream.write_all(request.as_bytes()).unwrap();
    read_answer(&mut stream)
}

/// `GET /metrics`: the OpenMetrics text.
fn scrape(addr: SocketAddr) -> String {
    let answer = ask(addr, "GET /metrics HTTP/1.1\r\nHost: monitor\r\n\r\n");
    assert_eq!(answer.status, "HTTP/1.1 200 OK");
    assert!(
        answer
            .headers
            .contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")),
        "{}",
        answer.headers
    );
    assert!(answer.body.ends_with("# EOF\n"), "{}", answer.body);
    answer.body
}

/// Fails unless `text` has the sample line `line` exactly.
fn assert_sample(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "no line {line:?} in:\n{text}"
    );
}

fn host_row(host: &str, instance: u64, received: u64, rejected: u64) -> HostRow {
    HostRow {
        host: host.to_owned(),
        instance,
        pid: 1,
        interval: Duration::from_secs(1),
        since_last_write: Duration::from_millis(250),
        beats_received: received,
        beats_rejected: rejected,
        counts: (2, 0, 1),
    }
}

#[test]
fn a_scrape_tells_reporters_and_hosts_by_health_per_host_and_the_alerts() {
    let dir = common::TempDir::new("fleet-metrics");
    let path = dir.0.join("fleet.db");
    // Two collectors' writes: web-1 writes every minute (alive all the
    // test), web-2 every 50 ms and never again (silent after 75 ms).
    let mut collector = SqliteStore::open(&path).unwrap();
    collector
        .write(&report(
            "web-1",
            Duration::from_secs(60),
            vec![
                reporter("a", Health::Alive),
                reporter("b", Health::Alive),
                reporter("c", Health::Stuck),
                reporter("d", Health::Silent),
            ],
        ))
        .unwrap();
    collector
        .write(&report(
            "web-2",
            Duration::from_millis(50),
            vec![
                reporter("x", Health::Alive),
                reporter("y", Health::Alive),
                reporter("z", Health::Alive),
            ],
        ))
        .unwrap();
    let mut monitor = FleetMonitor::new(SqliteStore::open(&path).unwrap());
    testkit::wait_until("web-2 silent", || {
        monitor.check();
        monitor.host_health("web-2") == Some(HostHealth::Silent)
    });
    assert_eq!(monitor.host_health("web-1"), Some(HostHealth::Alive));

    let server = MetricsServer::bind("127.0.0.1:0").unwrap();
    server.update(monitor.status());
    let text = scrape(server.local_addr());

    for line in [
        r#"heartbeat_reporters{health="alive"} 2"#,
        r#"heartbeat_reporters{health="stuck"} 1"#,
        r#"heartbeat_reporters{health="silent"} 1"#,
        r#"heartbeat_reporters{health="unknown"} 3"#,
        r#"heartbeat_hosts{health="alive"} 1"#,
        r#"heartbeat_hosts{health="silent"} 1"#,
        r#"heartbeat_host_up{host="web-1"} 1"#,
        r#"heartbeat_host_up{host="web-2"} 0"#,
        r#"heartbeat_host_reporters{host="web-1",health="alive"} 2"#,
        r#"heartbeat_host_reporters{host="web-1",health="stuck"} 1"#,
        r#"heartbeat_host_reporters{host="web-1",health="silent"} 1"#,
        r#"heartbeat_host_reporters{host="web-2",health="alive"} 3"#,
        "heartbeat_beats_received_total 60",
        "heartbeat_beats_rejected_total 4",
        "heartbeat_store_up 1",
        "heartbeat_store_read_seconds_count 1",
        "heartbeat_store_read_failures_total 0",
        r#"heartbeat_alerts_total{kind="host_silent"} 1"#,
        r#"heartbeat_alerts_total{kind="reporter_silent"} 1"#,
        r#"heartbeat_alerts_total{kind="reporter_stuck"} 1"#,
        r#"heartbeat_alerts_total{kind="store_unreachable"} 0"#,
    ] {
        assert_sample(&text, line);
    }
    // web-2's age is at least its silence threshold (75 ms).
    let age: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"heartbeat_host_seconds_since_write{host="web-2"} "#))
        .expect("web-2's age")
        .parse()
        .unwrap();
    assert!(age >= 0.075, "{age}\n{text}");
    for help in [
        "# HELP heartbeat_reporters ",
        "# TYPE heartbeat_store_read_seconds histogram",
    ] {
        assert!(text.contains(help), "no {help:?} in:\n{text}");
    }
}

#[test]
fn machines_gone_from_the_status_leave_and_counters_never_go_down() {
    let server = MetricsServer::bind("127.0.0.1:0").unwrap();
    let mut status = FleetStatus {
        store_up: true,
        hosts: vec![
            (host_row("a", 1, 100, 5), HostHealth::Alive),
            (host_row("b", 1, 40, 0), HostHealth::Alive),
        ],
        reads: 1,
        read_latency: Duration::from_millis(3),
        ..FleetStatus::default()
    };
    server.update(&status);
    // Another update for the same check observes its read time once only.
    server.update(&status);
    assert_sample(
        &scrape(server.local_addr()),
        "heartbeat_beats_received_total 140",
    );

    // b is gone; a's collector restarted (another instance) and counts
    // again from 0: 10 beats since, all new. One read failed.
    status.hosts = vec![(host_row("a", 2, 10, 1), HostHealth::Alive)];
    status.reads = 2;
    status.read_failures = 1;
    server.update(&status);
    let text = scrape(server.local_addr());
    assert!(!text.contains(r#"host="b""#), "b is still there:\n{text}");
    for line in [
        r#"heartbeat_host_up{host="a"} 1"#,
        r#"heartbeat_hosts{health="alive"} 1"#,
        "heartbeat_beats_received_total 150",
        "heartbeat_beats_rejected_total 6",
        "heartbeat_store_read_seconds_count 2",
        "heartbeat_store_read_failures_total 1",
    ] {
        assert_sample(&text, line);
    }

    // The same start goes on: only its increase counts.
    status.hosts = vec![(host_row("a", 2, 25, 1), HostHealth::Alive)];
    status.reads = 3;
    server.update(&status);
    assert_sample(
        &scrape(server.local_addr()),
        "heartbeat_beats_received_total 165",
    );
}

#[test]
fn other_paths_are_404_other_methods_405_and_the_root_links_the_metrics() {
    let server = MetricsServer::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr();

    let nope = ask(addr, "GET /nope HTTP/1.1\r\n\r\n");
    assert_eq!(nope.status, "HTTP/1.1 404 Not Found");
    assert!(
        nope.headers.contains("Connection: close\r\n"),
        "{}",
        nope.headers
    );

    let post = ask(
        addr,
        "POST /metrics HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd",
    );
    assert_eq!(post.status, "HTTP/1.1 405 Method Not Allowed");
    assert!(post.headers.contains("Allow: GET\r\n"), "{}", post.headers);

    let root = ask(addr, "GET / HTTP/1.0\r\n\r\n");
    assert_eq!(root.status, "HTTP/1.1 200 OK");
    assert!(root.body.contains(r#"href="/metrics""#), "{}", root.body);

    assert_eq!(
        ask(addr, "nonsense\r\n\r\n").status,
        "HTTP/1.1 400 Bad Request"
    );
    // With a query, /metrics is still /metrics.
    let answer = ask(addr, "GET /metrics?x=1 HTTP/1.1\r\n\r\n");
    assert_eq!(answer.status, "HTTP/1.1 200 OK");
}

#[test]
fn a_client_that_sends_nothing_is_dropped_after_the_timeout_and_holds_up_nobody() {
    let server = MetricsServer::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    let connected = Instant::now();
    let mut silent = connect(addr);
    // A second client that sends a request and never its end.
    let mut partial = connect(addr);
    partial.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();

    // Another client is served meanwhile, while both are still connected.
    scrape(addr);
    silent.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(
        silent.read(&mut byte).map_err(|e| e.kind()),
        Err(ErrorKind::WouldBlock),
        "the silent client was dropped before the other was served"
    );
    silent.set_nonblocking(false).unwrap();

    // Both are dropped once the timeout has passed: EOF, nothing served.
    for client in [&mut silent, &mut partial] {
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).expect("EOF within GENEROUS");
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }
    let waited = connected.elapsed();
    assert!(waited >= REQUEST_TIMEOUT, "dropped after {waited:?}");
    scrape(addr);
}

#[test]
fn a_request_line_of_100_kib_is_refused() {
    let server = MetricsServer::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    let mut huge = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100 * 1024));
    let answer = ask(addr, &huge);
    assert_eq!(answer.status, "HTTP/1.1 414 URI Too Long");

    // Headers past the cap: 431.
    huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "b".repeat(100 * 1024)
    );
    let answer = ask(addr, &huge);
    assert_eq!(
        answer.status,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    scrape(addr);
}

#[test]
fn dropping_the_server_ends_its_connections_and_frees_its_port() {
    let server = MetricsServer::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    scrape(addr);
    let mut idle = connect(addr);
    // The drop returns at once (well within GENEROUS), whoever is connected.
    testkit::within(move || drop(server));
    // Ended: closed (EOF) if the server had accepted it, reset if it was
    // still in the listener's backlog.
    let mut rest = Vec::new();
    match idle.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest)),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }

    // The port is free: for a plain listener, and for a server again.
    drop(TcpListener::bind(addr).expect("the port is free again"));
    let again = MetricsServer::bind(addr).unwrap();
    scrape(again.local_addr());
}
