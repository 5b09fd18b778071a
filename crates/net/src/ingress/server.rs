//! The ingress HTTP server: HTTP/1.1 and h2c, routing by the current [`RoutingTable`]
//! snapshot, ingress-nginx canary decisions, and a reverse proxy with keep-alive pooling,
//! retries of idempotent requests on connect failures, forwarding headers, timeouts, size
//! limits and WebSocket pass-through.

use std::borrow::Cow;
use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{Authority, PathAndQuery};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use super::h1;
use super::routing::{Backend, RequestView, RoutingTable};
use super::upstream::{self, UpstreamError};
use crate::metrics::{BackendKey, BackendStats, Metrics, Role};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of proxied requests and responses.
pub(crate) type Body = BoxBody<Bytes, BoxError>;

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

/// Whether an upstream request failed because the client's body exceeded the limit.
fn is_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Limits and timeouts of the ingress.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request head (request line and headers); larger gets 431.
    pub max_header_bytes: usize,
    /// Largest request body; larger gets 413.
    pub max_body_bytes: u64,
    /// Time a client has to send its request head (slow clients are cut off).
    pub header_read_timeout: Duration,
    /// Time the upstream has to answer with response headers; past it, 504.
    pub response_header_timeout: Duration,
    /// Time to connect to an upstream before trying the next endpoint.
    pub connect_timeout: Duration,
    /// Idle keep-alive connections to upstreams are closed after this.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 32 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            response_header_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Where a backend Service's traffic goes now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// Ready endpoints of the Service port.
    Endpoints(Vec<Endpoint>),
    /// An ExternalName Service: proxied to `host:port`.
    External(String, u16),
}

/// One ready endpoint and the version its pod runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Pod address and target port.
    pub address: SocketAddr,
    /// The same, as the authority of upstream request URIs (formatted once, not per
    /// request).
    pub authority: Authority,
    /// The pod's `pod-template-hash` (empty when it has none), so that metrics tell the
    /// versions behind one Service apart.
    pub version: Arc<str>,
}

impl Endpoint {
    /// An endpoint at `address` running `version`.
    pub fn new(address: SocketAddr, version: Arc<str>) -> Endpoint {
        let authority = Authority::try_from(address.to_string().as_str())
            .expect("a socket address is a valid authority");
        Endpoint {
            address,
            authority,
            version,
        }
    }
}

/// The routing snapshot: routes plus where each backend goes.
#[derive(Default, Clone)]
pub struct IngressTable {
    /// Routes from the Ingresses of our class.
    pub routes: RoutingTable,
    /// Upstreams by backend.
    pub upstreams: foldhash::HashMap<Backend, Upstream>,
}

/// The ingress: the current table and the metrics, shared by its worker threads (each
/// has its own upstream connection pool, see [`serve`]).
pub struct Ingress {
    table: ArcSwap<IngressTable>,
    /// Turns true with the first table: until then connections wait in the backlog, so
    /// that a restarted server never answers from an empty table.
    loaded: tokio::sync::watch::Sender<bool>,
    metrics: Arc<Metrics>,
    limits: Limits,
    /// Seeds of the workers' random streams and request ids.
    random: AtomicU64,
    request_ids: AtomicU64,
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers that describe one hop and must not be forwarded (RFC 9110 section 7.6.1).
pub(crate) const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Whether a header of a message whose Connection header names `named` is not forwarded
/// on the fast path: hop-by-hop, named by Connection, or Upgrade (kept only by upgrades,
/// which take hyper's path). Names compare case-insensitively.
pub(crate) fn is_hop_by_hop(name: &str, named: &[&[u8]]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || name.eq_ignore_ascii_case("upgrade")
        || named
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name.as_bytes()))
}

impl Ingress {
    /// An ingress with an empty table.
    pub fn new(metrics: Arc<Metrics>, limits: Limits) -> Arc<Ingress> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        Arc::new(Ingress {
            table: ArcSwap::from_pointee(IngressTable::default()),
            loaded: tokio::sync::watch::channel(false).0,
            metrics,
            limits,
            random: AtomicU64::new(seed),
            request_ids: AtomicU64::new(seed.rotate_left(17)),
        })
    }

    /// Swaps in a new table; requests in flight keep the one they started with.
    pub fn update(&self, table: IngressTable) {
        self.table.store(Arc::new(table));
        self.loaded.send_replace(true);
    }

    /// The metrics the ingress records.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

