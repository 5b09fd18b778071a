//! A minimal DNS client for asking the cluster DNS a question (the demo and tools use it;
//! it is not a resolver: one UDP question, one answer, no retries beyond the timeout).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::proto::op::{Message, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;

/// An answer: the response code and each answer record's data as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `NoError`, `NXDomain`, ...
    pub code: ResponseCode,
    /// Record data, e.g. `127.96.0.10` or `docs.example.com.`.
    pub records: Vec<String>,
}

/// Asks `server` for `name`'s records of `kind` over UDP.
pub async fn ask(
    server: SocketAddr,
    name: &str,
    kind: RecordType,
    timeout: Duration,
) -> io::Result<Answer> {
    let name = Name::from_ascii(name)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut request = Message::query();
    request.metadata.recursion_desired = true;
    request.add_query(Query::query(name, kind));
    let bytes = request.to_vec().map_err(io::Error::other)?;
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.send_to(&bytes, server).await?;
    let mut buffer = vec![0; 4096];
    let (len, _) = tokio::time::timeout(timeout, socket.recv_from(&mut buffer))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no DNS answer from {server}"),
            )
        })??;
    let response = Message::from_vec(&buffer[..len]).map_err(io::Error::other)?;
    Ok(Answer {
        code: response.metadata.response_code,
        records: response
            .answers
            .iter()
            .map(|r| r.data.to_string())
            .collect(),
    })
}
