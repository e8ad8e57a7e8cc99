//! The `ringmq-bench` command: parse flags, run one scenario, print its
//! report (a table, or one JSON line with `--json`) on stdout. Progress
//! lines and errors go to stderr. Exit status 2 for bad flags, 1 when the
//! run could not be carried out.

use std::process::ExitCode;

use clap::Parser;
use ringmq_bench::cli::Cli;
use ringmq_bench::error::BenchError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match ringmq_bench::run(&cli) {
        Ok(report) => {
            if ringmq_bench::wants_json(&cli) {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_table());
            }
            ExitCode::SUCCESS
        }
        Err(e @ BenchError::Args(_)) => {
            eprintln!("ringmq-bench: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("ringmq-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