/// Serves HTTP/1.1 and h2c on `listener` until `shutdown` resolves; a failing connection
/// or backend never takes the listener down.
///
/// One worker thread per CPU, each a current-thread runtime accepting on its own copy of
/// the listener with its own upstream pool: a request, its upstream connection and its
/// response stay on one thread, as in nginx's worker model, instead of waking tasks
/// across the server's shared work-stealing runtime (which measured a futex call and a
/// context switch for most requests). A worker that already serves clearly more
/// connections than another hands a new one over ([`Balance`]).
pub async fn serve(
    listener: TcpListener,
    ingress: Arc<Ingress>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let listener = match listener.into_std() {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "ingress listener unusable");
            return;
        }
    };
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (balance, handoffs) = Balance::new(workers);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut finished = Vec::new();
    for (i, handoff) in handoffs.into_iter().enumerate() {
        let balance = balance.clone();
        let listener = match listener.try_clone() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "ingress listener cannot be shared");
                break;
            }
        };
        let (ingress, stopped) = (ingress.clone(), stopped.clone());
        let (done, finished_rx) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name(format!("ingress-{i}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => runtime.block_on(worker(
                        Seat {
                            index: i,
                            balance,
                            handoff,
                        },
                        listener,
                        ingress,
                        stopped,
                    )),
                    Err(e) => tracing::error!(error = %e, "ingress worker runtime"),
                }
                let _ = done.send(());
            });
        match spawned {
            Ok(_) => finished.push(finished_rx),
            Err(e) => tracing::error!(error = %e, "ingress worker thread"),
        }
    }
    shutdown.await;
    let _ = stop.send(true);
    for worker in finished {
        let _ = worker.await;
    }
}

/// A connection handed from one worker to another.
type Handoff = (std::net::TcpStream, SocketAddr);

/// Keeps the workers' connection counts level. Each worker keeps what it accepts unless
/// it serves clearly more than the least loaded worker (the kernel wakes whichever worker
/// it likes, so a few long connections could otherwise all land on one thread and leave
/// the other CPU idle); then the connection goes to that worker, which serves it from
/// then on. Only accepting costs a hand-off, never a request.
struct Balance {
    load: Vec<AtomicUsize>,
    handoffs: Vec<tokio::sync::mpsc::UnboundedSender<Handoff>>,
}

impl Balance {
    fn new(
        workers: usize,
    ) -> (
        Arc<Balance>,
        Vec<tokio::sync::mpsc::UnboundedReceiver<Handoff>>,
    ) {
        let (senders, receivers) = (0..workers)
            .map(|_| tokio::sync::mpsc::unbounded_channel())
            .unzip();
        let balance = Balance {
            load: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            handoffs: senders,
        };
        (Arc::new(balance), receivers)
    }

    /// Which worker serves a connection `accepted_by` took ([`crate::balance`]). Tighter
    /// than the service proxy's rule (an eighth of all connections): requests queue per
    /// worker, so a worker with a few more connections than the other gives every one of
    /// them a longer wait, and that showed in p99.
    fn place(&self, accepted_by: usize) -> usize {
        crate::balance::place(&self.load, accepted_by, |total| 1 + total / 32)
    }
}

/// A worker's place among the others.
struct Seat {
    index: usize,
    balance: Arc<Balance>,
    handoff: tokio::sync::mpsc::UnboundedReceiver<Handoff>,
}

