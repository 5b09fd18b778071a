//! The API server's certificates: a CA and a serving certificate, generated on first start
//! in the data dir (keys mode 0600) and reused across restarts, and the kubeconfig that
//! lets kubectl and kube-rs clients trust them.
//!
//! Like a kubeadm cluster's `pki/` directory: `ca.crt`/`ca.key` sign
//! `apiserver.crt`/`apiserver.key`. The serving certificate is renewed when it is missing,
//! unreadable, within 30 days of expiry, or does not name the address the server listens on;
//! the CA is kept as long as it is readable and valid, so kubeconfigs handed out before a
//! restart keep working.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod der;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// File names inside `<data-dir>/pki`.
pub mod files {
    /// The directory, relative to the data dir.
    pub const DIR: &str = "pki";
    /// The CA certificate (PEM); clients trust it.
    pub const CA_CERT: &str = "ca.crt";
    /// The CA key (PEM, mode 0600); never leaves the data dir.
    pub const CA_KEY: &str = "ca.key";
    /// The serving certificate (PEM).
    pub const SERVING_CERT: &str = "apiserver.crt";
    /// The serving key (PEM, mode 0600).
    pub const SERVING_KEY: &str = "apiserver.key";
}

/// Why certificates could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Generating or signing a certificate failed.
    #[error("generating the API server's certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("loading the API server's certificate into TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// The CA (PEM) clients trust, and the TLS configuration the API listener serves.
pub struct Pki {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The server side of TLS: the serving certificate, ALPN h2 and http/1.1.
    pub server_config: Arc<rustls::ServerConfig>,
}

/// Days a generated CA is valid.
const CA_DAYS: i64 = 3650;
/// Days a generated serving certificate is valid.
const SERVING_DAYS: i64 = 365;
/// A serving certificate this close to expiry is renewed at start.
const RENEW_BEFORE_DAYS: i64 = 30;

/// The names every serving certificate carries, besides the listen address.
fn default_names() -> Vec<SanType> {
    vec![
        SanType::DnsName("localhost".try_into().expect("static DNS name")),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ]
}

/// Loads the certificates from `<data_dir>/pki`, generating what is missing or stale,
/// and builds the TLS configuration for a server listening on `listen`.
pub fn ensure(data_dir: &Path, listen: SocketAddr) -> Result<Pki, PkiError> {
    let dir = data_dir.join(files::DIR);
    fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let (ca_pem, ca_key_pem) = ensure_ca(&dir)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    // The issuer is the CA's subject and key: the same parameters the CA was made from,
    // so the issued certificate's issuer name matches the CA's subject byte for byte.
    let issuer = Issuer::new(ca_params(), ca_key);
    let names = serving_names(listen.ip());
    let cert_path = dir.join(files::SERVING_CERT);
    let key_path = dir.join(files::SERVING_KEY);
    let current = fs::read_to_string(&cert_path)
        .ok()
        .zip(fs::read_to_string(&key_path).ok())
        .filter(|(cert, _)| serving_cert_fits(cert, &ca_pem, &names));
    let (cert_pem, key_pem) = match current {
        Some(pair) => pair,
        None => {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::default();
            params.distinguished_name = name("switchyard-apiserver");
            params.subject_alt_names = names;
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            validity(&mut params, SERVING_DAYS);
            let cert = params.signed_by(&key, &issuer)?;
            let pair = (cert.pem(), key.serialize_pem());
            write_private(&key_path, &pair.1)?;
            write_public(&cert_path, &pair.0)?;
            pair
        }
    };
    let chain =
        vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(pem_error(&cert_path))?];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(pem_error(&key_path))?;
    let provider = crypto_provider();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // HTTP/2 first, as kube-apiserver offers it; streaming upgrades (exec, port-forward)
    // come over HTTP/1.1, which clients ask for by offering only that.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Pki {
        ca_pem,
        server_config: Arc::new(config),
    })
}

