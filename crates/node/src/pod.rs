//! One pod: its containers as processes, restarted per restartPolicy with the kubelet's
//! CrashLoopBackOff, probed, logged, and summarised as a Kubernetes PodStatus.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, PodSpec, Probe};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::images::{ImageMap, Resolved};
use crate::probes::{self, Counter, Outcome, Timing};
use crate::{logs, process};

/// What the node needs to run a pod.
#[derive(Debug, Clone)]
pub struct PodRun {
    /// The pod's uid.
    pub uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The pod's own loopback address.
    pub ip: Ipv4Addr,
    /// Node name (`spec.nodeName`).
    pub node_name: String,
    /// Labels (for `fieldRef: metadata.labels['x']`).
    pub labels: BTreeMap<String, String>,
    /// Annotations (for `fieldRef: metadata.annotations['x']`).
    pub annotations: BTreeMap<String, String>,
    /// The pod spec.
    pub spec: PodSpec,
    /// Restart counts already recorded in the stored status, so they keep growing across
    /// a server restart.
    pub restart_counts: HashMap<String, i32>,
    /// `status.startTime` already recorded, if any.
    pub start_time: Option<String>,
    /// Environment every container gets before its own `env`: Kubernetes' service links
    /// (`MY_APP_SERVICE_HOST`, ...) for the Services that exist when the pod starts.
    pub service_env: Vec<(String, String)>,
}

/// Something worth an Event on the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    /// The pod's uid.
    pub pod_uid: String,
    /// Warning (true) or Normal.
    pub warning: bool,
    /// Reason, as the kubelet's (`Started`, `BackOff`, `Unhealthy`, ...).
    pub reason: String,
    /// Message.
    pub message: String,
}

/// The kubelet's crash-loop back-off: the first restart is immediate, then 10 s doubling
/// up to 5 minutes; a container that ran 10 minutes starts over.
pub fn crash_backoff(restarts_in_a_row: u32) -> Duration {
    match restarts_in_a_row {
        0 => Duration::ZERO,
        n => Duration::from_secs(10u64.saturating_mul(1 << (n - 1).min(10))).min(MAX_BACKOFF),
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq)]
enum State {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: String,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        started_at: String,
        finished_at: String,
    },
}

impl State {
    fn to_json(&self) -> Value {
        match self {
            State::Waiting { reason, message } => {
                let mut w = json!({"reason": reason});
                if !message.is_empty() {
                    w["message"] = json!(message);
                }
                json!({"waiting": w})
            }
            State::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            State::Terminated {
                exit_code,
                signal,
                reason,
                started_at,
                finished_at,
            } => {
                let mut t = json!({"exitCode": exit_code, "reason": reason, "startedAt": started_at, "finishedAt": finished_at});
                if let Some(signal) = signal {
                    t["signal"] = json!(signal);
                }
                json!({"terminated": t})
            }
        }
    }
}

#[derive(Debug, Clone)]
struct ContainerStatus {
    name: String,
    image: String,
    restart_count: i32,
    state: State,
    last_state: Option<State>,
    ready: bool,
    started: bool,
    ever_started: bool,
}

/// Shared state of a pod's tasks.
pub(crate) struct PodShared {
    pub run: PodRun,
    pub dir: PathBuf,
    /// Init containers' statuses first, then the regular containers' (see [`Self::spec`]).
    containers: Mutex<Vec<ContainerStatus>>,
    /// How many of `containers` are init containers.
    init_count: usize,
    /// An init container failed for good (restartPolicy Never): the pod failed.
    init_failed: std::sync::atomic::AtomicBool,
    transitions: Mutex<HashMap<&'static str, (bool, String)>>,
    status: watch::Sender<Value>,
    events: mpsc::UnboundedSender<NodeEvent>,
    images: Arc<ImageMap>,
    self_exe: PathBuf,
}

pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl PodShared {
    pub fn new(
        run: PodRun,
        dir: PathBuf,
        events: mpsc::UnboundedSender<NodeEvent>,
        images: Arc<ImageMap>,
        self_exe: PathBuf,
    ) -> (Arc<PodShared>, watch::Receiver<Value>) {
        let init = run.spec.init_containers.as_deref().unwrap_or_default();
        let waiting_reason = if init.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        let containers = init
            .iter()
            .map(|c| (c, "PodInitializing"))
            .chain(run.spec.containers.iter().map(|c| (c, waiting_reason)))
            .map(|(c, reason)| ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                restart_count: run.restart_counts.get(&c.name).copied().unwrap_or(0),
                state: State::Waiting {
                    reason: reason.into(),
                    message: String::new(),
                },
                last_state: None,
                ready: false,
                started: false,
                ever_started: false,
            })
            .collect();
        let init_count = init.len();
        let (status, rx) = watch::channel(Value::Null);
        let shared = Arc::new(PodShared {
            run,
            dir,
            containers: Mutex::new(containers),
            init_count,
            init_failed: std::sync::atomic::AtomicBool::new(false),
            transitions: Mutex::new(HashMap::new()),
            status,
            events,
            images,
            self_exe,
        });
        shared.publish();
        (shared, rx)
    }

    /// The spec of container `index` (init containers first, as in `containers`).
    pub fn spec(&self, index: usize) -> &Container {
        match index.checked_sub(self.init_count) {
            None => &self.run.spec.init_containers.as_deref().unwrap_or_default()[index],
            Some(i) => &self.run.spec.containers[i],
        }
    }

    /// How many init containers the pod has.
    pub fn init_count(&self) -> usize {
        self.init_count
    }

    /// Marks the pod failed by an init container and republishes.
    pub fn fail_init(&self) {
        self.init_failed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.publish();
    }

    /// The regular containers wait no longer for initialization.
    pub fn initialized(&self) {
        let mut containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        for c in containers.iter_mut().skip(self.init_count) {
            if matches!(&c.state, State::Waiting { reason, .. } if reason == "PodInitializing") {
                c.state = State::Waiting {
                    reason: "ContainerCreating".into(),
                    message: String::new(),
                };
            }
        }
        drop(containers);
        self.publish();
    }

    fn event(&self, warning: bool, reason: &str, message: String) {
        let _ = self.events.send(NodeEvent {
            pod_uid: self.run.uid.clone(),
            warning,
            reason: reason.to_string(),
            message,
        });
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut ContainerStatus)) {
        {
            let mut containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
            change(&mut containers[index]);
        }
        self.publish();
    }

    /// Recomputes the PodStatus and publishes it when it changed.
    fn publish(&self) {
        let mut init = self
            .containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let containers = init.split_off(self.init_count);
        let initialized = init
            .iter()
            .all(|c| matches!(c.state, State::Terminated { exit_code: 0, .. }));
        let all_ready = !containers.is_empty() && containers.iter().all(|c| c.ready);
        let phase = if self.init_failed.load(std::sync::atomic::Ordering::Relaxed) {
            "Failed"
        } else {
            phase(
                &containers,
                self.run.spec.restart_policy.as_deref().unwrap_or("Always"),
            )
        };
        let mut transitions = self.transitions.lock().unwrap_or_else(|e| e.into_inner());
        let mut condition = |name: &'static str, value: bool| {
            let entry = transitions.entry(name).or_insert_with(|| (value, now()));
            if entry.0 != value {
                *entry = (value, now());
            }
            json!({
                "type": name,
                "status": if value { "True" } else { "False" },
                "lastProbeTime": null,
                "lastTransitionTime": entry.1,
            })
        };
        let conditions = vec![
            condition("PodScheduled", true),
            condition("Initialized", initialized),
            condition("ContainersReady", all_ready),
            condition("Ready", all_ready),
        ];
        let to_json = |c: &ContainerStatus| {
            let mut s = json!({
                "name": c.name,
                "image": c.image,
                "imageID": "",
                "ready": c.ready,
                "started": c.started,
                "restartCount": c.restart_count,
                "state": c.state.to_json(),
                "lastState": c.last_state.as_ref().map_or(json!({}), State::to_json),
            });
            if c.ever_started {
                s["containerID"] = json!(format!("switchyard://{}/{}", self.run.uid, c.name));
            }
            s
        };
        let statuses: Vec<Value> = containers.iter().map(to_json).collect();
        let ip = self.run.ip.to_string();
        let mut status = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": self.run.start_time.clone().unwrap_or_else(now),
            "containerStatuses": statuses,
            "qosClass": "BestEffort",
        });
        if !init.is_empty() {
            status["initContainerStatuses"] = init.iter().map(to_json).collect();
        }
        self.status.send_if_modified(|current| {
            if *current == status {
                false
            } else {
                *current = status;
                true
            }
        });
    }
}

