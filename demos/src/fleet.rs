//! The lesson's scale: "100 台机器, 每台 100 个进程" — how to know that each
//! still works. One collector process per (simulated) machine hears that
//! machine's reporters over loopback UDP and writes the whole machine to a
//! shared store in one statement per interval; a fleet monitor (this
//! process) reads the store. Two reporters and then one whole machine are
//! killed; the monitor must name exactly those, within two intervals, and
//! raise no other alarm.
//!
//! Each machine is a real process (its collector); its reporters are
//! lightweight: one thread of that process sends each reporter's beats at
//! its own random phase, exactly the datagrams a `heartbeat::Reporter`
//! daemon sends. Killing a reporter stops its beats (as the death of its
//! process would); killing the machine is a SIGKILL of its process.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use heartbeat::fleet::{Collector, FleetAlert, FleetAlertKind, FleetMonitor, SqliteStore, Store};
use heartbeat::{Beat, Key};
use shm::{SharedSlice, ShmSafe};

use crate::context::{Context, DemoError, Summary};

/// Where the fleet's store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StoreChoice {
    /// A SQLite file in a temporary directory (the embedded default).
    Sqlite,
    /// A PostgreSQL server: `--url`, or the environment's
    /// `PROCSYNC_FLEET_URL`; without either, SQLite.
    Postgres,
}

/// Arguments of `demos fleet`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Simulated machines, each a collector process.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(2..=1000))]
    hosts: u32,
    /// Reporters per machine.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(2..=10_000))]
    per_host: u32,
    /// Where the collectors write.
    #[arg(long, value_enum, default_value_t = StoreChoice::Sqlite)]
    store: StoreChoice,
    /// The PostgreSQL connection URL (`postgresql://user@host:port/db`;
    /// the password from the URL, PGPASSWORD or the passfile).
    #[arg(long)]
    url: Option<String>,
    /// Seconds the whole fleet runs before the kills, measured: the store's
    /// writes and rows per second and the CPU per 1,000 beats are taken
    /// over it [default: three intervals].
    #[arg(long, value_name = "SECONDS", value_parser = parse_watch)]
    watch: Option<f64>,
}

fn parse_watch(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok(s),
        _ => Err(format!("give between 0 and 86400 seconds, not {text}")),
    }
}

impl Default for Args {
    fn default() -> Args {
        Args {
            hosts: 100,
            per_host: 100,
            store: StoreChoice::Sqlite,
            url: None,
            watch: None,
        }
    }
}

impl Args {
    /// What `demos all` runs: 20 machines x 50 reporters, so that the
    /// whole lesson stays within a minute on two cores (the full 100 x 100
    /// is `demos fleet`'s default).
    pub(crate) fn for_all() -> Args {
        Args {
            hosts: 20,
            per_host: 50,
            ..Args::default()
        }
    }
}

/// The lesson's interval is a minute; the fleet's is a second at --speed 1,
/// and never shorter than two cores can carry: at most 10,000 beats a
/// second in all (the collectors parse each one), and 200 ms.
fn interval(ctx: &Context, reporters: usize) -> Duration {
    let carried = Duration::from_secs_f64(reporters as f64 / 10_000.0);
    ctx.scaled(Duration::from_secs(1))
        .max(carried)
        .max(Duration::from_millis(200))
}

/// The store the collectors and the monitor open, each their own.
#[derive(Clone)]
enum StoreAt {
    Sqlite(PathBuf),
    Postgres(String),
}

impl StoreAt {
    fn open(&self) -> Result<Box<dyn Store>, DemoError> {
        Ok(match self {
            StoreAt::Sqlite(path) => Box::new(SqliteStore::open(path)?),
            StoreAt::Postgres(url) => Box::new(heartbeat::fleet::PgStore::open(url)?),
        })
    }
}

