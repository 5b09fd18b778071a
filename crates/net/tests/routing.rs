//! The ingress routing table and canary decision, as tables of cases taken from the
//! Kubernetes Ingress documentation ("Path types" examples, "Hostname wildcards") and
//! ingress-nginx's canary documentation (`annotations.md#canary`) and `balancer.lua`.

use std::collections::{BTreeMap, BTreeSet};

use switchyard_net::ingress::routing::{
    ANNOTATION_PREFIX, Backend, CanaryConfig, IngressInput, PathInput, PathType, Problem,
    RequestView, Route, RoutingTable, RuleInput, STICKY_ANNOTATION, ServicePortRef, StickyBy,
    sticky_cohort,
};

use PathType::{Exact, ImplementationSpecific as Specific, Prefix};

// ---------------------------------------------------------------------------------------
// Builders

fn backend(service: &str) -> Backend {
    Backend {
        namespace: "shop".to_owned(),
        service: service.to_owned(),
        port: ServicePortRef::Number(80),
    }
}

fn path(path: &str, path_type: PathType, service: &str) -> PathInput {
    PathInput {
        path: path.to_owned(),
        path_type,
        backend: backend(service),
    }
}

fn rule(host: Option<&str>, paths: Vec<PathInput>) -> RuleInput {
    RuleInput {
        host: host.map(str::to_owned),
        paths,
    }
}

/// An Ingress in namespace `shop` created `minute` minutes after 2024-05-01T10:00Z.
fn ingress(name: &str, minute: u32, rules: Vec<RuleInput>) -> IngressInput {
    IngressInput {
        namespace: "shop".to_owned(),
        name: name.to_owned(),
        annotations: BTreeMap::new(),
        rules,
        default_backend: None,
        created: format!("2024-05-01T10:{minute:02}:00Z"),
    }
}

fn annotate(mut ing: IngressInput, annotations: &[(&str, &str)]) -> IngressInput {
    for (key, value) in annotations {
        let key = if key.contains('/') {
            (*key).to_owned()
        } else {
            format!("{ANNOTATION_PREFIX}{key}")
        };
        ing.annotations.insert(key, (*value).to_owned());
    }
    ing
}

fn canary(ing: IngressInput, annotations: &[(&str, &str)]) -> IngressInput {
    annotate(annotate(ing, &[("canary", "true")]), annotations)
}

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    annotate(ingress("x", 0, vec![]), pairs).annotations
}

fn build(ingresses: &[IngressInput]) -> (RoutingTable, Vec<Problem>) {
    RoutingTable::build(ingresses)
}

fn build_clean(ingresses: &[IngressInput]) -> RoutingTable {
    let (table, problems) = build(ingresses);
    assert_eq!(problems, vec![], "unexpected problems");
    table
}

fn service_for<'t>(table: &'t RoutingTable, host: &str, request: &str) -> Option<&'t str> {
    table
        .find(host, request)
        .map(|route| route.backend.service.as_str())
}

fn problem_of<'p>(problems: &'p [Problem], name: &str) -> &'p str {
    problems
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.message.as_str())
        .unwrap_or_else(|| panic!("no problem for {name}: {problems:?}"))
}

/// A request as the canary decision sees it.
#[derive(Default)]
struct Request {
    headers: Vec<(String, String)>,
    cookies: Vec<(String, String)>,
}

impl Request {
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn cookie(mut self, name: &str, value: &str) -> Self {
        self.cookies.push((name.to_owned(), value.to_owned()));
        self
    }
}

impl RequestView for Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn config(pairs: &[(&str, &str)]) -> CanaryConfig {
    let mut all = vec![("canary", "true")];
    all.extend_from_slice(pairs);
    CanaryConfig::from_annotations(&annotations(&all))
        .expect("valid annotations")
        .expect("a canary")
}

// ---------------------------------------------------------------------------------------
// Paths: the Kubernetes Ingress documentation, "Path types" > "Examples" table.

struct PathCase {
    name: &'static str,
    paths: &'static [(&'static str, PathType)],
    request: &'static str,
    /// Index into `paths` of the path that must serve it; `None` = no match.
    expect: Option<usize>,
}

