//! After release, end to end with the agent really running: a reviewer
//! recalls a released export, its copy is wiped from the release claim and
//! the same content is never released again; the requester and members
//! cannot recall; the delivery identity alone reads its release claim.
//!
//! Needs the local control plane and the operator (`make e2e`).

use anyhow::{Context, Result, ensure};
use cleanroom::api::airlock::ExportPhase;
use cleanroom_e2e::harness::unique_name;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

mod common;
use common::airlock::*;
use common::*;

/// The data operator's delivery identity on the test's authorizations.
const FRANK: &str = "frank@acme-delivery.example";

/// A clean table no other test releases: recalled content stays blocked in
/// this cluster for good.
fn unique_table() -> String {
    let n = 100
        + (std::time::SystemTime::now()
            .elapsed()
            .unwrap_or_default()
            .as_nanos()
            ^ u128::from(std::process::id()))
            % 900;
    let stamp = unique_name("t");
    format!("{CLEAN_TABLE}{stamp},{n}\n")
}

/// Released by CAROL's approval (one approval required); returns the export.
async fn released(
    f: &Fixture,
    ns: &str,
    scenario: &str,
    file: &str,
    table: &str,
) -> Result<String> {
    put_in_outbox(&f.client, scenario, file, table).await?;
    let alice = client_as(ALICE, &["system:authenticated"]).await?;
    let export = submit(&alice, ns, &table_export(ALICE, file)?).await?;
    let e = wait_export(&f.client, ns, &export, "InReview", |e| {
        in_phase(
            e,
            &[
                ExportPhase::InReview,
                ExportPhase::Failed,
                ExportPhase::Blocked,
            ],
        )
    })
    .await?;
    ensure!(in_phase(&e, &[ExportPhase::InReview]), "{:?}", e.status);
    review(CAROL, ns, &export, CAROL, "Approve").await?;
    let e = wait_export(
        &f.client,
        ns,
        &export,
        "Released and sealed copy wiped",
        |e| {
            in_phase(e, &[ExportPhase::Failed])
                || e.status
                    .as_ref()
                    .is_some_and(|s| s.phase == Some(ExportPhase::Released) && s.wipe.is_some())
        },
    )
    .await?;
    ensure!(in_phase(&e, &[ExportPhase::Released]), "{:?}", e.status);
    Ok(export)
}

