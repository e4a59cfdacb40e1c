//! `cleanroom run`: the operator itself.

use clap::Args;
use tracing_subscriber::EnvFilter;

use crate::controller::{self, Settings};

#[derive(Args, Debug)]
pub(super) struct RunArgs {
    /// Image of the data-plane agent, run by wipe (and later data preparation) Jobs.
    #[arg(long, env = "CLEANROOM_AGENT_IMAGE", default_value = concat!("cleanroom/agent:", env!("CARGO_PKG_VERSION")))]
    pub(super) agent_image: String,
    /// StorageClass of workspace volumes; the cluster's default when omitted.
    #[arg(long, env = "CLEANROOM_STORAGE_CLASS")]
    pub(super) storage_class: Option<String>,
    /// Log as JSON lines (for log pipelines) instead of text.
    #[arg(long, env = "CLEANROOM_LOG_JSON")]
    pub(super) log_json: bool,
}

pub(super) fn run(args: RunArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    if args.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let settings = Settings {
        agent_image: args.agent_image,
        storage_class: args.storage_class,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let client = kube::Client::try_default().await?;
            controller::run(client, settings).await
        })
}
