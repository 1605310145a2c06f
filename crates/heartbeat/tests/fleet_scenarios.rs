//! Fleet scenarios, written once and run on each store.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use heartbeat::fleet::{Collector, FleetAlert, FleetAlertKind, FleetMonitor, Store};
use heartbeat::Reporter;
use shm::Shared;
use testkit::GENEROUS;

/// Where the fleet writes.
#[derive(Clone)]
pub(crate) enum StoreKind {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    #[cfg(feature = "postgres")]
    Postgres(String),
}

impl StoreKind {
    pub(crate) fn open(&self) -> Box<dyn Store> {
        match self {
            StoreKind::Sqlite(path) => Box::new(heartbeat::fleet::SqliteStore::open(path).unwrap()),
            #[cfg(feature = "postgres")]
            StoreKind::Postgres(url) => Box::new(heartbeat::fleet::PgStore::lazy(url)),
        }
    }
}

/// The collectors' and reporters' interval in these scenarios.
pub(crate) const INTERVAL: Duration = Duration::from_millis(250);

/// A fleet under test: collectors and reporters as processes, a monitor
/// here.
pub(crate) struct Fleet {
    pub(crate) store: StoreKind,
    pub(crate) monitor: FleetMonitor,
    pub(crate) alerts: Vec<(Instant, FleetAlert)>,
}

/// A collector process and the address it listens on.
pub(crate) struct CollectorProcess {
    pub(crate) child: daemon::Child<()>,
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) host: String,
}

impl Fleet {
    pub(crate) fn new(store: StoreKind) -> Fleet {
        let monitor = FleetMonitor::new(store.open());
        Fleet {
            store,
            monitor,
            alerts: Vec::new(),
        }
    }

    /// Starts a collector process for `host`.
    pub(crate) fn collector(&self, host: &str) -> CollectorProcess {
        self.collector_keyed(host, None)
    }

    /// Starts a collector process for `host`, taking only beats signed
    /// with the key in `key_file` if given.
    pub(crate) fn collector_keyed(
        &self,
        host: &str,
        key_file: Option<&std::path::Path>,
    ) -> CollectorProcess {
        let key_file = key_file.map(|p| p.to_path_buf());
        let port = Shared::new(AtomicU32::new(0)).unwrap();
        let store = self.store.clone();
        let name = host.to_owned();
        let host = host.to_owned();
        let child = daemon::Process::new({
            let port = &port;
            move || {
                let mut collector = Collector::bind("127.0.0.1:0", store.open())
                    .unwrap()
                    .host(host)
                    .interval(INTERVAL);
                if let Some(file) = key_file {
                    collector = collector.key(heartbeat::Key::from_file(file).unwrap());
                }
                port.store(
                    u32::from(collector.local_addr().unwrap().port()),
                    Ordering::Release,
                );
                collector.run_for(GENEROUS * 6).unwrap();
            }
        })
        .start()
        .unwrap();
        testkit::wait_until("the collector listens", || {
            port.load(Ordering::Acquire) != 0
        });
        let addr = format!("127.0.0.1:{}", port.load(Ordering::Acquire))
            .parse()
            .unwrap();
        CollectorProcess {
            child,
            addr,
            host: name,
        }
    }

    /// Starts a reporter process `id` (its own main and reporting daemon)
    /// beating to `collector` as `host`; `progress` says whether its main
    /// makes progress.
    pub(crate) fn reporter(
        &self,
        collector: &CollectorProcess,
        id: &str,
        progress: bool,
    ) -> daemon::Child<()> {
        self.reporter_on(collector, &collector.host, id, progress)
    }

    /// As [`reporter`](Fleet::reporter), naming `host` in its beats.
    pub(crate) fn reporter_on(
        &self,
        collector: &CollectorProcess,
        host: &str,
        id: &str,
        progress: bool,
    ) -> daemon::Child<()> {
        self.reporter_keyed(collector, host, id, progress, None)
    }

    /// As [`reporter_on`](Fleet::reporter_on), signing its beats with the
    /// key in `key_file` if given.
    pub(crate) fn reporter_keyed(
        &self,
        collector: &CollectorProcess,
        host: &str,
        id: &str,
        progress: bool,
        key_file: Option<&std::path::Path>,
    ) -> daemon::Child<()> {
        let addr = collector.addr;
        let (id, host) = (id.to_owned(), host.to_owned());
        let key_file = key_file.map(|p| p.to_path_buf());
        daemon::Process::new(move || {
            let mut reporter = Reporter::new(id).host(host).interval(INTERVAL).udp(addr);
            if let Some(file) = key_file {
                reporter = reporter.key(heartbeat::Key::from_file(file).unwrap());
            }
            let beat = reporter.start().unwrap();
            let limit = Instant::now() + GENEROUS * 6;
            while Instant::now() < limit {
                if progress {
                    beat.progress(1);
                }
                std::thread::sleep(INTERVAL / 4); // the main's work
            }
        })
        .start()
        .unwrap()
    }