#[rustfmt::skip]
const KUBERNETES_PATH_EXAMPLES: &[PathCase] = &[
    PathCase { name: "k8s: Prefix / matches all paths (/)", paths: &[("/", Prefix)], request: "/", expect: Some(0) },
    PathCase { name: "k8s: Prefix / matches all paths (/aaa/bbb)", paths: &[("/", Prefix)], request: "/aaa/bbb", expect: Some(0) },
    PathCase { name: "k8s: Exact /foo matches /foo", paths: &[("/foo", Exact)], request: "/foo", expect: Some(0) },
    PathCase { name: "k8s: Exact /foo does not match /bar", paths: &[("/foo", Exact)], request: "/bar", expect: None },
    PathCase { name: "k8s: Exact /foo does not match /foo/", paths: &[("/foo", Exact)], request: "/foo/", expect: None },
    PathCase { name: "k8s: Exact /foo/ does not match /foo", paths: &[("/foo/", Exact)], request: "/foo", expect: None },
    PathCase { name: "k8s: Prefix /foo matches /foo", paths: &[("/foo", Prefix)], request: "/foo", expect: Some(0) },
    PathCase { name: "k8s: Prefix /foo matches /foo/", paths: &[("/foo", Prefix)], request: "/foo/", expect: Some(0) },
    PathCase { name: "k8s: Prefix /foo/ matches /foo", paths: &[("/foo/", Prefix)], request: "/foo", expect: Some(0) },
    PathCase { name: "k8s: Prefix /foo/ matches /foo/", paths: &[("/foo/", Prefix)], request: "/foo/", expect: Some(0) },
    PathCase { name: "k8s: Prefix /aaa/bb does not match /aaa/bbb", paths: &[("/aaa/bb", Prefix)], request: "/aaa/bbb", expect: None },
    PathCase { name: "k8s: Prefix /aaa/bbb matches /aaa/bbb", paths: &[("/aaa/bbb", Prefix)], request: "/aaa/bbb", expect: Some(0) },
    PathCase { name: "k8s: Prefix /aaa/bbb/ matches /aaa/bbb (ignores trailing slash)", paths: &[("/aaa/bbb/", Prefix)], request: "/aaa/bbb", expect: Some(0) },
    PathCase { name: "k8s: Prefix /aaa/bbb matches /aaa/bbb/ (matches trailing slash)", paths: &[("/aaa/bbb", Prefix)], request: "/aaa/bbb/", expect: Some(0) },
    PathCase { name: "k8s: Prefix /aaa/bbb matches /aaa/bbb/ccc (subpath)", paths: &[("/aaa/bbb", Prefix)], request: "/aaa/bbb/ccc", expect: Some(0) },
    PathCase { name: "k8s: Prefix /aaa/bbb does not match /aaa/bbbxyz (not a string prefix)", paths: &[("/aaa/bbb", Prefix)], request: "/aaa/bbbxyz", expect: None },
    PathCase { name: "k8s: Prefix /, /aaa: /aaa/ccc matches /aaa", paths: &[("/", Prefix), ("/aaa", Prefix)], request: "/aaa/ccc", expect: Some(1) },
    PathCase { name: "k8s: Prefix /, /aaa, /aaa/bbb: /aaa/bbb matches /aaa/bbb", paths: &[("/", Prefix), ("/aaa", Prefix), ("/aaa/bbb", Prefix)], request: "/aaa/bbb", expect: Some(2) },
    PathCase { name: "k8s: Prefix /, /aaa, /aaa/bbb: /ccc matches /", paths: &[("/", Prefix), ("/aaa", Prefix), ("/aaa/bbb", Prefix)], request: "/ccc", expect: Some(0) },
    PathCase { name: "k8s: Prefix /aaa does not match /ccc (default backend)", paths: &[("/aaa", Prefix)], request: "/ccc", expect: None },
    PathCase { name: "k8s: Mixed /foo Prefix and /foo Exact: /foo prefers Exact", paths: &[("/foo", Prefix), ("/foo", Exact)], request: "/foo", expect: Some(1) },
    // Multiple matches: the longest path wins; at equal length Exact beats Prefix.
    PathCase { name: "k8s multiple matches: longest wins over Exact", paths: &[("/foo", Exact), ("/foo/bar", Prefix)], request: "/foo/bar", expect: Some(1) },
    PathCase { name: "k8s multiple matches: Exact /foo and Prefix /foo, request /foo/bar takes Prefix", paths: &[("/foo", Exact), ("/foo", Prefix)], request: "/foo/bar", expect: Some(1) },
    PathCase { name: "k8s multiple matches: Exact /foo beats Prefix /foo/ (trailing slash not counted)", paths: &[("/foo/", Prefix), ("/foo", Exact)], request: "/foo", expect: Some(1) },
    PathCase { name: "k8s multiple matches: order of declaration does not matter", paths: &[("/aaa/bbb", Prefix), ("/", Prefix), ("/aaa", Prefix)], request: "/aaa/bbb/c", expect: Some(0) },
    PathCase { name: "k8s: Prefix matching is case-sensitive", paths: &[("/foo", Prefix)], request: "/FOO", expect: None },
    PathCase { name: "k8s: Exact / matches only /", paths: &[("/", Exact)], request: "/a", expect: None },
    // ImplementationSpecific: a plain string prefix, as an nginx location.
    PathCase { name: "ImplementationSpecific /foo matches /foobar (nginx location prefix)", paths: &[("/foo", Specific)], request: "/foobar", expect: Some(0) },
    PathCase { name: "ImplementationSpecific /foo/ does not match /foo", paths: &[("/foo/", Specific)], request: "/foo", expect: None },
    PathCase { name: "ImplementationSpecific empty path is / (ingress-nginx)", paths: &[("", Specific)], request: "/anything", expect: Some(0) },
    PathCase { name: "ImplementationSpecific loses to Prefix of equal length", paths: &[("/foo", Specific), ("/foo", Prefix)], request: "/foo/x", expect: Some(1) },
    PathCase { name: "longer ImplementationSpecific beats shorter Prefix", paths: &[("/foo", Prefix), ("/foo/ba", Specific)], request: "/foo/bar", expect: Some(1) },
    PathCase { name: "query string is not part of the path", paths: &[("/foo", Exact)], request: "/foo?x=1", expect: Some(0) },
];