/// One worker: accepts, serves, and proxies on its own runtime until `stopped`.
async fn worker(
    mut seat: Seat,
    listener: std::net::TcpListener,
    ingress: Arc<Ingress>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        tracing::error!("ingress worker cannot register its listener");
        return;
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(ingress.limits.max_header_bytes.max(8192))
        .header_read_timeout(ingress.limits.header_read_timeout)
        .timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let shutdown = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    tokio::pin!(shutdown);
    // Serve only once the controllers have given us the stored routes.
    let mut loaded = ingress.loaded.subscribe();
    tokio::select! {
        _ = loaded.wait_for(|l| *l) => {}
        _ = &mut shutdown => return,
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Counted at once where it goes, so that a burst of accepts is spread
                    // by counts that already include the connections handed over.
                    let to = seat.balance.place(seat.index);
                    seat.balance.load[to].fetch_add(1, Ordering::Relaxed);
                    if to == seat.index {
                        (stream, peer)
                    } else {
                        match stream.into_std() {
                            Ok(stream) => {
                                let _ = seat.balance.handoffs[to].send((stream, peer));
                            }
                            Err(_) => {
                                seat.balance.load[to].fetch_sub(1, Ordering::Relaxed);
                            }
                        }
                        continue;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ingress accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some((stream, peer)) = seat.handoff.recv() => match TcpStream::from_std(stream) {
                Ok(stream) => (stream, peer),
                Err(e) => {
                    tracing::warn!(error = %e, "ingress connection handed over unusable");
                    seat.balance.load[seat.index].fetch_sub(1, Ordering::Relaxed);
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let ingress = ingress.clone();
        // Formatted once per connection, not per request.
        let client_ip: Arc<str> = peer.ip().to_string().into();
        let service = hyper::service::service_fn(move |request| {
            let (ingress, client_ip) = (ingress.clone(), client_ip.clone());
            async move { Ok::<_, Infallible>(handle(&ingress, request, &client_ip).await) }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        let balance = seat.balance.clone();
        let index = seat.index;
        tokio::spawn(async move {
            let _ = connection.await;
            balance.load[index].fetch_sub(1, Ordering::Relaxed);
        });
    }
    // In-flight requests finish; idle connections close.
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}

/// How the way to an upstream failed, answered as ingress-nginx answers.
enum Gateway {
    /// No response head within the response header timeout.
    TimedOut,
    /// Connecting failed and the request could not go elsewhere.
    Unreachable,
    /// The upstream broke the exchange.
    Failed,
    /// Connecting failed for every endpoint.
    NoneReachable,
}

impl Gateway {
    fn answer(self) -> Response<Body> {
        let (status, message) = match self {
            Gateway::TimedOut => (
                StatusCode::GATEWAY_TIMEOUT,
                "504 Gateway Time-out: the upstream did not answer in time",
            ),
            Gateway::Unreachable => (
                StatusCode::BAD_GATEWAY,
                "502 Bad Gateway: the upstream could not be reached",
            ),
            Gateway::Failed => (
                StatusCode::BAD_GATEWAY,
                "502 Bad Gateway: the upstream failed",
            ),
            Gateway::NoneReachable => (
                StatusCode::BAD_GATEWAY,
                "502 Bad Gateway: no upstream could be reached",
            ),
        };
        text(status, message)
    }
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(
            Full::new(Bytes::from(format!("{message}\n")))
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("static response parts")
}

struct View<'a> {
    headers: &'a HeaderMap,
}

impl RequestView for View<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// The host a request names (its Host header, or the URI's authority for HTTP/2), as
/// routes match it: lowercase, without port or trailing dot. Borrowed from `host_header`
/// unless it needs changing.
fn host_of<'a>(host_header: Option<&'a HeaderValue>, uri: &Uri) -> Cow<'a, str> {
    fn normalize(host: &str) -> Cow<'_, str> {
        let host = match host.strip_prefix('[') {
            // An IPv6 literal keeps its colons.
            Some(rest) => rest.find(']').map_or(host, |end| &host[..end + 2]),
            None => match host.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => host,
            },
        };
        let host = host.trim_end_matches('.');
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        }
    }
    match host_header.and_then(|h| h.to_str().ok()) {
        Some(host) => normalize(host),
        None => Cow::Owned(normalize(uri.authority().map_or("", |a| a.as_str())).into_owned()),
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
        && headers.contains_key(header::UPGRADE)
}

fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Headers named by Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && *n == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if !keep_upgrade {
        headers.remove(header::UPGRADE);
    }
}