    /// Checks the store every tenth of an interval until `until` holds of
    /// the alerts so far (or GENEROUS passes: a failure).
    pub(crate) fn watch_until(
        &mut self,
        what: &str,
        mut until: impl FnMut(&[(Instant, FleetAlert)]) -> bool,
    ) {
        let limit = Instant::now() + GENEROUS;
        while !until(&self.alerts) {
            assert!(
                Instant::now() < limit,
                "never happened: {what}; alerts: {:#?}",
                self.alerts
            );
            for alert in self.monitor.check() {
                self.alerts.push((Instant::now(), alert));
            }
            std::thread::sleep(INTERVAL / 10); // the monitor's poll period
        }
    }

    /// Watches for `duration` more, recording alerts.
    pub(crate) fn watch_for(&mut self, duration: Duration) {
        let end = Instant::now() + duration;
        self.watch_until("the time passes", |_| Instant::now() >= end);
    }

    /// Alerts of `kind` so far.
    pub(crate) fn alerts_of(&self, kind: FleetAlertKind) -> Vec<&(Instant, FleetAlert)> {
        self.alerts.iter().filter(|(_, a)| a.kind == kind).collect()
    }

    /// The one alert raised so far, which must be of `kind` and within two
    /// intervals of `killed`.
    pub(crate) fn the_only_alert(&self, kind: FleetAlertKind, killed: Instant) -> FleetAlert {
        assert_eq!(self.alerts.len(), 1, "one alert: {:#?}", self.alerts);
        let (seen, alert) = &self.alerts[0];
        assert_eq!(alert.kind, kind, "{alert:?}");
        let detect = *seen - killed;
        assert!(
            detect <= INTERVAL * 2,
            "alert {detect:?} after the kill (interval {INTERVAL:?})"
        );
        alert.clone()
    }

    /// Waits until the monitor sees `host` with `n` reporters alive.
    pub(crate) fn wait_alive(&mut self, host: &str, n: u64) {
        let host = host.to_owned();
        let limit = Instant::now() + GENEROUS;
        loop {
            for alert in self.monitor.check() {
                self.alerts.push((Instant::now(), alert));
            }
            let status = self.monitor.status();
            if status
                .hosts
                .iter()
                .any(|(h, _)| h.host == host && h.counts.0 == n)
            {
                return;
            }
            assert!(
                Instant::now() < limit,
                "{host} never had {n} reporters alive: {status:#?}"
            );
            std::thread::sleep(INTERVAL / 10);
        }
    }
}

fn kill(child: &daemon::Child<()>) -> Instant {
    child.kill().unwrap();
    Instant::now()
}

/// The promise: a SIGKILLed reporter is one `reporter_silent` alert within
/// two intervals of the kill, and nothing else is alerted.
pub(crate) fn killed_reporter(mut fleet: Fleet) {
    let collector = fleet.collector("host-a");
    let reporters: Vec<_> = (0..3)
        .map(|i| fleet.reporter(&collector, &format!("r{i}"), true))
        .collect();
    fleet.wait_alive("host-a", 3);
    fleet.watch_for(INTERVAL * 2);
    let killed = kill(&reporters[1]);
    fleet.watch_until("the killed reporter's alert", |alerts| {
        alerts
            .iter()
            .any(|(_, a)| a.kind == FleetAlertKind::ReporterSilent)
    });
    fleet.watch_for(INTERVAL * 3);
    let alert = fleet.the_only_alert(FleetAlertKind::ReporterSilent, killed);
    assert_eq!(alert.id.as_deref(), Some("r1"));
    for r in &reporters {
        let _ = r.kill();
    }
    let _ = collector.child.kill();
}

