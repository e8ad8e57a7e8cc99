//! The `ringmq-bench` command: parse flags, run one scenario, print its
//! report (a table, or one JSON line with `--json`) on stdout. Progress
//! lines and errors go to stderr. Exit status 2 for bad flags, 1 when the
//! run could not be carried out, 3 when it ran and its report says it
//! failed (a soak that lost a message).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use ringmq_bench::cli::Cli;
use ringmq_bench::error::BenchError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let ringmq_bench::cli::Command::Compare(a) = &cli.command {
        return match ringmq_bench::compare::main(a) {
            Ok(text) => match std::io::stdout().write_all(text.as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            },
            Err(e) => {
                eprintln!("ringmq-bench: {e}");
                ExitCode::from(if matches!(e, BenchError::Args(_)) {
                    2
                } else {
                    1
                })
            }
        };
    }
    match ringmq_bench::run(&cli) {
        Ok(report) => {
            let text = if ringmq_bench::wants_json(&cli) {
                report.to_json() + "\n"
            } else {
                report.to_table()
            };
            // A closed stdout (e.g. `| head`) is not worth a panic.
            match std::io::stdout().write_all(text.as_bytes()) {
                Ok(()) if report.failed => ExitCode::from(3),
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
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