/// Removes the demo's temporary directory, whatever happens.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn run(ctx: &Context, args: &Args) -> Result<Summary, DemoError> {
    let (hosts, per_host) = (args.hosts as usize, args.per_host as usize);
    let interval = interval(ctx, hosts * per_host);
    let run_tag = format!("{:04x}", seed() & 0xffff);
    let dir = TempDir(
        std::env::temp_dir().join(format!("procsync-fleet-{}-{run_tag}", std::process::id())),
    );
    let url = args
        .url
        .clone()
        .or_else(|| std::env::var("PROCSYNC_FLEET_URL").ok());
    let store = match (args.store, url) {
        (StoreChoice::Postgres, Some(url)) => StoreAt::Postgres(url),
        (choice, _) => {
            if choice == StoreChoice::Postgres {
                ctx.say(
                    "# 没有 PostgreSQL 地址 (--url 或 PROCSYNC_FLEET_URL): 改用 SQLite",
                    "no PostgreSQL URL (--url or PROCSYNC_FLEET_URL): using SQLite, the embedded default",
                );
            }
            std::fs::create_dir_all(&dir.0)?;
            StoreAt::Sqlite(dir.0.join("fleet.db"))
        }
    };
    let store_name = match store {
        StoreAt::Sqlite(_) => "sqlite",
        StoreAt::Postgres(_) => "postgres",
    };
    ctx.say(
        format!(
            "# 报活: {hosts} 台机器 x {per_host} 个进程, 每台一个收集进程, 每 {} ms 一条语句写入 {store_name}",
            interval.as_millis()
        ),
        format!(
            "Heartbeats at the lesson's scale: {hosts} machines x {per_host} processes; one collector per machine writes it to {store_name} in one statement every {} ms.",
            interval.as_millis()
        ),
    );
    // Every beat is signed: a forged one would hide a dead process.
    std::fs::create_dir_all(&dir.0)?;
    let key_file = dir.0.join("fleet.key");
    Key::generate_file(&key_file)?;
    let killed = SharedSlice::from_fn(hosts * per_host, |_| AtomicU32::new(0))?;
    let stats = SharedSlice::from_fn(hosts, |_| MachineStats::new())?;
    let plan = Plan {
        stats: &stats,
        per_host,
        interval,
        store: store.clone(),
        key_file,
        killed: &killed,
    };
    let host_name = |h: usize| format!("fleet-{run_tag}-{h:03}");
    let mut machines = Vec::with_capacity(hosts);
    for h in 0..hosts {
        let (plan, name) = (&plan, host_name(h));
        let child = daemon::Process::new(move || {
            if let Err(e) = machine(&name, h, plan) {
                eprintln!("{name}: {e}");
            }
        })
        .daemon(true)
        .start()?;
        machines.push(child);
    }

    let mut monitor = FleetMonitor::new(store.open()?);
    let mut alerts: Vec<(Instant, FleetAlert)> = Vec::new();
    let watch = |monitor: &mut FleetMonitor,
                 alerts: &mut Vec<(Instant, FleetAlert)>,
                 until: Instant| {
        while Instant::now() < until {
            for alert in monitor.check() {
                if alert.host.is_empty() || alert.host.starts_with(&format!("fleet-{run_tag}-")) {
                    crate::context::print_line(&alert);
                    alerts.push((Instant::now(), alert));
                }
            }
            std::thread::sleep(interval / 10);
        }
    };
    // Every machine up, every reporter heard.
    let started = Instant::now();
    let all = (hosts * per_host) as u64;
    loop {
        watch(&mut monitor, &mut alerts, Instant::now() + interval / 2);
        let (alive, _, _) = monitor.status().reporters;
        let ours = monitor
            .status()
            .hosts
            .iter()
            .filter(|(h, _)| h.host.contains(&run_tag))
            .count();
        if alive >= all && ours == hosts {
            break;
        }
        if started.elapsed() > interval * 60 + Duration::from_secs(30) {
            return Err(
                format!("the fleet never came up: {alive} of {all} reporters alive").into(),
            );
        }
    }
    ctx.say(
        format!(
            "# {all} 个进程都在报活 ({:.1} 秒)",
            started.elapsed().as_secs_f64()
        ),
        format!(
            "all {all} reporters alive after {:.1} s",
            started.elapsed().as_secs_f64()
        ),
    );
    let before = totals(&stats, &monitor);
    let watched = args.watch.map_or(interval * 3, Duration::from_secs_f64);
    watch(&mut monitor, &mut alerts, Instant::now() + watched);
    let after = totals(&stats, &monitor);

    // Two reporters die, then a whole machine.
    let victims = [(0, 7 % per_host), (1, 42 % per_host)];
    let doomed_host = hosts - 1;
    let mut kills = Vec::new();
    for (h, r) in victims {
        killed[h * per_host + r].store(1, Ordering::Release);
        kills.push((Instant::now(), host_name(h), Some(format!("r{r:04}"))));
        ctx.say(
            format!("# kill: 机器 {} 上的进程 r{r:04}", host_name(h)),
            format!("killing reporter r{r:04} on {}", host_name(h)),
        );
    }
    watch(&mut monitor, &mut alerts, Instant::now() + interval / 3);
    machines[doomed_host].kill()?;
    kills.push((Instant::now(), host_name(doomed_host), None));
    ctx.say(
        format!("# kill -9: 整台机器 {}", host_name(doomed_host)),
        format!(
            "SIGKILL to the whole machine {} (its collector)",
            host_name(doomed_host)
        ),
    );
    let detected = |alerts: &[(Instant, FleetAlert)]| {
        kills
            .iter()
            .map(|(at, host, id)| {
                alerts
                    .iter()
                    .find(|(_, a)| {
                        &a.host == host
                            && match id {
                                Some(id) => {
                                    a.kind == FleetAlertKind::ReporterSilent
                                        && a.id.as_ref() == Some(id)
                                }
                                None => a.kind == FleetAlertKind::HostSilent,
                            }
                    })
                    .map(|(seen, _)| seen.saturating_duration_since(*at))
            })
            .collect::<Vec<_>>()
    };
    let limit = Instant::now() + interval * 10;
    while detected(&alerts).iter().any(Option::is_none) && Instant::now() < limit {
        watch(&mut monitor, &mut alerts, Instant::now() + interval / 10);
    }
    // And then nothing else for a while: no false alarm.
    watch(&mut monitor, &mut alerts, Instant::now() + interval * 3);
    for machine in &machines {
        let _ = machine.kill();
    }
    for machine in machines {
        let _ = machine.join();
    }

    let times = detected(&alerts);
    let silent_detected = times[..2].iter().flatten().count();
    let host_silent_detected = times[2..].iter().flatten().count();
    let expected = silent_detected + host_silent_detected;
    let false_alarms = alerts.len().saturating_sub(expected);
    let detect_ms = times.iter().flatten().max().map_or(0, |d| d.as_millis());
    let status = monitor.status();
    ctx.say(
        format!(
            "# 发现: {silent_detected} 个进程无声, {host_silent_detected} 台机器无声, 误报 {false_alarms}, 最慢 {detect_ms} ms (间隔 {} ms)",
            interval.as_millis()
        ),
        format!(
            "found: {silent_detected} silent reporters, {host_silent_detected} silent machine, {false_alarms} false alarms, slowest after {detect_ms} ms (interval {} ms); the machine's {} reporters are unknown, not {} alarms",
            interval.as_millis(),
            status.unknown,
            status.unknown
        ),
    );
    let seconds = after
        .at
        .zip(before.at)
        .map_or(1.0, |(a, b)| (a - b).as_secs_f64().max(1e-3));
    let per_second = |n: u64| (n as f64 / seconds).round() as u64;
    let thousands_of_beats = ((after.beats - before.beats) as f64 / 1000.0).max(1e-3);
    let per_1000_beats_us = |ns: u64| (ns as f64 / 1000.0 / thousands_of_beats).round() as u64;
    let summary = Summary::default()
        .with("reporters", all)
        .with("hosts", hosts)
        .with("store", store_name)
        .with("silent_detected", silent_detected)
        .with("host_silent_detected", host_silent_detected)
        .with("false_alarms", false_alarms)
        .with("detect_ms", detect_ms)
        .with("interval_ms", interval.as_millis())
        .with("watched_s", seconds.round() as u64)
        .with(
            "store_writes_per_s",
            per_second(after.writes - before.writes),
        )
        .with("store_rows_per_s", per_second(after.rows - before.rows))
        .with(
            "monitor_reads_per_s",
            per_second(after.monitor_reads - before.monitor_reads),
        )
        .with("beats_per_s", per_second(after.beats - before.beats))
        .with(
            "machine_cpu_us_per_1000_beats",
            per_1000_beats_us(after.cpu_ns - before.cpu_ns),
        )
        .with(
            "monitor_cpu_us_per_1000_beats",
            per_1000_beats_us(after.monitor_cpu_ns - before.monitor_cpu_ns),
        );
    summary.print();
    Ok(summary)
}

