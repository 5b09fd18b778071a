//! The node agent of the single-host engine: what the kubelet does, with processes
//! instead of containers. Each pod's containers run as local processes in their own
//! process groups, on the pod's own loopback address, with probes, restart policies and
//! the kubelet's crash-loop back-off, logs per container, and a Kubernetes PodStatus.
//!
//! The agent knows nothing of the store: the engine hands it pods to run and stop, and
//! writes back the statuses and events it reports.

#![forbid(unsafe_code)]

pub mod images;
pub mod logs;
pub mod pod;
pub mod probes;
pub mod process;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, watch};

pub use images::{ImageEntry, ImageMap};
pub use pod::{NodeEvent, PodRun};

/// Configuration of the node agent.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where pod state (logs, pid files) lives.
    pub state_dir: PathBuf,
    /// How images resolve to commands.
    pub images: ImageMap,
    /// This executable, which runs the built-in demo app.
    pub self_exe: PathBuf,
}

struct PodHandle {
    stop: watch::Sender<Option<Duration>>,
    status: watch::Receiver<Value>,
    task: tokio::task::JoinHandle<()>,
}

/// The node agent.
pub struct Node {
    config: NodeConfig,
    images: Arc<ImageMap>,
    pods: Mutex<HashMap<String, PodHandle>>,
    events: mpsc::UnboundedSender<NodeEvent>,
    events_rx: Mutex<Option<mpsc::UnboundedReceiver<NodeEvent>>>,
}

/// How often oversized logs are rotated.
const LOG_CHECK: Duration = Duration::from_secs(5);

impl Node {
    /// A node agent with no pods.
    pub fn new(config: NodeConfig) -> Node {
        let (events, events_rx) = mpsc::unbounded_channel();
        Node {
            images: Arc::new(config.images.clone()),
            config,
            pods: Mutex::new(HashMap::new()),
            events,
            events_rx: Mutex::new(Some(events_rx)),
        }
    }

    /// The stream of events about pods (taken once, by the engine).
    pub fn take_events(&self) -> Option<mpsc::UnboundedReceiver<NodeEvent>> {
        self.events_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Stops every process a previous (killed) server left running. The engine calls this
    /// once at start, before running any pod: pods are stopped and replaced, not re-adopted.
    pub fn kill_orphans(&self) -> usize {
        process::kill_recorded(&self.config.state_dir)
    }

    /// The directory of a pod's state.
    pub fn pod_dir(state_dir: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
        state_dir.join(format!("{namespace}_{name}_{uid}"))
    }

    /// The log directory of a container.
    pub fn log_dir(&self, namespace: &str, name: &str, uid: &str, container: &str) -> PathBuf {
        Self::pod_dir(&self.config.state_dir, namespace, name, uid).join(container)
    }

    /// Starts a pod, or returns the status stream of the one already running.
    pub fn start(&self, run: PodRun) -> watch::Receiver<Value> {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(handle) = pods.get(&run.uid) {
            return handle.status.clone();
        }
        let uid = run.uid.clone();
        let dir = Self::pod_dir(&self.config.state_dir, &run.namespace, &run.name, &run.uid);
        let _ = std::fs::create_dir_all(&dir);
        let (shared, status) = pod::PodShared::new(
            run,
            dir,
            self.events.clone(),
            self.images.clone(),
            self.config.self_exe.clone(),
        );
        let (stop, stop_rx) = watch::channel(None);
        let task = tokio::spawn(async move {
            // Init containers one after another, each to success, before any other starts.
            let init = shared.init_count();
            for index in 0..init {
                match pod::run_container(shared.clone(), index, stop_rx.clone()).await {
                    Some(0) => {}
                    Some(_) => {
                        // Failed under restartPolicy Never: the pod failed.
                        shared.fail_init();
                        let mut stop_rx = stop_rx.clone();
                        let _ = stop_rx.wait_for(Option::is_some).await;
                        return;
                    }
                    None => return,
                }
            }
            if init > 0 {
                shared.initialized();
            }
            let mut containers = Vec::new();
            for index in init..init + shared.run.spec.containers.len() {
                containers.push(tokio::spawn(pod::run_container(
                    shared.clone(),
                    index,
                    stop_rx.clone(),
                )));
            }
            let janitor_dir = shared.dir.clone();
            let names: Vec<String> = shared
                .run
                .spec
                .init_containers
                .iter()
                .flatten()
                .chain(&shared.run.spec.containers)
                .map(|c| c.name.clone())
                .collect();
            let janitor = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LOG_CHECK).await;
                    for name in &names {
                        logs::rotate_if_large(&janitor_dir.join(name));
                    }
                }
            });
            for container in containers {
                let _ = container.await;
            }
            janitor.abort();
        });
        pods.insert(
            uid,
            PodHandle {
                stop,
                status: status.clone(),
                task,
            },
        );
        status
    }

    /// Whether a pod is running here.
    pub fn is_running(&self, uid: &str) -> bool {
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(uid)
    }

    /// Stops a pod: SIGTERM to each container's process group, SIGKILL after `grace`;
    /// returns once every process is gone.
    pub async fn stop(&self, uid: &str, grace: Duration) {
        let handle = self
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
        if let Some(handle) = handle {
            let _ = handle.stop.send(Some(grace));
            let _ = handle.task.await;
        }
    }

    /// Stops every pod (server shutdown).
    pub async fn stop_all(&self, grace: Duration) {
        let handles: Vec<PodHandle> = self
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, h)| h)
            .collect();
        // Signal every pod first, so that their grace periods run concurrently.
        for handle in &handles {
            let _ = handle.stop.send(Some(grace));
        }
        for handle in handles {
            let _ = handle.task.await;
        }
    }

    /// Removes a deleted pod's state (its logs).
    pub fn forget(&self, namespace: &str, name: &str, uid: &str) {
        let _ =
            std::fs::remove_dir_all(Self::pod_dir(&self.config.state_dir, namespace, name, uid));
    }
}
