//! The airlock's part of `cleanroom report`: each export of an
//! authorization as its ledger records tell it (pure). The ledger, not the
//! Export objects, since a withdrawn or cleaned-up export is gone from the
//! cluster but never from the ledger.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::api::Time;
use crate::audit::{Action, Record};

/// Kind of the ledger records about exports.
pub const EXPORT_KIND: &str = "Export";

/// One export, for the bureau.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportLine {
    /// `<namespace>/<export>`.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// Each counted review, in order.
    pub reviews: Vec<ReviewLine>,
    /// The automatic checks' verdict (`pass`, `review`, `fail`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    /// The last phase the ledger shows (`Withdrawn` once withdrawn).
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_path: Option<String>,
    /// Why it failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Whether its sealed copy was wiped (with an attestation in the ledger).
    pub wiped: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewLine {
    pub reviewer: String,
    pub decision: String,
}

impl ExportLine {
    fn new(name: &str) -> ExportLine {
        ExportLine {
            name: name.to_string(),
            submitted_at: None,
            requester: None,
            reviews: Vec::new(),
            verdict: None,
            manifest_sha256: None,
            phase: "Unknown".into(),
            released_path: None,
            failure: None,
            wiped: false,
        }
    }

    /// One record, in chain order.
    fn apply(&mut self, r: &Record) {
        let after = r.after.as_ref().unwrap_or(&Value::Null);
        let text = |key: &str| after.get(key).and_then(Value::as_str).map(String::from);
        if let Some(m) = text("manifestSha256") {
            self.manifest_sha256 = Some(m);
        }
        match r.action {
            Action::Submitted => {
                self.requester = Some(r.actor.clone());
                self.submitted_at = Some(r.time.clone());
                self.phase = "Submitted".into();
            }
            Action::Sealed => self.phase = "Sealed".into(),
            Action::Checked => {
                self.verdict = after
                    .pointer("/scan/verdict")
                    .and_then(Value::as_str)
                    .map(String::from);
                self.phase = text("phase").unwrap_or_else(|| "Checked".into());
            }
            Action::Reviewed => self.reviewed(&r.actor, text("decision")),
            Action::Released => {
                self.phase = "Released".into();
                self.released_path = text("path");
            }
            // A released or recalled product was not withdrawn: it left.
            Action::Withdrawn if !matches!(self.phase.as_str(), "Released" | "Recalled") => {
                self.phase = "Withdrawn".into()
            }
            Action::Recalled => {
                self.phase = "Recalled".into();
                self.reviews.push(ReviewLine {
                    reviewer: r.actor.clone(),
                    decision: "Recall".into(),
                });
            }
            Action::Failed => {
                self.phase = "Failed".into();
                self.failure = r.reason.clone();
            }
            Action::Wiped => self.wiped = true,
            _ => {}
        }
    }

    fn reviewed(&mut self, reviewer: &str, decision: Option<String>) {
        let decision = decision.unwrap_or_default();
        match decision.as_str() {
            "Reject" => self.phase = "Rejected".into(),
            "Return" => self.phase = "Returned".into(),
            _ => {}
        }
        self.reviews.push(ReviewLine {
            reviewer: reviewer.to_string(),
            decision,
        });
    }
}

/// Per authorization, the exports with a record in the period (each told
/// from all its records), in order of submission.
pub fn exports(
    ledger: &[Record],
    since: k8s_openapi::jiff::Timestamp,
) -> BTreeMap<String, Vec<ExportLine>> {
    let mut by_uid: BTreeMap<&str, (String, ExportLine, bool)> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for r in ledger.iter().filter(|r| r.kind == EXPORT_KIND) {
        let Some(authorization) = &r.authorization else {
            continue;
        };
        let entry = by_uid.entry(&r.uid).or_insert_with(|| {
            order.push(&r.uid);
            (authorization.clone(), ExportLine::new(&r.name), false)
        });
        entry.1.apply(r);
        entry.2 |= r.time.0 >= since;
    }
    let mut out: BTreeMap<String, Vec<ExportLine>> = BTreeMap::new();
    for uid in order {
        if let Some((authorization, line, true)) = by_uid.remove(uid) {
            out.entry(authorization).or_default().push(line);
        }
    }
    out
}

/// One line of the report's table.
pub fn table_line(e: &ExportLine) -> String {
    let reviews: Vec<String> = e
        .reviews
        .iter()
        .map(|r| format!("{} {}", r.reviewer, r.decision))
        .collect();
    format!(
        "    {} by {}: {}, verdict {}, reviews {}, manifest {}{}",
        e.name,
        e.requester.as_deref().unwrap_or("-"),
        e.phase,
        e.verdict.as_deref().unwrap_or("-"),
        if reviews.is_empty() {
            "-".into()
        } else {
            reviews.join(", ")
        },
        e.manifest_sha256.as_deref().unwrap_or("-"),
        if e.wiped { ", sealed copy wiped" } else { "" },
    )
}
