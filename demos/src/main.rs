//! `demos`: every scenario of the multiprocessing lesson, between real
//! processes. Run `demos --help` for the list.

mod cli;
mod context;
mod daemons;
mod echo;
mod fleet;
mod heartbeat;
mod isolation;
mod ktv;
mod pool;
mod queue;
mod sys;
mod tickets;
mod traffic;

use clap::Parser;

fn main() {
    let result = cli::Cli::parse().run();
    match result {
        Ok(summaries) if summaries.len() > 1 => {
            // Every scenario printed its own summary; `all` adds the count.
            context::print_line(format_args!("summary: scenarios={}", summaries.len()));
        }
        Ok(_) => {}
        Err(err) => {
            eprintln!("demos: {err}");
            std::process::exit(1);
        }
    }
}
