//! `cleanroom run`: the operator itself.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use crate::controller::{self, Settings};
use crate::http::{self, Health};
use crate::leader::{self, Elector, Timing};
use crate::metrics::Metrics;
use crate::sessions;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  cleanroom run
  cleanroom run --leader-elect --lease-namespace cleanroom-system
  CLEANROOM_METRICS_ADDR=127.0.0.1:0 cleanroom run      # any free port (logged)")]
pub(super) struct RunArgs {
    /// Image of the data-plane agent, run by the wipe and data preparation Jobs.
    #[arg(long, env = "CLEANROOM_AGENT_IMAGE", default_value = super::DEFAULT_AGENT_IMAGE)]
    pub(super) agent_image: String,
    /// StorageClass of workspace volumes; the cluster's default when omitted.
    #[arg(long, env = "CLEANROOM_STORAGE_CLASS")]
    pub(super) storage_class: Option<String>,
    /// ClusterRole bound to each workspace's members (the chart's; the
    /// operator holds `bind` on it and nothing it grants).
    #[arg(long, env = "CLEANROOM_MEMBER_CLUSTER_ROLE", default_value = crate::workspace::access::DEFAULT_MEMBER_CLUSTER_ROLE)]
    pub(super) member_cluster_role: String,
    /// ClusterRole bound in each workspace to the authorization's reviewers
    /// (the chart's; the operator holds `bind` on it).
    #[arg(long, env = "CLEANROOM_REVIEWER_CLUSTER_ROLE", default_value = crate::workspace::access::DEFAULT_REVIEWER_CLUSTER_ROLE)]
    pub(super) reviewer_cluster_role: String,
    /// Log as JSON lines (for log pipelines) instead of text.
    #[arg(long, env = "CLEANROOM_LOG_JSON")]
    pub(super) log_json: bool,
    /// Address of /healthz, /readyz and /metrics (port 0: any free port, logged at start).
    #[arg(long, env = "CLEANROOM_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub(super) metrics_addr: SocketAddr,
    /// Run the controllers only while holding a Lease, so that several replicas can run.
    #[arg(long, env = "CLEANROOM_LEADER_ELECT")]
    pub(super) leader_elect: bool,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "cleanroom-operator")]
    pub(super) lease_name: String,
    /// Namespace of the Lease (must exist).
    #[arg(long, env = "POD_NAMESPACE", default_value = "cleanroom-system")]
    pub(super) lease_namespace: String,
    /// This replica's identity in the Lease [default: host name and process id].
    #[arg(long)]
    pub(super) identity: Option<String>,
    /// Namespace of the audit ledger's ConfigMap segments (must exist).
    #[arg(long, env = "CLEANROOM_AUDIT_NAMESPACE", default_value = crate::audit::store::DEFAULT_NAMESPACE)]
    pub(super) audit_namespace: String,
    /// Fault injection for the crash test: exit right after appending a
    /// record with this action, before the status write that follows.
    #[arg(long, env = "CLEANROOM_AUDIT_EXIT_AFTER", hide = true)]
    pub(super) audit_exit_after: Option<crate::audit::Action>,
    /// Seconds between the ledger's upkeeps (verify, prune, sign the head);
    /// an hour. Tests shorten it to see a signed head soon.
    #[arg(long, env = "CLEANROOM_AUDIT_UPKEEP_SECONDS", hide = true, default_value_t = controller::AUDIT_UPKEEP_EVERY.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub(super) audit_upkeep_seconds: u64,
    /// Address of the audit webhook that records who entered a workspace
    /// (HTTPS, POST /audit; port 0: any free port, logged). Off when unset.
    #[arg(long, env = "CLEANROOM_SESSIONS_ADDR", requires_all = ["sessions_tls_cert", "sessions_tls_key", "sessions_client_ca"])]
    pub(super) sessions_addr: Option<SocketAddr>,
    /// The webhook's serving certificate (PEM).
    #[arg(long, env = "CLEANROOM_SESSIONS_TLS_CERT")]
    pub(super) sessions_tls_cert: Option<std::path::PathBuf>,
    /// The webhook's serving key (PEM).
    #[arg(long, env = "CLEANROOM_SESSIONS_TLS_KEY")]
    pub(super) sessions_tls_key: Option<std::path::PathBuf>,
    /// The CA whose client certificates may post audit events (the API
    /// server's; it should sign nothing else).
    #[arg(long, env = "CLEANROOM_SESSIONS_CLIENT_CA")]
    pub(super) sessions_client_ca: Option<std::path::PathBuf>,
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
    let webhook = sessions_tls(&args)?;
    let settings = Settings {
        agent_image: args.agent_image,
        storage_class: args.storage_class,
        member_role: args.member_cluster_role,
        reviewer_role: args.reviewer_cluster_role,
        audit_namespace: args.audit_namespace,
        audit_exit_after: args.audit_exit_after,
        audit_upkeep_every: std::time::Duration::from_secs(args.audit_upkeep_seconds),
        sessions: crate::sessions::LedgerSlot::default(),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let metrics = Arc::new(Metrics::new());
            let health = Arc::new(Health::default());
            let (listener, _) = http::bind(args.metrics_addr).await?;
            let server = tokio::spawn(http::serve(listener, metrics.clone(), health.clone()));
            let client = crate::requests::counted_client(metrics.api_requests()).await?;
            let webhook = match webhook {
                Some((addr, config)) => {
                    let (listener, _) = sessions::server::bind(addr).await?;
                    let state = sessions::server::State {
                        client: client.clone(),
                        ledger: settings.sessions.clone(),
                    };
                    Some(tokio::spawn(sessions::server::serve(
                        listener, config, state,
                    )))
                }
                None => None,
            };
            let result = if args.leader_elect {
                let lease = leader::Settings {
                    name: args.lease_name,
                    namespace: args.lease_namespace,
                    identity: args.identity.unwrap_or_else(leader::default_identity),
                    timing: Timing::default(),
                };
                run_elected(client, settings, lease, metrics, health).await
            } else {
                metrics.set_leader(true);
                controller::run(client, settings, metrics, health).await
            };
            server.abort();
            if let Some(w) = webhook {
                w.abort();
            }
            result
        })
}