#[test]
fn kubernetes_path_type_examples_table() {
    let mut failures = Vec::new();
    for case in KUBERNETES_PATH_EXAMPLES {
        let paths = case
            .paths
            .iter()
            .enumerate()
            .map(|(i, (p, t))| path(p, *t, &format!("svc{i}")))
            .collect();
        let table = build_clean(&[ingress("web", 0, vec![rule(Some("example.com"), paths)])]);
        let got = service_for(&table, "example.com", case.request).map(str::to_owned);
        let want = case.expect.map(|i| format!("svc{i}"));
        if got != want {
            failures.push(format!("{}: got {got:?}, want {want:?}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn kubernetes_path_no_match_uses_default_backend() {
    // "Prefix | /aaa | /ccc | No, uses default backend"
    let mut web = ingress(
        "web",
        0,
        vec![rule(Some("example.com"), vec![path("/aaa", Prefix, "aaa")])],
    );
    web.default_backend = Some(backend("fallback"));
    let table = build_clean(&[web]);
    assert_eq!(service_for(&table, "example.com", "/ccc"), Some("fallback"));
    assert_eq!(service_for(&table, "example.com", "/aaa"), Some("aaa"));
    let default = table.default_route().expect("catch-all route");
    assert_eq!(
        (
            default.host.as_deref(),
            default.path.as_str(),
            default.path_type
        ),
        (None, "/", Prefix)
    );
}

// ---------------------------------------------------------------------------------------
// Hosts: exact, then wildcard (one label), then host-less (Kubernetes "Hostname wildcards").

fn host_table() -> RoutingTable {
    let mut web = ingress(
        "web",
        0,
        vec![
            rule(Some("foo.example.com"), vec![path("/", Prefix, "exact")]),
            rule(Some("*.example.com"), vec![path("/", Prefix, "wildcard")]),
            rule(None, vec![path("/", Prefix, "any")]),
            rule(Some("api.example.com"), vec![path("/v1", Prefix, "api-v1")]),
            rule(
                Some("*.api.example.com"),
                vec![path("/v2", Prefix, "api-v2")],
            ),
        ],
    );
    web.default_backend = Some(backend("fallback"));
    build_clean(&[web])
}

#[test]
fn hosts_table() {
    let table = host_table();
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        ("exact host wins over wildcard", "foo.example.com", "/", Some("exact")),
        ("k8s wildcard: bar.foo.com matches *.foo.com (one label)", "bar.example.com", "/", Some("wildcard")),
        ("k8s wildcard: baz.bar.foo.com does not match *.foo.com (two labels)", "a.b.example.com", "/", Some("any")),
        ("k8s wildcard: foo.com does not match *.foo.com (no label)", "example.com", "/", Some("any")),
        ("empty first label does not match a wildcard", ".example.com", "/", Some("any")),
        ("unknown host goes to the host-less rules", "other.org", "/x", Some("any")),
        ("hosts compare case-insensitively", "FOO.Example.COM", "/", Some("exact")),
        ("a trailing dot is ignored (nginx)", "foo.example.com.", "/", Some("exact")),
        ("matched exact host without matching path: default backend, not host-less", "api.example.com", "/v2", Some("fallback")),
        ("matched wildcard host without matching path: default backend", "x.api.example.com", "/v1", Some("fallback")),
        ("matched wildcard host with matching path", "x.api.example.com", "/v2/y", Some("api-v2")),
    ];
    let mut failures = Vec::new();
    for (name, host, request, want) in cases {
        let got = service_for(&table, host, request);
        if got != *want {
            failures.push(format!(
                "{name}: {host}{request}: got {got:?}, want {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn hosts_without_default_backend_no_match_is_none() {
    let table = build_clean(&[ingress(
        "web",
        0,
        vec![
            rule(Some("api.example.com"), vec![path("/v1", Prefix, "api")]),
            rule(None, vec![path("/", Prefix, "any")]),
        ],
    )]);
    assert!(table.find("api.example.com", "/v2").is_none());
    assert_eq!(service_for(&table, "www.example.com", "/v2"), Some("any"));
    let empty = build_clean(&[]);
    assert!(empty.find("example.com", "/").is_none());
    assert_eq!(empty.routes().count(), 0);
}

#[test]
fn hosts_rule_host_is_lowercased_and_empty_host_is_any() {
    let table = build_clean(&[ingress(
        "web",
        0,
        vec![
            rule(Some("Shop.Example.com"), vec![path("/", Prefix, "shop")]),
            rule(Some(""), vec![path("/", Prefix, "any")]),
        ],
    )]);
    assert_eq!(service_for(&table, "shop.example.com", "/"), Some("shop"));
    assert_eq!(service_for(&table, "x.org", "/"), Some("any"));
    let hosts: BTreeSet<_> = table.routes().map(|r| r.host.clone()).collect();
    assert_eq!(
        hosts,
        BTreeSet::from([None, Some("shop.example.com".to_owned())])
    );
}

#[test]
fn hosts_rule_without_paths_claims_its_host() {
    // An ingress-nginx server exists for every rule host, even without paths: the host's
    // requests get the default backend, not the host-less rules.
    let mut web = ingress(
        "web",
        0,
        vec![
            rule(Some("empty.example.com"), vec![]),
            rule(None, vec![path("/", Prefix, "any")]),
        ],
    );
    web.default_backend = Some(backend("fallback"));
    let table = build_clean(&[web]);
    assert_eq!(
        service_for(&table, "empty.example.com", "/"),
        Some("fallback")
    );
}

#[test]
fn default_backend_serves_unknown_hosts_and_oldest_wins() {
    let mut young = ingress("young", 5, vec![]);
    young.default_backend = Some(backend("young-default"));
    let mut old = ingress(
        "old",
        1,
        vec![rule(Some("a.example.com"), vec![path("/a", Prefix, "a")])],
    );
    old.default_backend = Some(backend("old-default"));
    let (table, problems) = build(&[young, old]);
    assert_eq!(
        service_for(&table, "nothing.example.org", "/"),
        Some("old-default")
    );
    assert_eq!(
        table.default_route().unwrap().ingress,
        ("shop".to_owned(), "old".to_owned())
    );
    assert_eq!(problems.len(), 1);
    assert!(problem_of(&problems, "young").contains("already served by Ingress shop/old"));
    // The catch-all is listed last among routes().
    assert_eq!(
        table.routes().last().unwrap().backend.service,
        "old-default"
    );
}

// ---------------------------------------------------------------------------------------
// Merging primaries and conflicts.

#[test]
fn merge_several_ingresses_contribute_paths_to_one_host() {
    let table = build_clean(&[
        ingress(
            "cart",
            0,
            vec![rule(
                Some("shop.example.com"),
                vec![path("/cart", Prefix, "cart")],
            )],
        ),
        ingress(
            "search",
            1,
            vec![rule(
                Some("shop.example.com"),
                vec![path("/search", Prefix, "search")],
            )],
        ),
        ingress(
            "home",
            2,
            vec![rule(
                Some("shop.example.com"),
                vec![path("/", Prefix, "home")],
            )],
        ),
    ]);
    assert_eq!(
        service_for(&table, "shop.example.com", "/cart/1"),
        Some("cart")
    );
    assert_eq!(
        service_for(&table, "shop.example.com", "/search"),
        Some("search")
    );
    assert_eq!(
        service_for(&table, "shop.example.com", "/about"),
        Some("home")
    );
    let route = table.find("shop.example.com", "/search").unwrap();
    assert_eq!(route.ingress, ("shop".to_owned(), "search".to_owned()));
    assert_eq!(table.routes().count(), 3);
}

#[test]
fn merge_conflict_same_host_path_type_older_wins() {
    // Given in the slice youngest first: age decides, not order.
    let (table, problems) = build(&[
        ingress(
            "young",
            9,
            vec![rule(
                Some("shop.example.com"),
                vec![path("/", Prefix, "young")],
            )],
        ),
        ingress(
            "old",
            1,
            vec![rule(
                Some("shop.example.com"),
                vec![path("/", Prefix, "old")],
            )],
        ),
    ]);
    assert_eq!(service_for(&table, "shop.example.com", "/"), Some("old"));
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0],
        Problem {
            namespace: "shop".to_owned(),
            name: "young".to_owned(),
            message: "host shop.example.com path / (Prefix) is already served by Ingress shop/old"
                .to_owned(),
        }
    );
    assert_eq!(
        problems[0].to_string(),
        "Ingress shop/young: host shop.example.com path / (Prefix) is already served by Ingress shop/old"
    );
}

#[test]
fn merge_conflict_equal_timestamps_greater_name_wins_like_sort_ingress_slice() {
    // ingress-nginx sortIngressSlice: at equal CreationTimestamp, "ns/name" greater first.
    let (table, problems) = build(&[
        ingress(
            "alpha",
            3,
            vec![rule(None, vec![path("/", Prefix, "alpha")])],
        ),
        ingress("beta", 3, vec![rule(None, vec![path("/", Prefix, "beta")])]),
    ]);
    assert_eq!(service_for(&table, "x", "/"), Some("beta"));
    assert!(problem_of(&problems, "alpha").contains("already served by Ingress shop/beta"));
}

#[test]
fn merge_timestamps_compare_as_instants_not_strings() {
    let mut early = ingress(
        "early",
        0,
        vec![rule(None, vec![path("/", Prefix, "early")])],
    );
    early.created = "2024-05-01T11:30:00+02:00".to_owned(); // 09:30Z
    let mut late = ingress("late", 0, vec![rule(None, vec![path("/", Prefix, "late")])]);
    late.created = "2024-05-01T10:00:00.5Z".to_owned();
    let mut unknown = ingress(
        "unknown",
        0,
        vec![rule(None, vec![path("/", Prefix, "unknown")])],
    );
    unknown.created = String::new();
    let (table, problems) = build(&[unknown, late, early]);
    assert_eq!(service_for(&table, "x", "/"), Some("early"));
    assert_eq!(problems.len(), 2);
}

#[test]
fn merge_same_path_different_type_is_no_conflict() {
    let table = build_clean(&[
        ingress(
            "exact",
            0,
            vec![rule(Some("h"), vec![path("/foo", Exact, "exact")])],
        ),
        ingress(
            "prefix",
            1,
            vec![rule(Some("h"), vec![path("/foo", Prefix, "prefix")])],
        ),
    ]);
    assert_eq!(service_for(&table, "h", "/foo"), Some("exact"));
    assert_eq!(service_for(&table, "h", "/foo/x"), Some("prefix"));
}

#[test]
fn merge_problems_are_one_per_ingress() {
    let (_, problems) = build(&[
        ingress(
            "old",
            0,
            vec![rule(
                Some("h"),
                vec![path("/a", Prefix, "a"), path("/b", Prefix, "b")],
            )],
        ),
        ingress(
            "young",
            1,
            vec![rule(
                Some("h"),
                vec![path("/a", Prefix, "a2"), path("/b", Prefix, "b2")],
            )],
        ),
    ]);
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].message,
        "host h path /a (Prefix) is already served by Ingress shop/old; \
         host h path /b (Prefix) is already served by Ingress shop/old"
    );
}

// ---------------------------------------------------------------------------------------
// Canary Ingresses: merging into primaries.

fn primary() -> IngressInput {
    ingress(
        "web",
        0,
        vec![rule(
            Some("shop.example.com"),
            vec![path("/", Prefix, "stable")],
        )],
    )
}

fn canary_ingress(name: &str, minute: u32, p: PathInput) -> IngressInput {
    canary(
        ingress(name, minute, vec![rule(Some("shop.example.com"), vec![p])]),
        &[("canary-weight", "10")],
    )
}

#[test]
fn canary_merges_into_primary_with_same_host_path_type() {
    let table = build_clean(&[
        primary(),
        canary_ingress("web-canary", 1, path("/", Prefix, "preview")),
    ]);
    let route = table.find("shop.example.com", "/x").unwrap();
    assert_eq!(route.backend.service, "stable");
    assert_eq!(route.ingress, ("shop".to_owned(), "web".to_owned()));
    let merged = route.canary.as_ref().expect("canary merged");
    assert_eq!(merged.ingress, ("shop".to_owned(), "web-canary".to_owned()));
    assert_eq!(merged.backend.service, "preview");
    assert_eq!(merged.config.weight, 10);
    // A canary creates no routes of its own.
    assert_eq!(table.routes().count(), 1);
}

#[test]
fn canary_without_primary_serves_nothing() {
    let cases = [
        (
            "other path",
            "shop.example.com",
            path("/api", Prefix, "preview"),
            "host shop.example.com path /api (Prefix)",
        ),
        (
            "other pathType",
            "shop.example.com",
            path("/", Exact, "preview"),
            "host shop.example.com path / (Exact)",
        ),
        (
            "other host",
            "www.example.com",
            path("/", Prefix, "preview"),
            "host www.example.com path / (Prefix)",
        ),
    ];
    for (name, host, p, what) in cases {
        let lone = canary(
            ingress("lone", 1, vec![rule(Some(host), vec![p])]),
            &[("canary-weight", "100")],
        );
        let (table, problems) = build(&[primary(), lone]);
        assert_eq!(
            problem_of(&problems, "lone"),
            format!("canary has no primary Ingress for {what}: it serves nothing"),
            "{name}"
        );
        assert!(table.routes().all(|r| r.canary.is_none()), "{name}");
        // The canary's host is not claimed: its requests do not reach the canary backend.
        assert_ne!(service_for(&table, host, "/"), Some("preview"), "{name}");
    }
    // A host-less canary without a host-less primary.
    let lone = canary(
        ingress(
            "lone",
            1,
            vec![rule(None, vec![path("/", Prefix, "preview")])],
        ),
        &[],
    );
    let (_, problems) = build(&[primary(), lone]);
    assert_eq!(
        problem_of(&problems, "lone"),
        "canary has no primary Ingress for host * path / (Prefix): it serves nothing"
    );
}

#[test]
fn canary_two_for_one_primary_older_wins() {
    let (table, problems) = build(&[
        canary_ingress("second", 7, path("/", Prefix, "second")),
        primary(),
        canary_ingress("first", 3, path("/", Prefix, "first")),
    ]);
    let route = table.find("shop.example.com", "/").unwrap();
    assert_eq!(route.canary.as_ref().unwrap().backend.service, "first");
    assert_eq!(problems.len(), 1);
    assert!(
        problem_of(&problems, "second").contains("already has the canary of Ingress shop/first"),
        "{problems:?}"
    );
}

#[test]
fn canary_annotation_values_go_parse_bool() {
    for truthy in ["1", "t", "T", "TRUE", "true", "True"] {
        let c = annotate(
            canary_ingress("c", 1, path("/", Prefix, "preview")),
            &[("canary", truthy)],
        );
        let table = build_clean(&[primary(), c]);
        assert!(
            table
                .find("shop.example.com", "/")
                .unwrap()
                .canary
                .is_some(),
            "{truthy}"
        );
    }
    // Anything else: not a canary, so a second primary for the same path (a conflict).
    for falsy in ["false", "0", "yes", "on", "tRuE", " true", ""] {
        let c = annotate(
            canary_ingress("c", 1, path("/", Prefix, "preview")),
            &[("canary", falsy)],
        );
        let (table, problems) = build(&[primary(), c]);
        let route = table.find("shop.example.com", "/").unwrap();
        assert!(route.canary.is_none(), "{falsy}");
        assert_eq!(route.backend.service, "stable", "{falsy}");
        assert!(
            problem_of(&problems, "c").contains("already served by Ingress shop/web"),
            "{falsy}"
        );
    }
}

#[test]
fn canary_annotations_on_non_canary_ingress_are_ignored() {
    let other = annotate(
        ingress(
            "other",
            1,
            vec![rule(
                Some("shop.example.com"),
                vec![path("/other", Prefix, "other")],
            )],
        ),
        &[
            ("canary-weight", "100"),
            ("canary-by-header", "X-Canary"),
            ("canary-weight", "not a number"),
        ],
    );
    let table = build_clean(&[primary(), other]);
    let route = table.find("shop.example.com", "/other").unwrap();
    assert_eq!(route.backend.service, "other");
    assert!(route.canary.is_none());
}

#[test]
fn canary_default_backend_merges_into_catch_all() {
    let mut web = primary();
    web.default_backend = Some(backend("stable-default"));
    let mut c = canary(ingress("c", 1, vec![]), &[("canary-weight", "50")]);
    c.default_backend = Some(backend("preview-default"));
    let table = build_clean(&[web, c]);
    let route = table.find("unknown.example.org", "/").unwrap();
    assert_eq!(route.backend.service, "stable-default");
    assert_eq!(
        route.canary.as_ref().unwrap().backend.service,
        "preview-default"
    );

    let mut lone = canary(ingress("lone", 1, vec![]), &[]);
    lone.default_backend = Some(backend("preview-default"));
    let (_, problems) = build(&[primary(), lone]);
    assert!(problem_of(&problems, "lone").contains("serves nothing"));
}

#[test]
fn canary_on_hostless_and_wildcard_primaries() {
    let table = build_clean(&[
        ingress(
            "web",
            0,
            vec![
                rule(None, vec![path("/", Prefix, "any")]),
                rule(Some("*.example.com"), vec![path("/", Prefix, "wild")]),
            ],
        ),
        canary(
            ingress(
                "c1",
                1,
                vec![rule(None, vec![path("/", Prefix, "any-canary")])],
            ),
            &[],
        ),
        canary(
            ingress(
                "c2",
                2,
                vec![rule(
                    Some("*.Example.com"),
                    vec![path("/", Prefix, "wild-canary")],
                )],
            ),
            &[],
        ),
    ]);
    let any = table.find("x.org", "/").unwrap();
    assert_eq!(any.canary.as_ref().unwrap().backend.service, "any-canary");
    let wild = table.find("a.example.com", "/").unwrap();
    assert_eq!(wild.canary.as_ref().unwrap().backend.service, "wild-canary");
}

#[test]
fn canary_with_the_primary_backend_is_not_merged() {
    let (table, problems) = build(&[
        primary(),
        canary_ingress("same", 1, path("/", Prefix, "stable")),
    ]);
    assert!(
        table
            .find("shop.example.com", "/")
            .unwrap()
            .canary
            .is_none()
    );
    assert!(problem_of(&problems, "same").contains("nothing is split"));
}

#[test]
fn canary_partially_merged_reports_only_the_missing_path() {
    let c = canary(
        ingress(
            "c",
            1,
            vec![rule(
                Some("shop.example.com"),
                vec![path("/", Prefix, "preview"), path("/new", Exact, "preview")],
            )],
        ),
        &[],
    );
    let (table, problems) = build(&[primary(), c]);
    assert!(
        table
            .find("shop.example.com", "/")
            .unwrap()
            .canary
            .is_some()
    );
    assert_eq!(
        problem_of(&problems, "c"),
        "canary has no primary Ingress for host shop.example.com path /new (Exact): it serves nothing"
    );
}

// ---------------------------------------------------------------------------------------
// Invalid canary annotations: a Problem naming the annotation; the canary is not used.

#[test]
fn canary_invalid_annotations_table() {
    #[rustfmt::skip]
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("canary-weight", "abc")], "nginx.ingress.kubernetes.io/canary-weight"),
        (&[("canary-weight", "-1")], "nginx.ingress.kubernetes.io/canary-weight"),
        (&[("canary-weight", "101")], "nginx.ingress.kubernetes.io/canary-weight"),
        (&[("canary-weight", "5.5")], "nginx.ingress.kubernetes.io/canary-weight"),
        (&[("canary-weight", " 5")], "nginx.ingress.kubernetes.io/canary-weight"),
        (&[("canary-weight", "")], "nginx.ingress.kubernetes.io/canary-weight"),
        (&[("canary-weight", "1001"), ("canary-weight-total", "1000")], "nginx.ingress.kubernetes.io/canary-weight"),
        (&[("canary-weight-total", "0")], "nginx.ingress.kubernetes.io/canary-weight-total"),
        (&[("canary-weight-total", "-100")], "nginx.ingress.kubernetes.io/canary-weight-total"),
        (&[("canary-weight-total", "1e3")], "nginx.ingress.kubernetes.io/canary-weight-total"),
        (&[("canary-weight-total", "99999999999")], "nginx.ingress.kubernetes.io/canary-weight-total"),
        (&[("canary-by-header", "X-Canary"), ("canary-by-header-pattern", "(unclosed")], "nginx.ingress.kubernetes.io/canary-by-header-pattern"),
        (&[("canary-by-header", "X-Canary"), ("canary-by-header-pattern", "^(?<=a)b")], "nginx.ingress.kubernetes.io/canary-by-header-pattern"),
        (&[(STICKY_ANNOTATION, "cookie:")], STICKY_ANNOTATION),
        (&[(STICKY_ANNOTATION, "cookie")], STICKY_ANNOTATION),
        (&[(STICKY_ANNOTATION, "query:user")], STICKY_ANNOTATION),
        (&[(STICKY_ANNOTATION, "header:X User")], STICKY_ANNOTATION),
    ];
    for (pairs, annotation) in cases {
        let c = canary(canary_ingress("c", 1, path("/", Prefix, "preview")), pairs);
        assert!(
            CanaryConfig::from_annotations(&c.annotations).is_err(),
            "{pairs:?}"
        );
        let (table, problems) = build(&[primary(), c]);
        let message = problem_of(&problems, "c");
        assert!(message.starts_with(annotation), "{pairs:?}: {message}");
        assert!(
            message.ends_with("this canary is not used"),
            "{pairs:?}: {message}"
        );
        assert!(
            table
                .find("shop.example.com", "/")
                .unwrap()
                .canary
                .is_none(),
            "{pairs:?}"
        );
    }
}

