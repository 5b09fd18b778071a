//! CustomResourceDefinitions for Switchyard's kinds, generated from the Rust types, and a
//! check that their schemas are structural as apiextensions.k8s.io/v1 requires.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use crate::analysis::{AnalysisRun, AnalysisTemplate};
use crate::rollout::Rollout;

/// The CRDs of Rollout, AnalysisTemplate and AnalysisRun.
pub fn definitions() -> Vec<CustomResourceDefinition> {
    vec![Rollout::crd(), AnalysisTemplate::crd(), AnalysisRun::crd()]
}

/// The CRDs as one multi-document YAML stream.
pub fn to_yaml() -> String {
    definitions()
        .iter()
        .map(|crd| serde_saphyr::to_string(crd).expect("CRDs always encode as YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Schema for a free-form object field: structural, with unknown fields preserved.
pub fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Where a schema breaks the structural-schema rules of apiextensions.k8s.io/v1
/// (<https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema>).
pub fn structural_violations(schema: &JSONSchemaProps) -> Vec<String> {
    let mut out = Vec::new();
    check_node(schema, "", &mut out);
    out
}

fn check_node(s: &JSONSchemaProps, path: &str, out: &mut Vec<String>) {
    let open = s.x_kubernetes_int_or_string == Some(true)
        || s.x_kubernetes_preserve_unknown_fields == Some(true);
    if s.type_.is_none() && !open {
        out.push(format!("{path}: type is not specified"));
    }
    if s.ref_path.is_some() {
        out.push(format!("{path}: $ref is not allowed"));
    }
    if s.properties.is_some() && s.additional_properties.is_some() {
        out.push(format!(
            "{path}: properties and additionalProperties are mutually exclusive"
        ));
    }
    if s.type_.as_deref() == Some("array") && s.items.is_none() {
        out.push(format!("{path}: items must be specified for arrays"));
    }
    for (name, child) in s.properties.iter().flatten() {
        check_node(child, &format!("{path}.{name}"), out);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(child)) = &s.additional_properties {
        check_node(child, &format!("{path}[*]"), out);
    }
    match &s.items {
        Some(JSONSchemaPropsOrArray::Schema(child)) => check_node(child, &format!("{path}[]"), out),
        Some(JSONSchemaPropsOrArray::Schemas(_)) => {
            out.push(format!("{path}: items must be a single schema"));
        }
        None => {}
    }
    // Inside logical junctors only value validations may appear.
    let junctors = [&s.all_of, &s.any_of, &s.one_of];
    for (i, branch) in junctors.into_iter().flatten().flatten().enumerate() {
        if branch.type_.is_some()
            || branch.description.is_some()
            || branch.default.is_some()
            || branch.additional_properties.is_some()
            || branch.nullable.is_some()
        {
            out.push(format!(
                "{path}: branch {i} of allOf/anyOf/oneOf sets type, description, default, \
                 additionalProperties or nullable"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crd_schema_is_structural() {
        for crd in definitions() {
            for version in &crd.spec.versions {
                let schema = version
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .expect("schema present");
                let violations = structural_violations(schema);
                assert!(
                    violations.is_empty(),
                    "{}: {violations:#?}",
                    crd.spec.names.kind
                );
            }
        }
    }

    #[test]
    fn crds_name_switchyard_group_and_short_names() {
        let crds = definitions();
        let names: Vec<_> = crds
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "rollouts.switchyard.dev",
                "analysistemplates.switchyard.dev",
                "analysisruns.switchyard.dev"
            ]
        );
        assert_eq!(crds[0].spec.names.short_names, Some(vec!["ro".to_string()]));
        let status = crds[0].spec.versions[0].subresources.as_ref().unwrap();
        assert!(status.status.is_some() && status.scale.is_some());
    }

    #[test]
    fn yaml_output_reparses() {
        let yaml = to_yaml();
        let docs = crate::yaml::parse_yaml(&yaml).unwrap();
        assert_eq!(docs.len(), 3);
    }
}
