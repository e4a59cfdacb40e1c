//! The key pair of the signed heads, in the ledger's namespace: the private
//! key in the Secret `cleanroom-audit-signing` (only the operator's audit
//! Role may read it), the public key in the ConfigMap
//! `cleanroom-audit-pubkey` (for `cleanroom audit pubkey` and auditors).
//! Both are created by the operator the first time it leads, immutable, and
//! reused by every later start.
//!
//! A Secret of that name that the operator did not make (another type,
//! label or shape) is refused, never overwritten: whoever planted it could
//! otherwise choose the key the ledger is signed with. A published public
//! key that is not the Secret's is refused the same way.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};
use tracing::info;

use super::signing::Signer;
use super::store::LABEL;
use crate::workspace::labels;

/// The Secret with the signing key.
pub const SECRET: &str = "cleanroom-audit-signing";
/// The ConfigMap with the public key.
pub const PUBLIC: &str = "cleanroom-audit-pubkey";
/// The Secret's type: nothing else has it by accident.
pub const SECRET_TYPE: &str = "cleanroom.io/audit-signing-key";
/// Data key of the 32-byte Ed25519 seed in the Secret.
pub const SEED: &str = "ed25519-seed";
/// Data key of the public key (hex) in the ConfigMap and the Secret.
pub const PUBLIC_KEY: &str = "ed25519-public-key";
/// Values of [`LABEL`] on the two objects.
const SIGNING_KEY: &str = "signing-key";
const PUBLIC_KEY_LABEL: &str = "public-key";

/// Why there is no key to sign with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("audit signing key: kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(
        "refusing the Secret {SECRET} in namespace {namespace}: {problem}; it was not made by the operator, so heads are not signed until it is removed"
    )]
    Foreign { namespace: String, problem: String },
    #[error(
        "the ConfigMap {PUBLIC} in namespace {namespace} publishes the public key {published}, but the signing key's is {actual}: delete the ConfigMap to have it published again"
    )]
    Mismatch {
        namespace: String,
        published: String,
        actual: String,
    },
    #[error("audit signing key: {0}")]
    Random(String),
}

fn labelled(value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (LABEL.to_string(), value.to_string()),
    ])
}

/// The Secret that holds `signer`'s key.
pub fn new_secret(namespace: &str, signer: &Signer) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(SECRET.into()),
            namespace: Some(namespace.into()),
            labels: Some(labelled(SIGNING_KEY)),
            ..ObjectMeta::default()
        },
        type_: Some(SECRET_TYPE.into()),
        immutable: Some(true),
        data: Some(BTreeMap::from([
            (SEED.to_string(), ByteString(signer.seed().to_vec())),
            (
                PUBLIC_KEY.to_string(),
                ByteString(signer.public_hex().into_bytes()),
            ),
        ])),
        ..Secret::default()
    }
}

/// The key of a Secret the operator made, or what makes it someone else's.
pub fn signer_of(secret: &Secret) -> Result<Signer, String> {
    if secret.type_.as_deref() != Some(SECRET_TYPE) {
        return Err(format!("its type is {:?}, not {SECRET_TYPE}", secret.type_));
    }
    if secret.labels() != &labelled(SIGNING_KEY) {
        return Err(format!(
            "its labels are {:?}, not the operator's",
            secret.labels()
        ));
    }
    if secret.immutable != Some(true) {
        return Err("it is not immutable".into());
    }
    let data = secret.data.clone().unwrap_or_default();
    let seed: [u8; 32] = data
        .get(SEED)
        .and_then(|b| b.0.clone().try_into().ok())
        .ok_or(format!("it has no 32-byte {SEED}"))?;
    let signer = Signer::from_seed(&seed);
    let public = data.get(PUBLIC_KEY).map(|b| b.0.as_slice());
    if public != Some(signer.public_hex().as_bytes()) {
        return Err(format!("its {PUBLIC_KEY} is not the key of its {SEED}"));
    }
    Ok(signer)
}

