//! What the store benchmarks share: the generated runs (a pure function of their index), the
//! answer both sides of a report comparison are reduced to, and small measuring helpers.

// Each benchmark uses a part of what is here.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use untoil::report::period::Period;
use untoil::report::toil as report;
use untoil::run::cause::Cause;
use untoil::run::credit::{Baseline, Credit};
use untoil::run::id::RunId;
use untoil::run::record::RunRecord;
use untoil::run::status::RunStatus;

pub const SEED: u64 = 0x756e_746f_696c_2d31;
pub const TEAMS: usize = 8;
pub const SERVICES: usize = 24;
pub const RUNBOOKS: usize = 40;
pub const DAYS: i64 = 730;

/// xorshift64*, seeded per run through splitmix64 so that run `i` is a pure function of `i`.
pub struct Rng(u64);

impl Rng {
    fn for_run(i: u64) -> Rng {
        let mut z = SEED ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2023, 7, 1, 0, 0, 0).unwrap()
}

/// Every day a generated run can start on (runs may start a few seconds after the last
/// creation instant, so one day is added).
pub fn period() -> Period {
    let from = start().date_naive();
    Period {
        from,
        to: from + chrono::Duration::days(DAYS),
    }
}

pub fn manual_minutes(r: usize) -> f64 {
    1.5 + ((r * 37) % 58) as f64 * 0.75
}

pub fn base_duration_ms(r: usize) -> f64 {
    400.0 * (1u64 << (r % 12)) as f64
}

/// Finished run `i` of `n`: created in the i-th slice of the two years (so ids are in time
/// order), a skewed choice of runbook (each owned by one team and service), varied cause,
/// status, duration and toil credit. Never dry, never skipped.
pub fn gen_run(i: usize, n: usize) -> RunRecord {
    let mut rng = Rng::for_run(i as u64);
    let span_ms = DAYS * 86_400_000;
    let slot = span_ms / n as i64;
    let created_ms =
        start().timestamp_millis() + i as i64 * span_ms / n as i64 + rng.below(slot as u64) as i64;
    let created_at = Utc.timestamp_millis_opt(created_ms).unwrap();
    let started_at = created_at + chrono::Duration::milliseconds(rng.below(3_000) as i64);

    let r = ((rng.unit().powi(2)) * RUNBOOKS as f64) as usize;
    let approval = r.is_multiple_of(5);
    let status = match rng.below(1000) {
        0..850 => RunStatus::Succeeded,
        850..930 => RunStatus::Failed,
        930..950 => RunStatus::TimedOut,
        950..960 => RunStatus::Interrupted,
        _ => RunStatus::Cancelled,
    };
    let base = base_duration_ms(r);
    let duration_ms = match status {
        RunStatus::TimedOut => base * 4.0,
        _ => base * (0.25 + 3.0 * rng.unit().powi(3)),
    } as i64;
    let finished_at = started_at + chrono::Duration::milliseconds(duration_ms);

    let manual = manual_minutes(r);
    let approval_minutes = if approval { 2.0 } else { 0.0 };
    let minutes = match status {
        RunStatus::Succeeded => (manual - approval_minutes).max(0.0),
        RunStatus::Cancelled => 0.0,
        _ if rng.below(10) < 3 => manual * rng.unit(), // some steps succeeded
        _ => 0.0,
    };

    let cause = match rng.below(100) {
        0..20 => Cause::Manual {
            user: format!("user{:02}", rng.below(60)),
            claimed_user: None,
        },
        20..55 => Cause::Schedule {
            at: Utc
                .timestamp_opt(created_at.timestamp() / 60 * 60, 0)
                .unwrap(),
        },
        _ => Cause::Alert {
            source: untoil::trigger::source::ALERTMANAGER.to_string(),
            fingerprint: format!("{:016x}", rng.next()),
            starts_at: created_at - chrono::Duration::seconds(5 + rng.below(900) as i64),
            labels: BTreeMap::from([
                ("alertname".to_string(), format!("Alert{r}")),
                ("severity".to_string(), "warning".to_string()),
            ]),
        },
    };

    // 48 random bits then the index: unique ids, sorted by creation time.
    let random = ((rng.next() as u128 & 0xFFFF_FFFF_FFFF) << 32) | i as u128;
    RunRecord {
        id: RunId(ulid::Ulid::from_parts(created_ms as u64, random).to_string()),
        runbook: format!("runbook-{r:02}"),
        version: format!("{:012x}", r * 7919),
        owner: format!("team-{}", r % TEAMS),
        service: Some(format!("svc-{}", r % SERVICES)),
        cause,
        params: BTreeMap::from([("host".to_string(), format!("host-{:03}", rng.below(500)))]),
        status,
        created_at,
        started_at: Some(started_at),
        finished_at: Some(finished_at),
        steps: Vec::new(),
        current_step: None,
        current_pgid: None,
        dry_run: false,
        approval_required: approval,
        error: (status != RunStatus::Succeeded).then(|| format!("run {status}")),
        alert: None,
        verification: None,
        verify_by: None,
        guard_key: None,
        approval: None,
        toil: Some(Credit {
            minutes,
            baseline: Baseline {
                manual_minutes: manual,
                approval_minutes,
                ..Default::default()
            },
            reason: "synthetic".into(),
            ..Default::default()
        }),
        bypassed: None,
        retry_of: None,
    }
}

/// Counters compared between the two answers, per (team, month).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub runs: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub toil_milli: u64,
}

pub type Answer = BTreeMap<(String, String), Totals>;

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

pub fn untoil_answer(r: &report::ToilReport) -> Answer {
    r.rows
        .iter()
        .map(|row| {
            (
                (row.group[0].clone(), row.group[1].clone()),
                Totals {
                    runs: row.rollup.runs,
                    succeeded: row.rollup.succeeded,
                    // Rollups count interrupted runs apart from failed since schema 3; the SQL
                    // side (and the generated truth) count them as failed.
                    failed: row.rollup.failed + row.rollup.interrupted,
                    cancelled: row.rollup.cancelled,
                    toil_milli: row.rollup.toil_milli_minutes,
                },
            )
        })
        .collect()
}
