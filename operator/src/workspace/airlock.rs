//! Pure builders and decisions of the airlock (see [`crate::api::airlock`]):
//! the sealed copy's claim, the agent Jobs that seal, check and release it,
//! and the tally of reviews.
//!
//! The sealed copy is one volume that moves, the way prepared data does:
//! made in the workspace namespace (the only place its outbox can be read),
//! handed over to the vault to be checked and kept under review, then to
//! `cleanroom-release` to be copied to the authorization's release claim.
//! It keeps the name `seal-<export uid>` in every namespace.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Volume,
    VolumeMount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::json;

use super::compute::{SCRATCH, agent_job, rwo_claim};
use super::{Identity, bounded_name, labels};
use crate::api::airlock::{
    Decision, Export, FileVerdict, OUTBOX, ReviewRecord, ScanSummary, SealedCopy, SealedFile,
    Subject,
};
use crate::api::{Members, Review, Time};

/// Where released products are delivered: one claim per authorization.
pub const RELEASE_NAMESPACE: &str = "cleanroom-release";
/// Label naming the export a child belongs to (its uid: names are reused).
pub const EXPORT_UID_LABEL: &str = "cleanroom.io/export-uid";
/// Label naming the export a child belongs to, to find it from a Job.
pub const EXPORT_LABEL: &str = "cleanroom.io/export";
/// Namespace annotation prefix: `review.cleanroom.io/<export>` names the
/// requester of an export open for review. The admission policy on Reviews
/// reads it (with the member and reviewer lists) from the namespace.
pub const REVIEW_ANNOTATION_PREFIX: &str = "review.cleanroom.io/";
/// Namespace annotation prefix: `released.cleanroom.io/<export>` names the
/// requester of a released export, which reviewers may now recall (and only
/// such an export: the Review policy admits a `Recall` only with it).
pub const RELEASED_ANNOTATION_PREFIX: &str = "released.cleanroom.io/";
/// ConfigMap, in the operator's namespace, of every recalled content hash
/// (manifests and files): never released again. See [`recalled_match`].
pub const RECALLED_MAP: &str = "cleanroom-recalled";
/// Namespace annotations listing the authorization's members and reviewers
/// (comma-separated), for the admission policy on Reviews.
pub const MEMBERS_ANNOTATION: &str = "cleanroom.io/members";
pub const MEMBER_GROUPS_ANNOTATION: &str = "cleanroom.io/member-groups";
pub const REVIEWERS_ANNOTATION: &str = "cleanroom.io/reviewers";
pub const REVIEWER_GROUPS_ANNOTATION: &str = "cleanroom.io/reviewer-groups";

/// Where each volume is mounted in the agent pods.
const OUTBOX_MOUNT: &str = "/scratch";
const SEALED_MOUNT: &str = "/sealed";
const RELEASE_MOUNT: &str = "/release";
const POLICY_MOUNT: &str = "/policy";
const RAW_MOUNT: &str = "/raw";
/// How long an agent step may run.
const STEP_SECONDS: i64 = 3600;

/// Name of the sealed copy's claim (in whichever namespace it is) and of the
/// seal Job.
pub fn seal_name(export_uid: &str) -> String {
    format!("seal-{export_uid}")
}

/// Name of the scan Job and its policy ConfigMap in the vault.
pub fn scan_name(export_uid: &str) -> String {
    format!("scan-{export_uid}")
}

/// Name of the release Job in the release namespace.
pub fn release_job_name(export_uid: &str) -> String {
    format!("release-{export_uid}")
}

/// Name of the Job that takes a released copy back, in the release namespace.
pub fn recall_job_name(export_uid: &str) -> String {
    format!("recall-{export_uid}")
}

/// The authorization's release claim.
pub fn release_claim_name(authorization: &str) -> String {
    bounded_name(&format!("release-{authorization}"))
}

