//! Ingress routing as a pure function of the Ingresses: which [`Route`] serves a host and
//! path, and whether a request goes to the route's canary.
//!
//! The rules follow the Kubernetes Ingress specification (networking.k8s.io/v1, "Path
//! types", "Multiple matches", "Hostname wildcards") and ingress-nginx's canary
//! annotations (`docs/user-guide/nginx-configuration/annotations.md#canary`, and the
//! decision in `rootfs/etc/nginx/lua/balancer.lua`, `route_to_alternative_balancer`):
//!
//! - **Hosts.** An exact host rule wins; then a wildcard `*.example.com`, which matches
//!   exactly one more DNS label (`a.example.com`, not `a.b.example.com`, not
//!   `example.com`); then the rules without a host, which match any host. Hosts compare
//!   case-insensitively. Like an ingress-nginx `server` block, a matched host only knows its
//!   own paths: when none of them matches, the request goes to the default backend, not to
//!   the wildcard or host-less rules.
//! - **Paths.** The longest matching path wins; at equal length `Exact` beats `Prefix`,
//!   which beats `ImplementationSpecific`. `Exact` matches the path exactly. `Prefix`
//!   matches element-wise split by `/` (`/foo` matches `/foo`, `/foo/`, `/foo/bar`, not
//!   `/foobar`), ignoring a trailing `/` of the Ingress path, and `/` matches everything.
//!   `ImplementationSpecific` is a plain string prefix, as an nginx `location` is. An empty
//!   Ingress path is `/`, as in ingress-nginx. The length of a `Prefix` path is taken
//!   without its trailing `/` (`/` counts 1), so `Prefix /foo/` and `Exact /foo` tie and
//!   the `Exact` path wins.
//! - **Merging.** Several Ingresses contribute paths to the same host. When two
//!   non-canary Ingresses declare the same host, path and pathType, the older one (by
//!   `creationTimestamp`; at equal timestamps the greater `namespace/name`, as
//!   ingress-nginx's `sortIngressSlice` orders them) serves it and the other gets a
//!   [`Problem`]. The oldest non-canary Ingress with a `spec.defaultBackend` provides the
//!   catch-all route (no host, `/`, `Prefix`) for requests that match nothing.
//! - **Canaries.** An Ingress whose `canary` annotation is true (Go's `strconv.ParseBool`)
//!   creates no routes of its own: each of its paths merges into the primary route with
//!   the same host, path and pathType, and its `spec.defaultBackend` merges into the
//!   catch-all route. A canary path without a primary serves nothing; of two canaries for
//!   one primary, the older is used (ingress-nginx uses `alternative_backends[1]`). Both
//!   are [`Problem`]s.
//! - **The canary decision** ([`CanaryConfig::choose`]): `canary-by-header`, then
//!   `canary-by-cookie`, then `canary-weight`, with ingress-nginx's exact fall-through
//!   rules. The randomness is the caller's; Switchyard's `switchyard.dev/canary-sticky-by`
//!   replaces it with a stable hash of a cookie or header (see [`sticky_cohort`]).
//!
//! Where Switchyard is stricter than ingress-nginx it says so: an invalid `canary-weight`
//! or `canary-weight-total` (ingress-nginx logs a warning and uses 0 or 100), a weight
//! above the total (ingress-nginx sends everything to the canary), a negative weight, an
//! invalid `canary-by-header-pattern` (ingress-nginx drops it) or `canary-sticky-by` make
//! the canary unused, with a [`Problem`] naming the annotation.
//!
//! This module does no I/O: no sockets, no clock, no randomness.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use regex::Regex;

/// ingress-nginx's annotation prefix (its `--annotations-prefix` default).
pub const ANNOTATION_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// Switchyard's sticky-canary annotation: `cookie:NAME` or `header:NAME`.
pub const STICKY_ANNOTATION: &str = "switchyard.dev/canary-sticky-by";

