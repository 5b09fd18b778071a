//! `switchyard server`: the data dir (lock, token, address record, store), the API
//! listener and the controllers, with graceful shutdown.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use switchyard_store::Store;
use tokio::sync::watch;

use crate::api::{self, ApiState};
use switchyard_node::{ImageMap, Node, NodeConfig};

use crate::controllers::kubelet::{Kubelet, SHUTDOWN_GRACE};
use crate::controllers::{gc::GarbageCollector, namespace::NamespaceController};
use crate::events::Recorder;
use crate::runtime::{self, Context, Controller};

/// File names inside the data dir.
pub mod files {
    /// Held locked by the running server.
    pub const LOCK: &str = "server.lock";
    /// The API bearer token (mode 0600).
    pub const TOKEN: &str = "token";
    /// Where the running server listens ([`super::ServerRecord`]).
    pub const SERVER: &str = "server.json";
    /// The object store.
    pub const STORE: &str = "store.db";
    /// Pod state: logs and pid files.
    pub const PODS: &str = "pods";
    /// The default config file.
    pub const CONFIG: &str = "config.yaml";
    /// A kubeconfig for this server (mode 0600: it holds the token).
    pub const KUBECONFIG: &str = "kubeconfig";
}

/// The server's config file (`--config`, default `DATA_DIR/config.yaml`, optional).
///
/// ```yaml
/// images:
///   nginx:1.27:                 # an exact image, or a repository for any tag
///     command: [/usr/sbin/nginx, -g, "daemon off;"]
///     args: []
///     env: {TZ: UTC}
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Image name (or repository) -> command, args and environment.
    #[serde(default)]
    pub images: ImageMap,
}

/// What a running server records in the data dir for clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerRecord {
    /// API address, e.g. `127.0.0.1:7443`.
    pub address: SocketAddr,
    /// The server's process id.
    pub pid: u32,
    /// The cluster DNS address, if DNS is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<SocketAddr>,
    /// The ingress address, if the ingress is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<SocketAddr>,
    /// True when the API speaks plain HTTP (`--plain-http`); otherwise TLS with the
    /// data dir's CA.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plain_http: bool,
}

impl ServerRecord {
    /// The API's base URL, for clients: `https://127.0.0.1:7443`. A wildcard listen
    /// address is reached through loopback.
    pub fn url(&self) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        let mut address = self.address;
        if address.ip().is_unspecified() {
            address.set_ip(match address {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("{scheme}://{address}")
    }
}

/// Configuration of `switchyard server`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where state lives.
    pub data_dir: PathBuf,
    /// API listen address.
    pub listen: SocketAddr,
    /// The config file; None means `DATA_DIR/config.yaml` if it exists.
    pub config_file: Option<PathBuf>,
    /// Where cluster DNS answers (None: no DNS server).
    pub dns_listen: Option<SocketAddr>,
    /// The node address NodePorts listen on.
    pub node_address: std::net::Ipv4Addr,
    /// Where the ingress serves HTTP (None: no ingress).
    pub ingress_listen: Option<SocketAddr>,
    /// Serve the API over plain HTTP instead of TLS (kubectl then sends no token).
    pub plain_http: bool,
}

/// The default ingress address: loopback, a port above 1023 so that no root is needed.
pub const DEFAULT_INGRESS_LISTEN: &str = "127.0.0.1:8090";

impl ServerConfig {
    /// A config with the defaults for everything but the data dir and API address.
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            data_dir,
            listen,
            config_file: None,
            dns_listen: Some(switchyard_net::dns::DEFAULT_DNS_LISTEN),
            node_address: std::net::Ipv4Addr::LOCALHOST,
            ingress_listen: Some(DEFAULT_INGRESS_LISTEN.parse().expect("static address")),
            plain_http: false,
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another server holds the data dir.
    #[error(
        "another switchyard server is already running on data dir {dir} ({record}); stop it, \
         or start this one with a different --data-dir"
    )]
    Locked {
        /// The data dir.
        dir: String,
        /// What the other server recorded.
        record: String,
    },
    /// The data dir, token or address record could not be written or read.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("opening the store {path}: {source}")]
    Store {
        /// The store path.
        path: String,
        /// The cause.
        source: switchyard_store::StoreError,
    },
    /// The config file is unreadable or invalid.
    #[error("config file {path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The ingress address could not be bound.
    #[error(
        "cannot serve the ingress on {address}: {source}; choose another with --ingress-listen"
    )]
    Ingress {
        /// The address.
        address: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The DNS address could not be bound.
    #[error("cannot serve DNS on {address}: {source}; choose another with --dns-listen")]
    Dns {
        /// The address.
        address: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The API server's certificates could not be made or loaded.
    #[error("{0}; remove {dir}/pki to generate new ones", dir = .1)]
    Pki(crate::pki::PkiError, String),
    /// The API address could not be bound.
    #[error("cannot listen on {address}: {source}; choose another with --listen")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + use<> {
    let path = path.display().to_string();
    move |source| ServerError::Io { what, path, source }
}

/// Reads the token, or creates one (mode 0600) on first start.
pub fn ensure_token(dir: &Path) -> Result<String, ServerError> {
    let path = dir.join(files::TOKEN);
    match fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("reading the token", &path)(e)),
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(io("writing the token", &path))?;
    file.write_all(token.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io("writing the token", &path))?;
    Ok(token)
}