/// Directory of an export on the release claim: `<namespace>.<export>`.
pub fn release_dir(export: &Export) -> String {
    format!(
        "{}.{}",
        export.metadata.namespace.as_deref().unwrap_or_default(),
        export.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Labels of an export's children: the scenario's, and the export's.
pub fn export_labels(id: &Identity, export: &Export) -> BTreeMap<String, String> {
    let mut l = id.labels();
    l.insert(
        EXPORT_UID_LABEL.into(),
        export.metadata.uid.clone().unwrap_or_default(),
    );
    l.insert(
        EXPORT_LABEL.into(),
        export.metadata.name.clone().unwrap_or_default(),
    );
    l
}

fn export_meta(id: &Identity, export: &Export, name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        labels: Some(export_labels(id, export)),
        ..ObjectMeta::default()
    }
}

/// The fresh claim the seal Job copies into: as large as the scratch volume
/// the files come from.
pub fn seal_claim(
    id: &Identity,
    export: &Export,
    uid: &str,
    size: Quantity,
    storage_class: Option<&str>,
) -> PersistentVolumeClaim {
    let meta = export_meta(id, export, &seal_name(uid), &id.namespace);
    rwo_claim(meta, size, storage_class)
}

/// The authorization's release claim in [`RELEASE_NAMESPACE`]: not a
/// scenario's child (it outlives them), labelled with the authorization.
pub fn release_claim(
    authorization: &str,
    size: Quantity,
    storage_class: Option<&str>,
) -> PersistentVolumeClaim {
    let meta = release_meta(&release_claim_name(authorization), authorization);
    rwo_claim(meta, size, storage_class)
}

pub(crate) fn claim_volume(name: &str, claim: &str, read_only: bool) -> Volume {
    Volume {
        name: name.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.into(),
            read_only: Some(read_only),
        }),
        ..Volume::default()
    }
}

pub(crate) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

