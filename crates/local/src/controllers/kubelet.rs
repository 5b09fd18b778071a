//! The kubelet: binds pods to the single node, gives each its own loopback IP, runs it
//! through the node agent, writes the agent's PodStatus back, and stops and releases pods
//! being deleted.
//!
//! Persist before acting: a pod's finalizer, node name and IP are committed before any of
//! its processes start, so a server killed at any instant knows on restart which pods it
//! ran and where. On restart the agent first kills what the old server left running, then
//! every admitted pod is started again (stop-and-replace, see ARCHITECTURE.md).

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_node::{Node, PodRun};
use switchyard_store::{ObjectKey, Store, StoreError, Subresource, WatchEvent, now_rfc3339};

use crate::controllers::string_map;
use crate::runtime::{Context, Controller, Next, ReconcileError, ReconcileFuture};

/// Finalizer that holds a pod while its processes stop.
pub const FINALIZER: &str = "switchyard.dev/node";
/// The one node's name.
pub const NODE_NAME: &str = "switchyard";
/// Pod addresses: inside 127.16.0.0/12 (from 127.16.0.10).
const POD_RANGE_START: u32 = u32::from_be_bytes([127, 16, 0, 10]);
const POD_RANGE_END: u32 = u32::from_be_bytes([127, 31, 255, 254]);
/// Longest a server shutdown waits for pods to stop.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The kubelet controller.
pub struct Kubelet {
    node: Arc<Node>,
    /// Status forwarders by pod uid.
    forwarders: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    stopping: Arc<Mutex<HashSet<String>>>,
    /// The uid last seen for each pod key, to stop pods removed behind our back.
    known: Mutex<HashMap<ObjectKey, (String, String)>>,
}

impl Kubelet {
    /// A kubelet over a node agent.
    pub fn new(node: Arc<Node>) -> Kubelet {
        Kubelet {
            node,
            forwarders: Mutex::new(HashMap::new()),
            stopping: Arc::new(Mutex::new(HashSet::new())),
            known: Mutex::new(HashMap::new()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A free pod address, picked at random in the range so that several servers on one
/// host (one per data dir) rarely meet; addresses in use by stored pods or by any
/// listening socket on the host are skipped.
fn allocate_ip(store: &Store) -> Option<Ipv4Addr> {
    let (pods, _) = store.list("Pod", None);
    let mut used: HashSet<u32> = pods
        .iter()
        .filter_map(|p| p["status"]["podIP"].as_str()?.parse::<Ipv4Addr>().ok())
        .map(u32::from)
        .collect();
    used.extend(listening_addresses_cached());
    let span = POD_RANGE_END - POD_RANGE_START + 1;
    let start = (uuid::Uuid::new_v4().as_u128() % u128::from(span)) as u32;
    (0..span)
        .map(|i| POD_RANGE_START + (start + i) % span)
        .find(|ip| !used.contains(ip))
        .map(Ipv4Addr::from)
}

/// [`listening_addresses`], re-read at most every two seconds: the kernel formats every
/// TCP socket of the host for /proc/net/tcp, which is costly when many pods start at once.
/// Addresses are random in a range of a million, so a stale view rarely matters.
fn listening_addresses_cached() -> HashSet<u32> {
    static CACHE: Mutex<Option<(std::time::Instant, HashSet<u32>)>> = Mutex::new(None);
    let mut cache = lock(&CACHE);
    match &*cache {
        Some((at, set)) if at.elapsed() < Duration::from_secs(2) => set.clone(),
        _ => {
            let set = listening_addresses();
            *cache = Some((std::time::Instant::now(), set.clone()));
            set
        }
    }
}

/// IPv4 addresses with a listening TCP socket, from /proc/net/tcp.
fn listening_addresses() -> HashSet<u32> {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            // 0A is TCP_LISTEN; the address is little-endian hex.
            if state != "0A" {
                return None;
            }
            u32::from_str_radix(local.split(':').next()?, 16)
                .ok()
                .map(u32::swap_bytes)
        })
        .collect()
}

fn finalizers(pod: &Value) -> Vec<String> {
    pod["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect()
}

impl Controller for Kubelet {
    fn name(&self) -> &'static str {
        "kubelet"
    }

    fn keys_for(&self, event: &WatchEvent, _: &Store) -> Vec<ObjectKey> {
        if event.key.kind == "Pod" {
            vec![event.key.clone()]
        } else {
            Vec::new()
        }
    }

    fn all_keys(&self, store: &Store) -> Vec<ObjectKey> {
        let (pods, _) = store.list("Pod", None);
        pods.iter()
            .filter_map(|p| {
                Some(ObjectKey {
                    kind: "Pod".into(),
                    namespace: p["metadata"]["namespace"].as_str()?.to_string(),
                    name: p["metadata"]["name"].as_str()?.to_string(),
                })
            })
            .collect()
    }

    fn reconcile<'a>(&'a self, key: &'a ObjectKey, ctx: &'a Context) -> ReconcileFuture<'a> {
        Box::pin(async move { self.sync(key, ctx).await })
    }
}

