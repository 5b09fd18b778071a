//! The fast path to upstreams for bodiless GET and HEAD requests, nearly all proxied
//! traffic: the request head, already serialized, is written straight into a pooled
//! connection's socket, and the response is read and parsed (httparse) by the request's
//! own task, its body streamed from the socket as the client reads it. hyper's client
//! hands every request to a connection task over a channel and back over a oneshot, and
//! builds and encodes a header map; none of that happens here. Requests with a body and
//! upgrades go through hyper's client ([`super::upstream`]).

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::Authority;
use hyper::{Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::pool::IdlePool;
use super::server::{Body, BoxError, is_hop_by_hop};

/// Longest response head accepted from an upstream.
const MAX_HEAD: usize = 64 * 1024;
/// Most response headers accepted from an upstream.
const MAX_HEADERS: usize = 100;
/// Room made in a connection's buffer before each read.
const READ_CHUNK: usize = 16 * 1024;
/// Longest chunk-size or trailer line of a chunked body.
const MAX_LINE: usize = 4096;

/// A keep-alive connection and what was read from it but not yet used.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

thread_local! {
    static POOL: RefCell<IdlePool<Conn>> = RefCell::new(IdlePool::default());
}

fn checkout(authority: &Authority, idle_timeout: Duration) -> Option<Conn> {
    // A connection the upstream closed while idle shows when the request is written or
    // its answer read; the request then goes out again on a new connection.
    POOL.with(|pool| {
        pool.borrow_mut()
            .checkout(authority, idle_timeout, |_| true, |_| true)
    })
}

fn checkin(authority: &Authority, conn: Conn) {
    POOL.with(|pool| pool.borrow_mut().checkin(authority, conn));
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum Failure {
    /// No connection could be made: nothing was sent, the next endpoint may be tried.
    Connect(String),
    /// The upstream broke the exchange or answered something that is not HTTP/1.x.
    Exchange(String),
}

/// Sends the serialized bodiless request `head` to `authority` over a pooled connection
/// (or a new one) and reads the response head; the body follows as the caller reads it.
/// `head_request` says the method was HEAD (the response then has no body, whatever its
/// headers say). A pooled connection that turns out closed before anything came back is
/// replaced by a new one, once: the method is idempotent, so sending again is safe.
pub async fn send(
    authority: &Authority,
    head: &[u8],
    head_request: bool,
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> Result<Response<Body>, Failure> {
    let mut pooled = checkout(authority, idle_timeout);
    loop {
        let reused = pooled.is_some();
        let mut conn = match pooled.take() {
            Some(conn) => conn,
            None => connect(authority, connect_timeout).await?,
        };
        match exchange(&mut conn, head, head_request).await {
            Ok(parsed) => return Ok(respond(authority, conn, parsed)),
            Err(Broken::Early(_)) if reused => continue,
            Err(Broken::Early(e) | Broken::Late(e)) => {
                return Err(Failure::Exchange(format!("{authority}: {e}")));
            }
        }
    }
}

async fn connect(authority: &Authority, connect_timeout: Duration) -> Result<Conn, Failure> {
    let connecting = TcpStream::connect(authority.as_str());
    let stream = match tokio::time::timeout(connect_timeout, connecting).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(Failure::Connect(format!("{authority}: {e}"))),
        Err(_) => {
            return Err(Failure::Connect(format!(
                "{authority}: no connection within {connect_timeout:?}"
            )));
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(Conn {
        stream,
        buf: BytesMut::with_capacity(READ_CHUNK),
    })
}

/// How an exchange broke: before any byte of the answer (a closed keep-alive connection
/// looks like this) or after.
enum Broken {
    Early(String),
    Late(String),
}

/// A response head, parsed.
struct Parsed {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
    /// The whole body, when it came with the head.
    body: Option<Bytes>,
}

async fn exchange(conn: &mut Conn, head: &[u8], head_request: bool) -> Result<Parsed, Broken> {
    conn.stream
        .write_all(head)
        .await
        .map_err(|e| Broken::Early(e.to_string()))?;
    loop {
        if !conn.buf.is_empty() {
            match parse_head(&mut conn.buf, head_request) {
                Ok(Some(parsed)) => return Ok(parsed),
                Ok(None) => {}
                Err(e) => return Err(Broken::Late(e)),
            }
        }
        conn.buf.reserve(READ_CHUNK);
        let received_before = !conn.buf.is_empty();
        match conn.stream.read_buf(&mut conn.buf).await {
            Ok(0) if received_before => {
                return Err(Broken::Late(
                    "connection closed in the response head".into(),
                ));
            }
            Ok(0) => return Err(Broken::Early("connection closed before an answer".into())),
            Ok(_) => {}
            Err(e) if received_before => return Err(Broken::Late(e.to_string())),
            Err(e) => return Err(Broken::Early(e.to_string())),
        }
    }
}

/// Parses the response head at the start of `buf` and removes it (with any informational
/// 1xx heads before it); `None` while the head is incomplete.
fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Parsed>, String> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut slots);
        let length = match response.parse(buf) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(format!("response head over {MAX_HEAD} bytes"));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(format!("invalid response head: {e}")),
        };
        let code = response.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| format!("invalid status {code}"))?;
        if status.is_informational() {
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err("101 Switching Protocols to a request without Upgrade".into());
            }
            // 100 Continue, 103 Early Hints: not forwarded; the final answer follows.
            buf.advance(length);
            continue;
        }
        let mut close = response.version == Some(0);
        let mut chunked = false;
        let mut content_length = None;
        // Headers named in Connection are hop-by-hop too.
        let mut named = Vec::new();
        for h in response.headers.iter() {
            if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    close |= token.eq_ignore_ascii_case(b"close");
                    if response.version == Some(0) && token.eq_ignore_ascii_case(b"keep-alive") {
                        close = false;
                    }
                    named.push(token);
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // The last coding decides; anything but chunked is read to the end.
                chunked = h
                    .value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                content_length = None;
            } else if h.name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or("invalid Content-Length")?;
                if content_length.is_some_and(|m| m != n) {
                    return Err("conflicting Content-Length headers".into());
                }
                content_length = Some(n);
            }
        }
        let has_transfer_encoding = response
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
        let framing = if head_request
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            Framing::Length(0)
        } else if chunked {
            Framing::Chunked(Chunked::Size)
        } else if has_transfer_encoding {
            Framing::Close
        } else if let Some(n) = content_length {
            Framing::Length(n)
        } else {
            Framing::Close
        };
        // Where the forwarded headers' names and values are in the head, which then becomes
        // one shared buffer that the values point into (no copy per header).
        let base = buf.as_ptr() as usize;
        let span = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
        let mut kept = [((0, 0), (0, 0)); MAX_HEADERS];
        let mut count = 0;
        for h in response.headers.iter() {
            let hop_by_hop = is_hop_by_hop(h.name, &named);
            // Content-Length stays only where it frames the body the client gets.
            let stale_length = h.name.eq_ignore_ascii_case("content-length")
                && has_transfer_encoding
                && !head_request;
            if !hop_by_hop && !stale_length {
                kept[count] = (span(h.name.as_bytes()), span(h.value));
                count += 1;
            }
        }
        // The head, and the body when all of it is here (a small answer, the common case),
        // copied into one block of their size: the connection's buffer stays its own and
        // is reused for the next answer, instead of being shared until this one is sent.
        let body_here = match framing {
            Framing::Length(n) if n <= (buf.len() - length) as u64 => Some(n as usize),
            _ => None,
        };
        let block = Bytes::copy_from_slice(&buf[..length + body_here.unwrap_or(0)]);
        buf.advance(length + body_here.unwrap_or(0));
        let head = block.slice(..length);
        let body = body_here.map(|n| block.slice(length..length + n));
        let mut headers = HeaderMap::with_capacity(count);
        for &((name_at, name_len), (value_at, value_len)) in &kept[..count] {
            let name = &head[name_at..name_at + name_len];
            let name = HeaderName::from_bytes(name)
                .map_err(|_| format!("invalid header name {:?}", String::from_utf8_lossy(name)))?;
            let value = HeaderValue::from_maybe_shared(head.slice(value_at..value_at + value_len))
                .map_err(|_| format!("invalid value of header {name}"))?;
            headers.append(name, value);
        }
        let keep_alive = !close && !matches!(framing, Framing::Close);
        return Ok(Some(Parsed {
            status,
            headers,
            framing,
            keep_alive,
            body,
        }));
    }
}