#[tokio::test]
async fn a_recalled_export_is_wiped_from_the_release_claim_and_its_content_never_leaves_again()
-> Result<()> {
    with_fixture(|f| async move {
        let authz = reviewed_authorization(&f, 1).await?;
        let scenario = f.ready_scenario(&authz, |_| {}).await?;
        let name = scenario.metadata.name.clone().context("name")?;
        let ns = namespace_of(&name);
        let table = unique_table();
        let export = released(&f, &ns, &name, "by-district.csv", &table).await?;
        let dir = release_dir(&f.client, &authz)
            .await?
            .join(format!("{ns}.{export}"));
        ensure!(
            std::fs::read_to_string(dir.join("by-district.csv"))? == table,
            "not released as sealed"
        );

        // Neither the requester, nor a member, nor a stranger may recall;
        // the requester may not delete the released export either.
        let own = refusal(
            review(ALICE, &ns, &export, ALICE, "Recall").await,
            "the requester recalling",
        )?;
        ensure!(own.contains("may not review or recall it"), "{own}");
        let member = refusal(
            review(ERIN, &ns, &export, ERIN, "Recall").await,
            "a member recalling",
        )?;
        ensure!(
            member.contains("is a member of the authorization"),
            "{member}"
        );
        let stranger = refusal(
            review("mallory@example", &ns, &export, "mallory@example", "Recall").await,
            "mallory recalling",
        )?;
        ensure!(
            stranger.contains("forbidden") || stranger.contains("not a reviewer"),
            "{stranger}"
        );
        let alice = client_as(ALICE, &["system:authenticated"]).await?;
        let deleted = Api::<cleanroom::api::Export>::namespaced(alice, &ns)
            .delete(&export, &DeleteParams::default())
            .await;
        let deleted = refusal(
            deleted.map_err(anyhow::Error::from),
            "the requester deleting",
        )?;
        ensure!(deleted.contains("is released"), "{deleted}");
        // Approve, Reject and Return are over once released.
        let late = refusal(
            review(DAVE, &ns, &export, DAVE, "Reject").await,
            "a late reject",
        )?;
        ensure!(late.contains("not open for review"), "{late}");

        // DAVE recalls it with the CLI, as himself.
        let out = run_cleanroom_as(
            DAVE,
            &[
                "export",
                "recall",
                &export,
                "--scenario",
                &name,
                "--comment",
                "differencing risk",
            ],
        )?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let e = wait_export(&f.client, &ns, &export, "Recalled", |e| {
            in_phase(e, &[ExportPhase::Recalled])
        })
        .await?;
        let status = e.status.clone().context("status")?;
        let recalled = status.recalled.clone().context("no recall recorded")?;
        ensure!(recalled.reviewer == DAVE, "{recalled:?}");
        ensure!(
            recalled.wipe.files == 2 && recalled.wipe.bytes >= table.len() as i64,
            "the attestation does not cover the file and its manifest: {:?}",
            recalled.wipe
        );
        ensure!(
            !dir.exists(),
            "the released copy is still on the release claim"
        );

        // The ledger: recalled, by DAVE, with the manifest hash and the wipe.
        let manifest = status.sealed.context("sealed")?.manifest_sha256;
        let uid = e.metadata.uid.clone().context("uid")?;
        let records = records_of(&f.client, &uid).await?;
        let recalls: Vec<_> = records
            .iter()
            .filter(|r| r.action.as_str() == "recalled")
            .collect();
        ensure!(
            recalls.len() == 1,
            "recalled {} times: {recalls:?}",
            recalls.len()
        );
        let record = recalls[0];
        ensure!(record.actor == DAVE, "recalled by {}", record.actor);
        let after = record.after.clone().unwrap_or_default();
        ensure!(after["manifestSha256"] == json!(manifest), "{after}");
        ensure!(after["wipe"]["files"] == json!(2), "{after}");
        ensure!(
            record.reason.as_deref() == Some("differencing risk"),
            "{record:?}"
        );

        // The same content again, under another name: Blocked, saying why.
        let again = released_or_blocked(&f, &ns, &name, "again.csv", &table).await?;
        let status = again.status.clone().context("status")?;
        ensure!(status.phase == Some(ExportPhase::Blocked), "{status:?}");
        let message = status.message.clone().unwrap_or_default();
        ensure!(
            message.contains("recalled") && message.contains("again.csv"),
            "{message}"
        );
        ensure!(status.released.is_none(), "{status:?}");
        // Only the operator writes the recalled set, cluster admins included.
        let maps = Api::<ConfigMap>::namespaced(f.client.clone(), AUDIT_NAMESPACE);
        let set = maps.get("cleanroom-recalled").await?;
        ensure!(
            set.data.as_ref().is_some_and(|d| d.contains_key(&manifest)),
            "the manifest hash is not in the recalled set"
        );
        let emptied = maps
            .patch(
                "cleanroom-recalled",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {manifest.as_str(): null}})),
            )
            .await;
        let emptied = refusal(
            emptied.map_err(anyhow::Error::from),
            "the admin editing the set",
        )?;
        ensure!(
            emptied.contains("written by the operator only"),
            "{emptied}"
        );
        delete_release_claim(&f.client, &authz).await
    })
    .await
}

/// Submits `table` as `file` and waits for the checks' outcome.
async fn released_or_blocked(
    f: &Fixture,
    ns: &str,
    scenario: &str,
    file: &str,
    table: &str,
) -> Result<cleanroom::api::Export> {
    put_in_outbox(&f.client, scenario, file, table).await?;
    let alice = client_as(ALICE, &["system:authenticated"]).await?;
    let export = submit(&alice, ns, &table_export(ALICE, file)?).await?;
    wait_export(&f.client, ns, &export, "checked", |e| {
        in_phase(
            e,
            &[
                ExportPhase::InReview,
                ExportPhase::Failed,
                ExportPhase::Blocked,
            ],
        )
    })
    .await
}

/// `cleanroom ARGS` as `user`: the admin's kubeconfig with `as`, so the
/// binary talks to the API server as that user.
fn run_cleanroom_as(user: &str, args: &[&str]) -> Result<std::process::Output> {
    let dir = cleanroom_e2e::harness::cluster_dir();
    let mut config: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("kubeconfig"))?)?;
    config["users"][0]["user"]["as"] = json!(user);
    let path = dir.join(format!("kubeconfig-as-{}", user.replace(['@', ':'], "-")));
    std::fs::write(&path, serde_yaml::to_string(&config)?)?;
    std::process::Command::new(cleanroom_binary())
        .args(args)
        .env("KUBECONFIG", path)
        .output()
        .with_context(|| format!("running cleanroom {args:?} as {user}"))
}