/// The weight total when `canary-weight-total` is absent, and the smallest one
/// ingress-nginx honours.
const DEFAULT_WEIGHT_TOTAL: u32 = 100;

/// How an Ingress path matches request paths (`spec.rules[].http.paths[].pathType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathType {
    /// Matches the request path exactly (case-sensitive).
    Exact,
    /// Matches element-wise by `/`-separated path elements.
    Prefix,
    /// Left to the controller: here, a plain string prefix, as an nginx `location`.
    ImplementationSpecific,
}

impl PathType {
    /// The name as written in an Ingress.
    pub fn as_str(self) -> &'static str {
        match self {
            PathType::Exact => "Exact",
            PathType::Prefix => "Prefix",
            PathType::ImplementationSpecific => "ImplementationSpecific",
        }
    }

    /// Parses the name as written in an Ingress (case-sensitive, as the API server is).
    pub fn parse(name: &str) -> Option<PathType> {
        match name {
            "Exact" => Some(PathType::Exact),
            "Prefix" => Some(PathType::Prefix),
            "ImplementationSpecific" => Some(PathType::ImplementationSpecific),
            _ => None,
        }
    }

    /// At equal path length, the lower rank wins.
    fn rank(self) -> u8 {
        match self {
            PathType::Exact => 0,
            PathType::Prefix => 1,
            PathType::ImplementationSpecific => 2,
        }
    }
}

impl fmt::Display for PathType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backend's Service port: `port.number` or `port.name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServicePortRef {
    /// `service.port.number`.
    Number(u16),
    /// `service.port.name`.
    Name(String),
}

impl fmt::Display for ServicePortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServicePortRef::Number(number) => write!(f, "{number}"),
            ServicePortRef::Name(name) => f.write_str(name),
        }
    }
}

/// Where a route sends requests: a Service port in the Ingress's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend {
    /// The namespace of the Ingress (and so of the Service).
    pub namespace: String,
    /// `service.name`.
    pub service: String,
    /// `service.port`.
    pub port: ServicePortRef,
}

impl fmt::Display for Backend {
    /// `namespace/service:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.service, self.port)
    }
}

/// One `spec.rules[].http.paths[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInput {
    /// The path; empty means `/`, as in ingress-nginx.
    pub path: String,
    /// The pathType.
    pub path_type: PathType,
    /// The backend (Service backends only; the caller skips resource backends).
    pub backend: Backend,
}

/// One `spec.rules[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleInput {
    /// The host: exact (`foo.example.com`), wildcard (`*.example.com`), or `None` (or
    /// empty) for any host.
    pub host: Option<String>,
    /// Its paths; a rule without paths still claims its host, as an ingress-nginx `server`
    /// does, so that host's requests go to the default backend.
    pub paths: Vec<PathInput>,
}

/// An Ingress as routing needs it. The caller has already filtered by ingress class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressInput {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `spec.rules`.
    pub rules: Vec<RuleInput>,
    /// `spec.defaultBackend`.
    pub default_backend: Option<Backend>,
    /// `metadata.creationTimestamp` (RFC 3339): the older Ingress wins conflicts, as in
    /// ingress-nginx. An unparsable or empty timestamp counts as the youngest.
    pub created: String,
}

/// Where [`STICKY_ANNOTATION`] takes the user's identity from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StickyBy {
    /// `cookie:NAME`: the value of this cookie.
    Cookie(String),
    /// `header:NAME`: the value of this request header.
    Header(String),
}

