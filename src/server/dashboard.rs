//! The toil dashboard: server-rendered HTML pages at `/` and `/ui/...` (overview, automation
//! backlog, runbooks, runs, approvals). Every figure comes from the API handlers the CLI uses
//! (called in-process), so the numbers match exactly. Assets are embedded; the only script
//! refreshes a page when runs change. Actions are form POSTs guarded by a per-process CSRF
//! token and an Origin / Sec-Fetch-Site check. Docs: docs/dashboard.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use axum::Router;
use axum::extract::{Path, Query, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, body::Bytes};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde_json::Value;

use crate::engine::error::AcceptError;
use crate::run::id::RunId;
use crate::server::api;
use crate::server::respond::Caller;
use crate::server::state::Shared;

/// The dashboard's routes, behind the same authentication as the API.
pub fn router(daemon: Shared) -> Router<Shared> {
    Router::new()
        .route("/", get(overview))
        .route("/ui/backlog", get(backlog))
        .route("/ui/runbooks", get(runbooks))
        .route("/ui/runs", get(runs))
        .route("/ui/runs/{id}", get(run))
        .route("/ui/approvals", get(approvals))
        .route("/ui/stamp", get(stamp))
        .route("/ui/assets/app.css", get(css))
        .route("/ui/assets/app.js", get(js))
        .route("/ui/runs/{id}/approve", post(approve))
        .route("/ui/runs/{id}/deny", post(deny))
        .route("/ui/breakers/{runbook}/reset", post(reset))
        .layer(middleware::from_fn_with_state(
            daemon,
            crate::server::authenticate::authenticate,
        ))
        .layer(middleware::from_fn(basic_challenge))
}

/// Browsers only prompt for credentials on a challenge they understand as the first one, so
/// the dashboard's 401 offers basic auth alone.
async fn basic_challenge(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    if r.status() == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"untoil\", charset=\"UTF-8\""),
        );
    }
    r
}

/// The per-process CSRF token, from the OS random source (two ULIDs as a fallback).
pub fn csrf_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let mut bytes = [0u8; 32];
        let random = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
        if random.is_err() {
            let a = ulid::Ulid::new().0.to_le_bytes();
            let b = ulid::Ulid::new().0.to_le_bytes();
            bytes[..16].copy_from_slice(&a);
            bytes[16..].copy_from_slice(&b);
        }
        bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    })
}

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");
const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
];

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        JS,
    )
        .into_response()
}

// ---- helpers ----

/// HTML-escapes text (also safe in attribute values).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Characters left as they are in a path or query component (RFC 3986 unreserved).
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a query or path component.
fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
}

/// Decodes `application/x-www-form-urlencoded` pairs (with the url crates' own parser).
fn form(body: &[u8]) -> BTreeMap<String, String> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The JSON body of an API handler's response.
async fn json_of(r: Response) -> Value {
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// Builds an API query extractor from a query string.
fn query<T: serde::de::DeserializeOwned>(q: &str) -> Option<Query<T>> {
    let uri: axum::http::Uri = format!("/?{q}").parse().ok()?;
    Query::try_from_uri(&uri).ok()
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn time(v: &Value) -> String {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| {
            t.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or_else(|| "-".into())
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// `1.2 s`, `3m 04s`, `2h 05m`.
pub fn duration_ms(ms: u64) -> String {
    let s = ms / 1000;
    if ms < 1000 {
        format!("{ms} ms")
    } else if s < 60 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    }
}

fn status_badge(s: &str) -> String {
    format!("<span class=\"status {0}\">{0}</span>", esc(s))
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map(|r| format!("{:.1}%", r * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn csrf_field() -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        csrf_token()
    )
}

/// A signature of what the pages show that changes when runs are created or finish, when
/// approvals come and go and when breakers change.
///
/// Pages take it before they read anything, so a change made while a page is being rendered
/// makes the page's stamp stale and the next poll refreshes it. `run` adds that run's own state
/// (the run page of a run older than the latest 50).
async fn signature(d: &Shared, run: Option<String>) -> String {
    use sha2::Digest;
    let store = &d.engine.store;
    let mut h = sha2::Sha256::new();
    let filter = crate::store::RunFilter {
        runbook: None,
        status: None,
        limit: 50,
    };
    for r in store.list_runs(&filter).await.unwrap_or_default() {
        h.update(format!("{}:{}:{};", r.id, r.status, r.steps.len()));
    }
    if let Some(id) = run
        && let Ok(Some(r)) = store.get_run(&RunId(id)).await
    {
        h.update(format!("run {}:{}:{};", r.id, r.status, r.steps.len()));
    }
    for (rb, key, s) in store.guard_states().await.unwrap_or_default() {
        h.update(format!("{rb}:{key}:{};", s.breaker.is_some()));
    }
    h.finalize()[..12].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

async fn stamp(State(d): State<Shared>, RawQuery(q): RawQuery) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        signature(&d, raw_query(q).remove("run")).await,
    )
        .into_response()
}

/// Runs waiting for approval (counted, not rendered).
async fn pending_count(d: &Shared) -> usize {
    d.engine.approvals.count()
}

/// Wraps a page body in the layout; `stamp` is the [`signature`] taken before the body was read.
async fn page(d: &Shared, stamp: String, active: &str, title: &str, body: String) -> Response {
    let pending = pending_count(d).await;
    let mut nav = String::new();
    for (href, key, label) in [
        ("/", "overview", "Overview".to_string()),
        ("/ui/backlog", "backlog", "Automation backlog".to_string()),
        ("/ui/runbooks", "runbooks", "Runbooks".to_string()),
        ("/ui/runs", "runs", "Runs".to_string()),
        (
            "/ui/approvals",
            "approvals",
            if pending > 0 {
                format!("Approvals ({pending})")
            } else {
                "Approvals".to_string()
            },
        ),
    ] {
        let class = if key == active {
            " class=\"active\""
        } else {
            ""
        };
        let _ = write!(
            nav,
            "<a href=\"{href}\" id=\"nav-{key}\"{class}>{}</a>",
            esc(&label)
        );
    }
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"color-scheme\" content=\"light dark\">\
<title>{title} · untoil</title><link rel=\"stylesheet\" href=\"/ui/assets/app.css\"></head>\
<body data-stamp=\"{stamp}\" data-page=\"{active}\"><header><span class=\"brand\">untoil</span><nav>{nav}</nav></header>\
<main>{body}</main><script src=\"/ui/assets/app.js\"></script></body></html>\n",
        title = esc(title),
    );
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (
                header::HeaderName::from_static("x-frame-options"),
                "DENY",
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
            ),
        ],
        Html(html),
    )
        .into_response()
}

