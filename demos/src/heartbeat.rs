//! Seed §2, 守护进程报活: a daemon reports that its main process is alive;
//! a monitor notices when it goes silent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ::heartbeat::{Health, Monitor, Reporter};
use daemon::Process;

use crate::context::{Context, DemoError, Summary};

/// Arguments of `demos heartbeat`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Seconds between beats at speed 1 (the seed: 60; here 1 by default;
    /// more than 0, at most a day).
    #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
    interval: f64,
    /// Beats the main process works through before it is killed.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1000))]
    beats: u64,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            interval: 1.0,
            beats: 4,
        }
    }
}

/// Arguments of `demos heartbeat-monitor`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct MonitorArgs {
    /// UDP address to receive beats on.
    #[arg(long, default_value = "127.0.0.1:9999")]
    listen: SocketAddr,
    /// Also read beats from this SQLite file (the reporters' "写数据库"),
    /// which must exist. Read errors (a lock, rows that are no beat) are
    /// printed, and the monitor goes on.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Stop after this many seconds (default: run until interrupted; at
    /// most a year).
    #[arg(long = "for", value_parser = parse_watch_time)]
    for_secs: Option<Duration>,
    /// Missed intervals before a reporter counts as SILENT.
    #[arg(long, default_value_t = 3)]
    silent_after: u32,
}

/// The longest `--interval`: a day, in seconds (the lesson's is 60). At
/// the slowest `--speed` it is still a `Duration`.
const MAX_INTERVAL_SECS: f64 = 86_400.0;
/// The longest `--for`: a year, in seconds.
const MAX_WATCH_SECS: f64 = 365.0 * 86_400.0;

/// `--interval`: a number of seconds, more than 0 and at most
/// [`MAX_INTERVAL_SECS`] (a larger finite number panicked as a `Duration`).
fn parse_interval(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds (try 1 or 0.5)"))?;
    if !(secs > 0.0 && secs <= MAX_INTERVAL_SECS) {
        return Err(format!(
            "the interval must be more than 0 and at most {MAX_INTERVAL_SECS} seconds, not {text}"
        ));
    }
    Ok(secs)
}

