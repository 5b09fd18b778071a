//! End-to-end tests of the `switchyard` binary: real process, real files, real stdin.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn switchyard(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .current_dir(repo_root())
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("switchyard starts");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn lint_reports_every_rule_across_the_fixtures_and_exits_1() {
    let out = switchyard(
        &["lint", "-f", "crates/lint/tests/fixtures", "-o", "json"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let diagnostics = report["diagnostics"].as_array().unwrap();
    let rules = switchyard(&["lint", "--rules"], None);
    for line in stdout(&rules).lines() {
        let id = line.split_whitespace().next().unwrap();
        let own_fixture = format!("{id}/bad.yaml");
        let hit = diagnostics
            .iter()
            .find(|d| d["rule"] == id && d["file"].as_str().unwrap().ends_with(&own_fixture))
            .unwrap_or_else(|| panic!("rule {id} not reported for its own fixture"));
        assert!(!hit["fix"].as_str().unwrap().is_empty());
    }
}

#[test]
fn examples_lint_clean_and_exit_0() {
    let out = switchyard(&["lint", "-f", "examples"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("0 errors, 0 warnings in "));
}

#[test]
fn human_output_names_rule_object_location_and_fix_without_colour_off_a_tty() {
    let manifest = "\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  annotations:
    nginx.ingress.kubernetes.io/canary-weight: \"20\"
spec:
  ingressClassName: switchyard
  defaultBackend:
    service: {name: web, port: {number: 80}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
";
    let out = switchyard(&["lint", "-f", "-"], Some(manifest));
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(!text.contains('\x1b'), "colour off a TTY: {text}");
    assert_eq!(
        text,
        "error[canary-annotations-ignored]: Ingress default/web: \
`nginx.ingress.kubernetes.io/canary-weight` is set but `nginx.ingress.kubernetes.io/canary` \
is not \"true\": ingress-nginx ignores every canary annotation and serves this Ingress as a \
second primary for its hosts and paths
  --> -:6 (metadata.annotations[nginx.ingress.kubernetes.io/canary-weight])
   = fix: add `nginx.ingress.kubernetes.io/canary: \"true\"` to make this the canary Ingress, \
or remove the canary-* annotations

1 error, 0 warnings in 2 objects
"
    );
}

#[test]
fn argo_rollouts_manifests_lint_as_switchyard_rollouts() {
    let out = switchyard(
        &["lint", "-f", "examples/rollouts/argo-compatible.yaml"],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn unreadable_paths_are_parse_errors_naming_the_file() {
    let out = switchyard(&["lint", "-f", "no/such/file.yaml", "-o", "json"], None);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["diagnostics"][0]["rule"], "parse-error");
    assert_eq!(report["diagnostics"][0]["file"], "no/such/file.yaml");
}

#[test]
fn crd_prints_three_definitions() {
    let out = switchyard(&["crd"], None);
    assert!(out.status.success());
    let text = stdout(&out);
    assert_eq!(text.matches("kind: CustomResourceDefinition").count(), 3);
    for name in ["rollouts", "analysistemplates", "analysisruns"] {
        assert!(
            text.contains(&format!("name: {name}.switchyard.dev")),
            "{name}"
        );
    }
}

#[test]
fn version_and_help() {
    let out = switchyard(&["version"], None);
    assert_eq!(
        stdout(&out),
        format!("switchyard {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = switchyard(&["--help"], None);
    let help = stdout(&out);
    for verb in ["lint", "crd", "version"] {
        assert!(help.contains(verb), "{verb} missing from --help");
    }
}