#[test]
fn canary_invalid_canary_leaves_room_for_a_valid_one() {
    let bad = canary(
        canary_ingress("bad", 1, path("/", Prefix, "bad")),
        &[("canary-weight", "x")],
    );
    let good = canary_ingress("good", 2, path("/", Prefix, "good"));
    let (table, problems) = build(&[primary(), bad, good]);
    let route = table.find("shop.example.com", "/").unwrap();
    assert_eq!(route.canary.as_ref().unwrap().backend.service, "good");
    assert_eq!(problems.len(), 1);
}

#[test]
fn canary_annotation_message_names_annotation_and_value() {
    let err = CanaryConfig::from_annotations(&annotations(&[
        ("canary", "true"),
        ("canary-weight", "abc"),
    ]))
    .unwrap_err();
    assert_eq!(
        err,
        "nginx.ingress.kubernetes.io/canary-weight: \"abc\" is not an integer from 0 to 100 (the weight total)"
    );
}

// ---------------------------------------------------------------------------------------
// from_annotations: parsing as ingress-nginx's annotation parser does.

#[test]
fn from_annotations_none_unless_canary_true() {
    assert!(
        CanaryConfig::from_annotations(&BTreeMap::new())
            .unwrap()
            .is_none()
    );
    assert!(
        CanaryConfig::from_annotations(&annotations(&[
            ("canary", "false"),
            ("canary-weight", "50")
        ]))
        .unwrap()
        .is_none()
    );
    // The annotation is only recognised with ingress-nginx's prefix.
    let unprefixed = BTreeMap::from([("canary".to_owned(), "true".to_owned())]);
    assert!(
        CanaryConfig::from_annotations(&unprefixed)
            .unwrap()
            .is_none()
    );
}

