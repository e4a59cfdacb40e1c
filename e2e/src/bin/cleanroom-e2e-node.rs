//! The e2e node: a hostPath volume provisioner plus a runner that plays kubelet for
//! `cleanroom.io/component=agent` pods, for the local control plane that has no kubelet.
//!
//! `cleanroom-e2e-node --kubeconfig e2e/.cluster/kubeconfig --agent-bin target/debug/agent`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use cleanroom_e2e::node::{self, Layout, NodeConfig};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tracing::{error, info};

#[derive(Parser, Debug)]
#[command(
    name = "cleanroom-e2e-node",
    version,
    about = "Volume provisioner and agent pod runner for the e2e cluster"
)]
struct Cli {
    /// Kubeconfig to use; without it, KUBECONFIG / ~/.kube/config / in-cluster are tried.
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// State directory: volumes/, pods/ and logs/pods/ are kept under it.
    #[arg(long, default_value = "e2e/.cluster", global = true)]
    root: PathBuf,
    /// The locally built agent binary, bound into pods whose command is `agent`.
    #[arg(long, env = "CLEANROOM_AGENT_BIN", global = true)]
    agent_bin: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Internal: build a pod's sandbox from a spec file and exec its command.
    #[command(hide = true)]
    SandboxExec {
        #[arg(long)]
        spec: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::SandboxExec { spec }) = &cli.command {
        // Runs before any thread exists: unshare(CLONE_NEWNS) needs a single-threaded process.
        let code = node::sandbox::sandbox_exec_main(spec);
        return ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // The cluster scripts send stderr to a log file: no colour codes there.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %format!("{e:#}"), "e2e node failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let config = match &cli.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    let url = &config.cluster_url;
    let api_server = url.host().map(|h| {
        let default_port = if url.scheme_str() == Some("http") {
            80
        } else {
            443
        };
        (
            h.trim_matches(['[', ']']).to_string(),
            url.port_u16().unwrap_or(default_port),
        )
    });
    let client = kube::Client::try_from(config)?;
    let layout = Layout::prepare(&cli.root)?;
    let agent_bin = match &cli.agent_bin {
        Some(p) => Some(
            p.canonicalize()
                .with_context(|| format!("agent binary {}", p.display()))?,
        ),
        None => None,
    };
    info!(
        root = %layout.root().display(),
        agent_bin = ?agent_bin,
        api_server = ?api_server,
        "starting the e2e node"
    );
    let node = node::run(
        client,
        NodeConfig {
            layout,
            agent_bin,
            api_server,
        },
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = node => r,
        _ = tokio::signal::ctrl_c() => { info!("interrupted; stopping"); Ok(()) }
        _ = term.recv() => { info!("terminated; stopping"); Ok(()) }
    }
}
