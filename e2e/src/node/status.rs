//! Pod status patches, as a kubelet would write them (merge patches on `pods/status`).

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, HostIP, Pod,
    PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::env::POD_IP;

pub const REASON_COMPLETED: &str = "Completed";
pub const REASON_ERROR: &str = "Error";
pub const REASON_DEADLINE: &str = "DeadlineExceeded";
pub const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";
pub const REASON_NODE_RESTARTED: &str = "NodeRestarted";
pub const NODE_RESTARTED_MESSAGE: &str =
    "the e2e node restarted while the container was running; it is not run twice";

/// One run of the container.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub container_id: String,
    pub started_at: Timestamp,
    pub restart_count: i32,
    /// The previous run's end, after a restart.
    pub last_state: Option<ContainerStateTerminated>,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Exit {
    pub exit_code: i32,
    /// Signal that killed the process, if any.
    pub signal: Option<i32>,
    pub message: String,
    pub finished_at: Timestamp,
}

impl Exit {
    pub fn reason(&self) -> &'static str {
        if self.exit_code == 0 {
            REASON_COMPLETED
        } else {
            REASON_ERROR
        }
    }
}

/// A pod-level reason that overrides what the exit code says (deadline, node restart).
#[derive(Clone, Debug, PartialEq)]
pub struct PodFailure {
    pub reason: String,
    pub message: String,
}

pub fn terminated_state(run: &Run, exit: &Exit) -> ContainerStateTerminated {
    ContainerStateTerminated {
        container_id: Some(run.container_id.clone()),
        exit_code: exit.exit_code,
        signal: exit.signal,
        reason: Some(exit.reason().to_string()),
        message: (!exit.message.is_empty()).then(|| exit.message.clone()),
        started_at: Some(Time(run.started_at)),
        finished_at: Some(Time(exit.finished_at)),
    }
}

fn container_status(
    pod: &Pod,
    run: Option<&Run>,
    state: ContainerState,
    ready: bool,
) -> ContainerStatus {
    let container = pod.spec.as_ref().and_then(|s| s.containers.first());
    ContainerStatus {
        name: container.map(|c| c.name.clone()).unwrap_or_default(),
        image: container.and_then(|c| c.image.clone()).unwrap_or_default(),
        image_id: String::new(),
        container_id: run.map(|r| r.container_id.clone()),
        ready,
        started: Some(ready),
        restart_count: run.map_or(0, |r| r.restart_count),
        last_state: run
            .and_then(|r| r.last_state.clone())
            .map(|t| ContainerState {
                terminated: Some(t),
                ..Default::default()
            }),
        state: Some(state),
        ..Default::default()
    }
}

/// The pod's conditions with ours set; others (e.g. `DisruptionTarget` from controllers)
/// are kept, and a condition whose status does not change keeps its transition time.
pub fn conditions(pod: &Pod, running: bool, now: Timestamp) -> Vec<PodCondition> {
    let existing = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let (ready, ready_reason) = if running {
        ("True", None)
    } else {
        ("False", Some("PodCompleted"))
    };
    let ours = [
        ("PodReadyToStartContainers", ready, None),
        ("Initialized", "True", None),
        ("Ready", ready, ready_reason),
        ("ContainersReady", ready, ready_reason),
        ("PodScheduled", "True", None),
    ];
    let mut out: Vec<PodCondition> = existing
        .iter()
        .filter(|c| !ours.iter().any(|(t, _, _)| *t == c.type_))
        .cloned()
        .collect();
    for (type_, status, reason) in ours {
        let old = existing.iter().find(|c| c.type_ == type_);
        let transition = match old {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => Some(Time(now)),
        };
        out.push(PodCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: match (type_, old) {
                // The scheduler's own condition is left as it wrote it.
                ("PodScheduled", Some(c)) => c.reason.clone(),
                _ => reason.map(str::to_string),
            },
            last_transition_time: transition,
            ..Default::default()
        });
    }
    out
}

