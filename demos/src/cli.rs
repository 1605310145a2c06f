//! The command line: parses the arguments and dispatches to the scenario
//! asked for.

use clap::{Parser, Subcommand};

use crate::context::{print_line, Context, DemoError, Lang, Summary};

/// Runs the scenarios of the classic lesson on Python processes
/// ("python进程数据隔离,守护进程,锁,信号量和事件") with procsync, between real
/// processes. Each scenario prints what happens, in the lesson's own words with
/// `--lang zh`, and ends with one line `summary: key=value ...` of measured
/// outcomes. Each scenario's `--help` names the lesson's program as a short
/// example of the crate it uses (`cargo run -p procsync-lock --example
/// tickets`, ...).
#[derive(Debug, Parser)]
#[command(name = "demos", version)]
pub(crate) struct Cli {
    /// Language of the messages: the lesson's own Chinese, or English.
    #[arg(long, value_enum, default_value_t = Lang::En, global = true)]
    lang: Lang,

    /// Time scale: 1 runs at the lesson's pace, 10 runs ten times faster
    /// [default: 1, or 5 for `all`].
    #[arg(long, global = true, allow_negative_numbers = true, value_parser = parse_speed)]
    speed: Option<f64>,

    #[command(subcommand)]
    scenario: Scenario,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub(crate) enum Scenario {
    /// §1 data isolation: a child's change to a plain global stays in the
    /// child; through shm::Shared the parent sees it.
    ///
    /// The lesson's program, short: crates/daemon/examples/isolation.rs
    /// (cargo run -p procsync-daemon --example isolation); the shared
    /// counter: crates/shm/examples/shared_counter.rs (cargo run -p
    /// procsync-shm --example shared_counter).
    Isolation,
    /// §2 守护进程: the daemon ends with the main code; its second line
    /// never prints.
    ///
    /// The lesson's daemon rule, short (its second program, fun and fun2):
    /// crates/daemon/examples/daemon_order.rs (cargo run -p procsync-daemon
    /// --example daemon_order).
    Daemon,
    /// §2, second example: fun2 (a daemon) prints "in fun2" twice, fun (not
    /// a daemon) still finishes, in the seed's order.
    ///
    /// The lesson's program, short: crates/daemon/examples/daemon_order.rs
    /// (cargo run -p procsync-daemon --example daemon_order).
    DaemonOrder,
    /// §1's question: a parent gets a child's result over a socket pair.
    ///
    /// The lesson's answer, short: crates/queue/examples/child_result.rs
    /// (cargo run -p procsync-queue --example child_result).
    Result,
    /// §2 报活: a daemon reports that its main process is alive; the main
    /// is killed and the monitor reports it SILENT.
    ///
    /// The lesson's 报活, short: crates/heartbeat/examples/heartbeat.rs
    /// (cargo run -p procsync-heartbeat --example heartbeat).
    Heartbeat(crate::heartbeat::Args),
    /// A heartbeat monitor printing a live table of reporters (UDP, and a
    /// SQLite file with --db).
    ///
    /// A reporter and a monitor, short: crates/heartbeat/examples/heartbeat.rs
    /// (cargo run -p procsync-heartbeat --example heartbeat).
    HeartbeatMonitor(crate::heartbeat::MonitorArgs),
    /// The seed's socket server: a process per connection, each replying
    /// `hi` (--port 0 picks a free port).
    ///
    /// The lesson's program, short: crates/daemon/examples/echo_server.rs
    /// (cargo run -p procsync-daemon --example echo_server).
    EchoServer(crate::echo::ServerArgs),
    /// Clients for echo-server that check every reply.
    ///
    /// The lesson's server with its clients, short:
    /// crates/daemon/examples/echo_server.rs (cargo run -p procsync-daemon
    /// --example echo_server).
    EchoClient(crate::echo::ClientArgs),
    /// §3 锁 Lock: buyers of a JSON ticket db; with the lock never
    /// oversold, with --no-lock oversold.
    ///
    /// The lesson's program, short: crates/sync-lock/examples/tickets.rs
    /// (cargo run -p procsync-lock --example tickets).
    Tickets(crate::tickets::Args),
    /// §4 信号量 Semaphore: N KTV rooms, everyone sings, never more than N
    /// inside.
    ///
    /// The lesson's program, short: crates/sync-sem/examples/ktv.rs
    /// (cargo run -p procsync-sem --example ktv).
    Ktv(crate::ktv::Args),
    /// §5 事件 Event: a traffic light toggles an Event; cars wait on red and
    /// pass on green; a police car waits at most 0.5 s.
    ///
    /// The lesson's program, short: crates/sync-event/examples/traffic_light.rs
    /// (cargo run -p procsync-event --example traffic_light).
    Traffic(crate::traffic::Args),
    /// Beyond the lesson, 队列 Queue: producer processes make buns,
    /// consumers eat them through one shared-memory queue; the first
    /// producer is SIGKILLed half-way; nothing torn or doubled, and the
    /// consumers stop once every producer is gone.
    ///
    /// A queue, short: crates/queue/examples/producer_consumer.rs
    /// (cargo run -p procsync-queue --example producer_consumer).
    Queue(crate::queue::Args),
    /// Beyond the lesson, 进程池 Pool: worker processes square numbers;
    /// the worker running the middle task is SIGKILLed; that task is
    /// WorkerDied, a new worker replaces it, every other task completes.
    ///
    /// A pool, short: crates/pool/examples/pool_map.rs
    /// (cargo run -p procsync-pool --example pool_map).
    Pool(crate::pool::Args),
    /// §2 报活 at the lesson's scale: 100 machines x 100 processes, one
    /// collector per machine writing a shared store (SQLite, or PostgreSQL
    /// with --store postgres --url ...), a fleet monitor; two reporters
    /// and one whole machine are killed.
    ///
    /// One reporter and its monitor, short:
    /// crates/heartbeat/examples/heartbeat.rs (cargo run -p
    /// procsync-heartbeat --example heartbeat).
    Fleet(crate::fleet::Args),
    /// Every scenario above, one after another, with default arguments, at
    /// --speed 5 unless --speed is given.
    ///
    /// The lesson's programs, short, are each crate's examples:
    /// crates/*/examples/*.rs (cargo run -p <package> --example <name>).
    All,
}

/// The slowest `--speed`: a one-minute lesson step then takes about a week.
const MIN_SPEED: f64 = 1e-4;
/// The fastest `--speed`: a one-second lesson step then takes 1 µs.
const MAX_SPEED: f64 = 1e6;

fn parse_speed(text: &str) -> Result<f64, String> {
    let speed: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number (try 1, 10 or 0.5)"))?;
    if !(speed.is_finite() && speed > 0.0) {
        return Err(format!("the speed must be a positive number, not {text}"));
    }
    // Every lesson duration is divided by the speed: keep the results
    // within what a Duration holds (a lesson lasts minutes, not aeons).
    if !(MIN_SPEED..=MAX_SPEED).contains(&speed) {
        return Err(format!(
            "the speed must be between {MIN_SPEED} and {MAX_SPEED}, not {text}"
        ));
    }
    Ok(speed)
}

impl Cli {
    /// Runs the scenario asked for; its summaries (one, or one per
    /// scenario for `all`).
    pub(crate) fn run(self) -> Result<Vec<Summary>, DemoError> {
        let ctx = self.context();
        match self.scenario {
            Scenario::Isolation => crate::isolation::run(&ctx).map(|s| vec![s]),
            Scenario::Tickets(args) => crate::tickets::run(&ctx, &args).map(|s| vec![s]),
            Scenario::Ktv(args) => crate::ktv::run(&ctx, &args).map(|s| vec![s]),
            Scenario::Traffic(args) => crate::traffic::run(&ctx, &args).map(|s| vec![s]),
            Scenario::Queue(args) => crate::queue::run(&ctx, &args).map(|s| vec![s]),
            Scenario::Pool(args) => crate::pool::run(&ctx, &args).map(|s| vec![s]),
            Scenario::Fleet(args) => crate::fleet::run(&ctx, &args).map(|s| vec![s]),
            Scenario::Daemon => crate::daemons::run_daemon(&ctx).map(|s| vec![s]),
            Scenario::DaemonOrder => crate::daemons::run_daemon_order(&ctx).map(|s| vec![s]),
            Scenario::Result => crate::daemons::run_result(&ctx).map(|s| vec![s]),
            Scenario::Heartbeat(args) => crate::heartbeat::run(&ctx, &args).map(|s| vec![s]),
            Scenario::HeartbeatMonitor(args) => {
                crate::heartbeat::run_monitor(&ctx, &args).map(|s| vec![s])
            }
            Scenario::EchoServer(args) => crate::echo::run_server(&ctx, &args).map(|s| vec![s]),
            Scenario::EchoClient(args) => crate::echo::run_client(&ctx, &args).map(|s| vec![s]),
            Scenario::All => run_all(&ctx),
        }
    }

