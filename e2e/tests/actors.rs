//! Actors the API server vouches for: the `cleanroom-actors` admission
//! policy lets only the user it names write the stamp
//! `cleanroom.io/changed-by` (with `cleanroom.io/changed-by-generation`)
//! on an Authorization, Scenario or Dataset, so the actor the audit ledger
//! records for a change made with the `cleanroom` verbs is the user the API
//! server authenticated, not a client's claim (requirements R11 and R13,
//! docs/requirements.md).
//!
//! Users are impersonated by the admin, each in `system:masters` so that
//! RBAC lets every request through to admission: what refuses is the
//! policy. Needs the local control plane, the operator beside it with the
//! chart's policies (`e2e/scripts/operator.sh restart`, or `make e2e`) and
//! the `cleanroom` binary.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use cleanroom::api::{Authorization, AuthorizationPhase, Dataset, Scenario};
use cleanroom::audit::Action;
use cleanroom_e2e::harness::{cluster_dir, meta, unique_name};
use common::{
    ALICE, T, cleanroom_binary, client_as, dataset_spec, records_of, refusal, scenario_spec,
    with_fixture,
};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const BOB: &str = "bob@acme.example";
const CHANGED_BY: &str = "cleanroom.io/changed-by";
const CHANGED_BY_GENERATION: &str = "cleanroom.io/changed-by-generation";
const POLICY: &str = "policy cleanroom-actors";

/// A client acting as `user`, let through by RBAC.
async fn as_user(user: &str) -> Result<Client> {
    client_as(user, &["system:masters"]).await
}

/// Alice's or Bob's change to the authorization `name` as the `cleanroom`
/// verbs make it: a suspension, stamped in the name of `stamp` for the
/// generation it makes, guarded by the resourceVersion read (read again
/// when the operator's status write came in between).
async fn suspend_stamped(client: &Client, name: &str, stamp: &str) -> Result<Authorization> {
    let api = Api::<Authorization>::all(client.clone());
    for _ in 0..5 {
        let current = api.get(name).await?;
        let next = current.metadata.generation.unwrap_or(0) + 1;
        let patch = json!({
            "metadata": {
                "resourceVersion": current.metadata.resource_version,
                "annotations": {CHANGED_BY: stamp, CHANGED_BY_GENERATION: next.to_string()},
            },
            "spec": {"state": "Suspended", "reason": "incident 7"},
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            result => return result.with_context(|| format!("patching Authorization {name}")),
        }
    }
    bail!("Authorization {name} kept changing while it was being patched")
}

/// Merge-patches the authorization `name` with `patch` as `client`.
async fn patch(client: &Client, name: &str, patch: &Value) -> Result<Authorization> {
    Api::<Authorization>::all(client.clone())
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .with_context(|| format!("patching Authorization {name}"))
}

/// The refusal of `result`, which must name the policy.
fn refused_by_the_policy<K>(result: Result<K>, what: &str) -> Result<String> {
    let message = refusal(result, what)?;
    ensure!(
        message.contains(POLICY),
        "{what}: refused, but not by the actors policy: {message}"
    );
    Ok(message)
}

/// A Dataset named `name` stamped in the name of `stamp`.
fn stamped_dataset(name: &str, stamp: &str) -> Result<Dataset> {
    let mut d = Dataset::new(name, serde_json::from_value(dataset_spec())?);
    d.metadata = meta(name);
    d.metadata.annotations = Some([(CHANGED_BY.to_string(), stamp.to_string())].into());
    Ok(d)
}

/// Waits until the API server enforces the policy (a policy just installed
/// takes a moment), probing with a dry run that stores nothing.
async fn policy_in_force(client: &Client) -> Result<()> {
    let api = Api::<Dataset>::all(client.clone());
    let probe = stamped_dataset(&unique_name("e2e-actors-probe"), "nobody@acme.example")?;
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match api.create(&params, &probe).await {
            Err(e) if e.to_string().contains(POLICY) => return Ok(()),
            other if Instant::now() > deadline => bail!(
                "the API server does not enforce {POLICY} (is it installed?): {}",
                other.map_or_else(
                    |e| e.to_string(),
                    |_| "a stamp in another's name passed".into()
                )
            ),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

#[tokio::test]
async fn a_change_stamped_with_another_users_name_is_refused_naming_the_policy() -> Result<()> {
    with_fixture(|fx| async move {
        let (alice, bob) = (as_user(ALICE).await?, as_user(BOB).await?);
        policy_in_force(&alice).await?;
        let name = fx.authorization().await?;
        let current = fx.authorizations().get(&name).await?;

        // Alice's change, stamped in Bob's name.
        let message = refused_by_the_policy(
            suspend_stamped(&alice, &name, BOB).await,
            "alice stamping her change with bob's name",
        )?;
        ensure!(
            message.contains(&format!("{ALICE} may not set {CHANGED_BY}"))
                && message.contains(&format!("in the name of {BOB}"))
                && message.contains(&format!("authorizations/{name}")),
            "the refusal names who, what and where: {message}"
        );
        let after = fx.authorizations().get(&name).await?;
        ensure!(
            after.spec.state == current.spec.state && !after.annotations().contains_key(CHANGED_BY),
            "nothing of the refused change was kept: {:?}",
            after.metadata.annotations
        );

        // The same on a Scenario, with the stamp alone.
        let scenario = unique_name("e2e-actors");
        fx.create_scenario(&scenario, scenario_spec(&name)).await?;
        refused_by_the_policy(
            Api::<Scenario>::all(alice.clone())
                .patch(
                    &scenario,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {CHANGED_BY: BOB}}})),
                )
                .await
                .map_err(anyhow::Error::from),
            "alice stamping a scenario with bob's name",
        )?;

        // Stamped in another's name when it is made.
        let dataset = unique_name("e2e-actors");
        let created = Api::<Dataset>::all(alice.clone())
            .create(&PostParams::default(), &stamped_dataset(&dataset, BOB)?)
            .await;
        if created.is_ok() {
            let _ = fx
                .datasets()
                .delete(&dataset, &DeleteParams::default())
                .await;
        }
        refused_by_the_policy(
            created.map_err(anyhow::Error::from),
            "alice creating a dataset stamped with bob's name",
        )?;

        // Alice's own stamp is accepted; Bob then moves its generation to
        // the change he is about to make, under her name: refused.
        let stamped = suspend_stamped(&alice, &name, ALICE).await?;
        let next = stamped.metadata.generation.unwrap_or(0) + 1;
        refused_by_the_policy(
            patch(
                &bob,
                &name,
                &json!({"metadata": {"annotations": {CHANGED_BY_GENERATION: next.to_string()}}}),
            )
            .await,
            "bob moving the generation of alice's stamp",
        )?;

        // Bob may edit without touching the stamp (the ledger then names his
        // field manager, as the stamp's generation no longer matches), and
        // may remove it; adding it back in Alice's name is a new stamp.
        let edited = patch(
            &bob,
            &name,
            &json!({"spec": {"reason": "incident 7, by bob"}}),
        )
        .await?;
        ensure!(edited.annotations().get(CHANGED_BY).map(String::as_str) == Some(ALICE));
        patch(
            &bob,
            &name,
            &json!({"metadata": {"annotations": {CHANGED_BY: null, CHANGED_BY_GENERATION: null}}}),
        )
        .await?;
        refused_by_the_policy(
            patch(
                &bob,
                &name,
                &json!({"metadata": {"annotations": {CHANGED_BY: ALICE}}}),
            )
            .await,
            "bob adding back a stamp in alice's name",
        )?;
        Ok(())
    })
    .await
}

