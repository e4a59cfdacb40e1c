//! The worked examples in `operator/fixtures/`, parsed, for tests.

use crate::api::{Authorization, Dataset, Scenario};

pub const DATASET_YAML: &str = include_str!("../fixtures/dataset.yaml");
pub const AUTHORIZATION_YAML: &str = include_str!("../fixtures/authorization.yaml");
pub const SCENARIO_YAML: &str = include_str!("../fixtures/scenario.yaml");

pub fn dataset() -> Dataset {
    serde_yaml::from_str(DATASET_YAML).expect("fixtures/dataset.yaml parses")
}

pub fn authorization() -> Authorization {
    serde_yaml::from_str(AUTHORIZATION_YAML).expect("fixtures/authorization.yaml parses")
}

pub fn scenario() -> Scenario {
    serde_yaml::from_str(SCENARIO_YAML).expect("fixtures/scenario.yaml parses")
}

pub fn catalogue() -> Vec<Dataset> {
    vec![dataset()]
}
