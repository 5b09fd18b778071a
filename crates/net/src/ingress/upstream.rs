//! A worker's keep-alive connections to upstreams: HTTP/1.1 client connections (hyper's
//! `client::conn::http1`), kept idle per authority on the worker's own thread. Every
//! ingress worker is one thread with its own runtime, so the pool needs no lock and a
//! request never leaves the thread it arrived on.

use std::cell::RefCell;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::http::uri::Authority;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::pool::IdlePool;
use super::server::Body;

thread_local! {
    static POOL: RefCell<IdlePool<SendRequest<Body>>> = RefCell::new(IdlePool::default());
}

/// Why an upstream exchange failed.
pub enum UpstreamError {
    /// No connection could be made; the request comes back, unsent, for the next
    /// endpoint.
    Connect(String, Box<Request<Body>>),
    /// The exchange failed after the request was (at least partly) sent.
    Exchange(hyper::Error),
}

/// A pooled connection to `authority` that is ready for a request, if any. Connections
/// still streaming a response body are not ready yet; they stay.
fn checkout(authority: &Authority, idle_timeout: Duration) -> Option<SendRequest<Body>> {
    POOL.with(|pool| {
        pool.borrow_mut().checkout(
            authority,
            idle_timeout,
            |sender| !sender.is_closed(),
            SendRequest::is_ready,
        )
    })
}

/// Keeps a connection for later requests (it is ready once its response body is read).
fn checkin(authority: &Authority, sender: SendRequest<Body>) {
    POOL.with(|pool| pool.borrow_mut().checkin(authority, sender));
}

async fn connect(
    authority: &Authority,
    connect_timeout: Duration,
) -> Result<SendRequest<Body>, String> {
    let stream =
        match tokio::time::timeout(connect_timeout, TcpStream::connect(authority.as_str())).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(format!("{authority}: {e}")),
            Err(_) => {
                return Err(format!(
                    "{authority}: no connection within {connect_timeout:?}"
                ));
            }
        };
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// Sends `request` (origin-form URI, Host header set) to `authority` over a pooled
/// connection, or a new one when none is ready. A pooled connection the upstream closed
/// before the request went out hands the request back, and it goes out on a new one.
pub async fn send(
    authority: &Authority,
    mut request: Request<Body>,
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> Result<Response<Incoming>, UpstreamError> {
    let mut pooled = checkout(authority, idle_timeout);
    loop {
        let mut sender = match pooled.take() {
            Some(sender) => sender,
            None => match connect(authority, connect_timeout).await {
                Ok(sender) => sender,
                Err(message) => return Err(UpstreamError::Connect(message, Box::new(request))),
            },
        };
        match sender.try_send_request(request).await {
            Ok(response) => {
                // An upgraded connection belongs to the upgrade from now on.
                if response.status() != StatusCode::SWITCHING_PROTOCOLS {
                    checkin(authority, sender);
                }
                return Ok(response);
            }
            Err(mut failed) => match failed.take_message() {
                // Never sent: try again on a fresh connection.
                Some(unsent) => request = unsent,
                None => return Err(UpstreamError::Exchange(failed.into_error())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upstream answering each request on a connection with "ok", keeping the
    /// connection open for `linger` after each answer, then closing it.
    async fn upstream(linger: Duration) -> (Authority, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = Authority::try_from(listener.local_addr().unwrap().to_string()).unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        let read = tokio::time::timeout(linger, stream.read(&mut buf)).await;
                        let Ok(Ok(n)) = read else { return };
                        if n == 0 {
                            return;
                        }
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (authority, connections)
    }

    fn get(authority: &Authority) -> Request<Body> {
        Request::builder()
            .uri("/")
            .header("host", authority.as_str())
            .body(Empty::new().map_err(|never| match never {}).boxed())
            .unwrap()
    }

    async fn body(response: Response<Incoming>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    const CONNECT: Duration = Duration::from_secs(1);
    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn connections_are_reused_and_closed_ones_replaced() {
        let (authority, connections) = upstream(Duration::from_millis(100)).await;
        for _ in 0..3 {
            let response = send(&authority, get(&authority), CONNECT, IDLE).await;
            let Ok(response) = response else {
                panic!("request failed")
            };
            assert_eq!(body(response).await, "ok");
        }
        assert_eq!(
            connections.load(Ordering::SeqCst),
            1,
            "one kept-alive connection"
        );
        // The upstream closes its idle connection; the next request goes out on a new one.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Ok(response) = send(&authority, get(&authority), CONNECT, IDLE).await else {
            panic!("request after the upstream closed its idle connection failed")
        };
        assert_eq!(body(response).await, "ok");
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_hands_the_request_back() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = Authority::try_from(closed.local_addr().unwrap().to_string()).unwrap();
        drop(closed);
        match send(&authority, get(&authority), CONNECT, IDLE).await {
            Err(UpstreamError::Connect(_, request)) => assert_eq!(request.uri(), "/"),
            _ => panic!("expected a connect error with the request"),
        }
    }
}
