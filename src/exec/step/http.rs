//! `http:` steps: one HTTP request with reqwest (rustls), checked against `expect_status`.

use std::time::Duration;

use chrono::Utc;
use reqwest::Method;

use crate::exec::capture::Capture;
use crate::exec::redact_stream::StreamRedactor;
use crate::run::status::StepStatus;
use crate::run::step::StepResult;
use crate::runbook::model::{HttpRequest, Step};

use crate::exec::step::attempt::{Attempt, failed_before_start, parse_json};
use crate::exec::step::env::StepEnv;

struct Rendered {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    json: Option<serde_json::Value>,
    body: Option<String>,
}

fn render(req: &HttpRequest, env: &StepEnv<'_>) -> Result<Rendered, String> {
    let plain = |t| env.renderer.plain(t, env.ctx).map_err(|e| e.0);
    let method = Method::from_bytes(req.method.as_bytes())
        .map_err(|_| format!("invalid HTTP method `{}`", req.method))?;
    let url = crate::exec::url::url(env.renderer, &req.url, env.ctx, env.taint).map_err(|e| e.0)?;
    let headers = req
        .headers
        .iter()
        .map(|(k, v)| Ok((k.clone(), plain(v)?)))
        .collect::<Result<_, String>>()?;
    let query = req
        .query
        .iter()
        .map(|(k, v)| Ok((k.clone(), plain(v)?)))
        .collect::<Result<_, String>>()?;
    let json = match &req.json {
        Some(j) => Some(env.renderer.value(j, env.ctx).map_err(|e| e.0)?),
        None => None,
    };
    let body = match &req.body {
        Some(b) => Some(plain(b)?),
        None => None,
    };
    Ok(Rendered {
        method,
        url,
        headers,
        query,
        json,
        body,
    })
}

/// The request line and body as they would be sent (secrets still in: the caller redacts).
pub fn describe(req: &HttpRequest, env: &StepEnv<'_>) -> Result<String, String> {
    let r = render(req, env)?;
    let mut out = format!("{} {}", r.method, r.url);
    if !r.query.is_empty() {
        let q: Vec<String> = r.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(" (query {})", q.join("&")));
    }
    for (k, v) in &r.headers {
        out.push_str(&format!("\n  {k}: {v}"));
    }
    if let Some(j) = &r.json {
        out.push_str(&format!("\n  {j}"));
    }
    if let Some(b) = &r.body {
        out.push_str(&format!("\n  {b}"));
    }
    Ok(out)
}

/// Sends the request once.
pub async fn run(step: &Step, req: &HttpRequest, env: &StepEnv<'_>) -> Attempt {
    let r = match render(req, env) {
        Ok(r) => r,
        Err(e) => return failed_before_start(e),
    };
    let url = match reqwest::Url::parse(&r.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        Ok(u) => {
            return failed_before_start(format!(
                "URL scheme `{}` is not http or https",
                u.scheme()
            ));
        }
        Err(e) => {
            return failed_before_start(format!(
                "invalid URL `{}`: {e}",
                env.redactor.redact(&r.url)
            ));
        }
    };
    let timeout = req.timeout.unwrap_or(step.timeout).min(step.timeout);
    let mut builder = env.http.request(r.method, url).timeout(timeout);
    for (k, v) in &r.headers {
        builder = builder.header(k, v);
    }
    if !r.query.is_empty() {
        builder = builder.query(&r.query);
    }
    if let Some(j) = &r.json {
        builder = builder.json(j);
    } else if let Some(b) = r.body {
        builder = builder.body(b);
    }
    let started_at = Utc::now();
    let send = async {
        let resp = builder.send().await?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).to_string(),
                )
            })
            .collect();
        // Redacted before the capture cuts it, so its head and tail hold no part of a secret.
        let mut capture = Capture::default();
        let mut redactor = StreamRedactor::new(env.redactor.clone());
        let mut resp = resp;
        while let Some(chunk) = resp.chunk().await? {
            capture.push(&redactor.push(&chunk));
        }
        capture.push(&redactor.finish());
        Ok::<_, reqwest::Error>((status, headers, capture))
    };
    let outcome = tokio::select! {
        r = send => Some(r),
        _ = env.cancel.cancelled() => None,
    };
    let mut result = StepResult {
        started_at: Some(started_at),
        ..Default::default()
    };
    let retryable;
    match outcome {
        None => {
            result.status = Some(StepStatus::Cancelled);
            result.error = Some("cancelled while the request was in flight".into());
            retryable = false;
        }
        Some(Err(e)) => {
            let timed_out = e.is_timeout();
            result.status = Some(if timed_out {
                StepStatus::TimedOut
            } else {
                StepStatus::Failed
            });
            result.error = Some(if timed_out {
                format!(
                    "request timed out after {}",
                    crate::runbook::model::format_duration(timeout)
                )
            } else {
                format!("request failed: {}", error_chain(&e))
            });
            retryable = true;
        }
        Some(Ok((status, headers, body))) => {
            result.http_status = Some(status);
            result.headers = headers;
            result.body = body.text();
            result.json = parse_json(&result.body);
            let ok = if req.expect_status.is_empty() {
                (200..300).contains(&status)
            } else {
                req.expect_status.contains(&status)
            };
            if ok {
                result.status = Some(StepStatus::Succeeded);
                retryable = false;
            } else {
                let expected = if req.expect_status.is_empty() {
                    "2xx".to_string()
                } else {
                    req.expect_status
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                result.status = Some(StepStatus::Failed);
                result.error = Some(format!("HTTP status {status}, expected {expected}"));
                retryable = status >= 500;
            }
        }
    }
    Attempt { result, retryable }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Installs rustls' ring provider: reqwest is built without a default one, and panics when a
/// client is built before one is installed. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the shared client of HTTP steps (rustls on ring).
pub fn client() -> Result<reqwest::Client, String> {
    install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(concat!("untoil/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}
