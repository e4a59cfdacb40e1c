//! The desensitization plan the operator writes for one dataset of one
//! scenario, and its checks before any data is read.
//!
//! ```json
//! {
//!   "columns": [
//!     {"name": "身份证号", "type": "string", "sensitivity": "ResidentId", "rule": {"kind": "hash"}},
//!     {"name": "手机号", "type": "string", "sensitivity": "Mobile", "rule": {"kind": "mask", "keepFirst": 3, "keepLast": 4}},
//!     {"name": "出生日期", "type": "date", "sensitivity": "QuasiIdentifier", "rule": {"kind": "generalize", "truncate": "month"}},
//!     {"name": "收入", "type": "decimal", "sensitivity": "None", "rule": {"kind": "noise", "bound": 5.0}}
//!   ],
//!   "sampling": {"fraction": 0.1, "seed": 42}
//! }
//! ```
//!
//! `sampling` is `{"fraction": F, "seed": S}` (Bernoulli), `{"rows": N,
//! "seed": S}` (reservoir: exactly N rows, or all when fewer) or `null` /
//! absent (every row). Column, type, sensitivity and rule spellings are the
//! ones of the operator's `Dataset` API (`operator/src/api/{dataset,masking}.rs`);
//! the agent keeps its own copy so that it does not link the operator.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// A whole plan.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Columns in output order (dropped ones are listed too, and removed).
    pub columns: Vec<PlanColumn>,
    /// Which rows are kept; every row when absent.
    #[serde(default)]
    pub sampling: Option<Sampling>,
}

/// One column of the plan.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlanColumn {
    /// Name in the input (CSV header, JSON key or Parquet field).
    pub name: String,
    /// Value type.
    #[serde(rename = "type")]
    pub type_: ColumnType,
    /// Sensitivity class.
    pub sensitivity: Sensitivity,
    /// How the column is desensitized.
    pub rule: Rule,
}

/// Value type of a column (as in the operator's `ColumnType`).
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ColumnType {
    String,
    Integer,
    Decimal,
    Date,
    Datetime,
    Boolean,
}

impl ColumnType {
    /// Integer or decimal.
    pub fn is_numeric(self) -> bool {
        matches!(self, ColumnType::Integer | ColumnType::Decimal)
    }
}

/// Sensitivity class of a column (as in the operator's `Sensitivity`).
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sensitivity {
    ResidentId,
    Mobile,
    Name,
    Address,
    BankCard,
    Plate,
    Email,
    CreditCode,
    FreeText,
    QuasiIdentifier,
    None,
}

impl Sensitivity {
    /// Personal information: never delivered in clear, and any leak fails the run.
    pub fn is_personal(self) -> bool {
        matches!(
            self,
            Sensitivity::ResidentId
                | Sensitivity::Mobile
                | Sensitivity::Name
                | Sensitivity::Address
                | Sensitivity::BankCard
                | Sensitivity::Plate
                | Sensitivity::Email
        )
    }
}

/// A masking rule (as the operator's `MaskingRule`, discriminated by `kind`).
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Rule {
    Keep,
    Drop,
    Redact {
        #[serde(default = "default_redaction")]
        with: String,
    },
    Mask {
        #[serde(default)]
        keep_first: u32,
        #[serde(default)]
        keep_last: u32,
    },
    Hash,
    Generalize {
        #[serde(flatten)]
        to: Generalization,
    },
    Noise {
        bound: f64,
    },
}

fn default_redaction() -> String {
    "***".to_string()
}

/// How `generalize` coarsens a value.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Generalization {
    Bucket(u64),
    Truncate(DatePart),
    Prefix(u32),
}

/// Precision a date is cut to.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum DatePart {
    Day,
    Month,
    Year,
}

/// Sampling of rows.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq)]
#[serde(untagged, deny_unknown_fields)]
pub enum Sampling {
    /// Each row is kept with this probability, independently.
    Fraction { fraction: f64, seed: u64 },
    /// Exactly this many rows (or all when fewer), uniformly.
    Rows { rows: u64, seed: u64 },
}

impl Sampling {
    /// The seed, also used for noise.
    pub fn seed(&self) -> u64 {
        match self {
            Sampling::Fraction { seed, .. } | Sampling::Rows { seed, .. } => *seed,
        }
    }
}

