//! Data preparation end to end, with the agent really running: a raw CSV of
//! Chinese personal data in the vault becomes, for each scenario, a sampled
//! and masked file on a volume handed over to its workspace and mounted
//! read-only; pseudonyms agree within a scenario and differ across two; the
//! raw volume never leaves the vault; a malformed file stops the scenario
//! before any compute with a condition that says where.
//!
//! Needs the local control plane and the operator (`make e2e`).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, ensure};
use cleanroom::api::ScenarioPhase;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use sha2::Digest;

mod common;
use cleanroom_e2e::harness::unique_name;
use common::*;

/// Objects of `scenario`'s preparations left in the vault, by kind.
async fn vault_leftovers(client: &Client, scenario: &str) -> Result<Vec<String>> {
    let lp = ListParams::default().labels(&format!("cleanroom.io/scenario={scenario}"));
    let mut left = Vec::new();
    for j in Api::<Job>::namespaced(client.clone(), VAULT)
        .list(&lp)
        .await?
        .items
    {
        left.push(format!("Job {}", j.name_any()));
    }
    for c in Api::<PersistentVolumeClaim>::namespaced(client.clone(), VAULT)
        .list(&lp)
        .await?
        .items
    {
        left.push(format!("PersistentVolumeClaim {}", c.name_any()));
    }
    for c in Api::<ConfigMap>::namespaced(client.clone(), VAULT)
        .list(&lp)
        .await?
        .items
    {
        left.push(format!("ConfigMap {}", c.name_any()));
    }
    for s in Api::<Secret>::namespaced(client.clone(), VAULT)
        .list(&lp)
        .await?
        .items
    {
        left.push(format!("Secret {}", s.name_any()));
    }
    Ok(left)
}

