//! Charts drawn on the server as inline SVG: stacked bars over time, one `<title>` tooltip per
//! bar. The peak and three time labels are HTML beside the drawing, so they keep their size
//! when the drawing is stretched to a phone's width. No script, no inline style (the CSP allows
//! neither); colours come from `app.css` by class. Long ranges are merged into at most
//! [`MAX_BARS`] bars, so 30 days of minute data reads as well as an hour.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::store::usage::{self, Scope};

/// Bars drawn at most; longer ranges merge neighbouring buckets.
pub const MAX_BARS: usize = 120;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 160.0;
const LEFT: f64 = 0.0;
const BOTTOM: f64 = 1.0;

/// One series of a stacked chart: a name for the legend and tooltips, and its CSS class.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub name: &'static str,
    pub class: &'static str,
}

/// One bar: its start, a value per series, and counts by reason for the tooltip.
#[derive(Debug, Clone, Default)]
pub struct Bar {
    pub start: DateTime<Utc>,
    pub values: Vec<i64>,
    pub reasons: BTreeMap<String, i64>,
}

/// A drawn chart and what it says in words (for the page and screen readers).
#[derive(Debug, Clone)]
pub struct Chart {
    pub svg: String,
    pub summary: String,
    pub empty: bool,
    /// The largest bar's total, the top of the scale.
    pub peak: String,
    /// The times under the left edge, the middle and the right edge.
    pub ticks: [String; 3],
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn label(t: DateTime<Utc>, step: TimeDelta) -> String {
    if step >= TimeDelta::days(1) {
        t.format("%b %-d").to_string()
    } else if step >= TimeDelta::hours(1) {
        t.format("%b %-d %H:00").to_string()
    } else {
        t.format("%H:%M").to_string()
    }
}

/// Merges neighbouring bars until at most [`MAX_BARS`] remain. Returns the bars and the width of
/// one in time.
fn merge(bars: Vec<Bar>, step: TimeDelta) -> (Vec<Bar>, TimeDelta) {
    let per = bars.len().div_ceil(MAX_BARS).max(1);
    if per == 1 {
        return (bars, step);
    }
    let mut out: Vec<Bar> = Vec::with_capacity(MAX_BARS);
    for group in bars.chunks(per) {
        let mut b = Bar { start: group[0].start, values: vec![0; group[0].values.len()], reasons: BTreeMap::new() };
        for g in group {
            for (i, v) in g.values.iter().enumerate() {
                b.values[i] += v;
            }
            for (reason, n) in &g.reasons {
                *b.reasons.entry(reason.clone()).or_default() += n;
            }
        }
        out.push(b);
    }
    let width = step * i32::try_from(per).unwrap_or(1);
    (out, width)
}

/// Draws stacked bars, oldest on the left.
#[must_use]
pub fn stacked(title: &str, series: &[Series], bars: Vec<Bar>, step: TimeDelta) -> Chart {
    let totals: Vec<i64> = (0..series.len()).map(|i| bars.iter().map(|b| b.values[i]).sum()).collect();
    let empty = totals.iter().all(|t| *t == 0);
    let (bars, width) = merge(bars, step);
    let peak = bars.iter().map(|b| b.values.iter().sum::<i64>()).max().unwrap_or(0).max(1);
    let n = bars.len().max(1);
    #[expect(clippy::cast_precision_loss, reason = "pixel positions")]
    let slot = (WIDTH - LEFT) / n as f64;
    let plot = HEIGHT - BOTTOM;
    let mut svg = String::with_capacity(256 + bars.len() * 160);
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}" preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">"#,
        esc(title)
    );
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" y1="{plot}" x2="{WIDTH}" y2="{plot}"/><line class="gridline" x1="{LEFT}" y1="4" x2="{WIDTH}" y2="4"/>"#,
    );
    for (i, b) in bars.iter().enumerate() {
        #[expect(clippy::cast_precision_loss, reason = "pixel positions")]
        let x = (i as f64).mul_add(slot, LEFT);
        let mut y = plot;
        let mut tip = format!("{} – {}", label(b.start, width), label(b.start + width, width));
        for (s, v) in series.iter().zip(&b.values) {
            let _ = write!(tip, "\n{} {v}", s.name);
            if *v == 0 {
                continue;
            }
            #[expect(clippy::cast_precision_loss, reason = "pixel positions")]
            let h = (*v as f64 / peak as f64) * (plot - 4.0);
            y -= h;
            let _ = write!(
                svg,
                r#"<rect class="{}" x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}"/>"#,
                s.class,
                (slot - 1.0).max(0.5)
            );
        }
        if !b.reasons.is_empty() {
            let reasons: Vec<String> = b.reasons.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = write!(tip, "\n({})", reasons.join(", "));
        }
        // A transparent full-height target carries the tooltip, so thin bars are easy to hover.
        let _ = write!(
            svg,
            r#"<rect class="hit" x="{x:.1}" y="0" width="{slot:.1}" height="{plot}"><title>{}</title></rect>"#,
            esc(&tip)
        );
    }
    let ticks = match (bars.first(), bars.last()) {
        (Some(first), Some(last)) => {
            [label(first.start, width), label(bars[bars.len() / 2].start, width), label(last.start + width, width)]
        }
        _ => Default::default(),
    };
    svg.push_str("</svg>");
    let summary = series.iter().zip(&totals).map(|(s, t)| format!("{} {t}", s.name)).collect::<Vec<_>>().join(", ");
    Chart { svg, summary, empty, peak: peak.to_string(), ticks }
}

