//! `cleanroom review approve|reject|return EXPORT` (or `--import IMPORT`):
//! one reviewer's decision on an export or an import, as a Review object in
//! its workspace. A Review names exactly one of the two; only an export is
//! ever recalled (`cleanroom export recall`).
//!
//! The reviewer is always the caller as the API server sees them; the
//! admission policy `cleanroom-airlock-reviews` refuses any other name, the
//! requester, a member of the authorization, someone the authorization does
//! not list as a reviewer, and a request not open for review. Its message is
//! shown as the API server gives it.

use std::fmt::Write as _;

use clap::{ArgGroup, Args, Subcommand};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde::Serialize;

use super::common::{
    Exit, Output, OutputArg, block_on, caller, create_error, print, workspace_namespace,
};
use super::export_spec::{OUTBOX_DIR, check_name};
use crate::api::Review;
use crate::api::airlock::{Decision, FileNote, ReviewSpec};

/// Longest comment or note, in characters (the schema's bound).
const MAX_TEXT: usize = 4096;
/// Most per-file notes (the schema's bound).
const MAX_NOTES: usize = 64;
/// Longest prefix of a generated name (the API server adds 5 characters).
const PREFIX_MAX: usize = 58;

#[derive(Args, Debug)]
pub(super) struct ReviewArgs {
    #[command(subcommand)]
    pub(super) command: ReviewCommand,
}

#[derive(Subcommand, Debug)]
pub(super) enum ReviewCommand {
    /// Approve an export (or --import) in review (counts towards the approvals required).
    Approve(DecisionArgs),
    /// Reject an export or import (final: its sealed copy is wiped); --comment says why.
    Reject(DecisionArgs),
    /// Send an export or import back to its requester to change and resubmit; --comment says why.
    Return(DecisionArgs),
}

impl ReviewCommand {
    pub(super) fn split(self) -> (Decision, DecisionArgs) {
        match self {
            ReviewCommand::Approve(a) => (Decision::Approve, a),
            ReviewCommand::Reject(a) => (Decision::Reject, a),
            ReviewCommand::Return(a) => (Decision::Return, a),
        }
    }
}

#[derive(Args, Debug)]
#[command(
    group = ArgGroup::new("subject").required(true).args(["export", "import"]),
    after_help = "Name an export (EXPORT) or an import (--import NAME), not both. The review \
is made in your name, as the API server knows you; it cannot be changed once made. The \
requester, and the authorization's members, may not review it: the API server refuses them.

Examples:
  cleanroom review approve q1-tables --scenario elderly-care-demand --comment 'cells >= 10'
  cleanroom review return q1-tables --scenario elderly-care-demand \\
    --comment 'round the counts' --file by-district.csv='row 7 is a small cell'
  cleanroom review approve --import care-homes --scenario elderly-care-demand \\
    --comment 'contract NCAB-2026-014 checked'"
)]
pub(super) struct DecisionArgs {
    /// Name of the Export under review.
    pub(super) export: Option<String>,
    /// Name of the Import under review, instead of an export.
    #[arg(long)]
    pub(super) import: Option<String>,
    /// The scenario whose workspace it is in.
    #[arg(long)]
    pub(super) scenario: String,
    /// Why (required to reject or return).
    #[arg(long, default_value = "")]
    pub(super) comment: String,
    /// A note on one file, NAME=NOTE (repeatable; NAME is its path in the request).
    #[arg(long = "file", value_parser = parse_note)]
    pub(super) files: Vec<FileNote>,
    #[command(flatten)]
    pub(super) output: OutputArg,
}

/// `NAME=NOTE`.
pub(super) fn parse_note(s: &str) -> Result<FileNote, String> {
    let (name, comment) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: a file note is NAME=NOTE"))?;
    let name = name.trim();
    let name = name
        .strip_prefix(OUTBOX_DIR)
        .and_then(|n| n.strip_prefix('/'))
        .unwrap_or(name);
    if name.is_empty() || name.len() > 255 || comment.chars().count() > MAX_TEXT {
        return Err(format!(
            "{s:?}: NAME is a file of the request, NOTE at most {MAX_TEXT} characters"
        ));
    }
    Ok(FileNote {
        name: name.into(),
        comment: comment.into(),
    })
}

impl DecisionArgs {
    /// What is reviewed, `("export", name)` or `("import", name)`: `None`
    /// unless exactly one is named (clap sees to that on the command line).
    pub(super) fn subject(&self) -> Option<(&'static str, &str)> {
        match (&self.export, &self.import) {
            (Some(e), None) => Some(("export", e)),
            (None, Some(i)) => Some(("import", i)),
            _ => None,
        }
    }
}

