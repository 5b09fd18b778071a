//! Table tests: one manifest per case and the exact messages the API server (or Argo
//! Rollouts) would give for it.

use super::*;
use crate::manifest::load_str;

fn errors_of(yaml: &str) -> Vec<String> {
    let loaded = load_str("t.yaml", yaml);
    assert!(loaded.errors.is_empty(), "load errors: {:?}", loaded.errors);
    let mut out: Vec<String> = loaded
        .manifests
        .iter()
        .flat_map(|m| validate(&m.resource))
        .map(|e| e.to_string())
        .collect();
    out.extend(
        validate_set(&loaded.manifests)
            .into_iter()
            .map(|e| e.error.to_string()),
    );
    out
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: switchyard/demo:blue
        ports: [{name: http, containerPort: 8080}]
";

fn service(spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n{spec}")
}

fn ingress_path(path: &str, backend: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: web}}
spec:
  rules:
  - http:
      paths:
      - {path}
        backend: {backend}
"
    )
}

fn rollout(strategy: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1
kind: Rollout
metadata: {{name: web}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: web, image: switchyard/demo:blue}}]}}
  strategy:
{strategy}"
    )
}

#[test]
fn valid_objects_have_no_errors() {
    assert_eq!(errors_of(DEPLOYMENT), Vec::<String>::new());
    assert_eq!(
        errors_of(&service(
            "  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]\n"
        )),
        Vec::<String>::new()
    );
}

#[test]
fn deployment_table() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "selector must match template labels",
            "selector: {matchLabels: {app: web}}",
            &[
                r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"api"}: `selector` does not match template `labels`"#,
            ],
        ),
        (
            "empty selector",
            "selector: {matchLabels: {}}",
            &[r#"spec.selector: Invalid value: "": empty selector is invalid for deployment"#],
        ),
    ];
    for (name, selector, expected) in cases {
        let yaml = DEPLOYMENT
            .replace("selector: {matchLabels: {app: web}}", selector)
            .replace(
                "metadata: {labels: {app: web}}",
                "metadata: {labels: {app: api}}",
            );
        let got = errors_of(&yaml);
        let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        if *name == "empty selector" {
            assert_eq!(got[..1], expected[..], "{name}");
        } else {
            assert_eq!(got, expected, "{name}");
        }
    }
    let got = errors_of(&DEPLOYMENT.replace("selector: {matchLabels: {app: web}}", ""));
    assert_eq!(got, ["spec.selector: Required value"]);
    let got = errors_of(&DEPLOYMENT.replace("replicas: 2", "replicas: -1"));
    assert_eq!(
        got,
        ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
    );
    let got = errors_of(&DEPLOYMENT.replace(
        "replicas: 2",
        "replicas: 2\n  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}",
    ));
    assert_eq!(
        got,
        [
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"
        ]
    );
    let got = errors_of(&DEPLOYMENT.replace("name: web}", "name: Web_1}"));
    assert_eq!(got.len(), 1);
    assert!(
        got[0]
            .starts_with("metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain")
    );
}