async fn handle(ingress: &Ingress, request: Request<Incoming>, client_ip: &str) -> Response<Body> {
    let started = Instant::now();
    let table = Local::table(ingress);
    let host_header = request.headers().get(header::HOST).cloned();
    let host = host_of(host_header.as_ref(), request.uri());
    let Some(route) = table.routes.find(&host, request.uri().path()) else {
        return text(
            StatusCode::NOT_FOUND,
            "404 Not Found: no Ingress rule matches this host and path",
        );
    };
    // A canary without ready endpoints takes no traffic: ingress-nginx does not merge an
    // alternative backend that has no endpoints.
    let canary_ready = |c: &&super::routing::Canary| match table.upstreams.get(&c.backend) {
        None => false,
        Some(Upstream::Endpoints(endpoints)) => !endpoints.is_empty(),
        Some(Upstream::External(..)) => true,
    };
    let canary = route.canary.as_ref().filter(canary_ready).filter(|c| {
        c.config.choose(
            &View {
                headers: request.headers(),
            },
            Local::random(ingress),
        )
    });
    let (backend, ingress_name, role) = match canary {
        Some(c) => (&c.backend, &c.ingress, Role::Canary),
        None => (&route.backend, &route.ingress, Role::Stable),
    };
    let targets = targets(&table, backend, Local::next(ingress));
    let with_stats = |version: &str, count: &dyn Fn(&BackendStats)| {
        Local::with_stats(ingress, ingress_name, backend, role, version, count);
    };
    let version = |i: usize| targets.get(i).map_or("", |(_, version)| version);
    let length = |headers: &HeaderMap| {
        headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    };
    let bytes_in = length(request.headers());
    with_stats(version(0), &|stats| stats.started(bytes_in));
    let mut answered = None;
    let response = proxy(ingress, &targets, request, client_ip, &host, &mut answered).await;
    with_stats(version(0), &BackendStats::ended);
    // The figures belong to the version that answered (a retry may reach another pod).
    let answered_by = match answered {
        Some(i) => version(i),
        None => version(0),
    };
    let status = response.status().as_u16();
    let bytes_out = length(response.headers());
    with_stats(answered_by, &|stats| {
        stats.record(status, started.elapsed(), bytes_out);
    });
    response
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

/// What each worker keeps to itself, so that serving a request writes no cache line that
/// another CPU writes too: its own copy of the current table (a shared `Arc` would have
/// both CPUs bump one reference count per request), its counters by backend, its
/// round-robin position, random stream and request ids.
struct Local {
    /// The shared table the copy was made from, to notice a swap.
    source: Arc<IngressTable>,
    table: Arc<IngressTable>,
    /// Counters by the addresses of the route's Ingress name and backend in `table`, and
    /// the role, then by version: found without building a key, taking the metrics lock
    /// or allocating.
    stats: foldhash::HashMap<(usize, usize, Role), VersionStats>,
    next: usize,
    random: u64,
    request_ids: u64,
}

/// A backend's counters per version.
type VersionStats = Vec<(Arc<str>, Arc<BackendStats>)>;

impl Local {
    /// Runs `f` on this worker's state; `fresh` first replaces the table copy (and the
    /// counters cache) when the shared table has been swapped.
    fn with<T>(ingress: &Ingress, fresh: bool, f: impl FnOnce(&mut Local) -> T) -> T {
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            let local = match &mut *local {
                Some(l) if !fresh => l,
                Some(l) if Arc::ptr_eq(&l.source, &ingress.table.load()) => l,
                slot => {
                    let shared = ingress.table.load_full();
                    let (random, request_ids) = match slot.take() {
                        Some(old) => (old.random, old.request_ids),
                        // Each worker's streams start at a different place.
                        None => (
                            ingress
                                .random
                                .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed),
                            ingress.request_ids.fetch_add(1 << 40, Ordering::Relaxed),
                        ),
                    };
                    slot.insert(Local {
                        table: Arc::new(IngressTable::clone(&shared)),
                        source: shared,
                        stats: foldhash::HashMap::default(),
                        next: random as usize,
                        random,
                        request_ids,
                    })
                }
            };
            f(local)
        })
    }

    /// This worker's copy of the current table.
    fn table(ingress: &Ingress) -> Arc<IngressTable> {
        Self::with(ingress, true, |local| local.table.clone())
    }

    /// The next round-robin position.
    fn next(ingress: &Ingress) -> usize {
        Self::with(ingress, false, |local| {
            local.next = local.next.wrapping_add(1);
            local.next
        })
    }

    /// A uniform number in [0, 1) from this worker's SplitMix64 stream.
    fn random(ingress: &Ingress) -> f64 {
        Self::with(ingress, false, |local| {
            local.random = local.random.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = local.random;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64
        })
    }

    /// A new request id: 32 hex digits, as ingress-nginx's `$request_id`.
    fn request_id(ingress: &Ingress) -> [u8; 32] {
        let n = Self::with(ingress, false, |local| {
            local.request_ids = local.request_ids.wrapping_add(0x9E37_79B9_7F4A_7C15);
            local.request_ids
        });
        let mut id = [0u8; 32];
        for (i, half) in [n, n.rotate_left(29) ^ 0x5851_F42D_4C95_7F2D]
            .into_iter()
            .enumerate()
        {
            for (j, digit) in id[i * 16..(i + 1) * 16].iter_mut().enumerate() {
                *digit = b"0123456789abcdef"[(half >> (60 - 4 * j) & 0xf) as usize];
            }
        }
        id
    }

    /// Runs `count` on the counters of `version` behind the route's backend (`ingress_name`
    /// and `backend` borrowed from this worker's table).
    fn with_stats(
        ingress: &Ingress,
        ingress_name: &(String, String),
        backend: &Backend,
        role: Role,
        version: &str,
        count: &dyn Fn(&BackendStats),
    ) {
        Self::with(ingress, false, |local| {
            let key = (
                std::ptr::from_ref(ingress_name) as usize,
                std::ptr::from_ref(backend) as usize,
                role,
            );
            let versions = local.stats.entry(key).or_default();
            if let Some((_, stats)) = versions.iter().find(|(v, _)| &**v == version) {
                return count(stats);
            }
            let stats = ingress.metrics.backend(&BackendKey {
                ingress: format!("{}/{}", ingress_name.0, ingress_name.1),
                service: format!("{}/{}", backend.namespace, backend.service),
                role,
                version: version.to_string(),
            });
            count(&stats);
            versions.push((Arc::from(version), stats));
        });
    }
}

