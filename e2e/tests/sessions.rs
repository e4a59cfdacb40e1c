//! Who entered a workspace (R11, R13; docs/requirements.md): the local
//! kube-apiserver sends the audit events of `pods/exec`, `attach`,
//! `portforward` and `ephemeralcontainers` to the operator's webhook
//! (`manifests/audit/policy.yaml`, `--audit-webhook-mode=blocking-strict`,
//! `e2e/scripts/cluster.sh`), which appends one `session-opened` record per
//! request into a `cr-*` namespace.
//!
//! The e2e node runs no container runtime for workspace pods (KWOK only
//! marks them Running), so an exec is authorized by the API server, which
//! opens the stream (code 101 for kubectl's websocket) and then fails to
//! reach the node. The record is still the record of who tried to enter,
//! which is what is asked; whether the command ran is the node's to say.
//!
//! Needs the local control plane and the operator beside it
//! (`e2e/scripts/operator.sh restart`, or `make e2e`).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use cleanroom::audit::{Action, Record};
use cleanroom_e2e::harness::{cluster_dir, kubectl, unique_name};
use common::{ALICE, T, ledger_records, namespace_of, operator, run_cleanroom, with_fixture};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::RwLock;

/// Someone who is no member of any test authorization.
const MALLORY: &str = "mallory@acme.example";

/// The test that stops the operator takes this for writing; the others
/// for reading, so that none of them runs while the operator is down.
static OPERATOR_UP: RwLock<()> = RwLock::const_new(());

