//! `demos`: every scenario of the multiprocessing lesson, between real
//! processes. Run `demos --help` for the list.

mod cli;
mod daemons;
mod echo;
mod heartbeat;
mod isolation;
mod ktv;
mod tickets;
mod traffic;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let ctx = cli.context();
    let result = match cli.scenario {
        cli::Scenario::Isolation => isolation::run(&ctx).map(|s| vec![s]),
        cli::Scenario::Tickets(args) => tickets::run(&ctx, &args).map(|s| vec![s]),
        cli::Scenario::Ktv(args) => ktv::run(&ctx, &args).map(|s| vec![s]),
        cli::Scenario::Traffic(args) => traffic::run(&ctx, &args).map(|s| vec![s]),
        cli::Scenario::Daemon => daemons::run_daemon(&ctx).map(|s| vec![s]),
        cli::Scenario::DaemonOrder => daemons::run_daemon_order(&ctx).map(|s| vec![s]),
        cli::Scenario::Result => daemons::run_result(&ctx).map(|s| vec![s]),
        cli::Scenario::Heartbeat(args) => heartbeat::run(&ctx, &args).map(|s| vec![s]),
        cli::Scenario::HeartbeatMonitor(args) => {
            heartbeat::run_monitor(&ctx, &args).map(|s| vec![s])
        }
        cli::Scenario::EchoServer(args) => echo::run_server(&ctx, &args).map(|s| vec![s]),
        cli::Scenario::EchoClient(args) => echo::run_client(&ctx, &args).map(|s| vec![s]),
        cli::Scenario::All => cli::run_all(&ctx),
    };
    match result {
        Ok(summaries) if summaries.len() > 1 => {
            // Every scenario printed its own summary; `all` adds the count.
            cli::print_line(format_args!("summary: scenarios={}", summaries.len()));
        }
        Ok(_) => {}
        Err(err) => {
            eprintln!("demos: {err}");
            std::process::exit(1);
        }
    }
}
