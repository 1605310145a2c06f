//! The fleet monitor's Prometheus endpoint (feature `metrics`):
//! [`MetricsServer`] serves `/metrics` in the OpenMetrics text format,
//! encoded by `prometheus-client`, so that Prometheus scrapes it and Grafana
//! and Alertmanager draw and page. Its docs say what it serves, where it
//! listens, and how it stands slow and huge clients, with an example.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};

use super::watch::{FleetStatus, HostHealth, ALL_KINDS};
use crate::{io_error, HeartbeatError};

/// A request must have arrived whole (request line and headers) this long
/// after its connection was accepted, or the connection is dropped.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// An answer must have been taken by the client this long after it was
/// ready, or the connection is dropped.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest request (request line and headers) served; a longer one is
/// answered 414 (no end of its request line within it) or 431 and closed.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Connections served at once; more wait in the listener's backlog.
pub const MAX_CONNECTIONS: usize = 64;

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// After an answer, the time its client has to close (the rest of its
/// request is read and dropped meanwhile, so that closing with unread bytes
/// does not reset the connection and lose the answer).
const LINGER: Duration = Duration::from_secs(2);

type Label = [(&'static str, &'static str); 1];
type HostLabel = [(&'static str, String); 1];
type HostHealthLabels = [(&'static str, String); 2];

/// The metrics, and what the last update saw of the monitor's running sums.
#[derive(Debug)]
struct Metrics {
    registry: Registry,
    reporters: Family<Label, Gauge>,
    hosts: Family<Label, Gauge>,
    host_up: Family<HostLabel, Gauge>,
    host_reporters: Family<HostHealthLabels, Gauge>,
    host_seconds_since_write: Family<HostLabel, Gauge<f64, AtomicU64>>,
    beats_received: Counter,
    beats_rejected: Counter,
    store_up: Gauge,
    store_read: Histogram,
    store_read_failures: Counter,
    alerts: Family<Label, Counter>,
    seen: Seen,
}

/// The monitor's running sums at the last update.
#[derive(Debug, Default)]
struct Seen {
    /// Per machine: its collector's instance, beats received and rejected.
    collectors: HashMap<String, (u64, u64, u64)>,
    reads: u64,
    read_failures: u64,
    alerts: BTreeMap<&'static str, u64>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("heartbeat"),
            reporters: Family::default(),
            hosts: Family::default(),
            host_up: Family::default(),
            host_reporters: Family::default(),
            host_seconds_since_write: Family::default(),
            beats_received: Counter::default(),
            beats_rejected: Counter::default(),
            store_up: Gauge::default(),
            // 0.5 ms to 4 s, doubling.
            store_read: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            store_read_failures: Counter::default(),
            alerts: Family::default(),
            seen: Seen::default(),
        };
        let registry = &mut m.registry;
        registry.register(
            "reporters",
            "Reporters by health: those of live machines as their collectors judged them \
             (alive, stuck, silent), and those of silent machines (unknown)",
            m.reporters.clone(),
        );
        registry.register(
            "hosts",
            "Machines by health: alive while their collector writes the store on time, silent after",
            m.hosts.clone(),
        );
        registry.register(
            "host_up",
            "1 while the machine's collector writes the store on time, 0 once it is silent",
            m.host_up.clone(),
        );
        registry.register(
            "host_reporters",
            "The machine's reporters by health at its collector's last write",
            m.host_reporters.clone(),
        );
        registry.register(
            "host_seconds_since_write",
            "Seconds since the machine's collector last wrote the store, on the store's clock",
            m.host_seconds_since_write.clone(),
        );
        registry.register(
            "beats_received",
            "Beats received by the collectors (rejected ones included), counted from each \
             collector's start",
            m.beats_received.clone(),
        );
        registry.register(
            "beats_rejected",
            "Beats the collectors rejected (forged, replayed, malformed, of another host)",
            m.beats_rejected.clone(),
        );
        registry.register(
            "store_up",
            "1 if the monitor's last read of the store succeeded, else 0",
            m.store_up.clone(),
        );
        registry.register_with_unit(
            "store_read",
            "Time the monitor's reads of the store took, one per check",
            Unit::Seconds,
            m.store_read.clone(),
        );
        registry.register(
            "store_read_failures",
            "The monitor's reads of the store that failed",
            m.store_read_failures.clone(),
        );
        registry.register(
            "alerts",
            "Alerts the monitor raised, by kind",
            m.alerts.clone(),
        );
        for kind in ALL_KINDS {
            m.alerts.get_or_create(&[("kind", kind.name())]).inc_by(0);
        }
        m
    }

    fn update(&mut self, status: &FleetStatus) {
        let (alive, stuck, silent) = status.reporters;
        for (health, n) in [
            ("alive", alive),
            ("stuck", stuck),
            ("silent", silent),
            ("unknown", status.unknown),
        ] {
            self.reporters
                .get_or_create(&[("health", health)])
                .set(gauge(n));
        }
        let live = status
            .hosts
            .iter()
            .filter(|(_, h)| *h == HostHealth::Alive)
            .count() as u64;
        let dead = status.hosts.len() as u64 - live;
        for (health, n) in [("alive", live), ("silent", dead)] {
            self.hosts
                .get_or_create(&[("health", health)])
                .set(gauge(n));
        }

        // A machine gone from the status is gone from the per-host
        // families: clear them and set each machine again (a scrape takes
        // the same lock, so it never sees them half set).
        self.host_up.clear();
        self.host_reporters.clear();
        self.host_seconds_since_write.clear();
        let mut collectors = HashMap::with_capacity(status.hosts.len());
        for (row, health) in &status.hosts {
            let host = [("host", row.host.clone())];
            self.host_up
                .get_or_create(&host)
                .set(i64::from(*health == HostHealth::Alive));
            let (a, st, si) = row.counts;
            for (name, n) in [("alive", a), ("stuck", st), ("silent", si)] {
                self.host_reporters
                    .get_or_create(&[("host", row.host.clone()), ("health", name.to_owned())])
                    .set(gauge(n));
            }
            self.host_seconds_since_write
                .get_or_create(&host)
                .set(row.since_last_write.as_secs_f64());

            // The status's sums of beats drop when a collector restarts
            // (its counts begin again at 0), and a Prometheus counter must
            // never go down: a drop reads as a reset of the whole counter,
            // and `rate()` would then take the sum that is left for new
            // beats. A gauge named without `_total` would tell the truth of
            // each moment but lose the beats between two scrapes across a
            // restart. So the counters advance by each collector's own
            // increase: since the last update for the same start, and all
            // it counted for a new start (whose beats are all new).
            let before = self.seen.collectors.get(&row.host).copied();
            let (received, rejected) = match before {
                Some((instance, r, j)) if instance == row.instance => (
                    increase(r, row.beats_received),
                    increase(j, row.beats_rejected),
                ),
                _ => (row.beats_received, row.beats_rejected),
            };
            self.beats_received.inc_by(received);
            self.beats_rejected.inc_by(rejected);
            collectors.insert(
                row.host.clone(),
                (row.instance, row.beats_received, row.beats_rejected),
            );
        }
        self.seen.collectors = collectors;

        self.store_up.set(i64::from(status.store_up));
        // One observation per check: an update without a check since the
        // last one observes nothing again.
        if status.reads != self.seen.reads {
            self.store_read.observe(status.read_latency.as_secs_f64());
        }
        self.seen.reads = status.reads;
        self.store_read_failures
            .inc_by(increase(self.seen.read_failures, status.read_failures));
        self.seen.read_failures = status.read_failures;
        for (kind, &n) in &status.alerts {
            let before = self.seen.alerts.insert(kind, n).unwrap_or(0);
            self.alerts
                .get_or_create(&[("kind", kind)])
                .inc_by(increase(before, n));
        }
    }

    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// A count as a gauge's value.
fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// How much a running count grew from `before` to `now`: all of `now` if
/// it went down (it began again: another monitor, another start).
fn increase(before: u64, now: u64) -> u64 {
    now.checked_sub(before).unwrap_or(now)
}

/// Serves the fleet monitor's metrics over HTTP (feature `metrics`): `/metrics`
/// in the OpenMetrics text format, encoded by `prometheus-client`, so that
/// Prometheus scrapes it and Grafana and Alertmanager draw and page.
///
/// [`MetricsServer::bind`] starts one thread serving HTTP/1.x on a std
/// [`TcpListener`]: `GET /metrics` gives the metrics, `GET /` a short page
/// linking them, any other path 404 and any other method 405. Every answer
/// closes its connection (`Connection: close`).
///
/// The monitor's loop calls [`MetricsServer::update`] with
/// [`FleetMonitor::status`](super::FleetMonitor::status) **after each
/// [`check`](super::FleetMonitor::check)**: the store's read latency is one
/// observation of a histogram per check, and counters advance by what
/// changed since the last update.
///
/// Dropping it stops its thread and closes its port and connections.
///
/// # Metrics
///
/// - `heartbeat_reporters{health}`: reporters of live machines by their
///   collectors' verdicts (`alive`, `stuck`, `silent`), and of silent
///   machines (`unknown`);
/// - `heartbeat_hosts{health}`: machines `alive` or `silent`;
/// - per machine: `heartbeat_host_up{host}` (1 or 0),
///   `heartbeat_host_reporters{host,health}` and
///   `heartbeat_host_seconds_since_write{host}` (on the store's clock);
/// - `heartbeat_beats_received_total`, `heartbeat_beats_rejected_total`:
///   counters of the collectors' beats, advanced by each collector's
///   increase (a restarted collector's counts begin again and are added);
/// - `heartbeat_store_up`, `heartbeat_store_read_seconds` (a histogram, one
///   observation per check) and `heartbeat_store_read_failures_total`;
/// - `heartbeat_alerts_total{kind}`, every [`FleetAlertKind`](super::FleetAlertKind)
///   by its [name](super::FleetAlertKind::name), 0 until raised.
///
/// While the store cannot be read, the machines' and reporters' figures
/// are those of the last read that succeeded: alert on
/// `heartbeat_store_up == 0` before trusting them.
///
/// # Where it listens
///
/// It binds where it is told, and has **no authentication**: anyone who can
/// reach the address reads the fleet's host names and health. The
/// `heartbeat-monitor` binary's default is `127.0.0.1` (this machine only);
/// to expose it, put a proxy in front that authenticates (or bind a
/// private network's address on purpose).
///
/// # A slow or huge client
///
/// The one thread serves every connection at once through `poll(2)`, so one
/// client never makes another wait: a request must arrive whole within
/// [`REQUEST_TIMEOUT`] of the connection (a client that sends nothing, or
/// a byte now and then, is dropped then) and within [`MAX_REQUEST_BYTES`]
/// (a longer one is answered 414 or 431 and closed); an answer must be
/// taken within [`RESPONSE_TIMEOUT`]. At most [`MAX_CONNECTIONS`] are open
/// at once; more wait in the listener's backlog.
///
/// # Example
///
/// ```no_run
/// use heartbeat::fleet::{FleetMonitor, MetricsServer, SqliteStore};
/// use std::time::Duration;
///
/// let mut monitor = FleetMonitor::new(SqliteStore::open("/var/lib/heartbeat/fleet.db")?);
/// let metrics = MetricsServer::bind("127.0.0.1:9464")?;
/// println!("metrics on http://{}/metrics", metrics.local_addr());
/// loop {
///     for alert in monitor.check() {
///         println!("{alert}");
///     }
///     metrics.update(monitor.status()); // once per check
///     std::thread::sleep(Duration::from_millis(250));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MetricsServer {
    metrics: Arc<Mutex<Metrics>>,
    local_addr: SocketAddr,
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` (`127.0.0.1:9464`, say; port 0 picks a free one)
    /// and starts the thread that serves it. No metric has a value until
    /// the first [`update`](MetricsServer::update) but the alert counters
    /// (0).
    pub fn bind(addr: impl ToSocketAddrs) -> Result<MetricsServer, HeartbeatError> {
        let listener = TcpListener::bind(addr).map_err(io_error("binding the metrics endpoint"))?;
        listener
            .set_nonblocking(true)
            .map_err(io_error("making the metrics listener non-blocking"))?;
        let local_addr = listener
            .local_addr()
            .map_err(io_error("the metrics endpoint's address"))?;
        let stop = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| io_error("the metrics server's stop signal")(e.into()))?;
        let stopped = stop
            .try_clone()
            .map_err(io_error("the metrics server's stop signal"))?;
        let metrics = Arc::new(Mutex::new(Metrics::new()));
        let served = Arc::clone(&metrics);
        let thread = std::thread::Builder::new()
            .name("heartbeat-metrics".into())
            .spawn(move || serve(&listener, &stopped, &served))
            .map_err(io_error("starting the metrics server's thread"))?;
        Ok(MetricsServer {
            metrics,
            local_addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens (the port chosen, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sets the metrics from the fleet monitor's status. Call it once
    /// after every [`check`](super::FleetMonitor::check): each call with a
    /// new check adds that check's store read time to the
    /// `heartbeat_store_read_seconds` histogram (a check without an update
    /// is missing from it; an update without a new check adds nothing).
    /// Counters advance by what grew since the last update; machines no
    /// longer in the status leave the per-host metrics. While the store
    /// cannot be read, the status (and so the per-host metrics) is the
    /// last one read, and `heartbeat_store_up` is 0.
    pub fn update(&self, status: &FleetStatus) {
        self.metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .update(status);
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        // The serving thread polls the eventfd: once readable, it returns
        // (closing the listener and every connection).
        let _ = rustix::io::write(&self.stop, &1u64.to_ne_bytes());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where a connection is.
#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// Reading its request.
    Reading,
    /// Writing the answer.
    Writing,
    /// Answered and shut for writing: reading (and dropping) whatever the
    /// client still sends until it closes.
    Lingering,
}

#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    phase: Phase,
    request: Vec<u8>,
    answer: Vec<u8>,
    sent: usize,
    deadline: Instant,
}

/// The serving thread: every connection at once, until `stop` is readable.
fn serve(listener: &TcpListener, stop: &OwnedFd, metrics: &Mutex<Metrics>) {
    let mut connections: Vec<Connection> = Vec::new();
    loop {
        let now = Instant::now();
        connections.retain(|c| c.deadline > now);
        let timeout = connections
            .iter()
            .map(|c| c.deadline - now)
            .min()
            .and_then(|d| Timespec::try_from(d).ok());
        let mut fds = Vec::with_capacity(connections.len() + 2);
        fds.push(PollFd::new(stop, PollFlags::IN));
        let accepting = connections.len() < MAX_CONNECTIONS;
        fds.push(PollFd::new(
            listener,
            if accepting {
                PollFlags::IN
            } else {
                PollFlags::empty()
            },
        ));
        for c in &connections {
            let events = match c.phase {
                Phase::Writing => PollFlags::OUT,
                Phase::Reading | Phase::Lingering => PollFlags::IN,
            };
            fds.push(PollFd::new(&c.stream, events));
        }
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => {
                // Out of kernel memory: nothing to do but try again a
                // little later.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if ready[0] {
            return;
        }
        let mut i = 0;
        connections.retain_mut(|c| {
            i += 1;
            !ready[i + 1] || progress(c, metrics)
        });
        if accepting && ready[1] {
            while connections.len() < MAX_CONNECTIONS {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if stream.set_nonblocking(true).is_ok() {
                            connections.push(Connection {
                                stream,
                                phase: Phase::Reading,
                                request: Vec::new(),
                                answer: Vec::new(),
                                sent: 0,
                                deadline: Instant::now() + REQUEST_TIMEOUT,
                            });
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // WouldBlock: none left. Others (a connection reset
                    // while queued, out of descriptors): try at the next
                    // readiness.
                    Err(_) => break,
                }
            }
        }
    }
}

/// Moves a ready connection on; `false` once it is done with.
fn progress(c: &mut Connection, metrics: &Mutex<Metrics>) -> bool {
    match c.phase {
        Phase::Reading => {
            let mut buf = [0u8; 4096];
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => return false,
                    Ok(n) => {
                        let room = MAX_REQUEST_BYTES - c.request.len();
                        c.request.extend_from_slice(&buf[..n.min(room)]);
                        if let Some(answer) = answer(&c.request, n > room, metrics) {
                            c.answer = answer;
                            c.phase = Phase::Writing;
                            c.deadline = Instant::now() + RESPONSE_TIMEOUT;
                            return progress(c, metrics);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return e.kind() == io::ErrorKind::WouldBlock,
                }
            }
        }
        Phase::Writing => {
            while c.sent < c.answer.len() {
                match c.stream.write(&c.answer[c.sent..]) {
                    Ok(n) => c.sent += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return e.kind() == io::ErrorKind::WouldBlock,
                }
            }
            if c.stream.shutdown(Shutdown::Write).is_err() {
                return false;
            }
            c.answer = Vec::new();
            c.request = Vec::new();
            c.phase = Phase::Lingering;
            c.deadline = Instant::now() + LINGER;
            progress(c, metrics)
        }
        Phase::Lingering => {
            let mut buf = [0u8; 4096];
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => return false,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return e.kind() == io::ErrorKind::WouldBlock,
                }
            }
        }
    }
}

/// The answer to `request` once it is whole (or too long: `overflow`, or
/// [`MAX_REQUEST_BYTES`] without the end of its headers); `None` while
/// more is to come.
fn answer(request: &[u8], overflow: bool, metrics: &Mutex<Metrics>) -> Option<Vec<u8>> {
    let end = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| request.windows(2).position(|w| w == b"\n\n"));
    if end.is_none() {
        if !overflow && request.len() < MAX_REQUEST_BYTES {
            return None;
        }
        return Some(if request.contains(&b'\n') {
            response(
                "431 Request Header Fields Too Large",
                "text/plain; charset=utf-8",
                b"request headers too large\n",
                &[],
            )
        } else {
            response(
                "414 URI Too Long",
                "text/plain; charset=utf-8",
                b"request line too long\n",
                &[],
            )
        });
    }
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Some(bad_request());
    };
    if !version.starts_with("HTTP/1.") {
        return Some(bad_request());
    }
    if method != "GET" {
        return Some(response(
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            b"only GET\n",
            &["Allow: GET"],
        ));
    }
    let path = target.split('?').next().unwrap_or_default();
    Some(match path {
        "/metrics" => {
            let text = metrics
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .encode();
            match text {
                Ok(text) => response("200 OK", CONTENT_TYPE, text.as_bytes(), &[]),
                Err(_) => response(
                    "500 Internal Server Error",
                    "text/plain; charset=utf-8",
                    b"the metrics could not be encoded\n",
                    &[],
                ),
            }
        }
        "/" => response(
            "200 OK",
            "text/html; charset=utf-8",
            b"<!DOCTYPE html>\n<html><head><title>heartbeat fleet monitor</title></head>\
              <body><h1>heartbeat fleet monitor</h1>\
              <p><a href=\"/metrics\">/metrics</a></p></body></html>\n",
            &[],
        ),
        _ => response(
            "404 Not Found",
            "text/plain; charset=utf-8",
            b"not found: try /metrics\n",
            &[],
        ),
    })
}

fn bad_request() -> Vec<u8> {
    response(
        "400 Bad Request",
        "text/plain; charset=utf-8",
        b"bad request\n",
        &[],
    )
}

/// A whole HTTP answer that closes its connection.
fn response(status: &str, content_type: &str, body: &[u8], headers: &[&str]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        body.len()
    );
    for header in headers {
        out.push_str(header);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}
