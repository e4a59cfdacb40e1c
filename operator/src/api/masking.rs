//! Masking rules: how one column is desensitized before a scenario sees it.
//!
//! In YAML a rule is one object discriminated by `kind`:
//!
//! ```yaml
//! {kind: keep}                          # in clear (never for personal columns)
//! {kind: mask, keepFirst: 3, keepLast: 4}
//! {kind: generalize, bucket: 10}        # numbers: round down to a multiple of 10
//! {kind: generalize, truncate: month}   # dates: keep year and month
//! {kind: generalize, prefix: 6}         # strings: keep the first 6 characters
//! {kind: noise, bound: 5.0}             # numbers: add uniform noise in [-5, 5]
//! {kind: hash}                          # keyed pseudonym, per scenario
//! {kind: redact, with: "***"}           # constant
//! {kind: drop}                          # column removed
//! ```
//!
//! The schema is a flat object (one property per parameter) with CEL rules
//! that tie each parameter to its kind, so that it stays a structural schema
//! the API server accepts; in Rust it is the enum [`MaskingRule`].

use std::borrow::Cow;

use kube::KubeSchema;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::dataset::ColumnType;

/// How a column is desensitized. Ordered by [`MaskingRule::strength`]:
/// `keep < mask = generalize = noise < hash < redact < drop`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum MaskingRule {
    /// The value is delivered unchanged.
    Keep,
    /// The column is removed from the prepared data.
    Drop,
    /// Every value is replaced by the same constant.
    Redact {
        /// The constant; `***` when not given.
        #[serde(default = "default_redaction")]
        with: String,
    },
    /// Characters are replaced by `*` except a few at the start and end.
    Mask {
        /// Characters kept in clear at the start.
        #[serde(default)]
        keep_first: u32,
        /// Characters kept in clear at the end.
        #[serde(default)]
        keep_last: u32,
    },
    /// Values are replaced by a keyed hash (a pseudonym that is stable inside
    /// one scenario and cannot be joined across scenarios).
    Hash,
    /// Values are coarsened.
    Generalize {
        /// How they are coarsened.
        #[serde(flatten)]
        to: Generalization,
    },
    /// Random noise is added to numbers.
    Noise {
        /// Largest absolute value of the noise.
        bound: f64,
    },
}

fn default_redaction() -> String {
    "***".to_string()
}

/// How `generalize` coarsens a value.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Generalization {
    /// Numbers are rounded down to a multiple of this width.
    Bucket(u64),
    /// Dates and date-times are cut to this precision.
    Truncate(DatePart),
    /// Strings keep only this many leading characters.
    Prefix(u32),
}

/// Precision a date is cut to; ordered from finest to coarsest.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = super::common::without_description)]
pub enum DatePart {
    /// Keep year, month and day (drop the time of day).
    Day,
    /// Keep year and month.
    Month,
    /// Keep the year only.
    Year,
}

/// How much a rule hides, coarsest first. Rules of one strength are
/// interchangeable for the purpose of "not weaker than the default"; within
/// one kind the parameters decide (see [`MaskingRule::is_at_least_as_strong_as`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Strength {
    /// `keep`
    Clear,
    /// `mask`, `generalize`, `noise`
    Transformed,
    /// `hash`
    Pseudonymized,
    /// `redact`
    Redacted,
    /// `drop`
    Dropped,
}

