//! Who may read an authorization's release claim: its delivery identity
//! (`review.delivery`), through a Role in the release namespace naming that
//! one claim (see [`builders::delivery_role`]). Granted at each release, and
//! kept up to date when the authorization changes: a person taken off
//! `review.delivery`, or a suspended or revoked authorization, loses access
//! at once (an expired one keeps it: what was released is the operator's).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tracing::warn;

use crate::api::common::State;
use crate::api::{Authorization, Members};
use crate::controller::Error;
use crate::controller::kube_ops::{apply, delete};
use crate::workspace::airlock::{self as builders, RELEASE_NAMESPACE};
use crate::workspace::labels;

/// The delivery Role, and its binding to `review.delivery` (removed when it
/// names nobody or the authorization is not Active).
pub(crate) async fn grant(client: &Client, a: &Authorization) -> Result<(), Error> {
    let name = a.name_any();
    let roles: Api<Role> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    apply(&roles, &builders::delivery_role(&name)).await?;
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    // A suspended or revoked authorization's access is taken back (R8).
    let nobody = Members::default();
    let delivery = if a.spec.state == State::Active {
        &a.spec.review.delivery
    } else {
        &nobody
    };
    match builders::delivery_binding(&name, delivery) {
        Some(binding) => {
            apply(&bindings, &binding).await?;
        }
        None => {
            // Only the binding this operator made for this authorization.
            let binding = builders::delivery_name(&name);
            let ours = bindings.get_metadata_opt(&binding).await?.is_some_and(|b| {
                b.labels().get(labels::AUTHORIZATION) == Some(&name)
                    && b.labels().get(labels::MANAGED_BY).map(String::as_str)
                        == Some(labels::MANAGER)
            });
            if ours {
                delete(&bindings, &binding).await?;
            }
        }
    }
    Ok(())
}

/// Follows every authorization's spec: one whose release claim exists gets
/// its delivery access brought up to date (one read when nothing was
/// released, and only when its generation changed).
pub(crate) async fn follow(client: Client) {
    use kube::runtime::WatchStreamExt;
    let seen = Arc::new(super::super::Generations::default());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    let mut events = watcher(
        Api::<Authorization>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects()
    .boxed();
    while let Some(event) = events.next().await {
        let a = match event {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "authorization watch (delivery access)");
                continue;
            }
        };
        let name = a.name_any();
        if !seen.changed(&name, a.metadata.generation, false) {
            continue;
        }
        let claim = builders::release_claim_name(&name);
        let result = match claims.get_metadata_opt(&claim).await {
            Ok(Some(_)) => grant(&client, &a).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            warn!(error = %e, authorization = %name, "delivery access not updated; retried at its next change or release");
            // Forget it, so that a later event of the same generation retries.
            seen.changed(&name, None, true);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}