fn agent(name: &str, image: &str, command: Vec<String>, mounts: Vec<VolumeMount>) -> Container {
    Container {
        name: name.into(),
        image: Some(image.into()),
        command: Some(command),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// What the seal Job is asked to copy, in the export's order.
pub fn seal_request(export: &Export) -> String {
    let files: Vec<_> = export
        .spec
        .files
        .iter()
        .map(|f| json!({"name": f.path, "kind": f.kind, "columns": f.columns}))
        .collect();
    json!({ "files": files }).to_string()
}

/// The Job, in the workspace namespace, that copies the named files from the
/// outbox (scratch mounted read-only) into the seal claim.
pub fn seal_job(id: &Identity, export: &Export, uid: &str, image: &str) -> Job {
    let meta = export_meta(id, export, &seal_name(uid), &id.namespace);
    let from = (SCRATCH, OUTBOX);
    seal_job_for(meta, from, seal_request(export), uid, image)
}

/// A seal Job named by `meta`: `agent seal` copies the files `request`
/// names from directory `from.1` of claim `from.0` (mounted read-only) into
/// the seal claim of `uid`.
pub(crate) fn seal_job_for(
    meta: ObjectMeta,
    from: (&str, &str),
    request: String,
    uid: &str,
    image: &str,
) -> Job {
    let command = vec![
        "agent".into(),
        "seal".into(),
        "--from".into(),
        format!("{OUTBOX_MOUNT}/{}", from.1),
        "--to".into(),
        SEALED_MOUNT.into(),
        "--request".into(),
        request,
    ];
    let mounts = vec![
        mount("source", OUTBOX_MOUNT, true),
        mount("sealed", SEALED_MOUNT, false),
    ];
    agent_job(
        meta,
        agent("seal", image, command, mounts),
        vec![
            claim_volume("source", from.0, true),
            claim_volume("sealed", &seal_name(uid), false),
        ],
        STEP_SECONDS,
    )
}

/// The policy of the automatic checks: the defaults, with the
/// authorization's stricter thresholds.
pub fn scan_policy(thresholds: Option<&crate::api::authorization::ScanThresholds>) -> String {
    let mut policy = json!({});
    if let Some(t) = thresholds {
        if let Some(threshold) = t.threshold {
            policy["threshold"] = json!(threshold);
        }
        if let Some(k) = t.k {
            policy["k"] = json!(k);
        }
    }
    policy.to_string()
}

/// A raw dataset the scan matches products against, in the vault: its
/// claim and file, its format, and the plan that reached the workspace
/// (which columns are personal, which quasi-identifiers).
#[derive(Clone, Debug, PartialEq)]
pub struct RawSource {
    pub dataset: String,
    pub claim: String,
    pub file: String,
    pub format: &'static str,
    pub plan: String,
}

impl RawSource {
    /// The raw side of one dataset the scenario reads.
    pub fn of(dataset: &crate::api::Dataset, request: &crate::api::DataRequest) -> RawSource {
        RawSource {
            dataset: request.dataset.clone(),
            claim: dataset.spec.source.claim_name.clone(),
            file: dataset.spec.source.path.clone(),
            format: super::data::format_arg(dataset.spec.format),
            plan: super::data::plan(dataset, request).to_string(),
        }
    }

    fn plan_key(&self) -> String {
        format!("plan-{}.json", self.dataset)
    }
}

/// The scan's ConfigMap in the vault: the policy, and each raw dataset's plan.
pub fn scan_policy_map(
    id: &Identity,
    export: &Export,
    uid: &str,
    policy: String,
    raw: &[RawSource],
) -> ConfigMap {
    let mut data = BTreeMap::from([("policy.json".to_string(), policy)]);
    for r in raw {
        data.insert(r.plan_key(), r.plan.clone());
    }
    let vault = crate::api::dataset::VAULT_NAMESPACE;
    ConfigMap {
        metadata: export_meta(id, export, &scan_name(uid), vault),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// The raw claims, each mounted once read-only at `/raw/<n>`, and the
/// scan's `--raw FORMAT:PLAN:FILE` arguments.
fn raw_mounts(raw: &[RawSource]) -> (Vec<Volume>, Vec<VolumeMount>, Vec<String>) {
    let mut claims: Vec<&str> = raw.iter().map(|r| r.claim.as_str()).collect();
    claims.sort_unstable();
    claims.dedup();
    let index = |claim: &str| claims.iter().position(|c| *c == claim).unwrap_or_default();
    let name = |i: usize| format!("raw-{i}");
    let volumes = claims
        .iter()
        .enumerate()
        .map(|(i, c)| claim_volume(&name(i), c, true))
        .collect();
    let mounts = (0..claims.len())
        .map(|i| mount(&name(i), &format!("{RAW_MOUNT}/{i}"), true))
        .collect();
    let args = raw
        .iter()
        .flat_map(|r| {
            let (plan, at) = (r.plan_key(), index(&r.claim));
            let arg = format!(
                "{}:{POLICY_MOUNT}/{plan}:{RAW_MOUNT}/{at}/{}",
                r.format, r.file
            );
            ["--raw".to_string(), arg]
        })
        .collect();
    (volumes, mounts, args)
}

/// The Job, in the vault, that first verifies the sealed copy against the
/// recorded manifest hash, then runs the automatic checks on it, matching it
/// against the raw data of the scenario's datasets (mounted read-only); the
/// whole report is written beside the sealed copy.
pub fn scan_job(
    id: &Identity,
    export: &Export,
    uid: &str,
    manifest: &str,
    image: &str,
    raw: &[RawSource],
) -> Job {
    let vault = crate::api::dataset::VAULT_NAMESPACE;
    let meta = export_meta(id, export, &scan_name(uid), vault);
    scan_job_for(meta, uid, manifest, image, raw)
}

/// A scan Job named by `meta`, beside the seal claim of `uid` and the policy
/// ConfigMap of the same name as the Job.
pub(crate) fn scan_job_for(
    meta: ObjectMeta,
    uid: &str,
    manifest: &str,
    image: &str,
    raw: &[RawSource],
) -> Job {
    let name = scan_name(uid);
    let (raw_volumes, raw_mounts, raw_args) = raw_mounts(raw);
    let mut scan: Vec<String> = vec![
        "agent".into(),
        "scan".into(),
        "--sealed-sha256".into(),
        manifest.into(),
        "--manifest".into(),
        format!("{SEALED_MOUNT}/manifest.json"),
        "--policy".into(),
        format!("{POLICY_MOUNT}/policy.json"),
        "--report".into(),
        format!("{SEALED_MOUNT}/scan.json"),
    ];
    scan.extend(raw_args);
    let mut mounts = vec![
        mount("sealed", SEALED_MOUNT, false),
        mount("policy", POLICY_MOUNT, true),
    ];
    mounts.extend(raw_mounts);
    let policy = Volume {
        name: "policy".into(),
        config_map: Some(k8s_openapi::api::core::v1::ConfigMapVolumeSource {
            name: name.clone(),
            ..Default::default()
        }),
        ..Volume::default()
    };
    let volumes = [claim_volume("sealed", &seal_name(uid), false), policy]
        .into_iter()
        .chain(raw_volumes)
        .collect();
    agent_job(
        meta,
        agent("scan", image, scan, mounts),
        volumes,
        STEP_SECONDS,
    )
}

/// The Job, in the release namespace, that copies the sealed copy to the
/// authorization's release claim under [`release_dir`], checking every hash.
pub fn release_job(id: &Identity, export: &Export, uid: &str, manifest: &str, image: &str) -> Job {
    let command = vec![
        "agent".into(),
        "release".into(),
        "--from".into(),
        SEALED_MOUNT.into(),
        "--to".into(),
        format!("{RELEASE_MOUNT}/{}", release_dir(export)),
        "--manifest-sha256".into(),
        manifest.into(),
    ];
    let mounts = vec![
        mount("sealed", SEALED_MOUNT, true),
        mount("release", RELEASE_MOUNT, false),
    ];
    agent_job(
        export_meta(id, export, &release_job_name(uid), RELEASE_NAMESPACE),
        agent("release", image, command, mounts),
        vec![
            claim_volume("sealed", &seal_name(uid), true),
            claim_volume("release", &release_claim_name(&id.authorization), false),
        ],
        STEP_SECONDS,
    )
}

/// The Job, in the release namespace, that takes a released copy back:
/// `agent recall` checks it is this export's (its manifest hash), overwrites
/// every file with zeros, verifies, and removes the directory.
pub fn recall_job(id: &Identity, export: &Export, uid: &str, manifest: &str, image: &str) -> Job {
    let command = vec![
        "agent".into(),
        "recall".into(),
        "--dir".into(),
        format!("{RELEASE_MOUNT}/{}", release_dir(export)),
        "--manifest-sha256".into(),
        manifest.into(),
    ];
    agent_job(
        export_meta(id, export, &recall_job_name(uid), RELEASE_NAMESPACE),
        agent(
            "recall",
            image,
            command,
            vec![mount("release", RELEASE_MOUNT, false)],
        ),
        vec![claim_volume(
            "release",
            &release_claim_name(&id.authorization),
            false,
        )],
        STEP_SECONDS,
    )
}

/// What `agent seal`, `verify` and `release` report.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CopyOutcome {
    pub manifest_sha256: String,
    pub files: Vec<Digest>,
}

/// One file's size and hash, in request order.
#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct Digest {
    pub size: i64,
    pub sha256: String,
}

/// Why a Job's termination message is not what was expected.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutcomeError {
    #[error("the agent reported an error: {0}")]
    Agent(String),
    #[error("the agent's report is not readable")]
    Unreadable,
    #[error("the agent reported {got} files for {asked} asked")]
    Count { got: usize, asked: usize },
}

/// Reads an `agent seal` report into the sealed files, in the export's order.
pub fn sealed_files(
    export: &Export,
    message: &str,
) -> Result<(String, Vec<SealedFile>), OutcomeError> {
    let paths: Vec<&str> = export.spec.files.iter().map(|f| f.path.as_str()).collect();
    sealed_paths(&paths, message)
}

/// The manifest hash and each of `paths` as the seal Job reported it, in
/// the order asked.
pub fn sealed_paths(
    paths: &[&str],
    message: &str,
) -> Result<(String, Vec<SealedFile>), OutcomeError> {
    let outcome = copy_outcome(message)?;
    let asked = paths.len();
    if outcome.files.len() != asked {
        return Err(OutcomeError::Count {
            got: outcome.files.len(),
            asked,
        });
    }
    let files = paths
        .iter()
        .zip(outcome.files)
        .map(|(p, d)| SealedFile {
            name: p.to_string(),
            size: d.size,
            sha256: d.sha256,
        })
        .collect();
    Ok((outcome.manifest_sha256, files))
}

/// Reads an agent copy report, or the error it carries.
pub fn copy_outcome(message: &str) -> Result<CopyOutcome, OutcomeError> {
    if let Ok(error) = serde_json::from_str::<AgentError>(message.trim()) {
        return Err(OutcomeError::Agent(error.error));
    }
    serde_json::from_str(message.trim()).map_err(|_| OutcomeError::Unreadable)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentError {
    error: String,
}

/// Reads `agent scan`'s summary (its termination message).
pub fn scan_summary(message: &str) -> Result<ScanSummary, OutcomeError> {
    if let Ok(error) = serde_json::from_str::<AgentError>(message.trim()) {
        return Err(OutcomeError::Agent(error.error));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Summary {
        verdict: String,
        #[serde(default)]
        policy_version: String,
        #[serde(default)]
        files: Vec<FileVerdict>,
    }
    let s: Summary = serde_json::from_str(message.trim()).map_err(|_| OutcomeError::Unreadable)?;
    if !matches!(s.verdict.as_str(), "pass" | "review" | "fail") {
        return Err(OutcomeError::Unreadable);
    }
    Ok(ScanSummary {
        verdict: s.verdict,
        policy_version: s.policy_version,
        files: s.files,
    })
}

/// What the reviews of an export decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tally {
    /// Not enough approvals yet.
    Waiting { approvals: usize },
    /// Enough distinct reviewers approved.
    Approved { approvals: usize },
    /// Someone rejected (the first one counts).
    Rejected(ReviewRecord),
    /// Someone sent it back.
    Returned(ReviewRecord),
}

/// Who may not review an export: its requester and the authorization's members.
pub struct Excluded<'a> {
    pub requester: &'a str,
    pub members: &'a Members,
    pub reviewers: &'a Members,
}

impl Excluded<'_> {
    /// Whether a review by `user` counts. Groups cannot be checked here (a
    /// Review does not say its author's groups): the admission policy,
    /// which sees them, refuses members by group and admits reviewers by group.
    fn counts(&self, user: &str) -> bool {
        user != self.requester
            && !self.members.users.iter().any(|u| u == user)
            && (self.reviewers.users.iter().any(|u| u == user) || !self.reviewers.groups.is_empty())
    }
}

