//! `cleanroom revoke`: end a scenario or an authorization for good.

use clap::Args;
use serde_json::json;

use super::common::{OutputArg, Target, block_on, patch_spec, print};
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
    if args.reason.trim().is_empty() {
        anyhow::bail!("--reason must say why (it cannot be blank)");
    }
    block_on(async |client| {
        let spec = json!({"state": State::Revoked, "reason": args.reason});
        let summary = patch_spec(&client, &args.target, spec).await?;
        print(&summary.render(args.output.output)?)
    })
}
