//! The `switchyard` command: blue/green and canary releases for Kubernetes-shaped
//! workloads. Data goes to stdout; diagnostics and logs go to stderr.

#![forbid(unsafe_code)]

mod client;
mod commands;
mod demo;
mod demo_rollouts;
mod printers;
mod rollouts;
mod workloads;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::client::Client;
use crate::commands::{GetOptions, GetOutput, write_out};

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
    #[command(flatten)]
    data_dir: DataDir,
}

/// Where the server keeps its state; CLI commands find the server through it.
#[derive(Args, Debug, Clone)]
struct DataDir {
    /// Data directory [default: $XDG_DATA_HOME/switchyard or ~/.local/share/switchyard].
    #[arg(long, env = "SWITCHYARD_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
}

impl DataDir {
    fn path(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(client::default_data_dir)
    }
}

/// Flags shared by the commands that address objects.
#[derive(Args, Debug)]
struct Scope {
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A guided tour: a server on a temporary data dir, a Deployment of the demo app, and
    /// a rolling update; exits 0 only when everything shown really happened.
    Demo,
    /// Run the single-host engine in the foreground (stop with Ctrl-C or SIGTERM).
    Server {
        /// API listen address (loopback by default; port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
        /// Config file (image map) [default: DATA_DIR/config.yaml when it exists].
        #[arg(long)]
        config: Option<PathBuf>,
        /// Cluster DNS address (UDP and TCP); a port above 1023 needs no root.
        #[arg(long, default_value = "127.0.0.1:10053")]
        dns_listen: SocketAddr,
        /// Do not serve cluster DNS.
        #[arg(long)]
        no_dns: bool,
        /// The node address NodePort Services listen on.
        #[arg(long, default_value = "127.0.0.1")]
        node_address: std::net::Ipv4Addr,
        /// Where the ingress serves HTTP/1.1 and h2c.
        #[arg(long, default_value = switchyard_local::server::DEFAULT_INGRESS_LISTEN)]
        ingress_listen: SocketAddr,
        /// Do not serve the ingress.
        #[arg(long)]
        no_ingress: bool,
        /// Serve the API over plain HTTP instead of TLS. Clients such as kubectl send
        /// no credentials over plain HTTP, so only this CLI can use it.
        #[arg(long)]
        plain_http: bool,
    },
    /// Print the kubeconfig of the running server (kubectl, Helm, k9s and kube-rs use it).
    ///
    /// `export KUBECONFIG=$(switchyard kubeconfig --path)` points kubectl at the engine for
    /// one shell; `--merge` adds a `switchyard` context to ~/.kube/config (or the first
    /// file in $KUBECONFIG) and makes it current.
    Kubeconfig {
        /// Merge into ~/.kube/config (or the first file in $KUBECONFIG) instead of printing.
        #[arg(long, conflicts_with = "path")]
        merge: bool,
        /// Print the kubeconfig file's path instead of its content.
        #[arg(long)]
        path: bool,
    },
    /// The built-in demo app that `switchyard/demo:TAG` pods run.
    #[command(hide = true)]
    DemoApp {
        /// The version it reports (the image tag).
        #[arg(long)]
        version: Option<String>,
    },
    /// Create or update objects from files, directories or stdin, all or nothing.
    Apply {
        /// Files, directories (recursively) or `-` for stdin.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// Namespace for objects that name none.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// List objects as tables, or print them as YAML/JSON.
    Get {
        /// KIND [NAME...] or KIND/NAME... (short names: po, deploy, rs, svc, ing, ep, ns, ro, ev).
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
        #[command(flatten)]
        scope: Scope,
        /// All namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Label selector, e.g. `app=web,track!=canary`.
        #[arg(short = 'l', long)]
        selector: Option<String>,
        /// Output format.
        #[arg(short = 'o', long, value_enum)]
        output: Option<GetOutput>,
        /// After listing, print changes as they happen.
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Show an object in detail, with its recent events.
    Describe {
        /// KIND NAME... or KIND/NAME...
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
        #[command(flatten)]
        scope: Scope,
    },
    /// Delete objects by name or by the files that define them.
    Delete {
        /// KIND NAME... or KIND/NAME...
        args: Vec<String>,
        /// Delete the objects these files define.
        #[arg(short = 'f', long = "filename", num_args = 1..)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        scope: Scope,
        /// What happens to dependents: background, foreground or orphan.
        #[arg(long, default_value = "background")]
        cascade: String,
    },
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
    /// Print a container's log.
    Logs {
        /// The pod (NAME or pod/NAME).
        pod: String,
        #[command(flatten)]
        scope: Scope,
        /// The container (needed when the pod has several).
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// Keep streaming new output.
        #[arg(short = 'f', long)]
        follow: bool,
        /// The previous instance's log, after a restart.
        #[arg(short = 'p', long)]
        previous: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// Set the replicas of a deployment, replicaset or rollout.
    Scale {
        /// KIND/NAME, e.g. deploy/web.
        #[arg(required = true, num_args = 1..=2)]
        args: Vec<String>,
        #[command(flatten)]
        scope: Scope,
        /// The new number of replicas.
        #[arg(long)]
        replicas: i32,
    },
    /// Manage a release: a Rollout (NAME or ro/NAME: get, status, promote, abort, retry,
    /// pause, resume, undo, restart, set image) or a Deployment (deploy/NAME: status,
    /// history, undo, restart, pause, resume).
    Rollout {
        /// What to do.
        #[arg(value_enum)]
        verb: workloads::RolloutVerb,
        /// NAME or KIND/NAME, e.g. web or deploy/web; `set image NAME CONTAINER=IMAGE`.
        #[arg(required = true, num_args = 1..=3)]
        args: Vec<String>,
        /// For promote: skip every remaining step and pause.
        #[arg(long)]
        full: bool,
        /// For get: redraw as the Rollout changes.
        #[arg(short = 'w', long)]
        watch: bool,
        #[command(flatten)]
        scope: Scope,
        /// For undo: the revision to return to (default: the previous one).
        #[arg(long)]
        to_revision: Option<i64>,
        /// For status: give up after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let data_dir = cli.data_dir.path();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    };
    let connect = || Client::connect(&data_dir);
    match cli.command {
        Command::Server {
            listen,
            config,
            dns_listen,
            no_dns,
            node_address,
            ingress_listen,
            no_ingress,
            plain_http,
        } => {
            let config = switchyard_local::ServerConfig {
                config_file: config,
                dns_listen: (!no_dns).then_some(dns_listen),
                node_address,
                ingress_listen: (!no_ingress).then_some(ingress_listen),
                plain_http,
                ..switchyard_local::ServerConfig::new(data_dir.clone(), listen)
            };
            runtime()?.block_on(commands::server(config))
        }
        Command::Kubeconfig { merge, path } => commands::kubeconfig(&data_dir, merge, path),
        Command::Demo => runtime()?.block_on(demo::run()),
        Command::DemoApp { version } => {
            let config = switchyard_demoapp::Config::from_env(version.as_deref())
                .map_err(anyhow::Error::msg)?;
            runtime()?.block_on(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
                let shutdown = async move {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                };
                switchyard_demoapp::serve(config, shutdown).await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Apply { files, namespace } => runtime()?
            .block_on(async { commands::apply(&connect()?, &files, namespace.as_deref()).await }),
        Command::Get {
            args,
            scope,
            all_namespaces,
            selector,
            output,
            watch,
        } => runtime()?.block_on(async {
            let options = GetOptions {
                args: &args,
                namespace: &scope.namespace,
                all_namespaces,
                selector: selector.as_deref(),
                output,
                watch,
            };
            commands::get(&connect()?, options).await
        }),
        Command::Describe { args, scope } => runtime()?
            .block_on(async { commands::describe(&connect()?, &args, &scope.namespace).await }),
        Command::Delete {
            args,
            files,
            scope,
            cascade,
        } => runtime()?.block_on(async {
            commands::delete(&connect()?, &args, &files, &scope.namespace, &cascade).await
        }),
        Command::Logs {
            pod,
            scope,
            container,
            follow,
            previous,
            tail,
        } => runtime()?.block_on(async {
            workloads::logs(
                &connect()?,
                &pod,
                &scope.namespace,
                container.as_deref(),
                follow,
                previous,
                tail,
            )
            .await
        }),
        Command::Scale {
            args,
            scope,
            replicas,
        } => runtime()?.block_on(async {
            workloads::scale(&connect()?, &args, &scope.namespace, replicas).await
        }),
        Command::Rollout {
            verb,
            args,
            scope,
            to_revision,
            timeout,
            full,
            watch,
        } => {
            let timeout = timeout.map(std::time::Duration::from_secs);
            let rollout_name = rollouts::target_rollout(&args, verb);
            if let Some(name) = rollout_name {
                return runtime()?.block_on(async {
                    let client = connect()?;
                    let ns = &scope.namespace;
                    match verb {
                        workloads::RolloutVerb::Get => {
                            rollouts::get(&client, ns, &name, watch).await
                        }
                        workloads::RolloutVerb::Status => {
                            rollouts::status(&client, ns, &name, timeout).await
                        }
                        workloads::RolloutVerb::Promote => {
                            rollouts::promote(&client, ns, &name, full).await
                        }
                        workloads::RolloutVerb::Undo => {
                            rollouts::undo(&client, ns, &name, to_revision).await
                        }
                        workloads::RolloutVerb::Set => {
                            let assignment = args.last().map(String::as_str).unwrap_or("");
                            rollouts::set_image(&client, ns, &name, assignment).await
                        }
                        workloads::RolloutVerb::History => {
                            anyhow::bail!("history is shown by `rollout get {name}`")
                        }
                        other => {
                            let verb = format!("{other:?}").to_ascii_lowercase();
                            rollouts::simple(&client, ns, &name, &verb).await
                        }
                    }
                });
            }
            runtime()?.block_on(async {
                workloads::rollout(
                    &connect()?,
                    verb,
                    &args,
                    &scope.namespace,
                    to_revision,
                    timeout,
                )
                .await
            })
        }
        Command::Lint { rules: true, .. } => {
            write_out(&rules_table())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Lint { files, output, .. } => lint(&files, output),
        Command::Crd => {
            write_out(&switchyard_api::crd::to_yaml())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            write_out(&format!("switchyard {}\n", env!("CARGO_PKG_VERSION")))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn lint(files: &[PathBuf], output: LintOutput) -> anyhow::Result<ExitCode> {
    let loaded = switchyard_api::manifest::load_paths(files, &mut std::io::stdin().lock());
    let diagnostics = switchyard_lint::lint(&loaded);
    let objects = loaded.manifests.len();
    match output {
        LintOutput::Json => write_out(&switchyard_lint::render_json(&diagnostics, objects))?,
        LintOutput::Human => {
            let stdout = std::io::stdout();
            let colour =
                stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            write_out(&switchyard_lint::render_human(
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