/// The verdict of the reviews of `subject` (oldest first): any Reject
/// rejects, any Return returns, else approvals by distinct reviewers count
/// until `required`. Reviews by anyone who may not review are not counted
/// (the admission policy refuses them first); Recalls are handled after release.
pub fn tally(
    subject: Subject<'_>,
    reviews: &[Review],
    excluded: &Excluded<'_>,
    required: usize,
) -> (Vec<ReviewRecord>, Tally) {
    let mut ordered: Vec<&Review> = reviews
        .iter()
        .filter(|r| r.spec.subject() == Some(subject))
        .collect();
    ordered.sort_by_key(|r| {
        (
            r.metadata.creation_timestamp.clone(),
            r.metadata.name.clone(),
        )
    });
    let mut counted = Vec::new();
    let mut approvers = BTreeSet::new();
    for r in ordered {
        if !excluded.counts(&r.spec.reviewer) || r.spec.decision == Decision::Recall {
            continue;
        }
        let record = ReviewRecord {
            name: r.metadata.name.clone().unwrap_or_default(),
            reviewer: r.spec.reviewer.clone(),
            decision: r.spec.decision,
        };
        counted.push(record.clone());
        match r.spec.decision {
            Decision::Reject => return (counted, Tally::Rejected(record)),
            Decision::Return => return (counted, Tally::Returned(record)),
            _ => {
                approvers.insert(r.spec.reviewer.clone());
            }
        }
    }
    let approvals = approvers.len();
    let verdict = if approvals >= required.max(1) {
        Tally::Approved { approvals }
    } else {
        Tally::Waiting { approvals }
    };
    (counted, verdict)
}

