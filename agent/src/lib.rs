//! The cleanroom data-plane agent, run inside Jobs: `wipe`, `desensitize`,
//! `scan`, and the airlock's `seal`, `verify` and `release`. The logic lives here so it is
//! unit-tested; the binary only parses arguments and reports.

pub mod airlock;
pub mod desensitize;
pub mod formats;
pub mod parallel;
pub mod plan;
pub mod recognize;
pub mod report;
pub mod rules;
pub mod sample;
pub mod scan;
pub mod wipe;