impl MaskingRule {
    /// The `kind` as written in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            MaskingRule::Keep => "keep",
            MaskingRule::Drop => "drop",
            MaskingRule::Redact { .. } => "redact",
            MaskingRule::Mask { .. } => "mask",
            MaskingRule::Hash => "hash",
            MaskingRule::Generalize { .. } => "generalize",
            MaskingRule::Noise { .. } => "noise",
        }
    }

    /// `redact` with the default constant.
    pub fn redact() -> Self {
        MaskingRule::Redact {
            with: default_redaction(),
        }
    }

    /// The strength order `keep < mask = generalize = noise < hash < redact < drop`.
    pub fn strength(&self) -> Strength {
        match self {
            MaskingRule::Keep => Strength::Clear,
            MaskingRule::Mask { .. }
            | MaskingRule::Generalize { .. }
            | MaskingRule::Noise { .. } => Strength::Transformed,
            MaskingRule::Hash => Strength::Pseudonymized,
            MaskingRule::Redact { .. } => Strength::Redacted,
            MaskingRule::Drop => Strength::Dropped,
        }
    }

    /// True if `self` hides at least as much as `baseline`: a stronger kind,
    /// or a kind of the same strength whose parameters are not looser
    /// (fewer characters kept, wider buckets, coarser dates, shorter
    /// prefixes, larger noise). Different kinds of the same strength
    /// (for example `mask` and `noise`) count as equal.
    pub fn is_at_least_as_strong_as(&self, baseline: &MaskingRule) -> bool {
        let (mine, theirs) = (self.strength(), baseline.strength());
        if mine != theirs {
            return mine > theirs;
        }
        match (self, baseline) {
            (
                MaskingRule::Mask {
                    keep_first,
                    keep_last,
                },
                MaskingRule::Mask {
                    keep_first: base_first,
                    keep_last: base_last,
                },
            ) => keep_first <= base_first && keep_last <= base_last,
            (MaskingRule::Generalize { to }, MaskingRule::Generalize { to: base }) => {
                match (to, base) {
                    (Generalization::Bucket(w), Generalization::Bucket(base_w)) => w >= base_w,
                    (Generalization::Truncate(p), Generalization::Truncate(base_p)) => p >= base_p,
                    (Generalization::Prefix(n), Generalization::Prefix(base_n)) => n <= base_n,
                    _ => true,
                }
            }
            (MaskingRule::Noise { bound }, MaskingRule::Noise { bound: base_bound }) => {
                bound >= base_bound
            }
            _ => true,
        }
    }

    /// True if the rule can be applied to a column of this type: `mask` and
    /// `generalize.prefix` to strings, `noise` and `generalize.bucket` to
    /// numbers, `generalize.truncate` to dates; the others to any type.
    pub fn applies_to(&self, column_type: ColumnType) -> bool {
        let numeric = matches!(column_type, ColumnType::Integer | ColumnType::Decimal);
        match self {
            MaskingRule::Keep
            | MaskingRule::Drop
            | MaskingRule::Redact { .. }
            | MaskingRule::Hash => true,
            MaskingRule::Mask { .. } => column_type == ColumnType::String,
            MaskingRule::Noise { .. } => numeric,
            MaskingRule::Generalize { to } => match to {
                Generalization::Bucket(_) => numeric,
                Generalization::Truncate(_) => {
                    matches!(column_type, ColumnType::Date | ColumnType::Datetime)
                }
                Generalization::Prefix(_) => column_type == ColumnType::String,
            },
        }
    }
}

impl JsonSchema for MaskingRule {
    fn schema_name() -> Cow<'static, str> {
        "MaskingRule".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        MaskingRuleSchema::json_schema(generator)
    }
}

/// The wire shape of [`MaskingRule`] (only its schema is used; a test keeps
/// the two in step).
///
/// A masking rule: `kind` says how the column is desensitized, and only the
/// parameters of that kind may be set. Strength order, weakest first:
/// keep < mask = generalize = noise < hash < redact < drop.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("!has(self.with) || self.kind == 'redact'")
    .message("with is only used by kind redact: remove it or use kind redact"))]
#[x_kube(validation = Rule::new("!(has(self.keepFirst) || has(self.keepLast)) || self.kind == 'mask'")
    .message("keepFirst and keepLast are only used by kind mask: remove them or use kind mask"))]
#[x_kube(validation = Rule::new("self.kind != 'generalize' || (has(self.bucket) ? 1 : 0) + (has(self.truncate) ? 1 : 0) + (has(self.prefix) ? 1 : 0) == 1")
    .message("kind generalize needs exactly one of bucket (numbers), truncate (dates) or prefix (strings)"))]
#[x_kube(validation = Rule::new("self.kind == 'generalize' || !(has(self.bucket) || has(self.truncate) || has(self.prefix))")
    .message("bucket, truncate and prefix are only used by kind generalize: remove them or use kind generalize"))]