/// Where a request may go, in the order to try: every ready endpoint, starting at the next
/// in round-robin order, or the external name. Borrowed from the table: nothing is copied
/// per request.
enum Targets<'a> {
    Endpoints {
        endpoints: &'a [Endpoint],
        start: usize,
    },
    External(Option<Authority>),
}

impl Targets<'_> {
    fn len(&self) -> usize {
        match self {
            Targets::Endpoints { endpoints, .. } => endpoints.len(),
            Targets::External(authority) => usize::from(authority.is_some()),
        }
    }

    /// The `i`th target to try: its authority and the version its pod runs.
    fn get(&self, i: usize) -> Option<(&Authority, &str)> {
        match self {
            Targets::Endpoints { endpoints, start } => {
                let endpoint = endpoints.get((start + i) % endpoints.len().max(1))?;
                (i < endpoints.len()).then_some((&endpoint.authority, &*endpoint.version))
            }
            Targets::External(authority) => authority.as_ref().filter(|_| i == 0).map(|a| (a, "")),
        }
    }
}

fn targets<'a>(table: &'a IngressTable, backend: &Backend, next: usize) -> Targets<'a> {
    match table.upstreams.get(backend) {
        None => Targets::External(None),
        Some(Upstream::External(name, port)) => {
            Targets::External(Authority::try_from(format!("{name}:{port}")).ok())
        }
        Some(Upstream::Endpoints(endpoints)) => Targets::Endpoints {
            endpoints,
            start: next % endpoints.len().max(1),
        },
    }
}

