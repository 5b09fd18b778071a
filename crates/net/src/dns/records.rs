//! The zone's content: services in, an immutable index of resource records out.
//!
//! A [`DnsRecords`] is built once per change of the services and never modified, so that
//! queries can read it without locks while the next one is being built.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_server::proto::rr::rdata::{A, CNAME, PTR, SOA, SRV, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use tracing::warn;

use super::RECORD_TTL;
use super::names::{self, NameError};

/// The version of the Kubernetes DNS schema these records follow, served as the TXT record
/// of `dns-version.<zone>` (spec 2.2).
pub const SCHEMA_VERSION: &str = "1.1.0";

/// A Service, as the cluster DNS needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// What the Service's name resolves to.
    pub kind: ServiceKind,
    /// The Service's ports; the named ones get SRV records.
    pub ports: Vec<NamedPort>,
}

/// What a Service's name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// A Service with a ClusterIP: one A record with it.
    ClusterIp(Ipv4Addr),
    /// A headless Service (`clusterIP: None`): one A record per endpoint. Only ready
    /// endpoints belong here; without any, the name does not exist (spec 2.4.1).
    Headless(Vec<Endpoint>),
    /// An ExternalName Service: a CNAME to this name.
    ExternalName(String),
}

/// A ready endpoint of a headless Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The endpoint's address (the pod IP).
    pub ip: Ipv4Addr,
    /// The endpoint's hostname (a pod's `spec.hostname` with a matching `spec.subdomain`);
    /// without one the endpoint is named by its IP with dashes (`127-16-0-5`).
    pub hostname: Option<String>,
}

/// A port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    /// The port's name; an unnamed port (empty) has no SRV record (spec 2.3.2).
    pub name: String,
    /// `TCP`, `UDP` or `SCTP`, as in the Service; it becomes the `_tcp` label. Empty means
    /// TCP, the Service's default.
    pub protocol: String,
    /// The port number: the Service's port, or for a headless Service the endpoints'
    /// target port (clients connect to the endpoints directly).
    pub port: u16,
}

/// A cluster domain that cannot be a DNS zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cluster DNS zone {zone:?}: {reason}")]
pub struct InvalidZone {
    /// The zone as given.
    pub zone: String,
    /// What is wrong with it.
    pub reason: String,
}

/// An immutable snapshot of the cluster zone's records, built from the services.
#[derive(Debug, Clone)]
pub struct DnsRecords {
    zone: Name,
    zone_lower: LowerName,
    soa: Record,
    /// Every name of the zone, with its records; empty for an empty non-terminal, so that
    /// "absent" means NXDOMAIN and "present" means the name exists.
    nodes: HashMap<LowerName, Vec<RData>>,
    /// PTR records by reverse name (`5.0.16.127.in-addr.arpa.`), outside the zone.
    reverse: HashMap<LowerName, Vec<RData>>,
}

impl DnsRecords {
    /// Builds the records of `zone` (such as `cluster.local`) for `services`.
    ///
    /// A service whose names or external name cannot be DNS names (which the API server's
    /// validation prevents) is left out with a warning rather than failing the whole zone:
    /// one bad object must not take every other name off the air.
    pub fn new(zone: &str, services: Vec<ServiceRecord>) -> Result<DnsRecords, InvalidZone> {
        let invalid = |reason: String| InvalidZone {
            zone: zone.to_owned(),
            reason,
        };
        let zone_name = names::fqdn(zone).map_err(invalid)?;
        if zone_name.is_root() {
            return Err(invalid("the root zone would claim every name".to_owned()));
        }
        let mut zone = Zone::new(zone_name).map_err(invalid)?;
        for service in &services {
            match service_records(&zone.name, service) {
                Ok(records) => zone.insert(records),
                Err(reason) => warn!(
                    namespace = %service.namespace,
                    service = %service.name,
                    "left out of cluster DNS: {reason}"
                ),
            }
        }
        Ok(zone.finish())
    }

    /// The zone these records belong to, in lowercase without the final dot.
    pub fn zone(&self) -> String {
        self.zone.to_ascii().trim_end_matches('.').to_owned()
    }

    /// Whether `name` is the apex or below it.
    pub(crate) fn in_zone(&self, name: &LowerName) -> bool {
        self.zone_lower.zone_of(name)
    }

    /// The records of `name` in the zone; `None` when the name does not exist.
    pub(crate) fn node(&self, name: &LowerName) -> Option<&[RData]> {
        self.nodes.get(name).map(Vec::as_slice)
    }

    /// The PTR records of a reverse name.
    pub(crate) fn reverse(&self, name: &LowerName) -> Option<&[RData]> {
        self.reverse.get(name).map(Vec::as_slice)
    }

    /// The SOA record of the zone, for answers and for the authority section of negative
    /// answers.
    pub(crate) fn soa(&self) -> &Record {
        &self.soa
    }
}

/// The records one service contributes, computed before any is inserted so that a service
/// is in the zone whole or not at all.
#[derive(Default)]
struct ServiceRecords {
    records: Vec<(Name, RData)>,
    ptrs: Vec<(Ipv4Addr, Name)>,
}

