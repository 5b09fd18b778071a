//! The shipped examples are what users copy: every one must lint clean.

use std::path::Path;

use switchyard_api::manifest::load_paths;

#[test]
fn every_example_lints_clean() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let loaded = load_paths(&[examples], &mut std::io::empty());
    assert!(loaded.manifests.len() >= 10, "examples went missing");
    let diagnostics = switchyard_lint::lint(&loaded);
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
    let kinds: std::collections::BTreeSet<_> = loaded
        .manifests
        .iter()
        .map(|m| m.resource.info().kind)
        .collect();
    for kind in [
        "Deployment",
        "Service",
        "Ingress",
        "IngressClass",
        "Rollout",
        "AnalysisTemplate",
    ] {
        assert!(kinds.contains(kind), "no {kind} example");
    }
    let types: std::collections::BTreeSet<_> = loaded
        .manifests
        .iter()
        .filter_map(|m| match &m.resource {
            switchyard_api::Resource::Service(s) => Some(
                s.spec
                    .as_ref()?
                    .type_
                    .clone()
                    .unwrap_or_else(|| "ClusterIP".into()),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(
        types.into_iter().collect::<Vec<_>>(),
        ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
    );
}
