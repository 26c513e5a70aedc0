//! Helpers shared by the integration tests that start the daemon.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use untoil::daemon;
use untoil::daemon::settings::Settings;

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/alertmanager")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} must exist: {e}", path.display()))
}

pub struct Dirs {
    pub root: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Dirs {
        let root = tempfile::tempdir().expect("tempdir");
        for d in ["runbooks", "plugins", "data"] {
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
    pub fn settings(&self) -> Settings {
        let mut s = Settings::new(
            self.path("runbooks"),
            self.path("plugins"),
            self.path("data"),
        );
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

    pub async fn runs(&self) -> Vec<Value> {
        self.get("/api/v1/runs?limit=1000")
            .await
            .1
            .as_array()
            .cloned()
            .unwrap_or_default()
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

/// The real `untoil serve` binary as a child process: what an operator runs, with its own
/// environment and its log (stderr, in the given `--log-format`) written to a file.
pub struct Served {
    pub base: String,
    pub log: PathBuf,
    child: std::process::Child,
    pub client: reqwest::Client,
}

impl Served {
    /// Starts `untoil serve` on the runbooks, plugins and store of `dirs`, on a free loopback
    /// port (read back from the store's `daemon.json`), with `env` added to its environment.
    pub async fn start(dirs: &Dirs, log_format: &str, env: &[(&str, &str)]) -> Served {
        let log = dirs.path(&format!("serve-{log_format}.log"));
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_untoil"));
        cmd.current_dir(dirs.root.path())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                log_format,
            ])
            .args(["--shutdown-grace", "5s"]);
        for (k, v) in cli_env(dirs) {
            cmd.env(k, v);
        }
        for k in [
            "UNTOIL_SERVER",
            "UNTOIL_TOKEN",
            "UNTOIL_TOKEN_FILE",
            "UNTOIL_BASIC_AUTH",
        ] {
            cmd.env_remove(k);
        }
        cmd.env("UNTOIL_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(stderr);
        let child = cmd.spawn().expect("start untoil serve");
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(20);
        let base = loop {
            match daemon::locator::read(&dirs.path("data")) {
                Some(l) if l.pid == pid => break l.url,
                _ => {
                    assert!(
                        Instant::now() < deadline,
                        "untoil serve did not start: see {}",
                        log.display()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        untoil::exec::step::http::install_crypto_provider();
        let served = Served {
            base,
            log,
            child,
            client: reqwest::Client::new(),
        };
        while served.text("/healthz").await.0 != 200 {
            assert!(Instant::now() < deadline, "untoil serve is not healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        served
    }

    /// GET: the status and the body as text.
    pub async fn text(&self, path: &str) -> (u16, String) {
        match self.client.get(format!("{}{path}", self.base)).send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
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

    /// Stops it as an operator does (SIGTERM) and waits for it to exit.
    pub async fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(
                Instant::now() < deadline,
                "untoil serve did not stop on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // A failed test must not leave the daemon running.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The environment that points `untoil` commands at the directories of `dirs`.
pub fn cli_env(dirs: &Dirs) -> Vec<(&'static str, PathBuf)> {
    vec![
        ("UNTOIL_RUNBOOKS", dirs.path("runbooks")),
        ("UNTOIL_PLUGINS", dirs.path("plugins")),
        ("UNTOIL_DATA", dirs.path("data")),
    ]
}
