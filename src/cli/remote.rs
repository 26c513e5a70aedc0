//! Talking to a daemon over its HTTP API (found by [`super::connect`]).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::run::event::RunEvent;

/// A daemon's API.
pub struct Remote {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Remote {
    /// A client of the daemon at `server` (token from UNTOIL_TOKEN).
    pub fn new(server: &str) -> Result<Remote> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        crate::exec::step::http::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .build()
            .context("cannot build an HTTP client")?;
        let base = server.trim_end_matches('/').to_string();
        let token = std::env::var("UNTOIL_TOKEN").ok().filter(|t| !t.is_empty());
        Ok(Remote {
            base,
            token,
            client,
            runtime,
        })
    }

    /// Whether the daemon answers its health check.
    pub fn healthy(&self) -> bool {
        self.runtime.block_on(async {
            self.client
                .get(format!("{}/healthz", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
    }

    /// The id of the store the daemon serves.
    pub fn store_id(&self) -> Result<String> {
        let body: Value = serde_json::from_str(&self.get("/api/v1/store", &[])?)
            .context("the daemon's /api/v1/store answer is not JSON")?;
        body["id"]
            .as_str()
            .map(String::from)
            .context("the daemon's /api/v1/store answer has no id")
    }

    /// The daemon's address.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    fn send(&self, req: reqwest::RequestBuilder) -> Result<(u16, String)> {
        self.runtime.block_on(async {
            let r = req.send().await.context("the daemon did not answer")?;
            let status = r.status().as_u16();
            Ok((status, r.text().await.unwrap_or_default()))
        })
    }

    fn checked(&self, req: reqwest::RequestBuilder) -> Result<String> {
        let (status, body) = self.send(req)?;
        if status == 401 {
            bail!(
                "the daemon at {} wants credentials: set UNTOIL_TOKEN",
                self.base
            );
        }
        if !(200..300).contains(&status) {
            let msg = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(String::from))
                .unwrap_or(body);
            bail!("{msg}");
        }
        Ok(body)
    }

    /// GET with query parameters, returning the body text.
    pub fn get(&self, path: &str, query: &[(&str, String)]) -> Result<String> {
        self.checked(self.request(reqwest::Method::GET, path).query(query))
    }

    /// POST JSON returning the parsed answer.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let text = self.checked(self.request(reqwest::Method::POST, path).json(body))?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Streams a run's events until it finishes.
    pub fn follow(&self, id: &str, mut on_event: impl FnMut(&RunEvent)) -> Result<()> {
        let req = self.request(reqwest::Method::GET, &format!("/api/v1/runs/{id}/events"));
        self.runtime.block_on(async {
            let mut resp = req.send().await.context("the daemon did not answer")?;
            let mut pending = Vec::new();
            while let Some(chunk) = resp.chunk().await.context("event stream broke")? {
                pending.extend_from_slice(&chunk);
                while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=pos).collect();
                    if let Ok(event) = serde_json::from_slice::<RunEvent>(&line) {
                        on_event(&event);
                    }
                }
            }
            Ok(())
        })
    }
}
