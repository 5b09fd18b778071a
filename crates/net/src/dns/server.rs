//! The DNS server: UDP and TCP listeners on one address (hickory-server does the wire
//! protocol), answering from the current snapshot of the records.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::{DNSClass, Record};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use tokio::net::{TcpListener, UdpSocket};
use tracing::warn;

use super::lookup::{self, Answer};
use super::records::{DnsRecords, InvalidZone};

/// How long a TCP connection may stay idle between queries. RFC 7766 section 6.2.3 asks
/// for seconds, not minutes: clients use TCP for one truncated answer and leave.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Responses queued per TCP connection; hickory answers a connection's queries one by one.
const TCP_RESPONSE_BUFFER: usize = 16;

/// The largest UDP response, whatever a client's EDNS buffer says: 1232 bytes, the DNS Flag
/// Day 2020 default, which avoids IP fragmentation when the listener is not on loopback.
/// Larger answers are truncated, and the client asks again over TCP.
const MAX_UDP_PAYLOAD: u16 = 1232;

/// The classic UDP limit (RFC 1035 section 4.2.1), for clients without EDNS.
const MIN_UDP_PAYLOAD: u16 = 512;

/// How often `bind` looks for a port free for both UDP and TCP when asked for any port.
const BIND_ATTEMPTS: usize = 16;

/// The cluster DNS server, listening on UDP and TCP until [`DnsServer::shutdown`] (or until
/// it is dropped, which stops it without waiting).
pub struct DnsServer {
    server: Server<Handler>,
    local_addr: SocketAddr,
    handle: DnsHandle,
}

/// A handle to change what the server answers; clones share the server's records.
#[derive(Clone)]
pub struct DnsHandle {
    records: Arc<ArcSwap<DnsRecords>>,
}

impl DnsHandle {
    /// Replaces the records: the next query is answered from `records`, zone included (the
    /// zone given to [`DnsServer::bind`] only names the first, empty snapshot). Queries
    /// already being answered finish with the snapshot they started with.
    pub fn update(&self, records: DnsRecords) {
        self.records.store(Arc::new(records));
    }

    /// The records queries are answered from now.
    pub fn snapshot(&self) -> Arc<DnsRecords> {
        self.records.load_full()
    }
}

impl std::fmt::Debug for DnsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsHandle")
            .field("zone", &self.records.load().zone())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("local_addr", &self.local_addr)
            .field("records", &self.handle)
            .finish_non_exhaustive()
    }
}

impl DnsServer {
    /// Listens on `listen` over UDP and TCP and serves `zone` (such as `cluster.local`),
    /// empty until the first [`DnsHandle::update`]. Port 0 picks a port free for both.
    ///
    /// Fails with `InvalidInput` when `zone` is not a domain name, and with the socket
    /// error when the address cannot be bound.
    pub async fn bind(listen: SocketAddr, zone: &str) -> io::Result<DnsServer> {
        let records = DnsRecords::new(zone, Vec::new())
            .map_err(|e: InvalidZone| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (udp, tcp) = bind_both(listen).await?;
        let local_addr = udp.local_addr()?;
        let handle = DnsHandle {
            records: Arc::new(ArcSwap::from_pointee(records)),
        };
        let mut server = Server::new(Handler {
            records: handle.records.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        Ok(DnsServer {
            server,
            local_addr,
            handle,
        })
    }

    /// The address the server listens on, UDP and TCP (with the port picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle to update the records the server answers from.
    pub fn records(&self) -> DnsHandle {
        self.handle.clone()
    }

    /// Stops listening and waits for the listeners to close; open TCP connections are
    /// dropped.
    pub async fn shutdown(mut self) {
        if let Err(error) = self.server.shutdown_gracefully().await {
            warn!(%error, "cluster DNS stopped with an error");
        }
    }
}

/// Binds UDP and TCP to the same address. For port 0 the UDP socket picks the port and TCP
/// follows; when that port is taken for TCP, another one is tried.
async fn bind_both(listen: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = UdpSocket::bind(listen).await?;
        let port = udp.local_addr()?.port();
        match TcpListener::bind(SocketAddr::new(listen.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error)
                if listen.port() == 0
                    && error.kind() == io::ErrorKind::AddrInUse
                    && attempt < BIND_ATTEMPTS => {}
            Err(error) => return Err(error),
        }
    }
}

/// Answers queries from the records' current snapshot.
struct Handler {
    records: Arc<ArcSwap<DnsRecords>>,
}

// `RequestHandler` is declared with `#[async_trait]`; this is the signature the macro
// gives it, written out so that the crate does not depend on async-trait for one impl.
impl RequestHandler for Handler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: ResponseHandler + 'async_trait,
        T: Time + 'async_trait,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.respond(request, response_handle))
    }
}

