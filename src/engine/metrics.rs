//! Prometheus metrics of the daemon (prometheus-client), served at `GET /metrics`.
//!
//! Label values can come from data others control (a guard key rendered from an alert label):
//! they are escaped as the exposition format wants (the encoder writes them as they are), and a
//! runbook's breaker keys are capped at [`MAX_KEYS`] series; further keys share one series with
//! key `_other`, which counts their open breakers.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// Breaker series per runbook; further keys go to `_other`.
pub const MAX_KEYS: usize = 100;

/// The key of the series that aggregates a runbook's keys beyond [`MAX_KEYS`].
pub const OTHER_KEY: &str = "_other";

/// A label value escaped for the text exposition: `\`, `"` and line breaks.
fn escaped(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), escaped(v)))
        .collect()
}

/// The breaker keys of one runbook that have a series of their own, and the others' states.
#[derive(Default)]
struct Keys {
    named: std::collections::HashSet<String>,
    others: std::collections::HashMap<String, bool>,
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    runs: Family<Labels, Counter>,
    run_duration: Family<Labels, Histogram>,
    toil_saved: Family<Labels, Counter<f64, std::sync::atomic::AtomicU64>>,
    alerts: Family<Labels, Counter>,
    source_refused: Family<Labels, Counter>,
    /// Runs waiting in the queue.
    pub queue_depth: Gauge,
    /// Runs executing.
    pub in_progress: Gauge,
    breaker_open: Family<Labels, Gauge>,
    /// Runs waiting for approval.
    pub approvals_pending: Gauge,
    webhook_latency: Histogram,
    keys: std::sync::Mutex<std::collections::HashMap<String, Keys>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("untoil");
        let runs = Family::<Labels, Counter>::default();
        registry.register("runs", "Finished runs by runbook and status", runs.clone());
        let run_duration = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 18))
        });
        registry.register(
            "run_duration_seconds",
            "Run duration, start to end",
            run_duration.clone(),
        );
        let toil_saved = Family::<Labels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "toil_saved_seconds",
            "Manual toil saved by runs, by runbook and team",
            toil_saved.clone(),
        );
        let alerts = Family::<Labels, Counter>::default();
        registry.register(
            "alerts",
            "Alerts received, by source and outcome (received, matched, firing_unmatched, resolved, deduplicated)",
            alerts.clone(),
        );
        let source_refused = Family::<Labels, Counter>::default();
        registry.register(
            "source_requests_refused",
            "Requests to defined sources not admitted, by source and reason (signature, body, duplicate_delivery)",
            source_refused.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Runs waiting in the queue",
            queue_depth.clone(),
        );
        let in_progress = Gauge::default();
        registry.register(
            "runs_in_progress",
            "Runs executing now",
            in_progress.clone(),
        );
        let breaker_open = Family::<Labels, Gauge>::default();
        registry.register(
            "breaker_open",
            "1 while the circuit breaker of a runbook key is open",
            breaker_open.clone(),
        );
        let approvals_pending = Gauge::default();
        registry.register(
            "approvals_pending",
            "Runs waiting for a person's approval",
            approvals_pending.clone(),
        );
        let webhook_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "webhook_request_duration_seconds",
            "Time to answer an Alertmanager webhook request",
            webhook_latency.clone(),
        );
        Metrics {
            registry,
            runs,
            run_duration,
            toil_saved,
            alerts,
            source_refused,
            queue_depth,
            in_progress,
            breaker_open,
            approvals_pending,
            webhook_latency,
            keys: Default::default(),
        }
    }

    /// Counts a finished run.
    pub fn run_finished(
        &self,
        runbook: &str,
        team: &str,
        status: &str,
        seconds: Option<f64>,
        toil_minutes: f64,
    ) {
        self.runs
            .get_or_create(&labels(&[("runbook", runbook), ("status", status)]))
            .inc();
        if let Some(s) = seconds {
            self.run_duration
                .get_or_create(&labels(&[("runbook", runbook)]))
                .observe(s);
        }
        self.toil_released(runbook, team, toil_minutes);
    }

    /// Counts toil saved: at a run's finish, or when a verdict releases what was held until its
    /// alert resolved (`verify.credit: verified_only`).
    pub fn toil_released(&self, runbook: &str, team: &str, toil_minutes: f64) {
        if toil_minutes > 0.0 {
            self.toil_saved
                .get_or_create(&labels(&[("runbook", runbook), ("team", team)]))
                .inc_by(toil_minutes * 60.0);
        }
    }

    /// Counts alerts of `source` (a valid source name, so a bounded set) by outcome.
    pub fn alerts(&self, source: &str, outcome: &str, n: u64) {
        if n > 0 {
            self.alerts
                .get_or_create(&labels(&[("source", source), ("outcome", outcome)]))
                .inc_by(n);
        }
    }

    /// Counts a request to a defined source (a bounded set of names) that admitted nothing.
    pub fn source_refused(&self, source: &str, reason: &str) {
        self.source_refused
            .get_or_create(&labels(&[("source", source), ("reason", reason)]))
            .inc();
    }

    /// Sets a breaker's state (a key beyond the runbook's [`MAX_KEYS`] counts in `_other`).
    pub fn breaker(&self, runbook: &str, key: &str, open: bool) {
        let mut all = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let keys = all.entry(runbook.to_string()).or_default();
        if keys.named.contains(key)
            || (keys.named.len() < MAX_KEYS && !keys.others.contains_key(key))
        {
            keys.named.insert(key.to_string());
            self.breaker_open
                .get_or_create(&labels(&[("runbook", runbook), ("key", key)]))
                .set(i64::from(open));
            return;
        }
        keys.others.insert(key.to_string(), open);
        let open_others = keys.others.values().filter(|o| **o).count();
        self.breaker_open
            .get_or_create(&labels(&[("runbook", runbook), ("key", OTHER_KEY)]))
            .set(open_others as i64);
    }

    /// Records a webhook answer time.
    pub fn webhook(&self, seconds: f64) {
        self.webhook_latency.observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_label_values_stay_inside_their_label() {
        let m = Metrics::new();
        m.breaker("rb", "x\"} 1\nfake_metric 42\n", true);
        let text = m.render();
        assert!(
            !text.lines().any(|l| l.starts_with("fake_metric")),
            "{text}"
        );
        assert!(text.contains(r#"key="x\"} 1\nfake_metric 42\n""#), "{text}");
    }

    #[test]
    fn keys_beyond_the_cap_share_one_series_counting_their_open_breakers() {
        let m = Metrics::new();
        for i in 0..MAX_KEYS + 5 {
            m.breaker("rb", &format!("k{i}"), i % 2 == 0);
        }
        m.breaker("rb", "k0", false);
        let text = m.render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("untoil_breaker_open{"))
            .count();
        assert_eq!(series, MAX_KEYS + 1, "{text}");
        // k100..k104: k100, k102, k104 open.
        assert!(
            text.contains(r#"untoil_breaker_open{runbook="rb",key="_other"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"untoil_breaker_open{runbook="rb",key="k0"} 0"#),
            "{text}"
        );
    }
}
