//! `cleanroom import create|list|show|withdraw`: ask for third-party data
//! staged by the data operator's staff to be handed into a workspace, follow
//! the request, and take it back.
//!
//! The requester is always the caller as the API server sees them (a
//! SelfSubjectReview), as for exports. An import is sealed, checked against
//! its declared schema, reviewed and mounted read-only at
//! `/imports/<name>`; it is never recalled: withdrawing it removes it.

use clap::{Args, Subcommand};

use super::airlock::{self, ListArgs, ShowArgs, WithdrawArgs};
use super::common::{OutputArg, workspace_namespace};
use super::import_spec::{ImportRequest, parse_claim, parse_file, parse_legal_basis};
use crate::api::Import;
use crate::api::import::{IMPORTS_MOUNT, ImportFile, LegalBasis};

#[derive(Args, Debug)]
pub(super) struct ImportArgs {
    #[command(subcommand)]
    pub(super) command: ImportCommand,
}

#[derive(Subcommand, Debug)]
pub(super) enum ImportCommand {
    /// Ask for staged third-party files to be sealed, checked, reviewed and mounted at /imports/NAME.
    Create(CreateArgs),
    /// List imports of one scenario (--scenario) or of every workspace (-A).
    List(ListArgs),
    /// Show one import: phase, supplier, legal basis, files and schemas, hashes, checks, reviews, mount, wipe.
    #[command(after_help = "Exit code 3 if the import does not exist.")]
    Show(ShowArgs),
    /// Withdraw (delete) an import you asked for; its copies are wiped, from the workspace too.
    #[command(
        after_help = "Only the requester may withdraw an import (the API server refuses anyone \
else). An import is never recalled: withdrawing it is how it leaves the workspace. The \
operator wipes its sealed copy, or its mounted copy once handed in, and records the wipe. \
Exit code 3 if the import does not exist."
    )]
    Withdraw(WithdrawArgs),
}

#[derive(Args, Debug)]
#[command(
    after_help = "FILE is PATH[:COLUMN=TYPE,COLUMN=TYPE,...]. PATH is relative to the staging \
claim's root; the columns are the file's header, in order, for a CSV, JSON Lines or Parquet \
file (TYPE is string, integer, decimal, date, datetime or boolean); leave them out for a \
document. The staging claim is in cleanroom-import, put there by the data operator's staff \
and labelled cleanroom.io/import-for=SCENARIO. The requester is you, as the API server \
knows you.

Example:
  cleanroom import create care-homes --scenario elderly-care-demand \\
    --supplier 'Nanning Civil Affairs Bureau' --legal-basis contract:NCAB-2026-014 \\
    --staging-claim care-homes-2026q1 \\
    --file 'care-homes.csv:home_id=string,district=string,beds=integer,opened=date' \\
    --file methodology.pdf \\
    --purpose 'bed capacity by district, to compare with care demand'"
)]
pub(super) struct CreateArgs {
    /// Name of the Import (a DNS subdomain: lowercase letters, digits, '-' and '.').
    pub(super) name: String,
    /// The scenario whose workspace the data is for.
    #[arg(long)]
    pub(super) scenario: String,
    /// Who supplies the data (an organisation).
    #[arg(long)]
    pub(super) supplier: String,
    /// Why the data may be used here: contract:REFERENCE or consent:REFERENCE.
    #[arg(long = "legal-basis", value_parser = parse_legal_basis)]
    pub(super) legal_basis: LegalBasis,
    /// The claim in cleanroom-import the files were staged on.
    #[arg(long = "staging-claim", value_parser = parse_claim)]
    pub(super) staging_claim: String,
    /// A file to import, PATH[:COLUMN=TYPE,...] (repeatable, at most 32).
    #[arg(long = "file", required = true, value_parser = parse_file)]
    pub(super) files: Vec<ImportFile>,
    /// What the data is and what it is for.
    #[arg(long)]
    pub(super) purpose: String,
    #[command(flatten)]
    pub(super) output: OutputArg,
}

pub(super) fn run(args: ImportArgs) -> anyhow::Result<()> {
    match args.command {
        ImportCommand::Create(a) => create(a),
        ImportCommand::List(a) => airlock::list::<Import>(&a.scope, a.output.output),
        ImportCommand::Show(a) => airlock::show::<Import>(&a.name, &a.scenario, a.output.output),
        ImportCommand::Withdraw(a) => {
            let said = withdrawn_message(&a.name, &a.scenario);
            airlock::withdraw::<Import>(&a.name, &a.scenario, said)
        }
    }
}

fn create(args: CreateArgs) -> anyhow::Result<()> {
    let request = ImportRequest::from_args(&args)?;
    airlock::create(&args.scenario, args.output.output, |requester| {
        request.import(requester)
    })
}

/// What a withdrawal does, said once it is accepted.
pub(super) fn withdrawn_message(name: &str, scenario: &str) -> String {
    format!(
        "import {name} in {} withdrawn: the operator wipes its copy (sealed, or mounted at \
         {IMPORTS_MOUNT}/{name} once handed in) and records the wipe\n",
        workspace_namespace(scenario)
    )
}
