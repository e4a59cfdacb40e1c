//! `cleanroom renew`: extend an Active, unexpired authorization.

use clap::Args;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use serde_json::json;

use super::common::{Exit, OutputArg, Summary, Target, api_error, block_on, patch_spec, print};
use crate::api::authorization::MAX_VALIDITY_HOURS;
use crate::api::{Authorization, AuthorizationSpec, State, Time};

#[derive(Args, Debug)]
#[command(
    after_help = "Only raises validUntil, of an Active authorization that has not expired \
(exit code 4 otherwise), and never beyond validFrom + 3 years (1096 days): beyond that the \
bureau signs a new agreement. Its scenarios' expiry moves with it.

Examples:
  cleanroom renew acme-analytics --until 2027-06-30T00:00:00+08:00
  kubectl cleanroom renew acme-analytics --until 2027-06-30T00:00:00Z -o json"
)]
pub(super) struct RenewArgs {
    /// Name of the Authorization.
    pub(super) authorization: String,
    /// The new validUntil (RFC 3339, for example 2027-06-30T00:00:00+08:00).
    #[arg(long)]
    pub(super) until: Timestamp,
    #[command(flatten)]
    pub(super) output: OutputArg,
}

/// Whether `spec` may be renewed to `until` at `now`.
pub(super) fn check(
    spec: &AuthorizationSpec,
    until: Timestamp,
    now: Timestamp,
) -> anyhow::Result<()> {
    let current = spec.valid_until.0;
    match spec.state {
        State::Revoked => {
            return Err(Exit::forbidden(
                "the authorization is Revoked: revoked is final and cannot be renewed",
            ));
        }
        State::Suspended => {
            return Err(Exit::forbidden(
                "the authorization is Suspended: resume it first (cleanroom resume NAME --authorization)",
            ));
        }
        State::Active => {}
    }
    if current <= now {
        return Err(Exit::forbidden(format!(
            "the authorization expired at {current}: its workspaces are torn down; an expired \
             authorization cannot be renewed, create a new one"
        )));
    }
    if until <= current {
        anyhow::bail!(
            "--until {until} does not extend validUntil {current}: renew only raises it \
             (to end earlier, suspend or revoke)"
        );
    }
    let max = spec
        .valid_from
        .0
        .checked_add(SignedDuration::from_hours(MAX_VALIDITY_HOURS))?;
    if until > max {
        anyhow::bail!(
            "--until {until} is more than 3 years (1096 days) after validFrom {}: the latest \
             possible is {max}; beyond that the bureau signs a new agreement",
            spec.valid_from.0
        );
    }
    Ok(())
}

pub(super) fn run(args: RenewArgs) -> anyhow::Result<()> {
    block_on(async |client| {
        let name = &args.authorization;
        let a = Api::<Authorization>::all(client.clone())
            .get(name)
            .await
            .map_err(|e| api_error(e, "authorization", name))?;
        check(&a.spec, args.until, Timestamp::now())
            .map_err(|e| e.context(format!("cannot renew authorization {name:?}")))?;
        let target = Target {
            name: name.clone(),
            authorization: true,
        };
        let summary: Summary =
            patch_spec(&client, &target, json!({"validUntil": Time(args.until)})).await?;
        print(&summary.render(args.output.output)?)
    })
}
