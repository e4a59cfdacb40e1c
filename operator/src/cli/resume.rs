//! `cleanroom resume`: back to Active after a suspension (never out of Revoked).

use clap::Args;
use serde_json::json;

use super::common::{Exit, OutputArg, Target, block_on, get_summary, patch_spec, print};
use crate::api::State;

#[derive(Args, Debug)]
#[command(
    after_help = "Compute and access come back. A Revoked object cannot be resumed \
(exit code 4): revoked is final.

Examples:
  cleanroom resume elderly-care-demand
  cleanroom resume acme-analytics --authorization -o yaml"
)]
pub(super) struct ResumeArgs {
    #[command(flatten)]
    pub(super) target: Target,
    #[command(flatten)]
    pub(super) output: OutputArg,
}

pub(super) fn run(args: ResumeArgs) -> anyhow::Result<()> {
    block_on(async |client| {
        let current = get_summary(&client, &args.target).await?;
        if current.state == State::Revoked {
            return Err(Exit::forbidden(format!(
                "{} {:?} is Revoked: revoked is final and cannot be resumed; create a new {} instead",
                args.target.kind(),
                args.target.name,
                args.target.kind()
            )));
        }
        // Active needs no reason: the suspension's reason is cleared.
        let spec = json!({"state": State::Active, "reason": null});
        let summary = patch_spec(&client, &args.target, spec).await?;
        print(&summary.render(args.output.output)?)
    })
}
