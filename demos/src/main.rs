//! `demos`: every scenario of the multiprocessing lesson, between real
//! processes. Run `demos --help` for the list.

mod cli;
mod isolation;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let ctx = cli.context();
    let result = match cli.scenario {
        cli::Scenario::Isolation => isolation::run(&ctx).map(|s| vec![s]),
        cli::Scenario::All => cli::run_all(&ctx),
    };
    match result {
        Ok(summaries) if summaries.len() > 1 => {
            println!(
                "summary: scenarios={} ok={}",
                summaries.len(),
                summaries.len()
            );
        }
        Ok(_) => {}
        Err(err) => {
            eprintln!("demos: {err}");
            std::process::exit(1);
        }
    }
}