fn error_page(status: StatusCode, message: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{0}</title>\
<link rel=\"stylesheet\" href=\"/ui/assets/app.css\"></head><body><main><h1>{0}</h1>\
<p class=\"error\" id=\"error\">{1}</p><p><a href=\"/\">Overview</a> · <a href=\"/ui/approvals\">Approvals</a> · <a href=\"/ui/runbooks\">Runbooks</a></p></main></body></html>",
            status,
            esc(message)
        )),
    )
        .into_response()
}

const PERIODS: [(&str, &str); 4] = [("7d", "7d"), ("30d", "30d"), ("90d", "90d"), ("1y", "365d")];

fn period_of(q: &BTreeMap<String, String>) -> (&'static str, &'static str) {
    let want = q.get("period").map_or("30d", String::as_str);
    PERIODS
        .iter()
        .find(|(k, _)| *k == want)
        .copied()
        .unwrap_or(PERIODS[1])
}

fn selector(base: &str, current: &str, extra: &str) -> String {
    let mut s = String::from("<span class=\"selector\" id=\"period\">");
    for (k, _) in PERIODS {
        if k == current {
            let _ = write!(s, "<span>{k}</span>");
        } else {
            let _ = write!(s, "<a href=\"{base}?period={k}{extra}\">{k}</a>");
        }
    }
    s.push_str("</span>");
    s
}

fn raw_query(q: Option<String>) -> BTreeMap<String, String> {
    form(q.unwrap_or_default().as_bytes())
}

// ---- overview ----

/// ISO weeks (`2026-W48`) from the week of `from` to the week of `to`.
fn weeks(from: NaiveDate, to: NaiveDate) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut d = from;
    while d <= to {
        let w = d.iso_week();
        let label = format!("{}-W{:02}", w.year(), w.week());
        if out.last() != Some(&label) {
            out.push(label);
        }
        d += Duration::days(1);
    }
    out
}

/// A stacked bar chart of hours per week and series, as inline SVG.
pub fn chart_svg(weeks: &[String], series: &BTreeMap<String, BTreeMap<String, f64>>) -> String {
    let (w, h, left, right, top, bottom) = (860.0, 260.0, 48.0, 10.0, 10.0, 28.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let totals: Vec<f64> = weeks
        .iter()
        .map(|wk| {
            series
                .values()
                .map(|s| s.get(wk).copied().unwrap_or(0.0))
                .sum()
        })
        .collect();
    let max = totals.iter().copied().fold(0.0, f64::max);
    // A "nice" axis maximum.
    let nice = if max <= 0.0 {
        1.0
    } else {
        let mag = 10f64.powf(max.log10().floor());
        [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|v| *v >= max)
            .unwrap_or(10.0 * mag)
    };
    let mut s = format!(
        "<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"Hours of toil saved per week\" id=\"toil-chart\">"
    );
    for i in 0..=4 {
        let v = nice * i as f64 / 4.0;
        let y = top + plot_h - plot_h * i as f64 / 4.0;
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            w - right,
            left - 6.0,
            y + 4.0,
            if nice < 4.0 {
                format!("{v:.2}h")
            } else {
                format!("{v:.0}h")
            }
        );
    }
    let n = weeks.len().max(1) as f64;
    let slot = plot_w / n;
    let bar = (slot * 0.7).max(1.0);
    let every = (weeks.len() / 13).max(1);
    for (i, wk) in weeks.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = top + plot_h;
        for (j, (name, values)) in series.iter().enumerate() {
            let v = values.get(wk).copied().unwrap_or(0.0);
            if v <= 0.0 {
                continue;
            }
            let bh = plot_h * v / nice;
            y -= bh;
            let _ = write!(
                s,
                "<rect class=\"bar\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" fill=\"{}\" data-series=\"{}\" data-week=\"{}\" data-hours=\"{v}\"><title>{} {}: {v:.2} h</title></rect>",
                PALETTE[j % PALETTE.len()],
                esc(name),
                esc(wk),
                esc(name),
                esc(wk)
            );
        }
        if i % every == 0 {
            let label = wk.split_once('-').map_or(wk.as_str(), |(_, w)| w);
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                left + slot * i as f64 + slot / 2.0,
                h - 8.0,
                esc(label)
            );
        }
    }
    s.push_str("</svg>");
    s
}