/// The billing period's verifications per day, split where the running total passes the
/// month's allowance (`None`: unlimited), from the period's start to `until`.
#[must_use]
pub fn allowance_chart(
    days: &[(DateTime<Utc>, u64)],
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    allowance: Option<u64>,
) -> Chart {
    const SERIES: [Series; 2] =
        [Series { name: "within allowance", class: "ok" }, Series { name: "over allowance", class: "bad" }];
    let day = TimeDelta::days(1);
    let mut bars = Vec::new();
    let mut at = from.duration_trunc(day).unwrap_or(from);
    let mut running: u64 = 0;
    while at < until && bars.len() < 62 {
        let n = days.iter().find(|(d, _)| *d == at).map_or(0, |(_, n)| *n);
        let within = allowance.map_or(n, |a| n.min(a.saturating_sub(running)));
        running = running.saturating_add(n);
        let over = n - within;
        bars.push(Bar {
            start: at,
            values: vec![i64::try_from(within).unwrap_or(i64::MAX), i64::try_from(over).unwrap_or(i64::MAX)],
            reasons: BTreeMap::new(),
        });
        at += day;
    }
    stacked("Verifications per day this period", &SERIES, bars, day)
}

/// Presets of the usage charts.
pub const PRESETS: [(&str, &str); 4] = [("1h", "last hour"), ("24h", "24 hours"), ("7d", "7 days"), ("30d", "30 days")];

/// The range and bucket size of a preset (24 hours when unknown).
#[must_use]
pub fn preset(name: &str, now: DateTime<Utc>) -> (&'static str, TimeDelta, DateTime<Utc>, &'static str) {
    let (key, span, granularity) = match name {
        "1h" => ("1h", TimeDelta::hours(1), "minute"),
        "7d" => ("7d", TimeDelta::days(7), "hour"),
        "30d" => ("30d", TimeDelta::days(30), "hour"),
        _ => ("24h", TimeDelta::hours(24), "hour"),
    };
    let step = usage::step_of(granularity);
    let from = (now - span + step).duration_trunc(step).unwrap_or(now - span);
    (key, step, from, granularity)
}

const USAGE: [Series; 2] = [Series { name: "accepted", class: "ok" }, Series { name: "rejected", class: "bad" }];

/// Accepted versus rejected verifications of `scope` for a preset, rejection reasons in each
/// bar's tooltip.
///
/// # Errors
/// Database errors.
pub async fn usage_chart(
    db: &impl sea_orm::ConnectionTrait,
    tenant: &crate::domain::TenantId,
    scope: Scope<'_>,
    preset_name: &str,
) -> Result<(Chart, &'static str), crate::store::StoreError> {
    let now = Utc::now();
    let (key, step, from, granularity) = preset(preset_name, now);
    let rows = usage::counts(db, tenant, scope, granularity, from, now).await?;
    let mut cells: BTreeMap<DateTime<Utc>, (i64, i64, BTreeMap<String, i64>)> = BTreeMap::new();
    let mut at = from;
    while at <= now {
        cells.insert(at, (0, 0, BTreeMap::new()));
        at += step;
    }
    for (t, code, n) in rows {
        let c = cells.entry(t.duration_trunc(step).unwrap_or(t)).or_default();
        if code == "VALID" {
            c.0 += n;
        } else {
            c.1 += n;
            *c.2.entry(code).or_default() += n;
        }
    }
    let bars = cells
        .into_iter()
        .map(|(start, (ok, bad, codes))| Bar { start, values: vec![ok, bad], reasons: codes })
        .collect();
    Ok((stacked("Verifications, accepted and rejected", &USAGE, bars, step), key))
}

const MIGRATION: [Series; 2] =
    [Series { name: "new version", class: "ok" }, Series { name: "old version", class: "old" }];

/// Old versus new versions' successful verifications.
#[must_use]
pub fn migration_chart(points: &[crate::app::rotation::migration::Point], step: TimeDelta) -> Chart {
    let bars = points
        .iter()
        .filter_map(|p| {
            let start = DateTime::parse_from_rfc3339(&p.bucket_start).ok()?.with_timezone(&Utc);
            Some(Bar { start, values: vec![p.new, p.old], reasons: BTreeMap::new() })
        })
        .collect();
    stacked("Traffic on the new and the old versions", &MIGRATION, bars, step)
}

