//! `cleanroom render`: every object the operator would create for each
//! Scenario in some files, offline (no cluster).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use kube::ResourceExt;
use serde::Deserialize;
use serde_json::Value;

use crate::api::{Authorization, Dataset, Scenario, State};
use crate::rules::{validate_authorization, validate_scenario};
use crate::workspace::{self, Identity, data};

/// Stands in for the scenario's uid (in owner references), which only the
/// API server assigns: rendered objects are for review, not for applying.
pub const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";

#[derive(Args, Debug)]
#[command(
    after_help = "Reads Datasets, Authorizations and Scenarios (any mix, multi-document \
YAML) and prints, for each Scenario, the namespace, network policy, quota, limits, service \
account, role, binding, scratch claim, each dataset's preparation plan and Job in the vault, and \
the compute the operator applies, as multi-document YAML. \
A Scenario whose Authorization is in the files is checked against it as the operator would; a \
rejection is printed to stderr and the exit code is 1. Owner references carry a placeholder uid.

Examples:
  cleanroom render -f manifests/examples/
  cleanroom render -f authorization.yaml -f scenario.yaml --storage-class fast
  kubectl cleanroom render -f scenario.yaml | kubectl diff -f -   # review only: uid is a placeholder"
)]
pub(super) struct RenderArgs {
    /// YAML files or directories of them (.yaml, .yml), read in order.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub(super) files: Vec<PathBuf>,
    /// StorageClass of the scratch claim, as `cleanroom run --storage-class`.
    #[arg(long)]
    pub(super) storage_class: Option<String>,
    /// Image of the preparation Jobs, as `cleanroom run --agent-image`.
    #[arg(long, default_value = super::DEFAULT_AGENT_IMAGE)]
    pub(super) agent_image: String,
}

/// What the files hold.
#[derive(Default)]
pub(super) struct Documents {
    pub(super) datasets: Vec<Dataset>,
    pub(super) authorizations: Vec<Authorization>,
    pub(super) scenarios: Vec<Scenario>,
}

impl Documents {
    /// Adds every document of one YAML text (`origin` names it in errors).
    pub(super) fn add(&mut self, text: &str, origin: &str) -> anyhow::Result<()> {
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value = Value::deserialize(doc)
                .with_context(|| format!("{origin}: document {} is not YAML", i + 1))?;
            if value.is_null() {
                continue;
            }
            let kind = value
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let what = || format!("{origin}: document {} ({kind})", i + 1);
            match kind.as_str() {
                "Dataset" => self
                    .datasets
                    .push(serde_json::from_value(value).with_context(what)?),
                "Authorization" => self
                    .authorizations
                    .push(serde_json::from_value(value).with_context(what)?),
                "Scenario" => self
                    .scenarios
                    .push(serde_json::from_value(value).with_context(what)?),
                _ => {} // other kinds are not the operator's
            }
        }
        Ok(())
    }

    /// The objects for every scenario, in order.
    pub(super) fn render(
        &self,
        storage_class: Option<&str>,
        agent_image: &str,
    ) -> anyhow::Result<Rendered> {
        let mut objects = Vec::new();
        let mut rejections = Vec::new();
        let mut notes = Vec::new();
        for s in &self.scenarios {
            let name = s.name_any();
            if let Some(a) = self
                .authorizations
                .iter()
                .find(|a| a.name_any() == s.spec.authorization)
            {
                let checked = validate_authorization(a).and_then(|()| {
                    let catalogue: Vec<Dataset> = self
                        .datasets
                        .iter()
                        .filter(|d| s.spec.data.iter().any(|r| r.dataset == d.name_any()))
                        .cloned()
                        .collect();
                    validate_scenario(s, a, &catalogue)
                });
                if let Err(r) = checked {
                    rejections.push(format!(
                        "scenario {name}: rejected ({}): {}: {}",
                        r.reason, r.field, r.message
                    ));
                    continue;
                }
            }
            if s.spec.state == State::Revoked {
                notes.push(format!("scenario {name}: Revoked, nothing is created"));
                continue;
            }
            let id = Identity {
                scenario: name.clone(),
                uid: PLACEHOLDER_UID.to_string(),
                authorization: s.spec.authorization.clone(),
                namespace: s
                    .namespace_name()
                    .with_context(|| "a Scenario without metadata.name".to_string())?,
            };
            let sealed = s.spec.state == State::Suspended;
            let mut desired = workspace::desired(
                &id,
                &s.spec,
                sealed,
                storage_class,
                workspace::access::DEFAULT_MEMBER_CLUSTER_ROLE,
            )?;
            // Each dataset's plan and preparation Job in the vault, before the
            // compute that waits for them. (The key is random and never shown;
            // the output claim's size is the raw claim's, known in the cluster.)
            let compute = desired.pop();
            for request in &s.spec.data {
                match self.datasets.iter().find(|d| d.name_any() == request.dataset) {
                    Some(d) => {
                        desired.push(serde_json::to_value(data::plan_config_map(&id, d, request))?);
                        desired.push(serde_json::to_value(data::preparation_job(&id, d, agent_image))?);
                    }
                    None => notes.push(format!(
                        "scenario {name}: Dataset {} is not in the files, its preparation is not shown",
                        request.dataset
                    )),
                }
            }
            desired.extend(compute);
            objects.extend(desired);
        }
        Ok(Rendered {
            objects,
            rejections,
            notes,
        })
    }
}

/// What [`Documents::render`] found.
pub(super) struct Rendered {
    /// Every object, scenario after scenario.
    pub(super) objects: Vec<Value>,
    /// Scenarios the operator would reject, with why.
    pub(super) rejections: Vec<String>,
    /// Scenarios for which nothing is created, with why.
    pub(super) notes: Vec<String>,
}

/// Multi-document YAML of `objects`.
pub(super) fn to_yaml(objects: &[Value]) -> anyhow::Result<String> {
    let mut out = String::new();
    for o in objects {
        out += "---\n";
        out += &serde_yaml::to_string(o)?;
    }
    Ok(out)
}

fn files_of(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading directory {}", p.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

pub(super) fn run(args: RenderArgs) -> anyhow::Result<()> {
    let mut docs = Documents::default();
    for f in files_of(&args.files)? {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        docs.add(&text, &f.display().to_string())?;
    }
    if docs.scenarios.is_empty() {
        anyhow::bail!("no Scenario in the files: nothing to render");
    }
    let rendered = docs.render(args.storage_class.as_deref(), &args.agent_image)?;
    super::common::print(&to_yaml(&rendered.objects)?)?;
    for line in rendered.notes.iter().chain(&rendered.rejections) {
        eprintln!("{line}");
    }
    if !rendered.rejections.is_empty() {
        anyhow::bail!(
            "{} scenario(s) would be rejected by the operator",
            rendered.rejections.len()
        );
    }
    Ok(())
}