async fn overview(State(d): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let stamp = signature(&d, None).await;
    let q = raw_query(q);
    let (period, since) = period_of(&q);
    let by = match q.get("by").map(String::as_str) {
        Some("runbook") => "runbook",
        _ => "team",
    };
    let report = match query(&format!("by={by},week&since={since}&format=json")) {
        Some(qq) => json_of(api::reports::toil(State(d.clone()), qq).await).await,
        None => Value::Null,
    };
    let backlog = match query(&format!("since={since}&format=json")) {
        Some(qq) => json_of(api::reports::unautomated(State(d.clone()), qq).await).await,
        None => Value::Null,
    };
    let total = &report["total"];
    let from = report["period"]["from"]
        .as_str()
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok());
    let to = report["period"]["to"]
        .as_str()
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok());
    let weeks = match (from, to) {
        (Some(f), Some(t)) => weeks(f, t),
        _ => Vec::new(),
    };
    let mut series: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mut per_series: BTreeMap<String, f64> = BTreeMap::new();
    for row in report["rows"].as_array().into_iter().flatten() {
        let name = text(&row["group"][0]);
        let week = text(&row["group"][1]);
        let hours = row["toil_hours"].as_f64().unwrap_or(0.0);
        *series
            .entry(name.clone())
            .or_default()
            .entry(week)
            .or_default() += hours;
        *per_series.entry(name).or_default() += hours;
    }
    let mttr = total["mttr_ms"]
        .as_u64()
        .map(duration_ms)
        .unwrap_or_else(|| "-".into());
    let coverage = pct(&backlog["coverage"]);
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Toil saved</h1><div class=\"toolbar\">{}<span class=\"selector\" id=\"by\">{}</span>\
<span class=\"muted\">{} .. {} (UTC days)</span></div>",
        selector("/", period, &format!("&by={by}")),
        ["team", "runbook"]
            .iter()
            .map(|b| if *b == by {
                format!("<span>by {b}</span>")
            } else {
                format!("<a href=\"/?period={period}&by={b}\">by {b}</a>")
            })
            .collect::<String>(),
        esc(&text(&report["period"]["from"])),
        esc(&text(&report["period"]["to"])),
    );
    let _ = write!(
        body,
        "<div class=\"cards\">\
<div class=\"card\"><div class=\"label\">Hours saved</div><div class=\"value\" id=\"total-hours\" data-value=\"{}\">{:.2}</div><div class=\"sub\">{:.1} minutes</div></div>\
<div class=\"card\"><div class=\"label\">Runs</div><div class=\"value\" id=\"total-runs\">{}</div><div class=\"sub\">{} failed · {} cancelled</div></div>\
<div class=\"card\"><div class=\"label\">Success rate</div><div class=\"value\" id=\"success-rate\">{}</div></div>\
<div class=\"card\"><div class=\"label\">Mean time to remediate</div><div class=\"value\" id=\"mttr\">{}</div><div class=\"sub\">alert start to run end</div></div>\
<div class=\"card\"><div class=\"label\">Coverage</div><div class=\"value\" id=\"coverage\">{}</div><div class=\"sub\">{} of {} alerts handled by automation</div></div>\
</div>",
        total["toil_hours"].as_f64().unwrap_or(0.0),
        total["toil_hours"].as_f64().unwrap_or(0.0),
        total["toil_minutes"].as_f64().unwrap_or(0.0),
        total["runs"].as_u64().unwrap_or(0),
        total["failed"].as_u64().unwrap_or(0),
        total["cancelled"].as_u64().unwrap_or(0),
        pct(&total["success_rate"]),
        mttr,
        coverage,
        backlog["alerts_handled"].as_u64().unwrap_or(0),
        backlog["alerts_received"].as_u64().unwrap_or(0),
    );
    let mut legend = String::new();
    for (j, (name, hours)) in per_series.iter().enumerate() {
        let _ = write!(
            legend,
            "<span><svg width=\"10\" height=\"10\" aria-hidden=\"true\"><rect width=\"10\" height=\"10\" rx=\"2\" fill=\"{}\"/></svg> {} <span class=\"muted\">{hours:.2} h</span></span>",
            PALETTE[j % PALETTE.len()],
            esc(name)
        );
    }
    if per_series.is_empty() {
        legend = "<span class=\"muted\">No toil credited in this period yet.</span>".into();
    }
    let _ = write!(
        body,
        "<div class=\"panel chart\"><h2>Hours saved per week, by {by}</h2>{}<div class=\"legend\">{legend}</div></div>",
        chart_svg(&weeks, &series)
    );
    page(&d, stamp, "overview", "Overview", body).await
}

