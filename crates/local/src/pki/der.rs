//! Just enough DER to read a certificate's validity period (RFC 5280 §4.1), so the CA's
//! expiry can be checked without an X.509 parsing dependency.

use jiff::Timestamp;

/// `(notBefore, notAfter)` of a DER certificate, or None when it does not parse.
pub fn validity(cert: &[u8]) -> Option<(Timestamp, Timestamp)> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
    let (certificate, _) = element(cert, SEQUENCE)?;
    let (tbs, _) = element(certificate, SEQUENCE)?;
    // TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature,
    //                               issuer, validity, ... }
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = element(rest, VERSION)?.1;
    }
    rest = element(rest, INTEGER)?.1; // serialNumber
    rest = element(rest, SEQUENCE)?.1; // signature AlgorithmIdentifier
    rest = element(rest, SEQUENCE)?.1; // issuer Name
    let (validity, _) = element(rest, SEQUENCE)?;
    let (not_before, rest) = time(validity)?;
    let (not_after, _) = time(rest)?;
    Some((not_before, not_after))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// One element with the expected tag: (its content, what follows it).
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b))
    };
    (rest.len() >= length).then(|| rest.split_at(length))
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(input: &[u8]) -> Option<(Timestamp, &[u8])> {
    let tag = *input.first()?;
    let (content, rest) = element(input, tag)?;
    let text = std::str::from_utf8(content).ok()?.strip_suffix('Z')?;
    let full = match (tag, text.len()) {
        (UTC_TIME, 12) => {
            let year: u32 = text[..2].parse().ok()?;
            let century = if year >= 50 { "19" } else { "20" };
            format!("{century}{text}")
        }
        (GENERALIZED_TIME, 14) => text.to_string(),
        _ => return None,
    };
    let iso = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &full[..4],
        &full[4..6],
        &full[6..8],
        &full[8..10],
        &full[10..12],
        &full[12..14]
    );
    Some((iso.parse().ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utc_and_generalized_times() {
        let utc = [
            0x17, 13, b'2', b'6', b'1', b'2', b'0', b'8', b'0', b'1', b'0', b'2', b'0', b'3', b'Z',
        ];
        let (t, rest) = time(&utc).unwrap();
        assert_eq!(t.to_string(), "2026-12-08T01:02:03Z");
        assert!(rest.is_empty());
        let generalized = b"\x18\x0f20510102030405Z";
        assert_eq!(
            time(generalized).unwrap().0.to_string(),
            "2051-01-02T03:04:05Z"
        );
        assert!(time(b"\x17\x0d2612080102ZZZ").is_none());
    }

    #[test]
    fn long_lengths_and_truncation() {
        let mut long = vec![SEQUENCE, 0x81, 200];
        long.extend(std::iter::repeat_n(0u8, 200));
        assert_eq!(element(&long, SEQUENCE).unwrap().0.len(), 200);
        assert!(element(&long[..100], SEQUENCE).is_none());
        assert!(element(&[INTEGER, 1, 5], SEQUENCE).is_none());
    }
}
