//! The fast path's framing tables (chunked decoding, response heads) and exchanges with
//! real upstream sockets: bodies in the first read and streamed, chunked and
//! close-delimited, connection reuse, a stale pooled connection, a refused connect.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// Every piece of body `framing` yields from `input` fed in pieces of `piece` bytes, and
/// whether it reached the end.
fn decode(mut framing: Framing, input: &[u8], piece: usize) -> Result<(Vec<u8>, bool), String> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for part in input.chunks(piece.max(1)) {
        buf.extend_from_slice(part);
        loop {
            match framing.next(&mut buf)? {
                Step::Data(bytes) => out.extend_from_slice(&bytes),
                Step::NeedMore => break,
                Step::Done => return Ok((out, true)),
            }
        }
    }
    Ok((out, false))
}

#[test]
fn chunked_bodies_decode_whatever_the_read_boundaries() {
    let cases: &[(&str, &[u8], &[u8])] = &[
        ("one chunk", b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
        ("two chunks", b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", b"abcde"),
        ("hex size", b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
        ("extension", b"3;name=value\r\nabc\r\n0\r\n\r\n", b"abc"),
        (
            "trailers dropped",
            b"1\r\nx\r\n0\r\nExpires: never\r\nX-A: b\r\n\r\n",
            b"x",
        ),
        ("empty body", b"0\r\n\r\n", b""),
    ];
    for (name, input, expected) in cases {
        for piece in 1..=input.len() {
            let (body, done) = decode(Framing::Chunked(Chunked::Size), input, piece)
                .unwrap_or_else(|e| panic!("{name}, pieces of {piece}: {e}"));
            assert_eq!(&body, expected, "{name}, pieces of {piece}");
            assert!(done, "{name}, pieces of {piece}: not finished");
        }
    }
}

#[test]
fn malformed_chunked_bodies_are_errors() {
    let cases: &[(&str, &[u8])] = &[
        ("not hex", b"zz\r\nabc\r\n0\r\n\r\n"),
        ("no size", b"\r\nabc\r\n"),
        ("data longer than its size", b"2\r\nabc\r\n0\r\n\r\n"),
        ("size overflow", b"10000000000000000\r\n"),
    ];
    for (name, input) in cases {
        assert!(
            decode(Framing::Chunked(Chunked::Size), input, input.len()).is_err(),
            "{name}"
        );
    }
}

#[test]
fn length_and_close_framing() {
    assert_eq!(
        decode(Framing::Length(5), b"hello", 2).unwrap(),
        (b"hello".to_vec(), true)
    );
    // Bytes past the length are not body (they stay in the buffer, and the connection
    // then is not reused).
    let mut buf = BytesMut::from(&b"hiEXTRA"[..]);
    let mut framing = Framing::Length(2);
    assert_eq!(
        framing.next(&mut buf),
        Ok(Step::Data(Bytes::from_static(b"hi")))
    );
    assert_eq!(framing.next(&mut buf), Ok(Step::Done));
    assert_eq!(&buf[..], b"EXTRA");
    assert_eq!(
        decode(Framing::Close, b"until the end", 4).unwrap(),
        (b"until the end".to_vec(), false)
    );
}

/// Parses a complete head, with `head_request` as given.
fn head(text: &str, head_request: bool) -> Parsed {
    let mut buf = BytesMut::from(text.as_bytes());
    let parsed = parse_head(&mut buf, head_request)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .unwrap_or_else(|| panic!("{text:?}: incomplete"));
    assert!(buf.is_empty(), "{text:?}: head not consumed");
    parsed
}

#[test]
fn response_heads_decide_framing_and_reuse() {
    // (case, head, HEAD request, framing, keep-alive)
    let cases = [
        (
            "length",
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            false,
            Framing::Length(5),
            true,
        ),
        (
            "chunked",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            false,
            Framing::Chunked(Chunked::Size),
            true,
        ),
        (
            "chunked wins over length",
            "HTTP/1.1 200 OK\r\ncontent-length: 9\r\ntransfer-encoding: chunked\r\n\r\n",
            false,
            Framing::Chunked(Chunked::Size),
            true,
        ),
        (
            "other coding: to the end",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            false,
            Framing::Close,
            false,
        ),
        (
            "no length: to the end",
            "HTTP/1.1 200 OK\r\n\r\n",
            false,
            Framing::Close,
            false,
        ),
        (
            "close",
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n",
            false,
            Framing::Length(1),
            false,
        ),
        (
            "HTTP/1.0",
            "HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n",
            false,
            Framing::Length(1),
            false,
        ),
        (
            "HTTP/1.0 keep-alive",
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\n",
            false,
            Framing::Length(1),
            true,
        ),
        (
            "HEAD",
            "HTTP/1.1 200 OK\r\ncontent-length: 60\r\n\r\n",
            true,
            Framing::Length(0),
            true,
        ),
        (
            "204",
            "HTTP/1.1 204 No Content\r\n\r\n",
            false,
            Framing::Length(0),
            true,
        ),
        (
            "304",
            "HTTP/1.1 304 Not Modified\r\ncontent-length: 60\r\n\r\n",
            false,
            Framing::Length(0),
            true,
        ),
    ];
    for (name, text, head_request, framing, keep_alive) in cases {
        let parsed = head(text, head_request);
        assert_eq!(parsed.framing, framing, "{name}");
        assert_eq!(parsed.keep_alive, keep_alive, "{name}");
    }
}

#[test]
fn response_heads_lose_hop_by_hop_headers_and_informational_answers() {
    let parsed = head(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
         HTTP/1.1 201 Created\r\nconnection: x-hop, keep-alive\r\nkeep-alive: timeout=5\r\n\
         x-hop: 1\r\nx-end: 2\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\
         set-cookie: a=1\r\nset-cookie: b=2\r\n\r\n",
        false,
    );
    assert_eq!(parsed.status, StatusCode::CREATED);
    let names: Vec<&str> = parsed.headers.keys().map(HeaderName::as_str).collect();
    assert_eq!(names, ["x-end", "set-cookie"]);
    assert_eq!(parsed.headers.get_all("set-cookie").iter().count(), 2);
}

#[test]
fn bad_or_incomplete_response_heads() {
    let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-le"[..]);
    assert!(matches!(parse_head(&mut partial, false), Ok(None)));
    for bad in [
        "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        "SSH-2.0-OpenSSH\r\n\r\n",
    ] {
        let mut buf = BytesMut::from(bad.as_bytes());
        assert!(parse_head(&mut buf, false).is_err(), "{bad:?}");
    }
}

/// An upstream that reads one request head at a time and answers it with `answer`,
/// closing the connection after `per_connection` answers. Counts connections.
async fn upstream(
    answer: &'static [&'static [u8]],
    per_connection: usize,
) -> (Authority, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = Authority::try_from(listener.local_addr().unwrap().to_string()).unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut received = Vec::new();
                for _ in 0..per_connection {
                    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => received.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                    received.drain(..end + 4);
                    // Written in pieces, so that bodies arrive over several reads.
                    for piece in answer {
                        if stream.write_all(piece).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            });
        }
    });
    (authority, connections)
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: test\r\n\r\n";
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