// ---- backlog ----

async fn backlog(State(d): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let stamp = signature(&d, None).await;
    let q = raw_query(q);
    let (period, since) = period_of(&q);
    let b = match query(&format!("since={since}&format=json")) {
        Some(qq) => json_of(api::reports::unautomated(State(d.clone()), qq).await).await,
        None => Value::Null,
    };
    let mut body = format!(
        "<h1>Automation backlog</h1><div class=\"toolbar\">{}<span class=\"muted\">Alerts no runbook handles, most toil first. Coverage: <b id=\"coverage\">{}</b> ({} of {} alerts)</span></div>",
        selector("/ui/backlog", period, ""),
        pct(&b["coverage"]),
        b["alerts_handled"].as_u64().unwrap_or(0),
        b["alerts_received"].as_u64().unwrap_or(0),
    );
    body.push_str(
        "<div class=\"panel\"><table id=\"backlog\"><thead><tr><th>Alert</th><th>Labels</th><th class=\"num\">Count</th><th>Last seen</th>\
<th class=\"num\">Minutes each</th><th class=\"num\">A runbook would save</th></tr></thead><tbody>",
    );
    let rows = b["rows"].as_array().cloned().unwrap_or_default();
    for r in &rows {
        let labels: Vec<String> = r["group"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| *k != "alertname")
            .map(|(k, v)| format!("{}={}", esc(k), esc(&text(v))))
            .collect();
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"muted\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{:.2} h</td></tr>",
            esc(&text(&r["group"]["alertname"])),
            labels.join(", "),
            r["count"].as_u64().unwrap_or(0),
            time(&r["last_seen"]),
            r["minutes_each"].as_f64().unwrap_or(0.0),
            r["estimated_minutes"].as_f64().unwrap_or(0.0) / 60.0,
        );
    }
    if rows.is_empty() {
        body.push_str("<tr><td colspan=\"6\" class=\"muted\">Every alert in this period was handled by a runbook.</td></tr>");
    }
    body.push_str("</tbody></table></div>");
    page(&d, stamp, "backlog", "Automation backlog", body).await
}

// ---- runbooks ----