/// The response, with the body that came with its head, or else streamed from the
/// connection; the connection goes back to the pool once its body is complete.
fn respond(authority: &Authority, conn: Conn, parsed: Parsed) -> Response<Body> {
    let body = match (parsed.body, parsed.framing) {
        (Some(bytes), _) => {
            if parsed.keep_alive && conn.buf.is_empty() {
                checkin(authority, conn);
            }
            if bytes.is_empty() {
                Empty::new().map_err(|never| match never {}).boxed()
            } else {
                Full::new(bytes).map_err(|never| match never {}).boxed()
            }
        }
        (None, framing) => Streamed {
            conn: Some(conn),
            framing,
            keep_alive: parsed.keep_alive,
            authority: authority.clone(),
        }
        .boxed(),
    };
    let mut response = Response::new(body);
    *response.status_mut() = parsed.status;
    *response.headers_mut() = parsed.headers;
    response
}

/// How the end of a response body is found (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes remain.
    Length(u64),
    /// Chunked transfer coding, in this state.
    Chunked(Chunked),
    /// Until the upstream closes the connection.
    Close,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// In the trailer section (dropped: trailers are not forwarded).
    Trailer,
    /// Past the last chunk.
    Done,
}

/// What the buffer gave towards the body.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Data(Bytes),
    NeedMore,
    Done,
}