#[test]
fn service_table() {
    let cases: &[(&str, &[&str])] = &[
        (
            "  type: NodePort\n  clusterIP: None\n  ports: [{port: 80}]\n",
            &[
                r#"spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for NodePort services"#,
            ],
        ),
        (
            "  ports: [{port: 80, nodePort: 30080}]\n",
            &["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
        ),
        (
            "  type: NodePort\n  ports: [{port: 80, nodePort: 80}]\n",
            &[
                "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
            ],
        ),
        (
            "  type: ExternalName\n  externalName: Not_Valid\n",
            &[
                r#"spec.externalName: Invalid value: "Not_Valid": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#,
            ],
        ),
        (
            "  type: ExternalName\n  externalName: example.com\n  clusterIP: 10.0.0.1\n",
            &["spec.clusterIPs: Forbidden: may not be set for ExternalName services"],
        ),
        (
            "  type: ExternalName\n",
            &["spec.externalName: Required value"],
        ),
        (
            "  ports: [{name: http, port: 80}, {port: 81}, {name: http, port: 82}]\n",
            &[
                "spec.ports[1].name: Required value",
                r#"spec.ports[2].name: Duplicate value: "http""#,
            ],
        ),
        (
            "  ports: [{port: 80, targetPort: web_port}]\n",
            &[
                r#"spec.ports[0].targetPort: Invalid value: "web_port": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"#,
            ],
        ),
        (
            "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}\n  ports: [{port: 80}]\n",
            &[
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400",
            ],
        ),
        (
            "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 10}}\n  ports: [{port: 80}]\n",
            &[
                r#"spec.sessionAffinityConfig: Invalid value: "": must not be set when session affinity is None"#,
            ],
        ),
        (
            "  externalTrafficPolicy: Local\n  ports: [{port: 80}]\n",
            &[
                r#"spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services"#,
            ],
        ),
        (
            "  type: Magic\n",
            &[
                r#"spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#,
            ],
        ),
        ("  selector: {app: web}\n", &["spec.ports: Required value"]),
        ("  clusterIP: None\n  selector: {app: web}\n", &[]),
    ];
    for (spec, expected) in cases {
        assert_eq!(errors_of(&service(spec)), *expected, "{spec}");
    }
    let got = errors_of(
        "apiVersion: v1\nkind: Service\nmetadata: {name: 1web}\nspec: {ports: [{port: 80}]}\n",
    );
    assert!(got[0].contains("a DNS-1035 label"), "{got:?}");
}

#[test]
fn ingress_table() {
    let good = "{service: {name: web, port: {number: 80}}}";
    let cases: &[(String, &[&str])] = &[
        (
            ingress_path("path: /", good),
            &["spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"],
        ),
        (
            ingress_path("path: api\n        pathType: Prefix", good),
            &[
                r#"spec.rules[0].http.paths[0].path: Invalid value: "api": must be an absolute path"#,
            ],
        ),
        (
            ingress_path(
                "path: /\n        pathType: Prefix",
                "{service: {name: web}}",
            ),
            &[
                "spec.rules[0].http.paths[0].backend.service.port: Required value: port name or number is required",
            ],
        ),
        (
            ingress_path(
                "path: /\n        pathType: Prefix",
                "{service: {name: web, port: {name: http, number: 80}}}",
            ),
            &[
                r#"spec.rules[0].http.paths[0].backend.service.port: Invalid value: "": cannot set both port name & port number"#,
            ],
        ),
        (
            ingress_path("path: /\n        pathType: Regex", good),
            &[
                r#"spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": supported values: "Exact", "ImplementationSpecific", "Prefix""#,
            ],
        ),
        (ingress_path("path: /\n        pathType: Prefix", good), &[]),
    ];
    for (yaml, expected) in cases {
        assert_eq!(errors_of(yaml), *expected, "{yaml}");
    }
}

#[test]
fn rollout_table() {
    let cases: &[(&str, &[&str])] = &[
        (
            "    blueGreen: {activeService: web, previewService: web}\n",
            &[
                r#"spec.strategy.blueGreen.previewService: Invalid value: "web": This rollout uses the same service for the active and preview services, but two different services are required."#,
            ],
        ),
        (
            "    blueGreen: {previewService: web-preview}\n",
            &[
                "spec.strategy.blueGreen.activeService: Required value: Rollout has missing field 'activeService'",
            ],
        ),
        (
            "",
            &[
                "spec.strategy: Required value: a Rollout needs exactly one strategy: blueGreen or canary",
            ],
        ),
        (
            "    blueGreen: {activeService: web}\n    canary: {}\n",
            &[
                r#"spec.strategy: Invalid value: "": Multiple Strategies can not be listed: set exactly one of blueGreen or canary"#,
            ],
        ),
        (
            "    canary:\n      steps:\n      - setWeight: 120\n      - pause: {duration: 5x}\n      - {setWeight: 10, pause: {}}\n      - pause: {duration: 1h}\n      - pause: {duration: 30}\n      - pause: {}\n",
            &[
                "spec.strategy.canary.steps[0].setWeight: Invalid value: 120: SetWeight needs to be between 0 and 100",
                r#"spec.strategy.canary.steps[1].pause.duration: Invalid value: "5x": invalid duration "5x": unknown unit "x""#,
                r#"spec.strategy.canary.steps[2]: Invalid value: "": Step must have exactly one of the following set: setWeight, pause, analysis, setCanaryScale or setHeaderRoute"#,
            ],
        ),
        (
            "    canary:\n      steps:\n      - setCanaryScale: {weight: 10}\n",
            &[
                "spec.strategy.canary.steps[0].setCanaryScale: Forbidden: SetCanaryScale requires TrafficRouting to be set",
            ],
        ),
        (
            "    canary: {canaryService: web, stableService: web}\n",
            &[
                r#"spec.strategy.canary.stableService: Invalid value: "web": This rollout uses the same service for the stable and canary services, but two different services are required."#,
            ],
        ),
    ];
    for (strategy, expected) in cases {
        assert_eq!(errors_of(&rollout(strategy)), *expected, "{strategy}");
    }
}

#[test]
fn referenced_analysis_templates_must_be_in_the_set() {
    let yaml = format!(
        "{}---
apiVersion: switchyard.dev/v1alpha1
kind: AnalysisTemplate
metadata: {{name: success-rate}}
spec:
  metrics:
  - name: ok
    provider: {{switchyard: {{metric: success-rate}}}}
",
        rollout(
            "    canary:\n      steps:\n      - analysis: {templates: [{templateName: success-rate}]}\n      - analysis: {templates: [{templateName: sucess-rate}]}\n"
        )
    );
    assert_eq!(
        errors_of(&yaml),
        [
            r#"spec.strategy.canary.steps[1].analysis.templates[0].templateName: Not found: "sucess-rate": no AnalysisTemplate "sucess-rate" in namespace "default" in this set"#
        ]
    );
}

#[test]
fn analysis_template_table() {
    let template = |metric: &str| {
        format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata: {{name: t}}\nspec:\n  metrics:\n  - {metric}\n"
        )
    };
    let cases: &[(&str, &[&str])] = &[
        (
            "name: a\n    provider: {}",
            &[
                "spec.metrics[0].provider: Required value: set one provider: prometheus, web, job or switchyard",
            ],
        ),
        (
            "name: a\n    interval: 10q\n    provider: {switchyard: {metric: success-rate}}",
            &[
                r#"spec.metrics[0].interval: Invalid value: "10q": invalid duration "10q": unknown unit "q""#,
            ],
        ),
        (
            "name: a\n    count: 3\n    provider: {switchyard: {metric: happiness}}",
            &[
                "spec.metrics[0].interval: Required value: interval must be specified when count is greater than 1",
                r#"spec.metrics[0].provider.switchyard.metric: Unsupported value: "happiness": supported values: "success-rate", "error-rate", "request-rate", "latency-p50", "latency-p90", "latency-p95", "latency-p99", "judge""#,
            ],
        ),
        (
            "name: a\n    provider: {prometheus: {address: 'http://127.0.0.1:9090', query: up}}",
            &[],
        ),
    ];
    for (metric, expected) in cases {
        assert_eq!(errors_of(&template(metric)), *expected, "{metric}");
    }
}

#[test]
fn invalid_message_matches_the_api_server() {
    let loaded = load_str("t.yaml", &DEPLOYMENT.replace("replicas: 2", "replicas: -1"));
    let resource = &loaded.manifests[0].resource;
    assert_eq!(
        invalid_message(resource, &validate(resource)),
        "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    );
}