/// A number that differs between runs and processes (names and phases
/// need no cryptography).
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(shm::pid::current().get()) << 40)
}

/// What a machine tells the demo (shared memory, one per machine).
#[derive(ShmSafe)]
#[repr(C)]
struct MachineStats {
    /// Store writes and reporter rows written by its collector.
    writes: AtomicU64,
    rows: AtomicU64,
    /// Beats its collector received.
    beats: AtomicU64,
    /// CPU time of the machine's process (collector and reporters).
    cpu_ns: AtomicU64,
}

impl MachineStats {
    fn new() -> MachineStats {
        MachineStats {
            writes: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            beats: AtomicU64::new(0),
            cpu_ns: AtomicU64::new(0),
        }
    }
}

/// The whole fleet's counters at one moment.
#[derive(Clone, Copy, Default)]
struct Totals {
    writes: u64,
    rows: u64,
    beats: u64,
    cpu_ns: u64,
    at: Option<Instant>,
    monitor_cpu_ns: u64,
    monitor_reads: u64,
}

fn totals(stats: &SharedSlice<MachineStats>, monitor: &FleetMonitor) -> Totals {
    let sum = |f: fn(&MachineStats) -> &AtomicU64| {
        stats.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
    };
    Totals {
        writes: sum(|s| &s.writes),
        rows: sum(|s| &s.rows),
        beats: sum(|s| &s.beats),
        cpu_ns: sum(|s| &s.cpu_ns),
        at: Some(Instant::now()),
        monitor_cpu_ns: crate::sys::process_cpu_ns(),
        monitor_reads: monitor.status().reads,
    }
}