fn service_records(zone: &Name, service: &ServiceRecord) -> Result<ServiceRecords, NameError> {
    let svc = names::child(zone, names::label("svc")?)?;
    let namespace = names::child(&svc, names::label(&service.namespace)?)?;
    let base = names::child(&namespace, names::label(&service.name)?)?;
    let mut out = ServiceRecords::default();
    match &service.kind {
        ServiceKind::ClusterIp(ip) => {
            out.records.push((base.clone(), RData::A(A(*ip))));
            out.ptrs.push((*ip, base.clone()));
            for (owner, port) in srv_owners(&base, &service.ports)? {
                out.records.push((owner, srv(port, &base)));
            }
        }
        ServiceKind::Headless(endpoints) => {
            let owners = srv_owners(&base, &service.ports)?;
            for endpoint in endpoints {
                let host = match &endpoint.hostname {
                    Some(hostname) => names::label(hostname)?,
                    None => names::dashed_ip(endpoint.ip),
                };
                let host = names::child(&base, host)?;
                out.records.push((base.clone(), RData::A(A(endpoint.ip))));
                out.records.push((host.clone(), RData::A(A(endpoint.ip))));
                out.ptrs.push((endpoint.ip, host.clone()));
                for (owner, port) in &owners {
                    out.records.push((owner.clone(), srv(*port, &host)));
                }
            }
        }
        ServiceKind::ExternalName(external) => {
            let target = names::fqdn(external)?;
            out.records.push((base, RData::CNAME(CNAME(target))));
        }
    }
    Ok(out)
}

/// `_<port>._<proto>.<base>` for each named port, with the port number.
fn srv_owners(base: &Name, ports: &[NamedPort]) -> Result<Vec<(Name, u16)>, NameError> {
    let mut owners = Vec::new();
    for port in ports.iter().filter(|port| !port.name.is_empty()) {
        let protocol = if port.protocol.is_empty() {
            "tcp"
        } else {
            &port.protocol
        };
        let owner = names::child(base, names::underscore_label(protocol)?)?;
        owners.push((
            names::child(&owner, names::underscore_label(&port.name)?)?,
            port.port,
        ));
    }
    Ok(owners)
}

/// An SRV record for one target. Priority 0 and weight 100 for every target: the spec
/// leaves both open, and equal weights make clients spread evenly (RFC 2782).
fn srv(port: u16, target: &Name) -> RData {
    RData::SRV(SRV::new(0, 100, port, target.clone()))
}

/// The zone while it is being built.
struct Zone {
    name: Name,
    soa: Record,
    nodes: HashMap<LowerName, Vec<RData>>,
    reverse: HashMap<LowerName, Vec<RData>>,
}

impl Zone {
    fn new(name: Name) -> Result<Zone, NameError> {
        let soa = Record::from_rdata(name.clone(), RECORD_TTL, RData::SOA(soa(&name)?));
        let mut zone = Zone {
            name,
            soa,
            nodes: HashMap::new(),
            reverse: HashMap::new(),
        };
        zone.add(zone.name.clone(), zone.soa.data.clone());
        let version = names::child(&zone.name, names::label("dns-version")?)?;
        zone.add(
            version,
            RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_owned()])),
        );
        // `svc.<zone>` exists even before the first service: it is where every service
        // lives, and a resolver probing it should not cache an NXDOMAIN for the subtree.
        zone.add_empty(&names::child(&zone.name, names::label("svc")?)?);
        Ok(zone)
    }

    fn insert(&mut self, service: ServiceRecords) {
        for (owner, rdata) in service.records {
            self.add(owner, rdata);
        }
        for (ip, target) in service.ptrs {
            let rdatas = self
                .reverse
                .entry(LowerName::new(&Name::from(ip)))
                .or_default();
            let ptr = RData::PTR(PTR(target));
            if !rdatas.contains(&ptr) {
                rdatas.push(ptr);
            }
        }
    }

    /// Adds a record (once) and makes every name between it and the apex exist.
    fn add(&mut self, owner: Name, rdata: RData) {
        let rdatas = self.nodes.entry(LowerName::new(&owner)).or_default();
        if !rdatas.contains(&rdata) {
            rdatas.push(rdata);
        }
        self.add_empty(&owner.base_name());
    }

    /// Makes `name` and every name between it and the apex exist (empty non-terminals).
    fn add_empty(&mut self, name: &Name) {
        let mut name = name.clone();
        while name.num_labels() >= self.name.num_labels() {
            self.nodes.entry(LowerName::new(&name)).or_default();
            name = name.base_name();
        }
    }

    fn finish(self) -> DnsRecords {
        DnsRecords {
            zone_lower: LowerName::new(&self.name),
            zone: self.name,
            soa: self.soa,
            nodes: self.nodes,
            reverse: self.reverse,
        }
    }
}

/// The zone's SOA, with CoreDNS's timers. Only `minimum` matters here (no secondaries
/// transfer this zone): it is the negative-caching TTL, as short as the records' TTL.
fn soa(zone: &Name) -> Result<SOA, NameError> {
    let mname = names::child(
        &names::child(zone, names::label("dns")?)?,
        names::label("ns")?,
    )?;
    let rname = names::child(zone, names::label("hostmaster")?)?;
    Ok(SOA::new(
        mname,
        rname,
        serial(),
        7200,
        1800,
        86400,
        RECORD_TTL,
    ))
}

/// The SOA serial: the build time in seconds, as CoreDNS uses the time of the last change,
/// so that it grows with every snapshot built a second or more after the previous one.
fn serial() -> u32 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    // Serial arithmetic (RFC 1982) wraps, so the low 32 bits are what counts.
    seconds as u32
}
