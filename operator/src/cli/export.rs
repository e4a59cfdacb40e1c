//! `cleanroom export create|list|show|withdraw`: ask for a reviewed release
//! of data products from a workspace, follow it, and take it back.
//!
//! The requester is always the caller as the API server sees them (a
//! SelfSubjectReview); the admission policy `cleanroom-airlock-exports`
//! refuses any other name, and lets only the requester withdraw.

use clap::{Args, Subcommand};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};

use super::airlock_view::{ExportView, list_table};
use super::common::{
    OutputArg, api_error, block_on, caller, create_error, print, workspace_namespace,
};
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
    Show(ShowArgs),
    /// Withdraw (delete) an export you asked for; its sealed copy is wiped.
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

/// Where to list.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
#[group(required = true, multiple = false)]
pub(super) struct Scope {
    /// The scenario whose exports to list.
    #[arg(long)]
    pub(super) scenario: Option<String>,
    /// Every workspace's exports.
    #[arg(short = 'A', long)]
    pub(super) all_namespaces: bool,
}

#[derive(Args, Debug)]
pub(super) struct ListArgs {
    #[command(flatten)]
    pub(super) scope: Scope,
    #[command(flatten)]
    pub(super) output: OutputArg,
}

#[derive(Args, Debug)]
#[command(after_help = "Exit code 3 if the export does not exist.")]
pub(super) struct ShowArgs {
    /// Name of the Export.
    pub(super) name: String,
    /// The scenario whose workspace it is in.
    #[arg(long)]
    pub(super) scenario: String,
    #[command(flatten)]
    pub(super) output: OutputArg,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Only the requester may withdraw an export (the API server refuses \
anyone else). The operator wipes the sealed copy and records the wipe; a released copy stays \
released. Exit code 3 if the export does not exist."
)]
pub(super) struct WithdrawArgs {
    /// Name of the Export.
    pub(super) name: String,
    /// The scenario whose workspace it is in.
    #[arg(long)]
    pub(super) scenario: String,
}

pub(super) fn run(args: ExportArgs) -> anyhow::Result<()> {
    match args.command {
        ExportCommand::Create(a) => create(a),
        ExportCommand::List(a) => list(a),
        ExportCommand::Show(a) => show(a),
        ExportCommand::Withdraw(a) => withdraw(a),
        ExportCommand::Recall(a) => super::review::recall(a),
    }
}

fn api(client: &Client, scenario: &str) -> Api<Export> {
    Api::namespaced(client.clone(), &workspace_namespace(scenario))
}

fn create(args: CreateArgs) -> anyhow::Result<()> {
    let request = Request::from_args(&args)?;
    block_on(async |client| {
        let requester = caller(&client).await?;
        let export = request.export(&requester);
        let created = api(&client, &args.scenario)
            .create(&PostParams::default(), &export)
            .await
            .map_err(|e| create_error(e, "export", &args.name, &args.scenario))?;
        print(&ExportView::from(&created).render(args.output.output)?)
    })
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    block_on(async |client| {
        let api = match &args.scope.scenario {
            Some(s) => api(&client, s),
            None => Api::all(client.clone()),
        };
        let exports = api
            .list(&ListParams::default())
            .await
            .map_err(|e| api_error(e, "exports in", &scope_name(&args.scope)))?;
        let views: Vec<ExportView> = exports.items.iter().map(ExportView::from).collect();
        print(&list_table(&views, args.output.output)?)
    })
}

fn scope_name(scope: &Scope) -> String {
    scope
        .scenario
        .as_deref()
        .map_or_else(|| "all workspaces".into(), workspace_namespace)
}

fn show(args: ShowArgs) -> anyhow::Result<()> {
    block_on(async |client| {
        let export = api(&client, &args.scenario)
            .get(&args.name)
            .await
            .map_err(|e| api_error(e, "export", &args.name))?;
        print(&ExportView::from(&export).render(args.output.output)?)
    })
}

fn withdraw(args: WithdrawArgs) -> anyhow::Result<()> {
    block_on(async |client| {
        api(&client, &args.scenario)
            .delete(&args.name, &DeleteParams::default())
            .await
            .map_err(|e| api_error(e, "export", &args.name))?;
        print(&withdrawn_message(&args.name, &args.scenario))
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
