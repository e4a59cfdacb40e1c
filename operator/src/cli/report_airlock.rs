//! The airlock's part of `cleanroom report`: each export and each import of
//! an authorization as its ledger records tell it (pure). The ledger, not
//! the objects, since a withdrawn or cleaned-up request is gone from the
//! cluster but never from the ledger. Both kinds have the same actions
//! (`submitted`, `sealed`, `checked`, `reviewed`, `released`, `wiped`,
//! `withdrawn`, `failed`; `recalled` for exports only), so one reading
//! serves both: an import's `submitted` record adds its supplier and legal
//! basis, and its `released` one the path it is mounted at.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::airlock_view::legal_basis_text;
use crate::api::Time;
use crate::api::import::LegalBasis;
use crate::audit::{Action, Record};

/// Which of the airlock's kinds, by the kind of its ledger records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Airlock {
    Export,
    Import,
}

impl Airlock {
    /// The kind of the ledger records about it.
    pub fn kind(self) -> &'static str {
        match self {
            Airlock::Export => "Export",
            Airlock::Import => "Import",
        }
    }

    /// Whether a withdrawal after release ends it. A released export has
    /// left (deleting the object changes nothing of the copy delivered); a
    /// released import is mounted in the workspace, and withdrawing it is
    /// how it leaves there.
    fn withdrawn_once_released(self) -> bool {
        self == Airlock::Import
    }

    /// How the released copy is said in the report's table.
    fn released_words(self) -> &'static str {
        match self {
            Airlock::Export => "released to",
            Airlock::Import => "mounted at",
        }
    }

    /// How a wipe is said: an import's may be of its sealed or its mounted copy.
    fn wiped_words(self) -> &'static str {
        match self {
            Airlock::Export => "sealed copy wiped",
            Airlock::Import => "copy wiped",
        }
    }
}

/// One export or import, for the bureau.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AirlockLine {
    /// `<namespace>/<export or import>`.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// Who supplies an import's data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
    /// Why an import's data may be used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<LegalBasis>,
    /// Each counted review, in order.
    pub reviews: Vec<ReviewLine>,
    /// The automatic checks' verdict (`pass`, `review`, `fail`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    /// The last phase the ledger shows (`Withdrawn` once withdrawn).
    pub phase: String,
    /// Where the released copy went: an export's directory on the release
    /// claim, or where an import is mounted in the workspace (`/imports/<name>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_path: Option<String>,
    /// Why it failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Whether a copy was wiped (with an attestation in the ledger): the
    /// sealed one, or an import's mounted one.
    pub wiped: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewLine {
    pub reviewer: String,
    pub decision: String,
}

impl AirlockLine {
    fn new(name: &str) -> AirlockLine {
        AirlockLine {
            name: name.to_string(),
            submitted_at: None,
            requester: None,
            supplier: None,
            legal_basis: None,
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
    fn apply(&mut self, r: &Record, airlock: Airlock) {
        let after = r.after.as_ref().unwrap_or(&Value::Null);
        let text = |key: &str| after.get(key).and_then(Value::as_str).map(String::from);
        if let Some(m) = text("manifestSha256") {
            self.manifest_sha256 = Some(m);
        }
        match r.action {
            Action::Submitted => {
                self.requester = Some(r.actor.clone());
                self.submitted_at = Some(r.time.clone());
                self.supplier = text("supplier");
                self.legal_basis = after
                    .get("legalBasis")
                    .and_then(|b| serde_json::from_value(b.clone()).ok());
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
            // A released or recalled export was not withdrawn: it left.
            Action::Withdrawn
                if airlock.withdrawn_once_released()
                    || !matches!(self.phase.as_str(), "Released" | "Recalled") =>
            {
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

/// Per authorization, the exports (or imports) with a record in the period
/// (each told from all its records), in order of submission.
pub fn lines(
    ledger: &[Record],
    since: k8s_openapi::jiff::Timestamp,
    airlock: Airlock,
) -> BTreeMap<String, Vec<AirlockLine>> {
    let mut by_uid: BTreeMap<&str, (String, AirlockLine, bool)> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for r in ledger.iter().filter(|r| r.kind == airlock.kind()) {
        let Some(authorization) = &r.authorization else {
            continue;
        };
        let entry = by_uid.entry(&r.uid).or_insert_with(|| {
            order.push(&r.uid);
            (authorization.clone(), AirlockLine::new(&r.name), false)
        });
        entry.1.apply(r, airlock);
        entry.2 |= r.time.0 >= since;
    }
    let mut out: BTreeMap<String, Vec<AirlockLine>> = BTreeMap::new();
    for uid in order {
        if let Some((authorization, line, true)) = by_uid.remove(uid) {
            out.entry(authorization).or_default().push(line);
        }
    }
    out
}

/// One line of the report's table.
pub fn table_line(e: &AirlockLine, airlock: Airlock) -> String {
    let reviews: Vec<String> = e
        .reviews
        .iter()
        .map(|r| format!("{} {}", r.reviewer, r.decision))
        .collect();
    let from = match (&e.supplier, &e.legal_basis) {
        (None, None) => String::new(),
        (s, b) => format!(
            " from {} ({})",
            s.as_deref().unwrap_or("-"),
            b.as_ref().map_or_else(|| "-".into(), legal_basis_text)
        ),
    };
    format!(
        "    {} by {}{from}: {}, verdict {}, reviews {}, manifest {}{}{}",
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
        e.released_path
            .as_ref()
            .map_or_else(String::new, |p| format!(
                ", {} {p}",
                airlock.released_words()
            )),
        if e.wiped {
            format!(", {}", airlock.wiped_words())
        } else {
            String::new()
        },
    )
}
