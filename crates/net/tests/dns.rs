//! The cluster DNS over real sockets: a server on a free loopback port, queried over UDP
//! and TCP by a minimal client built on hickory-proto's message types (and once by `dig`).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_server::proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, RecordType};
use switchyard_net::dns::{DnsRecords, DnsServer, Endpoint, NamedPort, ServiceKind, ServiceRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

/// Long enough for a loaded CI machine, short enough that a lost datagram fails the test
/// instead of hanging it.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

const WEB_IP: Ipv4Addr = Ipv4Addr::new(127, 96, 0, 10);

fn http_port(port: u16) -> Vec<NamedPort> {
    vec![NamedPort {
        name: "http".to_owned(),
        protocol: "TCP".to_owned(),
        port,
    }]
}

fn service(name: &str, kind: ServiceKind, ports: Vec<NamedPort>) -> ServiceRecord {
    ServiceRecord {
        namespace: "shop".to_owned(),
        name: name.to_owned(),
        kind,
        ports,
    }
}

fn endpoint(last: u8, hostname: Option<&str>) -> Endpoint {
    Endpoint {
        ip: Ipv4Addr::new(127, 16, 0, last),
        hostname: hostname.map(str::to_owned),
    }
}

fn services() -> Vec<ServiceRecord> {
    vec![
        service("web", ServiceKind::ClusterIp(WEB_IP), http_port(80)),
        service(
            "db",
            ServiceKind::Headless(vec![endpoint(5, Some("db-0")), endpoint(6, None)]),
            http_port(5432),
        ),
        service(
            "payments",
            ServiceKind::ExternalName("payments.example.com".to_owned()),
            Vec::new(),
        ),
    ]
}

async fn server() -> DnsServer {
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), "cluster.local")
        .await
        .expect("bind the DNS server");
    server
        .records()
        .update(DnsRecords::new("cluster.local", services()).unwrap());
    server
}

fn query(name: &str, qtype: RecordType, edns: bool) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        message.set_edns(edns);
    }
    message
}

async fn udp(server: SocketAddr, request: &Message) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&request.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buffer = vec![0; 65535];
    let (len, _) = timeout(QUERY_TIMEOUT, socket.recv_from(&mut buffer))
        .await
        .expect("UDP answer in time")
        .unwrap();
    let response = Message::from_vec(&buffer[..len]).expect("a DNS message");
    assert_eq!(response.metadata.id, request.metadata.id);
    response
}

/// RFC 1035 section 4.2.2: over TCP each message is preceded by its length.
async fn tcp(server: SocketAddr, request: &Message) -> Message {
    let exchange = async {
        let mut stream = TcpStream::connect(server).await.unwrap();
        let bytes = request.to_vec().unwrap();
        stream
            .write_all(&u16::try_from(bytes.len()).unwrap().to_be_bytes())
            .await
            .unwrap();
        stream.write_all(&bytes).await.unwrap();
        let len = stream.read_u16().await.unwrap();
        let mut buffer = vec![0; usize::from(len)];
        stream.read_exact(&mut buffer).await.unwrap();
        buffer
    };
    let buffer = timeout(QUERY_TIMEOUT, exchange)
        .await
        .expect("TCP answer in time");
    let response = Message::from_vec(&buffer).expect("a DNS message");
    assert_eq!(response.metadata.id, request.metadata.id);
    response
}

/// Asks over UDP and over TCP, checks that both say the same, and returns the answer.
async fn ask(server: &DnsServer, name: &str, qtype: RecordType) -> Message {
    let request = query(name, qtype, false);
    let over_udp = udp(server.local_addr(), &request).await;
    let over_tcp = tcp(server.local_addr(), &request).await;
    assert_eq!(
        over_udp, over_tcp,
        "UDP and TCP answers differ for {name} {qtype}"
    );
    assert!(!over_udp.metadata.truncation, "{name} {qtype} truncated");
    over_udp
}

/// The answer section as `name TYPE rdata` lines.
fn answers(message: &Message) -> Vec<String> {
    lines(&message.answers)
}

