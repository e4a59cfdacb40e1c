//! cleanroom: the authorized operation domain for public data, as a Kubernetes operator.

pub mod api;
pub mod audit;
pub mod cli;
pub mod conditions;
pub mod controller;
pub mod crdgen;
pub mod http;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod requests;
pub mod rules;
pub mod sessions;
pub mod workspace;

#[cfg(test)]
mod fixtures;
