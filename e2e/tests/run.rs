//! `make run`'s own script brings the worked examples to Ready on the local
//! control plane, as a newcomer would see it. Needs the cluster and the
//! operator (`make e2e` starts it; the script starts it if it is not running).

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use cleanroom::api::{Scenario, ScenarioPhase};
use cleanroom_e2e::harness::{client, run_kubectl, wait_gone};
use kube::Api;
use kube::api::DeleteParams;

mod common;

const EXAMPLES: [&str; 2] = ["elderly-care-demand", "district-income-report"];

#[tokio::test]
async fn make_run_brings_the_worked_examples_to_ready() -> Result<()> {
    let root = common::repo_root();
    let out = Command::new("bash")
        .arg(root.join("e2e/scripts/run.sh"))
        .env("CLEANROOM_RUN_ONCE", "1")
        .output()
        .context("running e2e/scripts/run.sh")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let result = async {
        ensure!(out.status.success(), "run.sh failed:\n{stdout}\n{stderr}");
        for name in EXAMPLES {
            ensure!(
                stdout.contains(&format!("scenario.cleanroom.io/{name} condition met")),
                "run.sh did not report {name} Ready:\n{stdout}"
            );
        }
        let scenarios: Api<Scenario> = Api::all(client().await?);
        for name in EXAMPLES {
            let s = scenarios.get(name).await?;
            let phase = s.status.as_ref().and_then(|st| st.phase);
            ensure!(
                phase == Some(ScenarioPhase::Ready),
                "{name} is {phase:?}, not Ready"
            );
        }
        Ok(())
    }
    .await;

    // The examples are removed again (torn down and wiped) so that a later
    // `make run` on the same cluster starts from the same place.
    let scenarios: Api<Scenario> = Api::all(client().await?);
    for name in EXAMPLES {
        let _ = scenarios.delete(name, &DeleteParams::default()).await;
    }
    for name in EXAMPLES {
        wait_gone(&scenarios, name, Duration::from_secs(90)).await?;
    }
    let (ok, _, err) = run_kubectl(&[
        "delete",
        "--ignore-not-found",
        "authorizations.cleanroom.io/acme-analytics",
        "datasets.cleanroom.io/population-register",
    ])?;
    ensure!(ok, "removing the example authorization and dataset: {err}");
    result
}