/// Whether `user` may `verb` the claim `name` in the release namespace.
async fn may_read_claim(user: &str, name: &str) -> Result<bool> {
    let client = client_as(user, &["system:authenticated"]).await?;
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(RELEASE.into()),
                verb: Some("get".into()),
                resource: Some("persistentvolumeclaims".into()),
                name: Some(name.into()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client)
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// A delivery pod reading `claim` read-only (or not, or another claim).
fn delivery_pod(name: &str, claim: &str, read_only: bool) -> Result<Pod> {
    from_json(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "fetch", "image": "busybox", "command": ["sleep", "3600"],
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "release", "mountPath": "/release", "readOnly": true}],
            }],
            "volumes": [{"name": "release", "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}],
        }
    }))
}

#[tokio::test]
async fn the_delivery_identity_alone_reads_its_release_claim() -> Result<()> {
    with_fixture(|f| async move {
        // Two authorizations, each with its own delivery identity.
        let ours = reviewed_authorization(&f, 1).await?;
        f.patch_authorization(&ours, json!({"review": {"delivery": {"users": [FRANK]}}}))
            .await?;
        let other = reviewed_authorization(&f, 1).await?;
        f.patch_authorization(
            &other,
            json!({"review": {"delivery": {"users": ["gina@other.example"]}}}),
        )
        .await?;
        for authz in [&ours, &other] {
            let scenario = f.ready_scenario(authz, |_| {}).await?;
            let name = scenario.metadata.name.clone().context("name")?;
            released(&f, &namespace_of(&name), &name, "t.csv", &unique_table()).await?;
        }
        let (claim, other_claim) = (format!("release-{ours}"), format!("release-{other}"));
        ensure!(
            may_read_claim(FRANK, &claim).await?,
            "frank cannot read his claim"
        );
        ensure!(
            !may_read_claim(FRANK, &other_claim).await?,
            "frank reads another authorization's claim"
        );
        for who in [ALICE, ERIN, CAROL] {
            ensure!(
                !may_read_claim(who, &claim).await?,
                "{who} (requester, member or reviewer) reads the release claim"
            );
        }

        // A delivery pod: only on his own claim, read-only, named after it.
        let frank = client_as(FRANK, &["system:authenticated"]).await?;
        let pods = Api::<Pod>::namespaced(frank, RELEASE);
        let post = PostParams::default();
        let theirs = pods
            .create(&post, &delivery_pod(&other_claim, &other_claim, true)?)
            .await;
        let theirs = refusal(
            theirs.map_err(anyhow::Error::from),
            "frank mounting another claim",
        )?;
        ensure!(
            theirs.contains("may not read release claim") || theirs.contains("forbidden"),
            "{theirs}"
        );
        let writable = pods
            .create(&post, &delivery_pod(&claim, &claim, false)?)
            .await;
        let writable = refusal(writable.map_err(anyhow::Error::from), "a writable mount")?;
        ensure!(writable.contains("read-only"), "{writable}");
        let renamed = pods
            .create(&post, &delivery_pod("fetch", &claim, true)?)
            .await;
        let renamed = refusal(
            renamed.map_err(anyhow::Error::from),
            "a pod of another name",
        )?;
        ensure!(
            renamed.contains("named after the release claim"),
            "{renamed}"
        );
        pods.create(&post, &delivery_pod(&claim, &claim, true)?)
            .await
            .context("frank's own delivery pod was refused")?;
        pods.delete(&claim, &DeleteParams::default()).await?;

        // A member cannot make one at all.
        let alice =
            Api::<Pod>::namespaced(client_as(ALICE, &["system:authenticated"]).await?, RELEASE);
        let member = alice
            .create(&post, &delivery_pod(&claim, &claim, true)?)
            .await;
        refusal(
            member.map_err(anyhow::Error::from),
            "a member's delivery pod",
        )?;

        // Taken off the authorization's delivery list, frank loses access.
        f.patch_authorization(
            &ours,
            json!({"review": {"delivery": {"users": ["gina@other.example"]}}}),
        )
        .await?;
        let deadline = std::time::Instant::now() + T;
        while may_read_claim(FRANK, &claim).await? {
            ensure!(
                std::time::Instant::now() < deadline,
                "frank still reads the claim after leaving the delivery list"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        ensure!(
            may_read_claim("gina@other.example", &claim).await?,
            "gina got no access"
        );
        delete_release_claim(&f.client, &ours).await?;
        delete_release_claim(&f.client, &other).await
    })
    .await
}