/// The canary annotations of one canary Ingress, parsed.
#[derive(Debug, Clone)]
pub struct CanaryConfig {
    /// `canary-by-header`: the header that can force the decision.
    pub by_header: Option<String>,
    /// `canary-by-header-value`: the header value that sends to the canary.
    pub by_header_value: Option<String>,
    /// `canary-by-header-pattern`: a regex (unanchored search) on the header value that
    /// sends to the canary; `None` when `canary-by-header-value` is set, which overrides
    /// it.
    pub by_header_pattern: Option<Regex>,
    /// `canary-by-cookie`: the cookie that can force the decision.
    pub by_cookie: Option<String>,
    /// `canary-weight`: requests out of [`weight_total`](Self::weight_total) sent to the
    /// canary; 0 when absent.
    pub weight: u32,
    /// The divisor of [`weight`](Self::weight): `canary-weight-total`, but never below 100,
    /// because ingress-nginx ignores totals below 100 (`balancer.lua`: `weightTotal > 100`,
    /// kubernetes/ingress-nginx#6338).
    pub weight_total: u32,
    /// `switchyard.dev/canary-sticky-by`: the weight step hashes this cookie or header
    /// instead of using the caller's random number.
    pub sticky_by: Option<StickyBy>,
}

/// A canary merged into a primary route.
#[derive(Debug, Clone)]
pub struct Canary {
    /// The canary Ingress: (namespace, name).
    pub ingress: (String, String),
    /// The canary's backend.
    pub backend: Backend,
    /// Its decision rules.
    pub config: CanaryConfig,
}

/// One routed host and path.
#[derive(Debug, Clone)]
pub struct Route {
    /// The Ingress that declared it: (namespace, name).
    pub ingress: (String, String),
    /// The host (lowercase), `None` for any host.
    pub host: Option<String>,
    /// The Ingress path (`/` for an empty one).
    pub path: String,
    /// The pathType.
    pub path_type: PathType,
    /// The primary backend.
    pub backend: Backend,
    /// The canary merged into this route, if any.
    pub canary: Option<Canary>,
}

impl Route {
    /// Whether this route's path matches a request path (without query), by its
    /// pathType.
    pub fn matches(&self, request_path: &str) -> bool {
        match self.path_type {
            PathType::Exact => request_path == self.path,
            PathType::Prefix => {
                let prefix = self.path.trim_end_matches('/');
                prefix.is_empty()
                    || request_path
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
            PathType::ImplementationSpecific => request_path.starts_with(self.path.as_str()),
        }
    }

    /// The length "longest matching path" compares.
    fn match_len(&self) -> usize {
        match self.path_type {
            PathType::Prefix => self.path.trim_end_matches('/').len().max(1),
            PathType::Exact | PathType::ImplementationSpecific => self.path.len(),
        }
    }
}

/// An Ingress that could not be (fully) used; at most one per Ingress, its messages
/// joined by `; `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The Ingress's namespace.
    pub namespace: String,
    /// The Ingress's name.
    pub name: String,
    /// What is not used and why.
    pub message: String,
}

impl fmt::Display for Problem {
    /// `Ingress namespace/name: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Ingress {}/{}: {}",
            self.namespace, self.name, self.message
        )
    }
}

/// The routes of a set of Ingresses, indexed for [`find`](RoutingTable::find). Immutable
/// once built: the proxy swaps whole tables.
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    /// Every route; the catch-all, if any, is last.
    routes: Vec<Route>,
    /// Exact host -> indices into `routes`, best first.
    exact: foldhash::HashMap<String, Vec<usize>>,
    /// Wildcard host without its `*.` -> indices, best first.
    wildcard: foldhash::HashMap<String, Vec<usize>>,
    /// Host-less rules' indices, best first.
    any: Vec<usize>,
    /// The catch-all route (`spec.defaultBackend`).
    default: Option<usize>,
}

/// What a request offers the canary decision.
pub trait RequestView {
    /// The value of a request header, by case-insensitive name (as nginx's `$http_NAME`);
    /// `None` when the request does not carry it.
    fn header(&self, name: &str) -> Option<&str>;
    /// The value of a cookie from the `Cookie` header (as nginx's `$cookie_NAME`); `None`
    /// when the request does not carry it.
    fn cookie(&self, name: &str) -> Option<&str>;
}

/// Key of a primary route: (host, path, pathType).
type RouteKey = (Option<String>, String, PathType);