/// The kubelet's pod phase from container states.
fn phase(containers: &[ContainerStatus], restart_policy: &str) -> &'static str {
    let never_started = containers.iter().any(|c| !c.ever_started);
    if never_started {
        return "Pending";
    }
    let running = containers
        .iter()
        .any(|c| matches!(c.state, State::Running { .. }));
    let restarting = containers
        .iter()
        .any(|c| matches!(c.state, State::Waiting { .. }));
    if running || restarting {
        return "Running";
    }
    let all_succeeded = containers
        .iter()
        .all(|c| matches!(c.state, State::Terminated { exit_code: 0, .. }));
    // With restartPolicy Always a container is never finished, only between runs (a
    // server stopping its pods leaves them so): the kubelet reports Running.
    match (all_succeeded, restart_policy) {
        (_, "Always") => "Running",
        (true, _) => "Succeeded",
        (false, _) => "Failed",
    }
}

/// Resolves `$(VAR)` references as the kubelet does (`$$` escapes; unknown references
/// stay as they are).
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("$(")
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&tail[..end + 3]),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn field_ref(run: &PodRun, path: &str) -> Option<String> {
    let bracketed = |prefix: &str| {
        path.strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")
            .map(str::to_string)
    };
    match path {
        "metadata.name" => Some(run.name.clone()),
        "metadata.namespace" => Some(run.namespace.clone()),
        "metadata.uid" => Some(run.uid.clone()),
        "status.podIP" => Some(run.ip.to_string()),
        "status.hostIP" => Some("127.0.0.1".into()),
        "spec.nodeName" => Some(run.node_name.clone()),
        _ => {
            if let Some(key) = bracketed("metadata.labels") {
                return Some(run.labels.get(&key).cloned().unwrap_or_default());
            }
            bracketed("metadata.annotations")
                .map(|key| run.annotations.get(&key).cloned().unwrap_or_default())
        }
    }
}