/// A small bar chart of daily totals for a table cell (oldest on the left), with the total and
/// the busiest day in its tooltip and label.
#[must_use]
pub fn sparkline(days: &[(DateTime<Utc>, i64)]) -> String {
    const W: f64 = 90.0;
    const H: f64 = 20.0;
    let total: i64 = days.iter().map(|(_, n)| n).sum();
    let peak = days.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let words = if total == 0 {
        format!("No verifications in the last {} days", days.len())
    } else {
        let (busiest, most) = days.iter().max_by_key(|(_, n)| *n).copied().unwrap_or_default();
        format!(
            "{total} verifications in the last {} days; busiest {} with {most}",
            days.len(),
            busiest.format("%b %-d")
        )
    };
    let n = days.len().max(1);
    #[expect(clippy::cast_precision_loss, reason = "pixel positions")]
    let slot = W / n as f64;
    let mut svg = String::with_capacity(160 + days.len() * 70);
    let _ = write!(
        svg,
        r#"<svg class="spark" viewBox="0 0 {W} {H}" role="img" aria-label="{words}" preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg"><title>{words}</title><line class="axis" x1="0" y1="{H}" x2="{W}" y2="{H}"/>"#
    );
    for (i, (_, v)) in days.iter().enumerate() {
        if *v == 0 {
            continue;
        }
        #[expect(clippy::cast_precision_loss, reason = "pixel positions")]
        let (x, h) = (i as f64 * slot, (*v as f64 / peak as f64) * (H - 1.0));
        let _ = write!(
            svg,
            r#"<rect class="ok" x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}"/>"#,
            H - h,
            (slot - 0.6).max(0.4)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(n: usize) -> Vec<Bar> {
        let start = DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default();
        (0..n)
            .map(|i| Bar {
                start: start + TimeDelta::minutes(i64::try_from(i).unwrap_or(0)),
                values: vec![2, 1],
                reasons: BTreeMap::from([("REVOKED".to_owned(), 1)]),
            })
            .collect()
    }

    #[test]
    fn thirty_days_of_minutes_become_at_most_the_bar_limit() {
        let c = stacked("t", &USAGE, bars(43_200), TimeDelta::minutes(1));
        assert_eq!(c.svg.matches("class=\"hit\"").count(), MAX_BARS);
        assert!(c.summary.contains("accepted 86400") && c.summary.contains("rejected 43200"), "{}", c.summary);
        assert!(c.svg.contains("REVOKED 360"), "merged reasons add up");
        assert!(c.svg.len() < 120_000, "{} bytes", c.svg.len());
    }

    #[test]
    fn a_sparkline_draws_a_bar_per_busy_day_and_says_its_total() {
        let start = DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default();
        let days: Vec<_> = (0..30).map(|i| (start + TimeDelta::days(i), if i == 4 { 10 } else { i % 2 })).collect();
        let s = sparkline(&days);
        assert_eq!(s.matches("<rect").count(), 16, "15 odd days and the busiest: {s}");
        assert!(s.contains("25 verifications in the last 30 days; busiest Nov 28 with 10"), "{s}");
        assert!(s.contains("height=\"19.0\""), "the busiest day fills the height: {s}");
        let quiet = sparkline(&days.iter().map(|(d, _)| (*d, 0)).collect::<Vec<_>>());
        assert!(!quiet.contains("<rect") && quiet.contains("No verifications in the last 30 days"));
    }

    #[test]
    fn the_allowance_chart_splits_the_day_the_allowance_is_passed() {
        let start = DateTime::from_timestamp(1_764_547_200, 0).unwrap_or_default();
        let days = [(start, 60), (start + TimeDelta::days(2), 70), (start + TimeDelta::days(3), 5)];
        let c = allowance_chart(&days, start, start + TimeDelta::days(4) - TimeDelta::hours(1), Some(100));
        assert_eq!(c.svg.matches("class=\"hit\"").count(), 4, "one bar per day so far");
        assert!(c.summary.contains("within allowance 100") && c.summary.contains("over allowance 35"), "{}", c.summary);
        assert!(c.svg.contains("within allowance 40\nover allowance 30"), "{}", c.svg);
        let unlimited = allowance_chart(&days, start, start + TimeDelta::days(4), None);
        assert!(unlimited.summary.contains("within allowance 135") && unlimited.summary.contains("over allowance 0"));
    }

    #[test]
    fn text_is_escaped_and_empty_charts_say_so() {
        let mut b = bars(1);
        b[0].reasons = BTreeMap::from([("<script>".to_owned(), 1)]);
        let c = stacked("a \"title\"", &USAGE, b, TimeDelta::minutes(1));
        assert!(!c.svg.contains("<script>") && c.svg.contains("&lt;script&gt;"));
        assert!(c.svg.contains("a &quot;title&quot;"));
        let none = stacked("t", &USAGE, vec![Bar { values: vec![0, 0], ..Bar::default() }], TimeDelta::hours(1));
        assert!(none.empty);
    }
}