/// What every machine of the run shares (made before the fork).
struct Plan<'a> {
    per_host: usize,
    interval: Duration,
    store: StoreAt,
    key_file: PathBuf,
    /// One word per reporter: set, it stops beating (its process "died").
    killed: &'a SharedSlice<AtomicU32>,
    stats: &'a SharedSlice<MachineStats>,
}

/// One machine: its collector (this process's main thread) and its
/// reporters (one thread sending each reporter's beats at its phase).
fn machine(name: &str, index: usize, plan: &Plan<'_>) -> Result<(), DemoError> {
    let key = Key::from_file(&plan.key_file)?;
    let mut collector = Collector::bind("127.0.0.1:0", plan.store.open()?)?
        .host(name)
        .interval(plan.interval)
        .key(key.clone());
    let addr = collector.local_addr()?;
    let killed: Vec<&AtomicU32> = plan.killed[index * plan.per_host..(index + 1) * plan.per_host]
        .iter()
        .collect();
    std::thread::scope(|scope| -> Result<(), heartbeat::HeartbeatError> {
        scope.spawn(|| reporters(name, plan.per_host, plan.interval, addr, &key, &killed));
        // Until the demo kills this machine (or ends: it is a daemon).
        let stats = &plan.stats[index];
        loop {
            collector.run_for(plan.interval)?;
            let status = collector.status();
            stats.writes.store(status.writes, Ordering::Relaxed);
            stats.rows.store(status.rows_written, Ordering::Relaxed);
            stats.beats.store(status.beats_received, Ordering::Relaxed);
            stats
                .cpu_ns
                .store(crate::sys::process_cpu_ns(), Ordering::Relaxed);
        }
    })?;
    Ok(())
}

/// Sends the beats of `per_host` reporters, each at its own phase, until
/// the process ends; a reporter whose `killed` word is set stops.
fn reporters(
    host: &str,
    per_host: usize,
    interval: Duration,
    to: std::net::SocketAddr,
    key: &Key,
    killed: &[&AtomicU32],
) {
    let Ok(socket) = std::net::UdpSocket::bind("127.0.0.1:0") else {
        return;
    };
    let pid = shm::pid::current();
    let mut rng = seed() | 1;
    let mut next_random = || {
        // xorshift: phases and instances need no cryptography.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut schedule: Vec<(Duration, usize, Beat)> = (0..per_host)
        .map(|r| {
            let phase = Duration::from_nanos(next_random() % interval.as_nanos().max(1) as u64);
            let beat = Beat {
                id: format!("r{r:04}"),
                host: host.to_owned(),
                pid,
                seq: 0,
                progress: 0,
                sent_at_ms: 0,
                interval_ms: interval.as_millis() as u64,
                instance: next_random(),
                mac: None,
            };
            (phase, r, beat)
        })
        .collect();
    schedule.sort_by_key(|(phase, _, _)| *phase);
    let start = Instant::now();
    for round in 0u32.. {
        let round_start = start + interval * round;
        for (phase, r, beat) in &mut schedule {
            if killed[*r].load(Ordering::Acquire) != 0 {
                continue;
            }
            let due = round_start + *phase;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            beat.seq += 1;
            beat.progress += 1;
            beat.sent_at_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            key.sign(beat);
            if let Ok(json) = serde_json::to_vec(beat) {
                let _ = socket.send_to(&json, to);
            }
        }
    }
}
