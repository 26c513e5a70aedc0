//! The overview's chart: hours of toil saved per ISO week, stacked by series, as inline SVG.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate};
use maud::{Markup, html};

/// Series colours, in series order (the legend uses the same).
const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
];

/// The colour of the `j`-th series.
pub fn colour(j: usize) -> &'static str {
    PALETTE[j % PALETTE.len()]
}

/// ISO weeks (`2026-W48`) from the week of `from` to the week of `to`.
pub fn weeks(from: NaiveDate, to: NaiveDate) -> Vec<String> {
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

/// A "nice" axis maximum at or above `max`: 1, 2, 2.5, 5 or 10 times a power of ten.
fn nice(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * mag)
}

/// A stacked bar chart of hours per week (`weeks`) and series (name -> week -> hours).
pub fn svg(weeks: &[String], series: &BTreeMap<String, BTreeMap<String, f64>>) -> Markup {
    let (w, h, left, right, top, bottom) = (860.0, 260.0, 48.0, 10.0, 10.0, 28.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let max = weeks
        .iter()
        .map(|wk| {
            series
                .values()
                .map(|s| s.get(wk).copied().unwrap_or(0.0))
                .sum::<f64>()
        })
        .fold(0.0, f64::max);
    let nice = nice(max);
    let slot = plot_w / weeks.len().max(1) as f64;
    let bar = (slot * 0.7).max(1.0);
    let every = (weeks.len() / 13).max(1);
    // Leaf SVG elements get an explicit end tag (`{}`): in HTML, `<line ...>` without one
    // would swallow what follows.
    html! {
        svg viewBox={ "0 0 " (w) " " (h) } role="img"
            aria-label="Hours of toil saved per week" id="toil-chart" {
            @for i in 0..=4 {
                @let v = nice * i as f64 / 4.0;
                @let y = top + plot_h - plot_h * i as f64 / 4.0;
                line class="grid" x1=(left) x2=(w - right)
                    y1=(format!("{y:.1}")) y2=(format!("{y:.1}")) {}
                text x=(left - 6.0) y=(format!("{:.1}", y + 4.0)) text-anchor="end" {
                    @if nice < 4.0 { (format!("{v:.2}h")) } @else { (format!("{v:.0}h")) }
                }
            }
            @for (i, wk) in weeks.iter().enumerate() {
                @let x = left + slot * i as f64 + (slot - bar) / 2.0;
                (bars(wk, x, bar, top + plot_h, plot_h / nice, series))
                @if i % every == 0 {
                    text x=(format!("{:.1}", left + slot * i as f64 + slot / 2.0)) y=(h - 8.0)
                        text-anchor="middle" {
                        (wk.split_once('-').map_or(wk.as_str(), |(_, w)| w))
                    }
                }
            }
        }
    }
}

/// The stacked bars of one week: from `base` upwards, `scale` pixels per hour.
fn bars(
    week: &str,
    x: f64,
    width: f64,
    base: f64,
    scale: f64,
    series: &BTreeMap<String, BTreeMap<String, f64>>,
) -> Markup {
    let mut y = base;
    let stacked: Vec<(&str, usize, f64, f64, f64)> = series
        .iter()
        .enumerate()
        .filter_map(|(j, (name, values))| {
            let v = values.get(week).copied().unwrap_or(0.0);
            if v <= 0.0 {
                return None;
            }
            let bh = scale * v;
            y -= bh;
            Some((name.as_str(), j, v, y, bh))
        })
        .collect();
    html! {
        @for (name, j, v, y, bh) in stacked {
            rect class="bar" x=(format!("{x:.1}")) y=(format!("{y:.1}")) width=(format!("{width:.1}"))
                height=(format!("{bh:.1}")) fill=(colour(j)) data-series=(name) data-week=(week)
                data-hours=(v) {
                title { (name) " " (week) ": " (format!("{v:.2}")) " h" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_span_the_period() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default();
        assert_eq!(
            weeks(d("2026-11-22"), d("2026-11-28")),
            ["2026-W47", "2026-W48"]
        );
    }

    #[test]
    fn bars_stack_and_carry_their_hours() {
        let wks = vec!["2026-W47".to_string(), "2026-W48".to_string()];
        let mut series: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        series
            .entry("a".into())
            .or_default()
            .insert("2026-W48".into(), 1.5);
        series
            .entry("b".into())
            .or_default()
            .insert("2026-W48".into(), 0.5);
        let s = svg(&wks, &series).into_string();
        assert!(s.starts_with("<svg viewBox=\"0 0 860 260\""), "{s}");
        assert_eq!(s.matches("<rect class=\"bar\"").count(), 2, "{s}");
        assert!(s.contains("data-series=\"a\" data-week=\"2026-W48\" data-hours=\"1.5\""));
        assert!(s.contains("<line class=\"grid\""), "{s}");
        assert!(s.contains("></line>"), "lines are closed: {s}");
        assert!(s.contains(">2.00h</text>"), "axis up to a nice 2 h: {s}");
    }
}
