//! The live dashboard: one self-contained page ([`PAGE`], embedded at
//! compile time; no CDN, no build step) fed once a second by server-sent
//! events from the server itself.
//!
//! Contract:
//! - [`Sampler::sample`] turns two successive views of the server (counters
//!   summed over threads, gauges) into one JSON object: rates over the
//!   interval (requests, accepted connections, 4xx and 5xx, bytes, pipeline
//!   jobs and 503s), gauges (connections, buffers, body memory, ring
//!   depths, streams), and p50/p99/p99.9 of request durations recorded in
//!   the interval, from the runtime's log-linear histograms (±12.5 %).
//!   Services add tiles through [`DashboardHook`]: a counter is shown as a
//!   rate, a gauge as it is, a histogram as p50/p99 of the interval.
//! - [`Feed`] keeps the subscribers (one per open page). A ticker thread
//!   (`stoat-dashboard`) runs only while there is at least one: every
//!   second it samples once and hands the same JSON to every subscriber;
//!   a subscriber that reports itself gone is dropped. A slow page loses
//!   samples (its stream answers `Full`), never delays the others.
//!   [`Feed::stop`] ends the thread at once.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::app::metrics::ServerView;
use crate::runtime::metrics::{Counter, HistogramSnapshot, Snapshot};

/// The page.
pub const PAGE: &str = include_str!("dashboard.html");

/// How often the feed samples.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// A service's tile value.
#[derive(Debug, Clone)]
pub enum ExtraValue {
    /// A monotonic total, shown as its rate per second.
    Counter(u64),
    /// A value shown as it is.
    Gauge(f64),
    /// Durations in nanoseconds, shown as p50/p99 of the last interval.
    Latency(HistogramSnapshot),
}

/// One service tile.
#[derive(Debug, Clone)]
pub struct Extra {
    /// A stable key (identifies the tile and its previous value).
    pub key: String,
    /// The tile's title.
    pub label: String,
    /// Its value now.
    pub value: ExtraValue,
}

/// A service's tiles, read once per sample on the ticker thread.
pub type DashboardHook = Arc<dyn Fn(&mut Vec<Extra>) + Send + Sync>;

/// Turns successive views into the feed's JSON.
#[derive(Debug, Default)]
pub struct Sampler {
    prev: Option<Prev>,
    /// Pipelines' 503 totals at the previous sample.
    rejected: Vec<u64>,
}

#[derive(Debug)]
struct Prev {
    at: Instant,
    accepted: u64,
    snapshot: Snapshot,
    duration: HistogramSnapshot,
    extras: HashMap<String, ExtraValue>,
}

impl Sampler {
    /// A sampler with no history (its first sample has zero rates).
    pub fn new() -> Sampler {
        Sampler::default()
    }

