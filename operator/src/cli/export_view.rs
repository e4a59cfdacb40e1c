//! What `cleanroom export show|list|create` print of an Export (pure).

use std::fmt::Write as _;

use kube::ResourceExt;
use serde::Serialize;

use super::common::Output;
use crate::api::airlock::{ExportFile, ReleasedCopy, ReviewRecord, ScanSummary, SealedCopy};
use crate::api::scenario::NAMESPACE_PREFIX;
use crate::api::{Export, Time, WipeAttestation};

/// One export as the verbs show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportView {
    pub name: String,
    pub scenario: String,
    pub namespace: String,
    pub requester: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The files asked for.
    pub files: Vec<ExportFile>,
    pub context: String,
    pub controls: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedCopy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals_required: Option<i32>,
    pub reviews: Vec<ReviewRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released: Option<ReleasedCopy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wipe: Option<WipeAttestation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Time>,
}

impl From<&Export> for ExportView {
    fn from(e: &Export) -> Self {
        let status = e.status.clone().unwrap_or_default();
        let namespace = e.namespace().unwrap_or_default();
        let scenario = status.scenario.clone().unwrap_or_else(|| {
            namespace
                .strip_prefix(NAMESPACE_PREFIX)
                .unwrap_or(&namespace)
                .to_string()
        });
        ExportView {
            name: e.name_any(),
            scenario,
            namespace,
            requester: e.spec.requester.clone(),
            phase: status.phase.map(|p| format!("{p:?}")),
            message: status.message,
            files: e.spec.files.clone(),
            context: e.spec.context.clone(),
            controls: e.spec.controls.clone(),
            sealed: status.sealed,
            scan: status.scan,
            approvals: status.approvals,
            approvals_required: status.approvals_required,
            reviews: status.reviews,
            released: status.released,
            wipe: status.wipe,
            deadline: status.deadline,
            created_at: e.metadata.creation_timestamp.clone(),
        }
    }
}

fn dash<T: ToString>(o: Option<T>) -> String {
    o.map_or_else(|| "-".into(), |v| v.to_string())
}

impl ExportView {
    /// The view in `output` format.
    pub fn render(&self, output: Output) -> anyhow::Result<String> {
        Ok(match output {
            Output::Json => serde_json::to_string_pretty(self)? + "\n",
            Output::Yaml => serde_yaml::to_string(self)?,
            Output::Table => self.table(),
        })
    }

    /// `x/required`, `x/?` before the operator says how many.
    pub fn approvals_text(&self) -> String {
        format!(
            "{}/{}",
            self.approvals.unwrap_or(0),
            dash(self.approvals_required)
        )
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "export/{} in {}", self.name, self.namespace);
        let mut row = |k: &str, v: String| {
            let _ = writeln!(out, "  {k:<14}{v}");
        };
        row("scenario", self.scenario.clone());
        row("requester", self.requester.clone());
        row("phase", dash(self.phase.as_ref()));
        row("message", dash(self.message.as_ref()));
        row("approvals", self.approvals_text());
        row("deadline", dash(self.deadline.as_ref().map(|t| t.0)));
        row(
            "manifest",
            dash(
                self.sealed
                    .as_ref()
                    .map(|s| format!("sha256 {}", s.manifest_sha256)),
            ),
        );
        row("verdict", dash(self.scan.as_ref().map(|s| &s.verdict)));
        self.files_table(&mut out);
        self.reviews_table(&mut out);
        self.released_and_wipe(&mut out);
        out
    }

    /// Each file: kind, and once sealed its size and SHA-256, and once
    /// checked its verdict and the checks that fired.
    fn files_table(&self, out: &mut String) {
        let _ = writeln!(out, "  files:");
        let _ = writeln!(
            out,
            "    {:<27} {:<9} {:>12}  {:<65} {:<7} CHECKS",
            "PATH", "KIND", "BYTES", "SHA256", "VERDICT"
        );
        for f in &self.files {
            let sealed = self
                .sealed
                .as_ref()
                .and_then(|s| s.files.iter().find(|s| s.name == f.path));
            let verdict = self
                .scan
                .as_ref()
                .and_then(|s| s.files.iter().find(|v| v.name == f.path));
            let checks = verdict.map(|v| v.checks.join(", ")).unwrap_or_default();
            let _ = writeln!(
                out,
                "    {:<27} {:<9} {:>12}  {:<65} {:<7} {}",
                f.path,
                format!("{:?}", f.kind),
                dash(sealed.map(|s| s.size)),
                dash(sealed.map(|s| &s.sha256)),
                dash(verdict.map(|v| &v.verdict)),
                if checks.is_empty() { "-" } else { &checks },
            );
        }
    }

    fn reviews_table(&self, out: &mut String) {
        if self.reviews.is_empty() {
            let _ = writeln!(out, "  reviews:      -");
            return;
        }
        let _ = writeln!(out, "  reviews:");
        for r in &self.reviews {
            let _ = writeln!(
                out,
                "    {:<10}{} ({})",
                format!("{:?}", r.decision),
                r.reviewer,
                r.name
            );
        }
    }

    fn released_and_wipe(&self, out: &mut String) {
        if let Some(r) = &self.released {
            let _ = writeln!(
                out,
                "  released:     {} on claim {} at {}",
                r.path, r.claim, r.released_at.0
            );
        }
        if let Some(w) = &self.wipe {
            let _ = writeln!(
                out,
                "  wiped:        {} ({}): {} bytes, {} files, sha256 {} at {}",
                w.claim, w.volume, w.bytes, w.files, w.digest, w.completed_at.0
            );
        }
    }
}

/// Several exports: one line each, or a JSON/YAML list of views.
pub fn list_table(views: &[ExportView], output: Output) -> anyhow::Result<String> {
    if output != Output::Table {
        return Ok(match output {
            Output::Json => serde_json::to_string_pretty(views)? + "\n",
            _ => serde_yaml::to_string(views)?,
        });
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<23} {:<27} {:<10} {:<27} {:<7} {:<9} FILES",
        "SCENARIO", "NAME", "PHASE", "REQUESTER", "VERDICT", "APPROVALS"
    );
    for v in views {
        let _ = writeln!(
            out,
            "{:<23} {:<27} {:<10} {:<27} {:<7} {:<9} {}",
            v.scenario,
            v.name,
            dash(v.phase.as_ref()),
            v.requester,
            dash(v.scan.as_ref().map(|s| &s.verdict)),
            v.approvals_text(),
            v.files.len()
        );
    }
    Ok(out)
}