/// `--for`: a number of seconds, 0 to [`MAX_WATCH_SECS`] (`inf` or 1e300
/// panicked as a `Duration`).
fn parse_watch_time(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds (try 10 or 0.5)"))?;
    if !(0.0..=MAX_WATCH_SECS).contains(&secs) {
        return Err(format!(
            "the watch time must be 0 to {MAX_WATCH_SECS} seconds, not {text}"
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("--for {text}: {e}"))
}

pub(crate) fn run(ctx: &Context, args: &Args) -> Result<Summary, DemoError> {
    // `parse_interval` bounds it (but `Args::default` is not parsed).
    // (1e-300 is a zero `Duration` here, raised to the shortest below.)
    let interval = (args.interval > 0.0 && args.interval <= MAX_INTERVAL_SECS)
        .then(|| Duration::try_from_secs_f64(args.interval).ok())
        .flatten()
        .ok_or_else(|| {
            format!(
                "--interval must be more than 0 and at most {MAX_INTERVAL_SECS} seconds, not {}",
                args.interval
            )
        })?;
    // The interval the reporter really uses (it raises shorter ones), which
    // the waits below are counted in.
    let interval = ctx.scaled(interval).max(::heartbeat::MIN_INTERVAL);
    let mut monitor = Monitor::udp("127.0.0.1:0")?;
    let addr = monitor.local_addr()?;
    ctx.say(
        format!("# 守护进程如何向监测机制报活??? send: 监控在 {addr}"),
        format!("monitor listening on {addr}"),
    );
    // The main process: works (bumps its progress) while its daemon reports.
    let main = Process::new(|| -> Result<(), String> {
        let beat = Reporter::new("main-1")
            .interval(interval)
            .udp(addr)
            .start()
            .map_err(|e| e.to_string())?;
        // Works until killed below; the bound only matters if the demo
        // fails first, so that its exit (which joins this child) ends.
        let give_up = after_beats(interval, args.beats, 30);
        while give_up.is_none_or(|g| Instant::now() < g) {
            beat.progress(1);
            std::thread::sleep(interval / 10);
        }
        Ok(())
    })
    .name("main-1")
    .start()?;

    let limit = after_beats(interval, args.beats, 20);
    let mut last_seq = None;
    loop {
        monitor.poll(interval / 4)?;
        if let Some(r) = monitor.reporters().into_iter().find(|r| r.id == "main-1") {
            if last_seq != Some(r.seq) {
                last_seq = Some(r.seq);
                ctx.say(
                    format!(
                        "报活: {} 主进程 {} 还活着, seq={} progress={} [{}]",
                        r.host, r.pid, r.seq, r.progress, r.health
                    ),
                    format!(
                        "beat: main {} on {} alive, seq={} progress={} [{}]",
                        r.pid, r.host, r.seq, r.progress, r.health
                    ),
                );
            }
            if r.seq + 1 >= args.beats {
                break;
            }
        }
        if limit.is_some_and(|l| Instant::now() > l) {
            return Err("the reporter never sent enough beats".into());
        }
    }
    main.kill()?;
    let killed = Instant::now();
    ctx.say(
        "主进程被杀死 (SIGKILL)",
        "the main process is killed (SIGKILL)",
    );
    let silent_limit = killed.checked_add(interval.saturating_mul(20));
    while monitor.health("main-1") != Some(Health::Silent)
        && silent_limit.is_none_or(|l| Instant::now() < l)
    {
        monitor.poll(interval / 20)?;
    }
    let detected = monitor.health("main-1") == Some(Health::Silent);
    let detect_ms = killed.elapsed().as_millis();
    let _ = main.join();
    ctx.say(
        format!("监控: main-1 SILENT ({detect_ms} ms 没有报活)"),
        format!("monitor: main-1 is SILENT ({detect_ms} ms without a beat)"),
    );
    let summary = Summary::default()
        .with("beats", monitor.beats_received())
        .with("silent_detected", detected)
        .with("detect_ms", detect_ms);
    summary.print();
    Ok(summary)
}

pub(crate) fn run_monitor(ctx: &Context, args: &MonitorArgs) -> Result<Summary, DemoError> {
    // Reading a database that is not there would create an empty one and
    // watch nothing.
    if let Some(db) = &args.db {
        if !db.is_file() {
            return Err(format!("no such database: {}", db.display()).into());
        }
    }
    let mut monitor = Monitor::udp(args.listen)?.silent_after(args.silent_after);
    // A small buffer loses beats in bursts: say what the kernel gave.
    let buffer = monitor.receive_buffer()?;
    ctx.say(
        format!(
            "监控在 {} 接收报活 (UDP, 接收缓冲区 {buffer} 字节)",
            monitor.local_addr()?
        ),
        format!(
            "monitor receiving beats on {} (UDP, receive buffer {buffer} bytes)",
            monitor.local_addr()?
        ),
    );
    let started = Instant::now();
    // `None`: until interrupted (a year from now is within the clock).
    let until = args.for_secs.and_then(|d| started.checked_add(d));
    while until.is_none_or(|u| Instant::now() < u) {
        monitor.poll(Duration::from_secs(1))?;
        if let Some(db) = &args.db {
            // A lock or a broken file must not stop the watch (nor the UDP
            // side of it): say so, judge nothing new, and read again.
            let bad_before = monitor.bad_rows();
            if let Err(e) = monitor.read_database(db) {
                crate::context::print_line(format_args!("database error: {e}"));
            }
            let bad = monitor.bad_rows() - bad_before;
            if bad > 0 {
                crate::context::print_line(format_args!(
                    "database {}: {bad} rows that are no beat, skipped",
                    db.display()
                ));
            }
        }
        crate::context::print_line(format_args!(
            "{:<20} {:<12} {:>8} {:>8} {:>10} {:<7} {:>8}",
            "id", "host", "pid", "seq", "progress", "health", "silent"
        ));
        for r in monitor.reporters() {
            crate::context::print_line(format_args!(
                "{:<20} {:<12} {:>8} {:>8} {:>10} {:<7} {:>7.1}s",
                r.id,
                r.host,
                r.pid,
                r.seq,
                r.progress,
                r.health.to_string(),
                r.since_last_beat.as_secs_f64()
            ));
        }
        for alert in monitor.take_alerts() {
            crate::context::print_line(format_args!(
                "ALERT {}: {} -> {}",
                alert.id, alert.from, alert.to
            ));
        }
    }
    let (alive, stuck, silent) = monitor.counts();
    let summary = Summary::default()
        .with("reporters", alive + stuck + silent)
        .with("alive", alive)
        .with("stuck", stuck)
        .with("silent", silent)
        .with("beats", monitor.beats_received());
    summary.print();
    Ok(summary)
}

/// Now plus `beats + spare` intervals; `None` (no limit) past the end of
/// the clock.
fn after_beats(interval: Duration, beats: u64, spare: u32) -> Option<Instant> {
    let count = u32::try_from(beats)
        .unwrap_or(u32::MAX)
        .saturating_add(spare);
    Instant::now().checked_add(interval.saturating_mul(count))
}
