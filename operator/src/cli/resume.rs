//! `cleanroom resume`: back to Active after a suspension (never out of Revoked).

use clap::Args;

use super::common::{OutputArg, Target, set_state};
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
    // Active needs no reason: the suspension's reason is cleared.
    set_state(&args.target, State::Active, None, args.output.output)
}