    /// One JSON object for the view at `now` (`unix_ms` is the wall clock).
    pub fn sample(
        &mut self,
        now: Instant,
        unix_ms: u64,
        view: &ServerView<'_>,
        extras: Vec<Extra>,
    ) -> String {
        let s = view.snapshot;
        let duration = s.duration();
        let prev = self.prev.take();
        let secs = prev
            .as_ref()
            .map(|p| now.saturating_duration_since(p.at).as_secs_f64())
            .filter(|&d| d > 0.0);
        let rate = |now: u64, then: Option<u64>| -> f64 {
            match (secs, then) {
                (Some(d), Some(then)) => now.saturating_sub(then) as f64 / d,
                _ => 0.0,
            }
        };
        let p_snap = prev.as_ref().map(|p| &p.snapshot);
        let counter = |c: Counter| rate(s.counter(c), p_snap.map(|p| p.counter(c)));
        let classes = s.classes();
        let p_classes = p_snap.map(Snapshot::classes);
        let recent = match &prev {
            Some(p) => duration.since(&p.duration),
            None => HistogramSnapshot::default(),
        };
        let q = |q: f64| recent.quantile(q).map(|ns| ns as f64 / 1e6);
        let open = |a: Counter, b: Counter| s.counter(a).saturating_sub(s.counter(b));

        let mut j = String::with_capacity(1024);
        let _ = write!(
            j,
            "{{\"t\":{unix_ms},\"uptime\":{},\"requests\":{},\"rps\":{},\"open\":{},\"accepted_ps\":{},",
            num(view.uptime_seconds),
            s.requests(),
            num(rate(s.requests(), p_snap.map(Snapshot::requests))),
            view.stats.connections,
            num(rate(view.stats.accepted, prev.as_ref().map(|p| p.accepted))),
        );
        let _ = write!(
            j,
            "\"p50_ms\":{},\"p99_ms\":{},\"p999_ms\":{},\"e4_ps\":{},\"e5_ps\":{},\"rx_bps\":{},\"tx_bps\":{},",
            opt(q(0.5)),
            opt(q(0.99)),
            opt(q(0.999)),
            num(rate(classes[3], p_classes.map(|c| c[3]))),
            num(rate(classes[4], p_classes.map(|c| c[4]))),
            num(counter(Counter::RequestBytes)),
            num(counter(Counter::ResponseBytes)),
        );
        let st = view.stats;
        let _ = write!(
            j,
            "\"buffers\":{},\"buffer_bytes\":{},\"buffer_waiters\":{},\"body_bytes\":{},\"arenas\":{},\"sse\":{},\"ws\":{},\"pipelines\":[",
            st.buffers,
            st.buffers * view.buffer_size,
            st.waiting_for_buffer,
            st.body_bytes,
            st.arenas_in_use,
            open(Counter::SseOpened, Counter::SseClosed),
            open(Counter::WsOpened, Counter::WsClosed),
        );
        for (i, p) in view.pipelines.iter().enumerate() {
            let now_p = s.pipelines.get(i);
            let then_p = p_snap.and_then(|p| p.pipelines.get(i));
            if i > 0 {
                j.push(',');
            }
            j.push_str("{\"name\":");
            json_str(&mut j, &p.name);
            let _ = write!(
                j,
                ",\"depth\":{},\"capacity\":{},\"jobs_ps\":{},\"rejected_ps\":{}}}",
                p.depth,
                p.capacity,
                num(rate(
                    now_p.map_or(0, |p| p.queued.count()),
                    then_p.map(|p| p.queued.count())
                )),
                num(rate(p.rejected, self.rejected.get(i).copied())),
            );
        }
        let rejected_now: Vec<u64> = view.pipelines.iter().map(|p| p.rejected).collect();
        if prev.is_none() {
            self.rejected.clear();
        }
        j.push_str("],\"extras\":[");
        let mut kept = HashMap::new();
        for (i, x) in extras.into_iter().enumerate() {
            if i > 0 {
                j.push(',');
            }
            j.push_str("{\"key\":");
            json_str(&mut j, &x.key);
            j.push_str(",\"label\":");
            json_str(&mut j, &x.label);
            let before = prev.as_ref().and_then(|p| p.extras.get(&x.key));
            match (&x.value, before) {
                (ExtraValue::Counter(n), before) => {
                    let then = match before {
                        Some(ExtraValue::Counter(t)) => Some(*t),
                        _ => None,
                    };
                    let _ = write!(
                        j,
                        ",\"kind\":\"rate\",\"value\":{},\"total\":{n}}}",
                        num(rate(*n, then))
                    );
                }
                (ExtraValue::Gauge(v), _) => {
                    let _ = write!(j, ",\"kind\":\"gauge\",\"value\":{}}}", num(*v));
                }
                (ExtraValue::Latency(h), before) => {
                    let recent = match before {
                        Some(ExtraValue::Latency(t)) => h.since(t),
                        _ => HistogramSnapshot::default(),
                    };
                    let q = |q: f64| recent.quantile(q).map(|ns| ns as f64 / 1e6);
                    let count_ps = secs.map_or(0.0, |d| recent.count() as f64 / d);
                    let _ = write!(
                        j,
                        ",\"kind\":\"latency\",\"p50_ms\":{},\"p99_ms\":{},\"count_ps\":{}}}",
                        opt(q(0.5)),
                        opt(q(0.99)),
                        num(count_ps)
                    );
                }
            }
            kept.insert(x.key, x.value);
        }
        j.push_str("]}");
        self.rejected = rejected_now;
        self.prev = Some(Prev {
            at: now,
            accepted: view.stats.accepted,
            snapshot: s.clone(),
            duration,
            extras: kept,
        });
        j
    }
}

/// A finite number as JSON (non-finite as 0).
fn num(v: f64) -> String {
    if v.is_finite() {
        // Two decimals are plenty for a dashboard and keep lines short.
        let r = (v * 100.0).round() / 100.0;
        format!("{r}")
    } else {
        "0".to_owned()
    }
}

fn opt(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{}", (v * 1000.0).round() / 1000.0),
        _ => "null".to_owned(),
    }
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A page's end of the feed: takes one JSON sample, says whether it is
/// still there (`false`: drop it).
pub type Subscriber = Box<dyn FnMut(&str) -> bool + Send>;

/// Produces one sample (the ticker calls it once per interval).
pub type Source = Box<dyn FnMut() -> String + Send>;

/// The subscribers and the ticker that feeds them.
pub struct Feed {
    inner: Arc<FeedInner>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed").finish_non_exhaustive()
    }
}

struct FeedInner {
    state: Mutex<FeedState>,
    wake: Condvar,
}

struct FeedState {
    subscribers: Vec<Subscriber>,
    /// Taken by the ticker thread while it runs.
    source: Option<Source>,
    stopped: bool,
}

impl Feed {
    /// A feed sampling `source`; no thread runs until a page subscribes.
    pub fn new(source: Source) -> Feed {
        Feed {
            inner: Arc::new(FeedInner {
                state: Mutex::new(FeedState {
                    subscribers: Vec::new(),
                    source: Some(source),
                    stopped: false,
                }),
                wake: Condvar::new(),
            }),
        }
    }

