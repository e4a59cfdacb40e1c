//! The `cleanroom.io/v1alpha1` API: three cluster-scoped kinds, one file each,
//! and the airlock's three namespaced kinds ([`airlock`], [`import`]).
//!
//! CEL rules for everything that can be checked inside one object live on the
//! types (the API server rejects bad input at once); rules across objects are
//! in [`crate::rules`].

pub mod airlock;
pub mod authorization;
pub mod common;
pub mod dataset;
pub mod import;
pub mod masking;
pub mod scenario;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use airlock::{
    Decision, Export, ExportPhase, ExportSpec, ExportStatus, ProductKind, Review, ReviewSpec,
};
pub use authorization::{
    ApprovedImage, Authorization, AuthorizationPhase, AuthorizationSpec, AuthorizationStatus,
    ReviewPolicy,
};
pub use common::{Condition, Members, PositiveQuantity, State, Time, WipeAttestation};
pub use dataset::{
    Column, ColumnType, Dataset, DatasetPhase, DatasetSpec, DatasetStatus, Sensitivity,
};
pub use import::{Import, ImportSpec};
pub use masking::{DatePart, Generalization, MaskingRule, Strength};
pub use scenario::{
    ColumnRule, DataRequest, EnvVar, PreparedData, Sampling, Scenario, ScenarioPhase, ScenarioSpec,
    ScenarioStatus, Workspace, WorkspaceMode, WorkspaceResources,
};

/// API group of every kind.
pub const GROUP: &str = "cleanroom.io";

/// The only served version.
pub const VERSION: &str = "v1alpha1";

/// The CustomResourceDefinitions of all kinds, in install order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        Dataset::crd(),
        Authorization::crd(),
        Scenario::crd(),
        Export::crd(),
        Review::crd(),
        Import::crd(),
    ]
}

#[cfg(test)]
mod cel_tests;
