//! The agent pod runner: a minimal kubelet for pods labelled `cleanroom.io/component=agent`
//! that the scheduler has bound to a (KWOK) node.
//!
//! One task per pod owns that pod's process. It receives the latest state of its pod over
//! a `watch` channel, so a burst of updates collapses to the newest one, and decides what
//! to do with the pure [`classify`] whenever it has no process running.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::process::Child;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::env::{self, EnvError, EnvSources};
use super::logs::{self, Tail};
use super::sandbox::{self, ContainerMount, SandboxSpec};
use super::status::{self, Exit, PodFailure, Run};
use super::volumes::{self, VolumeError};
use super::{AGENT_LABEL_KEY, AGENT_LABEL_VALUE, COMPONENT, Layout, NodeConfig};

/// Restarts granted to `OnFailure`/`Always` pods before the pod is made terminal. A kubelet
/// would retry forever (CrashLoopBackOff); the e2e node stops so that tests end.
pub const MAX_RESTARTS: i32 = 3;
/// Longest grace a process gets between SIGTERM and SIGKILL.
pub const MAX_GRACE: Duration = Duration::from_secs(5);
/// Where the agent binary goes when the command is a bare `agent`.
pub const AGENT_DEFAULT_PATH: &str = "/usr/local/bin/agent";
const DEFAULT_TERMINATION_PATH: &str = "/dev/termination-log";
const RETRY: Duration = Duration::from_secs(1);

/// What a pod's task should do while it has no process running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The pod is gone from the API: clean up and stop.
    Gone,
    /// Nothing to do until the pod changes.
    Wait,
    /// Deleted and not running here: finish the deletion (grace period 0).
    DeleteNow,
    /// The API says the container started, but not in this process: the node restarted.
    MarkNodeRestarted,
    Start,
}

pub fn is_agent_pod(pod: &Pod) -> bool {
    pod.labels().get(AGENT_LABEL_KEY).map(String::as_str) == Some(AGENT_LABEL_VALUE)
}

pub fn classify(pod: Option<&Pod>, ran_here: bool, delete_issued: bool) -> Action {
    let Some(pod) = pod else { return Action::Gone };
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    if !is_agent_pod(pod) || !scheduled {
        return Action::Wait;
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return if delete_issued {
            Action::Wait
        } else {
            Action::DeleteNow
        };
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) || ran_here {
        return Action::Wait;
    }
    if phase == Some("Running") || status::container_started(pod) {
        return Action::MarkNodeRestarted;
    }
    Action::Start
}

/// Whether a container that exited with `exit_code` is started again.
pub fn should_restart(policy: Option<&str>, exit_code: i32, restarts: i32) -> bool {
    if restarts >= MAX_RESTARTS {
        return false;
    }
    match policy.unwrap_or("Always") {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// The grace period a kill gets: the deletion's, else the pod's, capped at [`MAX_GRACE`].
pub fn grace_period(pod: &Pod, deleting: bool) -> Duration {
    let from_delete = deleting
        .then_some(pod.metadata.deletion_grace_period_seconds)
        .flatten();
    let secs = from_delete
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0);
    Duration::from_secs(secs as u64).min(MAX_GRACE)
}

/// Time left before `activeDeadlineSeconds` (counted from the pod's start) runs out.
pub fn deadline_remaining(pod: &Pod, start: Timestamp, now: Timestamp) -> Option<Duration> {
    let secs = pod.spec.as_ref()?.active_deadline_seconds?;
    let elapsed_ms = now.as_millisecond() - start.as_millisecond();
    let left_ms = secs.saturating_mul(1000).saturating_sub(elapsed_ms).max(0);
    Some(Duration::from_millis(left_ms as u64))
}

/// Where the agent binary is bound for `command[0]`, if the command is the agent.
pub fn agent_target(command0: &str, working_dir: &Path) -> Option<PathBuf> {
    if command0 == "agent" {
        Some(PathBuf::from(AGENT_DEFAULT_PATH))
    } else if command0.ends_with("/agent") {
        Some(sandbox::lexical_normalise(&working_dir.join(command0)))
    } else {
        None
    }
}

/// The user and groups the process runs as: container settings override the pod's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub groups: Vec<u32>,
}