/// The decision and its text, checked as the schema checks them.
pub(super) fn check(decision: Decision, a: &DecisionArgs) -> anyhow::Result<()> {
    let (noun, name) = a
        .subject()
        .ok_or_else(|| Exit::usage("name one export, or one import with --import"))?;
    check_name(name)?;
    if noun == "import" && decision == Decision::Recall {
        return Err(Exit::usage(
            "an import is not recalled: its requester withdraws it, which wipes it from the workspace",
        ));
    }
    if decision != Decision::Approve && a.comment.trim().is_empty() {
        return Err(Exit::usage(format!(
            "to {} an {noun}, --comment must say why",
            verb(decision)
        )));
    }
    anyhow::ensure!(
        a.comment.chars().count() <= MAX_TEXT,
        "--comment is at most {MAX_TEXT} characters"
    );
    anyhow::ensure!(
        a.files.len() <= MAX_NOTES,
        "at most {MAX_NOTES} --file notes"
    );
    Ok(())
}

fn verb(d: Decision) -> &'static str {
    match d {
        Decision::Approve => "approve",
        Decision::Reject => "reject",
        Decision::Return => "return",
        Decision::Recall => "recall",
    }
}

/// The reviewer as a name part: lowercase letters, digits and '-'.
pub fn slug(reviewer: &str) -> String {
    let mapped: String = reviewer
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let parts: Vec<&str> = mapped.split('-').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        "reviewer".into()
    } else {
        parts.join("-")
    }
}

/// `<export or import>-<reviewer>-`: the API server adds five random characters.
pub fn name_prefix(subject: &str, reviewer: &str) -> String {
    let mut prefix = format!("{subject}-{}", slug(reviewer));
    prefix.truncate(PREFIX_MAX - 1);
    let prefix = prefix.trim_end_matches(['-', '.']);
    format!("{prefix}-")
}

/// The Review to create (of what `check` found named).
pub fn review(decision: Decision, a: &DecisionArgs, reviewer: &str) -> Review {
    let subject = a.subject().map_or("", |(_, name)| name);
    let mut r = Review::new(
        "",
        ReviewSpec {
            export: a.export.clone(),
            import: a.import.clone(),
            reviewer: reviewer.into(),
            decision,
            comment: a.comment.clone(),
            files: a.files.clone(),
        },
    );
    r.metadata.name = None;
    r.metadata.generate_name = Some(name_prefix(subject, reviewer));
    r.metadata.namespace = Some(workspace_namespace(&a.scenario));
    r
}

/// What is printed once the review is made.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Made {
    pub name: String,
    pub namespace: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<String>,
    pub reviewer: String,
    pub decision: Decision,
    pub comment: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileNote>,
}

impl From<&Review> for Made {
    fn from(r: &Review) -> Self {
        Made {
            name: r.name_any(),
            namespace: r.namespace().unwrap_or_default(),
            export: r.spec.export.clone(),
            import: r.spec.import.clone(),
            reviewer: r.spec.reviewer.clone(),
            decision: r.spec.decision,
            comment: r.spec.comment.clone(),
            files: r.spec.files.clone(),
        }
    }
}

impl Made {
    pub fn render(&self, output: Output) -> anyhow::Result<String> {
        Ok(match output {
            Output::Json => serde_json::to_string_pretty(self)? + "\n",
            Output::Yaml => serde_yaml::to_string(self)?,
            Output::Table => {
                let (noun, subject) = match (&self.export, &self.import) {
                    (_, Some(i)) => ("import", i.as_str()),
                    (e, None) => ("export", e.as_deref().unwrap_or("-")),
                };
                let mut out = format!(
                    "review {} in {}: {:?} {noun} {subject} by {}\n",
                    self.name, self.namespace, self.decision, self.reviewer
                );
                for f in &self.files {
                    let _ = writeln!(out, "  {}: {}", f.name, f.comment);
                }
                out
            }
        })
    }
}

pub(super) fn run(args: ReviewArgs) -> anyhow::Result<()> {
    let (decision, a) = args.command.split();
    decide(decision, a)
}

/// `cleanroom export recall`: a Review with decision `Recall`.
pub(super) fn recall(args: super::export::RecallArgs) -> anyhow::Result<()> {
    let a = DecisionArgs {
        export: Some(args.name),
        import: None,
        scenario: args.scenario,
        comment: args.comment,
        files: Vec::new(),
        output: args.output,
    };
    decide(Decision::Recall, a)
}

fn decide(decision: Decision, a: DecisionArgs) -> anyhow::Result<()> {
    check(decision, &a)?;
    let (noun, name) = a.subject().unwrap_or_default();
    block_on(async |client| {
        let reviewer = caller(&client).await?;
        let review = review(decision, &a, &reviewer);
        let made = Api::<Review>::namespaced(client.clone(), &workspace_namespace(&a.scenario))
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| create_error(e, &format!("review of {noun}"), name, &a.scenario))?;
        print(&Made::from(&made).render(a.output.output)?)
    })
}
