//! The audit trail: an append-only, hash-chained ledger of every lifecycle
//! action on Authorizations, Scenarios and Datasets (R11, R12, R13, R9).
//!
//! One concern per file:
//! - [`record`]: a record, its canonical JSON line and SHA-256;
//! - [`chain`]: verification of a list of segments, pure, naming the first broken link;
//! - [`transitions`]: which records a status change calls for, pure, with
//!   idempotency keys and the actor;
//! - [`store`]: batches and segments as immutable ConfigMaps in `cleanroom-system`;
//! - [`ledger`]: the writer the controllers call before each status write:
//!   each group commit creates one batch, nothing is rewritten;
//! - [`compact`]: runs of batches copied into sealed segments, in the background;
//! - [`events`]: each record's Kubernetes Event, created once and not kept;
//! - [`prune`]: retention, pure; [`Ledger::prune`] writes the checkpoint and deletes;
//! - [`signing`]: signed heads, pure: the Ed25519 signature over the head and
//!   its check with the public key ([`Ledger::sign_head`] appends one);
//! - [`keys`]: the signing key's Secret and the public key's ConfigMap.
//!
//! The controllers append the records a status change calls for *before*
//! writing that status: a crash in between leaves the records, and the
//! retried status write computes the same records with the same keys, which
//! the ledger does not write again. So no record is lost and none is written
//! twice. A failed ledger write fails the reconcile (it is retried): no
//! lifecycle change is made visible in status without its record.
//!
//! The operator verifies the whole chain when it starts leading and every
//! hour (`cleanroom_audit_chain_intact`, `cleanroom_audit_last_verify_timestamp_seconds`),
//! then prunes what is past retention, only if the chain is intact, and
//! signs the head (at start, hourly and after each pruning).

pub mod chain;
pub mod compact;
pub mod events;
pub mod keys;
pub mod ledger;
pub mod prune;
pub mod record;
pub mod signing;
pub mod store;
pub mod transitions;

pub use chain::{Break, Form, Segment, Summary, verify};
pub use ledger::{Error, Ledger, Limits, Pruned};
pub use record::{Action, Draft, Record};
