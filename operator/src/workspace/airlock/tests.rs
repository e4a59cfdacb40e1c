use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time as MetaTime;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::api::airlock::{ReviewSpec, Subject};
use crate::workspace::testing::identity;

fn export(files: &[&str]) -> Export {
    let mut e: Export = serde_json::from_value(json!({
        "apiVersion": "cleanroom.io/v1alpha1", "kind": "Export",
        "metadata": {"name": "by-district", "namespace": "cr-census", "uid": "e-1"},
        "spec": {"requester": "alice", "context": "c", "controls": "k",
                 "files": files.iter().map(|f| json!({"path": f, "kind": "Table"})).collect::<Vec<_>>()}
    }))
    .unwrap();
    e.status = None;
    e
}

fn review(name: &str, reviewer: &str, decision: Decision, second: i64) -> Review {
    let mut r = Review::new(
        name,
        ReviewSpec {
            export: Some("by-district".into()),
            import: None,
            reviewer: reviewer.into(),
            decision,
            comment: "why".into(),
            files: vec![],
        },
    );
    r.metadata.creation_timestamp = Some(MetaTime(Timestamp::from_second(second).unwrap()));
    r
}

fn people(users: &[&str]) -> Members {
    Members {
        users: users.iter().map(|u| u.to_string()).collect(),
        groups: vec![],
    }
}

#[test]
fn two_distinct_reviewers_approve_and_the_requester_and_members_never_count() {
    let (members, reviewers) = (people(&["bob"]), people(&["carol", "dave", "alice", "bob"]));
    let excluded = Excluded {
        requester: "alice",
        members: &members,
        reviewers: &reviewers,
    };
    let reviews = vec![
        review("r1", "alice", Decision::Approve, 1),
        review("r2", "bob", Decision::Approve, 2),
        review("r3", "carol", Decision::Approve, 3),
        review("r4", "carol", Decision::Approve, 4),
        review("r5", "mallory", Decision::Approve, 5),
    ];
    let (counted, tally_) = tally(Subject::Export("by-district"), &reviews, &excluded, 2);
    assert_eq!(
        tally_,
        Tally::Waiting { approvals: 1 },
        "one reviewer twice is one approval"
    );
    assert_eq!(
        counted
            .iter()
            .map(|r| r.reviewer.as_str())
            .collect::<Vec<_>>(),
        ["carol", "carol"]
    );
    let mut more = reviews.clone();
    more.push(review("r6", "dave", Decision::Approve, 6));
    assert_eq!(
        tally(Subject::Export("by-district"), &more, &excluded, 2).1,
        Tally::Approved { approvals: 2 }
    );
    // Reviews of another export do not count.
    assert_eq!(
        tally(Subject::Export("other"), &more, &excluded, 1).1,
        Tally::Waiting { approvals: 0 }
    );
}

#[test]
fn a_reject_or_return_decides_in_the_order_reviews_were_made() {
    let (members, reviewers) = (people(&[]), people(&["carol", "dave"]));
    let excluded = Excluded {
        requester: "alice",
        members: &members,
        reviewers: &reviewers,
    };
    let reviews = vec![
        review("late", "dave", Decision::Return, 9),
        review("early", "carol", Decision::Reject, 1),
    ];
    match tally(Subject::Export("by-district"), &reviews, &excluded, 1).1 {
        Tally::Rejected(r) => assert_eq!(r.name, "early"),
        other => panic!("{other:?}"),
    }
    let returned = vec![
        review("r", "dave", Decision::Return, 1),
        review("a", "carol", Decision::Approve, 2),
    ];
    assert!(matches!(
        tally(Subject::Export("by-district"), &returned, &excluded, 1).1,
        Tally::Returned(_)
    ));
}

#[test]
fn approvals_default_to_two_for_important_data() {
    assert_eq!(approvals_required(None, true), 2);
    assert_eq!(approvals_required(None, false), 1);
    assert_eq!(approvals_required(Some(3), false), 3);
    assert_eq!(approvals_required(Some(0), true), 2);
}