impl Kubelet {
    async fn sync(&self, key: &ObjectKey, ctx: &Context) -> Result<Next, ReconcileError> {
        let store = &ctx.store;
        let Some(pod) = store.get(key) else {
            // Removed without our finalizer's release (forced): stop what runs.
            if let Some((uid, _)) = lock(&self.known).remove(key) {
                self.stop_in_background(ctx, key.clone(), uid, Duration::ZERO, false);
            }
            return Ok(Next::Done);
        };
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
        lock(&self.known).insert(key.clone(), (uid.clone(), key.name.clone()));

        if pod["metadata"]["deletionTimestamp"].is_string() {
            if finalizers(&pod).iter().any(|f| f == FINALIZER)
                && !lock(&self.stopping).contains(&uid)
            {
                let grace = pod["metadata"]["deletionGracePeriodSeconds"]
                    .as_i64()
                    .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
                    .unwrap_or(30)
                    .max(0) as u64;
                self.stop_in_background(ctx, key.clone(), uid, Duration::from_secs(grace), true);
            }
            return Ok(Next::Done);
        }

        let admitted =
            finalizers(&pod).iter().any(|f| f == FINALIZER) && pod["status"]["podIP"].is_string();
        let pod = if admitted {
            pod
        } else {
            self.admit(key, &pod, ctx)?
        };
        let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
        let terminal =
            matches!(phase, "Succeeded" | "Failed") && pod["spec"]["restartPolicy"] != "Always";
        if !self.node.is_running(&uid) && !terminal {
            self.run(key, &pod, ctx)?;
        }
        Ok(Next::Done)
    }

