//! The dashboard on a phone: every page in a headless Chromium emulating a 420 px wide touch
//! screen (the issue's window; then 360 and 320 px), for the on-call engineer approving a run
//! from a phone. No page scrolls sideways (wide tables scroll inside their panel), every link,
//! button and form control is a 44 px tap target, and the chart's axis labels are readable, in
//! their panel and do not overlap.

use crate::browser::{Browser, until};
use crate::common::{Dirs, Running, fixture};
use chrono::Utc;
use fantoccini::Locator;
use serde_json::{Value, json};
use untoil::run::id::RunId;
use untoil::run::record::RunRecord;
use untoil::store::Store;
use untoil::store::sled::SledStore;

/// The phones' widths in CSS pixels: the issue's window, then the common narrower ones.
const WIDTHS: [u64; 3] = [420, 360, 320];

/// Measures the page: its width against the window's, the tap targets smaller than 44 px, and
/// the chart's axis labels (how many are shown, those rendered smaller than 10 px, those
/// outside the chart's panel, and the pairs that overlap).
const MEASURE_JS: &str = r#"
const describe = el => {
  const id = el.id ? '#' + el.id : '';
  const cls = typeof el.className === 'string' && el.className ? '.' + el.className.trim().split(/\s+/).join('.') : '';
  const text = (el.textContent || el.value || el.name || '').trim().replace(/\s+/g, ' ').slice(0, 30);
  return `${el.tagName.toLowerCase()}${id}${cls} "${text}"`;
};
const shown = el => {
  if (el.getClientRects().length === 0) return false;
  const s = getComputedStyle(el);
  return s.visibility !== 'hidden' && s.display !== 'none';
};
const root = document.documentElement;
const viewport = document.querySelector('meta[name="viewport"]');
const small = [];
for (const el of document.querySelectorAll('a, button, input, select, summary, textarea')) {
  if (el.type === 'hidden' || !shown(el)) continue;
  const r = el.getBoundingClientRect();
  if (r.width < 44 || r.height < 44) {
    small.push(`${describe(el)}: ${r.width.toFixed(1)} x ${r.height.toFixed(1)}`);
  }
}
const labels = [];
for (const t of document.querySelectorAll('.chart svg text')) {
  if (!shown(t)) continue;
  const r = t.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) continue;
  const ctm = t.getScreenCTM();
  const scale = ctm ? Math.hypot(ctm.a, ctm.b) : 1;
  const px = parseFloat(getComputedStyle(t).fontSize) * scale;
  labels.push({ text: t.textContent.trim(), r, px, panel: t.closest('.panel').getBoundingClientRect() });
}
const tiny = labels.filter(l => l.px < 10).map(l => `"${l.text}" at ${l.px.toFixed(1)} px`);
const outside = labels
  .filter(l => l.r.left < l.panel.left || l.r.right > l.panel.right || l.r.left < 0 || l.r.right > window.innerWidth)
  .map(l => `"${l.text}" spans ${l.r.left.toFixed(1)}..${l.r.right.toFixed(1)}, its panel ${l.panel.left.toFixed(1)}..${l.panel.right.toFixed(1)}`);
const overlaps = [];
for (let i = 0; i < labels.length; i++) {
  for (let j = i + 1; j < labels.length; j++) {
    const [a, b] = [labels[i].r, labels[j].r];
    if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) {
      overlaps.push(`"${labels[i].text}" and "${labels[j].text}"`);
    }
  }
}
return {
  viewport: viewport ? viewport.content : null,
  inner: window.innerWidth,
  scroll: Math.max(root.scrollWidth, document.body.scrollWidth),
  small, labels: labels.length, tiny, outside, overlaps,
};
"#;