pub fn identity(pod: &Pod, container: &Container) -> Result<Identity, String> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = container.security_context.as_ref();
    let id = |v: Option<i64>, what: &str| -> Result<Option<u32>, String> {
        v.map(|n| u32::try_from(n).map_err(|_| format!("{what} {n} is out of range")))
            .transpose()
    };
    let uid = id(
        sc.and_then(|s| s.run_as_user)
            .or(pod_sc.and_then(|s| s.run_as_user)),
        "runAsUser",
    )?;
    let gid = id(
        sc.and_then(|s| s.run_as_group)
            .or(pod_sc.and_then(|s| s.run_as_group)),
        "runAsGroup",
    )?;
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or(pod_sc.and_then(|s| s.run_as_non_root))
        == Some(true);
    if non_root && uid.unwrap_or(0) == 0 {
        return Err("container has runAsNonRoot and would run as root (there is no image user on the e2e node: set runAsUser)".to_string());
    }
    let mut groups = Vec::new();
    if let Some(fs_group) = id(pod_sc.and_then(|s| s.fs_group), "fsGroup")? {
        groups.push(fs_group);
    }
    for g in pod_sc
        .and_then(|s| s.supplemental_groups.clone())
        .into_iter()
        .flatten()
    {
        if let Some(g) = id(Some(g), "supplementalGroup")? {
            groups.push(g);
        }
    }
    Ok(Identity { uid, gid, groups })
}

/// Why preparing a pod did not produce something to run.
#[derive(Debug, PartialEq)]
enum Prep {
    /// Try again later (claim not bound, secret missing).
    Retry {
        reason: &'static str,
        message: String,
    },
    /// The pod cannot run here.
    Fail(PodFailure),
}

fn fail(reason: &str, message: impl Into<String>) -> Prep {
    Prep::Fail(PodFailure {
        reason: reason.to_string(),
        message: message.into(),
    })
}

/// Everything needed to start (and restart) the pod's process.
struct Prepared {
    spec: SandboxSpec,
    termination_policy: Option<String>,
    restart_policy: Option<String>,
}

struct Ctx {
    client: Client,
    layout: Layout,
    agent_bin: Option<PathBuf>,
    api_server: Option<(String, u16)>,
    recorder: Recorder,
}

pub async fn run(client: Client, config: NodeConfig) -> anyhow::Result<()> {
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), Reporter::from(COMPONENT)),
        client: client.clone(),
        layout: config.layout,
        agent_bin: config.agent_bin,
        api_server: config.api_server,
    });
    let selector = format!("{AGENT_LABEL_KEY}={AGENT_LABEL_VALUE}");
    let mut events = watcher(
        Api::<Pod>::all(client),
        watcher::Config::default().labels(&selector),
    )
    .default_backoff()
    .boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
    let mut listing: Option<HashSet<String>> = None;
    let mut swept = false;
    info!(selector, "agent pod runner started");
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => listing = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                if let (Some(seen), Some(uid)) = (listing.as_mut(), pod.metadata.uid.clone()) {
                    seen.insert(uid);
                }
                dispatch(&ctx, &mut workers, pod);
            }
            Ok(watcher::Event::InitDone) => {
                // Pods that vanished while the watch was down get no Delete event.
                let seen = listing.take().unwrap_or_default();
                for (uid, tx) in &workers {
                    if !seen.contains(uid) {
                        tx.send_replace(None);
                    }
                }
                if !swept {
                    swept = true;
                    sweep_pod_dirs(&ctx.layout, &seen);
                }
            }
            Ok(watcher::Event::Apply(pod)) => dispatch(&ctx, &mut workers, pod),
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(tx) = pod.metadata.uid.as_ref().and_then(|u| workers.get(u)) {
                    tx.send_replace(None);
                }
            }
            Err(e) => warn!(error = %e, "pod watch error"),
        }
        workers.retain(|_, tx| !tx.is_closed());
    }
    anyhow::bail!("pod watch stream ended")
}

fn dispatch(
    ctx: &Arc<Ctx>,
    workers: &mut HashMap<String, watch::Sender<Option<Arc<Pod>>>>,
    pod: Pod,
) {
    let Some(uid) = pod.metadata.uid.clone().filter(|u| valid_uid(u)) else {
        return;
    };
    let pod = Arc::new(pod);
    if let Some(tx) = workers.get(&uid)
        && !tx.is_closed()
    {
        tx.send_replace(Some(pod));
        return;
    }
    // Only pods bound to a node need a task; others get one once they are scheduled.
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
        .is_empty()
    {
        return;
    }
    let (tx, rx) = watch::channel(Some(pod.clone()));
    let worker = Worker {
        ctx: ctx.clone(),
        rx,
        uid: uid.clone(),
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        ran: false,
        delete_issued: false,
        warned: None,
    };
    let span = info_span!("pod", pod = %format!("{}/{}", worker.namespace, worker.name));
    tokio::spawn(worker.run().instrument(span));
    workers.insert(uid, tx);
}

