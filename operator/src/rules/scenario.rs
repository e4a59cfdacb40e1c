//! Checks of a Scenario against its Authorization and the dataset catalogue
//! (一场景一授权, minimum necessary data, rules never weaker than the
//! dataset's, people and resources within the authorization).

use super::quantity::Amount;
use super::{Rejection, list};
use crate::api::dataset::Classification;
use crate::api::{Authorization, Dataset, MaskingRule, PositiveQuantity, Scenario, Time};
use crate::conditions::reasons;

/// All problems of a scenario under `authorization`, with `catalogue` the
/// Datasets that exist, in field order.
pub fn scenario_problems(
    scenario: &Scenario,
    authorization: &Authorization,
    catalogue: &[Dataset],
) -> Vec<Rejection> {
    let mut problems = Vec::new();
    let authorization_name = authorization.metadata.name.as_deref().unwrap_or_default();
    if scenario.spec.authorization != authorization_name {
        problems.push(Rejection::new(
            "spec.authorization",
            reasons::AUTHORIZATION_MISMATCH,
            format!(
                "the scenario names authorization {:?} but was checked against {:?}",
                scenario.spec.authorization, authorization_name
            ),
        ));
        return problems;
    }
    check_data(scenario, authorization, catalogue, &mut problems);
    check_image(scenario, authorization, &mut problems);
    check_reviewed_output(scenario, authorization, catalogue, &mut problems);
    check_members(scenario, authorization, &mut problems);
    check_resources(scenario, authorization, &mut problems);
    if let Some(until) = &scenario.spec.valid_until
        && *until > authorization.spec.valid_until
    {
        problems.push(Rejection::new(
            "spec.validUntil",
            reasons::OUTLIVES_AUTHORIZATION,
            format!(
                "validUntil {} is after the authorization's validUntil {}: set it no later, or \
                 omit it to end with the authorization",
                until.0, authorization.spec.valid_until.0
            ),
        ));
    }
    problems
}

/// The first problem of a scenario, if any (see [`scenario_problems`]).
pub fn validate_scenario(
    scenario: &Scenario,
    authorization: &Authorization,
    catalogue: &[Dataset],
) -> Result<(), Rejection> {
    scenario_problems(scenario, authorization, catalogue)
        .into_iter()
        .next()
        .map_or(Ok(()), Err)
}