impl Framing {
    /// The next piece of body in `buf` (removed from it).
    fn next(&mut self, buf: &mut BytesMut) -> Result<Step, String> {
        match self {
            Framing::Length(0) => Ok(Step::Done),
            Framing::Length(left) => {
                if buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let take = (*left).min(buf.len() as u64) as usize;
                *left -= take as u64;
                Ok(Step::Data(buf.split_to(take).freeze()))
            }
            Framing::Close if buf.is_empty() => Ok(Step::NeedMore),
            Framing::Close => Ok(Step::Data(buf.split().freeze())),
            Framing::Chunked(state) => state.next(buf),
        }
    }
}

/// The line at the start of `buf` without its CRLF, removed with it; `None` while
/// incomplete.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, String> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(end) => {
            let line = buf.split_to(end);
            buf.advance(2);
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err("chunk line too long".into()),
        None => Ok(None),
    }
}

impl Chunked {
    fn next(&mut self, buf: &mut BytesMut) -> Result<Step, String> {
        loop {
            match *self {
                Chunked::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Step::NeedMore);
                    };
                    // chunk-size [ chunk-ext ]: extensions are ignored.
                    let digits = line[..]
                        .split(|b| *b == b';')
                        .next()
                        .unwrap_or_default()
                        .trim_ascii();
                    if digits.is_empty() || digits.len() > 15 {
                        return Err("invalid chunk size".into());
                    }
                    let size = std::str::from_utf8(digits)
                        .ok()
                        .and_then(|d| u64::from_str_radix(d, 16).ok())
                        .ok_or("invalid chunk size")?;
                    *self = if size == 0 {
                        Chunked::Trailer
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let take = left.min(buf.len() as u64) as usize;
                    *self = if take as u64 == left {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left - take as u64)
                    };
                    return Ok(Step::Data(buf.split_to(take).freeze()));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("chunk data not followed by CRLF".into());
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailer => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Step::NeedMore);
                    };
                    if line.is_empty() {
                        *self = Chunked::Done;
                    }
                }
                Chunked::Done => return Ok(Step::Done),
            }
        }
    }
}

/// A response body read from the upstream connection as the client takes it.
struct Streamed {
    /// Until the body is complete.
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    authority: Authority,
}

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.framing.next(&mut conn.buf) {
                Ok(Step::Data(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Ok(Step::Done) => {
                    let conn = this.conn.take().expect("checked above");
                    if this.keep_alive && conn.buf.is_empty() {
                        checkin(&this.authority, conn);
                    }
                    return Poll::Ready(None);
                }
                Ok(Step::NeedMore) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
            if let Err(e) = std::task::ready!(conn.stream.poll_read_ready(cx)) {
                this.conn = None;
                return Poll::Ready(Some(Err(e.into())));
            }
            conn.buf.reserve(READ_CHUNK);
            match conn.stream.try_read_buf(&mut conn.buf) {
                Ok(0) if this.framing == Framing::Close => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.conn = None;
                    return Poll::Ready(Some(
                        Err("upstream closed the connection mid-body".into()),
                    ));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// Whether a request can take the fast path: GET or HEAD without a body or an upgrade.
pub fn eligible(method: &hyper::Method, headers: &HeaderMap, upgrade: bool) -> bool {
    (method == hyper::Method::GET || method == hyper::Method::HEAD)
        && !upgrade
        && !headers.contains_key(header::CONTENT_LENGTH)
        && !headers.contains_key(header::TRANSFER_ENCODING)
}

#[cfg(test)]
mod tests;
