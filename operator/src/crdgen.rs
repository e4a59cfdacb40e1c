//! Rendering the CRDs of [`crate::api`] as YAML: to stdout for `cleanroom crd`,
//! or one file per kind into `crds/` (a test fails when `crds/` is stale).

use std::path::{Path, PathBuf};

use anyhow::Context;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::api;

/// The command that regenerates `crds/`, run from the repository root.
pub const REGENERATE: &str = "cargo run -p cleanroom -- crd --out-dir crds";

/// File name of a CRD in `crds/`: `<group>_<plural>.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// One CRD as a YAML document with a header that says how it was made.
pub fn render(crd: &CustomResourceDefinition) -> anyhow::Result<String> {
    let body =
        serde_yaml::to_string(crd).with_context(|| format!("serializing {}", file_name(crd)))?;
    Ok(format!(
        "# Generated from the Rust types in operator/src/api/ by:\n\
         #   {REGENERATE}\n\
         # Do not edit by hand: change the types and regenerate (a unit test fails on drift).\n\
         ---\n\
         {body}"
    ))
}

/// All CRDs as one multi-document YAML stream.
pub fn render_all() -> anyhow::Result<String> {
    let mut out = String::new();
    for crd in api::crds() {
        out.push_str(&render(&crd)?);
    }
    Ok(out)
}

