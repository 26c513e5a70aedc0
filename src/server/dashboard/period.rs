//! The period a report page shows: the choices, the one a query asks for, and the selector.

use std::collections::BTreeMap;

use maud::{Markup, html};

use crate::report::period::Period;
use crate::server::api::reports::{ReportQuery, period};

/// The periods offered: (label, the report API's `since`).
pub const PERIODS: [(&str, &str); 4] =
    [("7d", "7d"), ("30d", "30d"), ("90d", "90d"), ("1y", "365d")];

/// The period a page's query asks for (`period=`), 30 days when it names none or an unknown one:
/// (label, the report API's `since`).
pub fn chosen(q: &BTreeMap<String, String>) -> (&'static str, &'static str) {
    let want = q.get("period").map_or("30d", String::as_str);
    PERIODS
        .iter()
        .find(|(k, _)| *k == want)
        .copied()
        .unwrap_or(PERIODS[1])
}

/// The report query of the last `since` (e.g. `30d`), grouped by `by` when given.
pub fn report_query(since: &str, by: Option<String>) -> ReportQuery {
    ReportQuery {
        since: Some(since.to_string()),
        by,
        ..ReportQuery::default()
    }
}

/// The UTC days of the last `since`, as the report API reads `since`.
pub fn days(since: &str) -> Result<Period, String> {
    period(&report_query(since, None))
}

/// Links to the same page for each period; `extra` carries the page's other query pairs
/// (`&by=team`).
pub fn selector(base: &str, current: &str, extra: &str) -> Markup {
    html! {
        span class="selector" id="period" {
            @for (k, _) in PERIODS {
                @if k == current {
                    span { (k) }
                } @else {
                    a href={ (base) "?period=" (k) (extra) } { (k) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_period_is_the_default_one() {
        let q = BTreeMap::from([("period".to_string(), "1y".to_string())]);
        assert_eq!(chosen(&q), ("1y", "365d"));
        let q = BTreeMap::from([("period".to_string(), "<x>".to_string())]);
        assert_eq!(chosen(&q), ("30d", "30d"));
        assert_eq!(chosen(&BTreeMap::new()), ("30d", "30d"));
        for (_, since) in PERIODS {
            assert!(days(since).is_ok(), "{since}");
        }
    }
}
