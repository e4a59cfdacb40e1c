//! `cleanroom status`: phase, conditions, expiry, namespace and wipes of one object.

use clap::Args;

use super::common::{OutputArg, Target, block_on, get_summary, print};

#[derive(Args, Debug)]
#[command(after_help = "Exit code 3 if the object does not exist.

Examples:
  cleanroom status elderly-care-demand
  cleanroom status acme-analytics --authorization -o json
  kubectl cleanroom status elderly-care-demand      # as a kubectl plugin")]
pub(super) struct StatusArgs {
    #[command(flatten)]
    pub(super) target: Target,
    #[command(flatten)]
    pub(super) output: OutputArg,
}

pub(super) fn run(args: StatusArgs) -> anyhow::Result<()> {
    block_on(async |client| {
        let summary = get_summary(&client, &args.target).await?;
        print(&summary.render(args.output.output)?)
    })
}
