//! The service proxy: what kube-proxy does, in user space. For every Service port a TCP
//! listener on each of its addresses (clusterIP:port, node:nodePort, load-balancer IP:port)
//! spreads connections over the ready endpoints, with `sessionAffinity: ClientIP`.
//!
//! The routing table is an immutable snapshot swapped atomically: accepting a connection
//! never waits on the control plane. A connection keeps its endpoint for its whole life, as
//! conntrack does: a selector or endpoint change applies to new connections only, and
//! closing a listener never touches the connections it accepted.
//!
//! Connections are served on the proxy's worker threads (a current-thread runtime per
//! CPU): every worker accepts on its own copy of every listener, and a connection lives
//! where it was accepted, both sockets on one thread, so accepting and copying never wake
//! a task on another thread.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long connecting to an endpoint may take before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Copy buffer per direction per connection, taken from its worker's pool.
const BUFFER: usize = 32 * 1024;
/// Buffers a worker keeps for reuse (the rest are freed when their connection ends).
const POOLED: usize = 128;

thread_local! {
    /// Copy buffers of finished connections, reused so that a new connection neither
    /// allocates nor zeroes (and page-faults in) fresh memory.
    static BUFFERS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn take_buffer() -> Vec<u8> {
    BUFFERS
        .with(|pool| pool.borrow_mut().pop())
        .unwrap_or_else(|| vec![0; BUFFER])
}

fn return_buffer(buffer: Vec<u8>) {
    BUFFERS.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOLED {
            pool.push(buffer);
        }
    });
}

/// Copies `from` to `to` until `from` ends, then shuts `to`'s write side (half-close,
/// as `copy_bidirectional` does).
async fn copy_one_way(
    mut from: tokio::net::tcp::ReadHalf<'_>,
    mut to: tokio::net::tcp::WriteHalf<'_>,
    buffer: &mut [u8],
) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let n = from.read(buffer).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buffer[..n]).await?;
    }
}

/// Copies both ways until both directions ended or either failed.
async fn copy_both_ways(client: &mut TcpStream, upstream: &mut TcpStream) {
    let (mut up, mut down) = (take_buffer(), take_buffer());
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    let _ = tokio::try_join!(
        copy_one_way(client_read, upstream_write, &mut up),
        copy_one_way(upstream_read, client_write, &mut down),
    );
    return_buffer(up);
    return_buffer(down);
}

/// One Service port as the proxy serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Identity for logs, affinity and metrics: `namespace/name:port`.
    pub id: String,
    /// Every address the port is reachable on.
    pub listen: Vec<SocketAddr>,
    /// Ready endpoints (pod IP and resolved target port).
    pub endpoints: Vec<SocketAddr>,
    /// `sessionAffinity: ClientIP` and its timeout.
    pub affinity: Option<Duration>,
}

struct Route {
    id: Arc<str>,
    stats: Arc<PortStats>,
    endpoints: Vec<SocketAddr>,
    affinity: Option<Duration>,
    next: AtomicUsize,
}

/// Counters of one Service port.
#[derive(Debug, Default)]
pub struct PortStats {
    /// Connections accepted and proxied.
    pub connections: AtomicU64,
    /// Connections proxied right now.
    pub active: AtomicU64,
    /// Connections refused (no ready endpoint, or none reachable).
    pub refused: AtomicU64,
}

/// (service port, client IP) -> (endpoint, last use).
type AffinityTable = HashMap<(Arc<str>, IpAddr), (SocketAddr, Instant)>;

struct Inner {
    table: ArcSwap<HashMap<SocketAddr, Arc<Route>>>,
    /// Per listening address, its accept loop on each worker.
    listeners: Mutex<HashMap<SocketAddr, Vec<JoinHandle<()>>>>,
    affinity: Mutex<AffinityTable>,
    stats: Mutex<HashMap<Arc<str>, Arc<PortStats>>>,
    workers: Workers,
}

/// The threads connections are proxied on; they stop when the proxy is dropped (after
/// [`ServiceProxy::shutdown`] closed the listeners and the last connection ended).
struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    /// Connections each worker serves now.
    load: Vec<AtomicUsize>,
    /// Dropped with the proxy: every worker's runtime then ends.
    _stop: tokio::sync::watch::Sender<()>,
}

