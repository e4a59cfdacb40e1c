//! Who entered the workspaces, for `cleanroom report` (R13): the
//! `session-opened` records of the period, counted per authorization,
//! scenario and user (pure).

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::audit::{Action, Record};

/// One user's sessions in one scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionCount {
    pub scenario: String,
    pub user: String,
    /// Every request to enter a pod (exec, attach, port-forward, debug).
    pub sessions: u64,
    /// Of which the API server refused or could not open (code 400 or more).
    pub not_opened: u64,
}

/// Per authorization, its sessions since `since`, by scenario then user.
/// A session whose workspace named no authorization is left out (its
/// record is still in `cleanroom audit show --action session-opened`).
pub fn sessions(ledger: &[Record], since: Timestamp) -> BTreeMap<String, Vec<SessionCount>> {
    let mut counts: BTreeMap<(String, String, String), (u64, u64)> = BTreeMap::new();
    for r in ledger
        .iter()
        .filter(|r| r.action == Action::SessionOpened && r.time.0 >= since)
    {
        let Some(a) = &r.authorization else { continue };
        let code = r
            .after
            .as_ref()
            .and_then(|v| v.get("code"))
            .and_then(serde_json::Value::as_i64);
        let c = counts
            .entry((a.clone(), r.name.clone(), r.actor.clone()))
            .or_default();
        c.0 += 1;
        if code.is_none_or(|c| c >= 400) {
            c.1 += 1;
        }
    }
    let mut out: BTreeMap<String, Vec<SessionCount>> = BTreeMap::new();
    for ((a, scenario, user), (sessions, not_opened)) in counts {
        out.entry(a).or_default().push(SessionCount {
            scenario,
            user,
            sessions,
            not_opened,
        });
    }
    out
}

/// One line of the table.
pub fn table_line(c: &SessionCount) -> String {
    format!(
        "    {} {}: {} session(s), {} not opened",
        c.scenario, c.user, c.sessions, c.not_opened
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::audit::Draft;
    use crate::audit::record::GENESIS;

    fn rec(time: &str, action: Action, scenario: &str, user: &str, code: i64) -> Record {
        Record::new(
            Draft {
                actor: user.into(),
                kind: "Scenario".into(),
                name: scenario.into(),
                uid: "u".into(),
                generation: None,
                authorization: Some("acme".into()),
                action,
                reason: None,
                before: None,
                after: Some(json!({"code": code})),
                key: format!("session/{time}{user}"),
            },
            1,
            time.parse().expect("time"),
            GENESIS,
        )
    }

    #[test]
    fn sessions_are_counted_per_scenario_and_user_in_the_period() {
        let ledger = [
            rec(
                "2025-12-31T00:00:00Z",
                Action::SessionOpened,
                "census",
                "alice",
                101,
            ),
            rec(
                "2026-01-02T00:00:00Z",
                Action::SessionOpened,
                "census",
                "alice",
                101,
            ),
            rec(
                "2026-01-03T00:00:00Z",
                Action::SessionOpened,
                "census",
                "alice",
                500,
            ),
            rec(
                "2026-01-03T00:00:00Z",
                Action::SessionOpened,
                "census",
                "mallory",
                403,
            ),
            rec(
                "2026-01-04T00:00:00Z",
                Action::SessionOpened,
                "report",
                "alice",
                101,
            ),
            rec(
                "2026-01-04T00:00:00Z",
                Action::Suspended,
                "census",
                "alice",
                0,
            ),
        ];
        let got = sessions(&ledger, "2026-01-01T00:00:00Z".parse().expect("t"));
        let acme = &got["acme"];
        let rows: Vec<_> = acme
            .iter()
            .map(|c| {
                (
                    c.scenario.as_str(),
                    c.user.as_str(),
                    c.sessions,
                    c.not_opened,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("census", "alice", 2, 1),
                ("census", "mallory", 1, 1),
                ("report", "alice", 1, 0)
            ]
        );
        assert_eq!(
            table_line(&acme[0]),
            "    census alice: 2 session(s), 1 not opened"
        );
    }
}