/// Pod UIDs become directory names: accept only plain names.
fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid != "."
        && uid != ".."
        && uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Mount points under `dir` in this process' mount namespace (there should be none: the
/// sandbox mounts live in the children's namespaces).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect()
}

fn remove_pod_dir(layout: &Layout, uid: &str) {
    if !valid_uid(uid) {
        return;
    }
    let dir = layout.pod_dir(uid);
    let mounted = mounts_under(&dir);
    if !mounted.is_empty() {
        error!(dir = %dir.display(), ?mounted, "not removing a pod directory with mounts in it");
        return;
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => debug!(dir = %dir.display(), "removed pod directory"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(dir = %dir.display(), error = %e, "failed to remove pod directory"),
    }
}

/// Removes directories of pods that no longer exist (left by an earlier run).
fn sweep_pod_dirs(layout: &Layout, live: &HashSet<String>) {
    let Ok(entries) = std::fs::read_dir(layout.pods_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if let Some(uid) = entry.file_name().to_str()
            && !live.contains(uid)
        {
            remove_pod_dir(layout, uid);
        }
    }
}

struct Worker {
    ctx: Arc<Ctx>,
    rx: watch::Receiver<Option<Arc<Pod>>>,
    uid: String,
    namespace: String,
    name: String,
    /// This task has run (or failed) the pod: stale `Pending`/`Running` views are ignored.
    ran: bool,
    delete_issued: bool,
    /// The last retry message reported as an Event, to record each only once.
    warned: Option<String>,
}

/// How one run of the process ended.
enum Ending {
    Exited(std::process::ExitStatus),
    /// Deleted from the API (force-deleted): nothing to report to.
    Gone(std::process::ExitStatus),
    Deleted(std::process::ExitStatus),
    Deadline(std::process::ExitStatus),
}

impl Worker {
    fn api(&self) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), &self.namespace)
    }

    fn latest(&self) -> Option<Arc<Pod>> {
        self.rx.borrow().clone()
    }

    async fn run(mut self) {
        loop {
            let pod = self.rx.borrow_and_update().clone();
            let mut retry_soon = false;
            match classify(pod.as_deref(), self.ran, self.delete_issued) {
                Action::Gone => {
                    remove_pod_dir(&self.ctx.layout, &self.uid);
                    debug!("pod gone");
                    return;
                }
                Action::Wait => {}
                Action::DeleteNow => retry_soon = !self.delete_now().await,
                Action::MarkNodeRestarted => {
                    if let Some(pod) = pod {
                        self.ran = true;
                        warn!(
                            "pod shows a started container this node does not run; marking it failed"
                        );
                        let failure = PodFailure {
                            reason: status::REASON_NODE_RESTARTED.to_string(),
                            message: status::NODE_RESTARTED_MESSAGE.to_string(),
                        };
                        let now = Timestamp::now();
                        let patch =
                            status::failed_patch(&pod, start_time(&pod, now), &failure, now);
                        self.patch_status(patch).await;
                    }
                }
                Action::Start => {
                    if let Some(pod) = pod {
                        self.ran = true;
                        self.run_pod(pod).await;
                        continue;
                    }
                }
            }
            if retry_soon {
                tokio::select! {
                    _ = self.rx.changed() => {}
                    _ = tokio::time::sleep(RETRY * 2) => {}
                }
            } else if self.rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Deletes the pod with grace period 0 (its process is gone). `false` means retry.
    async fn delete_now(&mut self) -> bool {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.api().delete(&self.name, &dp).await {
            Ok(_) => info!("deleted pod"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                warn!(error = %e, "failed to delete pod");
                return false;
            }
        }
        self.delete_issued = true;
        remove_pod_dir(&self.ctx.layout, &self.uid);
        true
    }

    /// Patches the status, retrying while the pod exists. `false` if it never went through.
    async fn patch_status(&self, mut patch: Value) -> bool {
        // The uid acts as a precondition: a recreated pod of the same name is left alone.
        patch["metadata"] = serde_json::json!({ "uid": self.uid });
        let pp = PatchParams {
            field_manager: Some(COMPONENT.to_string()),
            ..Default::default()
        };
        for attempt in 0..30u32 {
            match self
                .api()
                .patch_status(&self.name, &pp, &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return true,
                Err(kube::Error::Api(s)) if s.code == 404 => return false,
                Err(e) => {
                    warn!(error = %e, attempt, "failed to patch pod status");
                    if self.latest().is_none() {
                        return false;
                    }
                    tokio::time::sleep(RETRY * (attempt + 1).min(5)).await;
                }
            }
        }
        false
    }

    async fn event(&self, pod: &Pod, type_: EventType, reason: &str, note: &str) {
        let ev = KubeEvent {
            type_,
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: "Run".to_string(),
            secondary: None,
        };
        if let Err(e) = self.ctx.recorder.publish(&ev, &pod.object_ref(&())).await {
            debug!(error = %e, "failed to record event");
        }
    }

    async fn fail_pod(&self, pod: &Pod, start: Timestamp, failure: PodFailure) {
        warn!(reason = %failure.reason, message = %failure.message, "pod failed before its container ran");
        self.event(pod, EventType::Warning, &failure.reason, &failure.message)
            .await;
        let patch = status::failed_patch(pod, start, &failure, Timestamp::now());
        self.patch_status(patch).await;
    }

    /// Prepares, runs (and restarts) the pod's process and reports its end.
    async fn run_pod(&mut self, pod: Arc<Pod>) {
        let start = start_time(&pod, Timestamp::now());
        let started_instant = Instant::now();
        let deadline =
            deadline_remaining(&pod, start, Timestamp::now()).map(|d| started_instant + d);
        let deadline_failure = || PodFailure {
            reason: status::REASON_DEADLINE.to_string(),
            message: status::DEADLINE_MESSAGE.to_string(),
        };

        let prepared = loop {
            let pod = self.latest().unwrap_or_else(|| pod.clone());
            match self.prepare(&pod).await {
                Ok(p) => break p,
                Err(Prep::Fail(failure)) => return self.fail_pod(&pod, start, failure).await,
                Err(Prep::Retry { reason, message }) => {
                    if self.warned.as_deref() != Some(message.as_str()) {
                        info!(reason, message = %message, "waiting before the container can start");
                        self.event(&pod, EventType::Warning, reason, &message).await;
                        self.warned = Some(message);
                    }
                }
            }
            tokio::select! {
                _ = self.rx.changed() => {
                    let latest = self.latest();
                    if latest.as_ref().is_none_or(|p| p.metadata.deletion_timestamp.is_some()) {
                        return; // the main loop deletes it
                    }
                }
                _ = tokio::time::sleep(RETRY) => {}
                _ = sleep_until_opt(deadline) => {
                    return self.fail_pod(&pod, start, deadline_failure()).await;
                }
            }
        };

        let log_path = self.ctx.layout.pod_log(&self.namespace, &self.name);
        let mut restart_count = 0;
        let mut last_state = None;
        loop {
            let pod = self.latest().unwrap_or_else(|| pod.clone());
            let run = Run {
                container_id: format!("e2e-node://{}-{restart_count}", self.uid),
                started_at: Timestamp::now(),
                restart_count,
                last_state: last_state.clone(),
            };
            let tail = Arc::new(Mutex::new(Tail::default()));
            let (mut child, output_done) = match self.spawn(&prepared.spec, &log_path, tail.clone())
            {
                Ok(x) => x,
                Err(e) => {
                    return self
                        .fail_pod(
                            &pod,
                            start,
                            PodFailure {
                                reason: "StartError".to_string(),
                                message: format!("starting the sandbox: {e:#}"),
                            },
                        )
                        .await;
                }
            };
            let pid = child.id().and_then(|p| i32::try_from(p).ok());
            info!(pid, restart_count, "container started");
            let patch = status::running_patch(&pod, start, &run, Timestamp::now());
            // Runs concurrently with the process, which must not wait for the API server.
            let mut rx = self.rx.clone();
            let (_, ending) = tokio::join!(
                self.patch_status(patch),
                supervise(&mut child, pid, &mut rx, deadline)
            );
            if let Some(pid) = pid {
                // Stragglers of the process group go with it, as with a container's cgroup.
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            // Give the output pump a moment to drain what is left in the pipe.
            let _ = tokio::time::timeout(Duration::from_secs(2), output_done).await;

            let status_of = |s: &std::process::ExitStatus| {
                use std::os::unix::process::ExitStatusExt;
                match (s.code(), s.signal()) {
                    (Some(c), _) => (c, None),
                    (None, Some(sig)) => (128 + sig, Some(sig)),
                    (None, None) => (128, None),
                }
            };
            let (exit_status, failure, deleted) = match &ending {
                Ending::Gone(s) => {
                    info!(exit = ?s, "pod vanished from the API; process stopped");
                    remove_pod_dir(&self.ctx.layout, &self.uid);
                    return;
                }
                Ending::Exited(s) => (s, None, false),
                Ending::Deleted(s) => (s, None, true),
                Ending::Deadline(s) => (s, Some(deadline_failure()), false),
            };
            let (exit_code, signal) = status_of(exit_status);
            let message_file = self.ctx.layout.pod_dir(&self.uid).join("termination-log");
            let file_content = logs::read_termination_message(&message_file).unwrap_or_else(|e| {
                warn!(error = %e, "cannot read the termination message");
                String::new()
            });
            let output = tail.lock().map(|t| t.bytes()).unwrap_or_default();
            let exit = Exit {
                exit_code,
                signal,
                message: logs::termination_message(
                    file_content,
                    exit_code != 0,
                    prepared.termination_policy.as_deref(),
                    &output,
                ),
                finished_at: Timestamp::now(),
            };
            info!(exit_code, ?signal, deleted, "container exited");

            let restart = !deleted
                && failure.is_none()
                && should_restart(prepared.restart_policy.as_deref(), exit_code, restart_count);
            if restart {
                last_state = Some(status::terminated_state(&run, &exit));
                restart_count += 1;
                let backoff = RETRY * 2u32.pow(restart_count.clamp(1, 4) as u32 - 1);
                let mut rx = self.rx.clone();
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => continue,
                    _ = wait_deleted(&mut rx) => {
                        // Deleted while backing off: report the last run and let the
                        // main loop finish the deletion.
                    }
                }
            }
            let latest = self.latest().unwrap_or(pod);
            let patch = status::terminated_patch(&latest, start, &run, &exit, failure.as_ref());
            self.patch_status(patch).await;
            if deleted {
                self.delete_now().await;
            }
            return;
        }
    }

    /// Resolves everything the process needs: volumes, environment, command and rootfs plan.
    async fn prepare(&self, pod: &Pod) -> Result<Prepared, Prep> {
        let spec = pod
            .spec
            .as_ref()
            .ok_or_else(|| fail("UnsupportedPodSpec", "pod has no spec"))?;
        if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
            return Err(fail(
                "UnsupportedPodSpec",
                "the e2e node does not run init containers",
            ));
        }
        let container = match spec.containers.as_slice() {
            [c] => c,
            cs => {
                return Err(fail(
                    "UnsupportedPodSpec",
                    format!(
                        "the e2e node runs pods with exactly one container, this one has {}",
                        cs.len()
                    ),
                ));
            }
        };
        let id = identity(pod, container).map_err(|m| fail("CreateContainerConfigError", m))?;

        let volumes = volumes::resolve_volumes(&self.ctx.client, &self.ctx.layout, pod)
            .await
            .map_err(|e| match e {
                VolumeError::NotReady(m) => Prep::Retry {
                    reason: "FailedMount",
                    message: m,
                },
                VolumeError::Unsupported(m) => fail("UnsupportedVolume", m),
            })?;

        let (secret_names, cm_names) = env::referenced_sources(container);
        let mut sources = EnvSources::default();
        let retry = |e: VolumeError| match e {
            VolumeError::NotReady(m) | VolumeError::Unsupported(m) => Prep::Retry {
                reason: "CreateContainerConfigError",
                message: m,
            },
        };
        for name in secret_names {
            let data = volumes::fetch_secret(&self.ctx.client, &self.namespace, &name)
                .await
                .map_err(retry)?;
            sources.secrets.insert(name, data);
        }
        for name in cm_names {
            let data = volumes::fetch_config_map(&self.ctx.client, &self.namespace, &name)
                .await
                .map_err(retry)?;
            sources.config_maps.insert(name, data);
        }
        let defaults = env::default_env(
            &self.name,
            id.uid.unwrap_or(0),
            self.ctx.api_server.as_ref(),
        );
        let env = env::container_env(pod, container, &sources, defaults).map_err(|e| match e {
            EnvError::Missing(m) => Prep::Retry {
                reason: "CreateContainerConfigError",
                message: m,
            },
            EnvError::Unsupported(m) => fail("CreateContainerConfigError", m),
        })?;

        if container.command.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(fail(
                "UnsupportedPodSpec",
                "the container must set command: the e2e node has no images, so there is no entrypoint",
            ));
        }
        let argv = env::expand_command(container, &env);
        let working_dir = PathBuf::from(
            container
                .working_dir
                .as_deref()
                .filter(|w| !w.is_empty())
                .unwrap_or("/"),
        );
        if !working_dir.is_absolute() {
            return Err(fail("UnsupportedPodSpec", "workingDir must be absolute"));
        }

        let planned = volumes::container_mounts(container, &volumes, &env)
            .map_err(|m| fail("CreateContainerConfigError", m))?;
        let mut mounts: Vec<ContainerMount> = Vec::with_capacity(planned.len() + 2);
        for p in &planned {
            volumes::prepare_sub_path(p).map_err(|m| fail("CreateContainerConfigError", m))?;
            mounts.push(p.mount.clone());
        }
        let mut program = None;
        if let Some(target) = argv.first().and_then(|c| agent_target(c, &working_dir)) {
            let bin = self.ctx.agent_bin.clone().ok_or_else(|| {
                fail(
                    "AgentBinaryMissing",
                    "the command is the agent but the e2e node was started without --agent-bin",
                )
            })?;
            mounts.push(ContainerMount {
                src: bin,
                dst: target.clone(),
                read_only: true,
            });
            program = Some(target);
        }
        let termination_path = container
            .termination_message_path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_TERMINATION_PATH.to_string());
        let pod_dir = self.ctx.layout.pod_dir(&self.uid);
        let termination_file = pod_dir.join("termination-log");
        mounts.push(ContainerMount {
            src: termination_file.clone(),
            dst: PathBuf::from(termination_path),
            read_only: false,
        });
        // The host file must exist for the plan's bind (its type decides the mount point).
        create_termination_file(&termination_file).map_err(|e| Prep::Retry {
            reason: "FailedCreatePodSandBox",
            message: format!("creating {}: {e}", termination_file.display()),
        })?;
        let ops = sandbox::plan_rootfs(&sandbox::RealFs, &mounts)
            .map_err(|m| fail("CreateContainerConfigError", m))?;

        Ok(Prepared {
            spec: SandboxSpec {
                rootfs: pod_dir.join("rootfs"),
                ops,
                working_dir,
                argv,
                program,
                env: env.into_vec(),
                uid: id.uid,
                gid: id.gid,
                supplemental_groups: id.groups,
                termination_message_file: Some(termination_file),
            },
            termination_policy: container.termination_message_policy.clone(),
            restart_policy: spec.restart_policy.clone(),
        })
    }

    /// Starts `sandbox-exec` for the spec, with its output going to the log file and tail.
    fn spawn(
        &self,
        spec: &SandboxSpec,
        log_path: &Path,
        tail: Arc<Mutex<Tail>>,
    ) -> anyhow::Result<(Child, oneshot::Receiver<()>)> {
        let pod_dir = self.ctx.layout.pod_dir(&self.uid);
        std::fs::create_dir_all(&pod_dir)?;
        if let Some(file) = &spec.termination_message_file {
            // A fresh message for every run.
            create_termination_file(file)?;
            std::fs::File::create(file)?;
        }
        // Rebuilt for every run; on the host it holds only empty mount points.
        let rootfs = &spec.rootfs;
        if !mounts_under(rootfs).is_empty() {
            anyhow::bail!("{} has mounts in the runner's namespace", rootfs.display());
        }
        match std::fs::remove_dir_all(rootfs) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let spec_path = pod_dir.join("sandbox-spec.json");
        // The spec carries the environment (secrets): owner-only, removed by the helper.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&spec_path)?;
        f.write_all(&serde_json::to_vec(spec)?)?;
        drop(f);

        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)?;
        let (reader, writer) = std::io::pipe()?;
        let mut cmd = tokio::process::Command::new("/proc/self/exe");
        cmd.arg("sandbox-exec")
            .arg("--spec")
            .arg(&spec_path)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(writer.try_clone()?)
            .stderr(writer)
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn()?;
        // Our copies of the write end must go, or the pump never sees end-of-file.
        drop(cmd);
        let (tx, rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("pod-output".to_string())
            .spawn(move || pump_output(reader, log, &tail, tx))?;
        Ok((child, rx))
    }
}