impl Workers {
    fn start() -> Workers {
        let (stop, stopped) = tokio::sync::watch::channel(());
        let count = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut handles = Vec::new();
        for i in 0..count {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                continue;
            };
            let handle = runtime.handle().clone();
            let mut stopped = stopped.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("proxy-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        // Returns (Err) once the sender is dropped with the proxy.
                        while stopped.changed().await.is_ok() {}
                    });
                });
            if spawned.is_ok() {
                handles.push(handle);
            }
        }
        Workers {
            load: handles.iter().map(|_| AtomicUsize::new(0)).collect(),
            handles,
            _stop: stop,
        }
    }

    /// Starts an accept loop for `listener` on every worker (on the current runtime when
    /// there are no workers).
    fn accept_on_all(
        &self,
        listener: TcpListener,
        address: SocketAddr,
        inner: &Arc<Inner>,
    ) -> io::Result<Vec<JoinHandle<()>>> {
        if self.handles.is_empty() {
            let inner = inner.clone();
            return Ok(vec![tokio::spawn(accept_loop(
                listener, address, inner, None,
            ))]);
        }
        let listener = listener.into_std()?;
        let mut loops = Vec::new();
        for (index, worker) in self.handles.iter().enumerate() {
            let copy = listener.try_clone()?;
            let inner = inner.clone();
            loops.push(worker.spawn(async move {
                // Registered with this worker's reactor.
                match TcpListener::from_std(copy) {
                    Ok(listener) => accept_loop(listener, address, inner, Some(index)).await,
                    Err(e) => tracing::warn!(%address, error = %e, "listener not registered"),
                }
            }));
        }
        Ok(loops)
    }

    /// Which worker serves a connection `accepted_by` took ([`crate::balance`]): bulk
    /// connections tolerate an eighth of all connections of imbalance before one moves.
    fn place(&self, accepted_by: usize) -> usize {
        crate::balance::place(&self.load, accepted_by, |total| (total / 8).max(1) - 1)
    }

    /// Serves `client` on worker `index`, counting it in the worker's load.
    fn serve(
        &self,
        index: usize,
        client: TcpStream,
        peer: SocketAddr,
        route: Arc<Route>,
        inner: Arc<Inner>,
        here: bool,
    ) {
        self.load[index].fetch_add(1, Ordering::Relaxed);
        let serve = async move |client: TcpStream, inner: Arc<Inner>| {
            proxy(client, peer, route, inner.clone()).await;
            inner.workers.load[index].fetch_sub(1, Ordering::Relaxed);
        };
        if here {
            tokio::spawn(serve(client, inner));
            return;
        }
        let Ok(client) = client.into_std() else {
            self.load[index].fetch_sub(1, Ordering::Relaxed);
            return;
        };
        self.handles[index].spawn(async move {
            match TcpStream::from_std(client) {
                Ok(client) => serve(client, inner).await,
                Err(_) => {
                    inner.workers.load[index].fetch_sub(1, Ordering::Relaxed);
                }
            }
        });
    }
}

/// The service proxy.
#[derive(Clone)]
pub struct ServiceProxy {
    inner: Arc<Inner>,
}

impl Default for ServiceProxy {
    fn default() -> Self {
        Self::new()
    }
}

impl ServiceProxy {
    /// A proxy with no Services.
    pub fn new() -> ServiceProxy {
        ServiceProxy {
            inner: Arc::new(Inner {
                table: ArcSwap::from_pointee(HashMap::new()),
                listeners: Mutex::new(HashMap::new()),
                affinity: Mutex::new(HashMap::new()),
                stats: Mutex::new(HashMap::new()),
                workers: Workers::start(),
            }),
        }
    }

