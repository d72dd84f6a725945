//! The cost of one `/metrics` scrape with 1,000 routes' worth of
//! histograms: the page rendered from two threads' blocks (every route
//! answered, so every route's histogram is in the page), its size in
//! bytes, and the time to sum the blocks and render the text (the least
//! of 20 runs, one core).
//!
//! Usage: `cargo run --release -p stoat --example scrape_cost [ROUTES] [THREADS]`.

use std::time::{Duration, Instant};

use stoat::app::metrics::{render, RouteLabel, ServerView};
use stoat::runtime::metrics::{Metrics, Shape};
use stoat::runtime::Stats;

fn main() {
    let mut args = std::env::args().skip(1);
    let routes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let metrics = Metrics::new(Shape {
        routes,
        pipelines: 0,
    });
    let mut recorders: Vec<_> = (0..threads).map(|_| metrics.recorder()).collect();
    for (t, rec) in recorders.iter_mut().enumerate() {
        for route in 0..routes {
            for i in 0..20u64 {
                // Spread over many buckets: 1 µs to ~1 s.
                let ns = 1_000 << ((route as u64 + i + t as u64) % 20);
                rec.response(Some(route), 200, Duration::from_nanos(ns));
            }
        }
    }
    let labels: Vec<RouteLabel> = (0..routes)
        .map(|i| RouteLabel {
            method: "GET".into(),
            pattern: format!("/api/v1/resource{i}/{{id}}"),
        })
        .collect();
    let stats = Stats::default();
    let mut best = Duration::MAX;
    let mut bytes = 0;
    for _ in 0..20 {
        let start = Instant::now();
        let snapshot = metrics.snapshot();
        let page = render(
            &ServerView {
                snapshot: &snapshot,
                stats: &stats,
                routes: &labels,
                pipelines: &[],
                access_log: None,
                uptime_seconds: 1.0,
                buffer_size: 16384,
            },
            &[],
        );
        best = best.min(start.elapsed());
        bytes = page.len();
    }
    println!(
        "{routes} routes, {threads} threads: {bytes} bytes ({:.1} MiB), {:.2} ms per scrape (sum + render, best of 20)",
        bytes as f64 / (1 << 20) as f64,
        best.as_secs_f64() * 1e3
    );
}
