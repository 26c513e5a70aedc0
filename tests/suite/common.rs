//! Helpers shared by the integration tests that start the daemon.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use untoil::daemon;
use untoil::daemon::settings::Settings;

/// The raw sled database of a closed store, waiting for a just-dropped store's lock (sled's
/// flusher keeps it a moment after the drop).
pub fn raw_sled(data: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match sled::open(data) {
            Ok(db) => return db,
            Err(e) if Instant::now() > deadline => panic!("raw sled: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/alertmanager")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} must exist: {e}", path.display()))
}

/// The resolved fixture with its alert ended now, after the runs it verifies started (the
/// fixture's own `endsAt` is long past, before any run a test starts).
pub fn resolved_now() -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("resolved.json")).expect("fixture json");
    v["alerts"][0]["endsAt"] = serde_json::Value::String(chrono::Utc::now().to_rfc3339());
    serde_json::to_vec(&v).expect("json")
}

pub struct Dirs {
    pub root: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Dirs {
        let root = tempfile::tempdir().expect("tempdir");
        for d in ["runbooks", "plugins", "data", "sources"] {
            std::fs::create_dir(root.path().join(d)).expect("mkdir");
        }
        Dirs { root }
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p)
    }
    pub fn runbook(&self, name: &str, body: &str) {
        std::fs::write(self.path("runbooks").join(format!("{name}.yaml")), body)
            .expect("write runbook");
    }
    /// Writes a source definition (docs/sources.md) under `sources/`.
    pub fn source(&self, name: &str, body: &str) {
        std::fs::write(self.path("sources").join(format!("{name}.yaml")), body)
            .expect("write source");
    }
    pub fn settings(&self) -> Settings {
        let mut s = Settings::new(
            self.path("runbooks"),
            self.path("plugins"),
            self.path("data"),
        );
        s.sources = self.path("sources");
        s.workers = 2;
        s.shutdown_grace = Duration::from_secs(5);
        s.kill_grace = Duration::from_millis(200);
        s
    }
}

pub struct Running {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub client: reqwest::Client,
    /// Sent as a bearer token when set.
    pub token: Option<String>,
}