    /// Binds the pod and allocates its IP, committed before anything runs.
    fn admit(
        &self,
        key: &ObjectKey,
        pod: &Value,
        ctx: &Context,
    ) -> Result<std::sync::Arc<Value>, ReconcileError> {
        let store = &ctx.store;
        let ip = allocate_ip(store).ok_or_else(|| {
            ReconcileError("the pod address range 127.16.0.0/12 is exhausted".into())
        })?;
        let mut list = finalizers(pod);
        if !list.iter().any(|f| f == FINALIZER) {
            list.push(FINALIZER.into());
        }
        store.patch(
            key,
            &json!({"metadata": {"finalizers": list}, "spec": {"nodeName": NODE_NAME}}),
            Subresource::Main,
        )?;
        let now = now_rfc3339();
        let status = json!({"status": {
            "phase": "Pending",
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": ip.to_string(),
            "podIPs": [{"ip": ip.to_string()}],
            "startTime": now,
            "conditions": [{"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}],
        }});
        let admitted = store.patch(key, &status, Subresource::Status)?;
        ctx.recorder.normal(
            &admitted,
            "Scheduled",
            &format!(
                "Successfully assigned {}/{} to {NODE_NAME}",
                key.namespace, key.name
            ),
        );
        for sidecar in admitted["spec"]["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["restartPolicy"] == "Always")
        {
            ctx.recorder.warning(
                &admitted,
                "SidecarNotSupported",
                &format!(
                    "init container {} has restartPolicy Always (a native sidecar); the single-host engine runs it like any init container, so the pod starts only once it exits",
                    sidecar["name"]
                ),
            );
        }
        Ok(admitted)
    }

    fn run(&self, key: &ObjectKey, pod: &Value, ctx: &Context) -> Result<(), ReconcileError> {
        let spec = serde_json::from_value(pod["spec"].clone())
            .map_err(|e| ReconcileError(format!("pod spec does not decode: {e}")))?;
        let ip = pod["status"]["podIP"]
            .as_str()
            .and_then(|ip| ip.parse().ok())
            .ok_or_else(|| ReconcileError("admitted pod has no IP".into()))?;
        // A server restart replaces running containers: that counts as one restart.
        let restart_counts = pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let restarted = i64::from(c["containerID"].is_string());
                Some((
                    c["name"].as_str()?.to_string(),
                    (c["restartCount"].as_i64().unwrap_or(0) + restarted) as i32,
                ))
            })
            .collect();
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
        let run = PodRun {
            uid: uid.clone(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            ip,
            node_name: NODE_NAME.into(),
            labels: string_map(&pod["metadata"]["labels"]),
            annotations: string_map(&pod["metadata"]["annotations"]),
            spec,
            restart_counts,
            start_time: pod["status"]["startTime"].as_str().map(str::to_string),
            service_env: if pod["spec"]["enableServiceLinks"] == false {
                Vec::new()
            } else {
                service_links(&ctx.store, &key.namespace)
            },
        };
        let mut status = self.node.start(run);
        let store = ctx.store.clone();
        let key = key.clone();
        let forwarder = tokio::spawn(async move {
            loop {
                let latest = status.borrow_and_update().clone();
                if !latest.is_null() {
                    let store = store.clone();
                    let key = key.clone();
                    let write = tokio::task::spawn_blocking(move || {
                        store.patch(&key, &json!({"status": latest}), Subresource::Status)
                    })
                    .await;
                    if matches!(write, Ok(Err(StoreError::NotFound { .. }))) {
                        return;
                    }
                }
                if status.changed().await.is_err() {
                    return;
                }
            }
        });
        if let Some(old) = lock(&self.forwarders).insert(uid, forwarder) {
            old.abort();
        }
        Ok(())
    }

    /// Stops a pod's processes without blocking other pods, then releases it.
    fn stop_in_background(
        &self,
        ctx: &Context,
        key: ObjectKey,
        uid: String,
        grace: Duration,
        release: bool,
    ) {
        lock(&self.stopping).insert(uid.clone());
        let node = self.node.clone();
        let store = ctx.store.clone();
        let stopping = self.stopping.clone();
        let forwarder = lock(&self.forwarders).remove(&uid);
        tokio::spawn(async move {
            node.stop(&uid, grace).await;
            if let Some(forwarder) = forwarder {
                forwarder.abort();
            }
            if release {
                let key2 = key.clone();
                let uid2 = uid.clone();
                let _ =
                    tokio::task::spawn_blocking(move || release_finalizer(&store, &key2, &uid2))
                        .await;
            }
            node.forget(&key.namespace, &key.name, &uid);
            lock(&stopping).remove(&uid);
        });
    }
}

/// Kubernetes' service environment variables (docker-links style) for the Services of a
/// namespace that have a ClusterIP, as the kubelet's `getServiceEnvVarMap` builds them.
pub fn service_links(store: &Store, namespace: &str) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for service in store.list("Service", Some(namespace)).0 {
        let Some(ip) = service["spec"]["clusterIP"]
            .as_str()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        else {
            continue;
        };
        let ports = service["spec"]["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let name = service["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_ascii_uppercase()
            .replace('-', "_");
        let first_port = first["port"].as_i64().unwrap_or(0);
        let first_proto = first["protocol"]
            .as_str()
            .unwrap_or("TCP")
            .to_ascii_lowercase();
        env.push((format!("{name}_SERVICE_HOST"), ip.to_string()));
        env.push((format!("{name}_SERVICE_PORT"), first_port.to_string()));
        env.push((
            format!("{name}_PORT"),
            format!("{first_proto}://{ip}:{first_port}"),
        ));
        for port in &ports {
            let number = port["port"].as_i64().unwrap_or(0);
            let protocol = port["protocol"].as_str().unwrap_or("TCP");
            if let Some(port_name) = port["name"].as_str().filter(|n| !n.is_empty()) {
                env.push((
                    format!(
                        "{name}_SERVICE_PORT_{}",
                        port_name.to_ascii_uppercase().replace('-', "_")
                    ),
                    number.to_string(),
                ));
            }
            let prefix = format!("{name}_PORT_{number}_{protocol}");
            let lower = protocol.to_ascii_lowercase();
            env.push((prefix.clone(), format!("{lower}://{ip}:{number}")));
            env.push((format!("{prefix}_PROTO"), lower));
            env.push((format!("{prefix}_PORT"), number.to_string()));
            env.push((format!("{prefix}_ADDR"), ip.to_string()));
        }
    }
    env
}

fn release_finalizer(store: &Store, key: &ObjectKey, uid: &str) -> Result<(), StoreError> {
    let Some(pod) = store.get(key) else {
        return Ok(());
    };
    if pod["metadata"]["uid"] != uid {
        return Ok(());
    }
    let remaining: Vec<String> = finalizers(&pod)
        .into_iter()
        .filter(|f| f != FINALIZER)
        .collect();
    store.patch(
        key,
        &json!({"metadata": {"finalizers": remaining}}),
        Subresource::Main,
    )?;
    Ok(())
}
