//! Every lint rule has a failing fixture (`bad.yaml`, which must trigger it) and a fixed
//! fixture (`good.yaml`, which must be clean), under `tests/fixtures/<rule-id>/`.

use std::path::{Path, PathBuf};

use switchyard_api::manifest::load_paths;
use switchyard_lint::{Diagnostic, RULES, lint};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn lint_file(path: &Path) -> Vec<Diagnostic> {
    lint(&load_paths(&[path.to_path_buf()], &mut std::io::empty()))
}

#[test]
fn every_rule_has_exactly_one_fixture_directory() {
    let mut dirs: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures directory")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut rules: Vec<String> = RULES.iter().map(|r| r.id.to_string()).collect();
    rules.sort();
    assert_eq!(dirs, rules);
}

#[test]
fn bad_fixtures_trigger_their_rule() {
    for rule in RULES {
        let path = fixtures_dir().join(rule.id).join("bad.yaml");
        let found = lint_file(&path);
        let hits: Vec<_> = found.iter().filter(|d| d.rule == rule.id).collect();
        assert!(
            !hits.is_empty(),
            "{} not reported for {}: {found:#?}",
            rule.id,
            path.display()
        );
        for d in hits {
            assert_eq!(d.severity, rule.severity, "{}", rule.id);
            assert!(
                d.line > 0 || rule.id == "parse-error",
                "{}: no line: {d:?}",
                rule.id
            );
            assert!(d.file.ends_with("bad.yaml"));
            assert!(
                !d.message.is_empty() && !d.fix.is_empty(),
                "{}: {d:?}",
                rule.id
            );
        }
    }
}

#[test]
fn good_fixtures_are_clean() {
    for rule in RULES {
        let path = fixtures_dir().join(rule.id).join("good.yaml");
        let found = lint_file(&path);
        assert!(
            found.is_empty(),
            "{} is not clean: {found:#?}",
            path.display()
        );
    }
}