impl Handler {
    async fn respond<R: ResponseHandler>(&self, request: &Request, response: R) -> ResponseInfo {
        // RFC 6891 section 7: a query with OPT gets OPT back, and one of a version we do not
        // speak gets BADVERS.
        let edns = request.edns.as_ref().map(|query_edns| {
            let mut edns = Edns::new();
            edns.set_version(0);
            edns.set_max_payload(
                query_edns
                    .max_payload()
                    .clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD),
            );
            edns
        });
        if request.edns.as_ref().is_some_and(|edns| edns.version() > 0) {
            return send_error(request, edns.as_ref(), ResponseCode::BADVERS, response).await;
        }
        if request.metadata.op_code != OpCode::Query {
            return send_error(request, edns.as_ref(), ResponseCode::NotImp, response).await;
        }
        // One question per message, as every DNS implementation in use sends.
        let Ok(info) = request.request_info() else {
            return send_error(request, edns.as_ref(), ResponseCode::FormErr, response).await;
        };
        let query = info.query.original();
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            return send_error(request, edns.as_ref(), ResponseCode::Refused, response).await;
        }

        // The snapshot's guard lives for this statement only: the answer owns its records,
        // and no guard is held across the send below.
        let mut answer = lookup::answer(&self.records.load(), query.name(), query.query_type());
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = answer.authoritative;
        metadata.response_code = answer.rcode;
        if request.protocol().is_datagram() {
            drop_additionals_that_truncate(&mut answer, request, metadata, edns.as_ref());
        }
        let message = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            answer.answers.iter(),
            answer.authorities.iter(),
            std::iter::empty(),
            answer.additionals.iter(),
        );
        send(response, unsent_info(metadata), message).await
    }
}

/// hickory sets TC when any section overflows, but RFC 2181 section 9 sets it only when the
/// answer itself does not fit: additional data is optional, and a TC bit for it would send
/// clients to TCP for nothing. So the additionals go when the response, encoded exactly as
/// it will be sent, would be truncated with them.
fn drop_additionals_that_truncate(
    answer: &mut Answer,
    request: &Request,
    metadata: Metadata,
    edns: Option<&Edns>,
) {
    if answer.additionals.is_empty() {
        return;
    }
    let mut buffer = Vec::with_capacity(usize::from(MAX_UDP_PAYLOAD));
    let mut encoder = BinEncoder::new(&mut buffer);
    encoder.set_max_size(edns.map_or(MIN_UDP_PAYLOAD, Edns::max_payload));
    let fits = MessageResponseBuilder::new(&request.queries, edns)
        .build(
            metadata,
            answer.answers.iter(),
            answer.authorities.iter(),
            std::iter::empty(),
            answer.additionals.iter(),
        )
        .destructive_emit(&mut encoder)
        .is_ok_and(|info| !info.truncation);
    if !fits {
        answer.additionals.clear();
    }
}

async fn send_error<R: ResponseHandler>(
    request: &Request,
    edns: Option<&Edns>,
    rcode: ResponseCode,
    response: R,
) -> ResponseInfo {
    let message =
        MessageResponseBuilder::new(&request.queries, edns).error_msg(&request.metadata, rcode);
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = rcode;
    send(response, unsent_info(metadata), message).await
}

/// What to report for a response that could not be sent.
fn unsent_info(metadata: Metadata) -> ResponseInfo {
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

async fn send<'a, R: ResponseHandler>(
    mut response: R,
    unsent: ResponseInfo,
    message: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    match response.send_response(message).await {
        Ok(info) => info,
        Err(error) => {
            warn!(%error, "cluster DNS could not send a response");
            unsent
        }
    }
}
