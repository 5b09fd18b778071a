//! The HTTP/1.1 server: routes, error injection, latency and graceful shutdown.
//!
//! Everything that does not depend on the request is formatted once, when the server
//! starts: header values, the 500 body, and the JSON and HTML bodies up to the request
//! counter. Answering `/` then costs one allocation for the body (of its exact size) plus
//! what hyper needs for the response itself.

use std::convert::Infallible;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::Config;
use crate::config::check_version;
use crate::rng::{Chance, SplitMix64};

/// The header naming the version on every response.
const VERSION_HEADER: HeaderName = HeaderName::from_static("x-switchyard-version");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const GET_HEAD: HeaderValue = HeaderValue::from_static("GET, HEAD");

/// How long to wait before accepting again after an error such as EMFILE.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Binds `config.listen` and serves until `shutdown` resolves.
///
/// Prints one line to stderr once listening (`demo app VERSION listening on ADDR`) and
/// nothing per request. See [`serve_listener`] for what is served and how shutdown works.
///
/// # Errors
///
/// When the address cannot be bound (the message names it) or `config.version` is not a
/// valid header value.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let state = State::new(&config)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|err| io::Error::new(err.kind(), format!("binding {}: {err}", config.listen)))?;
    let addr = listener.local_addr()?;
    eprintln!("demo app {} listening on {addr}", config.version);
    run(listener, Arc::new(state), shutdown).await
}

/// Serves HTTP/1.1 with keep-alive on an already bound `listener` until `shutdown` resolves.
///
/// - `GET /`: `{"version":…,"pod":…,"requests":N}` as `application/json`, or an HTML page
///   coloured after the version when `Accept` contains `text/html`. `N` counts the requests
///   to `/` this server has received, this one included (500s too). Subject to
///   `config.latency` (slept first) and `config.error_rate` (a 500 with
///   `{"error":"injected failure","version":…}`).
/// - `GET /healthz`: `200 ok`, never delayed, never failed.
/// - `HEAD` as `GET` without a body; other methods on these paths: 405.
/// - Anything else: 404.
///
/// Every response carries `X-Switchyard-Version: <version>`.
///
/// When `shutdown` resolves the listener is closed, idle connections are closed, and
/// requests in flight are answered (with `Connection: close`); the function returns once
/// every connection has ended. It does not log.
///
/// # Errors
///
/// When `config.version` is not a valid header value. Accept errors are retried.
pub async fn serve_listener(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let state = State::new(&config)?;
    run(listener, Arc::new(state), shutdown).await
}

/// The accept loop, shared by [`serve`] and [`serve_listener`].
pub(crate) async fn run(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut builder = http1::Builder::new();
    builder.keep_alive(true).pipeline_flush(true);
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);

    loop {
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) if is_connection_error(&err) => continue,
                Err(_) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        // Small responses: send them now rather than wait for Nagle.
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let service = service_fn(move |request| {
            let state = Arc::clone(&state);
            async move { Ok::<_, Infallible>(state.respond(request).await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client going away mid-request is not the server's problem.
            let _ = connection.await;
        });
    }

    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Errors of one incoming connection, after which accepting again is right.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// What a server needs to answer, formatted once at start.
#[derive(Debug)]
pub(crate) struct State {
    version: HeaderValue,
    /// `{"version":"…","pod":"…","requests":` (the counter and `}` follow).
    json_head: Box<[u8]>,
    /// The HTML page up to the counter.
    html_head: Box<[u8]>,
    /// The HTML page after the counter.
    html_tail: Box<[u8]>,
    /// `{"error":"injected failure","version":"…"}`.
    failure: Bytes,
    errors: Chance,
    latency: Duration,
    /// Requests to `/` so far.
    pub(crate) requests: AtomicU64,
    rng: SplitMix64,
}

impl State {
    pub(crate) fn new(config: &Config) -> io::Result<State> {
        check_version(&config.version).map_err(|why| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("version {:?}: {why}", config.version),
            )
        })?;
        let version = HeaderValue::from_str(&config.version).map_err(|err| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("version {:?}: {err}", config.version),
            )
        })?;
        let version_json = json_string(&config.version);
        let pod_json = json_string(&config.pod_name);
        let json_head = format!(r#"{{"version":{version_json},"pod":{pod_json},"requests":"#);
        let failure = format!(r#"{{"error":"injected failure","version":{version_json}}}"#);
        let (html_head, html_tail) = html_page(&config.version, &config.pod_name);
        Ok(State {
            version,
            json_head: json_head.into_bytes().into_boxed_slice(),
            html_head: html_head.into_bytes().into_boxed_slice(),
            html_tail: html_tail.into_bytes().into_boxed_slice(),
            failure: Bytes::from(failure),
            errors: Chance::new(config.error_rate),
            latency: config.latency,
            requests: AtomicU64::new(0),
            rng: SplitMix64::from_time_and_pid(),
        })
    }

    async fn respond(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        let mut response = if path == "/" {
            if is_get_or_head(request.method()) {
                self.root(&request).await
            } else {
                method_not_allowed()
            }
        } else if path == "/healthz" {
            if is_get_or_head(request.method()) {
                plain(StatusCode::OK, Bytes::from_static(b"ok"))
            } else {
                method_not_allowed()
            }
        } else {
            plain(StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n"))
        };
        response
            .headers_mut()
            .insert(VERSION_HEADER, self.version.clone());
        response
    }

    async fn root(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let count = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.errors.happens(&self.rng) {
            let mut response = Response::new(Full::new(self.failure.clone()));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response.headers_mut().insert(CONTENT_TYPE, JSON);
            return response;
        }
        let mut digits = [0; 20];
        let digits = format_u64(count, &mut digits);
        let (body, content_type) = if wants_html(request) {
            (concat(&[&self.html_head, digits, &self.html_tail]), HTML)
        } else {
            (concat(&[&self.json_head, digits, b"}"]), JSON)
        };
        let mut response = Response::new(Full::new(body));
        response.headers_mut().insert(CONTENT_TYPE, content_type);
        response
    }
}

fn is_get_or_head(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

fn plain(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, TEXT);
    response
}

fn method_not_allowed() -> Response<Full<Bytes>> {
    let mut response = plain(
        StatusCode::METHOD_NOT_ALLOWED,
        Bytes::from_static(b"method not allowed\n"),
    );
    response.headers_mut().insert(ALLOW, GET_HEAD);
    response
}

/// True when an `Accept` header mentions `text/html` (as browsers' do).
fn wants_html<B>(request: &Request<B>) -> bool {
    request.headers().get_all(ACCEPT).iter().any(|value| {
        value
            .as_bytes()
            .windows(b"text/html".len())
            .any(|window| window.eq_ignore_ascii_case(b"text/html"))
    })
}

/// `parts` joined in one allocation of exactly their size (so `Bytes` takes it as is).
fn concat(parts: &[&[u8]]) -> Bytes {
    let mut body = Vec::with_capacity(parts.iter().map(|part| part.len()).sum());
    for part in parts {
        body.extend_from_slice(part);
    }
    Bytes::from(body)
}

/// `n` in decimal, written to the end of `buf`.
fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[start..]
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// The colour a version is shown in: its own name when it is one of the demo colours
/// (`bad-red` is red), grey otherwise.
pub(crate) fn color_of(version: &str) -> &'static str {
    const COLORS: [&str; 6] = ["blue", "green", "red", "yellow", "orange", "purple"];
    let name = version.strip_prefix("bad-").unwrap_or(version);
    COLORS
        .into_iter()
        .find(|color| color.eq_ignore_ascii_case(name))
        .unwrap_or("grey")
}