impl RoutingTable {
    /// Builds the table from the Ingresses (already filtered by class). Every Ingress that
    /// could not be (fully) used gets one [`Problem`], in input order.
    pub fn build(ingresses: &[IngressInput]) -> (RoutingTable, Vec<Problem>) {
        let mut problems: Vec<Vec<String>> = vec![Vec::new(); ingresses.len()];

        // ingress-nginx's sortIngressSlice: older first; at equal timestamps the greater
        // "namespace/name" first.
        let created: Vec<Option<i128>> = ingresses
            .iter()
            .map(|ing| parse_rfc3339(&ing.created))
            .collect();
        let mut order: Vec<usize> = (0..ingresses.len()).collect();
        order.sort_by(|&a, &b| {
            let age = match (created[a], created[b]) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            };
            age.then_with(|| {
                let (x, y) = (&ingresses[a], &ingresses[b]);
                (y.namespace.as_str(), y.name.as_str())
                    .cmp(&(x.namespace.as_str(), x.name.as_str()))
            })
        });

        let mut primaries = Vec::new();
        let mut canaries = Vec::new();
        for &i in &order {
            match CanaryConfig::from_annotations(&ingresses[i].annotations) {
                Ok(None) => primaries.push(i),
                Ok(Some(config)) => canaries.push((i, config)),
                Err(message) => problems[i].push(format!("{message}: this canary is not used")),
            }
        }

        let mut table = RoutingTable::default();
        let mut by_key: HashMap<RouteKey, usize> = HashMap::new();
        let mut default: Option<(usize, Backend)> = None;
        for &i in &primaries {
            let ing = &ingresses[i];
            for rule in &ing.rules {
                let host = normalize_host(rule.host.as_deref());
                // The rule claims its host even without paths (an ingress-nginx server).
                table.host_list(host.as_deref());
                for path in &rule.paths {
                    let path_text = normalize_path(&path.path);
                    let key = (host.clone(), path_text.clone(), path.path_type);
                    if let Some(&existing) = by_key.get(&key) {
                        let owner = &table.routes[existing].ingress;
                        problems[i].push(format!(
                            "host {} path {} ({}) is already served by Ingress {}/{}",
                            host_display(host.as_deref()),
                            path_text,
                            path.path_type,
                            owner.0,
                            owner.1
                        ));
                        continue;
                    }
                    let index = table.routes.len();
                    table.routes.push(Route {
                        ingress: (ing.namespace.clone(), ing.name.clone()),
                        host: host.clone(),
                        path: path_text,
                        path_type: path.path_type,
                        backend: path.backend.clone(),
                        canary: None,
                    });
                    table.host_list(host.as_deref()).push(index);
                    by_key.insert(key, index);
                }
            }
            if let Some(backend) = &ing.default_backend {
                match &default {
                    None => default = Some((i, backend.clone())),
                    Some((owner, _)) => problems[i].push(format!(
                        "spec.defaultBackend is not used: the default backend is already served \
                         by Ingress {}/{}",
                        ingresses[*owner].namespace, ingresses[*owner].name
                    )),
                }
            }
        }
        if let Some((owner, backend)) = default {
            table.default = Some(table.routes.len());
            table.routes.push(Route {
                ingress: (
                    ingresses[owner].namespace.clone(),
                    ingresses[owner].name.clone(),
                ),
                host: None,
                path: "/".to_owned(),
                path_type: PathType::Prefix,
                backend,
                canary: None,
            });
        }

