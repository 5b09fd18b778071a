//! End-to-end tests over real sockets on 127.0.0.1, with a minimal HTTP/1.1 client.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::server::{State, run};
use crate::{Config, serve, serve_listener};

/// Every test finishes within this, or fails.
const DEADLINE: Duration = Duration::from_secs(20);

async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .expect("test did not finish in time")
}

fn config(tag: Option<&str>, vars: &[(&str, &str)]) -> Config {
    Config::from_vars(tag, |name| {
        vars.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    })
    .unwrap()
}

struct TestServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl TestServer {
    async fn start(config: Config) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_listener(listener, config, async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn connect(&self) -> Client {
        Client::connect(self.addr).await
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// One keep-alive HTTP/1.1 connection; responses must carry `Content-Length`.
struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: BufReader::new(TcpStream::connect(addr).await.unwrap()),
        }
    }

    async fn get(&mut self, path: &str) -> Reply {
        self.request("GET", path, &[]).await
    }

    async fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(method, path, headers).await;
        self.read_reply(method == "HEAD").await
    }

    async fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) {
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: demo\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
    }

    async fn read_reply(&mut self, head_only: bool) -> Reply {
        let mut line = String::new();
        self.stream.read_line(&mut line).await.unwrap();
        let status = line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .unwrap_or_else(|| panic!("bad status line {line:?}"))
            .parse()
            .unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.unwrap();
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        let length: usize = reply
            .header("content-length")
            .expect("response without content-length")
            .parse()
            .unwrap();
        if !head_only {
            reply.body.resize(length, 0);
            self.stream.read_exact(&mut reply.body).await.unwrap();
        }
        reply
    }

    /// True when the server closed the connection (EOF or reset).
    async fn is_closed(&mut self) -> bool {
        let mut byte = [0];
        match self.stream.read(&mut byte).await {
            Ok(0) => true,
            Ok(_) => false,
            Err(_) => true,
        }
    }
}