#[test]
fn from_annotations_defaults() {
    let c = config(&[]);
    assert_eq!(c.by_header, None);
    assert_eq!(c.by_header_value, None);
    assert!(c.by_header_pattern.is_none());
    assert_eq!(c.by_cookie, None);
    assert_eq!((c.weight, c.weight_total), (0, 100));
    assert_eq!(c.sticky_by, None);
}

#[test]
fn from_annotations_strings_trimmed_and_empty_is_unset() {
    let c = config(&[
        ("canary-by-header", "  X-Canary "),
        ("canary-by-header-value", ""),
        ("canary-by-cookie", " "),
        ("canary-weight", "+7"),
        (STICKY_ANNOTATION, " cookie:uid "),
    ]);
    assert_eq!(c.by_header.as_deref(), Some("X-Canary"));
    assert_eq!(c.by_header_value, None);
    assert_eq!(c.by_cookie, None);
    assert_eq!(c.weight, 7, "Go's strconv.Atoi accepts a sign");
    assert_eq!(c.sticky_by, Some(StickyBy::Cookie("uid".to_owned())));
    let h = config(&[(STICKY_ANNOTATION, "header:X-User-Id")]);
    assert_eq!(h.sticky_by, Some(StickyBy::Header("X-User-Id".to_owned())));
}

