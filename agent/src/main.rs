use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cleanroom_agent::airlock;
use cleanroom_agent::desensitize::{self, Format};
use cleanroom_agent::plan::Plan;
use cleanroom_agent::scan;
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
    /// Overwrite the data of every file under a directory with zeros (holes
    /// of sparse files are skipped), verify, remove it, and print an
    /// attestation as one JSON line.
    Wipe {
        /// The directory to wipe (it stays, empty).
        #[arg(long, value_name = "DIR")]
        path: PathBuf,
        /// Refuse, before overwriting or removing anything, when the files
        /// hold more bytes of data than this (holes of sparse files are not
        /// counted, hard-linked data once): the volume's capacity.
        #[arg(long, value_name = "N")]
        max_bytes: Option<u64>,
        /// Where the result is also written for Kubernetes (skipped when its
        /// directory does not exist).
        #[arg(long, value_name = "PATH", default_value = "/dev/termination-log")]
        termination_log: PathBuf,
    },
    /// Stream a raw file through a desensitization plan (column subset,
    /// per-column masking rules, sampling) into a prepared file of the same
    /// format, and print a report as one JSON line.
    Desensitize {
        /// The raw file.
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// The prepared file (written under a temporary name, renamed on success).
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        /// Format of both files.
        #[arg(long, value_enum)]
        format: Format,
        /// The plan (JSON; see agent/README.md).
        #[arg(long, value_name = "PLAN.json")]
        plan: PathBuf,
        /// The per-scenario HMAC key for `hash` (a mounted Secret file).
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        /// Where the report is also written for Kubernetes (skipped when its
        /// directory does not exist).
        #[arg(long, value_name = "PATH", default_value = "/dev/termination-log")]
        termination_log: PathBuf,
    },
    /// Copy the files an export names from the workspace's outbox into a
    /// fresh sealed directory with a manifest of sizes and SHA-256s; print
    /// the manifest's hash and each file's as one JSON line.
    Seal {
        /// The outbox (read-only).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The sealed directory.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// The files asked for, as JSON on the command line (the workspace
        /// namespace holds no ConfigMap of the operator's):
        /// `{"files": [{"name", "kind", "columns"}]}`.
        #[arg(long, value_name = "JSON")]
        request: String,
        #[arg(long, value_name = "PATH", default_value = "/dev/termination-log")]
        termination_log: PathBuf,
    },
    /// Check that a sealed directory is exactly what was sealed.
    Verify {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The manifest's SHA-256 recorded when sealing.
        #[arg(long, value_name = "HEX")]
        manifest_sha256: String,
        #[arg(long, value_name = "PATH", default_value = "/dev/termination-log")]
        termination_log: PathBuf,
    },
    /// Copy a sealed directory to a release directory, checking every hash
    /// on arrival (a completed earlier copy is verified, not repeated).
    Release {
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The release directory (must not exist unless a previous copy completed it).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// The manifest's SHA-256 recorded when sealing.
        #[arg(long, value_name = "HEX")]
        manifest_sha256: String,
        #[arg(long, value_name = "PATH", default_value = "/dev/termination-log")]
        termination_log: PathBuf,
    },
    /// Take a released copy back: check it is the export's (its manifest
    /// hash), overwrite every file with zeros, verify, remove the directory,
    /// and print the wipe's attestation as one JSON line.
    Recall {
        /// The released directory (`<release claim>/<namespace>.<export>`).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The manifest's SHA-256 recorded when sealing.
        #[arg(long, value_name = "HEX")]
        manifest_sha256: String,
        #[arg(long, value_name = "PATH", default_value = "/dev/termination-log")]
        termination_log: PathBuf,
    },
    /// Check every file of a sealed export (identifiers, pseudonyms, raw
    /// values, ACRO's table rules, k-anonymity, file types and limits) and
    /// print a verdict per file as one JSON line. Exits 0 whenever the scan
    /// ran, whatever the verdicts.
    Scan {
        /// The export's manifest; the files are in `files/` beside it.
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
        /// The policy (JSON, camelCase, every field optional; `{}` is the defaults).
        #[arg(long, value_name = "POLICY.json")]
        policy: PathBuf,
        /// Where the full report is written.
        #[arg(long, value_name = "OUT.json")]
        report: PathBuf,
        /// A raw dataset to match against: its format, its desensitization
        /// plan (which columns are personal, which quasi-identifiers) and the file.
        #[arg(long, value_name = "FORMAT:PLAN:FILE")]
        raw: Vec<String>,
        /// First check that the sealed copy beside the manifest is exactly
        /// what was sealed (`agent verify`): the manifest's recorded SHA-256.
        #[arg(long, value_name = "HEX")]
        sealed_sha256: Option<String>,
        /// Where the summary is also written for Kubernetes (skipped when
        /// its directory does not exist).
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
        Command::Desensitize {
            input,
            output,
            format,
            plan,
            key_file,
            termination_log,
        } => run_desensitize(input, output, format, &plan, key_file, &termination_log),
        Command::Seal {
            from,
            to,
            request,
            termination_log,
        } => {
            let outcome = serde_json::from_str::<airlock::Request>(&request)
                .map_err(|e| format!("the request is not valid: {e}"))
                .and_then(|r| airlock::seal(&from, &to, &r).map_err(|e| e.to_string()));
            finish("seal", outcome, &termination_log)
        }
        Command::Verify {
            dir,
            manifest_sha256,
            termination_log,
        } => {
            let outcome = airlock::verify(&dir, &manifest_sha256).map_err(|e| e.to_string());
            finish("verify", outcome, &termination_log)
        }
        Command::Release {
            from,
            to,
            manifest_sha256,
            termination_log,
        } => {
            let outcome = airlock::release(&from, &to, &manifest_sha256).map_err(|e| e.to_string());
            finish("release", outcome, &termination_log)
        }
        Command::Recall {
            dir,
            manifest_sha256,
            termination_log,
        } => {
            let outcome = airlock::recall(&dir, &manifest_sha256).map_err(|e| e.to_string());
            finish("recall", outcome, &termination_log)
        }
        Command::Scan {
            manifest,
            policy,
            report,
            raw,
            sealed_sha256,
            termination_log,
        } => {
            let dir = manifest.parent().unwrap_or(Path::new("."));
            if let Some(Err(e)) = sealed_sha256.map(|h| airlock::verify(dir, &h)) {
                return finish::<()>("scan", Err(e.to_string()), &termination_log);
            }
            run_scan(manifest, &policy, &report, &raw, &termination_log)
        }
    }
}

