//! The demo app's settings, read from the pod's environment and its image tag.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Error rate used for versions named `bad-…` when `ERROR_RATE` is not set.
pub(crate) const BAD_VERSION_ERROR_RATE: f64 = 0.5;

/// How the demo app listens and behaves.
///
/// Built by [`Config::from_env`] in a pod, or field by field by a caller that knows better.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address to listen on (`$POD_IP:$PORT`).
    pub listen: SocketAddr,
    /// The version the app reports (`blue`, `green`, `bad-red`, ...), usually the image tag.
    /// It must be a valid HTTP header value (no control characters).
    pub version: String,
    /// The pod name the app reports.
    pub pod_name: String,
    /// Probability in `0.0..=1.0` that a request to `/` is answered with an injected 500.
    pub error_rate: f64,
    /// Delay before answering a request to `/`.
    pub latency: Duration,
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// `image_tag` is the tag of the pod's image (`switchyard/demo:green` gives
    /// `Some("green")`); see [`Config::from_vars`] for the variables and defaults.
    ///
    /// # Errors
    ///
    /// A message naming the variable when one holds an invalid value.
    pub fn from_env(image_tag: Option<&str>) -> Result<Config, String> {
        Config::from_vars(image_tag, |name| {
            std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
        })
    }

    /// Builds the configuration from `image_tag` and variables looked up with `var`.
    ///
    /// | variable | meaning | default |
    /// | --- | --- | --- |
    /// | `POD_IP` | address to bind | `127.0.0.1` |
    /// | `PORT` | port to bind | `8080` |
    /// | `VERSION` | version, when `image_tag` is `None` or empty | `blue` |
    /// | `POD_NAME` | pod name to report | `demo` |
    /// | `ERROR_RATE` | share of `/` requests answered 500, `0` to `1` | `0`, or `0.5` for a version starting with `bad-` |
    /// | `LATENCY_MS` | delay before answering `/`, in milliseconds | `0` |
    ///
    /// A variable set to the empty string counts as unset.
    ///
    /// # Errors
    ///
    /// A message naming the variable (or the image tag) when a value is invalid.
    pub fn from_vars<F>(image_tag: Option<&str>, var: F) -> Result<Config, String>
    where
        F: Fn(&str) -> Option<String>,
    {
        let var = |name: &str| var(name).filter(|value| !value.is_empty());

        let ip = match var("POD_IP") {
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(value) => value
                .trim()
                .parse()
                .map_err(|_| invalid("POD_IP", &value, "an IP address such as 127.16.0.5"))?,
        };
        let port = match var("PORT") {
            None => 8080,
            Some(value) => value
                .trim()
                .parse::<u16>()
                .map_err(|_| invalid("PORT", &value, "a port number from 0 to 65535"))?,
        };

        let version = match image_tag.filter(|tag| !tag.is_empty()) {
            Some(tag) => {
                check_version(tag).map_err(|why| format!("image tag {tag:?}: {why}"))?;
                tag.to_owned()
            }
            None => match var("VERSION") {
                None => "blue".to_owned(),
                Some(value) => {
                    check_version(&value).map_err(|why| format!("VERSION={value:?}: {why}"))?;
                    value
                }
            },
        };

        let pod_name = var("POD_NAME").unwrap_or_else(|| "demo".to_owned());

        let error_rate = match var("ERROR_RATE") {
            None if version.starts_with("bad-") => BAD_VERSION_ERROR_RATE,
            None => 0.0,
            Some(value) => value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|rate| (0.0..=1.0).contains(rate))
                .ok_or_else(|| {
                    invalid("ERROR_RATE", &value, "a number from 0 to 1, such as 0.25")
                })?,
        };

        let latency = match var("LATENCY_MS") {
            None => Duration::ZERO,
            Some(value) => value
                .trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| {
                    invalid(
                        "LATENCY_MS",
                        &value,
                        "a whole number of milliseconds, such as 50",
                    )
                })?,
        };

        Ok(Config {
            listen: SocketAddr::new(ip, port),
            version,
            pod_name,
            error_rate,
            latency,
        })
    }
}