#[test]
fn from_annotations_pattern_ignored_when_value_set() {
    // annotations.md: "Note that when canary-by-header-value is set this annotation will
    // be ignored." Even an invalid pattern is then no problem.
    let c = config(&[
        ("canary-by-header", "X-Canary"),
        ("canary-by-header-value", "v2"),
        ("canary-by-header-pattern", "(unclosed"),
    ]);
    assert!(c.by_header_pattern.is_none());
    assert_eq!(c.by_header_value.as_deref(), Some("v2"));
}

#[test]
fn from_annotations_weight_total_below_100_is_100_like_balancer_lua() {
    // balancer.lua: weightTotal is used only when > 100 (kubernetes/ingress-nginx#6338).
    let c = config(&[("canary-weight", "5"), ("canary-weight-total", "10")]);
    assert_eq!((c.weight, c.weight_total), (5, 100));
    assert!(c.choose(&Request::default(), 0.04));
    assert!(!c.choose(&Request::default(), 0.06));
    let c = config(&[("canary-weight", "50"), ("canary-weight-total", "10")]);
    assert_eq!((c.weight, c.weight_total), (50, 100));
    let c = config(&[("canary-weight-total", "1000")]);
    assert_eq!(c.weight_total, 1000);
}

// ---------------------------------------------------------------------------------------
// The canary decision: ingress-nginx annotations.md#canary and balancer.lua.

struct ChooseCase {
    name: &'static str,
    annotations: &'static [(&'static str, &'static str)],
    headers: &'static [(&'static str, &'static str)],
    cookies: &'static [(&'static str, &'static str)],
    random: f64,
    canary: bool,
}

const HEADER: (&str, &str) = ("canary-by-header", "X-Canary");
const COOKIE: (&str, &str) = ("canary-by-cookie", "canary");

