//! What the airlock's request verbs do with the cluster, for exports and
//! imports alike: create in the caller's name, list, show and withdraw. The
//! two kinds differ only in what they ask for (see `airlock_view`).

use std::fmt::Debug;

use clap::Args;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::airlock_view::{AirlockView, Asked, ExportAsked, ImportAsked, list_table};
use super::common::{
    Output, OutputArg, api_error, block_on, caller, create_error, print, workspace_namespace,
};
use crate::api::{Export, Import};

/// An Export or an Import: namespaced in a workspace, shown as a view.
pub(super) trait AirlockObject:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
{
    /// What it asks for.
    type Asked: Asked;
    /// How the verbs show it.
    fn view(&self) -> AirlockView<Self::Asked>;
}

impl AirlockObject for Export {
    type Asked = ExportAsked;
    fn view(&self) -> AirlockView<ExportAsked> {
        self.into()
    }
}

impl AirlockObject for Import {
    type Asked = ImportAsked;
    fn view(&self) -> AirlockView<ImportAsked> {
        self.into()
    }
}

/// Where to list.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
#[group(required = true, multiple = false)]
pub(super) struct Scope {
    /// The scenario whose workspace to list.
    #[arg(long)]
    pub(super) scenario: Option<String>,
    /// Every workspace.
    #[arg(short = 'A', long)]
    pub(super) all_namespaces: bool,
}

#[derive(Args, Debug)]
pub(super) struct ListArgs {
    #[command(flatten)]
    pub(super) scope: Scope,
    #[command(flatten)]
    pub(super) output: OutputArg,
}

/// One export or import (each verb says which, and its help what follows).
#[derive(Args, Debug)]
pub(super) struct ShowArgs {
    /// Name of the Export or Import.
    pub(super) name: String,
    /// The scenario whose workspace it is in.
    #[arg(long)]
    pub(super) scenario: String,
    #[command(flatten)]
    pub(super) output: OutputArg,
}

/// One export or import to withdraw.
#[derive(Args, Debug)]
pub(super) struct WithdrawArgs {
    /// Name of the Export or Import.
    pub(super) name: String,
    /// The scenario whose workspace it is in.
    #[arg(long)]
    pub(super) scenario: String,
}

impl Scope {
    fn name(&self) -> String {
        self.scenario
            .as_deref()
            .map_or_else(|| "all workspaces".into(), workspace_namespace)
    }
}

fn noun<K: AirlockObject>() -> &'static str {
    <K::Asked as Asked>::NOUN
}

fn api<K: AirlockObject>(client: &Client, scenario: &str) -> Api<K> {
    Api::namespaced(client.clone(), &workspace_namespace(scenario))
}

/// Creates what `build` makes of the caller's name, in `scenario`'s
/// workspace, and shows it as the API server stored it.
pub(super) fn create<K: AirlockObject>(
    scenario: &str,
    output: Output,
    build: impl FnOnce(&str) -> K,
) -> anyhow::Result<()> {
    block_on(async move |client| {
        let requester = caller(&client).await?;
        let object = build(&requester);
        let created = api::<K>(&client, scenario)
            .create(&PostParams::default(), &object)
            .await
            .map_err(|e| create_error(e, noun::<K>(), &object.name_any(), scenario))?;
        print(&created.view().render(output)?)
    })
}

pub(super) fn list<K: AirlockObject>(scope: &Scope, output: Output) -> anyhow::Result<()> {
    block_on(async |client| {
        let api = match &scope.scenario {
            Some(s) => api::<K>(&client, s),
            None => Api::all(client.clone()),
        };
        let found = api
            .list(&ListParams::default())
            .await
            .map_err(|e| api_error(e, &format!("{}s in", noun::<K>()), &scope.name()))?;
        let views: Vec<_> = found.items.iter().map(K::view).collect();
        print(&list_table(&views, output)?)
    })
}

pub(super) fn show<K: AirlockObject>(
    name: &str,
    scenario: &str,
    output: Output,
) -> anyhow::Result<()> {
    block_on(async |client| {
        let object = api::<K>(&client, scenario)
            .get(name)
            .await
            .map_err(|e| api_error(e, noun::<K>(), name))?;
        print(&object.view().render(output)?)
    })
}

/// Deletes it and says `said` (what the operator does next).
pub(super) fn withdraw<K: AirlockObject>(
    name: &str,
    scenario: &str,
    said: String,
) -> anyhow::Result<()> {
    block_on(async |client| {
        api::<K>(&client, scenario)
            .delete(name, &DeleteParams::default())
            .await
            .map_err(|e| api_error(e, noun::<K>(), name))?;
        print(&said)
    })
}