impl Running {
    pub async fn start(settings: Settings) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(daemon::run(settings, listener, async move {
            let _ = rx.await;
        }));
        untoil::exec::step::http::install_crypto_provider();
        let client = reqwest::Client::new();
        let r = Running {
            base,
            stop: Some(tx),
            task,
            client,
            token: None,
        };
        r.wait_for(|| async { r.get("/healthz").await.0 == 200 })
            .await;
        r
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut self.task).await;
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("GET");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        self.post_with(path, body, None).await
    }

    pub async fn post_with(
        &self,
        path: &str,
        body: Vec<u8>,
        auth: Option<&str>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.expect("POST");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            headers,
        )
    }

    /// Polls until `check` holds, with a deadline.
    pub async fn wait_for<F, Fut>(&self, check: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check().await {
            assert!(
                Instant::now() < deadline,
                "condition not met before the deadline"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The run list's summaries (`GET /api/v1/runs`), most recent first.
    pub async fn summaries(&self) -> Vec<Value> {
        self.get("/api/v1/runs?limit=1000")
            .await
            .1
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every run's whole record: the list answers summaries, so each is fetched at its `url`.
    pub async fn runs(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for s in self.summaries().await {
            let url = s["url"].as_str().expect("a summary has its record's url");
            out.push(self.get(url).await.1);
        }
        out
    }

    /// Follows a run: what `GET /api/v1/runs/{id}/events` streams until the run ends.
    pub async fn events(&self, id: &str) -> Vec<Value> {
        let mut req = self
            .client
            .get(format!("{}/api/v1/runs/{id}/events", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let text = req
            .send()
            .await
            .expect("events")
            .text()
            .await
            .unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("ndjson"))
            .collect()
    }

    pub async fn wait_runs_final(&self, n: usize) -> Vec<Value> {
        self.wait_for(|| async {
            let runs = self.runs().await;
            runs.len() >= n
                && runs
                    .iter()
                    .all(|r| !matches!(r["status"].as_str(), Some("queued" | "running")))
        })
        .await;
        self.runs().await
    }
}

/// What a raw HTTP exchange read: the status (0 when the server closed without answering), the
/// lower-cased head and the body.
pub struct Raw {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Reads what the server sends on `stream` until it closes, up to `within`; `None` when it
/// neither answers nor closes in time.
pub async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    within: Duration,
) -> Option<Raw> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()?;
    let text = String::from_utf8_lossy(&bytes).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Some(Raw {
        status,
        head: head.to_lowercase(),
        body: body.to_string(),
    })
}

/// One `GET path` on a fresh connection (never a pooled one), with `Connection: close`.
pub async fn raw_get(base: &str, path: &str) -> Raw {
    use tokio::io::AsyncWriteExt;
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.expect("write");
    read_until_closed(&mut s, Duration::from_secs(20))
        .await
        .expect("an answer before the deadline")
}

/// `untoil serve` as a child process, its stderr lines collected as they come.
pub struct Served {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Served {
    /// Spawns `command` (an `untoil ... serve` command) with stderr piped.
    pub fn spawn(mut command: std::process::Command) -> Served {
        use std::io::BufRead;
        let mut child = command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn untoil");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .split(b'\n')
                .map_while(Result::ok)
            {
                if tx.send(String::from_utf8_lossy(&line).to_string()).is_err() {
                    break;
                }
            }
        });
        Served {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (with a deadline) for a stderr line that `matches`, and returns it.
    pub fn wait_line(&mut self, matches: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| matches(l)) {
            return l.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no such line on stderr before the deadline; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The daemon's base URL, from its "listening on" line.
    pub fn base(&mut self) -> String {
        let line = self.wait_line(|l| l.contains("untoil listening on http://"));
        let start = line.find("http://").unwrap_or(0);
        line[start..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// Stops it as an operator does (SIGTERM) and returns its exit code and everything it wrote
    /// on stderr.
    pub fn terminate(self) -> (Option<i32>, String) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.exit()
    }

    /// Everything it wrote on stderr so far (lines not read yet are read now, without waiting).
    pub fn log_so_far(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// Kills it with SIGKILL, as a crash would (no shutdown, no flush), reaps it, and returns
    /// everything it wrote on stderr (read until the pipe closes, with a deadline: a step process
    /// it left behind may hold the pipe a little longer).
    pub fn sigkill_log(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
        std::mem::take(&mut self.seen)
    }

    /// Kills it with SIGKILL, as a crash would (no shutdown, no flush), and reaps it.
    pub fn sigkill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (with a deadline) for the process to exit by itself, and returns its exit code and
    /// everything it wrote on stderr.
    pub fn exit(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("untoil did not exit; stderr:\n{}", self.seen.join("\n"));
            }
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(50)) {
                self.seen.push(line);
            }
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.code(), self.seen.join("\n"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests to a daemon at `base` (a child process, which [`Running`]'s methods cannot reach).
pub struct Http {
    pub base: String,
    client: reqwest::Client,
}

impl Http {
    pub fn new(base: String) -> Http {
        untoil::exec::step::http::install_crypto_provider();
        Http {
            base,
            client: reqwest::Client::new(),
        }
    }

    /// GET: the status and the body as text.
    pub async fn text(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// GET of JSON: the status and the answer.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (status, text) = self.text(path).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// POST of a JSON body: the status and the answer.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// `untoil` with the directories of `dirs` and no ambient configuration.
pub fn untoil_command(dirs: &Dirs) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_untoil"));
    untoil_env(&mut c, dirs);
    c
}

/// The environment of [`untoil_command`], for a command that starts untoil another way.
pub fn untoil_env(c: &mut std::process::Command, dirs: &Dirs) {
    c.env("UNTOIL_RUNBOOKS", dirs.path("runbooks"))
        .env("UNTOIL_PLUGINS", dirs.path("plugins"))
        .env("UNTOIL_DATA", dirs.path("data"))
        .env("UNTOIL_SOURCES", dirs.path("sources"))
        .env("UNTOIL_LOG_FORMAT", "text")
        .env_remove("UNTOIL_SERVER")
        .env_remove("UNTOIL_TOKEN")
        .env_remove("UNTOIL_TOKEN_FILE")
        .env_remove("UNTOIL_BASIC_AUTH")
        .env_remove("UNTOIL_BASIC_AUTH_FILE")
        .env_remove("UNTOIL_AUTH_FILE")
        .env_remove("UNTOIL_LISTEN")
        .env_remove("UNTOIL_DATABASE_URL")
        .env_remove("UNTOIL_DATABASE_PASSWORD_FILE")
        .env_remove("UNTOIL_DATABASE_CA_FILE")
        .env_remove("UNTOIL_DATABASE_POOL")
        .env_remove("PGPASSWORD")
        .env_remove("UNTOIL_LOG");
}

/// Polls `check` until it returns Some, failing with `what` after the deadline.
pub async fn until<T, F, Fut>(what: &str, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `untoil serve` over `dirs` on an ephemeral loopback port, with its base URL.
pub fn serve(dirs: &Dirs) -> (Served, String) {
    let mut c = untoil_command(dirs);
    c.args(["serve", "--listen", "127.0.0.1:0"]);
    let mut served = Served::spawn(c);
    let base = served.base();
    (served, base)
}

/// The text of the element with `id` in a page the dashboard served (its first text node).
pub fn by_id(html: &str, id: &str) -> String {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} in {html}"));
    let rest = &html[at..];
    let text = &rest[rest.find('>').map_or(0, |i| i + 1)..];
    text[..text.find('<').unwrap_or(text.len())]
        .trim()
        .to_string()
}

/// A real OpenSSH server of a test's own on a loopback ephemeral port: its own host key, a
/// user key authorized for the current user, a known-hosts file naming it and an ssh_config,
/// all in a temporary directory (never the machine's own sshd, keys or configuration).
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The user the tests log in as (the current one).
    pub user: String,
    /// The client's private key.
    pub key: PathBuf,
    /// A known-hosts file with this server's key.
    pub known_hosts: PathBuf,
    /// An ssh_config for the client (Host aliases are appended by tests).
    pub config: PathBuf,
    child: std::process::Child,
    /// Every line sshd wrote on stderr (its log: `-e`).
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Where Debian's openssh-server puts sshd.
pub const SSHD: &str = "/usr/sbin/sshd";

/// Runs a command to success, failing the test loudly otherwise.
fn must(cmd: &mut std::process::Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Sshd {
    /// Starts sshd and waits (with a deadline) until it listens. Fails, never skips, when
    /// sshd is not installed: scripts/test-deps installs it.
    pub fn start() -> Sshd {
        Sshd::start_with("AllowTcpForwarding no")
    }

    /// [`Sshd::start`] with extra sshd_config lines.
    pub fn start_with(extra: &str) -> Sshd {
        use std::io::BufRead;
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: the remote tests need a real sshd; run scripts/test-deps (it installs openssh-server)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let p = |f: &str| dir.path().join(f);
        for key in ["host_key", "user_key"] {
            must(
                std::process::Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", "untoil-test", "-f"])
                    .arg(p(key)),
            );
        }
        std::fs::copy(p("user_key.pub"), p("authorized_keys")).expect("authorized_keys");
        // As root, sshd needs its privilege separation directory.
        if nix::unistd::geteuid().is_root() {
            std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        }
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .expect("the current user has a name");
        // A port taken and released just before sshd binds it: another test may take it in
        // between, which then shows as sshd failing to start (retried below).
        for _ in 0..5 {
            let port = closed_port();
            let config = format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nX11Forwarding no\nMaxStartups 100\nMaxSessions 100\n{extra}\n",
                p("host_key").display(),
                p("authorized_keys").display()
            );
            std::fs::write(p("sshd_config"), config).expect("sshd_config");
            let mut child = std::process::Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(p("sshd_config"))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn sshd");
            let stderr = child.stderr.take().expect("stderr");
            let (tx, rx) = std::sync::mpsc::channel();
            let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let keep = log.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    if let Ok(mut l) = keep.lock() {
                        l.push(line.clone());
                    }
                    let _ = tx.send(line);
                }
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut seen = Vec::new();
            let listening = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(l) if l.contains("Server listening") => break true,
                    Ok(l) => seen.push(l),
                    Err(_) => break false,
                }
            };
            if !listening {
                let _ = child.kill();
                let _ = child.wait();
                assert!(
                    seen.iter().any(|l| l.contains("Address already in use")),
                    "sshd did not start: {seen:?}"
                );
                continue;
            }
            let host_key = std::fs::read_to_string(p("host_key.pub")).expect("host key");
            let known = host_key
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            std::fs::write(p("known_hosts"), format!("[127.0.0.1]:{port} {known}\n"))
                .expect("known_hosts");
            std::fs::write(p("ssh_config"), "").expect("ssh_config");
            return Sshd {
                port,
                user,
                key: p("user_key"),
                known_hosts: p("known_hosts"),
                config: p("ssh_config"),
                dir,
                child,
                log,
            };
        }
        panic!("sshd could not get a free port in five tries");
    }

    /// How many of sshd's log lines contain `needle` so far (`Accepted publickey`: logins).
    pub fn logged(&self, needle: &str) -> usize {
        self.log
            .lock()
            .map(|l| l.iter().filter(|l| l.contains(needle)).count())
            .unwrap_or_default()
    }

    /// The `target:` fields that reach this server as the test's user with the test's key.
    pub fn target_fields(&self) -> String {
        format!(
            "port: {}, user: {}, identity: {{file: {}}}, known_hosts: {}, config: {}, connect_timeout: 5s",
            self.port,
            self.user,
            self.key.display(),
            self.known_hosts.display(),
            self.config.display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Processes whose command line contains `needle` (zombies have none and do not count).
pub fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
            if text.contains(needle) {
                found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// A `/metrics` answer, parsed as the Prometheus text format (failing the test when it is not).
pub fn parse_metrics(text: &str) -> prometheus_parse::Scrape {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("Prometheus text format")
}

/// The sum of the samples of `name` (with `label`, when given).
pub fn sample(metrics: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    metrics
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// The metrics of an in-process daemon.
pub async fn scrape(d: &Running) -> prometheus_parse::Scrape {
    let r = d
        .client
        .get(format!("{}/metrics", d.base))
        .send()
        .await
        .expect("scrape");
    parse_metrics(&r.text().await.unwrap_or_default())
}
