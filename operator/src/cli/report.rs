//! `cleanroom report`: the operation report for the bureau (R16), per
//! authorization, from the objects' status and the audit ledger.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use clap::Args;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde::Serialize;

use super::audit::{LedgerArg, parse_when, read, records};
use super::common::{Output, OutputArg, block_on, print};
use super::report_airlock::{self, Airlock, AirlockLine};
use crate::api::{Authorization, Scenario, Time};
use crate::audit::store::PREFIX;
use crate::audit::{Action, Record, verify};
use crate::conditions::{reasons, types};

#[derive(Args, Debug)]
#[command(
    after_help = "Per authorization: its phase and days to expiry, its scenarios and the \
datasets they use (from status), and since DATE the suspensions, revocations, wipes and \
incidents (rejections from the ledger; failing reconciles and wipes from status), \
the airlock's exports and imports (requester, supplier and legal basis of an import, \
reviews, verdict, manifest hash, phase, where the copy went), \
and who entered its workspaces (sessions per scenario and user). \
Authorizations that were deleted but have records since DATE are listed too.

Examples:
  cleanroom report --since 2026-01-01
  kubectl cleanroom report --since 2026-04-01T00:00:00+08:00 -o json"
)]
pub(super) struct ReportArgs {
    /// Start of the period (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = parse_when)]
    pub(super) since: Timestamp,
    #[command(flatten)]
    pub(super) ledger: LedgerArg,
    #[command(flatten)]
    pub(super) output: OutputArg,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub since: Time,
    pub generated_at: Time,
    /// Whether the audit chain verified when the report was made.
    pub audit_chain_intact: bool,
    pub authorizations: Vec<AuthorizationReport>,
}

