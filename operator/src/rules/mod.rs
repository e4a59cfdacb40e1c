//! Pure rules: everything the controller checks that the API server cannot
//! (rules across objects, check characters, quantity sums), as functions of
//! the objects alone. Each failure is a [`Rejection`] that names the field and
//! says what to do; its `reason` is a condition reason from
//! [`crate::conditions::reasons`].

pub mod authorization;
pub mod credit_code;
pub mod dataset;
pub mod quantity;
pub mod scenario;

pub use authorization::validate_authorization;
pub use dataset::validate_dataset;
pub use scenario::{
    check_aggregate_quota, check_scenario_count, effective_expiry, scenario_problems,
    validate_scenario,
};

/// Why an object cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Rejection {
    /// Path of the offending field, for example `spec.data[0].columns[2]`.
    pub field: String,
    /// CamelCase reason for the condition (see [`crate::conditions::reasons`]).
    pub reason: &'static str,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl Rejection {
    pub(crate) fn new(
        field: impl Into<String>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Rejection {
            field: field.into(),
            reason,
            message: message.into(),
        }
    }
}

/// `a, b, c` for messages, or `none` when empty.
pub(crate) fn list(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let items: Vec<String> = items.into_iter().map(|s| s.as_ref().to_string()).collect();
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}
