//! The cleanroom data-plane agent, run inside Jobs: `wipe` (and later
//! `desensitize`, `scan`). The logic lives here so it is unit-tested; the
//! binary only parses arguments and reports.

pub mod wipe;