/// One authorization's part.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationReport {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Phase from status, or `Deleted`.
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Whole days until validUntil (negative once passed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_to_expiry: Option<i64>,
    pub scenarios: Vec<ScenarioLine>,
    pub datasets: Vec<String>,
    pub suspensions: u64,
    pub revocations: u64,
    pub wipes: u64,
    pub wiped_bytes: i64,
    pub incidents: Vec<Incident>,
    /// The airlock's exports with a record in the period.
    pub exports: Vec<AirlockLine>,
    /// The airlock's imports with a record in the period.
    pub imports: Vec<AirlockLine>,
    /// Who entered its workspaces in the period (`session-opened` records).
    pub sessions: Vec<super::report_sessions::SessionCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioLine {
    pub name: String,
    pub phase: String,
    pub datasets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    pub object: String,
    pub what: String,
}

/// Builds the report (pure): objects as read now, every ledger record.
pub fn build(
    since: Timestamp,
    now: Timestamp,
    authorizations: &[Authorization],
    scenarios: &[Scenario],
    ledger: &[Record],
    intact: bool,
) -> Report {
    let mut by_name: BTreeMap<String, AuthorizationReport> = BTreeMap::new();
    for a in authorizations {
        let status = a.status.clone().unwrap_or_default();
        let left = a.spec.valid_until.0.duration_since(now).as_secs();
        by_name.insert(
            a.name_any(),
            AuthorizationReport {
                name: a.name_any(),
                operator: Some(a.spec.operator.name.clone()),
                phase: status
                    .phase
                    .map_or_else(|| "Unknown".into(), |p| format!("{p:?}")),
                expires_at: Some(a.spec.valid_until.clone()),
                days_to_expiry: Some(left.div_euclid(86_400)),
                scenarios: Vec::new(),
                datasets: Vec::new(),
                suspensions: 0,
                revocations: 0,
                wipes: 0,
                wiped_bytes: 0,
                incidents: Vec::new(),
                exports: Vec::new(),
                imports: Vec::new(),
                sessions: Vec::new(),
            },
        );
    }
    let deleted = |name: &str| AuthorizationReport {
        name: name.to_string(),
        operator: None,
        phase: "Deleted".into(),
        expires_at: None,
        days_to_expiry: None,
        scenarios: Vec::new(),
        datasets: Vec::new(),
        suspensions: 0,
        revocations: 0,
        wipes: 0,
        wiped_bytes: 0,
        incidents: Vec::new(),
        exports: Vec::new(),
        imports: Vec::new(),
        sessions: Vec::new(),
    };
    for (a, counts) in super::report_sessions::sessions(ledger, since) {
        by_name
            .entry(a.clone())
            .or_insert_with(|| deleted(&a))
            .sessions = counts;
    }
    for airlock in [Airlock::Export, Airlock::Import] {
        for (a, lines) in report_airlock::lines(ledger, since, airlock) {
            let entry = by_name.entry(a.clone()).or_insert_with(|| deleted(&a));
            match airlock {
                Airlock::Export => entry.exports = lines,
                Airlock::Import => entry.imports = lines,
            }
        }
    }
    for r in ledger.iter().filter(|r| r.time.0 >= since) {
        let Some(a) = &r.authorization else { continue };
        let entry = by_name.entry(a.clone()).or_insert_with(|| deleted(a));
        match r.action {
            Action::Suspended => entry.suspensions += 1,
            Action::Revoked => entry.revocations += 1,
            Action::Wiped => {
                entry.wipes += 1;
                entry.wiped_bytes += r
                    .after
                    .as_ref()
                    .and_then(|v| v.get("bytes"))
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(0);
            }
            Action::Failed => entry.incidents.push(Incident {
                time: Some(r.time.clone()),
                object: format!("{}/{}", r.kind, r.name),
                what: format!("failed: {}", r.reason.clone().unwrap_or_default()),
            }),
            Action::Rejected => entry.incidents.push(Incident {
                time: Some(r.time.clone()),
                object: format!("{}/{}", r.kind, r.name),
                what: format!("rejected: {}", r.reason.clone().unwrap_or_default()),
            }),
            _ => {}
        }
    }
    for s in scenarios {
        let Some(entry) = by_name.get_mut(&s.spec.authorization) else {
            continue;
        };
        let status = s.status.clone().unwrap_or_default();
        let datasets: Vec<String> = s.spec.data.iter().map(|d| d.dataset.clone()).collect();
        entry.scenarios.push(ScenarioLine {
            name: s.name_any(),
            phase: status
                .phase
                .map_or_else(|| "Unknown".into(), |p| format!("{p:?}")),
            datasets: datasets.clone(),
        });
        let mut all: BTreeSet<String> = entry.datasets.drain(..).collect();
        all.extend(datasets);
        entry.datasets = all.into_iter().collect();
        // Failures as status shows them now.
        for c in &status.conditions {
            let failing = (c.type_ == types::RECONCILE_FAILED && c.status == "True")
                || (c.type_ == types::WIPED && c.reason == reasons::WIPE_FAILED);
            if failing {
                entry.incidents.push(Incident {
                    time: Some(c.last_transition_time.clone()),
                    object: format!("Scenario/{}", s.name_any()),
                    what: format!("{} {}: {}", c.type_, c.reason, c.message),
                });
            }
        }
    }
    Report {
        since: Time(since),
        generated_at: Time(now),
        audit_chain_intact: intact,
        authorizations: by_name.into_values().collect(),
    }
}

impl Report {
    pub(super) fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Operation report from {} to {}; audit chain {}",
            self.since.0,
            self.generated_at.0,
            if self.audit_chain_intact {
                "intact"
            } else {
                "BROKEN (see cleanroom audit verify)"
            }
        );
        for a in &self.authorizations {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "authorization {}{}: {}{}",
                a.name,
                a.operator
                    .as_ref()
                    .map_or_else(String::new, |o| format!(" ({o})")),
                a.phase,
                a.days_to_expiry
                    .map_or_else(String::new, |d| format!(", {d} days to expiry")),
            );
            let scenarios: Vec<String> = a
                .scenarios
                .iter()
                .map(|s| format!("{} ({})", s.name, s.phase))
                .collect();
            let dash = |v: &[String]| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.join(", ")
                }
            };
            let _ = writeln!(out, "  scenarios:    {}", dash(&scenarios));
            let _ = writeln!(out, "  datasets:     {}", dash(&a.datasets));
            let _ = writeln!(
                out,
                "  in the period: {} suspension(s), {} revocation(s), {} wipe(s) of {} bytes, {} incident(s)",
                a.suspensions,
                a.revocations,
                a.wipes,
                a.wiped_bytes,
                a.incidents.len()
            );
            for i in &a.incidents {
                let _ = writeln!(
                    out,
                    "    {} {} {}",
                    i.time
                        .as_ref()
                        .map_or_else(|| "-".into(), |t| t.0.to_string()),
                    i.object,
                    i.what
                );
            }
            for (label, airlock, lines) in [
                ("exports:", Airlock::Export, &a.exports),
                ("imports:", Airlock::Import, &a.imports),
            ] {
                let _ = writeln!(out, "  {label:<14}{}", lines.len());
                for e in lines {
                    let _ = writeln!(out, "{}", report_airlock::table_line(e, airlock));
                }
            }
            let total: u64 = a.sessions.iter().map(|c| c.sessions).sum();
            let _ = writeln!(out, "  sessions:     {total}");
            for c in &a.sessions {
                let _ = writeln!(out, "{}", super::report_sessions::table_line(c));
            }
        }
        out
    }
}