fn check_data(
    scenario: &Scenario,
    authorization: &Authorization,
    catalogue: &[Dataset],
    out: &mut Vec<Rejection>,
) {
    let authorization_name = authorization.metadata.name.as_deref().unwrap_or_default();
    for (i, request) in scenario.spec.data.iter().enumerate() {
        let field = format!("spec.data[{i}]");
        if !authorization.spec.datasets.contains(&request.dataset) {
            out.push(Rejection::new(
                format!("{field}.dataset"),
                reasons::DATASET_NOT_AUTHORIZED,
                format!(
                    "dataset {:?} is not among the datasets of authorization {authorization_name:?} \
                     ({}): remove it, or have the bureau extend the authorization",
                    request.dataset,
                    list(&authorization.spec.datasets)
                ),
            ));
            continue;
        }
        let Some(dataset) = catalogue
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(request.dataset.as_str()))
        else {
            out.push(Rejection::new(
                format!("{field}.dataset"),
                reasons::DATASET_NOT_FOUND,
                format!(
                    "dataset {:?} is not in the catalogue: create the Dataset or fix the name",
                    request.dataset
                ),
            ));
            continue;
        };
        let known = || list(dataset.spec.columns.iter().map(|c| c.name.as_str()));
        for (j, name) in request.columns.iter().enumerate() {
            let Some(column) = dataset.spec.column(name) else {
                out.push(Rejection::new(
                    format!("{field}.columns[{j}]"),
                    reasons::COLUMN_NOT_FOUND,
                    format!(
                        "column {name:?} does not exist in dataset {:?}; its columns are: {}",
                        request.dataset,
                        known()
                    ),
                ));
                continue;
            };
            let has_override = request.rules.iter().any(|r| &r.column == name);
            if !has_override && column.sensitivity.is_personal() && column.rule == MaskingRule::Keep
            {
                out.push(Rejection::new(
                    format!("{field}.columns[{j}]"),
                    reasons::PERSONAL_DATA_IN_CLEAR,
                    format!(
                        "column {name:?} holds personal information ({:?}) and its dataset default \
                         is keep: add a rule for it (mask, generalize, hash, redact or drop)",
                        column.sensitivity
                    ),
                ));
            }
        }
        for (k, override_) in request.rules.iter().enumerate() {
            let rule_field = format!("{field}.rules[{k}]");
            if !request.columns.contains(&override_.column) {
                out.push(Rejection::new(
                    format!("{rule_field}.column"),
                    reasons::COLUMN_NOT_FOUND,
                    format!("column {:?} has a rule but is not listed in columns: list it or remove the rule", override_.column),
                ));
                continue;
            }
            let Some(column) = dataset.spec.column(&override_.column) else {
                // Already reported for columns[].
                continue;
            };
            let rule = &override_.rule;
            if !rule.applies_to(column.type_) {
                out.push(Rejection::new(
                    format!("{rule_field}.rule"),
                    reasons::RULE_NOT_APPLICABLE,
                    format!(
                        "rule {} does not fit column {:?} of type {:?}: mask and \
                         generalize.prefix are for strings, noise and generalize.bucket for \
                         numbers, generalize.truncate for dates",
                        rule.kind(),
                        column.name,
                        column.type_
                    ),
                ));
            } else if column.sensitivity.is_personal() && *rule == MaskingRule::Keep {
                out.push(Rejection::new(
                    format!("{rule_field}.rule"),
                    reasons::PERSONAL_DATA_IN_CLEAR,
                    format!(
                        "column {:?} holds personal information ({:?}) and is never delivered \
                         in clear: use mask, generalize, hash, redact or drop",
                        column.name, column.sensitivity
                    ),
                ));
            } else if !rule.is_at_least_as_strong_as(&column.rule) {
                out.push(Rejection::new(
                    format!("{rule_field}.rule"),
                    reasons::RULE_TOO_WEAK,
                    format!(
                        "rule {} for column {:?} is weaker than the dataset default {}: use \
                         the default or a stronger rule (keep < mask = generalize = noise < hash \
                         < redact < drop; within one kind, keep fewer characters, use wider \
                         buckets, coarser dates or more noise)",
                        rule.kind(),
                        column.name,
                        column.rule.kind()
                    ),
                ));
            }
        }
    }
}

/// An authorization with approved images admits only those, exactly as
/// written: the same digest under another repository, or with a tag beside
/// it, is another image. An empty list approves no particular image (no
/// allow-list yet).
fn check_image(scenario: &Scenario, authorization: &Authorization, out: &mut Vec<Rejection>) {
    let approved = &authorization.spec.approved_images;
    let image = &scenario.spec.workspace.image;
    if approved.is_empty() || approved.iter().any(|a| &a.image == image) {
        return;
    }
    out.push(Rejection::new(
        "spec.workspace.image",
        reasons::IMAGE_NOT_APPROVED,
        format!(
            "image {image:?} is not among the images approved by authorization {:?} ({}): use \
             one of them, written exactly (pinned by digest, no tag), or have the algorithm \
             reviewed and added to spec.approvedImages",
            authorization.metadata.name.as_deref().unwrap_or_default(),
            list(approved.iter().map(|a| a.image.as_str()))
        ),
    ));
}

/// Under `review.requireReviewedOutput`, a workspace using a `Core` dataset
/// is non-interactive: an interactive session is a way out nobody reviews.
fn check_reviewed_output(
    scenario: &Scenario,
    authorization: &Authorization,
    catalogue: &[Dataset],
    out: &mut Vec<Rejection>,
) {
    if !authorization.spec.review.require_reviewed_output || !scenario.spec.workspace.interactive {
        return;
    }
    let core: Vec<&str> = scenario
        .spec
        .data
        .iter()
        .filter(|request| {
            catalogue.iter().any(|d| {
                d.metadata.name.as_deref() == Some(request.dataset.as_str())
                    && d.spec.classification == Classification::Core
            })
        })
        .map(|request| request.dataset.as_str())
        .collect();
    if core.is_empty() {
        return;
    }
    out.push(Rejection::new(
        "spec.workspace.interactive",
        reasons::REVIEWED_OUTPUT_REQUIRED,
        format!(
            "authorization {:?} requires reviewed output for Core data and the scenario uses \
             Core dataset(s) {}: set workspace.interactive to false, so that results leave \
             only through a reviewed Export",
            authorization.metadata.name.as_deref().unwrap_or_default(),
            list(core)
        ),
    ));
}

