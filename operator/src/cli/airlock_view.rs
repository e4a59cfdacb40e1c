//! What `cleanroom export|import show|list|create` print of an Export or an
//! Import (pure). The two kinds share their status (`ExportStatus`), so they
//! share one view and its rendering; only what was asked for differs, and
//! each kind says that through [`Asked`].

use std::fmt::Write as _;

use kube::ResourceExt;
use serde::Serialize;

use super::common::Output;
use crate::api::airlock::{
    ExportFile, ExportStatus, ReleasedCopy, ReviewRecord, ScanSummary, SealedCopy,
};
use crate::api::import::{ImportFile, LegalBasis};
use crate::api::scenario::NAMESPACE_PREFIX;
use crate::api::{Export, Import, Time, WipeAttestation};

/// What one kind of airlock request asked for, and how its show and list
/// print it.
pub trait Asked: Serialize {
    /// `export` or `import`.
    const NOUN: &'static str;
    /// The heading of the files table's second column.
    const WHAT: &'static str;
    /// The label of the released copy's line, and how its claim is named.
    const RELEASED: (&'static str, &'static str);
    /// The list's last column's heading.
    const LIST_TAIL: &'static str;
    /// Rows shown after the requester.
    fn rows(&self) -> Vec<(&'static str, String)>;
    /// The files asked for, in order.
    fn files(&self) -> Vec<FileRow>;
    /// The list's last column.
    fn list_tail(&self) -> String;
}

/// One file as the files table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub path: String,
    /// Short: its kind, or how many columns it declares.
    pub what: String,
    /// Shown on the line beneath, if any (a declared schema).
    pub detail: Option<String>,
}

/// What an Export asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportAsked {
    /// The files asked for.
    pub files: Vec<ExportFile>,
    pub context: String,
    pub controls: String,
}

/// What an Import asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportAsked {
    pub supplier: String,
    pub legal_basis: LegalBasis,
    pub staging_claim: String,
    /// The files asked for, with their declared schemas.
    pub files: Vec<ImportFile>,
    pub purpose: String,
}

impl Asked for ExportAsked {
    const NOUN: &'static str = "export";
    const WHAT: &'static str = "KIND";
    const RELEASED: (&'static str, &'static str) = ("released:", "on claim");
    const LIST_TAIL: &'static str = "FILES";

    fn rows(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    fn files(&self) -> Vec<FileRow> {
        self.files
            .iter()
            .map(|f| FileRow {
                path: f.path.clone(),
                what: format!("{:?}", f.kind),
                detail: None,
            })
            .collect()
    }

    fn list_tail(&self) -> String {
        self.files.len().to_string()
    }
}

/// `Contract C-2026-17`.
pub fn legal_basis_text(b: &LegalBasis) -> String {
    format!("{:?} {}", b.kind, b.reference)
}

/// `district string, n integer`.
pub fn schema_text(f: &ImportFile) -> String {
    let columns: Vec<String> = f
        .schema
        .iter()
        .map(|c| {
            let t = serde_json::to_value(c.type_).ok();
            let t = t.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
            format!("{} {t}", c.name)
        })
        .collect();
    columns.join(", ")
}

impl Asked for ImportAsked {
    const NOUN: &'static str = "import";
    const WHAT: &'static str = "SCHEMA";
    const RELEASED: (&'static str, &'static str) = ("mounted:", "from claim");
    const LIST_TAIL: &'static str = "FILES SUPPLIER";

    fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("supplier", self.supplier.clone()),
            ("legal basis", legal_basis_text(&self.legal_basis)),
            ("staging claim", self.staging_claim.clone()),
            ("purpose", self.purpose.clone()),
        ]
    }

    fn files(&self) -> Vec<FileRow> {
        self.files
            .iter()
            .map(|f| FileRow {
                path: f.path.clone(),
                what: match f.schema.len() {
                    0 => "document".into(),
                    1 => "1 column".into(),
                    n => format!("{n} columns"),
                },
                detail: (!f.schema.is_empty()).then(|| schema_text(f)),
            })
            .collect()
    }

    fn list_tail(&self) -> String {
        format!("{:<5} {}", self.files.len(), self.supplier)
    }
}