fn lines(records: &[hickory_server::proto::rr::Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect()
}

fn assert_soa_authority(message: &Message) {
    assert_eq!(message.authorities.len(), 1, "{message:?}");
    let soa = &message.authorities[0];
    assert_eq!(soa.name.to_string(), "cluster.local.");
    let RData::SOA(data) = &soa.data else {
        panic!("authority is not a SOA: {soa:?}");
    };
    assert_eq!(data.minimum, 5);
}

#[tokio::test]
async fn a_record_of_a_cluster_ip_service() {
    let server = server().await;
    let response = ask(&server, "web.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert!(response.metadata.authoritative);
    assert!(
        !response.metadata.recursion_available,
        "we are not a resolver"
    );
    assert_eq!(
        answers(&response),
        ["web.shop.svc.cluster.local. A 127.96.0.10"]
    );
    assert_eq!(response.answers[0].ttl, 5);
    server.shutdown().await;
}

#[tokio::test]
async fn a_records_of_a_headless_service_are_its_ready_endpoints() {
    let server = server().await;
    let response = ask(&server, "db.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(
        answers(&response),
        [
            "db.shop.svc.cluster.local. A 127.16.0.5",
            "db.shop.svc.cluster.local. A 127.16.0.6",
        ]
    );
    let response = ask(&server, "db-0.db.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(
        answers(&response),
        ["db-0.db.shop.svc.cluster.local. A 127.16.0.5"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn cname_of_an_external_name_service() {
    let server = server().await;
    for qtype in [RecordType::A, RecordType::CNAME] {
        let response = ask(&server, "payments.shop.svc.cluster.local.", qtype).await;
        assert_eq!(response.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            answers(&response),
            ["payments.shop.svc.cluster.local. CNAME payments.example.com."],
            "not chased outside the zone ({qtype})"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn srv_records_of_a_named_port() {
    let server = server().await;
    let response = ask(
        &server,
        "_http._tcp.web.shop.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(
        answers(&response),
        ["_http._tcp.web.shop.svc.cluster.local. SRV 0 100 80 web.shop.svc.cluster.local."]
    );
    assert_eq!(
        lines(&response.additionals),
        ["web.shop.svc.cluster.local. A 127.96.0.10"]
    );

    let response = ask(
        &server,
        "_http._tcp.db.shop.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(
        answers(&response),
        [
            "_http._tcp.db.shop.svc.cluster.local. SRV 0 100 5432 db-0.db.shop.svc.cluster.local.",
            "_http._tcp.db.shop.svc.cluster.local. SRV 0 100 5432 127-16-0-6.db.shop.svc.cluster.local.",
        ]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_service_is_nxdomain_with_the_soa() {
    let server = server().await;
    let response = ask(&server, "nope.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
    assert!(response.metadata.authoritative);
    assert!(response.answers.is_empty());
    assert_soa_authority(&response);
    server.shutdown().await;
}

#[tokio::test]
async fn aaaa_of_a_cluster_ip_service_and_empty_non_terminals_are_nodata() {
    let server = server().await;
    for (name, qtype) in [
        ("web.shop.svc.cluster.local.", RecordType::AAAA),
        ("shop.svc.cluster.local.", RecordType::A),
        ("svc.cluster.local.", RecordType::A),
    ] {
        let response = ask(&server, name, qtype).await;
        assert_eq!(
            response.metadata.response_code,
            ResponseCode::NoError,
            "{name} {qtype}"
        );
        assert!(response.answers.is_empty(), "{name} {qtype}");
        assert_soa_authority(&response);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn names_outside_the_zone_are_refused() {
    let server = server().await;
    for name in ["example.com.", "web.shop.svc.cluster.local.example.com."] {
        let response = ask(&server, name, RecordType::A).await;
        assert_eq!(
            response.metadata.response_code,
            ResponseCode::Refused,
            "{name}"
        );
        assert!(response.answers.is_empty());
        assert!(!response.metadata.authoritative);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn names_are_case_insensitive() {
    let server = server().await;
    let response = ask(&server, "Web.SHOP.svc.Cluster.Local.", RecordType::A).await;
    assert_eq!(
        answers(&response),
        ["Web.SHOP.svc.Cluster.Local. A 127.96.0.10"],
        "answered, in the question's spelling"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_update_is_visible_to_the_next_query() {
    let server = server().await;
    let handle = server.records();
    let name = "cart.shop.svc.cluster.local.";
    let response = ask(&server, name, RecordType::A).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);

    let mut services = services();
    services.push(service(
        "cart",
        ServiceKind::ClusterIp(Ipv4Addr::new(127, 96, 0, 11)),
        http_port(80),
    ));
    handle.update(DnsRecords::new("cluster.local", services).unwrap());
    let response = ask(&server, name, RecordType::A).await;
    assert_eq!(answers(&response), [format!("{name} A 127.96.0.11")]);

    handle.update(DnsRecords::new("cluster.local", Vec::new()).unwrap());
    let response = ask(&server, name, RecordType::A).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
    server.shutdown().await;
}

#[tokio::test]
async fn answers_too_large_for_udp_are_truncated_and_whole_over_tcp() {
    let server = server().await;
    let endpoints = (1..=100).map(|last| endpoint(last, None)).collect();
    server.records().update(
        DnsRecords::new(
            "cluster.local",
            vec![service(
                "big",
                ServiceKind::Headless(endpoints),
                http_port(8080),
            )],
        )
        .unwrap(),
    );
    let request = query("big.shop.svc.cluster.local.", RecordType::A, false);
    let over_udp = udp(server.local_addr(), &request).await;
    assert!(
        over_udp.metadata.truncation,
        "100 A records exceed 512 bytes"
    );
    let over_tcp = tcp(server.local_addr(), &request).await;
    assert!(!over_tcp.metadata.truncation);
    assert_eq!(over_tcp.answers.len(), 100);

    // The addresses of SRV targets are optional: with EDNS's 1232 bytes the 16 SRV records
    // of a smaller service fit (about 1020 bytes), their addresses do not (about 1350), and
    // the answer must not be marked truncated for them (RFC 2181 section 9).
    let endpoints = (1..=16).map(|last| endpoint(last, None)).collect();
    server.records().update(
        DnsRecords::new(
            "cluster.local",
            vec![service(
                "mid",
                ServiceKind::Headless(endpoints),
                http_port(8080),
            )],
        )
        .unwrap(),
    );
    let request = query(
        "_http._tcp.mid.shop.svc.cluster.local.",
        RecordType::SRV,
        true,
    );
    let over_udp = udp(server.local_addr(), &request).await;
    assert!(!over_udp.metadata.truncation);
    assert_eq!(over_udp.answers.len(), 16);
    assert!(over_udp.additionals.is_empty());
    assert!(over_udp.edns.is_some(), "EDNS answered with EDNS");
    let over_tcp = tcp(server.local_addr(), &request).await;
    assert_eq!(over_tcp.answers.len(), 16);
    assert_eq!(
        over_tcp.additionals.len(),
        16,
        "TCP has room for the addresses"
    );
    server.shutdown().await;
}

/// RFC 6891 section 6.1.3 (BADVERS for an EDNS version above 0) and RFC 1035 (NOTIMP for
/// an opcode other than QUERY).
#[tokio::test]
async fn unsupported_requests_get_the_standard_errors() {
    let server = server().await;
    let mut request = query("web.shop.svc.cluster.local.", RecordType::A, true);
    request.edns.as_mut().unwrap().set_version(1);
    let response = udp(server.local_addr(), &request).await;
    // 16 is BADVERS with OPT and BADSIG with TSIG (RFC 6895 section 2.3); hickory decodes
    // it as the latter, so compare numbers.
    assert_eq!(
        u16::from(response.metadata.response_code),
        u16::from(ResponseCode::BADVERS)
    );
    assert!(response.answers.is_empty());

    let mut request = query("web.shop.svc.cluster.local.", RecordType::A, false);
    request.metadata.op_code = OpCode::Status;
    let response = udp(server.local_addr(), &request).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NotImp);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_frees_the_address() {
    let server = server().await;
    let addr = server.local_addr();
    server.shutdown().await;
    let again = DnsServer::bind(addr, "cluster.local")
        .await
        .expect("the address is free after shutdown");
    again.shutdown().await;
}

#[tokio::test]
async fn bind_rejects_an_invalid_zone() {
    let error = DnsServer::bind("127.0.0.1:0".parse().unwrap(), "bad..zone")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
}

/// The answer as a stock resolver tool sees it. CI installs dnsutils; a machine without
/// `dig` fails here rather than passing without having checked.
#[tokio::test]
async fn dig_resolves_a_cluster_ip_service() {
    let server = server().await;
    let port = server.local_addr().port().to_string();
    // dig blocks; the server needs this runtime's thread to answer it.
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &port,
                "+short",
                "+tries=1",
                "+time=5",
                "web.shop.svc.cluster.local",
                "A",
            ])
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|error| {
        panic!("cannot run dig ({error}): install dnsutils (apt-get install -y dnsutils)")
    });
    assert!(
        output.status.success(),
        "dig failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "127.96.0.10\n");
    server.shutdown().await;
}