pub(super) fn run(args: ReportArgs) -> anyhow::Result<()> {
    let namespace = args.ledger.namespace.clone();
    let report = block_on(async |client| {
        let lp = ListParams::default();
        let authorizations = Api::<Authorization>::all(client.clone())
            .list(&lp)
            .await?
            .items;
        let scenarios = Api::<Scenario>::all(client.clone()).list(&lp).await?.items;
        let segments = read(&client, &namespace).await?;
        let intact = verify(PREFIX, &segments).is_ok();
        Ok(build(
            args.since,
            Timestamp::now(),
            &authorizations,
            &scenarios,
            &records(&segments),
            intact,
        ))
    })?;
    print(&match args.output.output {
        Output::Json => serde_json::to_string_pretty(&report)? + "\n",
        Output::Yaml => serde_yaml::to_string(&report)?,
        Output::Table => report.table(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::AuthorizationStatus;
    use crate::audit::Draft;
    use crate::audit::record::GENESIS;
    use crate::fixtures;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn rec(seq: u64, time: &str, action: Action, authorization: &str) -> Record {
        Record::new(
            Draft {
                actor: "a".into(),
                kind: "Scenario".into(),
                name: "census".into(),
                uid: "u".into(),
                generation: None,
                authorization: Some(authorization.into()),
                action,
                reason: Some("QuotaExceeded: too much".into()),
                before: None,
                after: Some(json!({"bytes": 4096})),
                key: format!("k{seq}"),
            },
            seq,
            t(time),
            GENESIS,
        )
    }

    #[test]
    fn the_report_counts_the_period_per_authorization() {
        let mut a = fixtures::authorization();
        a.metadata.name = Some("acme".into());
        a.spec.valid_until = Time(t("2026-03-11T00:00:00Z"));
        a.status = Some(AuthorizationStatus {
            phase: Some(crate::api::AuthorizationPhase::Active),
            ..AuthorizationStatus::default()
        });
        let mut s = fixtures::scenario();
        s.metadata.name = Some("census".into());
        s.spec.authorization = "acme".into();
        let ledger = [
            rec(1, "2025-12-01T00:00:00Z", Action::Suspended, "acme"),
            rec(2, "2026-01-02T00:00:00Z", Action::Suspended, "acme"),
            rec(3, "2026-01-03T00:00:00Z", Action::Wiped, "acme"),
            rec(4, "2026-01-04T00:00:00Z", Action::Rejected, "acme"),
            rec(5, "2026-01-05T00:00:00Z", Action::Revoked, "gone"),
        ];
        let r = build(
            t("2026-01-01T00:00:00Z"),
            t("2026-03-01T00:00:00Z"),
            &[a],
            &[s.clone()],
            &ledger,
            true,
        );
        assert_eq!(r.authorizations.len(), 2);
        let acme = &r.authorizations[0];
        assert_eq!(acme.name, "acme");
        assert_eq!(acme.phase, "Active");
        assert_eq!(acme.days_to_expiry, Some(10));
        assert_eq!(
            acme.suspensions, 1,
            "the one before the period does not count"
        );
        assert_eq!((acme.wipes, acme.wiped_bytes), (1, 4096));
        assert_eq!(acme.incidents.len(), 1);
        assert!(
            acme.incidents[0]
                .what
                .starts_with("rejected: QuotaExceeded")
        );
        assert_eq!(acme.scenarios[0].name, "census");
        let want: Vec<String> = s.spec.data.iter().map(|d| d.dataset.clone()).collect();
        assert_eq!(acme.datasets, want);
        let gone = &r.authorizations[1];
        assert_eq!(
            (gone.name.as_str(), gone.phase.as_str(), gone.revocations),
            ("gone", "Deleted", 1)
        );
        let text = r.table();
        assert!(text.contains("authorization acme"), "{text}");
        assert!(
            text.contains(
                "1 suspension(s), 0 revocation(s), 1 wipe(s) of 4096 bytes, 1 incident(s)"
            ),
            "{text}"
        );
    }
}