#[tokio::test]
async fn two_scenarios_get_masked_read_only_data_with_unlinkable_pseudonyms() -> Result<()> {
    with_fixture(|fx| async move {
        let (raw_claim, raw_dir, dataset, authz) = fx.population(POPULATION_CSV.as_bytes()).await?;
        let (a, b) = (unique_name("e2e-a"), unique_name("e2e-b"));
        let mut spec_b = data_scenario(&authz, &dataset);
        // B also asks for the mobile number as a pseudonym rather than masked.
        spec_b["data"][0]["rules"] = json!([{"column": "mobile", "rule": {"kind": "hash"}}]);
        fx.create_scenario(&a, data_scenario(&authz, &dataset))
            .await?;
        fx.create_scenario(&b, spec_b).await?;
        let mut prepared = BTreeMap::new();
        for name in [&a, &b] {
            let s = fx
                .wait_scenario(name, "Ready=True", T, |s| has_condition(s, "Ready", true))
                .await?;
            ensure_condition(&s, "DataPrepared", true, Some("DataReady"))?;
            let record = s
                .status
                .as_ref()
                .map(|st| st.data.clone())
                .unwrap_or_default();
            ensure!(record.len() == 1, "{name}: data records {record:?}");
            prepared.insert(name.clone(), record[0].clone());
        }

        let raw = rows(POPULATION_CSV);
        let raw_ids: BTreeSet<&str> = raw[1..].iter().map(|r| r[0].as_str()).collect();
        let raw_mobiles: BTreeSet<&str> = raw[1..].iter().map(|r| r[2].as_str()).collect();
        let mut pseudonyms = BTreeMap::new();
        for name in [&a, &b] {
            let (pv, text) = prepared_file(&fx.client, name, &dataset).await?;
            let record = &prepared[name];
            ensure!(
                record.volume == pv.name_any(),
                "{name}: status names volume {}, the claim is bound to {}",
                record.volume,
                pv.name_any()
            );
            let digest = hex::encode(sha2::Sha256::digest(text.as_bytes()));
            ensure!(
                record.digest == digest,
                "{name}: digest in status is not the file's"
            );
            ensure!(
                (record.rows_in, record.rows_out) == (250, 250),
                "{name}: rows {} in, {} out",
                record.rows_in,
                record.rows_out
            );
            // The volume is the workspace's now, with its policy restored.
            let spec = pv.spec.clone().unwrap_or_default();
            ensure!(
                spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete")
                    && !pv.annotations().contains_key("cleanroom.io/reclaim-policy"),
                "{name}: reclaim policy {:?} after the hand-over",
                spec.persistent_volume_reclaim_policy
            );
            ensure!(
                host_dir(&pv)? != raw_dir,
                "{name}: the workspace got the raw volume"
            );

            let out = rows(&text);
            ensure!(
                out[0] == ["resident_id", "mobile", "district"],
                "{name}: header {:?}",
                out[0]
            );
            ensure!(out.len() == raw.len(), "{name}: {} rows", out.len() - 1);
            for (i, row) in out[1..].iter().enumerate() {
                ensure!(
                    !raw_ids.contains(row[0].as_str()) && !raw_mobiles.contains(row[1].as_str()),
                    "{name}: row {} carries a raw identifier",
                    i + 2
                );
                ensure!(
                    row[2] == raw[i + 1][4],
                    "{name}: district changed in row {}",
                    i + 2
                );
            }
            for id in &raw_ids {
                ensure!(
                    !text.contains(id),
                    "{name}: a raw resident ID is in the file"
                );
            }
            // Same person, same pseudonym within the scenario.
            let mut by_person: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
            for (raw_row, row) in raw[1..].iter().zip(&out[1..]) {
                by_person
                    .entry(raw_row[0].as_str())
                    .or_default()
                    .insert(row[0].as_str());
            }
            ensure!(
                by_person.values().all(|p| p.len() == 1),
                "{name}: one person got two pseudonyms"
            );
            ensure!(
                by_person.len() == 240,
                "{name}: {} people, the fixture has 240",
                by_person.len()
            );
            let masked = &out[1][1];
            let original = &raw[1][2];
            if name == &a {
                ensure!(
                    masked.chars().count() == 11
                        && masked.starts_with(&original[..3])
                        && masked.ends_with(&original[7..])
                        && masked[3..7].chars().all(|c| c == '*'),
                    "{name}: mobile {original} masked as {masked}"
                );
            }
            pseudonyms.insert(
                name.clone(),
                out[1..].iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
            );

            // The workspace mounts it read-only at /data/<dataset>.
            let deployment = Api::<Deployment>::namespaced(fx.client.clone(), &namespace_of(name))
                .get("workspace")
                .await?;
            let pod = deployment.spec.template.spec.context("no pod spec")?;
            let volume = pod
                .volumes
                .iter()
                .flatten()
                .find(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|c| c.claim_name == format!("data-{dataset}"))
                })
                .context("the workspace does not mount the data claim")?;
            ensure!(
                volume
                    .persistent_volume_claim
                    .as_ref()
                    .and_then(|c| c.read_only)
                    == Some(true),
                "{name}: data claim not read-only"
            );
            let mount = pod.containers[0]
                .volume_mounts
                .iter()
                .flatten()
                .find(|m| m.name == volume.name)
                .context("no mount of the data volume")?;
            ensure!(
                mount.mount_path == format!("/data/{dataset}") && mount.read_only == Some(true),
                "{name}: mounted at {} read_only={:?}",
                mount.mount_path,
                mount.read_only
            );
            // The vault keeps nothing of the scenario once it is prepared.
            let left = vault_leftovers(&fx.client, name).await?;
            ensure!(left.is_empty(), "{name}: left in the vault: {left:?}");
        }
        let (pa, pb) = (&pseudonyms[&a], &pseudonyms[&b]);
        let shared = pa.iter().zip(pb).filter(|(x, y)| x == y).count();
        ensure!(
            shared == 0,
            "{shared} pseudonyms are the same in both scenarios"
        );

        // No pod in a workspace mounts anything but its own claims, and the
        // raw claim's volume is bound in the vault still.
        for name in [&a, &b] {
            let pods = Api::<Pod>::namespaced(fx.client.clone(), &namespace_of(name))
                .list(&ListParams::default())
                .await?;
            for p in pods.items {
                for v in p.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
                    if let Some(c) = &v.persistent_volume_claim {
                        ensure!(
                            c.claim_name == "scratch" || c.claim_name.starts_with("data-"),
                            "pod {} mounts claim {}",
                            p.name_any(),
                            c.claim_name
                        );
                    }
                }
            }
        }
        let raw_pvc = Api::<PersistentVolumeClaim>::namespaced(fx.client.clone(), VAULT)
            .get(&raw_claim)
            .await?;
        ensure!(
            raw_pvc.status.and_then(|s| s.phase).as_deref() == Some("Bound"),
            "the raw claim is no longer bound in the vault"
        );

        // Revoking A wipes its data volume too, with an attestation, and
        // leaves nothing behind.
        let (data_pv, _) = prepared_file(&fx.client, &a, &dataset).await?;
        fx.patch_scenario(&a, json!({"state": "Revoked", "reason": "study finished"}))
            .await?;
        let closed = fx
            .wait_scenario(&a, "phase Closed", T, |s| {
                phase(s) == Some(ScenarioPhase::Closed)
            })
            .await?;
        let wipes = closed.status.map(|s| s.wipes).unwrap_or_default();
        let claims: BTreeSet<&str> = wipes.iter().map(|w| w.claim.as_str()).collect();
        let data_claim = format!("data-{dataset}");
        ensure!(
            claims == BTreeSet::from(["scratch", data_claim.as_str()]),
            "attestations for {claims:?}"
        );
        let data_wipe = wipes
            .iter()
            .find(|w| w.claim == data_claim)
            .context("no data wipe")?;
        ensure!(
            data_wipe.bytes == prepared[&a].bytes && data_wipe.files == 1,
            "the data wipe covered {} bytes in {} files; the file had {} bytes",
            data_wipe.bytes,
            data_wipe.files,
            prepared[&a].bytes
        );
        ensure!(
            Api::<PersistentVolume>::all(fx.client.clone())
                .get_opt(&data_pv.name_any())
                .await?
                .is_none(),
            "the data volume outlived the scenario"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_malformed_file_fails_preparation_before_any_compute_and_can_be_retried() -> Result<()> {
    with_fixture(|fx| async move {
        let mut broken = POPULATION_CSV
            .lines()
            .take(5)
            .map(str::to_string)
            .collect::<Vec<_>>();
        broken[2] = "350104195404283945,王伟".into(); // line 3: two fields of six
        let broken = broken.join("\n") + "\n";
        let (_, raw_dir, dataset, authz) = fx.population(broken.as_bytes()).await?;
        let name = unique_name("e2e");
        fx.create_scenario(&name, data_scenario(&authz, &dataset))
            .await?;
        let s = fx
            .wait_scenario(&name, "DataPrepared=False/PreparationFailed", T, |s| {
                condition(s, "DataPrepared").is_some_and(|c| c.reason == "PreparationFailed")
            })
            .await?;
        let message = condition(&s, "DataPrepared")
            .map(|c| c.message.clone())
            .unwrap_or_default();
        ensure!(
            message.contains("line 3") && message.contains(&dataset),
            "the condition does not say where: {message}"
        );
        ensure!(
            !message.contains("350104195404283945"),
            "the condition repeats a value of the data: {message}"
        );
        ensure!(
            phase(&s) == Some(ScenarioPhase::PreparingData),
            "phase {:?}",
            phase(&s)
        );
        ensure_condition(&s, "Ready", false, Some("PreparationFailed"))?;
        let ns = namespace_of(&name);
        ensure!(
            Api::<Deployment>::namespaced(fx.client.clone(), &ns)
                .get_opt("workspace")
                .await?
                .is_none(),
            "a workspace runs without its data"
        );

        // The provider fixes the file; deleting the failed Job prepares again.
        write_raw(&raw_dir, POPULATION_FILE, POPULATION_CSV.as_bytes())?;
        let jobs: Api<Job> = Api::namespaced(fx.client.clone(), VAULT);
        let failed = jobs
            .list(&ListParams::default().labels(&format!("cleanroom.io/scenario={name}")))
            .await?
            .items;
        ensure!(failed.len() == 1, "{} preparation Jobs", failed.len());
        jobs.delete(&failed[0].name_any(), &DeleteParams::background())
            .await?;
        let s = fx
            .wait_scenario(&name, "Ready=True", T, |s| has_condition(s, "Ready", true))
            .await?;
        ensure_condition(&s, "DataPrepared", true, Some("DataReady"))?;
        Ok(())
    })
    .await
}
