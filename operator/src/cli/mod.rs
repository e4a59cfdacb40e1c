//! The `cleanroom` command line: one module per subcommand.
//!
//! Exit codes: 0 success, 1 error, 2 usage (clap), 3 the object does not
//! exist, 4 the transition is not allowed (for example out of Revoked), 5 the
//! audit chain is broken.

mod airlock;
mod airlock_view;
mod audit;
mod common;
mod crd;
mod export;
mod export_spec;
mod import;
mod import_spec;
mod render;
mod renew;
mod report;
mod report_airlock;
mod report_sessions;
mod resume;
mod review;
mod revoke;
mod run;
mod status;
mod suspend;

use std::process::ExitCode;

/// The agent image `run` starts Jobs with, and `render` shows, by default.
const DEFAULT_AGENT_IMAGE: &str = concat!("cleanroom/agent:", env!("CARGO_PKG_VERSION"));

use clap::{Parser, Subcommand};

/// The cleanroom operator: authorized operation domains for public data on Kubernetes.
#[derive(Parser, Debug)]
#[command(
    name = "cleanroom",
    version,
    about,
    after_help = "Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 transition not allowed, 5 audit chain broken.
Installed as `kubectl-cleanroom` on PATH, every verb also runs as `kubectl cleanroom VERB`."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions as multi-document YAML, or write one file per kind.
    Crd(crd::CrdArgs),
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster config).
    Run(run::RunArgs),
    /// Seal a Scenario (or with --authorization, all of an Authorization's) with a reason.
    Suspend(suspend::SuspendArgs),
    /// Make a suspended Scenario (or Authorization) Active again; never out of Revoked.
    Resume(resume::ResumeArgs),
    /// Revoke a Scenario (or Authorization) for good: teardown and wipe follow.
    Revoke(revoke::RevokeArgs),
    /// Raise an Active Authorization's validUntil (at most 3 years after validFrom).
    Renew(renew::RenewArgs),
    /// Show phase, conditions, expiry, namespace and wipes of a Scenario (or Authorization).
    Status(status::StatusArgs),
    /// Print every object the operator would create for the Scenarios in some files (offline).
    Render(render::RenderArgs),
    /// The audit ledger: verify its hash chain, show its records.
    Audit(audit::AuditArgs),
    /// The operation report: per authorization, scenarios, datasets, expiry, suspensions, revocations, wipes, incidents, exports, imports.
    Report(report::ReportArgs),
    /// The airlock: ask for files to leave a workspace, follow and withdraw the request.
    Export(export::ExportArgs),
    /// The airlock: ask for staged third-party data to enter a workspace, follow and withdraw the request.
    Import(import::ImportArgs),
    /// The airlock: approve, reject or return an export (or --import) as one of its reviewers.
    Review(review::ReviewArgs),
}

impl Cli {
    /// Run the chosen subcommand; errors are printed to stderr.
    pub fn run(self) -> ExitCode {
        let result = match self.command {
            Command::Crd(args) => crd::run(args),
            Command::Run(args) => run::run(args),
            Command::Suspend(args) => suspend::run(args),
            Command::Resume(args) => resume::run(args),
            Command::Revoke(args) => revoke::run(args),
            Command::Renew(args) => renew::run(args),
            Command::Status(args) => status::run(args),
            Command::Render(args) => render::run(args),
            Command::Audit(args) => audit::run(args),
            Command::Report(args) => report::run(args),
            Command::Export(args) => export::run(args),
            Command::Import(args) => import::run(args),
            Command::Review(args) => review::run(args),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cleanroom: {e:#}");
                ExitCode::from(exit_code(&e))
            }
        }
    }
}

/// The exit code of an error (see the module documentation).
fn exit_code(e: &anyhow::Error) -> u8 {
    e.downcast_ref::<common::Exit>().map_or(1, |x| x.code)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_airlock;
#[cfg(test)]
mod tests_import;