/// A SIGKILLed collector: its host is one `host_silent` alert within two
/// intervals, and its reporters (alive, but unheard) no alert each.
pub(crate) fn killed_collector(mut fleet: Fleet) {
    let a = fleet.collector("host-a");
    let b = fleet.collector("host-b");
    let reporters: Vec<_> = (0..3)
        .map(|i| fleet.reporter(if i % 2 == 0 { &a } else { &b }, &format!("r{i}"), true))
        .collect();
    fleet.wait_alive("host-a", 2);
    fleet.wait_alive("host-b", 1);
    fleet.watch_for(INTERVAL * 2);
    let killed = kill(&a.child);
    fleet.watch_until("the host's alert", |alerts| {
        alerts
            .iter()
            .any(|(_, a)| a.kind == FleetAlertKind::HostSilent)
    });
    fleet.watch_for(INTERVAL * 4);
    let alert = fleet.the_only_alert(FleetAlertKind::HostSilent, killed);
    assert_eq!(alert.host, "host-a");
    assert_eq!(fleet.monitor.status().unknown, 2);
    for r in &reporters {
        let _ = r.kill();
    }
    let _ = b.child.kill();
}

/// A reporter whose beats come but whose progress stops is STUCK.
pub(crate) fn stuck_reporter(mut fleet: Fleet) {
    let collector = fleet.collector("host-a");
    let working = fleet.reporter(&collector, "working", true);
    let stuck = fleet.reporter(&collector, "stuck", false);
    fleet.watch_until("the stuck reporter's alert", |alerts| {
        alerts
            .iter()
            .any(|(_, a)| a.kind == FleetAlertKind::ReporterStuck)
    });
    let stuck_alerts = fleet.alerts_of(FleetAlertKind::ReporterStuck);
    assert_eq!(stuck_alerts.len(), 1);
    assert_eq!(stuck_alerts[0].1.id.as_deref(), Some("stuck"));
    assert_eq!(
        fleet.monitor.reporter_health("host-a", "working"),
        Some(heartbeat::Health::Alive)
    );
    for r in [working, stuck, collector.child] {
        let _ = r.kill();
    }
}

/// Beats naming another host than the collector's are not written.
pub(crate) fn foreign_host(mut fleet: Fleet) {
    let collector = fleet.collector("host-a");
    let foreign = fleet.reporter_on(&collector, "host-b", "elsewhere", true);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let beat = |seq: u64| {
        format!(
            r#"{{"id":"local","host":"host-a","pid":{},"seq":{seq},"progress":{seq},"sent_at_ms":1,"interval_ms":{},"instance":5}}"#,
            std::process::id(),
            INTERVAL.as_millis()
        )
    };
    for seq in 0..4 {
        socket
            .send_to(beat(seq).as_bytes(), collector.addr)
            .unwrap();
        std::thread::sleep(INTERVAL / 2);
    }
    fleet.wait_alive("host-a", 1);
    let (_, all) = fleet
        .monitor
        .store()
        .read_changes(Some(heartbeat::fleet::StoreTime(0)))
        .unwrap();
    let ids: Vec<_> = all
        .iter()
        .map(|c| (c.host.as_str(), c.reporter.id.as_str()))
        .collect();
    assert_eq!(ids, [("host-a", "local")]);
    // The foreign beats were received, and rejected.
    fleet.watch_until("the foreign beats counted", |_| true);
    let hosts = fleet.monitor.store().read_hosts().unwrap();
    assert!(hosts[0].beats_rejected >= 1, "{hosts:?}");
    let _ = foreign.kill();
    let _ = collector.child.kill();
}

/// A collector given a key keeps signed reporters and drops forged beats
/// (unsigned, or signed with another key), counting them.
pub(crate) fn forged_beats(mut fleet: Fleet, dir: &std::path::Path) {
    let key = dir.join("fleet.key");
    heartbeat::Key::generate_file(&key).unwrap();
    let other = dir.join("other.key");
    heartbeat::Key::generate_file(&other).unwrap();
    let collector = fleet.collector_keyed("host-a", Some(&key));
    let signed = fleet.reporter_keyed(&collector, "host-a", "signed", true, Some(&key));
    let unsigned = fleet.reporter_keyed(&collector, "host-a", "unsigned", true, None);
    let forged = fleet.reporter_keyed(&collector, "host-a", "forged", true, Some(&other));
    fleet.wait_alive("host-a", 1);
    fleet.watch_for(INTERVAL * 3);
    let (_, all) = fleet
        .monitor
        .store()
        .read_changes(Some(heartbeat::fleet::StoreTime(0)))
        .unwrap();
    let ids: Vec<_> = all.iter().map(|c| c.reporter.id.as_str()).collect();
    assert_eq!(ids, ["signed"]);
    let hosts = fleet.monitor.store().read_hosts().unwrap();
    assert!(hosts[0].beats_rejected >= 4, "{hosts:?}");
    assert!(fleet.alerts.is_empty(), "{:#?}", fleet.alerts);
    for r in [signed, unsigned, forged, collector.child] {
        let _ = r.kill();
    }
}
