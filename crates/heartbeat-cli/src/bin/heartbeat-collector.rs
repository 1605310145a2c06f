//! `heartbeat-collector`: one per machine. Receives the machine's
//! reporters' UDP beats, judges them, and writes the machine to the fleet's
//! store once per interval (see `heartbeat::fleet`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{CommandFactory, FromArgMatches, Parser};
use heartbeat::fleet::Collector;
use heartbeat::Key;
use heartbeat_cli::{parse_seconds, StoreArgs};

/// One machine's heartbeat collector: receives the beats of this machine's
/// reporters (`heartbeat::Reporter` daemons) over UDP, judges each ALIVE,
/// STUCK or SILENT, and writes the whole machine to the fleet's store in
/// one statement per interval (that write is also the machine's own
/// heartbeat: a fleet monitor reports the machine silent when it stops).
///
/// Beats must be signed with the key in --key-file (made once with
/// --make-key-file, copied to every machine, readable by its owner only);
/// unsigned, forged, replayed and stale beats are dropped and counted.
/// Exit codes: 0 after --for, 1 on a bad argument or key, 2 when the
/// socket fails.
#[derive(Debug, Parser)]
#[command(name = "heartbeat-collector", version)]
struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// Where the reporters send their beats: keep it on loopback, the
    /// collector serves its own machine.
    #[arg(long, default_value = "127.0.0.1:9999")]
    listen: String,
    /// The machine's name in the store; beats naming another are dropped
    /// [default: the host name].
    #[arg(long)]
    host: Option<String>,
    /// Seconds between writes: the monitor calls the machine silent after
    /// 1.5 of them without one.
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    interval: Duration,
    /// The file holding the beats' HMAC key (mode 0600, owned by this
    /// user). Never given on the command line itself.
    #[arg(long, value_name = "PATH", required_unless_present_any = ["no_key", "make_key_file"])]
    key_file: Option<PathBuf>,
    /// Take unsigned beats: anyone who can reach --listen can then forge a
    /// beat that hides a dead process.
    #[arg(long, conflicts_with = "key_file")]
    no_key: bool,
    /// Make a new key file at PATH (mode 0600; never overwrites) and exit.
    #[arg(long, value_name = "PATH", exclusive = true)]
    make_key_file: Option<PathBuf>,
    /// Stop after this many seconds (for tests and trials) [default: never].
    #[arg(long = "for", value_parser = parse_seconds, value_name = "SECONDS")]
    run_for: Option<Duration>,
}

fn main() -> ExitCode {
    let matches = Args::command().get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(path) = &args.make_key_file {
        return match Key::generate_file(path) {
            Ok(_) => {
                println!(
                    "made key file {} (mode 0600): copy it to every machine",
                    path.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(1, e),
        };
    }
    args.store.require(Args::command(), &matches);
    let key = match args.key_file.as_deref().map(Key::from_file).transpose() {
        Ok(key) => key,
        Err(e) => return fail(1, e),
    };
    let store = match args.store.open() {
        Ok(store) => store,
        Err(e) => return fail(1, e),
    };
    let mut collector = match Collector::bind(args.listen.as_str(), store) {
        Ok(c) => c.interval(args.interval),
        Err(e) => return fail(2, e),
    };
    if let Some(host) = &args.host {
        collector = collector.host(host.clone());
    }
    if let Some(key) = key {
        collector = collector.key(key);
    }
    let addr = collector
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!(
        "heartbeat-collector: listening on {addr}, writing to the {} every {:.3} s",
        args.store.describe(),
        args.interval.as_secs_f64()
    );
    let end = args.run_for.map(|d| Instant::now() + d);
    let mut store_up = None;
    loop {
        let step = end.map_or(Duration::from_secs(1), |end| {
            end.saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1))
        });
        if let Err(e) = collector.run_for(step) {
            return fail(2, e);
        }
        // Say when the store goes away and comes back, once each.
        let status = collector.status();
        if status.writes + status.write_failures > 0 && store_up != Some(status.store_up) {
            match &status.last_error {
                Some(error) if !status.store_up => {
                    eprintln!("heartbeat-collector: writing the store failed: {error}")
                }
                _ => eprintln!("heartbeat-collector: writing the store works"),
            }
            store_up = Some(status.store_up);
        }
        if end.is_some_and(|end| Instant::now() >= end) {
            collector.flush(Duration::from_secs(5));
            let s = collector.status();
            let r = collector.monitor().rejections();
            println!(
                "summary: writes={} write_failures={} rows={} beats={} rejected={} unsigned={} bad_mac={} replayed={} stale={} malformed={} foreign_host={}",
                s.writes, s.write_failures, s.rows_written, s.beats_received, s.beats_rejected,
                r.unsigned, r.bad_mac, r.replayed, r.stale, r.malformed, r.foreign_host
            );
            return ExitCode::SUCCESS;
        }
    }
}

fn fail(code: u8, error: impl std::fmt::Display) -> ExitCode {
    eprintln!("heartbeat-collector: {error}");
    ExitCode::from(code)
}
