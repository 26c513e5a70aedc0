//! A headless Chromium driven through chromedriver (WebDriver), for the tests that need a real
//! browser (the dashboard, cross-site attacks). Needs `chromium` and `chromedriver` on the PATH
//! (`apt-get install -y chromium chromium-driver`, or `scripts/test-deps`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::Running;
pub use crate::common::until;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// chromedriver, killed when dropped, and the browser profile directory.
pub struct Browser {
    driver: Child,
    port: u16,
    client: Option<Client>,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Asks chromedriver to shut down (it closes its browsers, also after a failed test left a
    /// session open), then makes sure it is gone.
    fn drop(&mut self) {
        use std::io::Write;
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(
                b"GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.driver.try_wait(), Ok(Some(_))) {
                self.kill_browsers();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        self.kill_browsers();
    }
}

impl Browser {
    /// Kills any Chromium process still running on this browser's profile (a test that panicked
    /// mid-session can leave them behind chromedriver).
    fn kill_browsers(&self) {
        let marker = format!("--user-data-dir={}", self._profile.path().display());
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == marker.as_bytes())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn find_program(names: &[&str]) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
            .map(|p| p.display().to_string())
    })
}

impl Browser {
    pub async fn start() -> Browser {
        Browser::start_with(&[]).await
    }

    /// A browser with extra Chromium flags (`--force-dark-mode` for the dark theme).
    pub async fn start_with(extra: &[&str]) -> Browser {
        Browser::launch(extra, None).await
    }

    /// A browser emulating a phone `width` x `height` CSS pixels wide (Chromium's mobile
    /// emulation: touch, a device pixel ratio of 2, and the page's viewport meta tag applies as
    /// on a phone: without one a page is laid out 980 px wide and zoomed out).
    pub async fn start_phone(width: u32, height: u32) -> Browser {
        let phone = json!({
            "deviceMetrics": { "width": width, "height": height, "pixelRatio": 2.0, "touch": true },
        });
        Browser::launch(&[], Some(phone)).await
    }

    async fn launch(extra: &[&str], phone: Option<Value>) -> Browser {
        let driver_bin = find_program(&["chromedriver"]).unwrap_or_else(|| {
            panic!(
                "chromedriver is not installed: run `apt-get install -y chromium chromium-driver` \
                 (or scripts/test-deps) to run the dashboard browser tests"
            )
        });
        let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"])
            .unwrap_or_else(|| {
                panic!(
                    "chromium is not installed: run `apt-get install -y chromium chromium-driver` \
                     (or scripts/test-deps) to run the dashboard browser tests"
                )
            });
        let port = free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_bin}: {e}"));
        let profile = tempfile::tempdir().expect("profile dir");
        let mut browser = Browser {
            driver,
            port,
            client: None,
            _profile: profile,
        };
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        until("chromedriver to be ready", || async {
            let r = http.get(format!("{url}/status")).send().await.ok()?;
            let v: Value = r.json().await.ok()?;
            (v["value"]["ready"] == true).then_some(())
        })
        .await;
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,900",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
        args.push(format!(
            "--user-data-dir={}",
            browser._profile.path().display()
        ));
        let mut caps = serde_json::Map::new();
        let mut options = json!({ "binary": chromium, "args": args });
        if let Some(phone) = phone {
            options["mobileEmulation"] = phone;
        }
        caps.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| {
                panic!("cannot start a Chromium session through chromedriver: {e}")
            });
        browser.client = Some(client);
        browser
    }

    pub fn c(&self) -> &Client {
        self.client.as_ref().expect("session")
    }

    pub async fn open(&self, d: &Running, path: &str) {
        self.c()
            .goto(&format!("{}{path}", d.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    pub async fn text(&self, css: &str) -> String {
        self.c()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("element {css}: {e}"))
            .text()
            .await
            .unwrap_or_default()
    }

    /// The text of `css` once it is present (the page may be refreshing).
    pub async fn text_when(&self, css: &str) -> Option<String> {
        match self.c().find(Locator::Css(css)).await {
            Ok(e) => e.text().await.ok(),
            Err(_) => None,
        }
    }

    pub async fn count(&self, css: &str) -> usize {
        self.c()
            .find_all(Locator::Css(css))
            .await
            .map_or(0, |v| v.len())
    }

    /// Saves a screenshot as target/dashboard-{name}.png (for a look by eye).
    pub async fn shot(&self, name: &str) -> Vec<u8> {
        let png = self.c().screenshot().await.expect("screenshot");
        let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&target).expect("target dir");
        std::fs::write(target.join(format!("dashboard-{name}.png")), &png)
            .expect("save screenshot");
        png
    }

    pub async fn quit(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }
}