fn check_members(scenario: &Scenario, authorization: &Authorization, out: &mut Vec<Rejection>) {
    let allowed = &authorization.spec.members;
    for (kind, wanted, allowed) in [
        ("users", &scenario.spec.members.users, &allowed.users),
        ("groups", &scenario.spec.members.groups, &allowed.groups),
    ] {
        for (i, name) in wanted.iter().enumerate() {
            if !allowed.contains(name) {
                out.push(Rejection::new(
                    format!("spec.members.{kind}[{i}]"),
                    reasons::MEMBER_NOT_AUTHORIZED,
                    format!(
                        "{name:?} is not among the authorization's {kind} ({}): only people named \
                         on the authorization may enter its workspaces",
                        list(allowed)
                    ),
                ));
            }
        }
    }
}

/// The scenario's (cpu, memory, scratch) with their field paths.
fn requests(scenario: &Scenario) -> [(&'static str, &PositiveQuantity); 3] {
    let workspace = &scenario.spec.workspace;
    [
        ("spec.workspace.resources.cpu", &workspace.resources.cpu),
        (
            "spec.workspace.resources.memory",
            &workspace.resources.memory,
        ),
        ("spec.workspace.scratch", &workspace.scratch),
    ]
}

/// The authorization's (cpu, memory, storage) with their names.
fn ceilings(authorization: &Authorization) -> [(&'static str, &PositiveQuantity); 3] {
    let quota = &authorization.spec.quota;
    [
        ("quota.cpu", &quota.cpu),
        ("quota.memory", &quota.memory),
        ("quota.storage", &quota.storage),
    ]
}

fn parsed(field: &str, quantity: &PositiveQuantity, out: &mut Vec<Rejection>) -> Option<Amount> {
    match quantity.amount() {
        Ok(amount) => Some(amount),
        Err(e) => {
            out.push(Rejection::new(
                field,
                reasons::INVALID_QUANTITY,
                e.to_string(),
            ));
            None
        }
    }
}

fn check_resources(scenario: &Scenario, authorization: &Authorization, out: &mut Vec<Rejection>) {
    for ((field, request), (ceiling_name, ceiling)) in
        requests(scenario).into_iter().zip(ceilings(authorization))
    {
        let wanted = parsed(field, request, out);
        let limit = parsed(&format!("authorization spec.{ceiling_name}"), ceiling, out);
        if let (Some(wanted), Some(limit)) = (wanted, limit)
            && wanted > limit
        {
            out.push(Rejection::new(
                field,
                reasons::QUOTA_EXCEEDED,
                format!(
                    "{request} is more than the authorization's {ceiling_name} of {ceiling}: ask \
                     for less, or have the bureau raise the quota"
                ),
            ));
        }
    }
}

/// The scenario count: a new scenario is accepted only while fewer than
/// `quota.scenarios` others are alive under the authorization
/// (`live_scenarios` excludes the one being checked).
pub fn check_scenario_count(
    authorization: &Authorization,
    live_scenarios: usize,
) -> Result<(), Rejection> {
    let limit = usize::try_from(authorization.spec.quota.scenarios).unwrap_or(0);
    if live_scenarios < limit {
        Ok(())
    } else {
        Err(Rejection::new(
            "spec.authorization",
            reasons::SCENARIO_LIMIT_REACHED,
            format!(
                "authorization {:?} already has {live_scenarios} live scenarios and its quota \
                 allows {limit}: close one, or have the bureau raise quota.scenarios",
                authorization.metadata.name.as_deref().unwrap_or_default()
            ),
        ))
    }
}

/// The quota shared by all scenarios of an authorization: the scenario's cpu,
/// memory and scratch plus those of `others` (the live scenarios of the same
/// authorization; the scenario itself and scenarios of other authorizations
/// are skipped) stay within the authorization's quota.
pub fn check_aggregate_quota(
    scenario: &Scenario,
    authorization: &Authorization,
    others: &[impl std::borrow::Borrow<Scenario>],
) -> Result<(), Rejection> {
    let mut problems = Vec::new();
    let peers: Vec<&Scenario> = others
        .iter()
        .map(|o| o.borrow())
        .filter(|o| {
            o.spec.authorization == scenario.spec.authorization
                && o.metadata.name != scenario.metadata.name
        })
        .collect();
    for (index, (field, request)) in requests(scenario).into_iter().enumerate() {
        let (ceiling_name, ceiling) = ceilings(authorization)[index];
        let Some(mut total) = parsed(field, request, &mut problems) else {
            continue;
        };
        for peer in &peers {
            // A peer with an unparseable quantity was rejected itself and holds nothing.
            if let Ok(amount) = requests(peer)[index].1.amount() {
                total = total.checked_add(amount).unwrap_or(total);
            }
        }
        let Some(limit) = parsed(
            &format!("authorization spec.{ceiling_name}"),
            ceiling,
            &mut problems,
        ) else {
            continue;
        };
        if total > limit {
            problems.push(Rejection::new(
                field,
                reasons::QUOTA_EXCEEDED,
                format!(
                    "with the {} other live scenarios this makes {total} in all, more than the \
                     authorization's {ceiling_name} of {ceiling}: ask for less, close a \
                     scenario, or have the bureau raise the quota",
                    peers.len()
                ),
            ));
        }
    }
    problems.into_iter().next().map_or(Ok(()), Err)
}

/// When the scenario ends: the earlier of its own validUntil (if any) and its
/// authorization's.
pub fn effective_expiry(scenario: &Scenario, authorization: &Authorization) -> Time {
    match &scenario.spec.valid_until {
        Some(own) if *own < authorization.spec.valid_until => own.clone(),
        _ => authorization.spec.valid_until.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::scenario::ColumnRule;
    use crate::api::{DatePart, Generalization};
    use crate::fixtures;
    use k8s_openapi::jiff::Timestamp;

    fn problems(scenario: &Scenario) -> Vec<Rejection> {
        scenario_problems(scenario, &fixtures::authorization(), &fixtures::catalogue())
    }

    fn only(scenario: &Scenario) -> Rejection {
        let mut all = problems(scenario);
        assert_eq!(all.len(), 1, "exactly one problem expected: {all:#?}");
        all.remove(0)
    }

    fn override_rule(scenario: &mut Scenario, column: &str, rule: MaskingRule) {
        let request = &mut scenario.spec.data[0];
        if !request.columns.iter().any(|c| c == column) {
            request.columns.push(column.to_string());
        }
        request.rules.retain(|r| r.column != column);
        request.rules.push(ColumnRule {
            column: column.to_string(),
            rule,
        });
    }

    #[test]
    fn the_example_scenario_is_valid() {
        assert_eq!(problems(&fixtures::scenario()), vec![]);
        assert_eq!(
            validate_scenario(
                &fixtures::scenario(),
                &fixtures::authorization(),
                &fixtures::catalogue()
            ),
            Ok(())
        );
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn approving(images: &[&str]) -> Authorization {
        let mut authorization = fixtures::authorization();
        authorization.spec.approved_images = images
            .iter()
            .map(|image| crate::api::ApprovedImage {
                image: (*image).to_string(),
                review: "AR-2026-001".into(),
            })
            .collect();
        authorization
    }

    fn image_problems(image: &str, authorization: &Authorization) -> Vec<Rejection> {
        let mut scenario = fixtures::scenario();
        scenario.spec.workspace.image = image.into();
        scenario_problems(&scenario, authorization, &fixtures::catalogue())
    }

    #[test]
    fn scenario_with_an_approved_image_is_valid() {
        let approved = format!("registry.example.com/acme/notebook@{DIGEST}");
        let authorization = approving(&[&approved]);
        assert_eq!(image_problems(&approved, &authorization), vec![]);
    }

    #[test]
    fn scenario_with_an_unapproved_image_is_rejected_naming_it() {
        let approved = format!("registry.example.com/acme/notebook@{DIGEST}");
        let authorization = approving(&[&approved]);
        for image in [
            "registry.example.com/acme/notebook:1.4".to_string(),
            // The approved digest under another repository.
            format!("registry.example.com/evil/notebook@{DIGEST}"),
            // A tag beside the digest.
            format!("registry.example.com/acme/notebook:1.4@{DIGEST}"),
        ] {
            let all = image_problems(&image, &authorization);
            assert_eq!(all.len(), 1, "{image}: {all:#?}");
            assert_eq!(all[0].reason, reasons::IMAGE_NOT_APPROVED);
            assert_eq!(all[0].field, "spec.workspace.image");
            assert!(all[0].message.contains(&image), "{}", all[0].message);
            assert!(all[0].message.contains(&approved), "{}", all[0].message);
        }
    }

    #[test]
    fn authorization_without_approved_images_allows_any_image() {
        let authorization = approving(&[]);
        assert_eq!(
            image_problems("registry.example.com/acme/notebook:1.4", &authorization),
            vec![]
        );
    }

    fn core_catalogue() -> Vec<Dataset> {
        let mut dataset = fixtures::dataset();
        dataset.spec.classification = Classification::Core;
        vec![dataset]
    }

    fn requiring_reviewed_output() -> Authorization {
        let mut authorization = fixtures::authorization();
        authorization.spec.review.require_reviewed_output = true;
        authorization
    }

    #[test]
    fn interactive_scenario_on_core_data_is_rejected_when_reviewed_output_is_required() {
        let mut scenario = fixtures::scenario();
        scenario.spec.workspace.interactive = true;
        let all = scenario_problems(&scenario, &requiring_reviewed_output(), &core_catalogue());
        assert_eq!(all.len(), 1, "{all:#?}");
        assert_eq!(all[0].reason, reasons::REVIEWED_OUTPUT_REQUIRED);
        assert_eq!(all[0].field, "spec.workspace.interactive");
        assert!(
            all[0].message.contains(&scenario.spec.data[0].dataset),
            "{}",
            all[0].message
        );
    }

    #[test]
    fn reviewed_output_rule_spares_non_interactive_workspaces_and_other_data() {
        let mut scenario = fixtures::scenario();
        scenario.spec.workspace.interactive = false;
        assert_eq!(
            scenario_problems(&scenario, &requiring_reviewed_output(), &core_catalogue()),
            vec![]
        );
        scenario.spec.workspace.interactive = true;
        // Not Core.
        assert_ne!(
            fixtures::dataset().spec.classification,
            Classification::Core
        );
        assert_eq!(
            scenario_problems(
                &scenario,
                &requiring_reviewed_output(),
                &fixtures::catalogue()
            ),
            vec![]
        );
        // Not required.
        assert_eq!(
            scenario_problems(&scenario, &fixtures::authorization(), &core_catalogue()),
            vec![]
        );
    }

    #[test]
    fn scenario_dataset_outside_authorization_is_rejected() {
        let mut scenario = fixtures::scenario();
        scenario.spec.data[0].dataset = "tax-records".into();
        let rejection = only(&scenario);
        assert_eq!(rejection.reason, reasons::DATASET_NOT_AUTHORIZED);
        assert_eq!(rejection.field, "spec.data[0].dataset");
        assert!(
            rejection.message.contains("population-register"),
            "{}",
            rejection.message
        );
    }

    #[test]
    fn scenario_dataset_missing_from_catalogue_is_rejected() {
        let scenario = fixtures::scenario();
        let rejection = validate_scenario(&scenario, &fixtures::authorization(), &[]).err();
        assert_eq!(
            rejection.map(|r| r.reason),
            Some(reasons::DATASET_NOT_FOUND)
        );
    }

    #[test]
    fn scenario_column_outside_dataset_is_rejected() {
        let mut scenario = fixtures::scenario();
        scenario.spec.data[0].columns.push("salary".into());
        let rejection = only(&scenario);
        assert_eq!(rejection.reason, reasons::COLUMN_NOT_FOUND);
        assert_eq!(rejection.field, "spec.data[0].columns[3]");
        assert!(
            rejection.message.contains("resident_id"),
            "lists the real columns: {}",
            rejection.message
        );
    }

    #[test]
    fn scenario_rule_for_unlisted_column_is_rejected() {
        let mut scenario = fixtures::scenario();
        scenario.spec.data[0].rules.push(ColumnRule {
            column: "birth_date".into(),
            rule: MaskingRule::Drop,
        });
        assert_eq!(only(&scenario).reason, reasons::COLUMN_NOT_FOUND);
    }

    #[test]
    fn scenario_rule_weaker_than_dataset_default_is_rejected() {
        let mut scenario = fixtures::scenario();
        // resident_id defaults to hash; mask is weaker.
        override_rule(
            &mut scenario,
            "resident_id",
            MaskingRule::Mask {
                keep_first: 6,
                keep_last: 0,
            },
        );
        let rejection = only(&scenario);
        assert_eq!(rejection.reason, reasons::RULE_TOO_WEAK);
        assert!(rejection.field.ends_with(".rule"), "{}", rejection.field);
    }

    #[test]
    fn scenario_rule_stronger_than_dataset_default_is_accepted() {
        let mut scenario = fixtures::scenario();
        override_rule(&mut scenario, "resident_id", MaskingRule::Drop);
        override_rule(&mut scenario, "mobile", MaskingRule::redact());
        assert_eq!(problems(&scenario), vec![]);
    }

    #[test]
    fn scenario_rule_with_looser_parameters_of_the_same_kind_is_rejected() {
        let mut scenario = fixtures::scenario();
        // mobile defaults to mask keepFirst 3, keepLast 4.
        override_rule(
            &mut scenario,
            "mobile",
            MaskingRule::Mask {
                keep_first: 3,
                keep_last: 8,
            },
        );
        assert_eq!(only(&scenario).reason, reasons::RULE_TOO_WEAK);
    }

    #[test]
    fn scenario_keep_on_personal_column_is_rejected() {
        let mut scenario = fixtures::scenario();
        override_rule(&mut scenario, "mobile", MaskingRule::Keep);
        assert_eq!(only(&scenario).reason, reasons::PERSONAL_DATA_IN_CLEAR);
    }

    #[test]
    fn scenario_column_whose_dataset_default_is_keep_on_personal_data_is_rejected() {
        let mut catalogue = fixtures::catalogue();
        catalogue[0].spec.columns[0].rule = MaskingRule::Keep;
        let rejection = validate_scenario(
            &fixtures::scenario(),
            &fixtures::authorization(),
            &catalogue,
        )
        .err();
        assert_eq!(
            rejection.map(|r| r.reason),
            Some(reasons::PERSONAL_DATA_IN_CLEAR)
        );
    }

    #[test]
    fn scenario_keep_on_a_column_that_is_not_personal_is_accepted_when_not_weaker() {
        let mut scenario = fixtures::scenario();
        // district is QuasiIdentifier with default keep.
        override_rule(&mut scenario, "district", MaskingRule::Keep);
        assert_eq!(problems(&scenario), vec![]);
    }

    #[test]
    fn scenario_rule_that_does_not_fit_the_column_type_is_rejected() {
        let mut scenario = fixtures::scenario();
        override_rule(
            &mut scenario,
            "birth_date",
            MaskingRule::Generalize {
                to: Generalization::Truncate(DatePart::Year),
            },
        );
        assert_eq!(problems(&scenario), vec![], "truncate fits a date");
        override_rule(
            &mut scenario,
            "birth_date",
            MaskingRule::Noise { bound: 3.0 },
        );
        assert_eq!(only(&scenario).reason, reasons::RULE_NOT_APPLICABLE);
    }

    #[test]
    fn scenario_member_outside_authorization_is_rejected() {
        let mut scenario = fixtures::scenario();
        scenario
            .spec
            .members
            .users
            .push("mallory@example.com".into());
        scenario.spec.members.groups.push("everyone".into());
        let all = problems(&scenario);
        assert_eq!(all.len(), 2, "{all:#?}");
        assert!(
            all.iter()
                .all(|r| r.reason == reasons::MEMBER_NOT_AUTHORIZED)
        );
        assert_eq!(all[0].field, "spec.members.users[1]");
        assert_eq!(all[1].field, "spec.members.groups[0]");
    }

    #[test]
    fn scenario_resources_above_quota_are_rejected() {
        let mut scenario = fixtures::scenario();
        scenario.spec.workspace.resources.cpu = PositiveQuantity::new("16500m");
        let rejection = only(&scenario);
        assert_eq!(rejection.reason, reasons::QUOTA_EXCEEDED);
        assert_eq!(rejection.field, "spec.workspace.resources.cpu");

        let mut scenario = fixtures::scenario();
        scenario.spec.workspace.scratch = PositiveQuantity::new("2Ti");
        assert_eq!(only(&scenario).field, "spec.workspace.scratch");

        let mut scenario = fixtures::scenario();
        scenario.spec.workspace.resources.memory = PositiveQuantity::new("64Gi");
        assert_eq!(problems(&scenario), vec![], "exactly the quota is allowed");
        scenario.spec.workspace.resources.memory = PositiveQuantity::new("65Gi");
        assert_eq!(only(&scenario).field, "spec.workspace.resources.memory");
    }

    #[test]
    fn scenario_with_unparseable_quantity_is_rejected() {
        let mut scenario = fixtures::scenario();
        scenario.spec.workspace.resources.memory = PositiveQuantity::new("8GB");
        assert_eq!(only(&scenario).reason, reasons::INVALID_QUANTITY);
    }

    #[test]
    fn scenario_outliving_its_authorization_is_rejected() {
        let mut scenario = fixtures::scenario();
        let until = fixtures::authorization().spec.valid_until;
        scenario.spec.valid_until = Some(until.clone());
        assert_eq!(problems(&scenario), vec![], "ending together is allowed");
        scenario.spec.valid_until = Some(Time(
            Timestamp::from_second(until.0.as_second() + 1).unwrap_or(until.0),
        ));
        let rejection = only(&scenario);
        assert_eq!(rejection.reason, reasons::OUTLIVES_AUTHORIZATION);
        assert_eq!(rejection.field, "spec.validUntil");
    }

    #[test]
    fn scenario_checked_against_another_authorization_is_rejected() {
        let mut scenario = fixtures::scenario();
        scenario.spec.authorization = "someone-else".into();
        assert_eq!(only(&scenario).reason, reasons::AUTHORIZATION_MISMATCH);
    }

    #[test]
    fn scenario_count_is_limited_by_the_quota() {
        let authorization = fixtures::authorization();
        assert_eq!(authorization.spec.quota.scenarios, 5);
        assert!(check_scenario_count(&authorization, 0).is_ok());
        assert!(check_scenario_count(&authorization, 4).is_ok());
        let rejection = check_scenario_count(&authorization, 5).err();
        assert_eq!(
            rejection.map(|r| r.reason),
            Some(reasons::SCENARIO_LIMIT_REACHED)
        );
    }

    #[test]
    fn scenario_count_of_zero_allows_none() {
        let mut authorization = fixtures::authorization();
        authorization.spec.quota.scenarios = 0;
        assert!(check_scenario_count(&authorization, 0).is_err());
    }

    #[test]
    fn scenarios_together_must_fit_the_quota() {
        let authorization = fixtures::authorization();
        let scenario = fixtures::scenario(); // 4 cpu of 16
        let peer = |name: &str| {
            let mut s = fixtures::scenario();
            s.metadata.name = Some(name.into());
            s
        };
        let three = vec![peer("a"), peer("b"), peer("c")];
        assert_eq!(
            check_aggregate_quota(&scenario, &authorization, &three),
            Ok(())
        );
        let four = vec![peer("a"), peer("b"), peer("c"), peer("d")];
        let rejection = check_aggregate_quota(&scenario, &authorization, &four).err();
        assert_eq!(
            rejection.as_ref().map(|r| r.reason),
            Some(reasons::QUOTA_EXCEEDED)
        );
        assert_eq!(
            rejection.map(|r| r.field),
            Some("spec.workspace.resources.cpu".to_string())
        );
        // The scenario itself, and scenarios of other authorizations, do not count.
        let mut stranger = peer("x");
        stranger.spec.authorization = "other".into();
        let mixed = vec![
            peer("a"),
            peer("b"),
            peer("c"),
            fixtures::scenario(),
            stranger,
        ];
        assert_eq!(
            check_aggregate_quota(&scenario, &authorization, &mixed),
            Ok(())
        );
    }

    #[test]
    fn effective_expiry_is_the_earlier_end() {
        let authorization = fixtures::authorization();
        let mut scenario = fixtures::scenario();
        scenario.spec.valid_until = None;
        assert_eq!(
            effective_expiry(&scenario, &authorization),
            authorization.spec.valid_until
        );
        let earlier = Time(authorization.spec.valid_from.0);
        scenario.spec.valid_until = Some(earlier.clone());
        assert_eq!(effective_expiry(&scenario, &authorization), earlier);
        let later = Time(
            Timestamp::from_second(authorization.spec.valid_until.0.as_second() + 86_400)
                .unwrap_or(authorization.spec.valid_until.0),
        );
        scenario.spec.valid_until = Some(later);
        assert_eq!(
            effective_expiry(&scenario, &authorization),
            authorization.spec.valid_until
        );
    }
}