        for (i, config) in canaries {
            let ing = &ingresses[i];
            let id = (ing.namespace.clone(), ing.name.clone());
            let targets = ing.rules.iter().flat_map(|rule| {
                let host = normalize_host(rule.host.as_deref());
                rule.paths.iter().map(move |path| {
                    let key = (host.clone(), normalize_path(&path.path), path.path_type);
                    (key, &path.backend)
                })
            });
            for ((host, path, path_type), backend) in targets {
                let what = format!(
                    "host {} path {path} ({path_type})",
                    host_display(host.as_deref())
                );
                let Some(&index) = by_key.get(&(host, path, path_type)) else {
                    problems[i].push(format!(
                        "canary has no primary Ingress for {what}: it serves nothing"
                    ));
                    continue;
                };
                if let Some(message) =
                    merge_canary(&mut table.routes[index], &id, backend, &config, &what)
                {
                    problems[i].push(message);
                }
            }
            if let Some(backend) = &ing.default_backend {
                let what = "the default backend (spec.defaultBackend)";
                match table.default {
                    None => problems[i].push(
                        "canary spec.defaultBackend has no primary Ingress with a \
                         spec.defaultBackend: it serves nothing"
                            .to_owned(),
                    ),
                    Some(index) => {
                        if let Some(message) =
                            merge_canary(&mut table.routes[index], &id, backend, &config, what)
                        {
                            problems[i].push(message);
                        }
                    }
                }
            }
        }

        let routes = &table.routes;
        let best_first = |list: &mut Vec<usize>| {
            // Stable: among equals, the older Ingress's route (added first) wins.
            list.sort_by_key(|&i| {
                let route = &routes[i];
                (std::cmp::Reverse(route.match_len()), route.path_type.rank())
            });
        };
        table.exact.values_mut().for_each(best_first);
        table.wildcard.values_mut().for_each(best_first);
        best_first(&mut table.any);

        let problems = problems
            .into_iter()
            .enumerate()
            .filter(|(_, messages)| !messages.is_empty())
            .map(|(i, messages)| Problem {
                namespace: ingresses[i].namespace.clone(),
                name: ingresses[i].name.clone(),
                message: messages.join("; "),
            })
            .collect();
        (table, problems)
    }

    /// The route for a request: `host` lowercase and without port, `path` the request
    /// path as received (a `?query` is ignored). Falls back to the catch-all route of
    /// `spec.defaultBackend`; `None` when nothing matches and there is none.
    pub fn find(&self, host: &str, path: &str) -> Option<&Route> {
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        let path = if path.is_empty() { "/" } else { path };
        let host = host.strip_suffix('.').unwrap_or(host);
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        let candidates = self
            .exact
            .get(host)
            .or_else(|| {
                let (label, parent) = host.split_once('.')?;
                if label.is_empty() {
                    return None;
                }
                self.wildcard.get(parent)
            })
            .unwrap_or(&self.any);
        candidates
            .iter()
            .map(|&i| &self.routes[i])
            .find(|route| route.matches(path))
            .or_else(|| self.default_route())
    }

    /// Every route (for status and describe): the Ingresses' paths, oldest Ingress first,
    /// then the catch-all route, if any.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// The catch-all route of `spec.defaultBackend` (no host, `/`, `Prefix`), if any.
    pub fn default_route(&self) -> Option<&Route> {
        self.default.map(|i| &self.routes[i])
    }

    /// The route list of a host (created empty, so that the host is claimed).
    fn host_list(&mut self, host: Option<&str>) -> &mut Vec<usize> {
        match host {
            None => &mut self.any,
            Some(host) => match host.strip_prefix("*.") {
                Some(parent) => self.wildcard.entry(parent.to_owned()).or_default(),
                None => self.exact.entry(host.to_owned()).or_default(),
            },
        }
    }
}

/// Merges a canary into a route; returns the problem when it cannot.
fn merge_canary(
    route: &mut Route,
    id: &(String, String),
    backend: &Backend,
    config: &CanaryConfig,
    what: &str,
) -> Option<String> {
    if let Some(existing) = &route.canary {
        return Some(format!(
            "{what} already has the canary of Ingress {}/{}, which is older; ingress-nginx \
             uses one canary per primary, so this one serves nothing there",
            existing.ingress.0, existing.ingress.1
        ));
    }
    if route.backend == *backend {
        // ingress-nginx does not merge a canary whose upstream is the primary's.
        return Some(format!(
            "canary backend {backend} is also the primary backend of {what}: nothing is split, \
             so the canary is not used there"
        ));
    }
    route.canary = Some(Canary {
        ingress: id.clone(),
        backend: backend.clone(),
        config: config.clone(),
    });
    None
}

