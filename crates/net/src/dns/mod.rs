//! Cluster DNS for the single-host engine: an authoritative server for the cluster zone
//! (`cluster.local` by default) that answers the records of the
//! [Kubernetes DNS specification](https://github.com/kubernetes/dns/blob/master/docs/specification.md)
//! for Services, over UDP and TCP.
//!
//! | name | type | answer |
//! | --- | --- | --- |
//! | `<svc>.<ns>.svc.<zone>` (ClusterIP) | A | the ClusterIP (spec 2.3.1) |
//! | `<svc>.<ns>.svc.<zone>` (headless) | A | one per ready endpoint; NXDOMAIN without any (2.4.1) |
//! | `<host>.<svc>.<ns>.svc.<zone>` (headless) | A | the endpoint; `<host>` is its hostname, else its IP with dashes (2.4.1) |
//! | `<svc>.<ns>.svc.<zone>` (ExternalName) | CNAME | the external name, not chased outside the zone (2.5) |
//! | `_<port>._<proto>.<svc>.<ns>.svc.<zone>` | SRV | per named port: the service, or each endpoint of a headless one (2.3.2, 2.4.2) |
//! | `<d>.<c>.<b>.<a>.in-addr.arpa` | PTR | the service of a ClusterIP, the endpoint name of a headless endpoint (2.3.3, 2.4.3) |
//! | `dns-version.<zone>` | TXT | the schema version (2.2) |
//! | `<zone>` | SOA | the zone's SOA |
//!
//! Everything else follows RFC 1034/2308 for an authoritative server: a name in the zone
//! that does not exist is NXDOMAIN, a name that exists without the asked type (AAAA of a
//! ClusterIP service, or an empty non-terminal such as `<ns>.svc.<zone>` and `svc.<zone>`)
//! is NOERROR with no answer (NODATA); both carry the SOA in the authority section, so that
//! resolvers cache the negative answer for the SOA's minimum (5 s). Names outside the zone
//! are REFUSED: this server is not a resolver. Names compare case-insensitively (spec 2.1),
//! and the answer repeats the question's spelling.
//!
//! Deviations from the spec: no `<a>-<b>-<c>-<d>.<ns>.pod.<zone>` records (deprecated in
//! 2.6), and a namespace without services does not exist (`<ns>.svc.<zone>` is NXDOMAIN):
//! the records are built from services only.
//!
//! The data plane never waits for the control plane: every query reads the current
//! [`DnsRecords`] snapshot through an atomic pointer (`arc-swap`), and
//! [`DnsHandle::update`] swaps in a new snapshot that the next query sees.

pub mod client;
mod lookup;
mod names;
mod records;
mod server;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub use hickory_server::proto::rr::RecordType;
pub use records::{
    DnsRecords, Endpoint, InvalidZone, NamedPort, SCHEMA_VERSION, ServiceKind, ServiceRecord,
};
pub use server::{DnsHandle, DnsServer};

/// The address the cluster DNS listens on unless configured otherwise: `127.0.0.1:10053`,
/// UDP and TCP.
///
/// Loopback, because the single-host engine serves only this machine. A port above 1023,
/// because binding one needs no root; 10053 is where kube-dns itself listened behind its
/// dnsmasq cache, so it reads as "cluster DNS" to Kubernetes users. Not 53 (root, and
/// systemd-resolved owns `127.0.0.53:53`) and not 5353 (mDNS: avahi holds `0.0.0.0:5353`,
/// which makes a bind to any `127.x.y.z:5353` fail).
pub const DEFAULT_DNS_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 10053);

/// The cluster domain unless configured otherwise, as kubelet's `--cluster-domain` default.
pub const DEFAULT_ZONE: &str = "cluster.local";

/// The TTL of every record, and the SOA minimum (the negative-caching TTL).
///
/// Five seconds, as CoreDNS's `kubernetes` plugin: endpoints of headless services come and
/// go with pods, and a client should not keep a dead pod's address for long.
pub const RECORD_TTL: u32 = 5;