#[test]
fn the_seal_report_is_read_in_the_exports_order_and_an_error_is_kept() {
    let e = export(&["a.csv", "b.md"]);
    let message = json!({"manifestSha256": "m", "files": [{"size": 3, "sha256": "x"}, {"size": 4, "sha256": "y"}]}).to_string();
    let (manifest, files) = sealed_files(&e, &message).unwrap();
    assert_eq!(manifest, "m");
    assert_eq!((files[1].name.as_str(), files[1].size), ("b.md", 4));
    let short = json!({"manifestSha256": "m", "files": [{"size": 3, "sha256": "x"}]}).to_string();
    assert_eq!(
        sealed_files(&e, &short).unwrap_err(),
        OutcomeError::Count { got: 1, asked: 2 }
    );
    let error = json!({"error": "b.md: a symbolic link is never copied"}).to_string();
    assert!(
        matches!(sealed_files(&e, &error), Err(OutcomeError::Agent(m)) if m.contains("symbolic"))
    );
    assert_eq!(
        sealed_files(&e, "not json").unwrap_err(),
        OutcomeError::Unreadable
    );
}

#[test]
fn a_scan_summary_needs_a_known_verdict() {
    let ok = json!({"verdict": "review", "policyVersion": "v1", "files": [{"name": "a.csv", "verdict": "review", "checks": ["threshold"]}]});
    assert_eq!(
        scan_summary(&ok.to_string()).unwrap().files[0].checks,
        ["threshold"]
    );
    assert_eq!(
        scan_summary(&json!({"verdict": "ok"}).to_string()).unwrap_err(),
        OutcomeError::Unreadable
    );
}

#[test]
fn the_seal_job_reads_the_outbox_read_only_and_names_the_files() {
    let e = export(&["a.csv"]);
    let job = seal_job(&identity(), &e, "e-1", "agent:1");
    let pod = job.spec.unwrap().template.spec.unwrap();
    let volumes = serde_json::to_value(pod.volumes.unwrap()).unwrap();
    assert_eq!(
        volumes[0]["persistentVolumeClaim"],
        json!({"claimName": "scratch", "readOnly": true})
    );
    assert_eq!(volumes[1]["persistentVolumeClaim"]["claimName"], "seal-e-1");
    let command = pod.containers[0].command.clone().unwrap();
    assert_eq!(command[..4], ["agent", "seal", "--from", "/scratch/outbox"]);
    let request: serde_json::Value = serde_json::from_str(command.last().unwrap()).unwrap();
    assert_eq!(request["files"][0]["name"], "a.csv");
    assert_eq!(job.metadata.labels.unwrap()[EXPORT_UID_LABEL], "e-1");
}

#[test]
fn the_scan_verifies_the_sealed_copy_first_and_the_release_checks_the_manifest() {
    let e = export(&["a.csv"]);
    let scan = scan_job(&identity(), &e, "e-1", "abc", "agent:1", &[]);
    let pod = scan.spec.unwrap().template.spec.unwrap();
    let command = pod.containers[0].command.clone().unwrap();
    assert_eq!(command[..4], ["agent", "scan", "--sealed-sha256", "abc"]);
    let release = release_job(&identity(), &e, "e-1", "abc", "agent:1");
    assert_eq!(
        release.metadata.namespace.as_deref(),
        Some(RELEASE_NAMESPACE)
    );
    let command = release.spec.unwrap().template.spec.unwrap().containers[0]
        .command
        .clone()
        .unwrap();
    assert!(
        command.contains(&"/release/cr-census.by-district".to_string()),
        "{command:?}"
    );
    assert_eq!(release_claim_name("acme-2026"), "release-acme-2026");
}