fn base_status(pod: &Pod, start_time: Timestamp) -> PodStatus {
    PodStatus {
        host_ip: Some(POD_IP.to_string()),
        host_ips: Some(vec![HostIP {
            ip: POD_IP.to_string(),
        }]),
        pod_ip: Some(POD_IP.to_string()),
        pod_ips: Some(vec![PodIP {
            ip: POD_IP.to_string(),
        }]),
        start_time: Some(Time(start_time)),
        qos_class: pod.status.as_ref().and_then(|s| s.qos_class.clone()),
        ..Default::default()
    }
}

fn wrap(status: PodStatus) -> Value {
    json!({ "status": status })
}

/// The container is running.
pub fn running_patch(pod: &Pod, start_time: Timestamp, run: &Run, now: Timestamp) -> Value {
    let state = ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(Time(run.started_at)),
        }),
        ..Default::default()
    };
    wrap(PodStatus {
        phase: Some("Running".to_string()),
        conditions: Some(conditions(pod, true, now)),
        container_statuses: Some(vec![container_status(pod, Some(run), state, true)]),
        ..base_status(pod, start_time)
    })
}

/// The container ended and will not be restarted: the pod is terminal.
pub fn terminated_patch(
    pod: &Pod,
    start_time: Timestamp,
    run: &Run,
    exit: &Exit,
    failure: Option<&PodFailure>,
) -> Value {
    let state = ContainerState {
        terminated: Some(terminated_state(run, exit)),
        ..Default::default()
    };
    let phase = if exit.exit_code == 0 && failure.is_none() {
        "Succeeded"
    } else {
        "Failed"
    };
    let mut status = PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions(pod, false, exit.finished_at)),
        container_statuses: Some(vec![container_status(pod, Some(run), state, false)]),
        ..base_status(pod, start_time)
    };
    if let Some(f) = failure {
        status.reason = Some(f.reason.clone());
        status.message = Some(f.message.clone());
    }
    wrap(status)
}

/// The pod fails without its container ever running (unsupported spec, node restart,
/// deadline while waiting for volumes). The container is reported terminated with 128,
/// what a runtime reports for a container that could not start, so Jobs see a failure.
pub fn failed_patch(
    pod: &Pod,
    start_time: Timestamp,
    failure: &PodFailure,
    now: Timestamp,
) -> Value {
    let state = ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 128,
            reason: Some(failure.reason.clone()),
            message: Some(failure.message.clone()),
            started_at: Some(Time(now)),
            finished_at: Some(Time(now)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let restart_count = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count);
    let mut cs = container_status(pod, None, state, false);
    cs.restart_count = restart_count;
    wrap(PodStatus {
        phase: Some("Failed".to_string()),
        reason: Some(failure.reason.clone()),
        message: Some(failure.message.clone()),
        conditions: Some(conditions(pod, false, now)),
        container_statuses: Some(vec![cs]),
        ..base_status(pod, start_time)
    })
}