/// Proxies the request to the first of `targets` that accepts a connection; `answered`
/// is left at the index of the last target tried.
async fn proxy(
    ingress: &Ingress,
    targets: &Targets<'_>,
    mut request: Request<Incoming>,
    client_ip: &str,
    host: &str,
    answered: &mut Option<usize>,
) -> Response<Body> {
    if targets.len() == 0 {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Temporarily Unavailable: the backend has no ready endpoint",
        );
    }
    if request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > ingress.limits.max_body_bytes)
    {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "413 Request Entity Too Large",
        );
    }
    let upgrade = is_upgrade(request.headers());
    if h1::eligible(request.method(), request.headers(), upgrade) {
        let head = forwarded_head(ingress, &request, client_ip, host);
        let head_request = request.method() == hyper::Method::HEAD;
        return proxy_bodiless(ingress, targets, &head, head_request, answered).await;
    }
    // Only bodiless idempotent requests can be retried on another endpoint.
    let has_body = request.headers().contains_key(header::CONTENT_LENGTH)
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    let mut client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (parts, incoming) = request.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers, upgrade);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(previous) => format!("{previous}, {client_ip}"),
        None => client_ip.to_string(),
    };
    let set = |headers: &mut HeaderMap, name: HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(&mut headers, X_FORWARDED_FOR, &forwarded_for);
    set(&mut headers, X_REAL_IP, client_ip);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    set(&mut headers, X_FORWARDED_HOST, host);
    if !headers.contains_key(&X_REQUEST_ID)
        && let Ok(id) = HeaderValue::from_bytes(&Local::request_id(ingress))
    {
        headers.insert(X_REQUEST_ID, id);
    }
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let method = parts.method;
    let retriable = !has_body
        && matches!(
            method.as_str(),
            "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
        );
    // HTTP/2 clients name the host in the URI, not in a Host header: HTTP/1.1 needs one.
    if !headers.contains_key(header::HOST)
        && let Some(value) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        headers.insert(header::HOST, value);
    }
    let mut uri = hyper::http::uri::Parts::default();
    uri.path_and_query = Some(path);
    let Ok(uri) = Uri::from_parts(uri) else {
        return text(StatusCode::BAD_REQUEST, "400 Bad Request");
    };
    let mut upstream_request =
        Request::new(Limited::new(incoming, ingress.limits.max_body_bytes as usize).boxed());
    *upstream_request.method_mut() = method;
    *upstream_request.uri_mut() = uri;
    *upstream_request.headers_mut() = headers;
    // The request goes to one endpoint after the other while connecting fails (an unsent
    // request comes back for the next); its URI is origin-form, the same for all.
    let mut unsent = Some(upstream_request);
    for attempt in 0..targets.len() {
        let Some((authority, _)) = targets.get(attempt) else {
            break;
        };
        *answered = Some(attempt);
        let Some(upstream_request) = unsent.take() else {
            break;
        };
        let sent = tokio::time::timeout(
            ingress.limits.response_header_timeout,
            upstream::send(
                authority,
                upstream_request,
                ingress.limits.connect_timeout,
                ingress.limits.idle_timeout,
            ),
        )
        .await;
        match sent {
            Err(_) => {
                return Gateway::TimedOut.answer();
            }
            Ok(Ok(mut response)) => {
                if response.status() == StatusCode::SWITCHING_PROTOCOLS
                    && let Some(client_upgrade) = client_upgrade.take()
                {
                    let upstream_upgrade = hyper::upgrade::on(&mut response);
                    tokio::spawn(async move {
                        if let (Ok(client), Ok(upstream)) =
                            (client_upgrade.await, upstream_upgrade.await)
                        {
                            let _ = tokio::io::copy_bidirectional(
                                &mut TokioIo::new(client),
                                &mut TokioIo::new(upstream),
                            )
                            .await;
                        }
                    });
                    let (parts, _) = response.into_parts();
                    return Response::from_parts(parts, empty());
                }
                let (mut parts, incoming) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers, false);
                return Response::from_parts(parts, incoming.map_err(BoxError::from).boxed());
            }
            Ok(Err(UpstreamError::Connect(error, request))) => {
                tracing::debug!(%error, "upstream connect failed");
                if retriable {
                    unsent = Some(*request);
                    continue;
                }
                return Gateway::Unreachable.answer();
            }
            Ok(Err(UpstreamError::Exchange(error))) => {
                if is_too_large(&error) {
                    return text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "413 Request Entity Too Large",
                    );
                }
                tracing::debug!(%error, target = %authority, "upstream request failed");
                return Gateway::Failed.answer();
            }
        }
    }
    Gateway::NoneReachable.answer()
}