/// A kubeconfig that is the admin's, impersonating `user` (in
/// `system:masters`), for running the `cleanroom` binary as that user.
/// Kept beside the admin's, which it copies.
fn kubeconfig_as(user: &str) -> Result<PathBuf> {
    let admin = cluster_dir().join("kubeconfig");
    let mut config: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(&admin).with_context(|| format!("reading {}", admin.display()))?,
    )?;
    let users = config
        .get_mut("users")
        .and_then(serde_yaml::Value::as_sequence_mut)
        .context("no users in the admin kubeconfig")?;
    for entry in users {
        let auth = entry
            .get_mut("user")
            .context("a user entry without `user`")?;
        let auth = auth.as_mapping_mut().context("`user` is not a mapping")?;
        auth.insert("as".into(), user.into());
        auth.insert("as-groups".into(), vec!["system:masters"].into());
    }
    let path = cluster_dir().join(format!("{}.kubeconfig", unique_name("actors")));
    std::fs::write(&path, serde_yaml::to_string(&config)?)?;
    Ok(path)
}

#[tokio::test]
async fn a_change_made_with_the_cli_is_recorded_under_the_user_the_api_server_vouches_for()
-> Result<()> {
    with_fixture(|fx| async move {
        let name = fx.authorization().await?;
        let uid = fx
            .authorizations()
            .get(&name)
            .await?
            .metadata
            .uid
            .context("uid")?;
        let kubeconfig = kubeconfig_as(ALICE)?;
        let out = std::process::Command::new(cleanroom_binary())
            .args([
                "suspend",
                &name,
                "--authorization",
                "--reason",
                "incident 7",
            ])
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("CLEANROOM_AUDIT_NAMESPACE")
            .output()
            .context("running cleanroom suspend as alice");
        let _ = std::fs::remove_file(&kubeconfig);
        let out = out?;
        ensure!(
            out.status.success(),
            "cleanroom suspend as alice: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stamped = fx.authorizations().get(&name).await?;
        ensure!(
            stamped.annotations().get(CHANGED_BY).map(String::as_str) == Some(ALICE),
            "the verb stamps the user the API server reports: {:?}",
            stamped.metadata.annotations
        );

        // The policy leaves the status subresource alone: the operator
        // still writes the phase.
        fx.wait_for_authorization(&name, "phase Suspended", |a| {
            a.status.as_ref().and_then(|s| s.phase) == Some(AuthorizationPhase::Suspended)
        })
        .await?;

        // The operator records the suspension under that user.
        let deadline = Instant::now() + T;
        loop {
            let records = records_of(&fx.client, &uid).await?;
            if let Some(r) = records.iter().find(|r| r.action == Action::Suspended) {
                ensure!(
                    r.actor == ALICE,
                    "the suspension of {name} is recorded as by {}, not {ALICE}",
                    r.actor
                );
                ensure!(r.reason.as_deref() == Some("incident 7"), "{r:?}");
                break;
            }
            if Instant::now() > deadline {
                bail!("no `suspended` record of {name} within {T:?}: {records:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    })
    .await
}