/// The container's environment: the image's, the pod's identity, then its own `env`.
fn environment(
    run: &PodRun,
    container: &Container,
    image_env: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![(
        "PATH".into(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
    )];
    env.extend(image_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.push(("POD_IP".into(), run.ip.to_string()));
    env.push(("POD_NAME".into(), run.name.clone()));
    env.push(("POD_NAMESPACE".into(), run.namespace.clone()));
    env.push(("HOSTNAME".into(), run.name.clone()));
    env.extend(run.service_env.iter().cloned());
    if let Some(port) = container.ports.iter().flatten().next() {
        env.push(("PORT".into(), port.container_port.to_string()));
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => expand(v, &env),
            (None, Some(from)) => from
                .field_ref
                .as_ref()
                .and_then(|f| field_ref(run, &f.field_path))
                .unwrap_or_default(),
            (None, None) => String::new(),
        };
        env.retain(|(k, _)| *k != var.name);
        env.push((var.name.clone(), value));
    }
    env
}

/// Runs container `index` until `stop` carries a grace period.
/// Runs container `index` (init containers first, see [`PodShared::spec`]) with the pod's
/// restart policy. An init container restarts only on failure (unless the policy is
/// Never) and its run ends when it succeeds: the exit code is returned. Regular
/// containers run until stopped (`None`).
pub(crate) async fn run_container(
    shared: Arc<PodShared>,
    index: usize,
    mut stop: watch::Receiver<Option<Duration>>,
) -> Option<i32> {
    let init = index < shared.init_count();
    let container = shared.spec(index).clone();
    let name = container.name.clone();
    let pod_label = format!("{}/{}", shared.run.namespace, shared.run.name);
    let restart_policy = shared
        .run
        .spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let log_dir = shared.dir.join(&name);
    let _ = std::fs::create_dir_all(&log_dir);
    let mut crashes_in_a_row: u32 = 0;
    loop {
        if stop.borrow().is_some() {
            return None;
        }
        let resolved = shared.images.resolve(
            container.image.as_deref().unwrap_or(""),
            container.command.as_deref(),
            container.args.as_deref(),
            &shared.self_exe,
        );
        let Resolved::Program {
            program,
            args,
            env: image_env,
        } = resolved
        else {
            let image = container.image.clone().unwrap_or_default();
            let message = format!(
                "image {image:?} has no command on this host: map it in the server's config \
                 file, e.g. `images: {{\"{image}\": {{command: [\"/path/to/program\"], args: []}}}}`, \
                 or use switchyard/demo:TAG"
            );
            shared.update(index, |c| {
                c.state = State::Waiting {
                    reason: "ImageNotMapped".into(),
                    message: message.clone(),
                }
            });
            shared.event(
                true,
                "Failed",
                format!("Failed to start container {name:?}: {message}"),
            );
            let _ = stop.wait_for(Option::is_some).await;
            return None;
        };
        let env = environment(&shared.run, &container, &image_env);
        let args: Vec<String> = args.iter().map(|a| expand(a, &env)).collect();
        let started_at = now();
        let started = Instant::now();
        let outcome = run_instance(
            &shared, index, &container, &program, &args, &env, &log_dir, &mut stop,
        )
        .await;
        let finished_at = now();
        let (exit_code, signal, stopped) = match outcome {
            InstanceEnd::Exited { code, signal } => (code, signal, false),
            InstanceEnd::Stopped { code, signal } => (code, signal, true),
            InstanceEnd::SpawnFailed(message) => {
                shared.update(index, |c| {
                    c.state = State::Waiting {
                        reason: "RunContainerError".into(),
                        message: message.clone(),
                    }
                });
                shared.event(true, "Failed", format!("Error: {message}"));
                (128, None, false)
            }
        };
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
        let terminated = State::Terminated {
            exit_code,
            signal,
            reason: reason.into(),
            started_at,
            finished_at,
        };
        if stopped {
            shared.update(index, |c| {
                c.state = terminated;
                c.ready = false;
                c.started = false;
            });
            return None;
        }
        let restart = match restart_policy.as_str() {
            "Never" => false,
            "OnFailure" => exit_code != 0,
            _ => !init || exit_code != 0,
        };
        if !restart {
            shared.update(index, |c| {
                c.state = terminated;
                // A completed init container reports ready, as the kubelet's do.
                c.ready = init && exit_code == 0;
                c.started = false;
            });
            if init {
                return Some(exit_code);
            }
            let _ = stop.wait_for(Option::is_some).await;
            return None;
        }
        if started.elapsed() >= BACKOFF_RESET {
            crashes_in_a_row = 0;
        }
        let delay = crash_backoff(crashes_in_a_row);
        crashes_in_a_row += 1;
        shared.update(index, |c| {
            c.last_state = Some(terminated.clone());
            c.ready = false;
            c.started = false;
            c.state = if delay.is_zero() {
                State::Waiting {
                    reason: "ContainerCreating".into(),
                    message: String::new(),
                }
            } else {
                State::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: format!(
                        "back-off {}s restarting failed container={name} pod={}",
                        delay.as_secs(),
                        shared.run.name
                    ),
                }
            };
        });
        if !delay.is_zero() {
            shared.event(
                true,
                "BackOff",
                format!("Back-off restarting failed container {name} in pod {pod_label}"),
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(Option::is_some) => return None,
            }
        }
        logs::rotate_to_previous(&log_dir);
        shared.update(index, |c| c.restart_count += 1);
    }
}

enum InstanceEnd {
    Exited { code: i32, signal: Option<i32> },
    Stopped { code: i32, signal: Option<i32> },
    SpawnFailed(String),
}

