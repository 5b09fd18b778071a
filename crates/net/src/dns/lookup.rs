//! Answering one question from a snapshot: a pure function, free of sockets and of the
//! wire format, so that every rule is tested directly.
//!
//! The algorithm is RFC 1034 section 4.3.2 for an authoritative server without
//! delegations or wildcards, with the negative answers of RFC 2308.

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::RECORD_TTL;
use super::records::DnsRecords;

/// How many CNAMEs are followed inside the zone before the chain is handed to the client
/// as it is; ExternalName services pointing at each other in a loop end here.
const MAX_CNAME_CHAIN: usize = 8;

/// The content of a response, before it meets the wire.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    /// NOERROR, NXDOMAIN or REFUSED.
    pub(crate) rcode: ResponseCode,
    /// Whether this server is the authority for the answer (the AA bit).
    pub(crate) authoritative: bool,
    /// The answer section.
    pub(crate) answers: Vec<Record>,
    /// The authority section: the SOA of a negative answer.
    pub(crate) authorities: Vec<Record>,
    /// The additional section: addresses of SRV targets. Optional data (spec 2.3.2), which
    /// the server drops when it would not fit.
    pub(crate) additionals: Vec<Record>,
}

/// Answers `qtype` questions for `qname` (as the client spelled it) from `records`.
pub(crate) fn answer(records: &DnsRecords, qname: &Name, qtype: RecordType) -> Answer {
    let lower = LowerName::new(qname);
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        // Nobody needs a copy of a zone that is rebuilt on every change.
        return refused();
    }
    if records.in_zone(&lower) {
        return in_zone(records, qname.clone(), qtype);
    }
    match records.reverse(&lower) {
        // The reverse names of service and endpoint addresses (spec 2.3.3, 2.4.3). The
        // rest of in-addr.arpa is not ours: no SOA to offer, so no negative answers either.
        Some(ptrs) => positive(qname, ptrs, qtype),
        None => refused(),
    }
}

fn in_zone(records: &DnsRecords, qname: Name, qtype: RecordType) -> Answer {
    let mut owner = qname;
    let mut chain = Vec::new();
    loop {
        let Some(rdatas) = records.node(&LowerName::new(&owner)) else {
            // RFC 6604: after a CNAME the response code is the last name's.
            return negative(records, ResponseCode::NXDomain, chain);
        };
        let cname = rdatas.iter().find_map(|rdata| match rdata {
            RData::CNAME(target) if !matches!(qtype, RecordType::CNAME | RecordType::ANY) => {
                Some(target)
            }
            _ => None,
        });
        if let Some(target) = cname {
            chain.push(Record::from_rdata(
                owner.clone(),
                RECORD_TTL,
                RData::CNAME(target.clone()),
            ));
            // ExternalName targets in the zone are ours to answer; outside it the client
            // asks its own resolver (spec 2.5: the answer example carries the target's A
            // from the resolver, not from the cluster DNS).
            let target_lower = LowerName::new(&target.0);
            if records.in_zone(&target_lower) && chain.len() < MAX_CNAME_CHAIN {
                owner = target.0.clone();
                continue;
            }
            return Answer {
                rcode: ResponseCode::NoError,
                authoritative: true,
                answers: chain,
                ..Answer::default()
            };
        }
        let mut answer = positive(&owner, rdatas, qtype);
        if answer.answers.is_empty() {
            return negative(records, ResponseCode::NoError, chain);
        }
        answer.additionals = srv_addresses(records, &answer.answers);
        chain.append(&mut answer.answers);
        answer.answers = chain;
        return answer;
    }
}

/// The records of `rdatas` of type `qtype` (all of them for ANY), owned by `owner`.
fn positive(owner: &Name, rdatas: &[RData], qtype: RecordType) -> Answer {
    let answers = rdatas
        .iter()
        .filter(|rdata| qtype == RecordType::ANY || rdata.record_type() == qtype)
        .map(|rdata| Record::from_rdata(owner.clone(), RECORD_TTL, rdata.clone()))
        .collect();
    Answer {
        rcode: ResponseCode::NoError,
        authoritative: true,
        answers,
        ..Answer::default()
    }
}