/// Name of an authorization's delivery Role and RoleBinding in the release
/// namespace.
pub fn delivery_name(authorization: &str) -> String {
    bounded_name(&format!("delivery-{authorization}"))
}

fn named_rule(resources: &[&str], names: &[String], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        resource_names: (!names.is_empty()).then(|| names.to_vec()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    }
}

/// What the data operator's delivery identity may do in the release
/// namespace, and nothing more: read its authorization's release claim by
/// name, and run one pod named after that claim to fetch the files
/// (`kubectl cp` is an exec). RBAC cannot limit `create` by name: the
/// policy `cleanroom-release-delivery` admits only a pod named after a claim
/// its creator may read, mounting that claim alone, read-only.
pub fn delivery_role(authorization: &str) -> Role {
    let claim = vec![release_claim_name(authorization)];
    Role {
        metadata: release_meta(&delivery_name(authorization), authorization),
        rules: Some(vec![
            named_rule(&["persistentvolumeclaims"], &claim, &["get"]),
            named_rule(&["pods"], &[], &["create"]),
            named_rule(&["pods"], &claim, &["get", "delete"]),
            named_rule(&["pods/exec"], &claim, &["create", "get"]),
            named_rule(&["pods/log"], &claim, &["get"]),
        ]),
    }
}

