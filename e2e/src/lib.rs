//! End-to-end harness for cleanroom against the local control plane.
//!
//! - [`etcd`]: the local etcd's own metrics (bytes written), for the benchmarks.
//! - [`floor`]: the API server's floor: a workspace's objects written by a plain client.
//! - [`harness`]: helpers the tests use (client, unique names, waiting, dumps, cleanup).
//! - [`node`]: the e2e node process: a hostPath volume provisioner and the runner that
//!   plays kubelet for `cleanroom.io/component=agent` pods.
pub mod etcd;
pub mod floor;
pub mod harness;
pub mod node;
