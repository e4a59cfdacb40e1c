//! `cleanroom suspend`: seal a scenario's workspace, or every workspace of an authorization.

use clap::Args;

use super::common::{OutputArg, Target, set_state};
use crate::api::State;

#[derive(Args, Debug)]
#[command(
    after_help = "Compute stops within seconds (replicas 0, Job suspended) and the members' \
access is removed; volumes and data are kept. Undo with `cleanroom resume`.

Examples:
  cleanroom suspend elderly-care-demand --reason \"audit finding 7\"
  cleanroom suspend acme-analytics --authorization --reason \"contract review\""
)]
pub(super) struct SuspendArgs {
    #[command(flatten)]
    pub(super) target: Target,
    /// Why (recorded in the object and the audit trail); required.
    #[arg(long)]
    pub(super) reason: String,
    #[command(flatten)]
    pub(super) output: OutputArg,
}

pub(super) fn run(args: SuspendArgs) -> anyhow::Result<()> {
    set_state(
        &args.target,
        State::Suspended,
        Some(&args.reason),
        args.output.output,
    )
}
