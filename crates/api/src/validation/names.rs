//! Name formats with the API server's messages (k8s.io/apimachinery/pkg/util/validation).
//! Each check returns the list of messages; empty means valid.

fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let examples = examples
        .iter()
        .map(|e| format!("'{e}'"))
        .collect::<Vec<_>>()
        .join(" or ");
    format!("{msg} (e.g. {examples}, regex used for validation is '{fmt}')")
}

fn max_len(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_label_like(s: &str, first: fn(char) -> bool) -> bool {
    let mut chars = s.chars();
    let Some(f) = chars.next() else { return false };
    first(f)
        && s.chars().all(|c| is_alnum_lower(c) || c == '-')
        && s.chars().last().is_some_and(is_alnum_lower)
}

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";

/// RFC 1123 label: namespaces, container names, port names in Services.
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len(63));
    }
    if !is_label_like(s, is_alnum_lower) {
        errs.push(regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \
             '-', and must start and end with an alphanumeric character",
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errs
}

/// RFC 1123 subdomain: most object names, ExternalName targets, label prefixes.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len(253));
    }
    if s.is_empty() || !s.split('.').all(|part| is_label_like(part, is_alnum_lower)) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \
             '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// RFC 1035 label: Service names (they become DNS names and environment variables).
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len(63));
    }
    if !is_label_like(s, |c| c.is_ascii_lowercase()) {
        errs.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start \
             with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

fn is_qualified_part(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !s.is_empty()
        && s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// A qualified name (`[prefix/]name`): label and annotation keys.
pub fn qualified_name(s: &str) -> Vec<String> {
    const MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start \
                       and end with an alphanumeric character";
    let examples = ["MyName", "my.name", "123-abc"];
    let parts: Vec<&str> = s.split('/').collect();
    let (prefix, name) = match parts.as_slice() {
        [name] => (None, *name),
        [prefix, name] => (Some(*prefix), *name),
        _ => {
            return vec![format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. \
                 'example.com/MyName')",
                regex_error(MSG, QUALIFIED_NAME_FMT, &examples)
            )];
        }
    };
    let mut errs = Vec::new();
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errs.push("prefix part must be non-empty".to_string());
        } else {
            errs.extend(
                dns1123_subdomain(prefix)
                    .into_iter()
                    .map(|m| format!("prefix part {m}")),
            );
        }
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len(63)));
    }
    if !name.is_empty() && !is_qualified_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(MSG, QUALIFIED_NAME_FMT, &examples)
        ));
    }
    errs
}

/// A label value: empty, or up to 63 alphanumerics with `-`, `_`, `.` inside.
pub fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len(63));
    }
    if !s.is_empty() && !is_qualified_part(s) {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', \
             '_' or '.', and must start and end with an alphanumeric character",
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// An IANA service name: container port names and named targetPorts.
pub fn port_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 15 {
        errs.push(max_len(15));
    }
    if !s.chars().all(|c| is_alnum_lower(c) || c == '-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// A port number.
pub fn port_number(port: i32) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec!["must be between 1 and 65535, inclusive".to_string()]
    }
}

/// A wildcard DNS-1123 subdomain (`*.example.com`), as allowed for Ingress hosts.
pub fn wildcard_dns1123_subdomain(s: &str) -> Vec<String> {
    match s.strip_prefix("*.") {
        Some(rest) if dns1123_subdomain(rest).is_empty() => Vec::new(),
        _ => vec![regex_error(
            "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS \
             subdomain, which must consist of lower case alphanumeric characters, '-' or '.' \
             and end with an alphanumeric character",
            "\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
            &["*.example.com"],
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_table() {
        let cases: &[(&str, bool, bool, bool)] = &[
            // name, 1123 label, 1123 subdomain, 1035 label
            ("web", true, true, true),
            ("web-1", true, true, true),
            ("1web", true, true, false),
            ("web.example", false, true, false),
            ("Web", false, false, false),
            ("web-", false, false, false),
            ("-web", false, false, false),
            ("", false, false, false),
            ("a_b", false, false, false),
            ("a..b", false, false, false),
        ];
        for (name, label, subdomain, dns1035) in cases {
            assert_eq!(dns1123_label(name).is_empty(), *label, "label {name:?}");
            assert_eq!(
                dns1123_subdomain(name).is_empty(),
                *subdomain,
                "subdomain {name:?}"
            );
            assert_eq!(dns1035_label(name).is_empty(), *dns1035, "1035 {name:?}");
        }
        assert_eq!(dns1123_label(&"a".repeat(64)), vec![max_len(63)]);
    }

    #[test]
    fn messages_match_the_api_server() {
        assert_eq!(
            dns1035_label("1web"),
            vec![
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', \
                 start with an alphabetic character, and end with an alphanumeric character \
                 (e.g. 'my-name' or 'abc-123', regex used for validation is \
                 '[a-z]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
    }

    #[test]
    fn qualified_names_and_label_values() {
        for ok in ["app", "app.kubernetes.io/name", "example.com/My_Name", "a"] {
            assert!(qualified_name(ok).is_empty(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a/b/c", "-a", "Example.com/a", "a b"] {
            assert!(!qualified_name(bad).is_empty(), "{bad}");
        }
        for ok in ["", "v1", "1.2.3", "My_Value"] {
            assert!(label_value(ok).is_empty(), "{ok}");
        }
        for bad in ["-v", "v!", "a b", &"x".repeat(64)] {
            assert!(!label_value(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn port_names_follow_iana() {
        assert!(port_name("http").is_empty());
        assert!(port_name("http-alt2").is_empty());
        assert_eq!(
            port_name("8080"),
            vec!["must contain at least one letter (a-z)"]
        );
        assert_eq!(
            port_name("a--b"),
            vec!["must contain consecutive hyphens".replace("must", "must not")]
        );
        assert!(!port_name("HTTP").is_empty());
        assert!(!port_name("a-very-long-port-name").is_empty());
    }

    #[test]
    fn wildcard_hosts() {
        assert!(wildcard_dns1123_subdomain("*.example.com").is_empty());
        assert!(!wildcard_dns1123_subdomain("*example.com").is_empty());
        assert!(!wildcard_dns1123_subdomain("a.*.com").is_empty());
    }
}