/// Binds the authorization's `review.delivery` to [`delivery_role`]; `None`
/// when it names nobody (the binding is then removed).
pub fn delivery_binding(authorization: &str, delivery: &Members) -> Option<RoleBinding> {
    if delivery.is_empty() {
        return None;
    }
    let subjects = super::access::subjects(delivery);
    Some(RoleBinding {
        metadata: release_meta(&delivery_name(authorization), authorization),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: delivery_name(authorization),
        },
        subjects: Some(subjects),
    })
}

/// An object of the authorization (not of a scenario) in the release namespace.
fn release_meta(name: &str, authorization: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(RELEASE_NAMESPACE.into()),
        labels: Some(BTreeMap::from([
            (labels::MANAGED_BY.into(), labels::MANAGER.into()),
            (labels::AUTHORIZATION.into(), authorization.into()),
        ])),
        ..ObjectMeta::default()
    }
}

/// The recalled set's ConfigMap in the operator's namespace `ns`.
pub fn recalled_map(ns: &str, data: BTreeMap<String, String>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(RECALLED_MAP.into()),
            namespace: Some(ns.into()),
            labels: Some(BTreeMap::from([(
                labels::MANAGED_BY.into(),
                labels::MANAGER.into(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// The first `Recall` of a released `export` by someone whose review
/// counts (never its requester or a member), or `None`.
pub fn recall_of(
    export: &str,
    reviews: &[Review],
    excluded: &Excluded<'_>,
) -> Option<ReviewRecord> {
    let mut recalls: Vec<&Review> = reviews
        .iter()
        .filter(|r| r.spec.subject() == Some(Subject::Export(export)))
        .filter(|r| r.spec.decision == Decision::Recall)
        .filter(|r| excluded.counts(&r.spec.reviewer))
        .collect();
    recalls.sort_by_key(|r| {
        (
            r.metadata.creation_timestamp.clone(),
            r.metadata.name.clone(),
        )
    });
    recalls.first().map(|r| ReviewRecord {
        name: r.metadata.name.clone().unwrap_or_default(),
        reviewer: r.spec.reviewer.clone(),
        decision: Decision::Recall,
    })
}

/// The content hashes a recall blocks for good, each with what it was: the
/// manifest's, and every non-empty file's (a renamed or repackaged copy of
/// a recalled file is the same content; an empty file is no content).
pub fn recalled_entries(export: &str, sealed: &SealedCopy) -> BTreeMap<String, String> {
    let mut out = BTreeMap::from([(
        sealed.manifest_sha256.clone(),
        format!("manifest of {export}"),
    )]);
    for f in sealed.files.iter().filter(|f| f.size > 0) {
        out.entry(f.sha256.clone())
            .or_insert_with(|| format!("{} of {export}", f.name));
    }
    out
}

/// Why a sealed copy may never be released: its manifest, or one of its
/// files, has the content of a recalled export (`recalled`: hash -> what it
/// was, as [`recalled_entries`] wrote it).
pub fn recalled_match(sealed: &SealedCopy, recalled: &BTreeMap<String, String>) -> Option<String> {
    let said = |what: &str, hash: &str| {
        format!("{what} has the content of a recalled product ({hash}): never releasable")
    };
    if let Some(was) = recalled.get(&sealed.manifest_sha256) {
        return Some(said(
            &format!("the whole export (as {was})"),
            &sealed.manifest_sha256,
        ));
    }
    sealed.files.iter().filter(|f| f.size > 0).find_map(|f| {
        let was = recalled.get(&f.sha256)?;
        Some(said(&format!("file {} (as {was})", f.name), &f.sha256))
    })
}

/// Approvals required: the authorization's figure, else 2 when the scenario
/// uses an `Important` or `Core` dataset, else 1.
pub fn approvals_required(configured: Option<i32>, uses_important_data: bool) -> usize {
    match configured {
        Some(n) if n > 0 => n as usize,
        _ if uses_important_data => 2,
        _ => 1,
    }
}

/// The deadline of a step that starts `now`.
pub fn deadline(now: &Time, seconds: i64) -> Time {
    let later = now
        .0
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds));
    Time(later.unwrap_or(now.0))
}

#[cfg(test)]
mod tests;