/// The HTML page, split around the request counter.
fn html_page(version: &str, pod: &str) -> (String, String) {
    let background = color_of(version);
    let foreground = match background {
        "yellow" | "orange" => "#111",
        _ => "#fff",
    };
    let version = html_escape(version);
    let pod = html_escape(pod);
    let head = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"1\">\
         <title>Switchyard demo: {version}</title>\
         <style>body{{margin:0;min-height:100vh;display:flex;align-items:center;\
         justify-content:center;background:{background};color:{foreground};\
         font:24px system-ui,sans-serif;text-align:center}}\
         h1{{font-size:72px;margin:0 0 16px}}</style></head>\n\
         <body><main><h1>{version}</h1><p>pod <b>{pod}</b></p><p>request <b>"
    );
    let tail = "</b></p></main></body></html>\n".to_owned();
    (head, tail)
}

fn html_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        let mut buf = [0; 20];
        for n in [0, 7, 10, 12_345, u64::MAX] {
            assert_eq!(format_u64(n, &mut buf), n.to_string().as_bytes());
        }
    }

    #[test]
    fn colors() {
        let cases = [
            ("blue", "blue"),
            ("green", "green"),
            ("red", "red"),
            ("yellow", "yellow"),
            ("orange", "orange"),
            ("purple", "purple"),
            ("bad-red", "red"),
            ("bad-yellow", "yellow"),
            ("Green", "green"),
            ("latest", "grey"),
            ("bad-", "grey"),
            ("bad-latest", "grey"),
            ("v1.2.3", "grey"),
        ];
        for (version, color) in cases {
            assert_eq!(color_of(version), color, "{version}");
        }
    }

    #[test]
    fn html_is_escaped() {
        let (head, _) = html_page("bad-<b>", "pod\"&'");
        assert!(head.contains("<h1>bad-&lt;b&gt;</h1>"), "{head}");
        assert!(head.contains("pod&quot;&amp;&#39;"), "{head}");
        assert!(head.contains("background:grey"), "{head}");
    }

    #[test]
    fn accept_header_detection() {
        let request = |accept: &[&str]| {
            let mut builder = Request::builder();
            for value in accept {
                builder = builder.header(ACCEPT, *value);
            }
            builder.body(()).unwrap()
        };
        assert!(wants_html(&request(&[
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ])));
        assert!(wants_html(&request(&["application/json", "TEXT/HTML"])));
        assert!(!wants_html(&request(&["application/json"])));
        assert!(!wants_html(&request(&["*/*"])));
        assert!(!wants_html(&request(&[])));
    }

    #[test]
    fn json_head_escapes() {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            version: "v\"1".into(),
            pod_name: "p\\q".into(),
            error_rate: 0.0,
            latency: Duration::ZERO,
        };
        let state = State::new(&config).unwrap();
        let mut json = state.json_head.to_vec();
        json.extend_from_slice(b"3}");
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"version": "v\"1", "pod": "p\\q", "requests": 3})
        );
    }

    #[test]
    fn rejects_versions_that_are_not_header_values() {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            version: "a\r\nb".into(),
            pod_name: "demo".into(),
            error_rate: 0.0,
            latency: Duration::ZERO,
        };
        let err = State::new(&config).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