async fn get(authority: &Authority) -> (StatusCode, String) {
    let response = match send(authority, GET, false, SECOND, MINUTE).await {
        Ok(response) => response,
        Err(failure) => panic!("{failure:?}"),
    };
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn answers_in_one_read_or_many_and_connections_are_reused() {
    let (authority, connections) =
        upstream(&[b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"], 100).await;
    for _ in 0..3 {
        assert_eq!(get(&authority).await, (StatusCode::OK, "ok".into()));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    let (authority, connections) = upstream(
        &[
            b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhel",
            b"lo wo",
            b"rld",
        ],
        100,
    )
    .await;
    for _ in 0..3 {
        assert_eq!(
            get(&authority).await,
            (StatusCode::OK, "hello world".into())
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "reused after a streamed body"
    );

    let (authority, connections) = upstream(
        &[
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
            b"lo\r\n6\r\n worl",
            b"d\r\n0\r\n\r\n",
        ],
        100,
    )
    .await;
    for _ in 0..2 {
        assert_eq!(
            get(&authority).await,
            (StatusCode::OK, "hello world".into())
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "reused after a chunked body"
    );
}

#[tokio::test]
async fn a_body_until_close_ends_the_connection() {
    let (authority, connections) =
        upstream(&[b"HTTP/1.1 200 OK\r\n\r\nuntil", b" the end"], 1).await;
    for _ in 0..2 {
        assert_eq!(
            get(&authority).await,
            (StatusCode::OK, "until the end".into())
        );
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_replaced() {
    // One answer per connection, without saying so: the pooled connection is dead.
    let (authority, connections) =
        upstream(&[b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"], 1).await;
    for _ in 0..3 {
        assert_eq!(get(&authority).await, (StatusCode::OK, "ok".into()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_refused_connect_is_a_connect_failure() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = Authority::try_from(closed.local_addr().unwrap().to_string()).unwrap();
    drop(closed);
    assert!(matches!(
        send(&authority, GET, false, SECOND, MINUTE).await,
        Err(Failure::Connect(_))
    ));
}
