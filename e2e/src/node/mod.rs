//! The e2e node: plays the two parts of a real node that the local control plane lacks.
//!
//! - [`provisioner`]: a dynamic hostPath volume provisioner (`cleanroom.io/e2e-hostpath`).
//! - [`runner`]: a minimal kubelet for pods labelled `cleanroom.io/component=agent`, running
//!   each container as a real process inside a mount-namespace sandbox ([`sandbox`]).
//!
//! The remaining modules hold the pure pieces the runner is built from: [`volumes`]
//! (volume resolution and file projection), [`env`] (container environment), [`status`]
//! (pod status patches) and [`logs`] (log tail and termination messages).

pub mod env;
pub mod logs;
pub mod provisioner;
pub mod runner;
pub mod sandbox;
pub mod status;
pub mod volumes;

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The provisioner name claims and storage classes refer to.
pub const PROVISIONER_NAME: &str = "cleanroom.io/e2e-hostpath";
/// Label that marks the pods this node runs itself (KWOK leaves them alone).
pub const AGENT_LABEL_KEY: &str = "cleanroom.io/component";
pub const AGENT_LABEL_VALUE: &str = "agent";
/// Reporting controller name for Events and field manager for patches.
pub const COMPONENT: &str = "cleanroom-e2e-node";

/// Where the node keeps its state on disk. All paths are absolute so that they can be
/// written into PersistentVolumes and handed to the sandbox helper.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Creates the root directory if needed and resolves it to an absolute path.
    pub fn prepare(root: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating root directory {}", root.display()))?;
        let root = root
            .canonicalize()
            .with_context(|| format!("resolving root directory {}", root.display()))?;
        let layout = Self { root };
        for dir in [
            layout.volumes_dir(),
            layout.pods_dir(),
            layout.pod_logs_dir(),
        ] {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(layout)
    }

    /// A layout over an already absolute root, without touching the disk (for tests).
    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Parent of every provisioned volume directory.
    pub fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }

    pub fn volume_dir(&self, pv_name: &str) -> PathBuf {
        self.volumes_dir().join(pv_name)
    }

    pub fn pods_dir(&self) -> PathBuf {
        self.root.join("pods")
    }

    /// Per-pod scratch space: rootfs skeleton, emptyDirs, projected files, termination log.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir().join(uid)
    }

    pub fn pod_logs_dir(&self) -> PathBuf {
        self.root.join("logs").join("pods")
    }

    pub fn pod_log(&self, namespace: &str, name: &str) -> PathBuf {
        self.pod_logs_dir().join(format!("{namespace}_{name}.log"))
    }
}

/// Everything the node needs besides the client.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub layout: Layout,
    /// The locally built data-plane binary, bound into sandboxes whose command is `agent`.
    pub agent_bin: Option<PathBuf>,
    /// The API server as seen from this machine (host, port), handed to containers as
    /// `KUBERNETES_SERVICE_HOST`/`_PORT` since the `kubernetes` Service IP is not routable here.
    pub api_server: Option<(String, u16)>,
}

/// Runs the provisioner and the pod runner until one of them fails.
pub async fn run(client: kube::Client, config: NodeConfig) -> anyhow::Result<()> {
    let provisioner = provisioner::run(client.clone(), config.layout.clone());
    let runner = runner::run(client, config);
    tokio::try_join!(provisioner, runner)?;
    Ok(())
}

/// `true` when `path` is strictly below `base`, compared component by component.
/// Both must already be normalised (absolute, no `..`), e.g. canonicalised.
pub fn is_strictly_under(base: &Path, path: &Path) -> bool {
    path != base && path.starts_with(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_paths() {
        let l = Layout::at(PathBuf::from("/r"));
        assert_eq!(l.volume_dir("pvc-1"), PathBuf::from("/r/volumes/pvc-1"));
        assert_eq!(l.pod_dir("u"), PathBuf::from("/r/pods/u"));
        assert_eq!(l.pod_log("ns", "p"), PathBuf::from("/r/logs/pods/ns_p.log"));
    }

    #[test]
    fn strictly_under() {
        assert!(is_strictly_under(
            Path::new("/r/volumes"),
            Path::new("/r/volumes/a")
        ));
        assert!(!is_strictly_under(
            Path::new("/r/volumes"),
            Path::new("/r/volumes")
        ));
        assert!(!is_strictly_under(
            Path::new("/r/volumes"),
            Path::new("/r/volumes2/a")
        ));
        assert!(!is_strictly_under(Path::new("/r/volumes"), Path::new("/r")));
    }
}