#[tokio::test]
async fn root_reports_version_pod_and_counter() {
    within(async {
        let server =
            TestServer::start(config(Some("green"), &[("POD_NAME", "web-7f9c-abcde")])).await;
        let mut client = server.connect().await;
        for expected in 1..=3 {
            let reply = client.get("/").await;
            assert_eq!(reply.status, 200);
            assert_eq!(reply.header("content-type"), Some("application/json"));
            assert_eq!(
                reply.json(),
                serde_json::json!({"version": "green", "pod": "web-7f9c-abcde", "requests": expected})
            );
        }
        // Only `/` counts, on any connection.
        assert_eq!(client.get("/healthz").await.status, 200);
        assert_eq!(client.get("/nope").await.status, 404);
        let mut other = server.connect().await;
        assert_eq!(other.get("/?from=other").await.json()["requests"], 4);
        assert_eq!(client.get("/").await.json()["requests"], 5);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn every_response_names_the_version() {
    within(async {
        let server = TestServer::start(config(Some("bad-red"), &[("ERROR_RATE", "1")])).await;
        let mut client = server.connect().await;

        let root = client.get("/").await;
        assert_eq!(root.status, 500);
        assert_eq!(root.header("x-switchyard-version"), Some("bad-red"));

        let health = client.get("/healthz").await;
        assert_eq!((health.status, health.text()), (200, "ok"));
        assert_eq!(health.header("x-switchyard-version"), Some("bad-red"));

        let missing = client.get("/missing").await;
        assert_eq!(missing.status, 404);
        assert_eq!(missing.header("x-switchyard-version"), Some("bad-red"));

        let post = client
            .request("POST", "/", &[("Content-Length", "0")])
            .await;
        assert_eq!(post.status, 405);
        assert_eq!(post.header("allow"), Some("GET, HEAD"));
        assert_eq!(post.header("x-switchyard-version"), Some("bad-red"));

        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn head_answers_without_a_body() {
    within(async {
        let server = TestServer::start(config(Some("blue"), &[])).await;
        let mut client = server.connect().await;
        let head = client.request("HEAD", "/healthz", &[]).await;
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), Some("2"));
        // The connection is still usable, so no body bytes were sent.
        assert_eq!(client.get("/healthz").await.text(), "ok");
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn browsers_get_a_coloured_page() {
    within(async {
        let accept = [(
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )];
        for (tag, color) in [("green", "green"), ("bad-purple", "purple"), ("v2", "grey")] {
            let server = TestServer::start(config(
                Some(tag),
                &[("POD_NAME", "pod-1"), ("ERROR_RATE", "0")],
            ))
            .await;
            let mut client = server.connect().await;
            client.get("/").await;
            let page = client.request("GET", "/", &accept).await;
            assert_eq!(page.status, 200);
            assert_eq!(
                page.header("content-type"),
                Some("text/html; charset=utf-8")
            );
            assert_eq!(page.header("x-switchyard-version"), Some(tag));
            let html = page.text();
            assert!(html.starts_with("<!doctype html>"), "{html}");
            assert!(html.contains(&format!("background:{color};")), "{html}");
            assert!(html.contains(&format!("<h1>{tag}</h1>")), "{html}");
            assert!(html.contains("pod <b>pod-1</b>"), "{html}");
            assert!(html.contains("request <b>2</b>"), "{html}");
            server.stop().await;
        }
    })
    .await;
}

#[tokio::test]
async fn error_rate_one_always_fails_and_zero_never() {
    within(async {
        let failing = TestServer::start(config(Some("blue"), &[("ERROR_RATE", "1")])).await;
        let mut client = failing.connect().await;
        for _ in 0..50 {
            let reply = client.get("/").await;
            assert_eq!(reply.status, 500);
            assert_eq!(reply.header("content-type"), Some("application/json"));
            assert_eq!(
                reply.json(),
                serde_json::json!({"error": "injected failure", "version": "blue"})
            );
            // Health checks are never failed.
            assert_eq!(client.get("/healthz").await.status, 200);
        }
        failing.stop().await;

        // An explicit 0 wins over the bad- default.
        let healthy = TestServer::start(config(Some("bad-blue"), &[("ERROR_RATE", "0")])).await;
        let mut client = healthy.connect().await;
        for _ in 0..200 {
            assert_eq!(client.get("/").await.status, 200);
        }
        healthy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn bad_versions_fail_about_half_the_time() {
    within(async {
        let server = TestServer::start(config(Some("bad-red"), &[])).await;
        let mut client = server.connect().await;
        let mut failures = 0;
        for _ in 0..400 {
            let reply = client.get("/").await;
            match reply.status {
                500 => failures += 1,
                200 => {}
                other => panic!("unexpected status {other}"),
            }
        }
        assert!(
            (120..=280).contains(&failures),
            "{failures} of 400 requests failed"
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn latency_delays_root_but_not_health() {
    within(async {
        let latency = Duration::from_millis(50);
        let server = TestServer::start(config(Some("blue"), &[("LATENCY_MS", "50")])).await;
        let mut client = server.connect().await;

        let started = Instant::now();
        assert_eq!(client.get("/").await.status, 200);
        assert!(started.elapsed() >= latency, "{:?}", started.elapsed());

        // While a slow `/` is in flight on one connection, health checks on another are
        // answered at once.
        client.send("GET", "/", &[]).await;
        let mut other = server.connect().await;
        let started = Instant::now();
        assert_eq!(other.get("/healthz").await.status, 200);
        assert!(started.elapsed() < latency, "{:?}", started.elapsed());
        assert_eq!(client.read_reply(false).await.status, 200);

        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn keeps_connections_alive() {
    within(async {
        let server = TestServer::start(config(Some("blue"), &[])).await;
        let mut client = server.connect().await;
        let local = client.stream.get_ref().local_addr().unwrap();
        for n in 1..=20 {
            let reply = client.get("/").await;
            assert_eq!(reply.status, 200);
            assert_eq!(reply.header("connection"), None);
            assert_eq!(reply.json()["requests"], n);
        }
        // Pipelined requests are answered in order.
        client.send("GET", "/", &[]).await;
        client.send("GET", "/healthz", &[]).await;
        client.send("GET", "/", &[]).await;
        assert_eq!(client.read_reply(false).await.json()["requests"], 21);
        assert_eq!(client.read_reply(false).await.text(), "ok");
        assert_eq!(client.read_reply(false).await.json()["requests"], 22);
        assert_eq!(client.stream.get_ref().local_addr().unwrap(), local);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight() {
    within(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::new(&config(Some("blue"), &[("LATENCY_MS", "200")])).unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(run(listener, Arc::clone(&state), async {
            let _ = stopped.await;
        }));

        // An idle keep-alive connection, and one with a request in flight.
        let mut idle = Client::connect(addr).await;
        assert_eq!(idle.get("/healthz").await.status, 200);
        let mut busy = Client::connect(addr).await;
        busy.send("GET", "/", &[]).await;
        while state.requests.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }

        stop.send(()).unwrap();
        let reply = busy.read_reply(false).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["requests"], 1);
        assert_eq!(reply.header("connection"), Some("close"));
        assert!(busy.is_closed().await);
        assert!(idle.is_closed().await);
        server.await.unwrap().unwrap();

        // The listener is gone.
        assert!(TcpStream::connect(addr).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn serve_binds_and_stops() {
    within(async {
        // Already stopped: binds, logs, returns.
        let config = config(None, &[("PORT", "0")]);
        serve(config.clone(), async {}).await.unwrap();

        // An address in use is an error that names it.
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = config;
        config.listen = taken.local_addr().unwrap();
        let err = serve(config, std::future::pending()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(
            err.to_string()
                .starts_with(&format!("binding {}: ", taken.local_addr().unwrap())),
            "{err}"
        );
    })
    .await;
}