/// The request head sent upstream on the fast path: the client's request line (with an
/// origin-form target) and headers, without hop-by-hop headers, plus what ingress-nginx
/// adds (X-Forwarded-For/-Host/-Proto, X-Real-IP, X-Request-ID), written straight into
/// bytes.
fn forwarded_head(
    ingress: &Ingress,
    request: &Request<Incoming>,
    client_ip: &str,
    host: &str,
) -> Vec<u8> {
    use std::io::Write as _;
    let headers = request.headers();
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(request.method().as_str().as_bytes());
    head.push(b' ');
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", PathAndQuery::as_str);
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    // Headers named by Connection are hop-by-hop too.
    let named: Vec<&[u8]> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    let mut previous_for = None;
    for (name, value) in headers {
        if name == X_FORWARDED_FOR {
            previous_for = Some(value);
            continue;
        }
        let replaced = name == X_REAL_IP || name == X_FORWARDED_PROTO || name == X_FORWARDED_HOST;
        let name = name.as_str();
        if replaced || is_hop_by_hop(name, &named) {
            continue;
        }
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    // HTTP/2 clients name the host in the URI, not in a Host header: HTTP/1.1 needs one.
    if !headers.contains_key(header::HOST)
        && let Some(authority) = request.uri().authority()
    {
        let _ = write!(head, "host: {authority}\r\n");
    }
    head.extend_from_slice(b"x-forwarded-for: ");
    if let Some(previous) = previous_for {
        head.extend_from_slice(previous.as_bytes());
        head.extend_from_slice(b", ");
    }
    for piece in [
        client_ip,
        "\r\nx-real-ip: ",
        client_ip,
        "\r\nx-forwarded-proto: http\r\nx-forwarded-host: ",
        host,
        "\r\n",
    ] {
        head.extend_from_slice(piece.as_bytes());
    }
    if !headers.contains_key(&X_REQUEST_ID) {
        head.extend_from_slice(b"x-request-id: ");
        head.extend_from_slice(&Local::request_id(ingress));
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Proxies a bodiless GET or HEAD over the fast path ([`h1`]) to the first of `targets`
/// that accepts a connection; `answered` is left at the index of the last target tried.
async fn proxy_bodiless(
    ingress: &Ingress,
    targets: &Targets<'_>,
    head: &[u8],
    head_request: bool,
    answered: &mut Option<usize>,
) -> Response<Body> {
    for attempt in 0..targets.len() {
        let Some((authority, _)) = targets.get(attempt) else {
            break;
        };
        *answered = Some(attempt);
        let sent = tokio::time::timeout(
            ingress.limits.response_header_timeout,
            h1::send(
                authority,
                head,
                head_request,
                ingress.limits.connect_timeout,
                ingress.limits.idle_timeout,
            ),
        )
        .await;
        match sent {
            Err(_) => {
                return Gateway::TimedOut.answer();
            }
            Ok(Ok(response)) => return response,
            Ok(Err(h1::Failure::Connect(error))) => {
                tracing::debug!(%error, "upstream connect failed");
            }
            Ok(Err(h1::Failure::Exchange(error))) => {
                tracing::debug!(%error, "upstream request failed");
                return Gateway::Failed.answer();
            }
        }
    }
    Gateway::NoneReachable.answer()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_go_to_the_worker_that_accepted_them_unless_it_is_ahead() {
        // (loads before, accepted by, placed on)
        let cases: &[(&[usize], usize, usize)] = &[
            (&[0, 0], 0, 0),
            (&[1, 0], 0, 0),
            (&[2, 0], 0, 1),
            (&[0, 2], 1, 0),
            (&[2, 1], 0, 0),
            (&[33, 31], 0, 0),
            (&[34, 31], 0, 0),
            (&[35, 31], 0, 1),
            (&[5, 0, 3], 0, 1),
            (&[5, 9, 3], 1, 2),
        ];
        for &(loads, accepted_by, placed) in cases {
            let (balance, _receivers) = Balance::new(loads.len());
            for (counter, &load) in balance.load.iter().zip(loads) {
                counter.store(load, Ordering::Relaxed);
            }
            assert_eq!(
                balance.place(accepted_by),
                placed,
                "{loads:?} by {accepted_by}"
            );
        }
    }

    #[test]
    fn hosts_are_matched_lowercase_without_port_or_trailing_dot() {
        let uri = Uri::from_static("http://From.URI:8080/x");
        for (header, host) in [
            ("web.local", "web.local"),
            ("Web.Local:8080", "web.local"),
            ("web.local.", "web.local"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
            ("127.0.0.1:80", "127.0.0.1"),
        ] {
            let value = HeaderValue::from_static(header);
            assert_eq!(host_of(Some(&value), &uri), host, "{header}");
        }
        assert_eq!(
            host_of(None, &uri),
            "from.uri",
            "HTTP/2: the URI's authority"
        );
    }

    #[test]
    fn request_ids_are_32_hex_digits_and_differ() {
        let ingress = Ingress::new(Arc::default(), Limits::default());
        let a = Local::request_id(&ingress);
        let b = Local::request_id(&ingress);
        assert_ne!(a, b);
        assert!(a.iter().all(u8::is_ascii_hexdigit), "{a:?}");
    }
}