/// One export or import as the verbs show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AirlockView<A> {
    pub name: String,
    pub scenario: String,
    pub namespace: String,
    pub requester: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What was asked for (its fields are the view's).
    #[serde(flatten)]
    pub asked: A,
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

/// One export as the verbs show it.
pub type ExportView = AirlockView<ExportAsked>;
/// One import as the verbs show it.
pub type ImportView = AirlockView<ImportAsked>;

impl<A> AirlockView<A> {
    /// The view of `object`, whichever kind: who asked, what, and its status.
    pub fn new(
        object: &impl ResourceExt,
        requester: &str,
        status: Option<&ExportStatus>,
        asked: A,
    ) -> Self {
        let status = status.cloned().unwrap_or_default();
        let namespace = object.namespace().unwrap_or_default();
        let scenario = status.scenario.clone().unwrap_or_else(|| {
            namespace
                .strip_prefix(NAMESPACE_PREFIX)
                .unwrap_or(&namespace)
                .to_string()
        });
        AirlockView {
            name: object.name_any(),
            scenario,
            namespace,
            requester: requester.to_string(),
            phase: status.phase.map(|p| format!("{p:?}")),
            message: status.message,
            asked,
            sealed: status.sealed,
            scan: status.scan,
            approvals: status.approvals,
            approvals_required: status.approvals_required,
            reviews: status.reviews,
            released: status.released,
            wipe: status.wipe,
            deadline: status.deadline,
            created_at: object.meta().creation_timestamp.clone(),
        }
    }
}

impl From<&Export> for ExportView {
    fn from(e: &Export) -> Self {
        let asked = ExportAsked {
            files: e.spec.files.clone(),
            context: e.spec.context.clone(),
            controls: e.spec.controls.clone(),
        };
        AirlockView::new(e, &e.spec.requester, e.status.as_ref(), asked)
    }
}

impl From<&Import> for ImportView {
    fn from(i: &Import) -> Self {
        let asked = ImportAsked {
            supplier: i.spec.supplier.clone(),
            legal_basis: i.spec.legal_basis.clone(),
            staging_claim: i.spec.staging_claim.clone(),
            files: i.spec.files.clone(),
            purpose: i.spec.purpose.clone(),
        };
        AirlockView::new(i, &i.spec.requester, i.status.as_ref(), asked)
    }
}

fn dash<T: ToString>(o: Option<T>) -> String {
    o.map_or_else(|| "-".into(), |v| v.to_string())
}

impl<A: Asked> AirlockView<A> {
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
        let _ = writeln!(out, "{}/{} in {}", A::NOUN, self.name, self.namespace);
        let mut row = |k: &str, v: String| {
            let _ = writeln!(out, "  {k:<14}{v}");
        };
        row("scenario", self.scenario.clone());
        row("requester", self.requester.clone());
        for (k, v) in self.asked.rows() {
            row(k, v);
        }
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

    /// Each file: what it is, and once sealed its size and SHA-256, and
    /// once checked its verdict and the checks that fired.
    fn files_table(&self, out: &mut String) {
        let _ = writeln!(out, "  files:");
        let _ = writeln!(
            out,
            "    {:<27} {:<9} {:>12}  {:<65} {:<7} CHECKS",
            "PATH",
            A::WHAT,
            "BYTES",
            "SHA256",
            "VERDICT"
        );
        for f in self.asked.files() {
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
                f.what,
                dash(sealed.map(|s| s.size)),
                dash(sealed.map(|s| &s.sha256)),
                dash(verdict.map(|v| &v.verdict)),
                if checks.is_empty() { "-" } else { &checks },
            );
            if let Some(detail) = &f.detail {
                let _ = writeln!(out, "      {detail}");
            }
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
            let (label, on) = A::RELEASED;
            let _ = writeln!(
                out,
                "  {label:<14}{} {on} {} at {}",
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

/// Several exports or imports: one line each, or a JSON/YAML list of views.
pub fn list_table<A: Asked>(views: &[AirlockView<A>], output: Output) -> anyhow::Result<String> {
    if output != Output::Table {
        return Ok(match output {
            Output::Json => serde_json::to_string_pretty(views)? + "\n",
            _ => serde_yaml::to_string(views)?,
        });
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<23} {:<27} {:<10} {:<27} {:<7} {:<9} {}",
        "SCENARIO",
        "NAME",
        "PHASE",
        "REQUESTER",
        "VERDICT",
        "APPROVALS",
        A::LIST_TAIL
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
            v.asked.list_tail()
        );
    }
    Ok(out)
}
