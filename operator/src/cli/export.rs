//! `cleanroom export create|list|show|withdraw`: ask for a reviewed release
//! of data products from a workspace, follow it, and take it back.
//!
//! The requester is always the caller as the API server sees them (a
//! SelfSubjectReview); the admission policy `cleanroom-airlock-exports`
//! refuses any other name, and lets only the requester withdraw.

use clap::{Args, Subcommand};

use super::airlock::{self, ListArgs, ShowArgs, WithdrawArgs};
use super::common::{OutputArg, workspace_namespace};
use super::export_spec::{Request, parse_file};
use crate::api::Export;
use crate::api::airlock::ExportFile;

#[derive(Args, Debug)]
pub(super) struct ExportArgs {
    #[command(subcommand)]
    pub(super) command: ExportCommand,
}

#[derive(Subcommand, Debug)]
pub(super) enum ExportCommand {
    /// Ask for files under /work/outbox to be sealed, checked, reviewed and released.
    Create(CreateArgs),
    /// List exports of one scenario (--scenario) or of every workspace (-A).
    List(ListArgs),
    /// Show one export: phase, sealed files and hashes, checks, reviews, release, wipe.
    #[command(after_help = "Exit code 3 if the export does not exist.")]
    Show(ShowArgs),
    /// Withdraw (delete) an export you asked for; its sealed copy is wiped.
    #[command(
        after_help = "Only the requester may withdraw an export (the API server refuses \
anyone else). The operator wipes the sealed copy and records the wipe; a released copy stays \
released. Exit code 3 if the export does not exist."
    )]
    Withdraw(WithdrawArgs),
    /// Recall a released export (reviewers only): its released copy is wiped
    /// from the release claim and its content is never released again.
    Recall(RecallArgs),
}

#[derive(Args, Debug)]
#[command(
    after_help = "A recall is a Review with decision Recall, made in your name as the API server knows you. Only a reviewer the authorization lists may recall, never the requester or a member, and only a released export: the API server refuses anything else. The operator wipes the released copy (with an attestation), records the recall, and blocks any later export of the same content (the whole export or any of its files).

Example:
  cleanroom export recall q1-tables --scenario elderly-care-demand \
    --comment 'district totals allow differencing with the Q2 release'"
)]
pub(super) struct RecallArgs {
    /// Name of the released Export.
    pub(super) name: String,
    /// The scenario whose workspace it is in.
    #[arg(long)]
    pub(super) scenario: String,
    /// Why (required).
    #[arg(long)]
    pub(super) comment: String,
    #[command(flatten)]
    pub(super) output: OutputArg,
}

#[derive(Args, Debug)]
#[command(
    after_help = "FILE is PATH:KIND[:ROLES]. PATH is under /work/outbox (absolute or \
relative to it); KIND is Table, Report, Model, Microdata or Other; ROLES name the columns' \
roles for the automatic checks, `;`-separated: keys=a,b;counts=n;magnitudes=m;\
quasi-identifiers=q;sensitive=s. The requester is you, as the API server knows you.

Examples:
  cleanroom export create q1-tables --scenario elderly-care-demand \\
    --file '/work/outbox/by-district.csv:Table:keys=district,age_band;counts=n' \\
    --file summary.pdf:Report \\
    --context 'Care demand by district, Q1' --controls 'cells under 10 suppressed'"
)]
pub(super) struct CreateArgs {
    /// Name of the Export (a DNS subdomain: lowercase letters, digits, '-' and '.').
    pub(super) name: String,
    /// The scenario whose workspace the files are in.
    #[arg(long)]
    pub(super) scenario: String,
    /// A file to release, PATH:KIND[:ROLES] (repeatable, at most 32).
    #[arg(long = "file", required = true, value_parser = parse_file)]
    pub(super) files: Vec<ExportFile>,
    /// What the outputs are and what they are for.
    #[arg(long)]
    pub(super) context: String,
    /// How disclosure was controlled (suppression, rounding, aggregation).
    #[arg(long)]
    pub(super) controls: String,
    #[command(flatten)]
    pub(super) output: OutputArg,
}

pub(super) fn run(args: ExportArgs) -> anyhow::Result<()> {
    match args.command {
        ExportCommand::Create(a) => create(a),
        ExportCommand::List(a) => airlock::list::<Export>(&a.scope, a.output.output),
        ExportCommand::Show(a) => airlock::show::<Export>(&a.name, &a.scenario, a.output.output),
        ExportCommand::Withdraw(a) => {
            let said = withdrawn_message(&a.name, &a.scenario);
            airlock::withdraw::<Export>(&a.name, &a.scenario, said)
        }
        ExportCommand::Recall(a) => super::review::recall(a),
    }
}

fn create(args: CreateArgs) -> anyhow::Result<()> {
    let request = Request::from_args(&args)?;
    airlock::create(&args.scenario, args.output.output, |requester| {
        request.export(requester)
    })
}

/// What a withdrawal does, said once it is accepted.
pub(super) fn withdrawn_message(name: &str, scenario: &str) -> String {
    format!(
        "export {name} in {} withdrawn: the operator wipes its sealed copy (if it was sealed) \
         and records the wipe; a copy already released stays released\n",
        workspace_namespace(scenario)
    )
}