#[x_kube(validation = Rule::new("(self.kind == 'noise') == has(self.bound)")
    .message("kind noise needs bound (the largest absolute noise added), and bound is only used by kind noise"))]
pub(crate) struct MaskingRuleSchema {
    /// How the column is desensitized: keep (in clear), mask (hide all but a
    /// few characters), generalize (coarsen), noise (perturb numbers), hash
    /// (keyed pseudonym), redact (constant) or drop (remove the column).
    kind: RuleKind,
    /// redact: the constant that replaces every value (default `***`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    with: Option<String>,
    /// mask: characters kept in clear at the start (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 64))]
    keep_first: Option<i32>,
    /// mask: characters kept in clear at the end (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 64))]
    keep_last: Option<i32>,
    /// generalize, for integer and decimal columns: round down to a multiple
    /// of this width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    bucket: Option<i64>,
    /// generalize, for date and datetime columns: keep only up to this part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    truncate: Option<DatePart>,
    /// generalize, for string columns: keep only this many leading
    /// characters (for example 6 keeps the region code of a resident ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 64))]
    prefix: Option<i32>,
    /// noise, for integer and decimal columns: the largest absolute value of
    /// the uniform noise added to each value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0").message("bound must be greater than 0"))]
    bound: Option<f64>,
}

/// The `kind` of a masking rule.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
enum RuleKind {
    Keep,
    Mask,
    Generalize,
    Noise,
    Hash,
    Redact,
    Drop,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mask(first: u32, last: u32) -> MaskingRule {
        MaskingRule::Mask {
            keep_first: first,
            keep_last: last,
        }
    }

    fn all_kinds() -> Vec<MaskingRule> {
        vec![
            MaskingRule::Keep,
            mask(3, 4),
            MaskingRule::Generalize {
                to: Generalization::Bucket(10),
            },
            MaskingRule::Generalize {
                to: Generalization::Truncate(DatePart::Month),
            },
            MaskingRule::Generalize {
                to: Generalization::Prefix(6),
            },
            MaskingRule::Noise { bound: 5.0 },
            MaskingRule::Hash,
            MaskingRule::redact(),
            MaskingRule::Drop,
        ]
    }

    #[test]
    fn rules_read_and_write_the_documented_yaml() {
        let cases = [
            (json!({"kind": "keep"}), MaskingRule::Keep),
            (json!({"kind": "drop"}), MaskingRule::Drop),
            (
                json!({"kind": "redact", "with": "X"}),
                MaskingRule::Redact { with: "X".into() },
            ),
            (
                json!({"kind": "mask", "keepFirst": 3, "keepLast": 4}),
                mask(3, 4),
            ),
            (json!({"kind": "hash"}), MaskingRule::Hash),
            (
                json!({"kind": "generalize", "bucket": 10}),
                MaskingRule::Generalize {
                    to: Generalization::Bucket(10),
                },
            ),
            (
                json!({"kind": "generalize", "truncate": "year"}),
                MaskingRule::Generalize {
                    to: Generalization::Truncate(DatePart::Year),
                },
            ),
            (
                json!({"kind": "generalize", "prefix": 6}),
                MaskingRule::Generalize {
                    to: Generalization::Prefix(6),
                },
            ),
            (
                json!({"kind": "noise", "bound": 5.0}),
                MaskingRule::Noise { bound: 5.0 },
            ),
        ];
        for (value, rule) in cases {
            let parsed: MaskingRule = serde_json::from_value(value.clone()).expect("parses");
            assert_eq!(parsed, rule);
            assert_eq!(serde_json::to_value(&rule).expect("serializes"), value);
        }
    }

    #[test]
    fn omitted_parameters_take_their_defaults() {
        let redact: MaskingRule =
            serde_json::from_value(json!({"kind": "redact"})).expect("parses");
        assert_eq!(redact, MaskingRule::redact());
        let mask_all: MaskingRule =
            serde_json::from_value(json!({"kind": "mask"})).expect("parses");
        assert_eq!(mask_all, mask(0, 0));
    }