fn invalid(name: &str, value: &str, expected: &str) -> String {
    format!("{name}={value:?} is invalid: expected {expected}")
}

/// The version is sent in the `X-Switchyard-Version` header, so it must be a header value.
pub(crate) fn check_version(version: &str) -> Result<(), &'static str> {
    if version.is_empty() {
        return Err("the version must not be empty");
    }
    if version.bytes().any(|b| b.is_ascii_control()) {
        return Err("the version must not contain control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tag: Option<&str>, vars: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_vars(tag, |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn defaults() {
        assert_eq!(
            config(None, &[]).unwrap(),
            Config {
                listen: "127.0.0.1:8080".parse().unwrap(),
                version: "blue".into(),
                pod_name: "demo".into(),
                error_rate: 0.0,
                latency: Duration::ZERO,
            }
        );
    }

    #[test]
    fn reads_every_variable() {
        let all = config(
            None,
            &[
                ("POD_IP", "127.16.0.7"),
                ("PORT", "9090"),
                ("VERSION", "green"),
                ("POD_NAME", "web-abc12"),
                ("ERROR_RATE", "0.25"),
                ("LATENCY_MS", "50"),
            ],
        )
        .unwrap();
        assert_eq!(all.listen, "127.16.0.7:9090".parse().unwrap());
        assert_eq!(all.version, "green");
        assert_eq!(all.pod_name, "web-abc12");
        assert_eq!(all.error_rate, 0.25);
        assert_eq!(all.latency, Duration::from_millis(50));
    }

    #[test]
    fn image_tag_wins_over_version_variable() {
        let tagged = config(Some("yellow"), &[("VERSION", "green")]).unwrap();
        assert_eq!(tagged.version, "yellow");
        let untagged = config(Some(""), &[("VERSION", "green")]).unwrap();
        assert_eq!(untagged.version, "green");
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let empty = config(None, &[("PORT", ""), ("ERROR_RATE", ""), ("VERSION", "")]).unwrap();
        assert_eq!(empty.listen.port(), 8080);
        assert_eq!(empty.error_rate, 0.0);
        assert_eq!(empty.version, "blue");
    }

    #[test]
    fn bad_versions_fail_half_the_time_unless_told_otherwise() {
        assert_eq!(config(Some("bad-red"), &[]).unwrap().error_rate, 0.5);
        assert_eq!(
            config(None, &[("VERSION", "bad-green")])
                .unwrap()
                .error_rate,
            0.5
        );
        assert_eq!(
            config(Some("bad-red"), &[("ERROR_RATE", "0")])
                .unwrap()
                .error_rate,
            0.0
        );
        assert_eq!(
            config(Some("bad-red"), &[("ERROR_RATE", "1")])
                .unwrap()
                .error_rate,
            1.0
        );
    }

    #[test]
    fn invalid_values_name_their_variable() {
        let cases: &[(&str, &str)] = &[
            ("ERROR_RATE", "abc"),
            ("ERROR_RATE", "1.5"),
            ("ERROR_RATE", "-0.1"),
            ("ERROR_RATE", "NaN"),
            ("PORT", "http"),
            ("PORT", "70000"),
            ("POD_IP", "localhost"),
            ("LATENCY_MS", "1.5"),
            ("LATENCY_MS", "-1"),
        ];
        for (name, value) in cases {
            let err = config(None, &[(name, value)]).unwrap_err();
            assert!(
                err.starts_with(&format!("{name}={value:?} is invalid: expected ")),
                "{name}={value}: {err}"
            );
        }
    }

    #[test]
    fn versions_must_be_header_values() {
        let err = config(Some("a\nb"), &[]).unwrap_err();
        assert_eq!(
            err,
            r#"image tag "a\nb": the version must not contain control characters"#
        );
        let err = config(None, &[("VERSION", "x\ty")]).unwrap_err();
        assert!(err.starts_with("VERSION="), "{err}");
    }
}