/// The CA certificate and key, generated on first use.
fn ensure_ca(dir: &Path) -> Result<(String, String), PkiError> {
    let cert_path = dir.join(files::CA_CERT);
    let key_path = dir.join(files::CA_KEY);
    if let (Ok(cert), Ok(key)) = (
        fs::read_to_string(&cert_path),
        fs::read_to_string(&key_path),
    ) && KeyPair::from_pem(&key).is_ok()
        && ca_still_valid(&cert)
    {
        return Ok((cert, key));
    }
    let key = KeyPair::generate()?;
    let mut params = ca_params();
    validity(&mut params, CA_DAYS);
    let cert = params.self_signed(&key)?;
    let pair = (cert.pem(), key.serialize_pem());
    write_private(&key_path, &pair.1)?;
    write_public(&cert_path, &pair.0)?;
    // A new CA invalidates any serving certificate signed by the old one.
    let _ = fs::remove_file(dir.join(files::SERVING_CERT));
    Ok(pair)
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name("switchyard-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "switchyard");
    name
}

/// Valid from yesterday (slack for clocks that disagree a little) for `days`; rcgen takes
/// calendar dates.
fn validity(params: &mut CertificateParams, days: i64) {
    let today = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date();
    let ymd = |date: jiff::civil::Date| {
        rcgen::date_time_ymd(
            i32::from(date.year()),
            date.month().unsigned_abs(),
            date.day().unsigned_abs(),
        )
    };
    params.not_before = ymd(today.yesterday().unwrap_or(today));
    params.not_after = ymd(today
        .checked_add(jiff::Span::new().days(days))
        .unwrap_or(today));
}

/// The rustls crypto provider of the whole tree: ring, as kube-rs uses by default (it
/// builds with a C compiler alone; aws-lc-rs, which rustls now prefers for its
/// post-quantum key exchange, needs a much heavier build). Every connection it secures
/// is to a certificate this module made.
#[allow(deprecated)]
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The serving certificate's names: the defaults, plus the listen IP when it is a
/// specific address (a wildcard listen is reached through the defaults or not at all).
fn serving_names(listen: IpAddr) -> Vec<SanType> {
    let mut names = default_names();
    let specific = !listen.is_unspecified();
    if specific && !names.contains(&SanType::IpAddress(listen)) {
        names.push(SanType::IpAddress(listen));
    }
    names
}

/// Whether a stored serving certificate can be served as it is: it chains to this CA,
/// names every address, and stays valid for [`RENEW_BEFORE_DAYS`] more. Checked the way a
/// client would, with rustls' verifier at a time 30 days ahead.
fn serving_cert_fits(cert_pem: &str, ca_pem: &str, names: &[SanType]) -> bool {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};
    let (Ok(cert), Ok(ca)) = (
        CertificateDer::from_pem_slice(cert_pem.as_bytes()),
        CertificateDer::from_pem_slice(ca_pem.as_bytes()),
    ) else {
        return false;
    };
    let mut roots = rustls::RootCertStore::empty();
    if roots.add(ca).is_err() {
        return false;
    }
    let provider = crypto_provider();
    let Ok(verifier) =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
    else {
        return false;
    };
    let Some(later) = std::time::SystemTime::now().checked_add(std::time::Duration::from_secs(
        RENEW_BEFORE_DAYS as u64 * 86_400,
    )) else {
        return false;
    };
    let at = UnixTime::since_unix_epoch(
        later
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    names.iter().all(|san| {
        let name = match san {
            SanType::DnsName(dns) => ServerName::try_from(dns.as_str().to_string()),
            SanType::IpAddress(ip) => Ok(ServerName::IpAddress((*ip).into())),
            _ => return false,
        };
        name.is_ok_and(|name| {
            verifier
                .verify_server_cert(&cert, &[], &name, &[], at)
                .is_ok()
        })
    })
}

/// Whether a CA certificate is valid now and for [`RENEW_BEFORE_DAYS`] more (a CA about to
/// expire is replaced, and with it every certificate it signed).
fn ca_still_valid(cert_pem: &str) -> bool {
    let Ok(der) = CertificateDer::from_pem_slice(cert_pem.as_bytes()) else {
        return false;
    };
    let Some((not_before, not_after)) = der::validity(&der) else {
        return false;
    };
    let now = jiff::Timestamp::now();
    let margin = jiff::SignedDuration::from_hours(RENEW_BEFORE_DAYS * 24);
    not_before <= now && now.checked_add(margin).is_ok_and(|later| later < not_after)
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + use<> {
    let path = path.display().to_string();
    move |source| PkiError::Io { what, path, source }
}

fn pem_error(path: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> PkiError + use<> {
    let path = path.display().to_string();
    move |e| PkiError::Io {
        what: "reading",
        path,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    }
}

/// Writes a secret (a key, the kubeconfig) with mode 0600, replacing the file atomically.
pub fn write_private(path: &Path, text: &str) -> Result<(), PkiError> {
    write_mode(path, text, 0o600)
}

fn write_public(path: &Path, text: &str) -> Result<(), PkiError> {
    write_mode(path, text, 0o644)
}

fn write_mode(path: &Path, text: &str, mode: u32) -> Result<(), PkiError> {
    let tmp: PathBuf = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io("writing", &tmp))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io("writing", &tmp))?;
    fs::rename(&tmp, path).map_err(io("writing", path))
}