/// Write every CRD into `dir` (created if missing); returns the paths written.
pub fn write_all(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for crd in api::crds() {
        let path = dir.join(file_name(&crd));
        std::fs::write(&path, render(&crd)?)
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn crds_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("crds")
    }

    #[test]
    fn crds_directory_matches_the_types() {
        for crd in api::crds() {
            let name = file_name(&crd);
            let expected = render(&crd).expect("renders");
            let found = std::fs::read_to_string(crds_dir().join(&name)).unwrap_or_default();
            assert!(
                found == expected,
                "crds/{name} is stale or missing: run `{REGENERATE}` and commit the result"
            );
        }
    }

    #[test]
    fn crds_are_in_one_group_with_status_and_printer_columns() {
        let crds = api::crds();
        assert_eq!(crds.len(), 6);
        for crd in &crds {
            assert_eq!(crd.spec.group, api::GROUP);
            // The airlock's kinds live in the workspace namespace, where RBAC
            // decides who may ask and who may review.
            let scope = match crd.spec.names.kind.as_str() {
                "Export" | "Review" | "Import" => "Namespaced",
                _ => "Cluster",
            };
            assert_eq!(crd.spec.scope, scope, "{}", crd.spec.names.kind);
            assert_eq!(
                crd.spec.names.categories.as_deref(),
                Some(&["cleanroom".to_string()][..])
            );
            assert_eq!(crd.spec.versions.len(), 1);
            let version = &crd.spec.versions[0];
            assert_eq!(version.name, api::VERSION);
            assert!(version.served && version.storage);
            // A Review is a decision: it has no status of its own.
            let has_status = crd.spec.names.kind != "Review";
            assert_eq!(
                version
                    .subresources
                    .as_ref()
                    .is_some_and(|s| s.status.is_some()),
                has_status,
                "status subresource on {}",
                crd.spec.names.kind
            );
            let columns: Vec<&str> = version
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| c.name.as_str())
                .collect();
            let first = if has_status { "Phase" } else { "Export" };
            assert_eq!(columns.first(), Some(&first));
            assert_eq!(columns.last(), Some(&"Age"));
        }
        let short = |i: usize| crds[i].spec.names.short_names.clone().unwrap_or_default();
        assert_eq!(short(0), vec!["pds"]);
        assert_eq!(short(1), vec!["authz"]);
        assert_eq!(short(2), vec!["scn"]);
        let scenario_columns: Vec<String> = crds[2].spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(
            scenario_columns,
            ["Phase", "Authorization", "Expires", "Age"]
        );
    }

    /// Keys a structural schema must not contain anywhere.
    const FORBIDDEN: [&str; 6] = [
        "$ref",
        "$schema",
        "definitions",
        "$defs",
        "const",
        "additionalItems",
    ];

    /// Walk a schema and report what a real API server would refuse: forbidden
    /// keys, `oneOf`/`anyOf`/`allOf` branches that declare types or
    /// descriptions (structural schemas allow only value validations there),
    /// nodes without a type, and non-boolean `exclusiveMinimum`/`Maximum`.
    fn structural_problems(path: &str, node: &Value, out: &mut Vec<String>) {
        let Value::Object(map) = node else { return };
        for key in FORBIDDEN {
            if map.contains_key(key) {
                out.push(format!("{path}: has {key}"));
            }
        }
        for key in ["exclusiveMinimum", "exclusiveMaximum"] {
            if map.get(key).is_some_and(|v| !v.is_boolean()) {
                out.push(format!("{path}: {key} must be a boolean in OpenAPI v3.0"));
            }
        }
        let preserves = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        let int_or_string = map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
        if !map.contains_key("type") && !preserves && !int_or_string {
            out.push(format!("{path}: no type"));
        }
        if map.get("type").is_some_and(|t| !t.is_string()) {
            out.push(format!("{path}: type must be a single string"));
        }
        for key in ["oneOf", "anyOf", "allOf"] {
            if let Some(Value::Array(branches)) = map.get(key) {
                for (i, branch) in branches.iter().enumerate() {
                    for declared in [
                        "type",
                        "description",
                        "default",
                        "properties",
                        "items",
                        "nullable",
                    ] {
                        if branch.get(declared).is_some() {
                            out.push(format!("{path}.{key}[{i}]: declares {declared}"));
                        }
                    }
                }
            }
        }
        if let Some(Value::Object(properties)) = map.get("properties") {
            for (name, child) in properties {
                structural_problems(&format!("{path}.{name}"), child, out);
            }
        }
        if let Some(items) = map.get("items") {
            structural_problems(&format!("{path}[]"), items, out);
        }
        if let Some(additional @ Value::Object(_)) = map.get("additionalProperties") {
            structural_problems(&format!("{path}{{}}"), additional, out);
        }
    }

    fn schema_of(crd: &CustomResourceDefinition) -> Value {
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("CRD has a schema");
        serde_json::to_value(schema).expect("schema serializes")
    }

    #[test]
    fn schemas_are_structural() {
        for crd in api::crds() {
            // Round trip through YAML, as kubectl apply would read it.
            let yaml = render(&crd).expect("renders");
            let parsed: CustomResourceDefinition =
                serde_yaml::from_str(&yaml).expect("the YAML reads back");
            assert_eq!(parsed, crd);
            let mut problems = Vec::new();
            structural_problems(&crd.spec.names.kind, &schema_of(&crd), &mut problems);
            assert!(problems.is_empty(), "{problems:#?}");
        }
    }

    /// Collect every list and string and the bounds CEL cost estimation needs.
    fn unbounded(path: &str, node: &Value, out: &mut Vec<String>) {
        let Value::Object(map) = node else { return };
        match map.get("type").and_then(Value::as_str) {
            Some("array") if !map.contains_key("maxItems") => {
                out.push(format!("{path}: no maxItems"))
            }
            Some("string")
                if !map.contains_key("maxLength")
                    && !map.contains_key("enum")
                    && map.get("format").and_then(Value::as_str) != Some("date-time") =>
            {
                out.push(format!("{path}: no maxLength"))
            }
            _ => {}
        }
        if let Some(Value::Object(properties)) = map.get("properties") {
            for (name, child) in properties {
                unbounded(&format!("{path}.{name}"), child, out);
            }
        }
        if let Some(items) = map.get("items") {
            unbounded(&format!("{path}[]"), items, out);
        }
    }

    #[test]
    fn spec_strings_and_lists_are_bounded_for_cel_cost() {
        for crd in api::crds() {
            let schema = schema_of(&crd);
            let mut problems = Vec::new();
            unbounded("spec", &schema["properties"]["spec"], &mut problems);
            assert!(
                problems.is_empty(),
                "{}: {problems:#?}",
                crd.spec.names.kind
            );
        }
    }

    #[test]
    fn render_all_is_a_stream_of_every_crd() {
        let all = render_all().expect("renders");
        let documents: Vec<CustomResourceDefinition> = all
            .split("\n---\n")
            .skip(1)
            .map(|doc| serde_yaml::from_str(doc).expect("each document is a CRD"))
            .collect();
        assert_eq!(documents, api::crds());
    }

    #[test]
    fn write_all_writes_one_file_per_kind() {
        let dir = std::env::temp_dir().join(format!("cleanroom-crdgen-{}", std::process::id()));
        let written = write_all(&dir).expect("writes");
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(
            names,
            [
                "cleanroom.io_datasets.yaml",
                "cleanroom.io_authorizations.yaml",
                "cleanroom.io_scenarios.yaml",
                "cleanroom.io_exports.yaml",
                "cleanroom.io_reviews.yaml",
                "cleanroom.io_imports.yaml"
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