    /// Makes the proxy serve exactly `ports`: opens missing listeners, closes the ones no
    /// longer wanted (their connections live on), and swaps the routing table. Returns the
    /// addresses that could not be bound, with why.
    pub async fn apply(&self, ports: Vec<ServicePort>) -> Vec<(String, SocketAddr, io::Error)> {
        let mut table = HashMap::new();
        for port in &ports {
            let route = Arc::new(Route {
                id: Arc::from(port.id.as_str()),
                stats: stats_for(&self.inner, &port.id),
                endpoints: port.endpoints.clone(),
                affinity: port.affinity,
                next: AtomicUsize::new(0),
            });
            for address in &port.listen {
                table.insert(*address, route.clone());
            }
        }
        // Swap first: a listener opened below finds its route at once.
        self.inner.table.store(Arc::new(table.clone()));
        let mut failures = Vec::new();
        let mut closing = Vec::new();
        {
            let mut listeners = self.lock_listeners();
            listeners.retain(|address, loops| {
                let keep = table.contains_key(address);
                if !keep {
                    loops.iter().for_each(JoinHandle::abort);
                    closing.append(loops);
                }
                keep
            });
            for (address, route) in &table {
                if listeners.contains_key(address) {
                    continue;
                }
                let accepting = bind(*address).and_then(|listener| {
                    self.inner
                        .workers
                        .accept_on_all(listener, *address, &self.inner)
                });
                match accepting {
                    Ok(loops) => {
                        listeners.insert(*address, loops);
                    }
                    Err(e) => failures.push((route.id.to_string(), *address, e)),
                }
            }
        }
        // The accept loops run on the workers: wait until they are gone, so that a removed
        // address refuses connections once `apply` returns.
        for accept_loop in closing {
            let _ = accept_loop.await;
        }
        let ids: std::collections::HashSet<Arc<str>> =
            table.values().map(|r| r.id.clone()).collect();
        self.inner
            .affinity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _), _| ids.contains(id));
        failures
    }

    /// Addresses listened on now.
    pub fn listening(&self) -> Vec<SocketAddr> {
        self.lock_listeners().keys().copied().collect()
    }

    /// Counters of a Service port (`namespace/name:port`).
    pub fn stats(&self, id: &str) -> Arc<PortStats> {
        stats_for(&self.inner, id)
    }

    /// Prometheus text of the proxy's counters per Service port.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let stats: Vec<(Arc<str>, Arc<PortStats>)> = self
            .inner
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out = String::new();
        for (name, help, kind, pick) in [
            (
                "switchyard_service_connections_total",
                "Connections proxied per Service port.",
                "counter",
                (|s: &PortStats| s.connections.load(Ordering::Relaxed)) as fn(&PortStats) -> u64,
            ),
            (
                "switchyard_service_active_connections",
                "Connections open now per Service port.",
                "gauge",
                |s: &PortStats| s.active.load(Ordering::Relaxed),
            ),
            (
                "switchyard_service_refused_connections_total",
                "Connections refused: no ready or reachable endpoint.",
                "counter",
                |s: &PortStats| s.refused.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (id, s) in &stats {
                let _ = writeln!(out, "{name}{{service=\"{id}\"}} {}", pick(s));
            }
        }
        out
    }

    /// Closes every listener.
    pub fn shutdown(&self) {
        for (_, loops) in self.lock_listeners().drain() {
            loops.iter().for_each(JoinHandle::abort);
        }
    }

    fn lock_listeners(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Vec<JoinHandle<()>>>> {
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

fn stats_for(inner: &Inner, id: &str) -> Arc<PortStats> {
    let mut stats = inner.stats.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = stats.get(id) {
        return s.clone();
    }
    let s = Arc::new(PortStats::default());
    stats.insert(Arc::from(id), s.clone());
    s
}

fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

/// Accepts for one listening address on worker `worker` (or the current runtime).
async fn accept_loop(
    listener: TcpListener,
    address: SocketAddr,
    inner: Arc<Inner>,
    worker: Option<usize>,
) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors and the like: back off a little, keep serving.
                tracing::warn!(%address, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(route) = inner.table.load().get(&address).cloned() else {
            refuse(client);
            continue;
        };
        match worker {
            Some(me) => {
                let to = inner.workers.place(me);
                inner
                    .workers
                    .serve(to, client, peer, route, inner.clone(), to == me);
            }
            None => {
                tokio::spawn(proxy(client, peer, route, inner.clone()));
            }
        }
    }
}

/// Resets the connection, as a REJECT rule would: the client sees it fail at once.
fn refuse(client: TcpStream) {
    let _ = client.set_zero_linger();
    drop(client);
}

/// The endpoints to try, in order: the client's sticky endpoint (ClientIP affinity within
/// its timeout), then every other one from the next in round-robin order.
fn pick<'a>(
    route: &'a Route,
    peer: IpAddr,
    inner: &Inner,
) -> impl Iterator<Item = SocketAddr> + 'a {
    let n = route.endpoints.len();
    let start = route.next.fetch_add(1, Ordering::Relaxed) % n.max(1);
    let sticky = route.affinity.and_then(|timeout| {
        let affinity = inner.affinity.lock().unwrap_or_else(|e| e.into_inner());
        affinity
            .get(&(route.id.clone(), peer))
            .filter(|(endpoint, last)| {
                last.elapsed() < timeout && route.endpoints.contains(endpoint)
            })
            .map(|(endpoint, _)| *endpoint)
    });
    let rotated = (0..n).map(move |i| route.endpoints[(start + i) % n]);
    sticky
        .into_iter()
        .chain(rotated.filter(move |e| Some(*e) != sticky))
}