fn normalize_host(host: Option<&str>) -> Option<String> {
    host.filter(|h| !h.is_empty()).map(str::to_ascii_lowercase)
}

fn normalize_path(path: &str) -> String {
    if path.is_empty() {
        "/".to_owned()
    } else {
        path.to_owned()
    }
}

fn host_display(host: Option<&str>) -> &str {
    host.unwrap_or("*")
}

impl CanaryConfig {
    /// Parses the canary annotations of an Ingress (prefix `nginx.ingress.kubernetes.io/`,
    /// and `switchyard.dev/canary-sticky-by`); Err(message) names the annotation and the
    /// problem.
    ///
    /// `Ok(None)` when `canary` is not true in Go's `strconv.ParseBool` (`1`, `t`, `T`,
    /// `TRUE`, `true`, `True`): the other canary annotations are then ignored. String
    /// annotations are trimmed and an empty one is unset, as ingress-nginx's parser does;
    /// integers are read as Go's `strconv.Atoi` does (no spaces, optional sign).
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
    ) -> Result<Option<CanaryConfig>, String> {
        let raw = |name: &str| annotations.get(&format!("{ANNOTATION_PREFIX}{name}"));
        if !raw("canary").is_some_and(|v| parse_go_bool(v)) {
            return Ok(None);
        }
        let string = |name: &str| {
            raw(name)
                .map(|v| normalize_string(v))
                .filter(|v| !v.is_empty())
        };
        let mut errors = Vec::new();

        let weight_total = match raw("canary-weight-total") {
            None => DEFAULT_WEIGHT_TOTAL,
            Some(text) => match text.parse::<i64>().ok().and_then(|n| u32::try_from(n).ok()) {
                Some(n) if n > 0 => n.max(DEFAULT_WEIGHT_TOTAL),
                _ => {
                    errors.push(format!(
                        "{ANNOTATION_PREFIX}canary-weight-total: {text:?} is not a positive integer"
                    ));
                    DEFAULT_WEIGHT_TOTAL
                }
            },
        };
        let weight = match raw("canary-weight") {
            None => 0,
            Some(text) => match text.parse::<i64>() {
                Ok(n) if (0..=i64::from(weight_total)).contains(&n) => n as u32,
                _ => {
                    errors.push(format!(
                        "{ANNOTATION_PREFIX}canary-weight: {text:?} is not an integer from 0 to \
                         {weight_total} (the weight total)"
                    ));
                    0
                }
            },
        };

        let by_header = string("canary-by-header");
        let by_header_value = string("canary-by-header-value");
        // "Note that when canary-by-header-value is set this annotation will be ignored."
        let by_header_pattern = match string("canary-by-header-pattern") {
            Some(pattern) if by_header_value.is_none() => match Regex::new(&pattern) {
                Ok(regex) => Some(regex),
                Err(error) => {
                    let error = error.to_string().replace('\n', " ");
                    errors.push(format!(
                        "{ANNOTATION_PREFIX}canary-by-header-pattern: {pattern:?} is not a valid \
                         regular expression: {error}"
                    ));
                    None
                }
            },
            _ => None,
        };
        let by_cookie = string("canary-by-cookie");

        let sticky_by = match annotations.get(STICKY_ANNOTATION).map(|v| v.trim()) {
            None | Some("") => None,
            Some(text) => match parse_sticky(text) {
                Some(sticky) => Some(sticky),
                None => {
                    errors.push(format!(
                        "{STICKY_ANNOTATION}: {text:?} is not \"cookie:NAME\" or \"header:NAME\" \
                         with NAME an HTTP token"
                    ));
                    None
                }
            },
        };

        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        Ok(Some(CanaryConfig {
            by_header,
            by_header_value,
            by_header_pattern,
            by_cookie,
            weight,
            weight_total,
            sticky_by,
        }))
    }

    /// true = send to the canary. `random` is uniform in [0, 1), supplied by the caller
    /// (values outside are clamped; NaN chooses the primary).
    ///
    /// ingress-nginx's precedence (`balancer.lua`, `route_to_alternative_balancer`):
    /// 1. `canary-by-header`, when the request has that header: with
    ///    `canary-by-header-value`, that exact value sends to the canary; else with
    ///    `canary-by-header-pattern`, a regex match does; else `always` sends to the canary
    ///    and `never` to the primary without looking further. Anything else falls through.
    /// 2. `canary-by-cookie`: `always` sends to the canary, `never` to the primary; anything
    ///    else falls through.
    /// 3. `canary-weight`: the canary when `random * weight_total < weight` (as
    ///    `math.random(weightTotal) <= weight`). With `sticky_by` and a non-empty value of
    ///    that cookie or header, [`sticky_cohort`] of the value replaces `random`.
    pub fn choose(&self, request: &dyn RequestView, random: f64) -> bool {
        if let Some(name) = self.by_header.as_deref().filter(|n| !n.is_empty())
            && let Some(value) = request.header(name)
        {
            if let Some(expected) = self.by_header_value.as_deref().filter(|v| !v.is_empty()) {
                if value == expected {
                    return true;
                }
            } else if let Some(pattern) = &self.by_header_pattern {
                if pattern.is_match(value) {
                    return true;
                }
            } else if value == "always" {
                return true;
            } else if value == "never" {
                return false;
            }
        }
        if let Some(name) = self.by_cookie.as_deref().filter(|n| !n.is_empty())
            && let Some(value) = request.cookie(name)
        {
            if value == "always" {
                return true;
            } else if value == "never" {
                return false;
            }
        }
        let sticky = match &self.sticky_by {
            Some(StickyBy::Cookie(name)) => request.cookie(name),
            Some(StickyBy::Header(name)) => request.header(name),
            None => None,
        };
        let random = sticky
            .filter(|v| !v.is_empty())
            .map_or(random, sticky_cohort);
        self.weight_chooses(random)
    }

    /// The weight step: `floor(random * total) < weight`, i.e. `math.random(total) <= weight`
    /// with `math.random(total) = floor(random * total) + 1`.
    fn weight_chooses(&self, random: f64) -> bool {
        if self.weight == 0 {
            return false;
        }
        if self.weight >= self.weight_total {
            return true;
        }
        let bucket = (random.clamp(0.0, 1.0) * f64::from(self.weight_total)).floor();
        bucket < f64::from(self.weight)
    }
}

