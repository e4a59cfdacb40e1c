//! `cleanroom audit verify|show|pubkey`: the audit ledger, read through the API.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use serde_json::json;

use super::common::{EXIT_TAMPERED, Exit, Output, OutputArg, block_on, print};
use crate::audit::record::Record;
use crate::audit::store::{self, DEFAULT_NAMESPACE, PREFIX};
use crate::audit::{Action, Break, Segment, Summary, keys, signing, verify};

#[derive(Args, Debug)]
pub(super) struct AuditArgs {
    #[command(subcommand)]
    pub(super) command: AuditCommand,
}

#[derive(Subcommand, Debug)]
pub(super) enum AuditCommand {
    /// Check every hash and sequence number of the ledger; exit 5 at the first broken link.
    Verify(VerifyArgs),
    /// Print records, filtered by object, action and time.
    Show(ShowArgs),
    /// Print the public key that checks the ledger's signed heads (hex).
    Pubkey(PubkeyArgs),
}

/// Where the ledger is.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub(super) struct LedgerArg {
    /// Namespace of the ledger's ConfigMap segments.
    #[arg(long, env = "CLEANROOM_AUDIT_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub(super) namespace: String,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Reads every batch and segment (ConfigMaps cleanroom-audit-b-N and \
cleanroom-audit-s-N, N the first sequence number) and checks that each record's hash is named \
by the next one, that sequence numbers have no gap (no batch or segment is missing), that a \
record held by both a segment and a batch not yet compacted away is the same in both, and that \
pruned records are accounted for by a checkpoint. Exit code 0 \
if the chain is intact, 5 if it is broken (the first broken link is printed), 1 on error.

Whoever may rewrite every ConfigMap of the ledger can also recompute every hash. With \
--public-key, the operator's signed heads are checked too: every record up to the last \
signed head that verifies is proven; a signature that does not verify, a signed head whose \
records were changed, or a record older than --max-unproven-age that no signature covers \
fails (exit 5), naming the record from which on the chain is unproven. Keep the key file \
from `cleanroom audit pubkey` (or the operator's log) outside the cluster.

Examples:
  cleanroom audit verify
  cleanroom audit pubkey > audit.pub    # once, kept elsewhere
  cleanroom audit verify --public-key audit.pub
  kubectl cleanroom audit verify -o json"
)]
pub(super) struct VerifyArgs {
    #[command(flatten)]
    pub(super) ledger: LedgerArg,
    /// File with the operator's public key (hex, as `cleanroom audit pubkey` prints it).
    #[arg(long, value_name = "FILE")]
    pub(super) public_key: Option<std::path::PathBuf>,
    /// With --public-key: how old a record may be without a signed head over
    /// it (the operator signs every hour), e.g. 2h, 90m.
    #[arg(long, default_value = "2h", value_parser = parse_age)]
    pub(super) max_unproven_age: SignedDuration,
    #[command(flatten)]
    pub(super) output: OutputArg,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Times are RFC 3339 (2026-03-01T08:00:00+08:00) or dates (2026-03-01, \
midnight UTC). A broken chain is reported on stderr; the records are shown anyway.

Examples:
  cleanroom audit show --name elderly-care-demand
  cleanroom audit show --kind Authorization --action suspended --since 2026-01-01
  cleanroom audit show --authorization acme-analytics -o json"
)]
pub(super) struct ShowArgs {
    #[command(flatten)]
    pub(super) ledger: LedgerArg,
    /// Only records of objects of this kind (Authorization, Scenario, Dataset, Ledger).
    #[arg(long)]
    pub(super) kind: Option<String>,
    /// Only records of objects with this name.
    #[arg(long)]
    pub(super) name: Option<String>,
    /// Only records of this authorization and its scenarios.
    #[arg(long)]
    pub(super) authorization: Option<String>,
    /// Only records with this action (repeatable), e.g. suspended, wiped, member-granted.
    #[arg(long)]
    pub(super) action: Vec<Action>,
    /// Only records at or after this time.
    #[arg(long, value_parser = parse_when)]
    pub(super) since: Option<Timestamp>,
    /// Only records before this time.
    #[arg(long, value_parser = parse_when)]
    pub(super) until: Option<Timestamp>,
    #[command(flatten)]
    pub(super) output: OutputArg,
}

#[derive(Args, Debug)]
#[command(
    after_help = "The key is read from the ConfigMap cleanroom-audit-pubkey, which the \
operator writes when it first makes its signing key. Save it outside the cluster: a key \
read later from the same cluster proves only as much as the cluster's admins allow.

Examples:
  cleanroom audit pubkey > audit.pub
  cleanroom audit verify --public-key audit.pub"
)]
pub(super) struct PubkeyArgs {
    #[command(flatten)]
    pub(super) ledger: LedgerArg,
}