async fn proxy(mut client: TcpStream, peer: SocketAddr, route: Arc<Route>, inner: Arc<Inner>) {
    let stats = &route.stats;
    let mut upstream = None;
    for endpoint in pick(&route, peer.ip(), &inner) {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint)).await
        {
            upstream = Some((endpoint, stream));
            break;
        }
    }
    let Some((endpoint, mut upstream)) = upstream else {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        refuse(client);
        return;
    };
    if route.affinity.is_some() {
        inner
            .affinity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((route.id.clone(), peer.ip()), (endpoint, Instant::now()));
    }
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    stats.connections.fetch_add(1, Ordering::Relaxed);
    stats.active.fetch_add(1, Ordering::Relaxed);
    copy_both_ways(&mut client, &mut upstream).await;
    stats.active.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A backend answering every connection with its name, then echoing.
    async fn backend(name: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    s.write_all(name.as_bytes()).await.unwrap();
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        address
    }

    async fn free_address() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
    }

    async fn hello(address: SocketAddr) -> io::Result<String> {
        let mut s = TcpStream::connect(address).await?;
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "closed"));
        }
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    fn port(
        listen: SocketAddr,
        endpoints: Vec<SocketAddr>,
        affinity: Option<Duration>,
    ) -> ServicePort {
        ServicePort {
            id: "default/web:80".into(),
            listen: vec![listen],
            endpoints,
            affinity,
        }
    }

    #[tokio::test]
    async fn connections_spread_over_endpoints_and_follow_changes() {
        let (a, b) = (backend("a").await, backend("b").await);
        let listen = free_address().await;
        let proxy = ServiceProxy::new();
        assert!(
            proxy
                .apply(vec![port(listen, vec![a, b], None)])
                .await
                .is_empty()
        );
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..4 {
            seen.insert(hello(listen).await.unwrap());
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["a", "b"]);

        // A long-lived connection keeps its endpoint across a switch.
        let mut long = TcpStream::connect(listen).await.unwrap();
        let mut buf = [0u8; 16];
        let n = long.read(&mut buf).await.unwrap();
        let first = String::from_utf8_lossy(&buf[..n]).into_owned();
        let other = if first == "a" { b } else { a };
        proxy.apply(vec![port(listen, vec![other], None)]).await;
        for _ in 0..3 {
            assert_ne!(
                hello(listen).await.unwrap(),
                first,
                "new connections follow the change"
            );
        }
        long.write_all(b"ping").await.unwrap();
        let n = long.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ping", "the established connection still flows");

        // No ready endpoint: refused at once.
        proxy.apply(vec![port(listen, vec![], None)]).await;
        let started = Instant::now();
        assert!(hello(listen).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            proxy
                .stats("default/web:80")
                .refused
                .load(Ordering::Relaxed)
                >= 1
        );

        // Removing the port closes the listener.
        proxy.apply(vec![]).await;
        assert!(proxy.listening().is_empty());
        assert!(TcpStream::connect(listen).await.is_err());
    }

    #[tokio::test]
    async fn client_ip_affinity_sticks_until_its_timeout() {
        let (a, b) = (backend("a").await, backend("b").await);
        let listen = free_address().await;
        let proxy = ServiceProxy::new();
        proxy
            .apply(vec![port(
                listen,
                vec![a, b],
                Some(Duration::from_millis(300)),
            )])
            .await;
        let first = hello(listen).await.unwrap();
        for _ in 0..5 {
            assert_eq!(hello(listen).await.unwrap(), first);
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..6 {
            seen.insert(hello(listen).await.unwrap());
            tokio::time::sleep(Duration::from_millis(350)).await;
        }
        assert_eq!(
            seen.len(),
            2,
            "after the timeout the client is spread again"
        );
    }

    #[tokio::test]
    async fn unreachable_endpoints_are_skipped() {
        let a = backend("a").await;
        let dead = free_address().await;
        let listen = free_address().await;
        let proxy = ServiceProxy::new();
        proxy.apply(vec![port(listen, vec![dead, a], None)]).await;
        for _ in 0..4 {
            assert_eq!(hello(listen).await.unwrap(), "a");
        }
    }
}
