//! `heartbeat-monitor`: reads the fleet's store, prints alerts, records
//! them in the `alerts` table, and serves Prometheus `/metrics`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{CommandFactory, FromArgMatches, Parser};
use heartbeat::fleet::{FleetMonitor, MetricsServer};
use heartbeat_cli::{parse_seconds, StoreArgs};

/// The fleet's heartbeat monitor: reads the store that every machine's
/// heartbeat-collector writes, and reports a silent machine (its collector
/// stopped writing: one alert, not one per reporter), a silent reporter
/// (its process died) and a stuck one (beats come, progress does not move),
/// judged on the store's clock. Alerts are lines on stdout
/// (`ALERT host_silent host=web-7 ...`) and rows of the `alerts` table.
/// With --metrics it serves Prometheus /metrics (counts by health, per-host
/// gauges, beats, store latency) for Grafana and Alertmanager.
/// Exit codes: 0 after --for, 1 on a bad argument, 2 when the metrics
/// address cannot be bound.
#[derive(Debug, Parser)]
#[command(name = "heartbeat-monitor", version)]
struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// Serve Prometheus /metrics at this address, e.g. 127.0.0.1:9464; a
    /// port alone (9464) binds 127.0.0.1. There is no authentication: bind
    /// another address only behind a proxy that guards it.
    #[arg(long, value_name = "ADDR|PORT")]
    metrics: Option<String>,
    /// Seconds between reads of the store: a silence is seen at the first
    /// read after it began.
    #[arg(long, default_value = "0.1", value_parser = parse_seconds)]
    poll: Duration,
    /// A machine is silent after its collector's interval and this much
    /// more (a fraction of the interval).
    #[arg(long, default_value_t = heartbeat::fleet::DEFAULT_HOST_SLACK)]
    slack: f64,
    /// Stop after this many seconds (for tests and trials) [default: never].
    #[arg(long = "for", value_parser = parse_seconds, value_name = "SECONDS")]
    run_for: Option<Duration>,
}

fn main() -> ExitCode {
    let matches = Args::command().get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    args.store.require(Args::command(), &matches);
    if !(args.slack.is_finite() && args.slack > 0.0) {
        eprintln!(
            "heartbeat-monitor: --slack must be a positive number, not {}",
            args.slack
        );
        return ExitCode::from(1);
    }
    let store = match args.store.open() {
        Ok(store) => store,
        Err(e) => {
            eprintln!("heartbeat-monitor: {e}");
            return ExitCode::from(1);
        }
    };
    // A port alone is on loopback: nothing is exposed unless asked.
    let metrics_addr = args.metrics.as_deref().map(|a| match a.parse::<u16>() {
        Ok(port) => format!("127.0.0.1:{port}"),
        Err(_) => a.to_owned(),
    });
    let metrics = match metrics_addr.as_deref().map(MetricsServer::bind).transpose() {
        Ok(server) => server,
        Err(e) => {
            eprintln!("heartbeat-monitor: {e}");
            return ExitCode::from(2);
        }
    };
    let mut monitor = FleetMonitor::new(store).slack(args.slack);
    match metrics.as_ref().map(|m| m.local_addr()) {
        Some(addr) => println!(
            "heartbeat-monitor: reading the {}, metrics at http://{addr}/metrics",
            args.store.describe()
        ),
        _ => println!("heartbeat-monitor: reading the {}", args.store.describe()),
    }
    let end = args.run_for.map(|d| Instant::now() + d);
    loop {
        let started = Instant::now();
        for alert in monitor.check() {
            println!("{alert}");
        }
        if let Some(server) = &metrics {
            server.update(monitor.status());
        }
        if end.is_some_and(|end| Instant::now() >= end) {
            if !monitor.flush(Duration::from_secs(5)) {
                eprintln!(
                    "heartbeat-monitor: {} alerts could not be written to the store",
                    monitor.status().alerts_pending
                );
            }
            let s = monitor.status();
            let (alive, stuck, silent) = s.reporters;
            let hosts_silent = s
                .hosts
                .iter()
                .filter(|(_, h)| *h == heartbeat::fleet::HostHealth::Silent)
                .count();
            println!(
                "summary: hosts={} hosts_silent={hosts_silent} alive={alive} stuck={stuck} silent={silent} unknown={} store_up={} reads={} read_failures={}",
                s.hosts.len(),
                s.unknown,
                s.store_up,
                s.reads,
                s.read_failures
            );
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(args.poll.saturating_sub(started.elapsed()));
    }
}