fn trigger_text(t: &Value) -> String {
    match t["kind"].as_str() {
        Some("schedule") => format!(
            "schedule <code>{}</code> ({})",
            esc(&text(&t["schedule"])),
            esc(&text(&t["timezone"]))
        ),
        Some("alert") => format!(
            "alert {}",
            t["matchers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| format!("<code>{}</code>", esc(&text(m))))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        _ => esc(&text(t)),
    }
}

async fn runbooks(State(d): State<Shared>) -> Response {
    let stamp = signature(&d, None).await;
    let list = json_of(api::runbooks::list(State(d.clone())).await).await;
    let errors = json_of(api::runbooks::errors(State(d.clone())).await).await;
    let breakers = json_of(api::breakers::list(State(d.clone())).await).await;
    let saved = match query("by=runbook&since=30d&format=json") {
        Some(qq) => json_of(api::reports::toil(State(d.clone()), qq).await).await,
        None => Value::Null,
    };
    let saved: BTreeMap<String, f64> = saved["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                text(&r["group"][0]),
                r["toil_hours"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    let mut body = String::from(
        "<h1>Runbooks</h1><div class=\"panel\"><table id=\"runbooks\"><thead><tr><th>Runbook</th><th>Owner</th><th>Service</th>\
<th>Triggers</th><th>Next fire</th><th>Last run</th><th class=\"num\">Saved (30d)</th><th>Breaker</th></tr></thead><tbody>",
    );
    let rbs = list.as_array().cloned().unwrap_or_default();
    for rb in &rbs {
        let name = text(&rb["name"]);
        let last = match query(&format!("runbook={}&limit=1", enc(&name))) {
            Some(qq) => json_of(api::runs::list(State(d.clone()), qq).await).await,
            None => Value::Null,
        };
        let last = match last.get(0) {
            Some(r) => format!(
                "<a href=\"/ui/runs/{}\">{}</a><div class=\"muted\">{}</div>",
                enc(&text(&r["id"])),
                status_badge(&text(&r["status"])),
                time(&r["created_at"])
            ),
            None => "<span class=\"muted\">never</span>".into(),
        };
        let mut breaker = String::new();
        for b in breakers.as_array().into_iter().flatten() {
            if b["runbook"] != rb["name"] || b["open"] != Value::Bool(true) {
                continue;
            }
            let key = text(&b["key"]);
            let _ = write!(
                breaker,
                "<div class=\"breaker\" data-key=\"{}\"><span class=\"status open\">open</span> \
<span class=\"muted\">{}{}</span> <form class=\"inline\" method=\"post\" action=\"/ui/breakers/{}/reset\">{}\
<input type=\"hidden\" name=\"key\" value=\"{}\"><button type=\"submit\" class=\"reset\">Reset</button></form></div>",
                esc(&key),
                if key.is_empty() {
                    String::new()
                } else {
                    format!("key {} · ", esc(&key))
                },
                esc(&text(&b["reason"])),
                enc(&name),
                csrf_field(),
                esc(&key),
            );
        }
        if breaker.is_empty() {
            breaker = "<span class=\"status closed\">closed</span>".into();
        }
        let triggers = rb["triggers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(trigger_text)
            .collect::<Vec<_>>();
        let file = text(&rb["file"]);
        let problems: Vec<String> = errors["diagnostics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| text(&e["file"]) == file && e["severity"] == "error")
            .map(|e| {
                format!(
                    "<div class=\"error\">{}:{}: {}</div>",
                    esc(&file),
                    text(&e["line"]),
                    esc(&text(&e["message"]))
                )
            })
            .collect();
        let _ = write!(
            body,
            "<tr data-runbook=\"{0}\"><td><a href=\"/ui/runs?runbook={1}\"><b>{0}</b></a><div class=\"muted\">{2}</div>{3}{4}</td><td>{5}</td><td>{6}</td><td>{7}</td><td>{8}</td><td>{9}</td><td class=\"num\">{10:.2} h</td><td>{11}</td></tr>",
            esc(&name),
            enc(&name),
            esc(&text(&rb["description"])),
            if rb["approval_required"] == Value::Bool(true) {
                "<div class=\"muted\">approval required</div>"
            } else {
                ""
            },
            problems.join(""),
            esc(&text(&rb["owner"])),
            esc(&text(&rb["service"])),
            if triggers.is_empty() {
                "<span class=\"muted\">manual only</span>".to_string()
            } else {
                triggers.join("<br>")
            },
            time(&rb["next_fire"]),
            last,
            saved.get(&name).copied().unwrap_or(0.0),
            breaker,
        );
    }
    if rbs.is_empty() {
        body.push_str("<tr><td colspan=\"8\" class=\"muted\">No runbooks loaded.</td></tr>");
    }
    body.push_str("</tbody></table></div>");
    let text_errors = text(&errors["text"]);
    if errors["diagnostics"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        let _ = write!(
            body,
            "<h2>Validation diagnostics</h2><div class=\"panel\"><pre id=\"validation\">{}</pre></div>",
            esc(&text_errors)
        );
    }
    page(&d, stamp, "runbooks", "Runbooks", body).await
}

// ---- runs ----

async fn runs(State(d): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let stamp = signature(&d, None).await;
    let q = raw_query(q);
    let want = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    let (runbook, status, cause) = (want("runbook"), want("status"), want("cause"));
    let mut api_q = String::from("limit=500");
    if let Some(r) = &runbook {
        let _ = write!(api_q, "&runbook={}", enc(r));
    }
    if let Some(s) = &status {
        let _ = write!(api_q, "&status={}", enc(s));
    }
    let list = match query(&api_q) {
        Some(qq) => json_of(api::runs::list(State(d.clone()), qq).await).await,
        None => Value::Null,
    };
    let names: Vec<String> = d
        .engine
        .runbooks
        .catalog()
        .names()
        .map(String::from)
        .collect();
    let select = |name: &str, options: &[String], current: &Option<String>| {
        let mut s =
            format!("<label>{name} <select name=\"{name}\"><option value=\"\">all</option>");
        for o in options {
            let sel = if current.as_deref() == Some(o.as_str()) {
                " selected"
            } else {
                ""
            };
            let _ = write!(s, "<option{sel}>{}</option>", esc(o));
        }
        s.push_str("</select></label> ");
        s
    };
    let statuses: Vec<String> = crate::run::status::RunStatus::ALL
        .iter()
        .map(|s| s.as_str().to_string())
        .collect();
    let causes: Vec<String> = ["manual", "schedule", "alert"].map(String::from).to_vec();
    let mut body = format!(
        "<h1>Runs</h1><form class=\"toolbar\" method=\"get\" action=\"/ui/runs\" id=\"filters\">{}{}{}<button type=\"submit\">Filter</button></form>",
        select("runbook", &names, &runbook),
        select("status", &statuses, &status),
        select("cause", &causes, &cause),
    );
    if let Value::Object(e) = &list {
        let _ = write!(
            body,
            "<p class=\"error\">{}</p>",
            esc(&text(&e.get("error").cloned().unwrap_or_default()))
        );
    }
    body.push_str(
        "<div class=\"panel\"><table id=\"runs\"><thead><tr><th>Run</th><th>Runbook</th><th>Cause</th><th>Status</th><th>Created</th>\
<th class=\"num\">Duration</th><th class=\"num\">Toil credited</th></tr></thead><tbody>",
    );
    let mut shown = 0;
    for r in list.as_array().into_iter().flatten() {
        if cause
            .as_deref()
            .is_some_and(|c| r["cause"]["kind"].as_str() != Some(c))
        {
            continue;
        }
        shown += 1;
        if shown > 100 {
            break;
        }
        let duration = match (parse_time(&r["started_at"]), parse_time(&r["finished_at"])) {
            (Some(s), Some(f)) => duration_ms((f - s).num_milliseconds().max(0) as u64),
            _ => "-".into(),
        };
        let id = text(&r["id"]);
        let _ = write!(
            body,
            "<tr data-run=\"{0}\" data-status=\"{5}\"><td><a href=\"/ui/runs/{1}\"><code>{0}</code></a></td><td>{2}</td><td>{3}</td><td>{4}</td><td>{6}</td><td class=\"num\">{7}</td><td class=\"num\">{8}</td></tr>",
            esc(&id),
            enc(&id),
            esc(&text(&r["runbook"])),
            esc(&text(&r["cause"]["kind"])),
            status_badge(&text(&r["status"])),
            esc(&text(&r["status"])),
            time(&r["created_at"]),
            duration,
            r["toil"]["minutes"]
                .as_f64()
                .map(|m| format!("{m:.1} min"))
                .unwrap_or_else(|| "-".into()),
        );
    }
    if shown == 0 {
        body.push_str("<tr><td colspan=\"7\" class=\"muted\">No runs match.</td></tr>");
    }
    body.push_str("</tbody></table></div>");
    page(&d, stamp, "runs", "Runs", body).await
}

async fn run(State(d): State<Shared>, Path(id): Path<String>) -> Response {
    let stamp = signature(&d, Some(id.clone())).await;
    let r = json_of(api::runs::one(State(d.clone()), Path(id.clone())).await).await;
    if r.get("id").is_none() {
        return error_page(StatusCode::NOT_FOUND, &format!("no run with id {id}"));
    }
    let status = text(&r["status"]);
    let mut body = format!(
        "<h1>Run <code>{}</code> of <a href=\"/ui/runs?runbook={}\">{}</a> <span id=\"run-status\" data-status=\"{3}\">{4}</span></h1>",
        esc(&id),
        enc(&text(&r["runbook"])),
        esc(&text(&r["runbook"])),
        esc(&status),
        status_badge(&status),
    );
    let cause = &r["cause"];
    let cause_text = match cause["kind"].as_str() {
        Some("manual") => format!("manual, by {}", esc(&text(&cause["user"]))),
        Some("schedule") => format!("schedule fire at {}", time(&cause["at"])),
        Some("alert") => format!(
            "alert (fingerprint <code>{}</code>)",
            esc(&text(&cause["fingerprint"]))
        ),
        _ => esc(&text(cause)),
    };
    let mut facts = vec![
        ("Cause", cause_text),
        ("Owner", esc(&text(&r["owner"]))),
        ("Service", esc(&text(&r["service"]))),
        ("Created", time(&r["created_at"])),
        ("Started", time(&r["started_at"])),
        ("Finished", time(&r["finished_at"])),
    ];
    if let (Some(s), Some(f)) = (parse_time(&r["started_at"]), parse_time(&r["finished_at"])) {
        facts.push((
            "Duration",
            duration_ms((f - s).num_milliseconds().max(0) as u64),
        ));
    }
    if !r["params"].as_object().is_none_or(|m| m.is_empty()) {
        facts.push((
            "Params",
            r["params"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("<code>{}={}</code>", esc(k), esc(&text(v))))
                .collect::<Vec<_>>()
                .join(" "),
        ));
    }
    if r["dry_run"] == Value::Bool(true) {
        facts.push(("Dry run", "yes".into()));
    }
    if let Some(a) = r["approval"].as_object() {
        facts.push((
            "Approval",
            format!(
                "{} by {} at {}",
                if a.get("approved") == Some(&Value::Bool(true)) {
                    "approved"
                } else {
                    "denied"
                },
                esc(&text(&a["by"])),
                time(&a["at"])
            ),
        ));
    }
    if !r["error"].is_null() {
        facts.push((
            "Error",
            format!("<span class=\"error\">{}</span>", esc(&text(&r["error"]))),
        ));
    }
    let toil = &r["toil"];
    facts.push((
        "Toil credited",
        if toil.is_null() {
            "<span class=\"muted\">not yet (credited when the run ends)</span>".into()
        } else {
            format!(
                "<b id=\"toil-minutes\">{:.1} min</b> <span class=\"muted\">{}</span>",
                toil["minutes"].as_f64().unwrap_or(0.0),
                esc(&text(&toil["reason"]))
            )
        },
    ));
    if cause["kind"] == "alert" {
        let labels = cause["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("<code>{}=\"{}\"</code>", esc(k), esc(&text(v))))
            .collect::<Vec<_>>()
            .join(" ");
        facts.push(("Alert labels", labels));
        if let Some(summary) = r["alert"]["alert"]["annotations"]["summary"].as_str() {
            facts.push(("Summary", esc(summary)));
        }
        let ttr = match (
            parse_time(&cause["starts_at"]),
            parse_time(&r["finished_at"]),
        ) {
            (Some(s), Some(f)) if status == "succeeded" => {
                duration_ms((f - s).num_milliseconds().max(0) as u64)
            }
            _ => "-".into(),
        };
        facts.push((
            "Time to remediate",
            format!("<span id=\"ttr\">{ttr}</span>"),
        ));
        if let Some(v) = r["verification"].as_object() {
            facts.push((
                "Verified",
                format!(
                    "{} at {}",
                    if v.get("verified") == Some(&Value::Bool(true)) {
                        "alert resolved"
                    } else {
                        "alert did not resolve"
                    },
                    time(&v["at"])
                ),
            ));
        }
    }
    body.push_str("<div class=\"panel\"><table id=\"facts\">");
    for (k, v) in facts {
        let _ = write!(body, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    body.push_str("</table></div><h2>Steps</h2><div class=\"panel\"><table id=\"steps\"><thead><tr><th>Step</th><th>Kind</th><th>Status</th>\
<th class=\"num\">Duration</th><th class=\"num\">Attempts</th><th>Output</th></tr></thead><tbody>");
    let steps = r["steps"].as_array().cloned().unwrap_or_default();
    for s in &steps {
        let mut out = String::new();
        for (label, key) in [
            ("stdout", "stdout"),
            ("stderr", "stderr"),
            ("body", "body"),
            ("message", "message"),
            ("error", "error"),
        ] {
            let v = text(&s[key]);
            if !v.is_empty() {
                let _ = write!(
                    out,
                    "<div class=\"muted\">{label}</div><pre class=\"output {key}\">{}</pre>",
                    esc(&v)
                );
            }
        }
        if let Some(code) = s["exit_code"].as_i64() {
            let _ = write!(out, "<div class=\"muted\">exit code {code}</div>");
        }
        if let Some(code) = s["http_status"].as_u64() {
            let _ = write!(out, "<div class=\"muted\">HTTP {code}</div>");
        }
        let st = s["status"].as_str().unwrap_or("running");
        let _ = write!(
            body,
            "<tr data-step=\"{0}\"><td>{0}{5}</td><td>{1}</td><td>{2}</td><td class=\"num\">{3}</td><td class=\"num\">{4}</td><td>{6}</td></tr>",
            esc(&text(&s["name"])),
            esc(&text(&s["kind"])),
            status_badge(st),
            duration_ms(s["duration_ms"].as_u64().unwrap_or(0)),
            s["attempts"].as_u64().unwrap_or(0),
            s["toil_minutes"]
                .as_f64()
                .map(|m| format!("<div class=\"muted\">{m:.1} min toil</div>"))
                .unwrap_or_default(),
            out,
        );
    }
    if steps.is_empty() {
        body.push_str("<tr><td colspan=\"6\" class=\"muted\">No steps ran yet.</td></tr>");
    }
    body.push_str("</tbody></table></div>");
    page(&d, stamp, "runs", &format!("Run {id}"), body).await
}

// ---- approvals ----

async fn approvals(State(d): State<Shared>) -> Response {
    let stamp = signature(&d, None).await;
    let list = json_of(api::approvals::list(State(d.clone())).await).await;
    let mut body = String::from("<h1>Approvals</h1>");
    let items = list.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        body.push_str(
            "<p class=\"muted\" id=\"no-approvals\">No runs are waiting for approval.</p>",
        );
    }
    for a in &items {
        let r = &a["run"];
        let id = text(&r["id"]);
        let cause = &r["cause"];
        let who = match cause["kind"].as_str() {
            Some("manual") => format!("requested by {}", esc(&text(&cause["user"]))),
            Some("alert") => format!(
                "for alert {}",
                cause["labels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("<code>{}=\"{}\"</code>", esc(k), esc(&text(v))))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Some("schedule") => format!("for the schedule fire at {}", time(&cause["at"])),
            _ => String::new(),
        };
        let _ = write!(
            body,
            "<div class=\"panel approval\" data-run=\"{0}\"><h2><a href=\"/ui/runs/{1}\"><code>{0}</code></a> · {2}</h2>\
<p class=\"muted\">{3} · created {4} · expires {5}</p><table class=\"plan\"><thead><tr><th>Step</th><th>Kind</th><th>When</th><th>Will execute</th></tr></thead><tbody>",
            esc(&id),
            enc(&id),
            esc(&text(&r["runbook"])),
            who,
            time(&r["created_at"]),
            time(&a["expires_at"]),
        );
        for s in a["plan"].as_array().into_iter().flatten() {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
                esc(&text(&s["name"])),
                esc(&text(&s["kind"])),
                esc(&text(&s["when"])),
                esc(&text(&s["detail"])),
            );
        }
        if a["plan"].is_null() {
            body.push_str("<tr><td colspan=\"4\" class=\"error\">The plan cannot be rendered (runbook missing or invalid).</td></tr>");
        }
        let _ = write!(
            body,
            "</tbody></table><p><form class=\"inline\" method=\"post\" action=\"/ui/runs/{0}/approve\">{1}<button type=\"submit\" class=\"approve\">Approve</button></form> \
<form class=\"inline\" method=\"post\" action=\"/ui/runs/{0}/deny\">{1}<button type=\"submit\" class=\"deny\">Deny</button></form></p></div>",
            enc(&id),
            csrf_field(),
        );
    }
    page(&d, stamp, "approvals", "Approvals", body).await
}

// ---- actions ----

/// Checks a dashboard POST: the CSRF token (form field `csrf` or header `X-CSRF-Token`) must
/// match this process's token, and a browser's Origin / Sec-Fetch-Site must be this site.
pub fn check_csrf(headers: &HeaderMap, fields: &BTreeMap<String, String>) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(format!(
            "cross-site request refused (Sec-Fetch-Site: {site})"
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if host.is_empty() || origin_host != host {
            return Err(format!("cross-origin request refused (Origin: {origin})"));
        }
    }
    let given = fields
        .get("csrf")
        .map(String::as_str)
        .or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()))
        .unwrap_or("");
    let want = csrf_token();
    let (a, b) = (given.as_bytes(), want.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0)) as usize;
    }
    if diff != 0 {
        return Err("missing or invalid CSRF token; reload the page and try again".into());
    }
    Ok(())
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

fn refused(e: AcceptError) -> Response {
    let status = match e {
        AcceptError::Invalid(_) => StatusCode::NOT_FOUND,
        AcceptError::Conflict(_) => StatusCode::CONFLICT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    error_page(status, &e.to_string())
}

async fn decide(
    d: Shared,
    caller: Caller,
    headers: HeaderMap,
    id: String,
    body: Bytes,
    approve: bool,
) -> Response {
    if let Err(e) = check_csrf(&headers, &form(&body)) {
        return error_page(StatusCode::FORBIDDEN, &e);
    }
    let run_id = RunId(id.clone());
    let by = caller.0;
    match d.engine.approvals.decide(&run_id, approve, &by).await {
        Ok(_) => see_other(&format!("/ui/runs/{}", enc(&id))),
        Err(e) => refused(e),
    }
}

async fn approve(
    State(d): State<Shared>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    decide(d, caller, headers, id, body, true).await
}

async fn deny(
    State(d): State<Shared>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    decide(d, caller, headers, id, body, false).await
}

async fn reset(
    State(d): State<Shared>,
    headers: HeaderMap,
    Path(runbook): Path<String>,
    body: Bytes,
) -> Response {
    let fields = form(&body);
    if let Err(e) = check_csrf(&headers, &fields) {
        return error_page(StatusCode::FORBIDDEN, &e);
    }
    let key = fields.get("key").cloned();
    match d.engine.reset_breakers(&runbook, key.as_deref()).await {
        Ok(_) => see_other("/ui/runbooks"),
        Err(e) => refused(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_percent_and_plus() {
        let f = form(b"csrf=ab%2Fc&key=a+b&empty=&x");
        assert_eq!(f["csrf"], "ab/c");
        assert_eq!(f["key"], "a b");
        assert_eq!(f["empty"], "");
        assert_eq!(f["x"], "");
        assert_eq!(form(b"k=%")["k"], "%");
        assert_eq!(form(b"k=%4")["k"], "%4");
    }

    #[test]
    fn escaping_covers_html_specials() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn csrf_needs_the_token_and_a_same_origin() {
        let mut fields = BTreeMap::new();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(check_csrf(&h, &fields).is_err());
        fields.insert("csrf".to_string(), csrf_token().to_string());
        assert!(check_csrf(&h, &fields).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(check_csrf(&h, &fields).is_err());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(check_csrf(&h, &fields).is_err());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(check_csrf(&h, &fields).is_ok());
    }

    #[test]
    fn weeks_span_the_period() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default();
        assert_eq!(
            weeks(d("2026-11-22"), d("2026-11-28")),
            ["2026-W47", "2026-W48"]
        );
    }
}
