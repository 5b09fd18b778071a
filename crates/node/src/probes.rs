//! Probes as the kubelet runs them: httpGet, tcpSocket and exec, each with a timeout, and
//! the threshold arithmetic that turns single results into a probe state.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpStream;

use crate::process;

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The probe passed.
    Success,
    /// The probe failed, with why.
    Failure(String),
    /// A network probe's connection was refused: nothing listens on the port (yet).
    Refused(String),
}

impl Outcome {
    /// Why the probe did not pass (`None` when it passed).
    pub fn failure(&self) -> Option<&str> {
        match self {
            Outcome::Success => None,
            Outcome::Failure(message) | Outcome::Refused(message) => Some(message),
        }
    }
}

fn dial_failed(error: &std::io::Error, message: String) -> Outcome {
    if error.kind() == std::io::ErrorKind::ConnectionRefused {
        Outcome::Refused(message)
    } else {
        Outcome::Failure(message)
    }
}

/// Timing and thresholds of a probe, with the kubelet's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Delay before the first probe.
    pub initial_delay: Duration,
    /// Time between probes.
    pub period: Duration,
    /// Time a probe may take.
    pub timeout: Duration,
    /// Consecutive successes to pass (after a failure).
    pub success_threshold: u32,
    /// Consecutive failures to fail.
    pub failure_threshold: u32,
}

impl Timing {
    /// Reads a probe's timing: defaults 0 s delay, 10 s period, 1 s timeout, thresholds 1 and 3.
    pub fn of(probe: &Probe) -> Timing {
        let secs = |v: Option<i32>, default: u64| {
            Duration::from_secs(v.map_or(default, |v| v.max(0) as u64))
        };
        Timing {
            initial_delay: secs(probe.initial_delay_seconds, 0),
            period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Consecutive-result counting: a probe's result flips only after its threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// The current result.
    pub passing: bool,
    successes: u32,
    failures: u32,
}

impl Counter {
    /// A counter starting at `passing` (liveness starts passing, readiness and startup not).
    pub fn new(passing: bool) -> Counter {
        Counter {
            passing,
            successes: 0,
            failures: 0,
        }
    }

    /// Records one outcome; returns true when the result flipped.
    pub fn record(&mut self, success: bool, timing: &Timing) -> bool {
        if success {
            self.successes += 1;
            self.failures = 0;
            if !self.passing && self.successes >= timing.success_threshold {
                self.passing = true;
                return true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.passing && self.failures >= timing.failure_threshold {
                self.passing = false;
                return true;
            }
        }
        false
    }
}

/// Everything a probe needs about its container.
pub struct Target<'a> {
    /// The pod IP.
    pub ip: IpAddr,
    /// The container's ports, for named probe ports.
    pub ports: &'a [ContainerPort],
    /// The container's environment, for exec probes.
    pub env: &'a [(String, String)],
    /// The container's working directory.
    pub dir: Option<&'a Path>,
}

/// Runs a probe once, within its timeout.
pub async fn run_once(probe: &Probe, target: &Target<'_>, timeout: Duration) -> Outcome {
    let run = async {
        if let Some(http) = &probe.http_get {
            if http.scheme.as_deref() == Some("HTTPS") {
                return Outcome::Failure(
                    "HTTPS probes are not supported on the single host".into(),
                );
            }
            let port = match resolve_port(&http.port, target.ports) {
                Ok(p) => p,
                Err(e) => return Outcome::Failure(e),
            };
            let host = http
                .host
                .as_deref()
                .and_then(|h| h.parse::<IpAddr>().ok())
                .unwrap_or(target.ip);
            let path = http.path.as_deref().unwrap_or("/");
            let headers: Vec<(String, String)> = http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect();
            http_get(SocketAddr::new(host, port), path, &headers).await
        } else if let Some(tcp) = &probe.tcp_socket {
            let port = match resolve_port(&tcp.port, target.ports) {
                Ok(p) => p,
                Err(e) => return Outcome::Failure(e),
            };
            match TcpStream::connect(SocketAddr::new(target.ip, port)).await {
                Ok(_) => Outcome::Success,
                Err(e) => dial_failed(&e, format!("dial tcp {}:{port}: {e}", target.ip)),
            }
        } else if let Some(exec) = &probe.exec {
            exec_once(exec.command.as_deref().unwrap_or_default(), target, timeout).await
        } else {
            Outcome::Failure("probe has no handler".into())
        }
    };
    // Exec probes enforce the timeout themselves (they must kill their process group).
    match tokio::time::timeout(timeout + Duration::from_millis(500), run).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Failure(format!("probe timed out after {timeout:?}")),
    }
}

fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("the container has no port named {name:?}")),
    }
}

