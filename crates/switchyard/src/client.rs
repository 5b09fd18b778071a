//! The API client of the CLI: finds the server through the data dir, and speaks HTTP/1.1
//! over TLS (trusting the data dir's CA) with the bearer token.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use switchyard_local::server::{ServerRecord, files};

/// The default data dir: `$XDG_DATA_HOME/switchyard`, else `~/.local/share/switchyard`.
pub fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("switchyard");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/switchyard")
}

/// An API error answered by the server, with its Status.
#[derive(Debug)]
pub struct ApiFailure {
    /// HTTP status.
    pub code: StatusCode,
    /// The Status object (or a synthesized one).
    pub status: Value,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status["message"].as_str().filter(|m| !m.is_empty()) {
            Some(message) => write!(f, "{message}"),
            None => write!(f, "the server answered {}", self.code),
        }
    }
}

impl std::error::Error for ApiFailure {}

/// A connection to a running server.
pub struct Client {
    base: String,
    token: String,
    http: HttpClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    data_dir: PathBuf,
}

impl Client {
    /// Finds the server of `data_dir`.
    pub fn connect(data_dir: &Path) -> anyhow::Result<Client> {
        let record_path = data_dir.join(files::SERVER);
        let start_hint = format!(
            "start one with `switchyard server --data-dir {}` (or set SWITCHYARD_DATA_DIR)",
            data_dir.display()
        );
        let text = std::fs::read_to_string(&record_path).map_err(|_| {
            anyhow!(
                "no switchyard server is running for data dir {}: {start_hint}",
                data_dir.display()
            )
        })?;
        let record: ServerRecord = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a server record; {start_hint}",
                record_path.display()
            )
        })?;
        let token_path = data_dir.join(files::TOKEN);
        let token = std::fs::read_to_string(&token_path)
            .with_context(|| {
                format!(
                    "cannot read the API token {}: run the CLI as the user who started the server",
                    token_path.display()
                )
            })?
            .trim()
            .to_string();
        let tls = tls_config(data_dir, record.plain_http)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Client {
            base: record.url(),
            token,
            http: HttpClient::builder(TokioExecutor::new()).build(connector),
            data_dir: data_dir.to_path_buf(),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<hyper::Response<Incoming>> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "application/json");
        let body = match body {
            Some((content_type, bytes)) => {
                request = request.header("content-type", content_type);
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request.body(body).context("building the request")?;
        self.http.request(request).await.map_err(|e| {
            anyhow!(
                "cannot reach the switchyard server of {} at {} ({e}); is it running? start it with \
                 `switchyard server --data-dir {}`",
                self.data_dir.display(),
                self.base,
                self.data_dir.display()
            )
        })
    }

    /// A request whose answer is one JSON document; non-2xx answers become [`ApiFailure`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<Value> {
        let response = self.send(method, path, body).await?;
        let code = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .context("reading the response")?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(
            |_| serde_json::json!({"message": String::from_utf8_lossy(&bytes).trim().to_string()}),
        );
        if !code.is_success() {
            return Err(ApiFailure {
                code,
                status: value,
            }
            .into());
        }
        Ok(value)
    }

    /// GET a JSON document.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    /// POST/PUT a JSON document.
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<Value> {
        self.call(
            method,
            path,
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }

    /// PATCH with a JSON merge patch.
    pub async fn merge_patch(&self, path: &str, patch: &Value) -> anyhow::Result<Value> {
        self.call(
            Method::PATCH,
            path,
            Some((
                "application/merge-patch+json",
                patch.to_string().into_bytes(),
            )),
        )
        .await
    }

    /// A GET whose body is streamed to `on_chunk` as it arrives (logs with follow).
    pub async fn stream(
        &self,
        path: &str,
        mut on_chunk: impl FnMut(&[u8]) -> bool,
    ) -> anyhow::Result<()> {
        let response = self.send(Method::GET, path, None).await?;
        let code = response.status();
        let mut body = response.into_body();
        if !code.is_success() {
            let bytes = body.collect().await?.to_bytes();
            let status = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(ApiFailure { code, status }.into());
        }
        while let Some(frame) = body.frame().await {
            let frame = frame.context("reading the stream")?;
            if let Some(data) = frame.data_ref()
                && !on_chunk(data)
            {
                break;
            }
        }
        Ok(())
    }

    /// Opens a watch and calls `on_event` for each event until it returns false or the
    /// stream ends.
    pub async fn watch(
        &self,
        path: &str,
        mut on_event: impl FnMut(Value) -> bool,
    ) -> anyhow::Result<()> {
        let mut buffer = Vec::new();
        let mut outcome = Ok(());
        self.stream(path, |chunk| {
            buffer.extend_from_slice(chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let event: Value = match serde_json::from_slice(&line) {
                    Ok(event) => event,
                    Err(e) => {
                        outcome = Err(anyhow!("decoding a watch event: {e}"));
                        return false;
                    }
                };
                if event["type"] == "ERROR" {
                    let message = event["object"]["message"].as_str().unwrap_or("error");
                    outcome = Err(anyhow!("watch ended: {message}"));
                    return false;
                }
                if !on_event(event) {
                    return false;
                }
            }
            true
        })
        .await?;
        outcome
    }
}

/// TLS trusting only the data dir's CA (the server's certificate names 127.0.0.1, ::1
/// and localhost). A plain-HTTP server needs no CA, so none is read.
fn tls_config(data_dir: &Path, plain_http: bool) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if !plain_http {
        let path = data_dir
            .join(switchyard_local::pki::files::DIR)
            .join(switchyard_local::pki::files::CA_CERT);
        let ca = CertificateDer::from_pem_file(&path).with_context(|| {
            format!(
                "cannot read the server's CA {}: run the CLI as the user who started the server",
                path.display()
            )
        })?;
        roots
            .add(ca)
            .context("the server's CA is not a usable certificate")?;
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(switchyard_local::pki::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
