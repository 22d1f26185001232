//! The `--chart` output of `sluice bench`: an SVG with throughput over time
//! and the produce latency distribution, drawn by hand (no dependency).

use std::fmt::Write;

use super::{BenchArgs, Report};

const W: f64 = 460.0;
const H: f64 = 300.0;
const PAD: f64 = 50.0;

/// A polyline of (x, y) data scaled into a panel whose left edge is `x0`.
fn polyline(points: &[(f64, f64)], x_max: f64, y_max: f64, x0: f64, colour: &str) -> String {
    let pts: Vec<String> = points
        .iter()
        .map(|(x, y)| {
            let px = x0 + PAD + x / x_max.max(1e-9) * (W - 2.0 * PAD);
            let py = H - PAD - y / y_max.max(1e-9) * (H - 2.0 * PAD);
            format!("{px:.1},{py:.1}")
        })
        .collect();
    format!(
        r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
        pts.join(" ")
    )
}

fn axes(
    out: &mut String,
    x0: f64,
    title: &str,
    x_label: &str,
    y_label: &str,
    x_max: f64,
    y_max: f64,
) {
    let (l, r, t, b) = (x0 + PAD, x0 + W - PAD, PAD, H - PAD);
    let _ = write!(
        out,
        r#"<text x="{:.0}" y="25" font-size="14" text-anchor="middle">{title}</text>
<line x1="{l}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{l}" y1="{t}" x2="{l}" y2="{b}" stroke="black"/>
<text x="{:.0}" y="{:.0}" font-size="11" text-anchor="middle">{x_label}</text>
<text x="{:.0}" y="{:.0}" font-size="11" text-anchor="middle" transform="rotate(-90 {:.0} {:.0})">{y_label}</text>
<text x="{l}" y="{:.0}" font-size="10" text-anchor="middle">0</text><text x="{r}" y="{:.0}" font-size="10" text-anchor="middle">{x_max:.1}</text>
<text x="{:.0}" y="{b}" font-size="10" text-anchor="end">0</text><text x="{:.0}" y="{t}" font-size="10" text-anchor="end">{y_max:.1}</text>
"#,
        x0 + W / 2.0,
        x0 + W / 2.0,
        H - 12.0,
        x0 + 14.0,
        H / 2.0,
        x0 + 14.0,
        H / 2.0,
        b + 14.0,
        b + 14.0,
        l - 4.0,
        l - 4.0,
    );
}

/// The SVG document for one run.
pub fn svg(args: &BenchArgs, r: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="{}" font-size="11">{} B messages, acks={}, {} partition(s), {} producer(s), {} consumer(s): {:.0} msgs/s, {:.1} MB/s</text>
"#,
        2.0 * W,
        H + 20.0,
        H + 12.0,
        args.message_size,
        args.acks,
        args.partitions,
        args.producers,
        args.consumers,
        r.messages_per_sec,
        r.mb_per_sec
    );
    // Throughput over time, MB/s.
    let mb = |n: f64| n * args.message_size as f64 / 1e6;
    let produced: Vec<(f64, f64)> = r
        .timeline
        .iter()
        .map(|s| (s.second, mb(s.produced_per_sec)))
        .collect();
    let consumed: Vec<(f64, f64)> = r
        .timeline
        .iter()
        .map(|s| (s.second, mb(s.consumed_per_sec)))
        .collect();
    let t_max = r.timeline.last().map(|s| s.second).unwrap_or(1.0);
    let y_max = produced
        .iter()
        .chain(&consumed)
        .map(|p| p.1)
        .fold(1.0, f64::max)
        * 1.1;
    axes(&mut out, 0.0, "throughput", "seconds", "MB/s", t_max, y_max);
    out += &polyline(&produced, t_max, y_max, 0.0, "#1f77b4");
    out += &polyline(&consumed, t_max, y_max, 0.0, "#ff7f0e");
    let _ = write!(
        out,
        r##"<text x="{}" y="{}" font-size="10" fill="#1f77b4">produced</text><text x="{}" y="{}" font-size="10" fill="#ff7f0e">consumed</text>"##,
        PAD + 10.0,
        PAD + 12.0,
        PAD + 70.0,
        PAD + 12.0
    );
    // Latency by percentile, x in "nines": 90% -> 1, 99% -> 2, 99.9% -> 3.
    let nines = |q: f64| -(1.0 - (q / 100.0).min(0.9999)).log10();
    let lat: Vec<(f64, f64)> = r
        .produce_latency_distribution
        .iter()
        .map(|&(q, ms)| (nines(q), ms))
        .collect();
    let l_max = lat.iter().map(|p| p.1).fold(0.1, f64::max) * 1.1;
    axes(
        &mut out,
        W,
        "produce latency by percentile",
        "nines (1 = p90, 2 = p99, 3 = p99.9)",
        "ms",
        4.0,
        l_max,
    );
    out += &polyline(&lat, 4.0, l_max, W, "#2ca02c");
    out += "</svg>\n";
    out
}