    /// Adds a page; starts the ticker if it is not running. Returns `false`
    /// (and drops `sub`) once the feed is stopped or the thread cannot start.
    pub fn subscribe(&self, sub: Subscriber) -> bool {
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.stopped {
            return false;
        }
        st.subscribers.push(sub);
        if let Some(source) = st.source.take() {
            let inner = self.inner.clone();
            let spawned = std::thread::Builder::new()
                .name("stoat-dashboard".into())
                .spawn(move || tick(inner, source));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "dashboard feed thread did not start");
                st.subscribers.clear();
                return false;
            }
        }
        true
    }

    /// Pages subscribed now.
    pub fn subscribers(&self) -> usize {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .subscribers
            .len()
    }

    /// Drops every page and ends the ticker.
    pub fn stop(&self) {
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        st.stopped = true;
        st.subscribers.clear();
        self.inner.wake.notify_all();
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The ticker: samples every interval while anyone listens.
fn tick(inner: Arc<FeedInner>, mut source: Source) {
    let mut next = Instant::now();
    loop {
        let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        // Waits out the interval (a periodic timer, not synchronisation);
        // `stop` wakes it at once.
        loop {
            if st.stopped {
                return;
            }
            let now = Instant::now();
            if now >= next {
                break;
            }
            st = inner
                .wake
                .wait_timeout(st, next - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if st.subscribers.is_empty() {
            // Nobody watches: give the source back; the next page restarts it.
            st.source = Some(source);
            return;
        }
        // Sampling reads every thread's block; done without the lock held
        // would let a page subscribe meanwhile, which is harmless either way.
        drop(st);
        let json = source();
        let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        st.subscribers.retain_mut(|sub| sub(&json));
        next += INTERVAL;
        let now = Instant::now();
        if next < now {
            next = now + INTERVAL;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::app::metrics::PipelineView;
    use crate::runtime::metrics::{Metrics, Shape};
    use crate::runtime::Stats;

    #[test]
    fn sample_rates_and_quantiles() {
        let m = Metrics::new(Shape {
            routes: 1,
            pipelines: 1,
        });
        let mut r = m.recorder();
        let stats = Stats::default();
        let pipes = [PipelineView {
            name: "p\"1".into(),
            depth: 3,
            capacity: 8,
            rejected: 0,
        }];
        let mut sampler = Sampler::new();
        let t0 = Instant::now();
        let s0 = m.snapshot();
        let v0 = ServerView {
            snapshot: &s0,
            stats: &stats,
            routes: &[],
            pipelines: &pipes,
            access_log: None,
            uptime_seconds: 1.0,
            buffer_size: 16384,
        };
        let first = sampler.sample(t0, 0, &v0, vec![]);
        assert!(first.contains("\"rps\":0,"), "{first}");
        assert!(first.contains("\"p50_ms\":null"), "{first}");
        for _ in 0..200 {
            r.response(Some(0), 200, Duration::from_micros(100));
        }
        for _ in 0..2 {
            r.response(Some(0), 503, Duration::from_millis(10));
        }
        let s1 = m.snapshot();
        let stats1 = Stats {
            connections: 1,
            accepted: 4,
            ..Stats::default()
        };
        let v1 = ServerView {
            snapshot: &s1,
            stats: &stats1,
            ..v0
        };
        let json = sampler.sample(
            t0 + Duration::from_secs(2),
            2000,
            &v1,
            vec![Extra {
                key: "commits".into(),
                label: "Commits".into(),
                value: ExtraValue::Counter(10),
            }],
        );
        assert!(json.contains("\"rps\":101,"), "{json}");
        assert!(json.contains("\"e5_ps\":1,"), "{json}");
        assert!(json.contains("\"open\":1,\"accepted_ps\":2,"), "{json}");
        assert!(
            json.contains("\"name\":\"p\\\"1\",\"depth\":3,\"capacity\":8"),
            "{json}"
        );
        // p50 of 100 µs within a bucket's half-width.
        let p50: f64 = json
            .split("\"p50_ms\":")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((p50 - 0.1).abs() <= 0.0125, "{json}");
        assert!(
            json.contains("\"kind\":\"rate\",\"value\":0,\"total\":10"),
            "{json}"
        );
    }

    #[test]
    fn feed_reaches_subscribers_and_drops_gone_ones() {
        let n = Arc::new(Mutex::new(0u64));
        let counter = n.clone();
        let feed = Feed::new(Box::new(move || {
            let mut n = counter.lock().unwrap();
            *n += 1;
            format!("{{\"n\":{n}}}")
        }));
        let (tx, rx) = mpsc::channel();
        assert!(feed.subscribe(Box::new(move |json| tx.send(json.to_owned()).is_ok())));
        let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(first, "{\"n\":1}");
        let second = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(second, "{\"n\":2}");
        drop(rx);
        // The next send fails: the subscriber is dropped.
        let deadline = Instant::now() + Duration::from_secs(10);
        while feed.subscribers() != 0 {
            assert!(Instant::now() < deadline);
            std::thread::yield_now();
        }
        feed.stop();
        assert!(!feed.subscribe(Box::new(|_| true)));
    }
}
