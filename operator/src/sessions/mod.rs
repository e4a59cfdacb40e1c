//! Who entered a workspace (R11, R13): the API server's audit webhook
//! posts the events of `pods/exec`, `pods/attach`, `pods/portforward` and
//! `pods/ephemeralcontainers` here, and each request into a `cr-*`
//! namespace becomes one `session-opened` record of the ledger.
//!
//! - [`events`]: parsing and filtering the posted events, pure;
//! - [`server`]: the HTTPS listener, which only the API server can call
//!   (its client certificate, from a CA trusted for nothing else), and
//!   which only the leader answers with 200: a standby says 503, so the
//!   API server tries again, and with `--audit-webhook-mode=blocking-strict`
//!   a request nobody can record is refused (see `docs/architecture.md`).

pub mod events;
pub mod server;

use std::sync::{Arc, RwLock};

use crate::audit::Ledger;

/// The ledger the listener appends to: set while this process leads (the
/// controllers run), empty otherwise.
#[derive(Clone, Default)]
pub struct LedgerSlot(Arc<RwLock<Option<Arc<Ledger>>>>);

impl LedgerSlot {
    pub fn set(&self, ledger: Option<Arc<Ledger>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = ledger;
    }

    pub fn get(&self) -> Option<Arc<Ledger>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl std::fmt::Debug for LedgerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LedgerSlot(leading: {})", self.get().is_some())
    }
}
