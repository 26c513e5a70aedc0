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

/// The chart's height, its y axis's width and the plot's top and bottom margins, in CSS pixels.
const HEIGHT: f64 = 260.0;
const AXIS: f64 = 48.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 28.0;

/// The widths (CSS pixels, smallest first) from which the plot shows more week labels: a label
/// ("W48", 11 px) needs about [`PITCH`] pixels. The stylesheet's container queries on `.plot`
/// use the same widths.
const TIERS: [f64; 10] = [
    0.0, 250.0, 300.0, 360.0, 430.0, 510.0, 610.0, 730.0, 870.0, 1040.0,
];
/// The horizontal space one week label needs, in CSS pixels.
const PITCH: f64 = 34.0;
/// The narrowest plot a label step is chosen for (a 320 px phone's).
const NARROWEST: f64 = 220.0;

/// The smallest tier whose plot shows the label of week `i` of `n`, if any: each tier labels
/// every `step`-th week, the step a power of two so that a wider tier's labels include a
/// narrower one's (none overlap at any width).
fn label_tier(i: usize, n: usize) -> Option<usize> {
    TIERS.iter().position(|min| {
        let width = min.max(NARROWEST);
        let step = ((n as f64 * PITCH / width).ceil() as usize)
            .max(1)
            .next_power_of_two();
        i % step == 0
    })
}

/// A stacked bar chart of hours per week (`weeks`) and series (name -> week -> hours).
///
/// Drawn in CSS pixels, not scaled to the page's width: the y axis is its own SVG beside the
/// plot, the plot spans the rest of the width with its bars placed in percent, so labels stay
/// 11 px on a phone. The week labels are thinned by the plot's width (classes `t0`..`t9`, shown
/// by the stylesheet's container queries), so they never overlap.
pub fn svg(weeks: &[String], series: &BTreeMap<String, BTreeMap<String, f64>>) -> Markup {
    let plot_h = HEIGHT - TOP - BOTTOM;
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
    // Percent of the plot's width.
    let slot = 100.0 / weeks.len().max(1) as f64;
    let bar = slot * 0.7;
    let pct = |v: f64| format!("{v:.3}%");
    // Leaf SVG elements get an explicit end tag (`{}`): in HTML, `<line ...>` without one
    // would swallow what follows.
    html! {
        div class="chart-frame" role="img" aria-label="Hours of toil saved per week" {
            svg class="y-axis" width=(AXIS) height=(HEIGHT) aria-hidden="true" {
                @for i in 0..=4 {
                    @let v = nice * i as f64 / 4.0;
                    @let y = TOP + plot_h - plot_h * i as f64 / 4.0;
                    text x=(AXIS - 6.0) y=(format!("{:.1}", y + 4.0)) text-anchor="end" {
                        @if nice < 4.0 { (format!("{v:.2}h")) } @else { (format!("{v:.0}h")) }
                    }
                }
            }
            div class="plot" {
                svg id="toil-chart" width="100%" height=(HEIGHT) aria-hidden="true" {
                    @for i in 0..=4 {
                        @let y = TOP + plot_h - plot_h * i as f64 / 4.0;
                        line class="grid" x1="0" x2="100%"
                            y1=(format!("{y:.1}")) y2=(format!("{y:.1}")) {}
                    }
                    @for (i, wk) in weeks.iter().enumerate() {
                        @let x = slot * i as f64 + (slot - bar) / 2.0;
                        (bars(wk, &pct(x), &pct(bar), TOP + plot_h, plot_h / nice, series))
                        @if let Some(t) = label_tier(i, weeks.len()) {
                            text class={ "week t" (t) } x=(pct(slot * i as f64 + slot / 2.0))
                                y=(HEIGHT - 8.0) text-anchor="middle" {
                                (wk.split_once('-').map_or(wk.as_str(), |(_, w)| w))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The stacked bars of one week at `x` (`width` wide, in percent of the plot): from `base`
/// upwards, `scale` pixels per hour.
fn bars(
    week: &str,
    x: &str,
    width: &str,
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
            rect class="bar" x=(x) y=(format!("{y:.1}")) width=(width)
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
        assert!(
            s.contains("<svg id=\"toil-chart\" width=\"100%\" height=\"260\""),
            "{s}"
        );
        assert_eq!(s.matches("<rect class=\"bar\"").count(), 2, "{s}");
        assert!(s.contains("data-series=\"a\" data-week=\"2026-W48\" data-hours=\"1.5\""));
        assert!(s.contains("<line class=\"grid\""), "{s}");
        assert!(s.contains("></line>"), "lines are closed: {s}");
        assert!(s.contains(">2.00h</text>"), "axis up to a nice 2 h: {s}");
        assert!(s.contains("x=\"57.500%\""), "bars placed in percent: {s}");
        assert!(
            s.contains("width=\"35.000%\""),
            "bars sized in percent: {s}"
        );
    }

    #[test]
    fn week_labels_thin_out_on_narrow_plots_and_never_vanish() {
        // Two weeks: both labelled at every width.
        assert_eq!(label_tier(0, 2), Some(0));
        assert_eq!(label_tier(1, 2), Some(0));
        // A year on the narrowest plot: every 16th week; wider plots add the ones between.
        let tiers: Vec<Option<usize>> = (0..53).map(|i| label_tier(i, 53)).collect();
        assert_eq!(tiers[0], Some(0));
        assert_eq!(tiers[16], Some(0));
        assert_eq!(tiers[8], Some(1), "{tiers:?}");
        assert!(tiers[1..16].iter().all(|t| *t != Some(0)), "{tiers:?}");
        assert!(tiers.iter().all(|t| t.is_none_or(|t| t < TIERS.len())));
        // At every tier, labels are at least PITCH apart on the narrowest plot of the tier.
        for (t, min) in TIERS.iter().enumerate() {
            let shown: Vec<usize> = (0..53)
                .filter(|i| label_tier(*i, 53).is_some_and(|l| l <= t))
                .collect();
            let gap = shown.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(53);
            assert!(
                gap as f64 * min.max(NARROWEST) / 53.0 >= PITCH,
                "tier {t}: labels {gap} weeks apart"
            );
            assert!(shown.len() >= 4, "tier {t}: {shown:?}");
        }
    }

    #[test]
    fn the_stylesheet_shows_each_tier_from_its_width() {
        let css = include_str!("../assets/app.css");
        for (t, min) in TIERS.iter().enumerate().skip(1) {
            let rule = format!(
                "@container plot (min-width: {min}px) {{ .chart text.week.t{t} {{ display: inline; }} }}"
            );
            assert!(css.contains(&rule), "app.css lacks {rule}");
        }
    }
}
