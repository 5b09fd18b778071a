//! Rendering diagnostics: a terminal format (colour optional) and JSON for tools.

use std::fmt::Write;

use serde::Serialize;

use crate::{Diagnostic, Severity, counts};

const RED: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[1;33m";
const BLUE: &str = "\x1b[1;34m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Renders diagnostics for a terminal, ending with a summary line.
///
/// ```text
/// error[canary-without-primary]: Ingress default/web-canary: no primary Ingress routes ...
///   --> examples/bad.yaml:14 (spec.rules[0].http.paths[0])
///    = fix: add a primary Ingress ...
/// ```
pub fn render_human(diagnostics: &[Diagnostic], objects: usize, colour: bool) -> String {
    let paint = |code: &'static str| if colour { code } else { "" };
    let reset = paint(RESET);
    let mut out = String::new();
    for d in diagnostics {
        let (label, code) = match d.severity {
            Severity::Error => ("error", RED),
            Severity::Warning => ("warning", YELLOW),
        };
        let object = match (&d.kind, &d.name) {
            (Some(kind), Some(name)) => match d.namespace.as_deref() {
                Some(ns) if !ns.is_empty() => format!("{kind} {ns}/{name}: "),
                _ => format!("{kind} {name}: "),
            },
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{}{label}[{}]{reset}{}: {object}{}{reset}",
            paint(code),
            d.rule,
            paint(BOLD),
            d.message
        );
        let field = d
            .field
            .as_deref()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}-->{reset} {}:{}{field}",
            paint(BLUE),
            d.file,
            d.line
        );
        let _ = writeln!(out, "   {}= fix:{reset} {}", paint(BLUE), d.fix);
        out.push('\n');
    }
    let (errors, warnings) = counts(diagnostics);
    let _ = writeln!(
        out,
        "{} error{}, {} warning{} in {objects} object{}",
        errors,
        if errors == 1 { "" } else { "s" },
        warnings,
        if warnings == 1 { "" } else { "s" },
        if objects == 1 { "" } else { "s" },
    );
    out
}

#[derive(Serialize)]
struct Report<'a> {
    diagnostics: &'a [Diagnostic],
    errors: usize,
    warnings: usize,
    objects: usize,
}

/// Renders diagnostics as one JSON document with counts.
pub fn render_json(diagnostics: &[Diagnostic], objects: usize) -> String {
    let (errors, warnings) = counts(diagnostics);
    let report = Report {
        diagnostics,
        errors,
        warnings,
        objects,
    };
    serde_json::to_string_pretty(&report).expect("diagnostics always encode") + "\n"
}
