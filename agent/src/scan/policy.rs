//! The disclosure-control policy: ACRO's parameters and defaults, our
//! k-anonymity and l-diversity, and OpenSAFELY's file limits. Every field
//! is optional; a policy looser than the floor is refused.

use serde::{Deserialize, Serialize};

/// Written into every report and summary: which rules gave the verdicts.
pub const POLICY_VERSION: &str = "cleanroom-scan/1";

/// Never looser than this: minimum cell count.
pub const MIN_THRESHOLD: u64 = 5;
/// Never looser than this: minimum equivalence class.
pub const MIN_K: u64 = 3;

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Policy {
    /// ACRO `safe_threshold`: a cell counting fewer is disclosive.
    pub threshold: u64,
    /// ACRO `safe_nk_n`: the n largest contributors ...
    pub nk_n: usize,
    /// ACRO `safe_nk_k`: ... may not make up this share of the cell total.
    pub nk_k: f64,
    /// ACRO `safe_pratio_p`: (total - two largest) / largest must reach this.
    pub p_ratio: f64,
    /// k-anonymity over quasi-identifiers.
    pub k: u64,
    /// Distinct l-diversity over sensitive columns.
    pub l: u64,
    /// Largest file accepted (OpenSAFELY: 16 MiB).
    pub max_file_bytes: u64,
    /// Most rows in a `Table` (OpenSAFELY: 5,000).
    pub max_table_rows: u64,
    /// ACRO `zeros_are_disclosive`.
    pub zeros_disclosive: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            threshold: 10,
            nk_n: 2,
            nk_k: 0.9,
            p_ratio: 0.1,
            k: 5,
            l: 2,
            max_file_bytes: 16 << 20,
            max_table_rows: 5000,
            zeros_disclosive: true,
        }
    }
}

impl Policy {
    /// Parse and check a policy (`{}` is the defaults).
    pub fn from_json(text: &str) -> Result<Policy, String> {
        let p: Policy =
            serde_json::from_str(text).map_err(|e| format!("the policy is not valid: {e}"))?;
        p.check()?;
        Ok(p)
    }

    /// Refuse what is looser than the floor or meaningless.
    pub fn check(&self) -> Result<(), String> {
        if self.threshold < MIN_THRESHOLD {
            return Err(format!(
                "policy refused: threshold {} is looser than the floor of {MIN_THRESHOLD}",
                self.threshold
            ));
        }
        if self.k < MIN_K {
            return Err(format!(
                "policy refused: k {} is looser than the floor of {MIN_K}",
                self.k
            ));
        }
        if self.l < 1 || self.nk_n < 1 {
            return Err("policy refused: l and nkN must be at least 1".into());
        }
        if !(self.nk_k > 0.0 && self.nk_k <= 1.0) {
            return Err("policy refused: nkK must be in (0, 1]".into());
        }
        if !(0.0..=1.0).contains(&self.p_ratio) {
            return Err("policy refused: pRatio must be in [0, 1]".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_policy_is_the_defaults() {
        let p = Policy::from_json("{}").expect("valid");
        assert_eq!(p, Policy::default());
        assert_eq!((p.threshold, p.nk_n, p.k, p.l), (10, 2, 5, 2));
        assert_eq!((p.nk_k, p.p_ratio), (0.9, 0.1));
        assert_eq!((p.max_file_bytes, p.max_table_rows), (16 << 20, 5000));
        assert!(p.zeros_disclosive);
    }

    #[test]
    fn fields_are_camel_case_and_partial() {
        let p = Policy::from_json(
            r#"{"nkN":3,"pRatio":0.2,"maxTableRows":10,"zerosDisclosive":false}"#,
        )
        .expect("valid");
        assert_eq!((p.nk_n, p.p_ratio, p.max_table_rows), (3, 0.2, 10));
        assert!(!p.zeros_disclosive);
        assert_eq!(p.threshold, 10);
    }

    #[test]
    fn looser_than_the_floor_is_refused() {
        assert!(Policy::from_json(r#"{"threshold":5,"k":3}"#).is_ok());
        let e = Policy::from_json(r#"{"threshold":4}"#).expect_err("refused");
        assert!(e.contains("threshold 4"), "{e}");
        let e = Policy::from_json(r#"{"k":2}"#).expect_err("refused");
        assert!(e.contains("k 2"), "{e}");
        assert!(Policy::from_json(r#"{"nkK":1.5}"#).is_err());
        assert!(Policy::from_json(r#"{"l":0}"#).is_err());
        assert!(Policy::from_json(r#"{"tresHold":20}"#).is_err());
    }
}
