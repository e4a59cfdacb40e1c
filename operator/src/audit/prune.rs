//! Retention: which old segments may go, decided purely.
//!
//! A record is kept at least the longest retention in force: the largest
//! `spec.auditRetentionDays` of the Authorizations that exist, and never less
//! than 180 days ([`MIN_AUDIT_RETENTION_DAYS`], the regulations' 6 months).
//! A record of an authorization (or of one of its scenarios) is moreover
//! kept while that authorization is in force and for its own retention after
//! it ends (expiry: its validUntil; revocation: when the Revoked condition
//! became True). Only whole segments are pruned, oldest first, never the
//! newest one, and only after the ledger appended a checkpoint record that
//! names the last sequence number and hash of the pruned tail (see
//! [`super::Ledger::prune`]).
//!
//! There is no setting that shortens this: the floor is a constant, and tests
//! prune by calling [`super::Ledger::prune`] with a date in the future.

use std::collections::HashMap;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::chain::Segment;
use super::record::Record;
use crate::api::authorization::MIN_AUDIT_RETENTION_DAYS;
use crate::api::{Authorization, AuthorizationPhase};
use crate::conditions::types;

/// What retention needs to know of one Authorization.
#[derive(Clone, Debug, PartialEq)]
pub struct Retention {
    /// Days its records are kept after it ends.
    pub days: i32,
    /// When it ended (`None`: still in force, or not yet begun).
    pub ended: Option<Timestamp>,
}

impl Retention {
    /// From an Authorization as read.
    pub fn of(a: &Authorization) -> Retention {
        let status = a.status.as_ref();
        let phase = status.and_then(|s| s.phase);
        let ended = match phase {
            Some(AuthorizationPhase::Expired) => Some(a.spec.valid_until.0),
            Some(AuthorizationPhase::Revoked) => status
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == types::REVOKED))
                .map(|c| c.last_transition_time.0),
            _ => None,
        };
        Retention {
            days: a.spec.audit_retention_days,
            ended,
        }
    }
}

fn days(n: i32) -> SignedDuration {
    SignedDuration::from_hours(i64::from(n.max(0)) * 24)
}

/// Until when `record` must be kept (`None`: for now, indefinitely).
pub fn hold_until(record: &Record, retentions: &HashMap<String, Retention>) -> Option<Timestamp> {
    let longest = retentions
        .values()
        .map(|r| r.days)
        .fold(MIN_AUDIT_RETENTION_DAYS, i32::max);
    let base = record.time.0.checked_add(days(longest)).ok()?;
    match record
        .authorization
        .as_ref()
        .and_then(|a| retentions.get(a))
    {
        None => Some(base),
        Some(r) => {
            let end = r.ended?.checked_add(days(r.days)).ok()?;
            Some(base.max(end))
        }
    }
}

/// How many of the oldest `segments` (sorted) may be pruned `as_of`: every
/// record in them is past its hold. The newest segment always stays.
pub fn prunable(
    segments: &[Segment],
    as_of: Timestamp,
    retentions: &HashMap<String, Retention>,
) -> usize {
    let candidates = segments.len().saturating_sub(1);
    segments[..candidates]
        .iter()
        .take_while(|s| {
            s.entries.iter().all(|(_, line)| {
                Record::parse(line)
                    .is_ok_and(|r| hold_until(&r, retentions).is_some_and(|until| until <= as_of))
            })
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::tests::chain;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    #[test]
    fn records_are_held_for_the_longest_retention_and_while_their_authorization_lives() {
        // chain() writes every record at 2026-01-01 for authorization "acme".
        let segments = chain(10, 4);
        let none = HashMap::new();
        assert_eq!(prunable(&segments, at("2026-06-29T00:00:00Z"), &none), 0);
        // 180 days later every segment but the newest may go.
        assert_eq!(prunable(&segments, at("2026-06-30T00:00:00Z"), &none), 2);

        // A longer retention in force, on any authorization, holds them longer.
        let mut longer = HashMap::new();
        longer.insert(
            "other".to_string(),
            Retention {
                days: 365,
                ended: None,
            },
        );
        assert_eq!(prunable(&segments, at("2026-06-30T00:00:00Z"), &longer), 0);
        assert_eq!(prunable(&segments, at("2027-01-01T00:00:00Z"), &longer), 2);

        // "acme" still in force: its records stay whatever the date.
        let mut live = HashMap::new();
        live.insert(
            "acme".to_string(),
            Retention {
                days: 180,
                ended: None,
            },
        );
        assert_eq!(prunable(&segments, at("2036-01-01T00:00:00Z"), &live), 0);
        // Ended on 2026-12-01: kept 180 days after that.
        live.insert(
            "acme".to_string(),
            Retention {
                days: 180,
                ended: Some(at("2026-12-01T00:00:00Z")),
            },
        );
        assert_eq!(prunable(&segments, at("2027-05-29T00:00:00Z"), &live), 0);
        assert_eq!(prunable(&segments, at("2027-05-30T00:00:00Z"), &live), 2);
    }

    #[test]
    fn a_retention_below_the_floor_does_not_shorten_it() {
        let segments = chain(10, 4);
        let mut short = HashMap::new();
        short.insert(
            "x".to_string(),
            Retention {
                days: 1,
                ended: Some(at("2026-01-01T00:00:00Z")),
            },
        );
        assert_eq!(prunable(&segments, at("2026-06-29T00:00:00Z"), &short), 0);
    }
}