/// NXDOMAIN, or NODATA (NOERROR without answers), with the SOA in the authority section
/// so that resolvers may cache it (RFC 2308 section 3), after the CNAMEs that led here.
fn negative(records: &DnsRecords, rcode: ResponseCode, chain: Vec<Record>) -> Answer {
    Answer {
        rcode,
        authoritative: true,
        answers: chain,
        authorities: vec![records.soa().clone()],
        additionals: Vec::new(),
    }
}

fn refused() -> Answer {
    Answer {
        rcode: ResponseCode::Refused,
        ..Answer::default()
    }
}

/// The A records of the targets of the SRV records in `answers`, once per target.
fn srv_addresses(records: &DnsRecords, answers: &[Record]) -> Vec<Record> {
    let mut targets: Vec<&Name> = Vec::new();
    for record in answers {
        if let RData::SRV(srv) = &record.data
            && !targets.contains(&&srv.target)
        {
            targets.push(&srv.target);
        }
    }
    let mut additionals = Vec::new();
    for target in targets {
        let rdatas = records.node(&LowerName::new(target)).unwrap_or_default();
        additionals.extend(positive(target, rdatas, RecordType::A).answers);
    }
    additionals
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::dns::{Endpoint, NamedPort, ServiceKind, ServiceRecord};

    fn service(namespace: &str, name: &str, kind: ServiceKind) -> ServiceRecord {
        ServiceRecord {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            kind,
            ports: vec![NamedPort {
                name: "http".to_owned(),
                protocol: "TCP".to_owned(),
                port: 8080,
            }],
        }
    }

    fn records() -> DnsRecords {
        DnsRecords::new(
            "cluster.local",
            vec![
                service(
                    "default",
                    "web",
                    ServiceKind::ClusterIp(Ipv4Addr::new(127, 96, 0, 1)),
                ),
                service(
                    "default",
                    "db",
                    ServiceKind::Headless(vec![
                        Endpoint {
                            ip: Ipv4Addr::new(127, 16, 0, 5),
                            hostname: Some("db-0".to_owned()),
                        },
                        Endpoint {
                            ip: Ipv4Addr::new(127, 16, 0, 6),
                            hostname: None,
                        },
                    ]),
                ),
                service("default", "empty", ServiceKind::Headless(vec![])),
                service(
                    "default",
                    "ext",
                    ServiceKind::ExternalName("example.com".to_owned()),
                ),
                service(
                    "default",
                    "alias",
                    ServiceKind::ExternalName("web.default.svc.cluster.local".to_owned()),
                ),
                service(
                    "default",
                    "loop-a",
                    ServiceKind::ExternalName("loop-b.default.svc.cluster.local".to_owned()),
                ),
                service(
                    "default",
                    "loop-b",
                    ServiceKind::ExternalName("loop-a.default.svc.cluster.local".to_owned()),
                ),
            ],
        )
        .unwrap()
    }

    fn ask(name: &str, qtype: RecordType) -> Answer {
        answer(&records(), &Name::from_ascii(name).unwrap(), qtype)
    }

    fn rdatas(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
            .collect()
    }

    #[test]
    fn cluster_ip_service_has_an_a_record() {
        let answer = ask("web.default.svc.cluster.local.", RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::NoError);
        assert!(answer.authoritative);
        assert_eq!(
            rdatas(&answer.answers),
            ["web.default.svc.cluster.local. A 127.96.0.1"]
        );
        assert_eq!(answer.answers[0].ttl, RECORD_TTL);
    }

    #[test]
    fn headless_service_has_one_a_record_per_endpoint_and_per_endpoint_names() {
        let answer = ask("db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(
            rdatas(&answer.answers),
            [
                "db.default.svc.cluster.local. A 127.16.0.5",
                "db.default.svc.cluster.local. A 127.16.0.6",
            ]
        );
        let answer = ask("db-0.db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(
            rdatas(&answer.answers),
            ["db-0.db.default.svc.cluster.local. A 127.16.0.5"]
        );
        let answer = ask("127-16-0-6.db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(
            rdatas(&answer.answers),
            ["127-16-0-6.db.default.svc.cluster.local. A 127.16.0.6"]
        );
    }

    /// Spec 2.4.1: "If there are no ready endpoints for the headless Service, the answer
    /// should be NXDOMAIN."
    #[test]
    fn headless_service_without_ready_endpoints_is_nxdomain() {
        let answer = ask("empty.default.svc.cluster.local.", RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::NXDomain);
        let answer = ask(
            "_http._tcp.empty.default.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(answer.rcode, ResponseCode::NXDomain);
    }

    #[test]
    fn srv_records_point_at_the_service_or_at_each_endpoint_with_addresses() {
        let answer = ask("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(
            rdatas(&answer.answers),
            [
                "_http._tcp.web.default.svc.cluster.local. SRV 0 100 8080 web.default.svc.cluster.local."
            ]
        );
        assert_eq!(
            rdatas(&answer.additionals),
            ["web.default.svc.cluster.local. A 127.96.0.1"]
        );
        let answer = ask("_http._tcp.db.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(
            rdatas(&answer.answers),
            [
                "_http._tcp.db.default.svc.cluster.local. SRV 0 100 8080 db-0.db.default.svc.cluster.local.",
                "_http._tcp.db.default.svc.cluster.local. SRV 0 100 8080 127-16-0-6.db.default.svc.cluster.local.",
            ]
        );
        assert_eq!(
            rdatas(&answer.additionals),
            [
                "db-0.db.default.svc.cluster.local. A 127.16.0.5",
                "127-16-0-6.db.default.svc.cluster.local. A 127.16.0.6",
            ]
        );
    }

    #[test]
    fn external_name_is_a_cname_not_chased_outside_the_zone() {
        for qtype in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
            let answer = ask("ext.default.svc.cluster.local.", qtype);
            assert_eq!(answer.rcode, ResponseCode::NoError);
            assert_eq!(
                rdatas(&answer.answers),
                ["ext.default.svc.cluster.local. CNAME example.com."],
                "{qtype}"
            );
        }
    }

    #[test]
    fn external_name_inside_the_zone_is_chased() {
        let answer = ask("alias.default.svc.cluster.local.", RecordType::A);
        assert_eq!(
            rdatas(&answer.answers),
            [
                "alias.default.svc.cluster.local. CNAME web.default.svc.cluster.local.",
                "web.default.svc.cluster.local. A 127.96.0.1",
            ]
        );
        let answer = ask("loop-a.default.svc.cluster.local.", RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::NoError);
        assert_eq!(answer.answers.len(), MAX_CNAME_CHAIN);
    }

    #[test]
    fn unknown_names_are_nxdomain_with_the_soa() {
        let answer = ask("nope.default.svc.cluster.local.", RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::NXDomain);
        assert!(answer.authoritative);
        assert!(answer.answers.is_empty());
        assert_eq!(answer.authorities.len(), 1);
        assert_eq!(answer.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(answer.authorities[0].name.to_string(), "cluster.local.");
        // A namespace without services, and names beside svc.
        for name in ["default.svc.x.cluster.local.", "pod.cluster.local."] {
            assert_eq!(
                ask(name, RecordType::A).rcode,
                ResponseCode::NXDomain,
                "{name}"
            );
        }
    }

    #[test]
    fn existing_names_without_the_type_and_empty_non_terminals_are_nodata() {
        for (name, qtype) in [
            ("web.default.svc.cluster.local.", RecordType::AAAA),
            ("web.default.svc.cluster.local.", RecordType::TXT),
            ("default.svc.cluster.local.", RecordType::A),
            ("svc.cluster.local.", RecordType::A),
            ("_tcp.web.default.svc.cluster.local.", RecordType::SRV),
            ("cluster.local.", RecordType::A),
        ] {
            let answer = ask(name, qtype);
            assert_eq!(answer.rcode, ResponseCode::NoError, "{name} {qtype}");
            assert!(answer.answers.is_empty(), "{name} {qtype}");
            assert_eq!(
                answer.authorities[0].record_type(),
                RecordType::SOA,
                "{name} {qtype}"
            );
        }
        let empty = DnsRecords::new("cluster.local", vec![]).unwrap();
        let answer = answer(
            &empty,
            &Name::from_ascii("svc.cluster.local.").unwrap(),
            RecordType::A,
        );
        assert_eq!(answer.rcode, ResponseCode::NoError);
    }

    #[test]
    fn names_outside_the_zone_are_refused() {
        for name in ["example.com.", "local.", "cluster.local.example.com.", "."] {
            let answer = ask(name, RecordType::A);
            assert_eq!(answer.rcode, ResponseCode::Refused, "{name}");
            assert!(!answer.authoritative);
        }
        let answer = ask("cluster.local.", RecordType::AXFR);
        assert_eq!(answer.rcode, ResponseCode::Refused);
    }

    #[test]
    fn names_compare_case_insensitively_and_answers_keep_the_question_spelling() {
        let answer = ask("WEB.Default.SVC.cluster.LOCAL.", RecordType::A);
        assert_eq!(
            rdatas(&answer.answers),
            ["WEB.Default.SVC.cluster.LOCAL. A 127.96.0.1"]
        );
    }

    #[test]
    fn apex_has_the_soa_and_the_schema_version() {
        let answer = ask("cluster.local.", RecordType::SOA);
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(answer.answers[0].record_type(), RecordType::SOA);
        let answer = ask("dns-version.cluster.local.", RecordType::TXT);
        assert_eq!(
            rdatas(&answer.answers),
            ["dns-version.cluster.local. TXT 1.1.0"]
        );
    }

    /// Spec 2.3.3 and 2.4.3.
    #[test]
    fn reverse_names_of_services_and_endpoints_have_ptr_records() {
        let answer = ask("1.0.96.127.in-addr.arpa.", RecordType::PTR);
        assert_eq!(
            rdatas(&answer.answers),
            ["1.0.96.127.in-addr.arpa. PTR web.default.svc.cluster.local."]
        );
        let answer = ask("5.0.16.127.in-addr.arpa.", RecordType::PTR);
        assert_eq!(
            rdatas(&answer.answers),
            ["5.0.16.127.in-addr.arpa. PTR db-0.db.default.svc.cluster.local."]
        );
        let answer = ask("9.0.16.127.in-addr.arpa.", RecordType::PTR);
        assert_eq!(answer.rcode, ResponseCode::Refused);
    }

    #[test]
    fn a_service_that_cannot_be_named_is_left_out_alone() {
        let records = DnsRecords::new(
            "cluster.local",
            vec![
                service(
                    "default",
                    "bad.name",
                    ServiceKind::ClusterIp(Ipv4Addr::new(127, 96, 0, 2)),
                ),
                service(
                    "default",
                    "web",
                    ServiceKind::ClusterIp(Ipv4Addr::new(127, 96, 0, 1)),
                ),
            ],
        )
        .unwrap();
        let ask = |name: &str| answer(&records, &Name::from_ascii(name).unwrap(), RecordType::A);
        assert_eq!(
            ask("bad.name.default.svc.cluster.local.").rcode,
            ResponseCode::NXDomain
        );
        assert_eq!(ask("web.default.svc.cluster.local.").answers.len(), 1);
        assert_eq!(
            answer(
                &records,
                &Name::from_ascii("2.0.96.127.in-addr.arpa.").unwrap(),
                RecordType::PTR
            )
            .rcode,
            ResponseCode::Refused
        );
    }

    #[test]
    fn invalid_zones_are_rejected() {
        assert!(DnsRecords::new("", vec![]).is_err());
        assert!(DnsRecords::new(".", vec![]).is_err());
        assert!(DnsRecords::new("bad..zone", vec![]).is_err());
        let records = DnsRecords::new("Cluster.Local.", vec![]).unwrap();
        assert_eq!(records.zone(), "cluster.local");
    }
}