/// Runs of `restart-web` and `disk-cleanup` finished over the last year, a few a week, so the
/// 1y chart has a bar and a label candidate in every one of its 53 weeks.
async fn seed_history(dirs: &Dirs) {
    let store = SledStore::open(&dirs.path("data")).expect("store");
    let now = Utc::now();
    let mut runs = Vec::new();
    for i in 0..120usize {
        let at = now - chrono::Duration::hours(3 * 24 * i as i64 + 5);
        let mut run = RunRecord::synthetic(i + 1);
        run.id = RunId(ulid::Ulid::from_parts(at.timestamp_millis() as u64, i as u128).to_string());
        run.runbook = if i % 3 == 0 {
            "disk-cleanup"
        } else {
            "restart-web"
        }
        .into();
        run.owner = if i % 3 == 0 {
            "team-storage"
        } else {
            "team-web"
        }
        .into();
        run.created_at = at;
        run.started_at = Some(at);
        run.finished_at = Some(at + chrono::Duration::seconds(40));
        runs.push(run);
    }
    store.finish_many(runs).await.expect("seed runs");
}

fn seed_runbooks(dirs: &Dirs) {
    dirs.runbook(
        "disk-cleanup",
        "name: disk-cleanup\ndescription: frees disk space on a database host before it fills up\n\
owner: team-storage\nservice: db\ntoil: {manual_minutes: 30}\ntriggers:\n\
  - alert: {matchers: ['alertname=\"DiskFull\"', 'severity=~\"critical|page\"']}\n\
steps:\n  - name: clean\n    run: echo 'cleaned /var/log/journal/0123456789abcdef0123456789abcdef and /tmp'\n",
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
    dirs.runbook(
        "gated",
        "name: gated\nowner: team-g\ntoil: {manual_minutes: 10}\nguards: {approval: required}\n\
steps:\n  - name: fix\n    run: echo fixing-it-with-a-rather-long-command-line --and --several --flags\n",
    );
    dirs.runbook(
        "limited",
        "name: limited\nowner: team-g\ntoil: {manual_minutes: 3}\n\
guards: {max_runs: {count: 1, per: 1h}}\nsteps:\n  - name: s\n    run: \"true\"\n",
    );
    dirs.runbook("broken", "name: broken\nowner: team-x\nsteps: 3\n");
}

async fn start_manual(d: &Running, runbook: &str) -> String {
    let (status, v, _) = d
        .post(&format!("/api/v1/runbooks/{runbook}/runs"), b"{}".to_vec())
        .await;
    assert_eq!(status, 202, "{v}");
    v["id"].as_str().expect("run id").to_string()
}

fn list(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_usable_on_a_phone_420_to_320_px_wide() {
    let dirs = Dirs::new();
    seed_runbooks(&dirs);
    seed_history(&dirs).await;
    let d = Running::start(dirs.settings()).await;
    let (status, v, _) = d
        .post("/api/v1/alerts/alertmanager", fixture("firing.json"))
        .await;
    assert_eq!(status, 200, "{v}");
    let mut other: Value = serde_json::from_slice(&fixture("firing.json")).expect("json");
    other["alerts"][0]["labels"]["alertname"] = json!("HighLatency");
    other["alerts"][0]["fingerprint"] = json!("f-latency-1");
    let (status, v, _) = d
        .post(
            "/api/v1/alerts/alertmanager",
            serde_json::to_vec(&other).expect("json"),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let gated = start_manual(&d, "gated").await;
    start_manual(&d, "limited").await;
    start_manual(&d, "limited").await;
    let ok = start_manual(&d, "restart-web").await;
    until("the gated run to wait for approval", || async {
        (d.get(&format!("/api/v1/runs/{gated}")).await.1["status"] == "pending_approval")
            .then_some(())
    })
    .await;
    until("the breaker of limited to open", || async {
        let (_, b) = d.get("/api/v1/breakers").await;
        (b.as_array()?.iter().any(|b| b["open"] == true)).then_some(())
    })
    .await;
    let runs = d.wait_runs_final(124).await;
    let alert_run = runs
        .iter()
        .find(|r| r["runbook"] == "disk-cleanup" && r["cause"]["kind"] == "alert")
        .or_else(|| {
            runs.iter()
                .find(|r| r["runbook"] == "disk-cleanup" && r["status"] != "succeeded")
        })
        .and_then(|r| r["id"].as_str())
        .unwrap_or_default()
        .to_string();
    // (screenshot name, path)
    let pages = [
        ("overview-1y", "/?period=1y&by=runbook".to_string()),
        ("overview-1y-team", "/?period=1y&by=team".to_string()),
        ("overview-90d", "/?period=90d".to_string()),
        ("overview", "/".to_string()),
        ("overview-7d", "/?period=7d".to_string()),
        ("backlog", "/ui/backlog".to_string()),
        ("runbooks", "/ui/runbooks".to_string()),
        ("runs", "/ui/runs".to_string()),
        ("runs-failed", "/ui/runs?status=failed".to_string()),
        ("run", format!("/ui/runs/{ok}")),
        ("run-alert", format!("/ui/runs/{alert_run}")),
        ("approvals", "/ui/approvals".to_string()),
        ("error", "/ui/runs/no-such-run".to_string()),
    ];
    let mut problems = Vec::new();
    for width in WIDTHS {
        let b = Browser::start_phone(width as u32, 860).await;
        for (name, page) in &pages {
            problems.extend(measure(&b, &d, width, name, page).await);
        }
        b.quit().await;
    }
    // The on-call engineer's errand: approve the run from the phone.
    let b = Browser::start_phone(WIDTHS[0] as u32, 860).await;
    b.open(&d, "/ui/approvals").await;
    b.c()
        .find(Locator::Css(&format!(
            "[data-run=\"{gated}\"] button.approve"
        )))
        .await
        .expect("the approve button")
        .click()
        .await
        .expect("tap Approve");
    until("the approved run to succeed", || async {
        (d.get(&format!("/api/v1/runs/{gated}")).await.1["status"] == "succeeded").then_some(())
    })
    .await;
    b.quit().await;
    d.stop().await;
    assert!(
        problems.is_empty(),
        "{} problems on a phone:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The problems of `page` in a browser `width` pixels wide; at the issue's width, screenshots
/// for a look by eye (target/dashboard-phone-*.png, the chart scrolled into view on the
/// overview).
async fn measure(b: &Browser, d: &Running, width: u64, name: &str, page: &str) -> Vec<String> {
    let mut problems = Vec::new();
    b.open(d, page).await;
    let v = b
        .c()
        .execute(MEASURE_JS, vec![])
        .await
        .unwrap_or_else(|e| panic!("measuring {page}: {e}"));
    if width == WIDTHS[0] {
        b.shot(&format!("phone-{name}")).await;
        if b.count(".chart").await > 0 {
            b.c()
                .execute(
                    "document.querySelector('.chart').scrollIntoView(); return 0;",
                    vec![],
                )
                .await
                .expect("scroll to the chart");
            b.shot(&format!("phone-{name}-chart")).await;
        }
    }
    let mut say = |what: String| problems.push(format!("{width} px {page}: {what}"));
    if !v["viewport"]
        .as_str()
        .is_some_and(|c| c.contains("width=device-width"))
    {
        say(format!(
            "no viewport meta tag with width=device-width: {}",
            v["viewport"]
        ));
    }
    let (inner, scroll) = (
        v["inner"].as_u64().unwrap_or(0),
        v["scroll"].as_u64().unwrap_or(u64::MAX),
    );
    if inner != width || scroll > inner {
        say(format!(
            "the page is {scroll} px wide in a {inner} px window (a {width} px phone)"
        ));
    }
    for s in list(&v, "small") {
        say(format!("tap target under 44 px: {s}"));
    }
    for s in list(&v, "tiny") {
        say(format!("chart label too small to read: {s}"));
    }
    for s in list(&v, "outside") {
        say(format!("chart label cut off: {s}"));
    }
    for s in list(&v, "overlaps") {
        say(format!("chart labels overlap: {s}"));
    }
    if page.starts_with("/?period=1y") && v["labels"].as_u64().unwrap_or(0) < 8 {
        say(format!(
            "the year's chart shows only {} axis labels (5 hours, at least 3 weeks wanted)",
            v["labels"]
        ));
    }
    problems
}