#[test]
fn the_scan_policy_carries_only_the_authorizations_overrides() {
    use crate::api::authorization::ScanThresholds;
    assert_eq!(scan_policy(None), "{}");
    let t = ScanThresholds {
        threshold: Some(20),
        k: None,
    };
    assert_eq!(scan_policy(Some(&t)), r#"{"threshold":20}"#);
}

#[test]
fn the_scan_mounts_each_raw_claim_once_read_only_and_names_each_dataset() {
    let e = export(&["a.csv"]);
    let raw = |dataset: &str, claim: &str| RawSource {
        dataset: dataset.into(),
        claim: claim.into(),
        file: format!("{dataset}/2024.csv"),
        format: "csv",
        plan: "{}".into(),
    };
    let sources = [
        raw("population", "raw-a"),
        raw("income", "raw-a"),
        raw("firms", "raw-b"),
    ];
    let job = scan_job(&identity(), &e, "e-1", "abc", "agent:1", &sources);
    let pod = job.spec.unwrap().template.spec.unwrap();
    let volumes = serde_json::to_value(pod.volumes.unwrap()).unwrap();
    let claims: Vec<_> = volumes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["persistentVolumeClaim"].as_object())
        .collect();
    assert_eq!(claims.len(), 3, "sealed, raw-a and raw-b: {volumes}");
    assert!(claims[1..].iter().all(|c| c["readOnly"] == true));
    let command = pod.containers[0].command.clone().unwrap();
    let arg = |s: &str| command.contains(&s.to_string());
    assert!(
        arg("csv:/policy/plan-income.json:/raw/0/income/2024.csv"),
        "{command:?}"
    );
    assert!(
        arg("csv:/policy/plan-firms.json:/raw/1/firms/2024.csv"),
        "{command:?}"
    );
    let map = scan_policy_map(&identity(), &e, "e-1", "{}".into(), &sources);
    assert_eq!(map.data.unwrap().len(), 4);
}

#[test]
fn only_a_listed_reviewer_recalls_and_a_recall_never_counts_as_a_review() {
    let (members, reviewers) = (people(&["bob"]), people(&["carol", "dave", "alice", "bob"]));
    let excluded = Excluded {
        requester: "alice",
        members: &members,
        reviewers: &reviewers,
    };
    let mut reviews = vec![
        review("r1", "carol", Decision::Approve, 1),
        review("r2", "alice", Decision::Recall, 2),
        review("r3", "bob", Decision::Recall, 3),
        review("r4", "mallory", Decision::Recall, 4),
    ];
    // A recall during review decides nothing (admission refuses it anyway).
    let (counted, verdict) = tally(Subject::Export("by-district"), &reviews, &excluded, 1);
    assert_eq!(verdict, Tally::Approved { approvals: 1 });
    assert!(counted.iter().all(|r| r.decision == Decision::Approve));
    // The requester, a member and a stranger cannot recall.
    assert_eq!(recall_of("by-district", &reviews, &excluded), None);
    reviews.push(review("r6", "dave", Decision::Recall, 6));
    reviews.push(review("r5", "carol", Decision::Recall, 5));
    let recall = recall_of("by-district", &reviews, &excluded).unwrap();
    assert_eq!(
        (recall.name.as_str(), recall.reviewer.as_str()),
        ("r5", "carol")
    );
    assert_eq!(recall_of("another", &reviews, &excluded), None);
}

fn sealed(manifest: &str, files: &[(&str, i64, &str)]) -> SealedCopy {
    SealedCopy {
        volume: "pv".into(),
        manifest_sha256: manifest.into(),
        files: files
            .iter()
            .map(|(name, size, sha)| SealedFile {
                name: name.to_string(),
                size: *size,
                sha256: sha.to_string(),
            })
            .collect(),
        sealed_at: Time(Timestamp::from_second(1).unwrap()),
    }
}

#[test]
fn recalled_content_is_blocked_whole_or_renamed_and_an_empty_file_blocks_nothing() {
    let recalled = sealed("m1", &[("a.csv", 10, "h-a"), ("empty.txt", 0, "h-0")]);
    let entries = recalled_entries("cr-x/first", &recalled);
    assert_eq!(
        entries.keys().collect::<Vec<_>>(),
        ["h-a", "m1"],
        "the manifest and every non-empty file"
    );
    // The same export again.
    let why = recalled_match(&sealed("m1", &[("a.csv", 10, "h-a")]), &entries).unwrap();
    assert!(
        why.contains("m1") && why.contains("manifest of cr-x/first"),
        "{why}"
    );
    // The same file, renamed, beside another: another manifest, same content.
    let why = recalled_match(
        &sealed("m2", &[("b.csv", 5, "h-b"), ("renamed.csv", 10, "h-a")]),
        &entries,
    )
    .unwrap();
    assert!(
        why.contains("file renamed.csv") && why.contains("h-a"),
        "{why}"
    );
    // Different content, or only an empty file in common: releasable.
    assert_eq!(
        recalled_match(&sealed("m3", &[("b.csv", 5, "h-b")]), &entries),
        None
    );
    assert_eq!(
        recalled_match(&sealed("m4", &[("e.txt", 0, "h-0")]), &entries),
        None
    );
}