/// The sticky cohort of a user: a stable hash of the cookie or header value mapped to
/// [0, 1), used in place of the random number by [`CanaryConfig::choose`]. A user is in
/// the canary at weight `w` of total `t` when `cohort * t < w`, so raising the weight only
/// adds users: whoever is in the canary at 5% is in it at 20%.
///
/// The function is FNV-1a 64 of the bytes, finished with MurmurHash3's 64-bit mixer (so
/// that ids differing in the last byte spread over the whole range), its top 53 bits
/// divided by 2^53. It is part of the behaviour: changing it reshuffles every cohort.
pub fn sticky_cohort(value: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in value.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// Go's `strconv.ParseBool` truths, which ingress-nginx uses for `canary`.
fn parse_go_bool(value: &str) -> bool {
    matches!(value, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

/// ingress-nginx's `normalizeString`: every line trimmed.
fn normalize_string(value: &str) -> String {
    value
        .split('\n')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `cookie:NAME` or `header:NAME`.
fn parse_sticky(text: &str) -> Option<StickyBy> {
    let (kind, name) = text.split_once(':')?;
    if !is_token(name) {
        return None;
    }
    match kind {
        "cookie" => Some(StickyBy::Cookie(name.to_owned())),
        "header" => Some(StickyBy::Header(name.to_owned())),
        _ => None,
    }
}

/// An HTTP token (RFC 9110 section 5.6.2), which header and cookie names are.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// An RFC 3339 timestamp as nanoseconds since the Unix epoch.
fn parse_rfc3339(text: &str) -> Option<i128> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = bytes.get(range)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let year = number(0..4)?;
    let month = number(5..7)?;
    let day = number(8..10)?;
    let hour = number(11..13)?;
    let minute = number(14..16)?;
    let second = number(17..19)?;
    if bytes.get(4) != Some(&b'-')
        || bytes.get(7) != Some(&b'-')
        || !matches!(bytes.get(10), Some(b'T' | b't' | b' '))
        || bytes.get(13) != Some(&b':')
        || bytes.get(16) != Some(&b':')
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos: i128 = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        for (i, b) in fraction.bytes().take(digits).enumerate() {
            if i < 9 {
                nanos = nanos * 10 + i128::from(b - b'0');
            }
        }
        nanos *= 10i128.pow(9u32.saturating_sub(digits as u32));
        rest = &fraction[digits..];
    }
    let offset_seconds: i64 = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [h1, h2, m1, m2];
            if !digits.iter().all(|d| d.is_ascii_digit()) {
                return None;
            }
            let value = |a: &u8, b: &u8| i64::from(a - b'0') * 10 + i64::from(b - b'0');
            let seconds = value(h1, h2) * 3600 + value(m1, m2) * 60;
            if *sign == b'+' { seconds } else { -seconds }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(i128::from(seconds) * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_timestamps_order_by_instant() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("1970-01-02T00:00:01Z"),
            Some(86_401_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2024-03-01T12:00:00+01:00"),
            parse_rfc3339("2024-03-01T11:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2024-03-01T11:00:00.5Z").unwrap()
                - parse_rfc3339("2024-03-01T11:00:00Z").unwrap(),
            500_000_000
        );
        // 2000 was a leap year: Feb 29 exists and is one day before Mar 1.
        assert_eq!(
            parse_rfc3339("2000-03-01T00:00:00Z").unwrap()
                - parse_rfc3339("2000-02-29T00:00:00Z").unwrap(),
            86_400_000_000_000
        );
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn go_parse_bool_truths_only() {
        for yes in ["1", "t", "T", "TRUE", "true", "True"] {
            assert!(parse_go_bool(yes), "{yes}");
        }
        for no in ["0", "false", "yes", "on", "tRUE", " true", ""] {
            assert!(!parse_go_bool(no), "{no}");
        }
    }

    #[test]
    fn sticky_cohort_is_in_unit_interval() {
        for value in ["", "a", "user-1", "\u{1F600}", &"x".repeat(10_000)] {
            let cohort = sticky_cohort(value);
            assert!((0.0..1.0).contains(&cohort), "{value:?} -> {cohort}");
        }
    }

    #[test]
    fn sticky_annotation_forms() {
        assert_eq!(
            parse_sticky("cookie:uid"),
            Some(StickyBy::Cookie("uid".into()))
        );
        assert_eq!(
            parse_sticky("header:X-User"),
            Some(StickyBy::Header("X-User".into()))
        );
        for bad in [
            "cookie",
            "cookie:",
            "header:X User",
            "query:uid",
            "Cookie:uid",
            ":uid",
        ] {
            assert_eq!(parse_sticky(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn prefix_match_length_ignores_trailing_slash() {
        let route = |path: &str, path_type| Route {
            ingress: ("ns".into(), "ing".into()),
            host: None,
            path: path.into(),
            path_type,
            backend: Backend {
                namespace: "ns".into(),
                service: "svc".into(),
                port: ServicePortRef::Number(80),
            },
            canary: None,
        };
        assert_eq!(route("/", PathType::Prefix).match_len(), 1);
        assert_eq!(route("/foo/", PathType::Prefix).match_len(), 4);
        assert_eq!(route("/foo/", PathType::Exact).match_len(), 5);
        assert_eq!(
            route("/foo/", PathType::ImplementationSpecific).match_len(),
            5
        );
    }
}