#[rustfmt::skip]
const INGRESS_NGINX_CANARY_DOCS: &[ChooseCase] = &[
    // canary-by-header: "always" -> canary, "never" -> never, other values ignored.
    ChooseCase { name: "by-header always routes to canary (weight 0)", annotations: &[HEADER], headers: &[("X-Canary", "always")], cookies: &[], random: 0.5, canary: true },
    ChooseCase { name: "by-header name is case-insensitive", annotations: &[HEADER], headers: &[("x-canary", "always")], cookies: &[], random: 0.5, canary: true },
    ChooseCase { name: "by-header value is case-sensitive (Always is ignored)", annotations: &[HEADER], headers: &[("X-Canary", "Always")], cookies: &[], random: 0.5, canary: false },
    ChooseCase { name: "by-header never never routes to canary (weight 100)", annotations: &[HEADER, ("canary-weight", "100")], headers: &[("X-Canary", "never")], cookies: &[], random: 0.0, canary: false },
    ChooseCase { name: "by-header other value is ignored: weight decides (100)", annotations: &[HEADER, ("canary-weight", "100")], headers: &[("X-Canary", "yes")], cookies: &[], random: 0.5, canary: true },
    ChooseCase { name: "by-header other value is ignored: weight decides (0)", annotations: &[HEADER], headers: &[("X-Canary", "yes")], cookies: &[], random: 0.5, canary: false },
    ChooseCase { name: "by-header absent: weight decides", annotations: &[HEADER, ("canary-weight", "100")], headers: &[], cookies: &[], random: 0.5, canary: true },
    // canary-by-header-value: the exact value routes to canary; anything else falls through.
    ChooseCase { name: "by-header-value match routes to canary", annotations: &[HEADER, ("canary-by-header-value", "v2")], headers: &[("X-Canary", "v2")], cookies: &[], random: 0.5, canary: true },
    ChooseCase { name: "by-header-value other value falls through to weight 0", annotations: &[HEADER, ("canary-by-header-value", "v2")], headers: &[("X-Canary", "v3")], cookies: &[], random: 0.5, canary: false },
    ChooseCase { name: "by-header-value: always is not special", annotations: &[HEADER, ("canary-by-header-value", "v2")], headers: &[("X-Canary", "always")], cookies: &[], random: 0.5, canary: false },
    ChooseCase { name: "by-header-value: never is not special (falls through to weight 100)", annotations: &[HEADER, ("canary-by-header-value", "v2"), ("canary-weight", "100")], headers: &[("X-Canary", "never")], cookies: &[], random: 0.5, canary: true },
    ChooseCase { name: "by-header-value mismatch falls through to cookie always", annotations: &[HEADER, ("canary-by-header-value", "v2"), COOKIE], headers: &[("X-Canary", "v3")], cookies: &[("canary", "always")], random: 0.5, canary: true },
    ChooseCase { name: "by-header-value without by-header has no effect", annotations: &[("canary-by-header-value", "v2")], headers: &[("X-Canary", "v2")], cookies: &[], random: 0.5, canary: false },
    // canary-by-header-pattern: PCRE-style unanchored match; ignored when value is set.
    ChooseCase { name: "by-header-pattern match routes to canary", annotations: &[HEADER, ("canary-by-header-pattern", "^v2|beta")], headers: &[("X-Canary", "v2.1")], cookies: &[], random: 0.5, canary: true },
    ChooseCase { name: "by-header-pattern is an unanchored search", annotations: &[HEADER, ("canary-by-header-pattern", "beta")], headers: &[("X-Canary", "x-beta-y")], cookies: &[], random: 0.5, canary: true },
    ChooseCase { name: "by-header-pattern anchored mismatch falls through", annotations: &[HEADER, ("canary-by-header-pattern", "^beta$")], headers: &[("X-Canary", "x-beta-y")], cookies: &[], random: 0.5, canary: false },
    ChooseCase { name: "by-header-pattern (?i) case-insensitive", annotations: &[HEADER, ("canary-by-header-pattern", "(?i)^BETA$")], headers: &[("X-Canary", "beta")], cookies: &[], random: 0.5, canary: true },
    ChooseCase { name: "by-header-pattern: never is not special (falls through to weight 100)", annotations: &[HEADER, ("canary-by-header-pattern", "^v2$"), ("canary-weight", "100")], headers: &[("X-Canary", "never")], cookies: &[], random: 0.5, canary: true },
    ChooseCase { name: "by-header-pattern ignored when by-header-value is set", annotations: &[HEADER, ("canary-by-header-value", "v2"), ("canary-by-header-pattern", ".*")], headers: &[("X-Canary", "v3")], cookies: &[], random: 0.5, canary: false },
    // canary-by-cookie: "always" / "never" / other values ignored.
    ChooseCase { name: "by-cookie always routes to canary", annotations: &[COOKIE], headers: &[], cookies: &[("canary", "always")], random: 0.5, canary: true },
    ChooseCase { name: "by-cookie never never routes to canary (weight 100)", annotations: &[COOKIE, ("canary-weight", "100")], headers: &[], cookies: &[("canary", "never")], random: 0.0, canary: false },
    ChooseCase { name: "by-cookie other value is ignored: weight decides", annotations: &[COOKIE, ("canary-weight", "100")], headers: &[], cookies: &[("canary", "1")], random: 0.5, canary: true },
    ChooseCase { name: "by-cookie absent: weight decides", annotations: &[COOKIE], headers: &[], cookies: &[], random: 0.0, canary: false },
    // Precedence: canary-by-header -> canary-by-cookie -> canary-weight.
    ChooseCase { name: "precedence: header always beats cookie never", annotations: &[HEADER, COOKIE], headers: &[("X-Canary", "always")], cookies: &[("canary", "never")], random: 0.5, canary: true },
    ChooseCase { name: "precedence: header never beats cookie always", annotations: &[HEADER, COOKIE], headers: &[("X-Canary", "never")], cookies: &[("canary", "always")], random: 0.5, canary: false },
    ChooseCase { name: "precedence: header ignored value, cookie always decides", annotations: &[HEADER, COOKIE], headers: &[("X-Canary", "maybe")], cookies: &[("canary", "always")], random: 0.5, canary: true },
    ChooseCase { name: "precedence: header never beats weight 100", annotations: &[HEADER, COOKIE, ("canary-weight", "100")], headers: &[("X-Canary", "never")], cookies: &[], random: 0.0, canary: false },
    ChooseCase { name: "precedence: cookie never beats weight 100", annotations: &[HEADER, COOKIE, ("canary-weight", "100")], headers: &[], cookies: &[("canary", "never")], random: 0.0, canary: false },
    ChooseCase { name: "precedence: header always beats weight 0", annotations: &[HEADER, ("canary-weight", "0")], headers: &[("X-Canary", "always")], cookies: &[], random: 0.99, canary: true },
    // canary-weight: 0 never, 100 always, otherwise random * total < weight.
    ChooseCase { name: "weight 0 never (random 0)", annotations: &[("canary-weight", "0")], headers: &[], cookies: &[], random: 0.0, canary: false },
    ChooseCase { name: "weight 100 always (random just below 1)", annotations: &[("canary-weight", "100")], headers: &[], cookies: &[], random: 0.999_999_999, canary: true },
    ChooseCase { name: "weight 30: random 0.29 is canary", annotations: &[("canary-weight", "30")], headers: &[], cookies: &[], random: 0.29, canary: true },
    ChooseCase { name: "weight 30: random 0.30 is primary", annotations: &[("canary-weight", "30")], headers: &[], cookies: &[], random: 0.30, canary: false },
    ChooseCase { name: "weight-total 1000: weight 5, random 0.004 is canary", annotations: &[("canary-weight", "5"), ("canary-weight-total", "1000")], headers: &[], cookies: &[], random: 0.004, canary: true },
    ChooseCase { name: "weight-total 1000: weight 5, random 0.005 is primary", annotations: &[("canary-weight", "5"), ("canary-weight-total", "1000")], headers: &[], cookies: &[], random: 0.005, canary: false },
    ChooseCase { name: "weight-total 1000: weight 1000 always", annotations: &[("canary-weight", "1000"), ("canary-weight-total", "1000")], headers: &[], cookies: &[], random: 0.999_999_999, canary: true },
    ChooseCase { name: "weight-total 1000: weight 100 is 10% (random 0.2 is primary)", annotations: &[("canary-weight", "100"), ("canary-weight-total", "1000")], headers: &[], cookies: &[], random: 0.2, canary: false },
];