fn create_termination_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // Writable by whatever user the container runs as.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
}

fn pump_output(
    mut reader: std::io::PipeReader,
    mut log: std::fs::File,
    tail: &Mutex<Tail>,
    done: oneshot::Sender<()>,
) {
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let _ = log.write_all(&buf[..n]);
                if let Ok(mut t) = tail.lock() {
                    t.push(&buf[..n]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = done.send(());
}

fn start_time(pod: &Pod, now: Timestamp) -> Timestamp {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map_or(now, |t| t.0)
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Resolves once the pod is gone or being deleted.
async fn wait_deleted(rx: &mut watch::Receiver<Option<Arc<Pod>>>) {
    loop {
        if rx
            .borrow_and_update()
            .as_ref()
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
        {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Waits for the process to exit, stopping it when the pod is deleted or its deadline passes.
async fn supervise(
    child: &mut Child,
    pid: Option<i32>,
    rx: &mut watch::Receiver<Option<Arc<Pod>>>,
    deadline: Option<Instant>,
) -> Ending {
    let result = tokio::select! {
        status = child.wait() => return match status {
            Ok(s) => Ending::Exited(s),
            Err(e) => {
                error!(error = %e, "waiting for the process failed");
                Ending::Exited(std::os::unix::process::ExitStatusExt::from_raw(128 << 8))
            }
        },
        _ = wait_deleted(rx) => {
            match rx.borrow().clone() {
                Some(pod) => (grace_period(&pod, true), true),
                None => (Duration::ZERO, false),
            }
        }
        _ = sleep_until_opt(deadline) => {
            let grace = rx.borrow().as_deref().map_or(Duration::ZERO, |p| grace_period(p, false));
            info!("active deadline exceeded; stopping the container");
            let status = stop(child, pid, grace).await;
            return Ending::Deadline(status);
        }
    };
    let (grace, still_there) = result;
    info!(
        grace_secs = grace.as_secs(),
        "pod deleted; stopping the container"
    );
    let status = stop(child, pid, grace).await;
    if still_there {
        Ending::Deleted(status)
    } else {
        Ending::Gone(status)
    }
}

/// SIGTERM to the process group, SIGKILL after `grace`.
async fn stop(child: &mut Child, pid: Option<i32>, grace: Duration) -> std::process::ExitStatus {
    let signal_group = |sig: Signal| {
        if let Some(pid) = pid {
            let _ = killpg(Pid::from_raw(pid), sig);
        }
    };
    if !grace.is_zero() {
        signal_group(Signal::SIGTERM);
        if let Ok(Ok(status)) = tokio::time::timeout(grace, child.wait()).await {
            return status;
        }
    }
    signal_group(Signal::SIGKILL);
    let _ = child.start_kill();
    child
        .wait()
        .await
        .unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(Signal::SIGKILL as i32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(extra: Value) -> Pod {
        let mut v = json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                "labels": {AGENT_LABEL_KEY: AGENT_LABEL_VALUE}},
            "spec": {"nodeName": "kwok-0", "containers": [{"name": "agent"}]},
            "status": {"phase": "Pending"}
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    // null removes a key, as in a JSON merge patch
                    if v.is_null() {
                        a.remove(&k);
                    } else {
                        merge(a.entry(k).or_insert(Value::Null), v);
                    }
                }
            }
            (a, b) => *a = b,
        }
    }

    #[test]
    fn classification() {
        assert_eq!(classify(None, false, false), Action::Gone);
        assert_eq!(classify(Some(&pod(json!({}))), false, false), Action::Start);
        assert_eq!(classify(Some(&pod(json!({}))), true, false), Action::Wait);
        let unscheduled = pod(json!({"spec": {"nodeName": null}}));
        assert_eq!(classify(Some(&unscheduled), false, false), Action::Wait);
        let other = pod(json!({"metadata": {"labels": {AGENT_LABEL_KEY: "operator"}}}));
        assert_eq!(classify(Some(&other), false, false), Action::Wait);
        let deleting = pod(json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}));
        assert_eq!(classify(Some(&deleting), false, false), Action::DeleteNow);
        assert_eq!(classify(Some(&deleting), true, true), Action::Wait);
        let running = pod(json!({"status": {"phase": "Running"}}));
        assert_eq!(
            classify(Some(&running), false, false),
            Action::MarkNodeRestarted
        );
        assert_eq!(classify(Some(&running), true, false), Action::Wait);
        let started = pod(
            json!({"status": {"containerStatuses": [{"name": "agent", "image": "", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"running": {}}}]}}),
        );
        assert_eq!(
            classify(Some(&started), false, false),
            Action::MarkNodeRestarted
        );
        let done = pod(json!({"status": {"phase": "Failed"}}));
        assert_eq!(classify(Some(&done), false, false), Action::Wait);
    }

    #[test]
    fn restart_policy() {
        assert!(!should_restart(Some("Never"), 1, 0));
        assert!(should_restart(Some("OnFailure"), 1, 0));
        assert!(!should_restart(Some("OnFailure"), 0, 0));
        assert!(!should_restart(Some("OnFailure"), 1, MAX_RESTARTS));
        assert!(should_restart(None, 0, 2));
        assert!(!should_restart(Some("Always"), 0, MAX_RESTARTS));
    }

    #[test]
    fn grace_periods() {
        let p = pod(json!({"spec": {"terminationGracePeriodSeconds": 2}}));
        assert_eq!(grace_period(&p, false), Duration::from_secs(2));
        assert_eq!(grace_period(&pod(json!({})), false), MAX_GRACE);
        let d = pod(json!({"metadata": {"deletionGracePeriodSeconds": 1},
            "spec": {"terminationGracePeriodSeconds": 2}}));
        assert_eq!(grace_period(&d, true), Duration::from_secs(1));
        assert_eq!(grace_period(&d, false), Duration::from_secs(2));
    }

    #[test]
    fn deadlines() {
        let p = pod(json!({"spec": {"activeDeadlineSeconds": 10}}));
        let start: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let now: Timestamp = "2024-01-01T00:00:04Z".parse().unwrap();
        assert_eq!(
            deadline_remaining(&p, start, now),
            Some(Duration::from_secs(6))
        );
        let late: Timestamp = "2024-01-01T00:01:00Z".parse().unwrap();
        assert_eq!(deadline_remaining(&p, start, late), Some(Duration::ZERO));
        assert_eq!(deadline_remaining(&pod(json!({})), start, now), None);
    }

    #[test]
    fn agent_targets() {
        let wd = Path::new("/work");
        assert_eq!(
            agent_target("agent", wd),
            Some(PathBuf::from("/usr/local/bin/agent"))
        );
        assert_eq!(
            agent_target("/app/agent", wd),
            Some(PathBuf::from("/app/agent"))
        );
        assert_eq!(
            agent_target("bin/agent", wd),
            Some(PathBuf::from("/work/bin/agent"))
        );
        assert_eq!(agent_target("sh", wd), None);
        assert_eq!(agent_target("/usr/bin/reagent", wd), None);
    }

    #[test]
    fn identities() {
        let c = |v: Value| -> Container { serde_json::from_value(v).unwrap() };
        let p = pod(
            json!({"spec": {"securityContext": {"runAsUser": 1000, "runAsGroup": 1000,
            "fsGroup": 2000, "supplementalGroups": [3000]}}}),
        );
        assert_eq!(
            identity(
                &p,
                &c(json!({"name": "a", "securityContext": {"runAsUser": 1001}}))
            )
            .unwrap(),
            Identity {
                uid: Some(1001),
                gid: Some(1000),
                groups: vec![2000, 3000]
            }
        );
        assert_eq!(
            identity(&pod(json!({})), &c(json!({"name": "a"}))).unwrap(),
            Identity::default()
        );
        let nonroot = c(json!({"name": "a", "securityContext": {"runAsNonRoot": true}}));
        assert!(identity(&pod(json!({})), &nonroot).is_err());
        let negative = c(json!({"name": "a", "securityContext": {"runAsUser": -1}}));
        assert!(identity(&pod(json!({})), &negative).is_err());
    }

    #[test]
    fn uids_are_plain_names() {
        assert!(valid_uid("0d6f0b3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"));
        assert!(!valid_uid(".."));
        assert!(!valid_uid("a/b"));
        assert!(!valid_uid(""));
    }
}