/// Stands by until this replica holds the lease, then runs the controllers
/// while renewing it. Losing it ends the process at once; a signal stops the
/// controllers, then releases the lease for a fast handover.
async fn run_elected(
    client: kube::Client,
    settings: Settings,
    lease: leader::Settings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> anyhow::Result<()> {
    let identity = lease.identity.clone();
    let elector = Arc::new(Elector::new(client.clone(), lease).await?);
    // A standby that can read the lease is healthy and ready to take over.
    health.set_ready(true);
    metrics.set_leader(false);
    tokio::select! {
        () = elector.acquire() => {}
        () = shutdown_signal() => {
            info!(%identity, "stopped while standing by");
            return Ok(());
        }
    }
    metrics.set_leader(true);
    let mut holder = {
        let elector = elector.clone();
        tokio::spawn(async move { elector.hold().await })
    };
    tokio::select! {
        result = controller::run(client, settings, metrics.clone(), health) => {
            holder.abort();
            metrics.set_leader(false);
            if let Err(e) = elector.release().await {
                error!(error = %format!("{e:#}"), "could not release the leader lease; a standby takes over when it expires");
            }
            result
        }
        lost = &mut holder => {
            let why = match lost {
                Ok(lost) => lost.to_string(),
                Err(e) => format!("the renewal task ended: {e}"),
            };
            error!(%identity, reason = %why, "lost the leader lease: exiting at once so that this replica stops reconciling");
            std::process::exit(1);
        }
    }
}

/// The audit webhook's address and TLS, when it is on; bad certificates
/// stop the start (never a webhook that silently records nothing).
fn sessions_tls(args: &RunArgs) -> anyhow::Result<Option<(SocketAddr, Arc<rustls::ServerConfig>)>> {
    let Some(addr) = args.sessions_addr else {
        return Ok(None);
    };
    let (Some(cert), Some(key), Some(client_ca)) = (
        args.sessions_tls_cert.clone(),
        args.sessions_tls_key.clone(),
        args.sessions_client_ca.clone(),
    ) else {
        anyhow::bail!(
            "--sessions-addr needs --sessions-tls-cert, --sessions-tls-key and --sessions-client-ca"
        );
    };
    let tls = sessions::server::Tls {
        cert,
        key,
        client_ca,
    };
    Ok(Some((addr, sessions::server::server_config(&tls)?)))
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