#[test]
fn ingress_nginx_canary_decision_table() {
    let mut failures = Vec::new();
    for case in INGRESS_NGINX_CANARY_DOCS {
        let c = config(case.annotations);
        let mut request = Request::default();
        for (name, value) in case.headers {
            request = request.header(name, value);
        }
        for (name, value) in case.cookies {
            request = request.cookie(name, value);
        }
        let got = c.choose(&request, case.random);
        if got != case.canary {
            failures.push(format!(
                "{}: got canary={got}, want {}",
                case.name, case.canary
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn weight_share_matches_weight_over_total() {
    // Over a uniform grid of random numbers, the canary share is weight / total.
    for (weight, total, expected) in [
        ("0", "100", 0),
        ("1", "100", 100),
        ("20", "100", 2000),
        ("50", "100", 5000),
        ("100", "100", 10_000),
        ("5", "1000", 50),
        ("999", "1000", 9990),
    ] {
        let c = config(&[("canary-weight", weight), ("canary-weight-total", total)]);
        let hits = (0..10_000)
            .filter(|i| c.choose(&Request::default(), (f64::from(*i) + 0.5) / 10_000.0))
            .count();
        assert_eq!(hits, expected, "weight {weight}/{total}");
    }
}

#[test]
fn weight_random_out_of_range_is_clamped() {
    let c = config(&[("canary-weight", "50")]);
    assert!(c.choose(&Request::default(), -1.0));
    assert!(!c.choose(&Request::default(), 1.0));
    assert!(!c.choose(&Request::default(), f64::NAN));
}

// ---------------------------------------------------------------------------------------
// Sticky cohorts (Switchyard extension: switchyard.dev/canary-sticky-by).

/// Deterministic pseudo-random user ids (an LCG), so the property test is reproducible.
fn user_ids(count: usize) -> Vec<String> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..count)
        .map(|i| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            if i % 2 == 0 {
                format!("user-{i}")
            } else {
                format!("{:016x}", state)
            }
        })
        .collect()
}

fn cohort(weight: &str, total: &str, users: &[String]) -> BTreeSet<String> {
    let c = config(&[
        ("canary-weight", weight),
        ("canary-weight-total", total),
        (STICKY_ANNOTATION, "cookie:uid"),
    ]);
    users
        .iter()
        .filter(|u| {
            let request = Request::default().cookie("uid", u);
            // The caller's random number is irrelevant for a sticky user.
            let decision = c.choose(&request, 0.0);
            assert_eq!(
                decision,
                c.choose(&request, 0.999),
                "sticky decision for {u}"
            );
            decision
        })
        .cloned()
        .collect()
}

#[test]
fn sticky_cohort_at_5_percent_is_subset_of_20_percent() {
    let users = user_ids(20_000);
    let at5 = cohort("5", "100", &users);
    let at20 = cohort("20", "100", &users);
    assert!(
        at5.is_subset(&at20),
        "{} users at 5% left the canary at 20%",
        at5.difference(&at20).count()
    );
    // The cohorts have about the configured size.
    let share = |set: &BTreeSet<String>| set.len() as f64 / users.len() as f64;
    assert!(
        (0.04..0.06).contains(&share(&at5)),
        "5% cohort is {}",
        share(&at5)
    );
    assert!(
        (0.18..0.22).contains(&share(&at20)),
        "20% cohort is {}",
        share(&at20)
    );
    // The same shares of a 1000 total give the same cohorts.
    assert_eq!(cohort("50", "1000", &users), at5);
    assert_eq!(cohort("200", "1000", &users), at20);
}

#[test]
fn sticky_cohorts_grow_monotonically_with_weight() {
    let users = user_ids(2_000);
    let mut previous = BTreeSet::new();
    for weight in 0..=100 {
        let current = cohort(&weight.to_string(), "100", &users);
        assert!(
            previous.is_subset(&current),
            "weight {weight} dropped users"
        );
        previous = current;
    }
    assert_eq!(previous.len(), users.len(), "weight 100 is everyone");
}

#[test]
fn sticky_by_header_and_fallback_to_random() {
    let c = config(&[
        ("canary-weight", "50"),
        (STICKY_ANNOTATION, "header:X-User"),
    ]);
    let user = (0..100)
        .map(|i| format!("u{i}"))
        .find(|u| sticky_cohort(u) < 0.5)
        .expect("some user in the lower half");
    let request = Request::default().header("x-user", &user);
    assert!(
        c.choose(&request, 0.99),
        "sticky user stays in the canary whatever the random"
    );
    // Without the header (or with an empty value), the caller's random number decides.
    assert!(c.choose(&Request::default(), 0.1));
    assert!(!c.choose(&Request::default(), 0.9));
    assert!(!c.choose(&Request::default().header("X-User", ""), 0.9));
}

#[test]
fn sticky_does_not_override_header_and_cookie_rules() {
    let c = config(&[
        HEADER,
        COOKIE,
        ("canary-weight", "100"),
        (STICKY_ANNOTATION, "cookie:uid"),
    ]);
    let request = Request::default()
        .cookie("uid", "someone")
        .header("X-Canary", "never");
    assert!(!c.choose(&request, 0.0));
    let request = Request::default()
        .cookie("uid", "someone")
        .cookie("canary", "never");
    assert!(!c.choose(&request, 0.0));
    let c = config(&[
        HEADER,
        ("canary-weight", "0"),
        (STICKY_ANNOTATION, "cookie:uid"),
    ]);
    let request = Request::default()
        .cookie("uid", "someone")
        .header("X-Canary", "always");
    assert!(c.choose(&request, 0.9));
}

#[test]
fn sticky_cohort_is_stable_golden_values() {
    // Changing the hash reshuffles every user's cohort: these values pin it.
    let golden: &[(&str, f64)] = &[
        ("", GOLDEN_EMPTY),
        ("user-1", GOLDEN_USER_1),
        ("alice@example.com", GOLDEN_ALICE),
    ];
    for (value, expected) in golden {
        assert_eq!(sticky_cohort(value), *expected, "{value:?}");
    }
}

// Computed independently (FNV-1a 64, MurmurHash3 fmix64, top 53 bits / 2^53).
const GOLDEN_EMPTY: f64 = 0.93676944839044;
const GOLDEN_USER_1: f64 = 0.2563932327962135;
const GOLDEN_ALICE: f64 = 0.3277084670198924;

// ---------------------------------------------------------------------------------------
// Routes listing.

#[test]
fn routes_list_every_path_with_its_canary() {
    let table = build_clean(&[
        ingress(
            "web",
            0,
            vec![rule(
                Some("shop.example.com"),
                vec![path("/", Prefix, "stable"), path("", Specific, "legacy")],
            )],
        ),
        canary_ingress("web-canary", 1, path("/", Prefix, "preview")),
    ]);
    let listed: Vec<(Option<String>, String, PathType, String, bool)> = table
        .routes()
        .map(|r: &Route| {
            (
                r.host.clone(),
                r.path.clone(),
                r.path_type,
                r.backend.service.clone(),
                r.canary.is_some(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (
                Some("shop.example.com".to_owned()),
                "/".to_owned(),
                Prefix,
                "stable".to_owned(),
                true
            ),
            (
                Some("shop.example.com".to_owned()),
                "/".to_owned(),
                Specific,
                "legacy".to_owned(),
                false
            ),
        ]
    );
    assert_eq!(backend("x").to_string(), "shop/x:80");
    assert_eq!(ServicePortRef::Name("http".to_owned()).to_string(), "http");
    assert_eq!(PathType::parse("ImplementationSpecific"), Some(Specific));
    assert_eq!(PathType::parse("prefix"), None);
}
