//! kubectl-style output: tables per kind, ages, and the yaml/json/name formats.

use serde_json::Value;
use switchyard_api::KindInfo;
use switchyard_api::k8s_openapi::jiff::Timestamp;

/// kubectl's human duration (`HumanDuration` in k8s.io/apimachinery).
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        match s % 60 {
            0 => format!("{m}m"),
            rest => format!("{m}m{rest}s"),
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        match m % 60 {
            0 => format!("{h}h"),
            rest => format!("{h}h{rest}m"),
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        match h % 24 {
            0 => format!("{d}d"),
            rest => format!("{d}d{rest}h"),
        }
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else if h < 24 * 365 * 8 {
        format!("{}y{}d", d / 365, d % 365)
    } else {
        format!("{}y", d / 365)
    }
}

/// Age of an RFC 3339 timestamp, or `<unknown>`.
pub fn age(timestamp: &Value) -> String {
    timestamp
        .as_str()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map_or_else(
            || "<unknown>".to_string(),
            |t| human_duration(Timestamp::now().as_second() - t.as_second()),
        )
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn int(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

fn or_none(s: String) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s
    }
}

fn selector_text(selector: &Value) -> String {
    let map = if selector["matchLabels"].is_object() {
        &selector["matchLabels"]
    } else {
        selector
    };
    map.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn containers(spec: &Value) -> (String, String) {
    let list = spec["containers"].as_array().cloned().unwrap_or_default();
    let names = list
        .iter()
        .map(|c| text(&c["name"]))
        .collect::<Vec<_>>()
        .join(",");
    let images = list
        .iter()
        .map(|c| text(&c["image"]))
        .collect::<Vec<_>>()
        .join(",");
    (names, images)
}

/// Columns of a kind: (header, wide-only, cell).
type Column = (&'static str, bool, fn(&Value) -> String);

fn columns(kind: &str) -> Vec<Column> {
    let age_col: Column = ("AGE", false, |o| age(&o["metadata"]["creationTimestamp"]));
    let mut cols: Vec<Column> = match kind {
        "Pod" => vec![
            ("READY", false, |o| {
                let statuses = o["status"]["containerStatuses"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
                let ready = statuses.iter().filter(|s| s["ready"] == true).count();
                format!("{ready}/{total}")
            }),
            ("STATUS", false, pod_status),
            ("RESTARTS", false, |o| {
                let statuses = o["status"]["containerStatuses"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                statuses
                    .iter()
                    .map(|s| int(&s["restartCount"]))
                    .sum::<i64>()
                    .to_string()
            }),
            age_col,
            ("IP", true, |o| or_none(text(&o["status"]["podIP"]))),
            ("NODE", true, |o| or_none(text(&o["spec"]["nodeName"]))),
        ],
        "Deployment" => vec![
            ("READY", false, |o| {
                format!(
                    "{}/{}",
                    int(&o["status"]["readyReplicas"]),
                    o["spec"]["replicas"].as_i64().unwrap_or(1)
                )
            }),
            ("UP-TO-DATE", false, |o| {
                int(&o["status"]["updatedReplicas"]).to_string()
            }),
            ("AVAILABLE", false, |o| {
                int(&o["status"]["availableReplicas"]).to_string()
            }),
            age_col,
            ("CONTAINERS", true, |o| {
                containers(&o["spec"]["template"]["spec"]).0
            }),
            ("IMAGES", true, |o| {
                containers(&o["spec"]["template"]["spec"]).1
            }),
            ("SELECTOR", true, |o| selector_text(&o["spec"]["selector"])),
        ],
        "ReplicaSet" => vec![
            ("DESIRED", false, |o| {
                o["spec"]["replicas"].as_i64().unwrap_or(1).to_string()
            }),
            ("CURRENT", false, |o| {
                int(&o["status"]["replicas"]).to_string()
            }),
            ("READY", false, |o| {
                int(&o["status"]["readyReplicas"]).to_string()
            }),
            age_col,
            ("CONTAINERS", true, |o| {
                containers(&o["spec"]["template"]["spec"]).0
            }),
            ("IMAGES", true, |o| {
                containers(&o["spec"]["template"]["spec"]).1
            }),
            ("SELECTOR", true, |o| selector_text(&o["spec"]["selector"])),
        ],
        "Service" => vec![
            ("TYPE", false, |o| {
                o["spec"]["type"]
                    .as_str()
                    .unwrap_or("ClusterIP")
                    .to_string()
            }),
            ("CLUSTER-IP", false, |o| {
                or_none(text(&o["spec"]["clusterIP"]))
            }),
            ("EXTERNAL-IP", false, service_external_ip),
            ("PORT(S)", false, service_ports),
            age_col,
            ("SELECTOR", true, |o| {
                or_none(selector_text(&o["spec"]["selector"]))
            }),
        ],
        "EndpointSlice" => vec![
            ("ADDRESSTYPE", false, |o| text(&o["addressType"])),
            ("PORTS", false, |o| {
                let ports: Vec<String> = o["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| text(&p["port"]))
                    .collect();
                or_none(ports.join(","))
            }),
            ("ENDPOINTS", false, |o| {
                let addresses: Vec<String> = o["endpoints"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                    .map(|a| text(&a))
                    .collect();
                or_none(addresses.join(","))
            }),
            age_col,
        ],
        "Ingress" => vec![
            ("CLASS", false, |o| {
                or_none(text(&o["spec"]["ingressClassName"]))
            }),
            ("HOSTS", false, |o| {
                let hosts: Vec<String> = o["spec"]["rules"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| text(&r["host"]))
                    .map(|h| if h.is_empty() { "*".into() } else { h })
                    .collect();
                if hosts.is_empty() {
                    "*".to_string()
                } else {
                    hosts.join(",")
                }
            }),
            ("ADDRESS", false, |o| {
                let ips: Vec<String> = o["status"]["loadBalancer"]["ingress"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| text(&i["ip"]))
                    .collect();
                ips.join(",")
            }),
            ("PORTS", false, |o| {
                if o["spec"]["tls"].is_array() {
                    "80, 443".into()
                } else {
                    "80".into()
                }
            }),
            age_col,
        ],
        "IngressClass" => vec![
            ("CONTROLLER", false, |o| text(&o["spec"]["controller"])),
            ("PARAMETERS", false, |o| {
                or_none(text(&o["spec"]["parameters"]["name"]))
            }),
            age_col,
        ],
        "Namespace" => vec![("STATUS", false, |o| text(&o["status"]["phase"])), age_col],
        "ConfigMap" => vec![
            ("DATA", false, |o| {
                let count = |f: &str| o[f].as_object().map_or(0, |m| m.len());
                (count("data") + count("binaryData")).to_string()
            }),
            age_col,
        ],
        "Rollout" => vec![
            ("STRATEGY", false, |o| {
                let canary = o["spec"]["strategy"]["canary"].is_object();
                if canary {
                    "Canary".into()
                } else {
                    "BlueGreen".into()
                }
            }),
            ("STATUS", false, |o| text(&o["status"]["phase"])),
            (
                "STEP",
                false,
                |o| match o["spec"]["strategy"]["canary"]["steps"].as_array() {
                    Some(steps) => {
                        format!("{}/{}", int(&o["status"]["currentStepIndex"]), steps.len())
                    }
                    None => "-".into(),
                },
            ),
            ("SET-WEIGHT", false, |o| {
                if o["spec"]["strategy"]["canary"].is_object() {
                    int(&o["status"]["canary"]["weight"]).to_string()
                } else {
                    "-".into()
                }
            }),
            ("READY", false, |o| {
                let desired = o["spec"]["replicas"].as_i64().unwrap_or(1);
                format!("{}/{desired}", int(&o["status"]["readyReplicas"]))
            }),
            age_col,
        ],
        "AnalysisRun" => vec![
            ("STATUS", false, |o| text(&o["status"]["phase"])),
            // Each metric's latest measurement: `name=value (phase)`.
            ("METRICS", false, |o| {
                let metrics: Vec<String> = o["status"]["metricResults"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        let last = r["measurements"].as_array().and_then(|m| m.last());
                        format!(
                            "{}={} ({})",
                            r["name"].as_str().unwrap_or(""),
                            last.and_then(|m| m["value"].as_str()).unwrap_or("-"),
                            r["phase"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                if metrics.is_empty() {
                    "<none>".into()
                } else {
                    metrics.join(", ")
                }
            }),
            ("MESSAGE", true, |o| text(&o["status"]["message"])),
            age_col,
        ],
        _ => vec![age_col],
    };
    cols.insert(0, ("NAME", false, |o| text(&o["metadata"]["name"])));
    cols
}

fn pod_status(o: &Value) -> String {
    if o["metadata"]["deletionTimestamp"].is_string() {
        return "Terminating".into();
    }
    // kubectl's order: the first init container that has not succeeded names the status.
    let init = o["status"]["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, s) in init.iter().enumerate() {
        let terminated = &s["state"]["terminated"];
        if terminated["exitCode"] == 0 {
            continue;
        }
        if let Some(reason) = terminated["reason"].as_str() {
            return format!("Init:{reason}");
        }
        if let Some(reason) = s["state"]["waiting"]["reason"]
            .as_str()
            .filter(|r| *r != "PodInitializing")
        {
            return format!("Init:{reason}");
        }
        return format!("Init:{i}/{}", init.len());
    }
    let statuses = o["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for s in &statuses {
        if let Some(reason) = s["state"]["waiting"]["reason"].as_str() {
            return reason.to_string();
        }
        if let Some(reason) = s["state"]["terminated"]["reason"].as_str() {
            return reason.to_string();
        }
    }
    o["status"]["phase"]
        .as_str()
        .unwrap_or("Pending")
        .to_string()
}

fn service_external_ip(o: &Value) -> String {
    match o["spec"]["type"].as_str() {
        Some("ExternalName") => text(&o["spec"]["externalName"]),
        Some("LoadBalancer") => {
            let ips: Vec<String> = o["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| text(&i["ip"]))
                .collect();
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        _ => "<none>".into(),
    }
}

fn service_ports(o: &Value) -> String {
    let ports: Vec<String> = o["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let protocol = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(node) => format!("{}:{node}/{protocol}", text(&p["port"])),
                None => format!("{}/{protocol}", text(&p["port"])),
            }
        })
        .collect();
    or_none(ports.join(","))
}

fn event_columns() -> Vec<Column> {
    vec![
        ("LAST SEEN", false, |o| age(&o["lastTimestamp"])),
        ("TYPE", false, |o| text(&o["type"])),
        ("REASON", false, |o| text(&o["reason"])),
        ("OBJECT", false, |o| {
            format!(
                "{}/{}",
                text(&o["involvedObject"]["kind"]).to_ascii_lowercase(),
                text(&o["involvedObject"]["name"])
            )
        }),
        ("MESSAGE", false, |o| text(&o["message"])),
    ]
}

/// Table rows (header first) for objects of one kind.
pub fn table_rows(
    info: &KindInfo,
    items: &[Value],
    wide: bool,
    namespaces: bool,
) -> Vec<Vec<String>> {
    let cols = if info.kind == "Event" {
        event_columns()
    } else {
        columns(info.kind)
    };
    let cols: Vec<&Column> = cols
        .iter()
        .filter(|(_, wide_only, _)| wide || !wide_only)
        .collect();
    let mut rows = Vec::with_capacity(items.len() + 1);
    let mut header: Vec<String> = cols.iter().map(|(h, _, _)| h.to_string()).collect();
    if namespaces {
        header.insert(0, "NAMESPACE".into());
    }
    rows.push(header);
    for item in items {
        let mut row: Vec<String> = cols.iter().map(|(_, _, cell)| cell(item)).collect();
        if namespaces {
            row.insert(0, text(&item["metadata"]["namespace"]));
        }
        rows.push(row);
    }
    rows
}

/// Aligns rows into columns separated by three spaces, as kubectl's tabwriter does.
pub fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `deployment.apps/web`.
pub fn name_of(info: &KindInfo, object: &Value) -> String {
    format!(
        "{}/{}",
        info.resource_name(),
        text(&object["metadata"]["name"])
    )
}

/// YAML for one object or a list.
pub fn yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|e| format!("# cannot render YAML: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubectl() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (10 * 3600, "10h"),
            (3 * 86400 + 3600, "3d1h"),
            (30 * 86400, "30d"),
            (3 * 365 * 86400, "3y0d"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(human_duration(seconds), expected, "{seconds}");
        }
    }

    #[test]
    fn tables_align_like_kubectl() {
        let rows = vec![
            vec!["NAME".to_string(), "TYPE".to_string(), "AGE".to_string()],
            vec!["web".to_string(), "ClusterIP".to_string(), "5s".to_string()],
        ];
        assert_eq!(
            align(&rows),
            "NAME   TYPE        AGE\nweb    ClusterIP   5s\n"
        );
    }
}
