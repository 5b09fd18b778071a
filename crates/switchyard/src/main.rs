//! The `switchyard` command: blue/green and canary releases for Kubernetes-shaped
//! workloads. Data goes to stdout; diagnostics and logs go to stderr.

#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

/// Blue/green and canary releases for Kubernetes workloads.
///
/// Switchyard runs the release strategies Deployments lack: blue/green and canary
/// Rollouts (Argo Rollouts-compatible), with Services, ingress-nginx canary annotations
/// and automated analysis. `lint` explains what is wrong with hand-rolled releases.
#[derive(Parser, Debug)]
#[command(name = "switchyard", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check manifests: API-server validation plus the mistakes of hand-rolled
    /// blue/green and canary releases. Exits 1 when any error is found.
    Lint {
        /// Files, directories (searched recursively for .yaml, .yml, .json) or `-` for stdin.
        #[arg(short = 'f', long = "filename", num_args = 1.., required_unless_present = "rules")]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = LintOutput::Human)]
        output: LintOutput,
        /// List every rule with its id, severity and summary, and exit.
        #[arg(long)]
        rules: bool,
    },
    /// Print the CustomResourceDefinitions of Rollout, AnalysisTemplate and AnalysisRun.
    Crd,
    /// Print the version.
    Version,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LintOutput {
    /// Readable in a terminal (colour on a TTY unless NO_COLOR is set).
    Human,
    /// One JSON document for tools.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Lint { rules: true, .. } => {
            write_stdout(&rules_table())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Lint { files, output, .. } => lint(&files, output),
        Command::Crd => {
            write_stdout(&switchyard_api::crd::to_yaml())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            write_stdout(&format!("switchyard {}\n", env!("CARGO_PKG_VERSION")))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn lint(files: &[PathBuf], output: LintOutput) -> anyhow::Result<ExitCode> {
    let loaded = switchyard_api::manifest::load_paths(files, &mut std::io::stdin().lock());
    let diagnostics = switchyard_lint::lint(&loaded);
    let objects = loaded.manifests.len();
    match output {
        LintOutput::Json => write_stdout(&switchyard_lint::render_json(&diagnostics, objects))?,
        LintOutput::Human => {
            let stdout = std::io::stdout();
            let colour =
                stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            write_stdout(&switchyard_lint::render_human(
                &diagnostics,
                objects,
                colour,
            ))?;
        }
    }
    let (errors, _) = switchyard_lint::counts(&diagnostics);
    Ok(if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn rules_table() -> String {
    let mut out = String::new();
    for rule in switchyard_lint::RULES {
        let severity = match rule.severity {
            switchyard_lint::Severity::Error => "error",
            switchyard_lint::Severity::Warning => "warning",
        };
        out.push_str(&format!(
            "{:<30} {:<8} {}\n",
            rule.id, severity, rule.summary
        ));
    }
    out
}

/// Writes to stdout, treating a closed pipe (`| head`) as success.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}
