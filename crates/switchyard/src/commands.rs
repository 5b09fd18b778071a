//! The kubectl-like verbs: apply, get, describe, delete; and `server`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use hyper::Method;
use serde_json::{Value, json};
use switchyard_api::kinds::{self, KindInfo};
use switchyard_api::manifest::{Loaded, Manifest, load_paths};
use switchyard_api::query::encode;
use switchyard_api::validation;

use crate::client::{ApiFailure, Client};
use crate::printers;

/// Output formats of `get`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GetOutput {
    /// Extra columns.
    Wide,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
    /// `kind.group/name` per object.
    Name,
}

/// The REST path of a kind's collection (`namespace` ignored for cluster-scoped kinds).
pub fn collection_path(info: &KindInfo, namespace: Option<&str>) -> String {
    let prefix = if info.group.is_empty() {
        format!("/api/{}", info.version)
    } else {
        format!("/apis/{}/{}", info.group, info.version)
    };
    match namespace.filter(|_| info.namespaced) {
        Some(ns) => format!("{prefix}/namespaces/{ns}/{}", info.plural),
        None => format!("{prefix}/{}", info.plural),
    }
}

/// Resolves `deploy`, `deployments.apps`, `Deployment`, ... to a kind.
pub fn resolve_kind(name: &str) -> anyhow::Result<&'static KindInfo> {
    kinds::lookup_resource(name).ok_or_else(|| {
        let known: Vec<String> = kinds::KINDS
            .iter()
            .map(|k| match k.short_names.first() {
                Some(short) => format!("{} ({short})", k.plural),
                None => k.plural.to_string(),
            })
            .collect();
        anyhow!(
            "the server doesn't have a resource type {name:?}; known types: {}",
            known.join(", ")
        )
    })
}

/// Splits `KIND NAME...` or `KIND/NAME` arguments.
fn kind_and_names(args: &[String]) -> anyhow::Result<(&'static KindInfo, Vec<String>)> {
    let first = args
        .first()
        .ok_or_else(|| anyhow!("name a resource type, e.g. `get pods`"))?;
    if let Some((kind, name)) = first.split_once('/') {
        let info = resolve_kind(kind)?;
        let mut names = vec![name.to_string()];
        for arg in &args[1..] {
            let (k, n) = arg.split_once('/').ok_or_else(|| {
                anyhow!("mix of KIND/NAME and plain names: write every argument as KIND/NAME")
            })?;
            if resolve_kind(k)? != info {
                bail!("one kind per command: {first} and {arg} differ");
            }
            names.push(n.to_string());
        }
        return Ok((info, names));
    }
    Ok((resolve_kind(first)?, args[1..].to_vec()))
}

