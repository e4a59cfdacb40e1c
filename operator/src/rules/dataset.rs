//! Checks of a Dataset on its own. The CRD enforces the same with CEL; these
//! guard against objects stored before a rule existed.

use std::collections::HashSet;

use super::Rejection;
use crate::api::{Dataset, MaskingRule};
use crate::conditions::reasons;

/// All problems of a dataset, in field order.
pub fn dataset_problems(dataset: &Dataset) -> Vec<Rejection> {
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for (i, column) in dataset.spec.columns.iter().enumerate() {
        let field = format!("spec.columns[{i}]");
        if !seen.insert(column.name.as_str()) {
            problems.push(Rejection::new(
                format!("{field}.name"),
                reasons::DUPLICATE_COLUMN,
                format!(
                    "column name {:?} is used twice: rename or remove one",
                    column.name
                ),
            ));
        }
        if column.sensitivity.is_personal() && column.rule == MaskingRule::Keep {
            problems.push(Rejection::new(
                format!("{field}.rule"),
                reasons::PERSONAL_DATA_IN_CLEAR,
                format!(
                    "column {:?} holds personal information ({:?}) and cannot default to keep: \
                     use mask, generalize, hash, redact or drop",
                    column.name, column.sensitivity
                ),
            ));
        }
        if !column.rule.applies_to(column.type_) {
            problems.push(Rejection::new(
                format!("{field}.rule"),
                reasons::RULE_NOT_APPLICABLE,
                format!(
                    "rule {} does not fit column {:?} of type {:?}: mask and generalize.prefix \
                     are for strings, noise and generalize.bucket for numbers, \
                     generalize.truncate for dates",
                    column.rule.kind(),
                    column.name,
                    column.type_
                ),
            ));
        }
    }
    problems
}

/// The first problem of a dataset, if any.
pub fn validate_dataset(dataset: &Dataset) -> Result<(), Rejection> {
    dataset_problems(dataset)
        .into_iter()
        .next()
        .map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Sensitivity;
    use crate::fixtures;

    #[test]
    fn the_example_dataset_is_valid() {
        assert_eq!(validate_dataset(&fixtures::dataset()), Ok(()));
    }

    #[test]
    fn dataset_duplicate_column_is_rejected() {
        let mut dataset = fixtures::dataset();
        let copy = dataset.spec.columns[0].clone();
        dataset.spec.columns.push(copy);
        let rejection = validate_dataset(&dataset).err();
        assert_eq!(rejection.map(|r| r.reason), Some(reasons::DUPLICATE_COLUMN));
    }

    #[test]
    fn dataset_personal_column_defaulting_to_keep_is_rejected() {
        let mut dataset = fixtures::dataset();
        let column = &mut dataset.spec.columns[1];
        assert_eq!(column.sensitivity, Sensitivity::Mobile);
        column.rule = MaskingRule::Keep;
        let rejection = validate_dataset(&dataset).err();
        assert_eq!(
            rejection.as_ref().map(|r| r.reason),
            Some(reasons::PERSONAL_DATA_IN_CLEAR)
        );
        assert_eq!(
            rejection.map(|r| r.field),
            Some("spec.columns[1].rule".to_string())
        );
    }

    #[test]
    fn dataset_rule_that_does_not_fit_the_type_is_rejected() {
        let mut dataset = fixtures::dataset();
        let income = dataset
            .spec
            .columns
            .iter_mut()
            .find(|c| c.name == "income")
            .expect("fixture has income");
        income.rule = MaskingRule::Mask {
            keep_first: 1,
            keep_last: 0,
        };
        let rejection = validate_dataset(&dataset).err();
        assert_eq!(
            rejection.map(|r| r.reason),
            Some(reasons::RULE_NOT_APPLICABLE)
        );
    }
}