/// A duration such as 2h or 90m.
fn parse_age(s: &str) -> Result<SignedDuration, String> {
    s.parse::<SignedDuration>()
        .map_err(|e| format!("{s:?} is not a duration like 2h or 90m: {e}"))
}

/// An RFC 3339 time, or a date (midnight UTC).
pub(super) fn parse_when(s: &str) -> Result<Timestamp, String> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    s.parse::<k8s_openapi::jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| format!("{s:?} is neither an RFC 3339 time nor a date (YYYY-MM-DD)"))
}

pub(super) fn run(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Verify(a) => run_verify(a),
        AuditCommand::Show(a) => run_show(a),
        AuditCommand::Pubkey(a) => run_pubkey(a),
    }
}

/// Every segment of the ledger in `namespace`.
pub(super) async fn read(client: &kube::Client, namespace: &str) -> anyhow::Result<Vec<Segment>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    store::segments(&api)
        .await
        .map_err(|e| anyhow::anyhow!("reading the audit segments in namespace {namespace:?}: {e}"))
}

/// Every record that parses, in chain order.
pub(super) fn records(segments: &[Segment]) -> Vec<Record> {
    crate::audit::chain::lines(segments)
        .into_iter()
        .filter_map(|line| Record::parse(line).ok())
        .collect()
}

fn run_verify(args: VerifyArgs) -> anyhow::Result<()> {
    let namespace = args.ledger.namespace.clone();
    let key = match &args.public_key {
        Some(path) => Some(read_public_key(path)?),
        None => None,
    };
    let segments = block_on(async |client| read(&client, &namespace).await)?;
    let verdict = verify(PREFIX, &segments);
    let signed = match (&verdict, &key) {
        (Ok(_), Some(key)) => Some(signing::check(
            &signing::chained(&segments),
            key,
            Timestamp::now(),
            args.max_unproven_age,
        )),
        _ => None,
    };
    print(&verdict_text(
        &verdict,
        signed.as_ref(),
        args.output.output,
    )?)?;
    let broken = match (verdict, signed) {
        (Err(b), _) => format!("is broken at {b}"),
        (Ok(_), Some(Err(u))) => format!("is unproven from {u}"),
        _ => return Ok(()),
    };
    Err(Exit {
        code: EXIT_TAMPERED,
        message: format!("the audit chain in namespace {namespace:?} {broken}"),
    }
    .into())
}