/// Loads manifests and checks them as the server will, reporting problems with file and
/// line. Returns None (after printing) when any error was found.
fn load_checked(files: &[PathBuf]) -> Option<Loaded> {
    let loaded = load_paths(files, &mut std::io::stdin().lock());
    let mut problems: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
    for manifest in &loaded.manifests {
        for error in validation::validate(&manifest.resource) {
            problems.push(format!(
                "{}: {}/{}: {error}",
                manifest.origin_of(&error.field),
                manifest.resource.info().kind,
                manifest.resource.metadata().name.as_deref().unwrap_or("")
            ));
        }
    }
    for error in validation::validate_set(&loaded.manifests) {
        let manifest = &loaded.manifests[error.index];
        problems.push(format!(
            "{}: {}",
            manifest.origin_of(&error.error.field),
            error.error
        ));
    }
    if problems.is_empty() {
        return Some(loaded);
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    eprintln!(
        "{} error{}; nothing was applied (`switchyard lint` explains each in detail)",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    None
}

/// `apply -f`: one transaction for the whole set.
pub async fn apply(
    client: &Client,
    files: &[PathBuf],
    namespace: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load_checked(files) else {
        return Ok(ExitCode::FAILURE);
    };
    if loaded.manifests.is_empty() {
        bail!("no objects passed to apply");
    }
    let items: Vec<Value> = loaded
        .manifests
        .iter()
        .map(|m| m.resource.to_value())
        .collect();
    let path = format!(
        "/switchyard/v1/apply?namespace={}",
        namespace.unwrap_or("default")
    );
    match client
        .send_json(Method::POST, &path, &json!({"items": items}))
        .await
    {
        Ok(response) => {
            let mut out = String::new();
            for (manifest, result) in loaded
                .manifests
                .iter()
                .zip(response["items"].as_array().into_iter().flatten())
            {
                let info = manifest.resource.info();
                out.push_str(&format!(
                    "{} {}\n",
                    printers::name_of(info, &result["object"]),
                    result["outcome"].as_str().unwrap_or("applied")
                ));
            }
            write_out(&out)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => match error.downcast_ref::<ApiFailure>() {
            Some(failure) => {
                report_failure(failure, &loaded.manifests);
                Ok(ExitCode::FAILURE)
            }
            None => Err(error),
        },
    }
}

/// Prints a failed apply's causes against the files they came from.
fn report_failure(failure: &ApiFailure, manifests: &[Manifest]) {
    let causes = failure.status["details"]["causes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if causes.is_empty() {
        eprintln!("error: {failure}");
        return;
    }
    for cause in causes {
        let field = cause["field"].as_str().unwrap_or("");
        let message = cause["message"].as_str().unwrap_or("");
        let located = field
            .strip_prefix("items[")
            .and_then(|rest| rest.split_once(']'))
            .and_then(|(index, path)| {
                Some((
                    manifests.get(index.parse::<usize>().ok()?)?,
                    path.trim_start_matches('.'),
                ))
            });
        match located {
            Some((manifest, path)) => eprintln!("error: {}: {message}", manifest.origin_of(path)),
            None => eprintln!("error: {message}"),
        }
    }
    eprintln!("nothing was applied");
}

/// Options of `get`.
pub struct GetOptions<'a> {
    /// KIND [NAME...] or KIND/NAME...
    pub args: &'a [String],
    /// -n
    pub namespace: &'a str,
    /// -A
    pub all_namespaces: bool,
    /// -l
    pub selector: Option<&'a str>,
    /// -o
    pub output: Option<GetOutput>,
    /// -w
    pub watch: bool,
}

/// `get`.
pub async fn get(client: &Client, options: GetOptions<'_>) -> anyhow::Result<ExitCode> {
    let (info, names) = kind_and_names(options.args)?;
    let namespace = (!options.all_namespaces).then_some(options.namespace);
    let base = collection_path(info, namespace);
    let show_namespace = options.all_namespaces && info.namespaced;
    let mut query = Vec::new();
    if let Some(selector) = options.selector {
        query.push(format!("labelSelector={}", encode(selector)));
    }
    let items: Vec<Value> = if names.is_empty() {
        let path = with_query(&base, &query);
        let list = client.get(&path).await?;
        let mut items = list["items"].as_array().cloned().unwrap_or_default();
        if info.kind == "Event" {
            items.sort_by(|a, b| {
                a["lastTimestamp"]
                    .as_str()
                    .cmp(&b["lastTimestamp"].as_str())
            });
        }
        if options.watch {
            print_items(info, &items, &options, show_namespace, true)?;
            let rv = list["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("0")
                .to_string();
            let mut watch_query = query.clone();
            watch_query.push("watch=true".into());
            watch_query.push(format!("resourceVersion={rv}"));
            return watch(
                client,
                info,
                &with_query(&base, &watch_query),
                &options,
                show_namespace,
            )
            .await;
        }
        items
    } else {
        let mut items = Vec::new();
        for name in &names {
            items.push(client.get(&format!("{base}/{name}")).await?);
        }
        if options.watch {
            print_items(info, &items, &options, show_namespace, true)?;
            let mut watch_query = query.clone();
            watch_query.push("watch=true".into());
            watch_query.push(format!(
                "fieldSelector=metadata.name%3D{}",
                encode(&names[0])
            ));
            return watch(
                client,
                info,
                &with_query(&base, &watch_query),
                &options,
                show_namespace,
            )
            .await;
        }
        items
    };
    if items.is_empty() && matches!(options.output, None | Some(GetOutput::Wide)) {
        match namespace.filter(|_| info.namespaced) {
            Some(ns) => eprintln!("No resources found in {ns} namespace."),
            None => eprintln!("No resources found"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let single = !names.is_empty() && items.len() == 1;
    match options.output {
        Some(GetOutput::Json) if single => {
            write_out(&(serde_json::to_string_pretty(&items[0])? + "\n"))?
        }
        Some(GetOutput::Yaml) if single => write_out(&printers::yaml(&items[0]))?,
        Some(GetOutput::Json) => {
            write_out(&(serde_json::to_string_pretty(&as_list(items))? + "\n"))?
        }
        Some(GetOutput::Yaml) => write_out(&printers::yaml(&as_list(items)))?,
        _ => print_items(info, &items, &options, show_namespace, true)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn as_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items})
}

fn print_items(
    info: &KindInfo,
    items: &[Value],
    options: &GetOptions<'_>,
    namespaces: bool,
    header: bool,
) -> anyhow::Result<()> {
    match options.output {
        Some(GetOutput::Name) => {
            let names: String = items
                .iter()
                .map(|o| printers::name_of(info, o) + "\n")
                .collect();
            write_out(&names)
        }
        Some(GetOutput::Json) => {
            let text: String = items
                .iter()
                .map(|o| serde_json::to_string_pretty(o).unwrap_or_default() + "\n")
                .collect();
            write_out(&text)
        }
        Some(GetOutput::Yaml) => {
            let text: String = items
                .iter()
                .map(|o| format!("---\n{}", printers::yaml(o)))
                .collect();
            write_out(&text)
        }
        _ => {
            let mut rows = printers::table_rows(
                info,
                items,
                options.output == Some(GetOutput::Wide),
                namespaces,
            );
            if !header {
                rows.remove(0);
            }
            write_out(&printers::align(&rows))
        }
    }
}

async fn watch(
    client: &Client,
    info: &KindInfo,
    path: &str,
    options: &GetOptions<'_>,
    namespaces: bool,
) -> anyhow::Result<ExitCode> {
    let mut failed = None;
    client
        .watch(path, |event| {
            let object = event["object"].clone();
            if let Err(e) = print_items(info, &[object], options, namespaces, false) {
                failed = Some(e);
                return false;
            }
            true
        })
        .await?;
    match failed {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// `describe KIND NAME`: the object's metadata, spec and status, and its recent events.
pub async fn describe(
    client: &Client,
    args: &[String],
    namespace: &str,
) -> anyhow::Result<ExitCode> {
    let (info, names) = kind_and_names(args)?;
    if names.is_empty() {
        bail!(
            "name the object to describe, e.g. `describe {} NAME`",
            info.plural
        );
    }
    let base = collection_path(info, Some(namespace));
    let mut out = String::new();
    for name in names {
        let object = client.get(&format!("{base}/{name}")).await?;
        out.push_str(&describe_object(&object));
        if info.kind == "Service" {
            out.push_str(&service_endpoints(client, namespace, &name).await?);
        }
        if info.kind == "Ingress" {
            out.push_str(&ingress_details(&object));
        }
        if info.kind == "AnalysisRun" {
            out.push_str(&analysis_run_details(&object));
        }
        let uid = object["metadata"]["uid"].as_str().unwrap_or("");
        let events_path = format!(
            "{}?fieldSelector=involvedObject.uid%3D{uid}",
            collection_path(
                kinds::lookup_kind("Event").expect("Event kind"),
                Some(namespace)
            )
        );
        let events = client.get(&events_path).await?;
        let mut events = events["items"].as_array().cloned().unwrap_or_default();
        events.sort_by(|a, b| {
            a["lastTimestamp"]
                .as_str()
                .cmp(&b["lastTimestamp"].as_str())
        });
        if events.is_empty() {
            out.push_str("Events:             <none>\n");
        } else {
            out.push_str("Events:\n");
            let mut rows = vec![vec![
                "Type".to_string(),
                "Reason".into(),
                "Age".into(),
                "From".into(),
                "Message".into(),
            ]];
            for e in &events {
                let count = e["count"].as_i64().unwrap_or(1);
                let age = printers::age(&e["lastTimestamp"]);
                let age = if count > 1 {
                    format!("{age} (x{count})")
                } else {
                    age
                };
                rows.push(vec![
                    e["type"].as_str().unwrap_or("").into(),
                    e["reason"].as_str().unwrap_or("").into(),
                    age,
                    e["source"]["component"].as_str().unwrap_or("").into(),
                    e["message"].as_str().unwrap_or("").into(),
                ]);
            }
            for line in printers::align(&rows).lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        out.push('\n');
    }
    write_out(out.trim_end_matches('\n'))?;
    write_out("\n")?;
    Ok(ExitCode::SUCCESS)
}

/// kubectl's `Endpoints:` line of `describe svc`: the ready addresses with their ports.
async fn service_endpoints(client: &Client, namespace: &str, name: &str) -> anyhow::Result<String> {
    let slices_kind = kinds::lookup_kind("EndpointSlice").expect("EndpointSlice kind");
    let path = format!(
        "{}?labelSelector=kubernetes.io%2Fservice-name%3D{}",
        collection_path(slices_kind, Some(namespace)),
        encode(name)
    );
    let slices = client.get(&path).await?;
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for slice in slices["items"].as_array().into_iter().flatten() {
        let ports: Vec<i64> = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_i64())
            .collect();
        for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
            for address in endpoint["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let target = if endpoint["conditions"]["ready"] == false {
                    &mut not_ready
                } else {
                    &mut ready
                };
                if ports.is_empty() {
                    target.push(address.to_string());
                }
                for port in &ports {
                    target.push(format!("{address}:{port}"));
                }
            }
        }
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "<none>".to_string()
        } else {
            v.join(",")
        }
    };
    let mut out = format!("Endpoints:          {}\n", list(&ready));
    if !not_ready.is_empty() {
        out.push_str(&format!("NotReadyEndpoints:  {}\n", list(&not_ready)));
    }
    Ok(out)
}

/// kubectl's rules table of `describe ing`, plus the canary settings and whether the
/// canary merged into a primary.
/// An AnalysisRun's phase and every metric's counts and measurements.
fn analysis_run_details(run: &Value) -> String {
    let status = &run["status"];
    let mut out = format!(
        "Phase:              {}\n",
        status["phase"].as_str().unwrap_or("Pending")
    );
    if let Some(message) = status["message"].as_str() {
        out.push_str(&format!("Message:            {message}\n"));
    }
    out.push_str("Metrics:\n");
    for result in status["metricResults"].as_array().into_iter().flatten() {
        let count = |field: &str| result[field].as_u64().unwrap_or(0);
        out.push_str(&format!(
            "  {}: {} (successful {}, failed {}, inconclusive {}, error {}){}\n",
            result["name"].as_str().unwrap_or(""),
            result["phase"].as_str().unwrap_or(""),
            count("successful"),
            count("failed"),
            count("inconclusive"),
            count("error"),
            result["message"]
                .as_str()
                .map_or(String::new(), |m| format!(": {m}")),
        ));
        let mut rows = vec![vec![
            "#".to_string(),
            "PHASE".to_string(),
            "VALUE".to_string(),
            "STARTED".to_string(),
            "FINISHED".to_string(),
            "MESSAGE".to_string(),
        ]];
        let time = |v: &Value| {
            v.as_str()
                .and_then(|t| t.split('T').nth(1))
                .unwrap_or("-")
                .trim_end_matches('Z')
                .to_string()
        };
        for (i, m) in result["measurements"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            rows.push(vec![
                (i + 1).to_string(),
                m["phase"].as_str().unwrap_or("").to_string(),
                m["value"].as_str().unwrap_or("-").to_string(),
                time(&m["startedAt"]),
                time(&m["finishedAt"]),
                m["message"].as_str().unwrap_or("").to_string(),
            ]);
        }
        if rows.len() > 1 {
            for line in printers::align(&rows).lines() {
                out.push_str(&format!("    {}\n", line.trim_end()));
            }
        }
    }
    out
}

fn ingress_details(ingress: &Value) -> String {
    let mut rows = vec![vec![
        "Host".to_string(),
        "Path".to_string(),
        "Backend".to_string(),
    ]];
    let backend = |b: &Value| {
        let port = &b["service"]["port"];
        let port = port["number"].as_i64().map_or_else(
            || port["name"].as_str().unwrap_or("").to_string(),
            |n| n.to_string(),
        );
        format!("{}:{port}", b["service"]["name"].as_str().unwrap_or(""))
    };
    for rule in ingress["spec"]["rules"].as_array().into_iter().flatten() {
        let host = rule["host"].as_str().unwrap_or("*");
        for path in rule["http"]["paths"].as_array().into_iter().flatten() {
            rows.push(vec![
                host.to_string(),
                format!(
                    "{} ({})",
                    path["path"].as_str().unwrap_or("/"),
                    path["pathType"].as_str().unwrap_or("")
                ),
                backend(&path["backend"]),
            ]);
        }
    }
    let mut out = String::from("Rules:\n");
    for line in printers::align(&rows).lines() {
        out.push_str(&format!("  {line}\n"));
    }
    if let Some(default) = ingress["spec"].get("defaultBackend") {
        out.push_str(&format!("Default backend:    {}\n", backend(default)));
    }
    let annotations = ingress["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let prefix = "nginx.ingress.kubernetes.io/";
    let canary: Vec<String> = annotations
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.strip_prefix(prefix)
                    .or_else(|| k.strip_prefix("switchyard.dev/"))?,
                v,
            ))
        })
        .filter(|(k, _)| k.starts_with("canary"))
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    if !canary.is_empty() {
        out.push_str(&format!("Canary:             {}\n", canary.join(", ")));
        let error = ingress["status"]["loadBalancer"]["ingress"][0]["ports"][0]["error"].as_str();
        let served = ingress["status"]["loadBalancer"]["ingress"].is_array();
        let merged = match (served, error) {
            (_, Some(error)) => format!("no: {error}"),
            (true, None) => "yes".to_string(),
            (false, None) => "not yet (no ingress has served it)".to_string(),
        };
        out.push_str(&format!("Canary merged:      {merged}\n"));
    }
    out
}

fn describe_object(object: &Value) -> String {
    let meta = &object["metadata"];
    let map_text = |v: &Value| {
        let entries: Vec<String> = v
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != LAST_APPLIED)
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        if entries.is_empty() {
            "<none>".to_string()
        } else {
            entries.join("\n                    ")
        }
    };
    let mut out = String::new();
    out.push_str(&format!(
        "Name:               {}\n",
        meta["name"].as_str().unwrap_or("")
    ));
    if let Some(ns) = meta["namespace"].as_str() {
        out.push_str(&format!("Namespace:          {ns}\n"));
    }
    out.push_str(&format!(
        "Kind:               {}\n",
        object["kind"].as_str().unwrap_or("")
    ));
    out.push_str(&format!(
        "Labels:             {}\n",
        map_text(&meta["labels"])
    ));
    out.push_str(&format!(
        "Annotations:        {}\n",
        map_text(&meta["annotations"])
    ));
    out.push_str(&format!(
        "CreationTimestamp:  {}\n",
        meta["creationTimestamp"].as_str().unwrap_or("")
    ));
    if let Some(deleting) = meta["deletionTimestamp"].as_str() {
        out.push_str(&format!("DeletionTimestamp:  {deleting}\n"));
    }
    for section in ["spec", "status"] {
        if let Some(body) = object.get(section).filter(|v| !v.is_null()) {
            let title = if section == "spec" { "Spec" } else { "Status" };
            out.push_str(&format!("{title}:\n"));
            for line in printers::yaml(body).lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    for (field, title) in [("data", "Data"), ("involvedObject", "Involved Object")] {
        if let Some(body) = object.get(field) {
            out.push_str(&format!("{title}:\n"));
            for line in printers::yaml(body).lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    out
}

/// Shown by `get -o yaml`, but noise in `describe`.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `delete -f` or `delete KIND NAME...`.
pub async fn delete(
    client: &Client,
    args: &[String],
    files: &[PathBuf],
    namespace: &str,
    cascade: &str,
) -> anyhow::Result<ExitCode> {
    let policy = match cascade {
        "background" | "true" => "Background",
        "foreground" => "Foreground",
        "orphan" | "false" => "Orphan",
        other => bail!("--cascade must be background, foreground or orphan (got {other:?})"),
    };
    let mut targets: Vec<(&'static KindInfo, String, String)> = Vec::new();
    if !files.is_empty() {
        let loaded = load_paths(files, &mut std::io::stdin().lock());
        if let Some(error) = loaded.errors.first() {
            bail!("{error}");
        }
        for m in &loaded.manifests {
            let key = m.key();
            let ns = if m.resource.metadata().namespace.is_some() {
                key.namespace
            } else {
                namespace.to_string()
            };
            targets.push((m.resource.info(), ns, key.name));
        }
    } else {
        let (info, names) = kind_and_names(args)?;
        if names.is_empty() {
            bail!(
                "name what to delete, e.g. `delete {} NAME` or `delete -f FILE`",
                info.plural
            );
        }
        targets.extend(names.into_iter().map(|n| (info, namespace.to_string(), n)));
    }
    let mut code = ExitCode::SUCCESS;
    for (info, ns, name) in targets {
        let path = format!(
            "{}/{name}?propagationPolicy={policy}",
            collection_path(info, Some(&ns))
        );
        match client.call(Method::DELETE, &path, None).await {
            Ok(_) => write_out(&format!("{} {name:?} deleted\n", info.resource_name()))?,
            Err(error) => {
                eprintln!("error: {error}");
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

/// `server`: runs until SIGINT or SIGTERM.
pub async fn server(config: switchyard_local::ServerConfig) -> anyhow::Result<ExitCode> {
    let data_dir = config.data_dir.clone();
    let running = switchyard_local::start(config).await?;
    let off = |address: Option<std::net::SocketAddr>| {
        address.map_or_else(|| "off".to_string(), |a| a.to_string())
    };
    let ingress = running
        .ingress_address
        .map_or_else(|| "off".to_string(), |a| format!("http://{a}"));
    eprintln!(
        "switchyard server: API {}, ingress {ingress}, cluster DNS {}, data dir {}\n\
         kubectl: export KUBECONFIG={}; stop with Ctrl-C",
        running.url,
        off(running.dns_address),
        data_dir.display(),
        running.kubeconfig.display(),
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("shutting down");
    running.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// `kubeconfig`: prints the running server's kubeconfig, its path, or merges it.
pub fn kubeconfig(data_dir: &Path, merge: bool, path_only: bool) -> anyhow::Result<ExitCode> {
    use switchyard_local::kubeconfig;
    let path = data_dir.join(switchyard_local::server::files::KUBECONFIG);
    // The file outlives the server; its address is only right while the server runs.
    crate::client::Client::connect(data_dir)?;
    let ours = kubeconfig::read(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .with_context(|| format!("{} is missing: restart the server", path.display()))?;
    if path_only {
        write_out(&format!("{}\n", path.display()))?;
    } else if merge {
        let target = user_kubeconfig()?;
        let existing =
            kubeconfig::read(&target).with_context(|| format!("reading {}", target.display()))?;
        let merged = kubeconfig::merge(existing, &ours);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        switchyard_local::pki::write_private(&target, &kubeconfig::to_yaml(&merged))?;
        eprintln!(
            "merged context {:?} into {} and made it current",
            kubeconfig::CONTEXT,
            target.display()
        );
    } else {
        write_out(&kubeconfig::to_yaml(&ours))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// kubectl's kubeconfig: the first file of $KUBECONFIG, else ~/.kube/config.
fn user_kubeconfig() -> anyhow::Result<PathBuf> {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .as_deref()
        .and_then(|v| std::env::split_paths(v).find(|p| !p.as_os_str().is_empty()))
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME").context("HOME is not set; set KUBECONFIG")?;
    Ok(PathBuf::from(home).join(".kube/config"))
}

fn with_query(path: &str, query: &[String]) -> String {
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// Writes to stdout, treating a closed pipe (`| head`) as success.
pub fn write_out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}