    #[test]
    fn every_rule_fits_the_published_schema_shape() {
        for rule in all_kinds() {
            let value = serde_json::to_value(&rule).expect("serializes");
            let wire: MaskingRuleSchema = serde_json::from_value(value.clone())
                .unwrap_or_else(|e| panic!("{value} does not fit the schema struct: {e}"));
            assert_eq!(serde_json::to_value(&wire).expect("serializes"), value);
        }
    }

    #[test]
    fn strength_follows_the_documented_order() {
        let order: Vec<Strength> = all_kinds().iter().map(MaskingRule::strength).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "all_kinds() is listed weakest first");
        assert!(MaskingRule::Keep.strength() < mask(0, 0).strength());
        assert_eq!(
            mask(0, 0).strength(),
            MaskingRule::Noise { bound: 1.0 }.strength()
        );
        assert!(MaskingRule::Noise { bound: 1.0 }.strength() < MaskingRule::Hash.strength());
        assert!(MaskingRule::Hash.strength() < MaskingRule::redact().strength());
        assert!(MaskingRule::redact().strength() < MaskingRule::Drop.strength());
    }

    #[test]
    fn stronger_kinds_beat_weaker_ones_and_never_the_reverse() {
        let kinds = all_kinds();
        for a in &kinds {
            for b in &kinds {
                if a.strength() > b.strength() {
                    assert!(a.is_at_least_as_strong_as(b), "{a:?} >= {b:?}");
                    assert!(!b.is_at_least_as_strong_as(a), "{b:?} < {a:?}");
                }
            }
            assert!(a.is_at_least_as_strong_as(a), "{a:?} >= itself");
        }
    }

    #[test]
    fn same_kind_compares_parameters() {
        assert!(mask(1, 2).is_at_least_as_strong_as(&mask(3, 4)));
        assert!(!mask(3, 5).is_at_least_as_strong_as(&mask(3, 4)));
        let bucket = |w| MaskingRule::Generalize {
            to: Generalization::Bucket(w),
        };
        assert!(bucket(100).is_at_least_as_strong_as(&bucket(10)));
        assert!(!bucket(5).is_at_least_as_strong_as(&bucket(10)));
        let truncate = |p| MaskingRule::Generalize {
            to: Generalization::Truncate(p),
        };
        assert!(truncate(DatePart::Year).is_at_least_as_strong_as(&truncate(DatePart::Month)));
        assert!(!truncate(DatePart::Day).is_at_least_as_strong_as(&truncate(DatePart::Month)));
        let prefix = |n| MaskingRule::Generalize {
            to: Generalization::Prefix(n),
        };
        assert!(prefix(2).is_at_least_as_strong_as(&prefix(6)));
        assert!(!prefix(8).is_at_least_as_strong_as(&prefix(6)));
        let noise = |bound| MaskingRule::Noise { bound };
        assert!(noise(10.0).is_at_least_as_strong_as(&noise(5.0)));
        assert!(!noise(1.0).is_at_least_as_strong_as(&noise(5.0)));
        // Different kinds of one strength are equal.
        assert!(noise(0.1).is_at_least_as_strong_as(&mask(0, 0)));
    }

    #[test]
    fn rules_apply_only_to_fitting_column_types() {
        assert!(mask(1, 1).applies_to(ColumnType::String));
        assert!(!mask(1, 1).applies_to(ColumnType::Integer));
        assert!(MaskingRule::Noise { bound: 1.0 }.applies_to(ColumnType::Decimal));
        assert!(!MaskingRule::Noise { bound: 1.0 }.applies_to(ColumnType::Date));
        let truncate = MaskingRule::Generalize {
            to: Generalization::Truncate(DatePart::Year),
        };
        assert!(truncate.applies_to(ColumnType::Datetime));
        assert!(!truncate.applies_to(ColumnType::String));
        for column_type in [
            ColumnType::String,
            ColumnType::Integer,
            ColumnType::Decimal,
            ColumnType::Date,
            ColumnType::Datetime,
            ColumnType::Boolean,
        ] {
            assert!(MaskingRule::Hash.applies_to(column_type));
            assert!(MaskingRule::Drop.applies_to(column_type));
        }
    }
}