/// A workspace pod of `ns` once KWOK has it Running.
async fn running_pod(client: &Client, ns: &str) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels("cleanroom.io/component=workspace");
    let deadline = Instant::now() + T;
    loop {
        let running = pods
            .list(&lp)
            .await?
            .items
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        if let Some(p) = running {
            return Ok(p.name_any());
        }
        ensure!(
            Instant::now() < deadline,
            "no running workspace pod in {ns}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `kubectl exec --as USER` into the pod; returns (success, stderr).
fn exec_as(user: &str, ns: &str, pod: &str) -> Result<(bool, String)> {
    let out = kubectl()?
        .args([
            "--request-timeout=30s",
            "--as",
            user,
            "exec",
            "-n",
            ns,
            pod,
            "--",
            "true",
        ])
        .output()
        .context("running kubectl exec")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A bare exec request as `user` (`kubectl create --raw`): for someone
/// RBAC refuses even the pod's GET that `kubectl exec` makes first.
fn raw_exec_as(user: &str, ns: &str, pod: &str) -> Result<(bool, String)> {
    let path = format!("/api/v1/namespaces/{ns}/pods/{pod}/exec?command=true&stdout=true");
    let out = kubectl()?
        .args([
            "--request-timeout=30s",
            "--as",
            user,
            "create",
            "--raw",
            &path,
            "-f",
            "/dev/null",
        ])
        .output()
        .context("running kubectl create --raw")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The session records of the scenario `name`, in chain order.
async fn sessions_of(client: &Client, name: &str) -> Result<Vec<Record>> {
    Ok(ledger_records(client, common::AUDIT_NAMESPACE)
        .await?
        .into_iter()
        .filter(|r| r.action == Action::SessionOpened && r.name == name)
        .collect())
}

/// Waits until the scenario `name` has a session record by `user`.
async fn wait_session(client: &Client, name: &str, user: &str) -> Result<Vec<Record>> {
    let deadline = Instant::now() + T;
    loop {
        let all = sessions_of(client, name).await?;
        if all.iter().any(|r| r.actor == user) {
            return Ok(all);
        }
        if Instant::now() > deadline {
            bail!("no session-opened record of {user} in {name}; records: {all:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn after<'a>(r: &'a Record, field: &str) -> Option<&'a Value> {
    r.after.as_ref().and_then(|a| a.get(field))
}

#[tokio::test]
async fn kubectl_exec_as_a_member_is_recorded_once_naming_that_member() -> Result<()> {
    let _up = OPERATOR_UP.read().await;
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let scenario = fx.ready_scenario(&authz, |_| {}).await?;
        let name = scenario.name_any();
        let uid = scenario.metadata.uid.clone().unwrap_or_default();
        let ns = namespace_of(&name);
        let pod = running_pod(&fx.client, &ns).await?;

        let (_, alice_err) = exec_as(ALICE, &ns, &pod)?;
        ensure!(
            !alice_err.contains("failed to store audit event"),
            "the operator took the exec's audit event: {alice_err}"
        );
        wait_session(&fx.client, &name, ALICE).await?;
        // A later request, by someone RBAC refuses: once its record is in,
        // every stage and retry of Alice's request has been delivered
        // (blocking-strict: each stage before the request goes on).
        let (mallory_ok, _) = raw_exec_as(MALLORY, &ns, &pod)?;
        ensure!(!mallory_ok, "a non-member entered {ns}");
        let all = wait_session(&fx.client, &name, MALLORY).await?;

        let alice: Vec<&Record> = all.iter().filter(|r| r.actor == ALICE).collect();
        ensure!(alice.len() == 1, "exactly one record of alice's exec: {alice:#?}");
        let r = alice[0];
        ensure!(r.kind == "Scenario" && r.uid == uid, "on the scenario: {r:?}");
        ensure!(r.authorization.as_deref() == Some(authz.as_str()), "{r:?}");
        ensure!(after(r, "pod") == Some(&json!(pod)), "{r:?}");
        ensure!(after(r, "namespace") == Some(&json!(ns)), "{r:?}");
        ensure!(after(r, "subresource") == Some(&json!("exec")), "{r:?}");
        ensure!(after(r, "user") == Some(&json!(ALICE)), "{r:?}");
        ensure!(
            after(r, "impersonatedBy") == Some(&json!("cleanroom-e2e-admin")),
            "who vouched for the impersonation: {r:?}"
        );
        ensure!(
            after(r, "auditId").and_then(Value::as_str).is_some_and(|id| !id.is_empty())
                && r.key == format!("session/{}", after(r, "auditId").and_then(Value::as_str).unwrap_or("")),
            "keyed by its audit ID: {r:?}"
        );
        ensure!(
            after(r, "code").and_then(Value::as_i64).is_some_and(|c| c != 403),
            "alice is a member: RBAC let her through: {r:?}"
        );
        let line = r.line();
        ensure!(!line.contains("command") && !line.contains("true"), "no command's data: {line}");

        let m: Vec<&Record> = all.iter().filter(|r| r.actor == MALLORY).collect();
        ensure!(m.len() == 1, "one record of mallory's attempt: {m:#?}");
        ensure!(after(m[0], "code") == Some(&json!(403)), "refused by RBAC: {:?}", m[0]);
        ensure!(
            m[0].reason.as_deref().is_some_and(|r| r.contains("did not open")),
            "{:?}",
            m[0]
        );

        // The report counts them per scenario and user.
        let since = common::rfc3339(common::seconds_from_now(-3600)?);
        let out = run_cleanroom(&["report", "--since", &since, "-o", "json"])?;
        ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout)?;
        let sessions = report["authorizations"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["name"] == json!(authz)))
            .map(|a| a["sessions"].clone())
            .context("the authorization in the report")?;
        ensure!(
            sessions
                == json!([
                    {"scenario": name, "user": ALICE, "sessions": 1, "notOpened": u64::from(after(r, "code").and_then(Value::as_i64).is_some_and(|c| c >= 400))},
                    {"scenario": name, "user": MALLORY, "sessions": 1, "notOpened": 1},
                ]),
            "report: {sessions}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn port_forward_and_attach_as_a_member_are_recorded_too() -> Result<()> {
    let _up = OPERATOR_UP.read().await;
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let scenario = fx.ready_scenario(&authz, |_| {}).await?;
        let name = scenario.name_any();
        let ns = namespace_of(&name);
        let pod = running_pod(&fx.client, &ns).await?;
        for args in [
            vec!["attach", "-n", &ns, &pod],
            vec!["port-forward", "-n", &ns, &pod, "0:8888"],
        ] {
            // Neither can complete on this node; each is still a request
            // the API server authorized, and it ends (no stream opens).
            let _ = kubectl()?
                .args(["--request-timeout=20s", "--as", ALICE])
                .args(&args)
                .stdin(std::process::Stdio::null())
                .output()?;
        }
        let deadline = Instant::now() + T;
        loop {
            let subs: Vec<String> = sessions_of(&fx.client, &name)
                .await?
                .iter()
                .filter(|r| r.actor == ALICE)
                .filter_map(|r| {
                    after(r, "subresource")
                        .and_then(Value::as_str)
                        .map(String::from)
                })
                .collect();
            if subs.iter().any(|s| s == "attach") && subs.iter().any(|s| s == "portforward") {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "attach and port-forward not both recorded: {subs:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    })
    .await
}

/// The webhook's address and the certificates cluster.sh made.
fn webhook() -> Result<(String, PathBuf)> {
    let env = std::fs::read_to_string(cluster_dir().join("cluster.env"))?;
    let port = env
        .lines()
        .find_map(|l| l.strip_prefix("SESSIONS_PORT="))
        .context(
            "no SESSIONS_PORT in cluster.env: restart the cluster (make cluster-down cluster-up)",
        )?;
    Ok((
        format!("https://127.0.0.1:{port}/audit"),
        cluster_dir().join("pki"),
    ))
}

/// POSTs `body` to the webhook with curl and the client certificate
/// `cert` (none when `None`); returns the HTTP code curl saw ("000": no
/// HTTP answer) and its error output.
fn post(body: &str, cert: Option<&str>) -> Result<(String, String)> {
    let (url, pki) = webhook()?;
    let mut curl = Command::new("curl");
    curl.args([
        "-sS",
        "--max-time",
        "20",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ])
    .arg("--cacert")
    .arg(pki.join("sessions-ca.crt"))
    .args([
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        body,
    ]);
    if let Some(c) = cert {
        curl.arg("--cert")
            .arg(pki.join(format!("{c}.crt")))
            .arg("--key")
            .arg(pki.join(format!("{c}.key")));
    }
    let out = curl.arg(url).output().context("running curl")?;
    Ok((
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// An audit event list saying `user` exec'd into `pod` in `ns`.
fn forged(id: &str, user: &str, ns: &str, pod: &str) -> String {
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": [{
        "level": "Metadata", "auditID": id, "stage": "ResponseComplete", "verb": "create",
        "user": {"username": user, "groups": ["system:authenticated"]},
        "objectRef": {"resource": "pods", "namespace": ns, "name": pod, "apiVersion": "v1", "subresource": "exec"},
        "responseStatus": {"metadata": {}, "code": 101},
        "requestReceivedTimestamp": "2026-01-01T00:00:00.000000Z"
    }]})
    .to_string()
}

#[tokio::test]
async fn a_forged_post_without_the_api_servers_certificate_is_refused_and_writes_nothing()
-> Result<()> {
    let _up = OPERATOR_UP.read().await;
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let scenario = fx.ready_scenario(&authz, |_| {}).await?;
        let name = scenario.name_any();
        let ns = namespace_of(&name);
        let pod = running_pod(&fx.client, &ns).await?;

        // No client certificate, then the cluster admin's (another CA):
        // no HTTP answer at all.
        let none = unique_name("forged-none");
        let admin = unique_name("forged-admin");
        for (id, cert) in [(&none, None), (&admin, Some("admin"))] {
            let (code, err) = post(&forged(id, "bob@acme.example", &ns, &pod), cert)?;
            ensure!(
                code == "000",
                "{cert:?}: the webhook answered HTTP {code} ({err})"
            );
        }
        // A real exec afterwards: once it is recorded, anything the forged
        // posts could have written would be there.
        exec_as(ALICE, &ns, &pod)?;
        let all = wait_session(&fx.client, &name, ALICE).await?;
        let keys: Vec<&str> = all.iter().map(|r| r.key.as_str()).collect();
        ensure!(
            !keys.iter().any(|k| k.contains("forged"))
                && !all.iter().any(|r| r.actor == "bob@acme.example"),
            "a forged post was recorded: {all:#?}"
        );

        // The same body with the API server's certificate is taken: the
        // refusals above were the certificate's, not the body's.
        let real = unique_name("forged-apiserver");
        let (code, err) = post(
            &forged(&real, "bob@acme.example", &ns, &pod),
            Some("apiserver-audit"),
        )?;
        ensure!(
            code == "200",
            "with the API server's certificate: HTTP {code} ({err})"
        );
        let all = wait_session(&fx.client, &name, "bob@acme.example").await?;
        ensure!(
            all.iter()
                .filter(|r| r.key == format!("session/{real}"))
                .count()
                == 1,
            "{all:#?}"
        );
        // Posted again (a retry): still one record.
        let (code, _) = post(
            &forged(&real, "bob@acme.example", &ns, &pod),
            Some("apiserver-audit"),
        )?;
        ensure!(code == "200");
        raw_exec_as(MALLORY, &ns, &pod)?;
        let all = wait_session(&fx.client, &name, MALLORY).await?;
        ensure!(
            all.iter()
                .filter(|r| r.key == format!("session/{real}"))
                .count()
                == 1,
            "a retried post is one record: {all:#?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn nobody_enters_a_workspace_while_the_operator_cannot_record_it() -> Result<()> {
    let _down = OPERATOR_UP.write().await;
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let scenario = fx.ready_scenario(&authz, |_| {}).await?;
        let name = scenario.name_any();
        let ns = namespace_of(&name);
        let pod = running_pod(&fx.client, &ns).await?;

        operator("kill")?;
        let refused = exec_as(ALICE, &ns, &pod);
        operator("start")?;
        let (ok, err) = refused?;
        ensure!(
            !ok && err.contains("failed to store audit event"),
            "an exec while the operator was down was not refused by the audit webhook: {err}"
        );
        // After the restart the same exec goes through to the node and is recorded.
        exec_as(ALICE, &ns, &pod)?;
        let all = wait_session(&fx.client, &name, ALICE).await?;
        ensure!(
            all.iter().filter(|r| r.actor == ALICE).count() == 1,
            "only the exec made while the operator was up: {all:#?}"
        );
        Ok(())
    })
    .await
}

/// The chart rendered with `args` (helm built from e2e/helm), as objects.
fn chart(args: &[&str]) -> Result<Vec<Value>> {
    let dir = Command::new(common::repo_root().join("e2e/scripts/build-helm.sh")).output()?;
    ensure!(
        dir.status.success(),
        "build-helm.sh: {}",
        String::from_utf8_lossy(&dir.stderr)
    );
    let helm = PathBuf::from(String::from_utf8_lossy(&dir.stdout).trim()).join("helm");
    let out = Command::new(helm)
        .current_dir(common::repo_root())
        .args([
            "template",
            "cleanroom",
            "charts/cleanroom",
            "--namespace",
            "cleanroom-system",
        ])
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = serde_json::to_value(serde_yaml::Value::deserialize(doc)?)?;
        if !v.is_null() {
            objects.push(v);
        }
    }
    Ok(objects)
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == json!(kind) && o["metadata"]["name"] == json!(name))
}

#[test]
fn the_chart_serves_the_webhook_only_when_enabled_and_behind_its_own_tls() -> Result<()> {
    let env_of = |objects: &[Value]| -> Result<Vec<(String, String)>> {
        let d = find(objects, "Deployment", "cleanroom").context("the Deployment")?;
        Ok(d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .context("env")?
            .iter()
            .map(|e| {
                let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
                (s(&e["name"]), s(&e["value"]))
            })
            .collect())
    };
    // Off by default: nothing listens until the API server is told to send.
    let off = chart(&[])?;
    ensure!(find(&off, "Service", "cleanroom-sessions").is_none());
    ensure!(
        !env_of(&off)?
            .iter()
            .any(|(n, _)| n.starts_with("CLEANROOM_SESSIONS"))
    );

    let on = chart(&[
        "--set",
        "sessions.enabled=true",
        "--set",
        "sessions.clusterIP=10.96.0.42",
    ])?;
    let svc = find(&on, "Service", "cleanroom-sessions").context("the sessions Service")?;
    ensure!(svc["spec"]["clusterIP"] == json!("10.96.0.42"), "{svc}");
    ensure!(svc["spec"]["ports"][0]["port"] == json!(8443), "{svc}");
    let env = env_of(&on)?;
    for (name, value) in [
        ("CLEANROOM_SESSIONS_ADDR", "0.0.0.0:8443"),
        (
            "CLEANROOM_SESSIONS_TLS_CERT",
            "/etc/cleanroom/sessions/tls.crt",
        ),
        (
            "CLEANROOM_SESSIONS_TLS_KEY",
            "/etc/cleanroom/sessions/tls.key",
        ),
        (
            "CLEANROOM_SESSIONS_CLIENT_CA",
            "/etc/cleanroom/sessions/ca.crt",
        ),
    ] {
        ensure!(
            env.contains(&(name.to_string(), value.to_string())),
            "{name}={value} missing: {env:?}"
        );
    }
    let d = find(&on, "Deployment", "cleanroom").context("the Deployment")?;
    let volumes = &d["spec"]["template"]["spec"]["volumes"];
    ensure!(
        volumes[0]["secret"]["secretName"] == json!("cleanroom-sessions-tls"),
        "the certificates come from the documented Secret: {volumes}"
    );
    let np = find(&on, "NetworkPolicy", "cleanroom-sessions").context("its NetworkPolicy")?;
    ensure!(
        np["spec"]["ingress"][0]["ports"][0]["port"] == json!("sessions"),
        "{np}"
    );
    Ok(())
}