fn read_public_key(path: &std::path::Path) -> anyhow::Result<ed25519_dalek::VerifyingKey> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading the public key {}: {e}", path.display()))?;
    signing::parse_public_key(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

type Signed = Result<signing::Proof, signing::Unproven>;

/// The verdict as JSON (for -o json and -o yaml).
fn verdict_json(verdict: &Result<Summary, Break>, signed: Option<&Signed>) -> serde_json::Value {
    let mut v = match verdict {
        Ok(s) => json!({"intact": true, "summary": s}),
        Err(b) => json!({"intact": false, "broken": b}),
    };
    match signed {
        Some(Ok(p)) => v["signatures"] = json!({"verified": true, "proof": p}),
        Some(Err(u)) => v["signatures"] = json!({"verified": false, "unproven": u}),
        None => {}
    }
    v
}

fn verdict_text(
    verdict: &Result<Summary, Break>,
    signed: Option<&Signed>,
    output: Output,
) -> anyhow::Result<String> {
    Ok(match (verdict, output) {
        (_, Output::Json) => serde_json::to_string_pretty(&verdict_json(verdict, signed))? + "\n",
        (_, Output::Yaml) => serde_yaml::to_string(&verdict_json(verdict, signed))?,
        (Ok(s), Output::Table) => format!(
            "intact: {} records in {} segments and {} batches (sequence {}..{}), {} checkpoint(s)\nhead: {}\n{}",
            s.records,
            s.segments - s.batches,
            s.batches,
            s.first_seq.map_or("-".into(), |n| n.to_string()),
            s.last_seq.map_or("-".into(), |n| n.to_string()),
            s.checkpoints,
            s.head,
            signed.map_or_else(String::new, signed_text)
        ),
        (Err(b), Output::Table) => format!("BROKEN at {b}\n"),
    })
}

fn signed_text(signed: &Signed) -> String {
    let p = match signed {
        Err(u) => return format!("UNPROVEN at {u}\n"),
        Ok(p) => p,
    };
    let mut out = match &p.last {
        Some(l) => format!(
            "signed: {} signed head(s) verify; the last, record {} of {}, proves records through {}\n",
            p.signed_heads, l.record, l.time, l.through
        ),
        None => "signed: no signed head yet\n".to_string(),
    };
    if let Some(n) = p.unproven_from {
        let _ = writeln!(
            out,
            "unproven: {} record(s) from {n} on, not yet covered by a signed head",
            p.unproven
        );
    }
    out
}

fn run_pubkey(args: PubkeyArgs) -> anyhow::Result<()> {
    let namespace = args.ledger.namespace;
    let cm = block_on(async |client| {
        let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
        api.get_opt(keys::PUBLIC).await.map_err(|e| {
            anyhow::anyhow!(
                "reading ConfigMap {} in namespace {namespace:?}: {e}",
                keys::PUBLIC
            )
        })
    })?;
    let key = cm.as_ref().and_then(keys::published).ok_or_else(|| Exit {
        code: super::common::EXIT_NOT_FOUND,
        message: format!(
            "no public key in ConfigMap {} of namespace {namespace:?}: the operator publishes it when it first leads",
            keys::PUBLIC
        ),
    })?;
    print(&format!("{key}\n"))
}

/// Whether `r` passes the filters of `args`.
fn selected(r: &Record, args: &ShowArgs) -> bool {
    args.kind
        .as_ref()
        .is_none_or(|k| r.kind.eq_ignore_ascii_case(k))
        && args.name.as_ref().is_none_or(|n| r.name == *n)
        && args
            .authorization
            .as_ref()
            .is_none_or(|a| r.authorization.as_ref() == Some(a))
        && (args.action.is_empty() || args.action.contains(&r.action))
        && args.since.is_none_or(|t| r.time.0 >= t)
        && args.until.is_none_or(|t| r.time.0 < t)
}

fn run_show(args: ShowArgs) -> anyhow::Result<()> {
    let namespace = args.ledger.namespace.clone();
    let segments = block_on(async |client| read(&client, &namespace).await)?;
    if let Err(b) = verify(PREFIX, &segments) {
        eprintln!("cleanroom: warning: the audit chain is broken at {b}");
    }
    let shown: Vec<Record> = records(&segments)
        .into_iter()
        .filter(|r| selected(r, &args))
        .collect();
    print(&match args.output.output {
        Output::Json => serde_json::to_string_pretty(&shown)? + "\n",
        Output::Yaml => serde_yaml::to_string(&shown)?,
        Output::Table => table(&shown),
    })
}

fn table(records: &[Record]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:<20} {:<26} {:<40} {:<15} DETAIL",
        "SEQ", "TIME", "ACTOR", "OBJECT", "ACTION"
    );
    for r in records {
        let mut detail = r.reason.clone().unwrap_or_default();
        for (label, v) in [("before", &r.before), ("after", &r.after)] {
            if let Some(v) = v {
                if !detail.is_empty() {
                    detail.push(' ');
                }
                let _ = write!(detail, "{label} {v}");
            }
        }
        let _ = writeln!(
            out,
            "{:<6} {:<20} {:<26} {:<40} {:<15} {}",
            r.seq,
            r.time.0.strftime("%Y-%m-%dT%H:%M:%SZ"),
            r.actor,
            format!("{}/{}", r.kind, r.name),
            r.action.as_str(),
            detail
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_or_dates() {
        assert_eq!(
            parse_when("2026-03-01").expect("date"),
            "2026-03-01T00:00:00Z".parse::<Timestamp>().expect("t")
        );
        assert_eq!(
            parse_when("2026-03-01T08:00:00+08:00").expect("time"),
            "2026-03-01T00:00:00Z".parse::<Timestamp>().expect("t")
        );
        assert!(parse_when("yesterday").is_err());
    }

    #[test]
    fn verify_says_how_far_the_signatures_prove_the_chain() {
        let summary = Summary {
            segments: 1,
            batches: 0,
            records: 10,
            first_seq: Some(1),
            last_seq: Some(10),
            head: "ab".into(),
            checkpoints: 0,
        };
        let proven = signing::Proven {
            record: 4,
            through: 3,
            time: "2026-03-01T08:00:00Z".parse().expect("time"),
        };
        let unproven = signing::Unproven {
            record: 8,
            problem: "records through 7 were changed after they were signed".into(),
            last: Some(proven.clone()),
            unproven_from: Some(5),
        };
        let text =
            verdict_text(&Ok(summary.clone()), Some(&Err(unproven)), Output::Table).expect("text");
        assert!(
            text.contains("UNPROVEN at record 8: records through 7 were changed")
                && text.contains("the last signed head that verifies is record 4 (records through 3): records from 5 on are unproven"),
            "{text}"
        );
        let proof = signing::Proof {
            signed_heads: 1,
            last: Some(proven),
            unproven_from: Some(5),
            unproven: 6,
        };
        let text = verdict_text(
            &Ok(summary.clone()),
            Some(&Ok(proof.clone())),
            Output::Table,
        )
        .expect("text");
        assert!(text.contains("proves records through 3"), "{text}");
        assert!(text.contains("unproven: 6 record(s) from 5 on"), "{text}");
        let json = verdict_json(&Ok(summary), Some(&Ok(proof)));
        assert_eq!(json["signatures"]["proof"]["unprovenFrom"], 5);
        assert_eq!(
            parse_age("90m").expect("age"),
            SignedDuration::from_mins(90)
        );
    }
}
