//! Latency histograms (HdrHistogram, nanoseconds, 3 significant digits) and their JSON.

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// A new latency histogram: 1 µs to 120 s, 3 significant digits, values in ns.
pub fn histogram() -> Histogram<u64> {
    // The bounds are constants that `new_with_bounds` accepts.
    Histogram::new_with_bounds(1_000, 120_000_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Records a latency, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    let _ = h.record(ns.clamp(1_000, 120_000_000_000));
}

/// Percentiles in microseconds: p50, p90, p99, p99.9, max, mean, count.
pub fn summary(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    let us = |v: u64| (v as f64 / 1_000.0 * 10.0).round() / 10.0;
    json!({
        "count": h.len(),
        "p50_us": us(h.value_at_quantile(0.50)),
        "p90_us": us(h.value_at_quantile(0.90)),
        "p99_us": us(h.value_at_quantile(0.99)),
        "p999_us": us(h.value_at_quantile(0.999)),
        "max_us": us(h.max()),
        "mean_us": (h.mean() / 1_000.0 * 10.0).round() / 10.0,
    })
}

/// Short text for progress lines: `p50 1.2ms p99 3.4ms`.
pub fn brief(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".into();
    }
    format!(
        "p50 {} p99 {} max {}",
        human(h.value_at_quantile(0.5)),
        human(h.value_at_quantile(0.99)),
        human(h.max())
    )
}

/// A duration in ns as text with a unit.
pub fn human(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.2}s", ns as f64 / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.2}ms", ns as f64 / 1e6)
    } else {
        format!("{:.0}µs", ns as f64 / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_ordered() {
        let mut h = histogram();
        for i in 1..=10_000u64 {
            record(&mut h, i * 1_000);
        }
        let s = summary(&h);
        let p = |k: &str| s[k].as_f64().unwrap_or(-1.0);
        assert!(p("p50_us") <= p("p99_us"));
        assert!(p("p99_us") <= p("p999_us"));
        assert!(p("p999_us") <= p("max_us"));
        assert_eq!(s["count"], 10_000);
    }
}
