//! `cleanroom suspend`: seal a scenario's workspace, or every workspace of an authorization.

use clap::Args;
use serde_json::json;

use super::common::{Exit, OutputArg, Target, block_on, get_summary, patch_spec, print};
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
    if args.reason.trim().is_empty() {
        anyhow::bail!("--reason must say why (it cannot be blank)");
    }
    block_on(async |client| {
        let current = get_summary(&client, &args.target).await?;
        if current.state == State::Revoked {
            return Err(Exit::forbidden(format!(
                "{} {:?} is Revoked: revoked is final, it cannot be suspended",
                args.target.kind(),
                args.target.name
            )));
        }
        let spec = json!({"state": State::Suspended, "reason": args.reason});
        let summary = patch_spec(&client, &args.target, spec).await?;
        print(&summary.render(args.output.output)?)
    })
}
