//! Durations as Argo Rollouts writes them: `30s`, `5m`, `1h30m`, `250ms`, or integer seconds.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Parses a Go-style duration string (`1h30m`, `45s`, `100ms`, `1.5h`) or a bare integer
/// number of seconds (`"30"`), as Argo accepts for pause durations.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_string());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected a number at {rest:?}"
            ));
        }
        let number: f64 = rest[..digits].parse().map_err(|_| {
            format!(
                "invalid duration {text:?}: bad number {:?}",
                &rest[..digits]
            )
        })?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "invalid duration {text:?}: missing unit (s, m or h)"
                ));
            }
            unit => return Err(format!("invalid duration {text:?}: unknown unit {unit:?}")),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parses an integer-or-string duration: integers are seconds.
pub fn parse_int_or_string(value: &IntOrString) -> Result<Duration, String> {
    match value {
        IntOrString::Int(seconds) if *seconds >= 0 => Ok(Duration::from_secs(*seconds as u64)),
        IntOrString::Int(seconds) => Err(format!("duration {seconds} is negative")),
        IntOrString::String(text) => parse(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ok = [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("1.5h", 5_400_000),
            ("30", 30_000),
            ("0s", 0),
        ];
        for (text, millis) in ok {
            assert_eq!(parse(text).map(|d| d.as_millis()), Ok(millis), "{text}");
        }
        for bad in ["", "s", "10x", "1d", "-5s", "5 m", "1.2.3s"] {
            assert!(parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn int_or_string() {
        assert_eq!(
            parse_int_or_string(&IntOrString::Int(10)),
            Ok(Duration::from_secs(10))
        );
        assert!(parse_int_or_string(&IntOrString::Int(-1)).is_err());
        assert_eq!(
            parse_int_or_string(&IntOrString::String("2m".into())),
            Ok(Duration::from_secs(120))
        );
    }
}
