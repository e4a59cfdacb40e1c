//! End-to-end harness for cleanroom against the local control plane.
//!
//! - [`harness`]: helpers the tests use (client, unique names, waiting, dumps, cleanup).
//! - [`node`]: the e2e node process: a hostPath volume provisioner and the runner that
//!   plays kubelet for `cleanroom.io/component=agent` pods.
pub mod harness;
pub mod node;
