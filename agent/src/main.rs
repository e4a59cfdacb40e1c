use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cleanroom_agent::wipe;

/// The cleanroom data-plane agent.
#[derive(Parser, Debug)]
#[command(name = "agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Overwrite every file under a directory with zeros, verify, remove it,
    /// and print an attestation as one JSON line.
    Wipe {
        /// The directory to wipe (it stays, empty).
        #[arg(long, value_name = "DIR")]
        path: PathBuf,
        /// Refuse, before writing anything, when the files hold more bytes than this.
        #[arg(long, value_name = "N")]
        max_bytes: Option<u64>,
        /// Where the result is also written for Kubernetes (skipped when its
        /// directory does not exist).
        #[arg(long, value_name = "PATH", default_value = "/dev/termination-log")]
        termination_log: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Wipe {
            path,
            max_bytes,
            termination_log,
        } => run_wipe(&path, max_bytes, &termination_log),
    }
}

fn run_wipe(
    path: &std::path::Path,
    max_bytes: Option<u64>,
    termination_log: &std::path::Path,
) -> ExitCode {
    let (json, code) = match wipe::wipe(path, &wipe::Options { max_bytes }) {
        Ok(report) => match serde_json::to_string(&report) {
            Ok(json) => {
                println!("{json}");
                (json, ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("agent wipe: cannot encode the report: {e}");
                (wipe::error_json(&e.to_string()), ExitCode::FAILURE)
            }
        },
        Err(e) => {
            eprintln!("agent wipe: {e}");
            (wipe::error_json(&e.to_string()), ExitCode::FAILURE)
        }
    };
    if let Err(e) = wipe::write_termination_log(termination_log, &json) {
        eprintln!(
            "agent wipe: cannot write {}: {e}",
            termination_log.display()
        );
    }
    code
}