fn scan_options(manifest: PathBuf, policy: &Path, raw: &[String]) -> Result<scan::Options, String> {
    let text = std::fs::read_to_string(policy)
        .map_err(|e| format!("cannot read the policy {}: {e}", policy.display()))?;
    Ok(scan::Options {
        manifest,
        policy: scan::policy::Policy::from_json(&text)?,
        raw: raw
            .iter()
            .map(|r| scan::raw::RawSpec::parse(r))
            .collect::<Result<_, _>>()?,
    })
}

fn run_scan(
    manifest: PathBuf,
    policy: &Path,
    report_path: &Path,
    raw: &[String],
    termination_log: &Path,
) -> ExitCode {
    let outcome = scan_options(manifest, policy, raw).and_then(|opts| {
        let report = scan::run(&opts)?;
        let full = serde_json::to_vec_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(report_path, full)
            .map_err(|e| format!("cannot write the report {}: {e}", report_path.display()))?;
        Ok(report.summary_json())
    });
    let (json, code) = match outcome {
        Ok(summary) => {
            println!("{summary}");
            (summary, ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("agent scan: {e}");
            (wipe::error_json(&e), ExitCode::from(2))
        }
    };
    if let Err(e) = wipe::write_termination_log(termination_log, &json) {
        eprintln!(
            "agent scan: cannot write {}: {e}",
            termination_log.display()
        );
    }
    code
}

fn run_desensitize(
    input: PathBuf,
    output: PathBuf,
    format: Format,
    plan: &std::path::Path,
    key_file: Option<PathBuf>,
    termination_log: &std::path::Path,
) -> ExitCode {
    let prepared = std::fs::read_to_string(plan)
        .map_err(|e| format!("cannot read the plan {}: {e}", plan.display()))
        .and_then(|text| Plan::from_json(&text))
        .and_then(|plan| {
            let key = key_file.as_deref().map(desensitize::read_key).transpose()?;
            Ok(desensitize::Options {
                input,
                output,
                format,
                plan,
                key,
            })
        });
    let (json, code) = match prepared {
        Err(e) => {
            eprintln!("agent desensitize: {e}");
            (wipe::error_json(&e), ExitCode::FAILURE)
        }
        Ok(opts) => match desensitize::run(&opts) {
            Ok(report) => {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
                (report.to_json_limited(), ExitCode::SUCCESS)
            }
            Err(failure) => {
                let report = failure.report;
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
                if let Some(e) = &report.error {
                    eprintln!("agent desensitize: {e}");
                }
                (report.to_json_limited(), ExitCode::FAILURE)
            }
        },
    };
    if let Err(e) = wipe::write_termination_log(termination_log, &json) {
        eprintln!(
            "agent desensitize: cannot write {}: {e}",
            termination_log.display()
        );
    }
    code
}

fn run_wipe(
    path: &std::path::Path,
    max_bytes: Option<u64>,
    termination_log: &std::path::Path,
) -> ExitCode {
    let outcome = wipe::wipe(path, &wipe::Options { max_bytes }).map_err(|e| e.to_string());
    finish("wipe", outcome, termination_log)
}

/// Prints a command's report (or error) as one JSON line and leaves it in
/// the termination log, where Kubernetes shows it and the operator reads it.
fn finish<T: serde::Serialize>(
    command: &str,
    outcome: Result<T, String>,
    termination_log: &std::path::Path,
) -> ExitCode {
    let (json, code) = match outcome.map(|o| serde_json::to_string(&o)) {
        Ok(Ok(json)) => {
            println!("{json}");
            (json, ExitCode::SUCCESS)
        }
        Ok(Err(e)) => {
            eprintln!("agent {command}: cannot encode the report: {e}");
            (wipe::error_json(&e.to_string()), ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("agent {command}: {e}");
            (wipe::error_json(&e), ExitCode::FAILURE)
        }
    };
    if let Err(e) = wipe::write_termination_log(termination_log, &json) {
        eprintln!(
            "agent {command}: cannot write {}: {e}",
            termination_log.display()
        );
    }
    code
}