/// `true` when the API shows a container that has started (running or terminated).
pub fn container_started(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .any(|c| {
            c.state
                .as_ref()
                .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"nodeName": "n", "containers": [{"name": "agent", "image": "img:1"}]},
            "status": {"phase": "Pending", "qosClass": "BestEffort", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"},
                {"type": "DisruptionTarget", "status": "False"}
            ]}
        }))
        .unwrap()
    }

    fn run() -> Run {
        Run {
            container_id: "e2e-node://u-0".into(),
            started_at: ts("2024-01-01T00:00:10Z"),
            restart_count: 0,
            last_state: None,
        }
    }

    #[test]
    fn running() {
        let p = running_patch(
            &pod(),
            ts("2024-01-01T00:00:05Z"),
            &run(),
            ts("2024-01-01T00:00:10Z"),
        );
        assert_eq!(
            p,
            json!({"status": {
                "phase": "Running",
                "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
                "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
                "qosClass": "BestEffort",
                "startTime": "2024-01-01T00:00:05Z",
                "conditions": [
                    {"type": "DisruptionTarget", "status": "False"},
                    {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2024-01-01T00:00:10Z"},
                    {"type": "Initialized", "status": "True", "lastTransitionTime": "2024-01-01T00:00:10Z"},
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:10Z"},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2024-01-01T00:00:10Z"},
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}
                ],
                "containerStatuses": [{
                    "name": "agent", "image": "img:1", "imageID": "",
                    "containerID": "e2e-node://u-0",
                    "ready": true, "started": true, "restartCount": 0,
                    "state": {"running": {"startedAt": "2024-01-01T00:00:10Z"}}
                }]
            }})
        );
    }

    #[test]
    fn terminated_failed_with_message() {
        let exit = Exit {
            exit_code: 3,
            signal: None,
            message: "done\n".into(),
            finished_at: ts("2024-01-01T00:00:20Z"),
        };
        let p = terminated_patch(&pod(), ts("2024-01-01T00:00:05Z"), &run(), &exit, None);
        let s = &p["status"];
        assert_eq!(s["phase"], "Failed");
        assert_eq!(s.get("reason"), None);
        assert_eq!(
            s["containerStatuses"][0]["state"],
            json!({"terminated": {
                "containerID": "e2e-node://u-0", "exitCode": 3, "reason": "Error",
                "message": "done\n",
                "startedAt": "2024-01-01T00:00:10Z", "finishedAt": "2024-01-01T00:00:20Z"
            }})
        );
        assert_eq!(s["containerStatuses"][0]["ready"], false);
        let ready = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(
            ready,
            &json!({"type": "Ready", "status": "False", "reason": "PodCompleted",
            "lastTransitionTime": "2024-01-01T00:00:20Z"})
        );
    }

    #[test]
    fn terminated_success_and_deadline() {
        let exit = Exit {
            exit_code: 0,
            signal: None,
            message: String::new(),
            finished_at: ts("2024-01-01T00:00:20Z"),
        };
        let p = terminated_patch(&pod(), ts("2024-01-01T00:00:05Z"), &run(), &exit, None);
        assert_eq!(p["status"]["phase"], "Succeeded");
        assert_eq!(
            p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
        assert_eq!(
            p["status"]["containerStatuses"][0]["state"]["terminated"].get("message"),
            None
        );

        let killed = Exit {
            exit_code: 137,
            signal: Some(9),
            ..exit
        };
        let f = PodFailure {
            reason: REASON_DEADLINE.into(),
            message: DEADLINE_MESSAGE.into(),
        };
        let p = terminated_patch(
            &pod(),
            ts("2024-01-01T00:00:05Z"),
            &run(),
            &killed,
            Some(&f),
        );
        assert_eq!(p["status"]["phase"], "Failed");
        assert_eq!(p["status"]["reason"], "DeadlineExceeded");
        assert_eq!(
            p["status"]["containerStatuses"][0]["state"]["terminated"]["signal"],
            9
        );
    }

    #[test]
    fn restart_reports_last_state() {
        let mut r = run();
        r.restart_count = 2;
        r.last_state = Some(ContainerStateTerminated {
            exit_code: 1,
            ..Default::default()
        });
        let p = running_patch(
            &pod(),
            ts("2024-01-01T00:00:05Z"),
            &r,
            ts("2024-01-01T00:00:10Z"),
        );
        let cs = &p["status"]["containerStatuses"][0];
        assert_eq!(cs["restartCount"], 2);
        assert_eq!(cs["lastState"], json!({"terminated": {"exitCode": 1}}));
    }

    #[test]
    fn failed_before_start() {
        let f = PodFailure {
            reason: REASON_NODE_RESTARTED.into(),
            message: NODE_RESTARTED_MESSAGE.into(),
        };
        let p = failed_patch(
            &pod(),
            ts("2024-01-01T00:00:05Z"),
            &f,
            ts("2024-01-01T00:00:30Z"),
        );
        let s = &p["status"];
        assert_eq!(s["phase"], "Failed");
        assert_eq!(s["reason"], "NodeRestarted");
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            128
        );
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["reason"],
            "NodeRestarted"
        );
    }

    #[test]
    fn started_detection() {
        let mut p = pod();
        assert!(!container_started(&p));
        let v = running_patch(
            &p,
            ts("2024-01-01T00:00:05Z"),
            &run(),
            ts("2024-01-01T00:00:10Z"),
        );
        p.status = serde_json::from_value(v["status"].clone()).unwrap();
        assert!(container_started(&p));
    }
}