    fn context(&self) -> Context {
        let default_speed = match self.scenario {
            Scenario::All => ALL_DEFAULT_SPEED,
            _ => 1.0,
        };
        Context {
            lang: self.lang,
            speed: self.speed.unwrap_or(default_speed),
        }
    }
}

/// `demos all` runs the whole lesson in well under a minute at this speed.
const ALL_DEFAULT_SPEED: f64 = 5.0;

/// A scenario's entry point.
type ScenarioFn = fn(&Context) -> Result<Summary, DemoError>;

/// Every scenario, in the lesson's order.
const ALL: &[(&str, ScenarioFn)] = &[
    ("isolation", crate::isolation::run),
    ("result", crate::daemons::run_result),
    ("daemon", crate::daemons::run_daemon),
    ("daemon-order", crate::daemons::run_daemon_order),
    ("heartbeat", |ctx| {
        crate::heartbeat::run(ctx, &crate::heartbeat::Args::default())
    }),
    ("echo", crate::echo::run_both),
    ("tickets", |ctx| {
        crate::tickets::run(ctx, &crate::tickets::Args::default())
    }),
    ("ktv", |ctx| {
        crate::ktv::run(ctx, &crate::ktv::Args::default())
    }),
    ("traffic", |ctx| {
        crate::traffic::run(ctx, &crate::traffic::Args::default())
    }),
    ("queue", |ctx| {
        crate::queue::run(ctx, &crate::queue::Args::default())
    }),
    ("pool", |ctx| {
        crate::pool::run(ctx, &crate::pool::Args::default())
    }),
    ("fleet", |ctx| {
        crate::fleet::run(ctx, &crate::fleet::Args::for_all())
    }),
];

/// Runs every scenario in the lesson's order.
fn run_all(ctx: &Context) -> Result<Vec<Summary>, DemoError> {
    let mut summaries = Vec::new();
    for &(name, run) in ALL {
        print_line(format_args!("\n=== {name} ==="));
        summaries.push(run(ctx)?);
    }
    Ok(summaries)
}
