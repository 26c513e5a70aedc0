//! Triggers: what starts a run. Cron schedules, Alertmanager and Grafana notifications and their label
//! matchers, and the dedupe keys that make each trigger start at most one run.

pub mod alert;
pub mod grafana;
pub mod key;
pub mod matcher;
pub mod schedule;
pub mod source;