/// The ConfigMap that publishes `public_hex`.
pub fn new_public_configmap(namespace: &str, public_hex: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(PUBLIC.into()),
            namespace: Some(namespace.into()),
            labels: Some(labelled(PUBLIC_KEY_LABEL)),
            ..ObjectMeta::default()
        },
        immutable: Some(true),
        data: Some(BTreeMap::from([(
            PUBLIC_KEY.to_string(),
            public_hex.to_string(),
        )])),
        ..ConfigMap::default()
    }
}

/// The public key a ConfigMap publishes.
pub fn published(cm: &ConfigMap) -> Option<String> {
    cm.data
        .as_ref()?
        .get(PUBLIC_KEY)
        .map(|k| k.trim().to_string())
}

/// The signing key of the ledger in `namespace`: read from its Secret, or
/// made and stored the first time; its public key published.
pub async fn ensure(client: &Client, namespace: &str) -> Result<Signer, Error> {
    let signer = signing_key(client, namespace).await?;
    publish(client, namespace, &signer).await?;
    Ok(signer)
}

async fn signing_key(client: &Client, namespace: &str) -> Result<Signer, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let foreign = |problem| Error::Foreign {
        namespace: namespace.into(),
        problem,
    };
    if let Some(secret) = api.get_opt(SECRET).await? {
        return signer_of(&secret).map_err(foreign);
    }
    let signer = Signer::generate().map_err(Error::Random)?;
    match api
        .create(&PostParams::default(), &new_secret(namespace, &signer))
        .await
    {
        Ok(_) => {
            info!(%namespace, public_key = %signer.public_hex(), "audit signing key created");
            Ok(signer)
        }
        // Another replica made one just now: use that.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            signer_of(&api.get(SECRET).await?).map_err(foreign)
        }
        Err(e) => Err(e.into()),
    }
}

async fn publish(client: &Client, namespace: &str, signer: &Signer) -> Result<(), Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let actual = signer.public_hex();
    let cm = match api.get_opt(PUBLIC).await? {
        Some(cm) => cm,
        None => match api
            .create(
                &PostParams::default(),
                &new_public_configmap(namespace, &actual),
            )
            .await
        {
            Ok(cm) => cm,
            Err(kube::Error::Api(s)) if s.code == 409 => api.get(PUBLIC).await?,
            Err(e) => return Err(e.into()),
        },
    };
    match published(&cm) {
        Some(p) if p == actual => Ok(()),
        other => Err(Error::Mismatch {
            namespace: namespace.into(),
            published: other.unwrap_or_default(),
            actual,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_s_secret_gives_back_its_key() {
        let signer = Signer::from_seed(&[7; 32]);
        let secret = new_secret("cleanroom-system", &signer);
        assert_eq!(secret.immutable, Some(true));
        assert_eq!(secret.type_.as_deref(), Some(SECRET_TYPE));
        let again = signer_of(&secret).expect("the operator's");
        assert_eq!(again.public_hex(), signer.public_hex());
        let cm = new_public_configmap("cleanroom-system", &signer.public_hex());
        assert_eq!(published(&cm), Some(signer.public_hex()));
        assert_eq!(cm.immutable, Some(true));
    }

    #[test]
    fn a_secret_that_is_not_the_operator_s_is_refused() {
        let signer = Signer::from_seed(&[7; 32]);
        let ours = new_secret("cleanroom-system", &signer);
        let mut opaque = ours.clone();
        opaque.type_ = Some("Opaque".into());
        assert!(signer_of(&opaque).expect_err("type").contains("type"));
        let mut unlabelled = ours.clone();
        unlabelled.metadata.labels = None;
        assert!(
            signer_of(&unlabelled)
                .expect_err("labels")
                .contains("labels")
        );
        let mut mutable = ours.clone();
        mutable.immutable = None;
        assert!(signer_of(&mutable).is_err());
        let mut short = ours.clone();
        short
            .data
            .get_or_insert_default()
            .insert(SEED.into(), ByteString(vec![1; 16]));
        assert!(signer_of(&short).expect_err("seed").contains(SEED));
        // A planted seed whose public key half does not match.
        let mut planted = ours;
        planted
            .data
            .get_or_insert_default()
            .insert(SEED.into(), ByteString(vec![9; 32]));
        assert!(signer_of(&planted).expect_err("pair").contains(PUBLIC_KEY));
    }
}