impl Rule {
    /// The `kind` as written in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Rule::Keep => "keep",
            Rule::Drop => "drop",
            Rule::Redact { .. } => "redact",
            Rule::Mask { .. } => "mask",
            Rule::Hash => "hash",
            Rule::Generalize { .. } => "generalize",
            Rule::Noise { .. } => "noise",
        }
    }

    /// The rule as a short human string for the report, e.g. `mask(3,4)`.
    pub fn describe(&self) -> String {
        match self {
            Rule::Mask {
                keep_first,
                keep_last,
            } => format!("mask({keep_first},{keep_last})"),
            Rule::Generalize { to } => match to {
                Generalization::Bucket(w) => format!("generalize(bucket {w})"),
                Generalization::Truncate(p) => format!("generalize(truncate {p:?})"),
                Generalization::Prefix(n) => format!("generalize(prefix {n})"),
            },
            Rule::Noise { bound } => format!("noise({bound})"),
            other => other.kind().to_string(),
        }
    }

    /// Same as the operator's `MaskingRule::applies_to`.
    fn applies_to(&self, t: ColumnType) -> bool {
        match self {
            Rule::Keep | Rule::Drop | Rule::Redact { .. } | Rule::Hash => true,
            Rule::Mask { .. } => t == ColumnType::String,
            Rule::Noise { .. } => t.is_numeric(),
            Rule::Generalize { to } => match to {
                Generalization::Bucket(_) => t.is_numeric(),
                Generalization::Truncate(_) => {
                    matches!(t, ColumnType::Date | ColumnType::Datetime)
                }
                Generalization::Prefix(_) => t == ColumnType::String,
            },
        }
    }
}