#[allow(clippy::too_many_arguments)]
async fn run_instance(
    shared: &Arc<PodShared>,
    index: usize,
    container: &Container,
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    log_dir: &Path,
    stop: &mut watch::Receiver<Option<Duration>>,
) -> InstanceEnd {
    let name = &container.name;
    let log = match logs::open_current(log_dir) {
        Ok(f) => f,
        Err(e) => return InstanceEnd::SpawnFailed(format!("cannot open the log of {name}: {e}")),
    };
    let log_err = match log.try_clone() {
        Ok(f) => f,
        Err(e) => return InstanceEnd::SpawnFailed(format!("cannot open the log of {name}: {e}")),
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .process_group(0);
    if let Some(dir) = &container.working_dir {
        command.current_dir(dir);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return InstanceEnd::SpawnFailed(format!(
                "failed to start {name} ({}): {e}",
                program.display()
            ));
        }
    };
    let pid = child.id().unwrap_or(0);
    let pid_file = shared.dir.join(format!("{name}.pid"));
    let _ = process::write_pid_file(&pid_file, pid);
    let started_at = now();
    shared.update(index, |c| {
        c.state = State::Running {
            started_at: started_at.clone(),
        };
        c.ever_started = true;
        c.started = container.startup_probe.is_none();
        c.ready = index >= shared.init_count()
            && container.startup_probe.is_none()
            && container.readiness_probe.is_none();
    });
    shared.event(false, "Started", format!("Started container {name}"));

    let (restart_tx, mut restart_rx) = mpsc::channel::<String>(1);
    let probes = tokio::spawn(supervise_probes(
        shared.clone(),
        index,
        container.clone(),
        env.to_vec(),
        restart_tx,
    ));
    let grace = Duration::from_secs(
        shared
            .run
            .spec
            .termination_grace_period_seconds
            .unwrap_or(30)
            .max(0) as u64,
    );
    let end = tokio::select! {
        status = child.wait() => {
            let (code, signal) = exit_of(status);
            InstanceEnd::Exited { code, signal }
        }
        // The probe supervisor drops its sender when it has nothing left to watch.
        Some(reason) = restart_rx.recv() => {
            shared.event(false, "Killing", format!("Container {name} {reason}, will be restarted"));
            let (code, signal) = terminate(&mut child, pid, grace).await;
            InstanceEnd::Exited { code, signal }
        }
        requested = async { stop.wait_for(Option::is_some).await.ok().and_then(|r| *r) } => {
            let grace = requested.unwrap_or(grace);
            shared.event(false, "Killing", format!("Stopping container {name}"));
            let (code, signal) = terminate(&mut child, pid, grace).await;
            InstanceEnd::Stopped { code, signal }
        }
    };
    probes.abort();
    // Whatever the main process left in its group goes with it.
    process::signal_group(pid, process::KILL);
    let _ = std::fs::remove_file(&pid_file);
    end
}

fn exit_of(status: std::io::Result<std::process::ExitStatus>) -> (i32, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => (code, None),
            (None, Some(signal)) => (128 + signal, Some(signal)),
            (None, None) => (1, None),
        },
        Err(_) => (1, None),
    }
}

/// SIGTERM to the group, SIGKILL after the grace period.
async fn terminate(
    child: &mut tokio::process::Child,
    pid: u32,
    grace: Duration,
) -> (i32, Option<i32>) {
    process::signal_group(pid, process::TERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => exit_of(status),
        Err(_) => {
            process::signal_group(pid, process::KILL);
            exit_of(child.wait().await)
        }
    }
}

