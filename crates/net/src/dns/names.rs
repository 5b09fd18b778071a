//! Building the domain names of the zone from Kubernetes names, label by label.
//!
//! Names are built from labels rather than by formatting and parsing strings, so that a
//! value with a dot in it (which validation should have refused) cannot turn into extra
//! labels and land on another service's name.

use std::net::Ipv4Addr;

use hickory_server::proto::rr::{Label, Name};

/// A name the zone cannot hold, with the reason.
pub(crate) type NameError = String;

/// `value` as one lowercase hostname label: 1 to 63 letters, digits and hyphens.
///
/// Kubernetes names (DNS-1123/1035 labels) and IANA port names all fit.
pub(crate) fn label(value: &str) -> Result<Label, NameError> {
    let valid = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid {
        return Err(format!("{value:?} is not a DNS label"));
    }
    Label::from_ascii(&value.to_ascii_lowercase()).map_err(|e| format!("{value:?}: {e}"))
}

/// `_<value>`, the form of the service and protocol labels of SRV names (RFC 2782).
pub(crate) fn underscore_label(value: &str) -> Result<Label, NameError> {
    label(value)?;
    Label::from_ascii(&format!("_{}", value.to_ascii_lowercase()))
        .map_err(|e| format!("{value:?}: {e}"))
}

/// `parent` with `label` in front.
pub(crate) fn child(parent: &Name, label: Label) -> Result<Name, NameError> {
    parent
        .prepend_label(label)
        .map_err(|e| format!("{parent}: {e}"))
}

/// A domain name given in full (a zone, an ExternalName), lowercased and fully qualified.
pub(crate) fn fqdn(value: &str) -> Result<Name, NameError> {
    let mut name = Name::from_ascii(value)
        .map_err(|e| format!("{value:?} is not a domain name: {e}"))?
        .to_lowercase();
    name.set_fqdn(true);
    Ok(name)
}

/// The label naming an endpoint without a hostname: its IP with dashes (`127-16-0-5`), as
/// CoreDNS names them; the spec leaves this "system-assigned identifier" open (2.1).
pub(crate) fn dashed_ip(ip: Ipv4Addr) -> Label {
    let [a, b, c, d] = ip.octets();
    Label::from_ascii(&format!("{a}-{b}-{c}-{d}")).expect("a dashed IPv4 address is a label")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_lowercased_and_checked() {
        assert_eq!(label("Web").unwrap().to_string(), "web");
        assert!(label("").is_err());
        assert!(label("a.b").is_err(), "a dot would split the label");
        assert!(label(&"x".repeat(64)).is_err());
        assert_eq!(underscore_label("HTTP").unwrap().to_string(), "_http");
    }

    #[test]
    fn fqdn_accepts_a_trailing_dot() {
        assert_eq!(fqdn("Example.COM").unwrap(), fqdn("example.com.").unwrap());
        assert!(fqdn("example.com").unwrap().is_fqdn());
    }

    #[test]
    fn dashed_ip_names_an_endpoint() {
        assert_eq!(
            dashed_ip(Ipv4Addr::new(127, 16, 0, 5)).to_string(),
            "127-16-0-5"
        );
    }
}
