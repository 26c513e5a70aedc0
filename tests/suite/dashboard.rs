//! The dashboard in a real browser: headless Chromium driven through chromedriver (WebDriver,
//! `browser.rs`) against an in-process daemon.

use crate::browser::{Browser, until};
use crate::common;

use common::{Dirs, Running, fixture};
use fantoccini::Locator;
use serde_json::{Value, json};

/// A webhook body with one firing alert.
fn alert(name: &str, fingerprint: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("firing.json")).expect("fixture json");
    v["alerts"][0]["labels"]["alertname"] = json!(name);
    v["alerts"][0]["fingerprint"] = json!(fingerprint);
    serde_json::to_vec(&v).expect("json")
}

async fn post_alert(d: &Running, body: Vec<u8>) -> Value {
    let (status, v, _) = d.post("/api/v1/alerts/alertmanager", body).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn start_manual(d: &Running, runbook: &str) -> String {
    let (status, v, _) = d
        .post(&format!("/api/v1/runbooks/{runbook}/runs"), b"{}".to_vec())
        .await;
    assert_eq!(status, 202, "{v}");
    v["id"].as_str().expect("run id").to_string()
}

async fn run_status(d: &Running, id: &str) -> Value {
    d.get(&format!("/api/v1/runs/{id}")).await.1
}

fn seed_runbooks(dirs: &Dirs) {
    dirs.runbook(
        "disk-cleanup",
        "name: disk-cleanup\ndescription: frees disk space\nowner: team-storage\nservice: db\n\
toil: {manual_minutes: 30}\ntriggers:\n  - alert: {matchers: ['alertname=\"DiskFull\"']}\n\
steps:\n  - name: clean\n    run: echo 'cleaned <b>/var/log</b> & tmp'\n",
    );
    dirs.runbook(
        "restart-web",
        "name: restart-web\nowner: team-web\nservice: web\ntoil: {manual_minutes: 12.5}\n\
steps:\n  - name: restart\n    run: echo restarted\n",
    );
    dirs.runbook(
        "rotate-keys",
        "name: rotate-keys\nowner: team-web\ntoil: {manual_minutes: 5}\n\
triggers:\n  - schedule: \"0 3 29 2 *\"\nsteps:\n  - name: rotate\n    run: exit 3\n",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_and_the_overview_shows_the_totals_of_the_report_api() {
    let dirs = Dirs::new();
    seed_runbooks(&dirs);
    dirs.runbook("broken", "name: broken\nowner: team-x\nsteps: 3\n");
    let d = Running::start(dirs.settings()).await;
    post_alert(&d, fixture("firing.json")).await;
    post_alert(&d, alert("HighLatency", "f-latency-1")).await;
    post_alert(&d, alert("HighLatency", "f-latency-2")).await;
    for _ in 0..3 {
        start_manual(&d, "restart-web").await;
    }
    start_manual(&d, "rotate-keys").await;
    let runs = d.wait_runs_final(5).await;
    assert_eq!(runs.len(), 5, "{runs:?}");

    let b = Browser::start().await;
    // Overview: the figures are the report API's.
    b.open(&d, "/?period=30d&by=team").await;
    let (_, report) = d
        .get("/api/v1/reports/toil?by=team,week&since=30d&format=json")
        .await;
    let hours = report["total"]["toil_hours"].as_f64().expect("total hours");
    assert!(hours > 0.0, "{report}");
    assert_eq!(b.text("#total-hours").await, format!("{hours:.2}"));
    assert_eq!(
        b.text("#total-runs").await,
        report["total"]["runs"].to_string()
    );
    let bars = b
        .c()
        .find_all(Locator::Css("#toil-chart rect.bar"))
        .await
        .expect("bars");
    assert!(!bars.is_empty(), "the chart draws bars");
    let mut charted = 0.0;
    for bar in &bars {
        charted += bar
            .attr("data-hours")
            .await
            .ok()
            .flatten()
            .and_then(|h| h.parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    assert!(
        (charted - hours).abs() < 1e-9,
        "bars add up to {charted}, the report says {hours}"
    );
    let (_, backlog) = d.get("/api/v1/reports/unautomated?since=30d").await;
    let coverage = backlog["coverage"].as_f64().expect("coverage");
    assert_eq!(
        b.text("#coverage").await,
        format!("{:.1}%", coverage * 100.0)
    );
    let png = b.shot("overview").await;
    // The README's picture: written when missing, refreshed with UPDATE_DASHBOARD_PNG=1.
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
    if !docs.exists() || std::env::var_os("UPDATE_DASHBOARD_PNG").is_some() {
        std::fs::write(docs, &png).expect("save docs screenshot");
    }
    // The period selector and grouping are links to the same page.
    b.open(&d, "/?period=7d&by=runbook").await;
    assert!(b.text("#period").await.contains("7d"));
    assert!(b.text(".legend").await.contains("restart-web"));

    // Backlog: the unautomated alert, ranked, with the estimate.
    b.open(&d, "/ui/backlog").await;
    let table = b.text("#backlog").await;
    assert!(table.contains("HighLatency"), "{table}");
    assert!(
        !table.contains("DiskFull"),
        "handled alerts are not backlog: {table}"
    );
    assert!(table.contains("0.50 h"), "2 alerts x 15 min: {table}");
    b.shot("backlog").await;

    // Runbooks: owner, triggers, last run, validation state.
    b.open(&d, "/ui/runbooks").await;
    let table = b.text("#runbooks").await;
    for want in [
        "disk-cleanup",
        "team-storage",
        "restart-web",
        "DiskFull",
        "0 3 29 2 *",
        "failed",
    ] {
        assert!(table.contains(want), "{want} in {table}");
    }
    let validation = b.text("#validation").await;
    assert!(validation.contains("broken.yaml"), "{validation}");
    b.shot("runbooks").await;

    // Runs: filter by cause, then one run's page with escaped output and the alert facts.
    b.open(&d, "/ui/runs?cause=alert").await;
    assert_eq!(b.count("#runs tr[data-run]").await, 1);
    let alert_run = runs
        .iter()
        .find(|r| r["runbook"] == "disk-cleanup")
        .expect("alert run");
    assert!(
        b.text("#runs").await.contains("disk-cleanup"),
        "filtered list shows the alert run"
    );
    b.open(&d, "/ui/runs?status=failed").await;
    assert_eq!(b.count("#runs tr[data-run]").await, 1);
    b.open(
        &d,
        &format!("/ui/runs/{}", alert_run["id"].as_str().unwrap_or("")),
    )
    .await;
    let out = b.text("#steps pre.stdout").await;
    assert!(out.contains("cleaned <b>/var/log</b> & tmp"), "{out}");
    assert_eq!(
        b.count("#steps pre b").await,
        0,
        "output is escaped, not markup"
    );
    let facts = b.text("#facts").await;
    assert!(facts.contains("alertname=\"DiskFull\""), "{facts}");
    assert!(facts.contains("Time to remediate"), "{facts}");
    assert!(facts.contains("30.0 min"), "{facts}");
    b.shot("run").await;

    b.open(&d, "/ui/approvals").await;
    assert!(b.text("#no-approvals").await.contains("No runs"));
    b.quit().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_a_pending_run_by_clicking_runs_it() {
    let dirs = Dirs::new();
    dirs.runbook(
        "gated",
        "name: gated\nowner: team-g\ntoil: {manual_minutes: 10, approval_minutes: 2}\n\
guards: {approval: required}\nsteps:\n  - name: fix\n    run: echo fixing-it\n",
    );
    let d = Running::start(dirs.settings()).await;
    let id = start_manual(&d, "gated").await;
    until("the run to wait for approval", || async {
        (run_status(&d, &id).await["status"] == "pending_approval").then_some(())
    })
    .await;
    let b = Browser::start().await;
    b.open(&d, "/ui/approvals").await;
    assert!(b.text("#nav-approvals").await.contains("(1)"));
    let panel = b.text(&format!("[data-run=\"{id}\"]")).await;
    assert!(panel.contains("echo fixing-it"), "the plan: {panel}");
    b.shot("approvals").await;
    b.c()
        .find(Locator::Css(&format!("[data-run=\"{id}\"] button.approve")))
        .await
        .expect("approve button")
        .click()
        .await
        .expect("click");
    // The run page follows the run to its end without a reload.
    until("the run page to show the run succeeded", || async {
        let url = b.c().current_url().await.ok()?;
        if !url.path().ends_with(&id) {
            return None;
        }
        let el = b.c().find(Locator::Css("#run-status")).await.ok()?;
        (el.attr("data-status").await.ok()?? == "succeeded").then_some(())
    })
    .await;
    let out = until("the step output", || b.text_when("#steps pre.stdout")).await;
    assert!(out.contains("fixing-it"), "{out}");
    let run = run_status(&d, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["approval"]["approved"], true, "{run}");
    assert_eq!(run["toil"]["minutes"], 8.0, "{run}");
    b.quit().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resetting_an_open_breaker_by_clicking_closes_it() {
    let dirs = Dirs::new();
    dirs.runbook(
        "limited",
        "name: limited\nowner: team-g\ntoil: {manual_minutes: 3}\n\
guards: {max_runs: {count: 1, per: 1h}}\nsteps:\n  - name: s\n    run: \"true\"\n",
    );
    let d = Running::start(dirs.settings()).await;
    start_manual(&d, "limited").await;
    start_manual(&d, "limited").await;
    d.wait_runs_final(2).await;
    let (_, breakers) = d.get("/api/v1/breakers").await;
    assert_eq!(breakers[0]["open"], true, "{breakers}");
    let b = Browser::start().await;
    b.open(&d, "/ui/runbooks").await;
    let row = b.text("tr[data-runbook=\"limited\"]").await;
    assert!(row.contains("open"), "{row}");
    b.c()
        .find(Locator::Css("tr[data-runbook=\"limited\"] button.reset"))
        .await
        .expect("reset button")
        .click()
        .await
        .expect("click");
    until("the breaker to show closed", || async {
        let row = b.text_when("tr[data-runbook=\"limited\"]").await?;
        (row.contains("closed") && b.count("button.reset").await == 0).then_some(())
    })
    .await;
    let (_, breakers) = d.get("/api/v1/breakers").await;
    assert_eq!(breakers[0]["open"], false, "{breakers}");
    b.quit().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_page_shows_a_new_run_without_a_full_reload() {
    let dirs = Dirs::new();
    seed_runbooks(&dirs);
    let d = Running::start(dirs.settings()).await;
    let b = Browser::start().await;
    b.open(&d, "/ui/runs").await;
    b.c()
        .execute("window.__stillHere = 42; return 0;", vec![])
        .await
        .expect("mark the page");
    let id = start_manual(&d, "restart-web").await;
    until("the new run to appear as succeeded", || async {
        let el = b
            .c()
            .find(Locator::Css(&format!("tr[data-run=\"{id}\"]")))
            .await
            .ok()?;
        (el.attr("data-status").await.ok()?? == "succeeded").then_some(())
    })
    .await;
    let marker = b
        .c()
        .execute("return window.__stillHere;", vec![])
        .await
        .expect("read the mark");
    assert_eq!(marker, json!(42), "the page was not reloaded");
    b.quit().await;
    d.stop().await;
}

/// The CSRF token of a page's forms.
fn token_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_post_without_the_csrf_token_or_from_another_origin_is_refused() {
    let dirs = Dirs::new();
    dirs.runbook(
        "gated",
        "name: gated\nowner: team-g\nguards: {approval: required}\nsteps:\n  - name: fix\n    run: \"true\"\n",
    );
    let d = Running::start(dirs.settings()).await;
    let id = start_manual(&d, "gated").await;
    until("the run to wait for approval", || async {
        (run_status(&d, &id).await["status"] == "pending_approval").then_some(())
    })
    .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let html = http
        .get(format!("{}/ui/approvals", d.base))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("html");
    let token = token_in(&html);
    let url = format!("{}/ui/runs/{id}/approve", d.base);
    let form = |body: String| {
        http.post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let no_token = form(String::new()).send().await.expect("POST");
    assert_eq!(no_token.status(), 403);
    let wrong = form("csrf=not-the-token".into())
        .send()
        .await
        .expect("POST");
    assert_eq!(wrong.status(), 403);
    let cross = form(format!("csrf={token}"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("POST");
    assert_eq!(cross.status(), 403);
    let cross_site = form(format!("csrf={token}"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("POST");
    assert_eq!(cross_site.status(), 403);
    assert_eq!(run_status(&d, &id).await["status"], "pending_approval");
    let ok = form(format!("csrf={token}"))
        .header("origin", d.base.clone())
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("POST");
    assert_eq!(ok.status(), 303);
    assert_eq!(
        ok.headers()["location"].to_str().unwrap_or(""),
        format!("/ui/runs/{id}")
    );
    until("the approved run to finish", || async {
        (run_status(&d, &id).await["status"] == "succeeded").then_some(())
    })
    .await;
    // A breaker reset without the token is refused too.
    let reset = http
        .post(format!("{}/ui/breakers/gated/reset", d.base))
        .body("key=")
        .send()
        .await
        .expect("POST");
    assert_eq!(reset.status(), 403);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_basic_auth_configured_the_dashboard_needs_the_same_credentials() {
    let dirs = Dirs::new();
    seed_runbooks(&dirs);
    let mut settings = dirs.settings();
    settings.auth = untoil::server::auth::Auth::new(vec![], vec![("lead".into(), "s3cret".into())]);
    let d = Running::start(settings).await;
    for path in ["/", "/ui/runs", "/ui/assets/app.css", "/ui/stamp"] {
        let r = d
            .client
            .get(format!("{}{path}", d.base))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 401, "{path}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap_or("");
        assert!(challenge.starts_with("Basic "), "{challenge}");
    }
    let r = d
        .client
        .get(format!("{}/", d.base))
        .basic_auth("lead", Some("s3cret"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap_or_default().contains("Toil saved"));
    // The browser sends the credentials to every page and to the refresh poll.
    let b = Browser::start().await;
    let authed = d.base.replacen("http://", "http://lead:s3cret@", 1);
    b.c()
        .goto(&format!("{authed}/ui/runbooks"))
        .await
        .expect("open");
    assert!(b.text("#runbooks").await.contains("restart-web"));
    b.quit().await;
    d.stop().await;
}

/// Every visible text of the page against the background it sits on, by WCAG 2 contrast ratio
/// (4.5:1, 3:1 for large text). Returns whether the page is in dark mode, how many texts were
/// checked, and those below the bar.
const CONTRAST_JS: &str = r#"
const rgb = c => (c.match(/[\d.]+/g) || []).map(Number);
const lum = c => {
  const [r, g, b] = rgb(c).slice(0, 3).map(v => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const backgroundOf = el => {
  for (let e = el; e; e = e.parentElement) {
    const c = getComputedStyle(e).backgroundColor;
    const v = rgb(c);
    if (v.length < 4 || v[3] > 0) return c;
  }
  return 'rgb(255, 255, 255)';
};
const low = [];
let checked = 0;
for (const el of document.querySelectorAll('body *')) {
  if (el instanceof SVGElement || el.getClientRects().length === 0) continue;
  const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  if (!own) continue;
  const s = getComputedStyle(el);
  if (s.visibility === 'hidden' || Number(s.opacity) === 0) continue;
  const bg = backgroundOf(el);
  const [a, b] = [lum(s.color), lum(bg)];
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  const size = parseFloat(s.fontSize);
  const large = size >= 24 || (parseInt(s.fontWeight, 10) >= 700 && size >= 18.66);
  checked++;
  if (ratio < (large ? 3 : 4.5)) {
    low.push(`${el.tagName.toLowerCase()}.${el.className} "${el.textContent.trim().slice(0, 40)}": ${s.color} on ${bg} = ${ratio.toFixed(2)}`);
  }
}
return { dark: matchMedia('(prefers-color-scheme: dark)').matches, checked, low };
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_readable_in_light_and_dark_mode() {
    let dirs = Dirs::new();
    seed_runbooks(&dirs);
    dirs.runbook(
        "gated",
        "name: gated\nowner: team-g\ntoil: {manual_minutes: 10}\n\
guards: {approval: required}\nsteps:\n  - name: fix\n    run: echo fixing-it\n",
    );
    dirs.runbook("broken", "name: broken\nowner: team-x\nsteps: 3\n");
    let d = Running::start(dirs.settings()).await;
    post_alert(&d, fixture("firing.json")).await;
    post_alert(&d, alert("HighLatency", "f-latency-1")).await;
    let ok = start_manual(&d, "restart-web").await;
    start_manual(&d, "rotate-keys").await;
    let gated = start_manual(&d, "gated").await;
    until("the gated run to wait for approval", || async {
        (run_status(&d, &gated).await["status"] == "pending_approval").then_some(())
    })
    .await;
    d.wait_runs_final(3).await;
    let pages = [
        "/".to_string(),
        "/ui/backlog".to_string(),
        "/ui/runbooks".to_string(),
        "/ui/runs".to_string(),
        format!("/ui/runs/{ok}"),
        "/ui/approvals".to_string(),
    ];
    for (dark, flags) in [(false, &[][..]), (true, &["--force-dark-mode"][..])] {
        let b = Browser::start_with(flags).await;
        for page in &pages {
            b.open(&d, page).await;
            let v = b
                .c()
                .execute(CONTRAST_JS, vec![])
                .await
                .unwrap_or_else(|e| panic!("contrast script on {page}: {e}"));
            assert_eq!(v["dark"], dark, "{page}: the browser's colour scheme");
            assert!(
                v["checked"].as_u64().unwrap_or(0) >= 5,
                "{page}: too few texts checked: {v}"
            );
            let low: Vec<&str> = v["low"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            assert!(
                low.is_empty(),
                "{page} ({}): texts below the contrast bar:\n{}",
                if dark { "dark" } else { "light" },
                low.join("\n")
            );
        }
        if dark {
            b.open(&d, "/").await;
            b.shot("overview-dark").await;
        }
        b.quit().await;
    }
    d.stop().await;
}