/// Runs the startup probe, then liveness and readiness, for one container instance.
async fn supervise_probes(
    shared: Arc<PodShared>,
    index: usize,
    container: Container,
    env: Vec<(String, String)>,
    restart: mpsc::Sender<String>,
) {
    let ports = container.ports.clone().unwrap_or_default();
    let dir = container.working_dir.clone().map(PathBuf::from);
    let target = probes::Target {
        ip: IpAddr::V4(shared.run.ip),
        ports: &ports,
        env: &env,
        dir: dir.as_deref(),
    };
    if let Some(startup) = &container.startup_probe {
        if !probe_until(&shared, &container.name, "Startup", startup, &target, false).await {
            let _ = restart.send("failed startup probe".into()).await;
            return;
        }
        shared.update(index, |c| {
            c.started = true;
            c.ready = container.readiness_probe.is_none();
        });
    }
    let readiness = async {
        let Some(probe) = &container.readiness_probe else {
            return;
        };
        let timing = Timing::of(probe);
        tokio::time::sleep(timing.initial_delay).await;
        let mut counter = Counter::new(false);
        let mut ever_ready = false;
        loop {
            let tick = tokio::time::Instant::now() + timing.period;
            let outcome = if ever_ready {
                probes::run_once(probe, &target, timing.timeout).await
            } else {
                probe_while_starting(probe, &target, &timing, tick).await
            };
            let success = outcome == Outcome::Success;
            if let Some(message) = outcome.failure() {
                shared.event(
                    true,
                    "Unhealthy",
                    format!("Readiness probe failed: {message}"),
                );
            }
            if counter.record(success, &timing) {
                let ready = counter.passing;
                ever_ready |= ready;
                shared.update(index, |c| c.ready = ready);
            }
            tokio::time::sleep_until(tick).await;
        }
    };
    let liveness = async {
        let Some(probe) = &container.liveness_probe else {
            return;
        };
        if !probe_until(&shared, &container.name, "Liveness", probe, &target, true).await {
            let _ = restart.send("failed liveness probe".into()).await;
        }
    };
    tokio::join!(readiness, liveness);
}

/// Probes until the result flips: for startup (from failing) that is success; for liveness
/// (from passing) that is failure. Returns whether the probe ended passing.
async fn probe_until(
    shared: &PodShared,
    container: &str,
    kind: &str,
    probe: &Probe,
    target: &probes::Target<'_>,
    start_passing: bool,
) -> bool {
    let timing = Timing::of(probe);
    tokio::time::sleep(timing.initial_delay).await;
    let mut counter = Counter::new(start_passing);
    let mut failures_in_a_row = 0;
    loop {
        let tick = tokio::time::Instant::now() + timing.period;
        let outcome = if start_passing {
            probes::run_once(probe, target, timing.timeout).await
        } else {
            probe_while_starting(probe, target, &timing, tick).await
        };
        if let Some(message) = outcome.failure() {
            shared.event(true, "Unhealthy", format!("{kind} probe failed: {message}"));
            failures_in_a_row += 1;
            // A startup probe that keeps failing fails the container, as liveness would.
            if !start_passing && failures_in_a_row >= timing.failure_threshold {
                return false;
            }
        } else {
            failures_in_a_row = 0;
        }
        if counter.record(outcome == Outcome::Success, &timing) {
            tracing::debug!(container, kind, passing = counter.passing, "probe flipped");
            return counter.passing;
        }
        tokio::time::sleep_until(tick).await;
    }
}

/// How soon a starting container's refused probe is tried again.
const STARTING_RETRY: Duration = Duration::from_millis(50);

/// One probe of a container that has not passed yet. A refused connection only means the
/// app has not bound its port yet, so it is tried again every 50 ms until the next period
/// tick instead of leaving the pod unready for a whole period; only the last attempt is
/// the period's outcome. (The kubelet waits for the tick; this is the single host's
/// start-up fast path, and never turns a failing probe into a passing one.)
async fn probe_while_starting(
    probe: &Probe,
    target: &probes::Target<'_>,
    timing: &Timing,
    tick: tokio::time::Instant,
) -> Outcome {
    loop {
        let outcome = probes::run_once(probe, target, timing.timeout).await;
        if !matches!(outcome, Outcome::Refused(_))
            || tokio::time::Instant::now() + STARTING_RETRY >= tick
        {
            return outcome;
        }
        tokio::time::sleep(STARTING_RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_backoff_matches_the_kubelet() {
        let secs: Vec<u64> = (0..8).map(|n| crash_backoff(n).as_secs()).collect();
        assert_eq!(secs, [0, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn dollar_references_expand_like_the_kubelet() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "two".to_string()),
        ];
        let cases = [
            ("$(A)-$(B)", "1-two"),
            ("$$(A)", "$(A)"),
            ("$(MISSING)", "$(MISSING)"),
            ("cost $5", "cost $5"),
            ("$(A", "$(A"),
        ];
        for (input, expected) in cases {
            assert_eq!(expand(input, &env), expected, "{input}");
        }
    }
}
