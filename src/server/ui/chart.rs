//! A metric's trend across versions as an inline SVG: drawn on the server,
//! no script.

use maud::{Markup, html};

use super::{num, version_href};
use crate::{Goal, MetricPoint, MetricSpec, VersionNumber};

const W: f64 = 720.0;
const H: f64 = 200.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 30.0;

/// At most this many points are drawn; a longer history keeps each bucket's
/// lowest and highest value, so no spike disappears.
const MAX_POINTS: usize = 600;

/// The points to draw: all of them, or each bucket's extremes.
fn thin(points: &[MetricPoint]) -> Vec<&MetricPoint> {
    if points.len() <= MAX_POINTS {
        return points.iter().collect();
    }
    let buckets = MAX_POINTS / 2;
    let per = points.len().div_ceil(buckets);
    let mut out: Vec<&MetricPoint> = Vec::with_capacity(MAX_POINTS + 2);
    out.extend(points.first());
    for chunk in points.chunks(per) {
        let lo = chunk.iter().min_by(|a, b| a.value.total_cmp(&b.value));
        let hi = chunk.iter().max_by(|a, b| a.value.total_cmp(&b.value));
        if let (Some(lo), Some(hi)) = (lo, hi) {
            if lo.version <= hi.version {
                out.extend([lo, hi]);
            } else {
                out.extend([hi, lo]);
            }
        }
    }
    out.extend(points.last());
    out.dedup_by_key(|p| p.version);
    out
}

/// The chart of `metric` over `points` (oldest first), production marked.
pub(super) fn trend(
    model: &str,
    metric: &str,
    spec: &MetricSpec,
    points: &[MetricPoint],
    production: Option<VersionNumber>,
) -> Markup {
    let direction = match spec.goal {
        Goal::Maximize => "higher is better",
        Goal::Minimize => "lower is better",
    };
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return html! {
            figure.chart {
                figcaption { strong { (metric) } " (" (direction) ")" }
                p.muted { "No version has this metric yet." }
            }
        };
    };
    let lo = points.iter().map(|p| p.value).fold(f64::INFINITY, f64::min);
    let hi = points
        .iter()
        .map(|p| p.value)
        .fold(f64::NEG_INFINITY, f64::max);
    let pad = if hi > lo {
        (hi - lo) * 0.08
    } else {
        lo.abs().max(1.0) * 0.05
    };
    let (lo, hi) = (lo - pad, hi + pad);
    let (n0, n1) = (first.version.get() as f64, last.version.get() as f64);
    let x = |n: VersionNumber| {
        if n1 > n0 {
            LEFT + (n.get() as f64 - n0) / (n1 - n0) * (W - LEFT - RIGHT)
        } else {
            (LEFT + W - RIGHT) / 2.0
        }
    };
    let y = |v: f64| TOP + (hi - v) / (hi - lo) * (H - TOP - BOTTOM);
    let drawn = thin(points);
    let line: String = drawn
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.version), y(p.value)))
        .collect::<Vec<_>>()
        .join(" ");
    let prod = production.and_then(|n| points.iter().find(|p| p.version == n));
    let ticks = [hi - pad, (hi + lo) / 2.0, lo + pad];
    let label = match prod {
        Some(p) => format!(
            "{metric} across {} versions, {direction}; production v{} at {}",
            points.len(),
            p.version,
            num(p.value)
        ),
        None => format!(
            "{metric} across {} versions, {direction}; no production version",
            points.len()
        ),
    };
    html! {
        figure.chart {
            figcaption {
                strong { (metric) } " (" (direction) ") across " (points.len()) " versions"
                @if let Some(p) = prod { " · production v" (p.version) " = " (num(p.value)) }
            }
            // A group, not an image: its points are links, and an image's
            // content is hidden from assistive technology.
            svg viewBox={ "0 0 " (W) " " (H) } role="group" aria-label=(label) {
                @for t in ticks {
                    line.grid x1=(LEFT) x2={ (W - RIGHT) } y1=(format!("{:.1}", y(t))) y2=(format!("{:.1}", y(t))) {}
                    text.tick x={ (LEFT - 6.0) } y=(format!("{:.1}", y(t) + 4.0)) text-anchor="end" { (num(t)) }
                }
                text.tick x=(LEFT) y={ (H - 8.0) } text-anchor="start" { "v" (first.version) }
                @if last.version != first.version {
                    text.tick x={ (W - RIGHT) } y={ (H - 8.0) } text-anchor="end" { "v" (last.version) }
                }
                polyline.trend points=(line) {}
                @if drawn.len() <= 60 {
                    @for p in &drawn {
                        a href=(version_href(model, p.version)) aria-label={ "v" (p.version) ": " (num(p.value)) } {
                            circle.pt cx=(format!("{:.1}", x(p.version))) cy=(format!("{:.1}", y(p.value))) r="3.5" {
                                title { "v" (p.version) ": " (num(p.value)) }
                            }
                        }
                    }
                }
                @if let Some(p) = prod {
                    a href=(version_href(model, p.version)) aria-label={ "production v" (p.version) ": " (num(p.value)) } {
                        circle.prod cx=(format!("{:.1}", x(p.version))) cy=(format!("{:.1}", y(p.value))) r="6" {
                            title { "production v" (p.version) ": " (num(p.value)) }
                        }
                    }
                    text.prod-label
                        x=(format!("{:.1}", x(p.version).clamp(LEFT + 40.0, W - RIGHT - 40.0)))
                        y=(format!("{:.1}", (y(p.value) - 10.0).max(TOP + 2.0)))
                        text-anchor="middle" { "production" }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(n: u64) -> Vec<MetricPoint> {
        (1..=n)
            .map(|i| MetricPoint {
                version: VersionNumber::new(i).expect("a number"),
                created_at: chrono::DateTime::UNIX_EPOCH,
                value: if i == n / 2 { 100.0 } else { (i % 7) as f64 },
            })
            .collect()
    }

    #[test]
    fn a_long_history_is_thinned_but_keeps_its_spike_and_ends() {
        let all = points(100_000);
        let drawn = thin(&all);
        assert!(drawn.len() <= MAX_POINTS + 2, "{}", drawn.len());
        assert!(drawn.iter().any(|p| p.value == 100.0));
        assert!(drawn.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(drawn.first().map(|p| p.version.get()), Some(1));
        assert_eq!(drawn.last().map(|p| p.version.get()), Some(100_000));
        assert_eq!(thin(&all[..10]).len(), 10);
    }
}