/// A plan that cannot be run; found before any data is read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("the plan has no columns")]
    Empty,
    #[error("column {0:?} is listed twice in the plan")]
    Duplicate(String),
    #[error(
        "column {name:?} is personal ({sensitivity:?}) and is never delivered in clear: its rule must not be keep; use mask, generalize, hash, redact or drop"
    )]
    KeepPersonal {
        name: String,
        sensitivity: Sensitivity,
    },
    #[error("column {name:?}: rule {rule} does not apply to type {type_:?}")]
    RuleType {
        name: String,
        rule: String,
        type_: ColumnType,
    },
    #[error("column {0:?}: {1}")]
    Parameter(String, &'static str),
    #[error("sampling: {0}")]
    Sampling(&'static str),
    #[error("the plan hashes column {0:?} but no --key-file was given")]
    NoKey(String),
    #[error("every column of the plan is dropped: nothing to deliver")]
    AllDropped,
}

impl Plan {
    /// Parse and check a plan.
    pub fn from_json(text: &str) -> Result<Plan, String> {
        let plan: Plan =
            serde_json::from_str(text).map_err(|e| format!("the plan is not valid: {e}"))?;
        Ok(plan)
    }

    /// Refuse what must never run: personal columns kept in clear, rules
    /// that do not fit the type, bad parameters, hashing without a key.
    pub fn check(&self, has_key: bool) -> Result<(), PlanError> {
        if self.columns.is_empty() {
            return Err(PlanError::Empty);
        }
        let mut seen = HashSet::new();
        for c in &self.columns {
            if !seen.insert(c.name.as_str()) {
                return Err(PlanError::Duplicate(c.name.clone()));
            }
            if c.rule == Rule::Keep && c.sensitivity.is_personal() {
                return Err(PlanError::KeepPersonal {
                    name: c.name.clone(),
                    sensitivity: c.sensitivity,
                });
            }
            if !c.rule.applies_to(c.type_) {
                return Err(PlanError::RuleType {
                    name: c.name.clone(),
                    rule: c.rule.describe(),
                    type_: c.type_,
                });
            }
            match &c.rule {
                Rule::Noise { bound } if !(bound.is_finite() && *bound >= 0.0) => {
                    return Err(PlanError::Parameter(
                        c.name.clone(),
                        "noise bound must be a finite number >= 0",
                    ));
                }
                Rule::Generalize {
                    to: Generalization::Bucket(0),
                } => {
                    return Err(PlanError::Parameter(
                        c.name.clone(),
                        "generalize bucket must be > 0",
                    ));
                }
                Rule::Hash if !has_key => return Err(PlanError::NoKey(c.name.clone())),
                _ => {}
            }
        }
        if self.columns.iter().all(|c| c.rule == Rule::Drop) {
            return Err(PlanError::AllDropped);
        }
        match self.sampling {
            Some(Sampling::Fraction { fraction, .. }) if !(fraction > 0.0 && fraction <= 1.0) => {
                Err(PlanError::Sampling("fraction must be in (0, 1]"))
            }
            Some(Sampling::Rows { rows: 0, .. }) => Err(PlanError::Sampling("rows must be >= 1")),
            _ => Ok(()),
        }
    }

    /// The columns that are delivered, in output order.
    pub fn output_columns(&self) -> impl Iterator<Item = &PlanColumn> {
        self.columns.iter().filter(|c| c.rule != Rule::Drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: &str) -> Plan {
        Plan::from_json(json).expect("valid plan")
    }

    #[test]
    fn parses_every_rule_shape_of_the_operator() {
        let p = plan(
            r#"{"columns":[
            {"name":"a","type":"string","sensitivity":"None","rule":{"kind":"keep"}},
            {"name":"b","type":"string","sensitivity":"Name","rule":{"kind":"drop"}},
            {"name":"c","type":"string","sensitivity":"Name","rule":{"kind":"redact"}},
            {"name":"d","type":"string","sensitivity":"Name","rule":{"kind":"redact","with":"X"}},
            {"name":"e","type":"string","sensitivity":"Mobile","rule":{"kind":"mask","keepFirst":3,"keepLast":4}},
            {"name":"f","type":"string","sensitivity":"ResidentId","rule":{"kind":"hash"}},
            {"name":"g","type":"integer","sensitivity":"None","rule":{"kind":"generalize","bucket":10}},
            {"name":"h","type":"date","sensitivity":"QuasiIdentifier","rule":{"kind":"generalize","truncate":"month"}},
            {"name":"i","type":"string","sensitivity":"Address","rule":{"kind":"generalize","prefix":6}},
            {"name":"j","type":"decimal","sensitivity":"None","rule":{"kind":"noise","bound":5.0}}
            ],"sampling":{"rows":10,"seed":7}}"#,
        );
        let rules: Vec<Rule> = p.columns.iter().map(|c| c.rule.clone()).collect();
        assert_eq!(
            rules,
            vec![
                Rule::Keep,
                Rule::Drop,
                Rule::Redact { with: "***".into() },
                Rule::Redact { with: "X".into() },
                Rule::Mask {
                    keep_first: 3,
                    keep_last: 4
                },
                Rule::Hash,
                Rule::Generalize {
                    to: Generalization::Bucket(10)
                },
                Rule::Generalize {
                    to: Generalization::Truncate(DatePart::Month)
                },
                Rule::Generalize {
                    to: Generalization::Prefix(6)
                },
                Rule::Noise { bound: 5.0 },
            ]
        );
        assert_eq!(p.sampling, Some(Sampling::Rows { rows: 10, seed: 7 }));
        assert_eq!(p.check(true), Ok(()));
        assert_eq!(p.output_columns().count(), 9);
    }

    #[test]
    fn sampling_shapes() {
        let f = plan(
            r#"{"columns":[{"name":"a","type":"string","sensitivity":"None","rule":{"kind":"keep"}}],"sampling":{"fraction":0.5,"seed":1}}"#,
        );
        assert_eq!(
            f.sampling,
            Some(Sampling::Fraction {
                fraction: 0.5,
                seed: 1
            })
        );
        let none = plan(
            r#"{"columns":[{"name":"a","type":"string","sensitivity":"None","rule":{"kind":"keep"}}],"sampling":null}"#,
        );
        assert_eq!(none.sampling, None);
        assert!(
            Plan::from_json(
                r#"{"columns":[{"name":"a","type":"string","sensitivity":"None","rule":{"kind":"keep"}}],"sampling":{"fraction":2,"seed":1}}"#
            )
            .expect("parses")
            .check(false)
            .is_err()
        );
    }

    #[test]
    fn keep_on_a_personal_column_is_refused() {
        for s in [
            "ResidentId",
            "Mobile",
            "Name",
            "Address",
            "BankCard",
            "Plate",
            "Email",
        ] {
            let p = plan(&format!(
                r#"{{"columns":[{{"name":"x","type":"string","sensitivity":"{s}","rule":{{"kind":"keep"}}}}]}}"#
            ));
            let err = p.check(true).expect_err("refused");
            assert!(matches!(err, PlanError::KeepPersonal { .. }), "{s}");
            assert!(err.to_string().contains("never delivered in clear"));
        }
    }

    #[test]
    fn other_refusals() {
        let bad = [
            (r#"{"kind":"mask","keepFirst":1}"#, "integer"),
            (r#"{"kind":"noise","bound":1}"#, "string"),
            (r#"{"kind":"generalize","bucket":0}"#, "integer"),
            (r#"{"kind":"generalize","truncate":"year"}"#, "string"),
            (r#"{"kind":"hash"}"#, "string"),
            (r#"{"kind":"drop"}"#, "string"),
        ];
        for (rule, t) in bad {
            let p = plan(&format!(
                r#"{{"columns":[{{"name":"x","type":"{t}","sensitivity":"None","rule":{rule}}}]}}"#
            ));
            assert!(p.check(false).is_err(), "{rule} on {t}");
        }
        let dup = plan(
            r#"{"columns":[{"name":"a","type":"string","sensitivity":"None","rule":{"kind":"keep"}},{"name":"a","type":"string","sensitivity":"None","rule":{"kind":"keep"}}]}"#,
        );
        assert_eq!(dup.check(false), Err(PlanError::Duplicate("a".into())));
        assert!(Plan::from_json(r#"{"columns":[],"extra":1}"#).is_err());
    }
}
