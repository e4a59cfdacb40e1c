//! `cleanroom revoke`: end a scenario or an authorization for good.

use clap::Args;

use super::common::{OutputArg, Target, set_state};
use crate::api::State;

#[derive(Args, Debug)]
#[command(
    after_help = "Final: the workspace(s) are torn down, every volume is wiped with an \
attestation, and the object stays as the record (phase Closed / Revoked).

Examples:
  cleanroom revoke elderly-care-demand --reason \"purpose fulfilled\"
  cleanroom revoke acme-analytics --authorization --reason \"agreement terminated\""
)]
pub(super) struct RevokeArgs {
    #[command(flatten)]
    pub(super) target: Target,
    /// Why (recorded in the object and the audit trail); required.
    #[arg(long)]
    pub(super) reason: String,
    #[command(flatten)]
    pub(super) output: OutputArg,
}

pub(super) fn run(args: RevokeArgs) -> anyhow::Result<()> {
    set_state(
        &args.target,
        State::Revoked,
        Some(&args.reason),
        args.output.output,
    )
}