async fn http_get(address: SocketAddr, path: &str, headers: &[(String, String)]) -> Outcome {
    let stream = match TcpStream::connect(address).await {
        Ok(s) => s,
        Err(e) => {
            return dial_failed(
                &e,
                format!("Get \"http://{address}{path}\": dial tcp {address}: {e}"),
            );
        }
    };
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io).await {
            Ok(pair) => pair,
            Err(e) => return Outcome::Failure(format!("Get \"http://{address}{path}\": {e}")),
        };
    let driver = tokio::spawn(connection);
    let mut request = hyper::Request::get(path)
        .header("host", address.to_string())
        .header("user-agent", "kube-probe/1.35")
        .header("accept", "*/*");
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let outcome = match request.body(Empty::new()) {
        Err(e) => Outcome::Failure(format!("invalid probe request: {e}")),
        Ok(request) => match sender.send_request(request).await {
            Ok(response) if (200..400).contains(&response.status().as_u16()) => Outcome::Success,
            Ok(response) => Outcome::Failure(format!(
                "HTTP probe failed with statuscode: {}",
                response.status().as_u16()
            )),
            Err(e) => Outcome::Failure(format!("Get \"http://{address}{path}\": {e}")),
        },
    };
    driver.abort();
    outcome
}

async fn exec_once(command: &[String], target: &Target<'_>, timeout: Duration) -> Outcome {
    let Some((program, args)) = command.split_first() else {
        return Outcome::Failure("exec probe has no command".into());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(target.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = target.dir {
        cmd.current_dir(dir);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Failure(format!("exec {program:?}: {e}")),
    };
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Outcome::Success,
        Ok(Ok(status)) => Outcome::Failure(format!("command {program:?} exited with {status}")),
        Ok(Err(e)) => Outcome::Failure(format!("exec {program:?}: {e}")),
        Err(_) => {
            // A probe that never returns must not leave its process tree behind.
            if let Some(pid) = pid {
                process::signal_group(pid, process::KILL);
            }
            let _ = child.wait().await;
            Outcome::Failure(format!("command {program:?} timed out after {timeout:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(success: u32, failure: u32) -> Timing {
        Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn thresholds_flip_the_result_only_after_consecutive_outcomes() {
        let t = timing(2, 3);
        let mut c = Counter::new(false);
        assert!(!c.record(true, &t));
        assert!(!c.record(false, &t), "a failure resets the successes");
        assert!(!c.record(true, &t));
        assert!(c.record(true, &t));
        assert!(c.passing);
        assert!(!c.record(false, &t));
        assert!(!c.record(false, &t));
        assert!(!c.record(true, &t), "a success resets the failures");
        assert!(!c.record(false, &t));
        assert!(!c.record(false, &t));
        assert!(c.record(false, &t));
        assert!(!c.passing);
    }

    #[test]
    fn kubelet_defaults() {
        let t = Timing::of(&Probe::default());
        assert_eq!(
            t,
            Timing {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
    }

    #[tokio::test]
    async fn handlers_report_success_and_failure() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Target {
            ip: "127.0.0.1".parse().unwrap(),
            ports: &[],
            env: &[],
            dir: None,
        };
        let tcp = |p: i32| Probe {
            tcp_socket: Some(k8s_openapi::api::core::v1::TCPSocketAction {
                port: IntOrString::Int(p),
                host: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            run_once(&tcp(port as i32), &target, Duration::from_secs(1)).await,
            Outcome::Success
        );
        drop(listener);
        // Nothing listens: refused, which a starting container retries within its period.
        assert!(matches!(
            run_once(&tcp(port as i32), &target, Duration::from_secs(1)).await,
            Outcome::Refused(_)
        ));
        let exec = |cmd: &[&str]| Probe {
            exec: Some(k8s_openapi::api::core::v1::ExecAction {
                command: Some(cmd.iter().map(|s| s.to_string()).collect()),
            }),
            ..Default::default()
        };
        assert_eq!(
            run_once(&exec(&["true"]), &target, Duration::from_secs(1)).await,
            Outcome::Success
        );
        assert!(matches!(
            run_once(&exec(&["false"]), &target, Duration::from_secs(1)).await,
            Outcome::Failure(_)
        ));
        let started = std::time::Instant::now();
        let hung = run_once(&exec(&["sleep", "30"]), &target, Duration::from_secs(1)).await;
        assert!(matches!(hung, Outcome::Failure(m) if m.contains("timed out")));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