/// Reads the config file: an explicit one must exist; the default one may be absent.
pub fn load_config(data_dir: &Path, explicit: Option<&Path>) -> Result<FileConfig, ServerError> {
    let path = explicit.map_or_else(|| data_dir.join(files::CONFIG), Path::to_path_buf);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
            return Ok(FileConfig::default());
        }
        Err(e) => {
            return Err(ServerError::Config {
                path: path.display().to_string(),
                message: e.to_string(),
            });
        }
    };
    serde_saphyr::from_str(&text).map_err(|e| ServerError::Config {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// A started server: its address, and the handle to stop it.
pub struct RunningServer {
    /// The bound API address.
    pub address: SocketAddr,
    /// The API's base URL (`https://127.0.0.1:7443`).
    pub url: String,
    /// The kubeconfig written for this server.
    pub kubeconfig: PathBuf,
    /// The bound cluster DNS address, if DNS is served.
    pub dns_address: Option<SocketAddr>,
    /// The bound ingress address, if the ingress is served.
    pub ingress_address: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _lock: File,
    record_path: PathBuf,
}

impl RunningServer {
    /// Stops accepting requests, stops the controllers and waits for them.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        let _ = fs::remove_file(&self.record_path);
    }
}

/// Starts the server: locks the data dir, opens the store, binds the API and starts the
/// controllers. Returns once the API accepts requests.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    let dir = &config.data_dir;
    fs::create_dir_all(dir).map_err(io("creating the data dir", dir))?;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let lock_path = dir.join(files::LOCK);
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io("opening the lock file", &lock_path))?;
    if lock.try_lock().is_err() {
        let record = fs::read_to_string(dir.join(files::SERVER))
            .ok()
            .and_then(|text| serde_json::from_str::<ServerRecord>(&text).ok())
            .map_or_else(
                || "address unknown".to_string(),
                |r| format!("pid {}, API on {}", r.pid, r.address),
            );
        return Err(ServerError::Locked {
            dir: dir.display().to_string(),
            record,
        });
    }
    let file_config = load_config(dir, config.config_file.as_deref())?;
    let token = ensure_token(dir)?;
    let store_path = dir.join(files::STORE);
    let admission: Box<dyn switchyard_store::Admission> =
        Box::new(crate::admission::ServerAdmission);
    let store = Arc::new(
        Store::open_with(&store_path, Some(admission)).map_err(|source| ServerError::Store {
            path: store_path.display().to_string(),
            source,
        })?,
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            address: config.listen,
            source,
        })?;
    let address = listener.local_addr().map_err(|source| ServerError::Bind {
        address: config.listen,
        source,
    })?;
    let dns = match config.dns_listen {
        Some(address) => Some(
            switchyard_net::dns::DnsServer::bind(address, switchyard_net::dns::DEFAULT_ZONE)
                .await
                .map_err(|source| ServerError::Dns { address, source })?,
        ),
        None => None,
    };
    let ingress_listener = match config.ingress_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| ServerError::Ingress { address, source })?,
        ),
        None => None,
    };
    let ingress_address = ingress_listener.as_ref().and_then(|l| l.local_addr().ok());
    let tls = if config.plain_http {
        None
    } else {
        Some(
            crate::pki::ensure(dir, address)
                .map_err(|e| ServerError::Pki(e, dir.display().to_string()))?,
        )
    };
    let record = ServerRecord {
        address,
        pid: std::process::id(),
        dns: dns.as_ref().map(|d| d.local_addr()),
        ingress: ingress_address,
        plain_http: config.plain_http,
    };
    let kubeconfig = crate::kubeconfig::render(
        &record.url(),
        tls.as_ref().map_or("", |t| t.ca_pem.as_str()),
        &token,
    );
    let kubeconfig_path = dir.join(files::KUBECONFIG);
    crate::pki::write_private(&kubeconfig_path, &crate::kubeconfig::to_yaml(&kubeconfig))
        .map_err(|e| ServerError::Pki(e, dir.display().to_string()))?;
    let record_path = dir.join(files::SERVER);
    write_record(&record_path, &record)?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let recorder = Recorder::new(store.clone(), "switchyard");
    let ctx = Arc::new(Context {
        store: store.clone(),
        recorder: recorder.clone(),
    });
    let pods_dir = dir.join(files::PODS);
    let node = Arc::new(Node::new(NodeConfig {
        state_dir: pods_dir.clone(),
        images: file_config.images,
        self_exe: std::env::current_exe().map_err(io("finding this executable", dir))?,
    }));
    let orphans = node.kill_orphans();
    if orphans > 0 {
        tracing::warn!(
            orphans,
            "stopped processes left running by a previous server"
        );
    }
    let node_events = node.take_events().map(|mut events| {
        let store = store.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let Some(pod) = store.get_by_uid(&event.pod_uid) {
                    if event.warning {
                        recorder.warning(&pod, &event.reason, &event.message);
                    } else {
                        recorder.normal(&pod, &event.reason, &event.message);
                    }
                }
            }
        })
    });
    let proxy = switchyard_net::proxy::ServiceProxy::new();
    let metrics = Arc::new(switchyard_net::metrics::Metrics::default());
    let (history, history_task) =
        crate::controllers::analysis::MetricsHistory::start(metrics.clone());
    let ingress =
        switchyard_net::ingress::server::Ingress::new(metrics.clone(), Default::default());
    ensure_ingress_class(&store)?;
    let dns_address = dns.as_ref().map(|d| d.local_addr());
    let controllers: Vec<Arc<dyn Controller>> = vec![
        Arc::new(GarbageCollector),
        Arc::new(NamespaceController),
        Arc::new(Kubelet::new(node.clone())),
        Arc::new(crate::controllers::endpointslice::EndpointSliceController),
        Arc::new(crate::controllers::loadbalancer::LoadBalancerController),
        Arc::new(crate::controllers::replicaset::ReplicaSetController),
        Arc::new(crate::controllers::deployment::DeploymentController),
        Arc::new(crate::controllers::job::JobController),
        Arc::new(crate::controllers::rollout::RolloutController),
        Arc::new(crate::controllers::analysis::AnalysisController {
            metrics: metrics.clone(),
            history: history.clone(),
        }),
        Arc::new(crate::controllers::dataplane::DataPlane {
            proxy: proxy.clone(),
            dns: dns.as_ref().map(|d| d.records()),
            zone: switchyard_net::dns::DEFAULT_ZONE.to_string(),
            node_address: config.node_address,
        }),
    ];
    let mut controllers = controllers;
    if let Some(address) = ingress_address {
        controllers.push(Arc::new(crate::controllers::ingress::IngressController {
            ingress: ingress.clone(),
            address,
        }));
    }
    let mut tasks = Vec::new();
    for controller in controllers {
        tasks.push(tokio::spawn(runtime::run(
            controller,
            ctx.clone(),
            shutdown_rx.clone(),
        )));
    }
    let app = api::router(ApiState {
        store,
        token: token.into(),
        shutdown: shutdown_rx.clone(),
        pods_dir: Some(pods_dir),
        metrics: Some(crate::api::MetricsSource {
            ingress: metrics,
            proxy: proxy.clone(),
        }),
    });
    let ingress_task = ingress_listener.map(|listener| {
        let mut stop = shutdown_rx.clone();
        tokio::spawn(switchyard_net::ingress::server::serve(
            listener,
            ingress,
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ))
    });
    let mut api_shutdown = shutdown_rx.clone();
    let acceptor = tls.map(|tls| tokio_rustls::TlsAcceptor::from(tls.server_config));
    let task = tokio::spawn(async move {
        crate::listener::serve(listener, acceptor, app, async move {
            let _ = api_shutdown.wait_for(|stop| *stop).await;
        })
        .await;
        for task in tasks {
            let _ = task.await;
        }
        proxy.shutdown();
        history_task.abort();
        if let Some(task) = ingress_task {
            let _ = task.await;
        }
        if let Some(dns) = dns {
            dns.shutdown().await;
        }
        node.stop_all(SHUTDOWN_GRACE).await;
        if let Some(events) = node_events {
            events.abort();
        }
    });
    tracing::info!(%address, data_dir = %dir.display(), "switchyard server ready");
    Ok(RunningServer {
        address,
        url: record.url(),
        kubeconfig: kubeconfig_path,
        dns_address,
        ingress_address,
        shutdown,
        task,
        _lock: lock,
        record_path,
    })
}

/// Creates the `switchyard` IngressClass on first start, as installing an ingress
/// controller does on a cluster. It is not marked default: class-less Ingresses are served
/// anyway while no class is the default.
fn ensure_ingress_class(store: &Store) -> Result<(), ServerError> {
    use crate::controllers::ingress::{CLASS, CONTROLLER};
    let key = switchyard_store::ObjectKey {
        kind: "IngressClass".into(),
        namespace: String::new(),
        name: CLASS.into(),
    };
    if store.get(&key).is_some() {
        return Ok(());
    }
    let class = serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": CLASS},
        "spec": {"controller": CONTROLLER},
    });
    match store.create(class) {
        Ok(_) | Err(switchyard_store::StoreError::AlreadyExists { .. }) => Ok(()),
        Err(source) => Err(ServerError::Store {
            path: "ingress class".into(),
            source,
        }),
    }
}

fn write_record(path: &Path, record: &ServerRecord) -> Result<(), ServerError> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string(record).expect("record encodes");
    fs::write(&tmp, text).map_err(io("writing the server record", &tmp))?;
    fs::rename(&tmp, path).map_err(io("writing the server record", path))
}
