//! `/metrics`: the Prometheus text exposition format, version 0.0.4.
//!
//! Contract:
//! - [`Exposition`] writes metric families: a `# HELP` and a `# TYPE` line
//!   once per family, then its samples, every sample of a family together
//!   (the format requires it). Label values are escaped (`\\`, `\"`, `\n`),
//!   HELP text too (`\\`, `\n`); a metric or label name that is not valid
//!   (`[a-zA-Z_:][a-zA-Z0-9_:]*`, labels without `:`) has its bad characters
//!   replaced by `_`, so a service's hook cannot make the page unparseable.
//! - Histograms are written as classic Prometheus histograms: `_bucket`
//!   with cumulative counts at the power-of-two edges of the runtime's
//!   log-linear histogram (exact there, see `runtime/metrics.rs`) and
//!   `+Inf`, then `_sum` and `_count`, in seconds for durations.
//! - [`render`] writes the server's own families from a [`ServerView`] and
//!   then each service hook ([`MetricsHook`]), which adds its own families
//!   through the same [`Exposition`].
//! - Routes that have not answered a request are left out of per-route
//!   families (as client libraries create labelled series on first use),
//!   so a scrape's size follows the routes in use, not the routes declared.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::app::dashboard::{DashboardHook, Feed, Sampler, PAGE};
use crate::app::pipeline::PipelineObs;
use crate::app::router::Kind;
use crate::app::{EventStream, Request, Response, Router, SendError, SseEvent};
use crate::config::MetricsConfig;
use crate::proto::Method;
use crate::runtime::access_log::AccessLog;
use crate::runtime::metrics::Metrics;
use crate::runtime::metrics::{
    exposition_edges, CloseReason, Counter, HistogramSnapshot, Snapshot, STATUS_CLASSES,
};
use crate::runtime::{Stats, StatsReader};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A service's contribution to `/metrics`: called on each scrape, after the
/// server's own families, on the scraping network thread (keep it short:
/// read atomics or snapshots, never block).
pub type MetricsHook = Arc<dyn Fn(&mut Exposition) + Send + Sync>;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Monotonic; its name should end in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// `_bucket`/`_sum`/`_count` samples (see [`Exposition::histogram`]).
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// What a histogram's recorded values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Durations in nanoseconds, shown in seconds, `le` from 1.024 µs to
    /// 68.7 s by powers of two.
    Nanoseconds,
    /// Counts or sizes, shown as they are, `le` from 1 to 2^24 by powers of two.
    Count,
}

/// The exposition text being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    /// The family being written (its samples must carry its name).
    family: String,
}

impl Exposition {
    /// An empty page.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts family `name`: its `# HELP` and `# TYPE` lines. Write its
    /// samples next, before starting another family.
    pub fn family(&mut self, name: &str, kind: MetricType, help: &str) -> &mut Exposition {
        self.family.clear();
        push_name(&mut self.family, name, true);
        let _ = write!(self.out, "# HELP {} ", self.family);
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        let _ = writeln!(self.out, "\n# TYPE {} {}", self.family, kind.as_str());
        self
    }

    /// A sample of the current family with `labels` and an integer value.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: u64) -> &mut Exposition {
        self.sample_suffixed("", labels, None, &value);
        self
    }

    /// A sample of the current family with a floating-point value.
    pub fn sample_f64(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Exposition {
        self.sample_suffixed("", labels, None, &Float(value));
        self
    }

    /// A histogram of the current family (declared [`MetricType::Histogram`])
    /// with `labels`, its recorded values in `unit`.
    pub fn histogram(
        &mut self,
        labels: &[(&str, &str)],
        histogram: &HistogramSnapshot,
        unit: Unit,
    ) -> &mut Exposition {
        let (edges, per) = match unit {
            Unit::Nanoseconds => (exposition_edges(10, 36), 1e9),
            Unit::Count => (exposition_edges(0, 24), 1.0),
        };
        let count = histogram.count();
        for (edge, n) in histogram.cumulative_at(edges) {
            // Division, not multiplication by 1e-9: correctly rounded, so
            // 2^10 ns prints as 0.000001024.
            let le = Float(edge as f64 / per).to_string();
            self.sample_suffixed("_bucket", labels, Some(&le), &n);
        }
        self.sample_suffixed("_bucket", labels, Some("+Inf"), &count);
        self.sample_suffixed("_sum", labels, None, &Float(histogram.sum as f64 / per));
        self.sample_suffixed("_count", labels, None, &count);
        self
    }

    /// The page so far.
    pub fn as_str(&self) -> &str {
        &self.out
    }

    /// The page.
    pub fn into_string(self) -> String {
        self.out
    }

    fn sample_suffixed(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        le: Option<&str>,
        value: &dyn std::fmt::Display,
    ) {
        self.out.push_str(&self.family);
        self.out.push_str(suffix);
        if !labels.is_empty() || le.is_some() {
            self.out.push('{');
            let mut first = true;
            for (name, value) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
                if !first {
                    self.out.push(',');
                }
                first = false;
                push_name(&mut self.out, name, false);
                self.out.push_str("=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A float as the format writes it: `+Inf`, `-Inf`, `NaN`, or decimal.
struct Float(f64);

impl std::fmt::Display for Float {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_nan() {
            f.write_str("NaN")
        } else if self.0.is_infinite() {
            f.write_str(if self.0 > 0.0 { "+Inf" } else { "-Inf" })
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// Appends `name` with every character outside the allowed set replaced by
/// `_` (and a leading digit prefixed by `_`).
fn push_name(out: &mut String, name: &str, metric: bool) {
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    for c in name.chars() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || (metric && c == ':');
        out.push(if ok { c } else { '_' });
    }
}

/// A route as labels show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLabel {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The pattern as registered, like `/v1/kv/{key}`.
    pub pattern: String,
}

/// A pipeline as the exposition shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineView {
    /// Its configured name.
    pub name: String,
    /// Jobs in its ring now.
    pub depth: u64,
    /// Its ring's slots.
    pub capacity: u64,
    /// Requests answered 503 because its ring was full.
    pub rejected: u64,
}

/// What one scrape reads.
#[derive(Debug)]
pub struct ServerView<'a> {
    /// Every thread's counters summed.
    pub snapshot: &'a Snapshot,
    /// The runtime's gauges (buffers, body memory, arenas).
    pub stats: &'a Stats,
    /// Route labels by route index.
    pub routes: &'a [RouteLabel],
    /// Pipelines by index.
    pub pipelines: &'a [PipelineView],
    /// Access-log lines written and dropped, when the log is on.
    pub access_log: Option<(u64, u64)>,
    /// Seconds since the server started.
    pub uptime_seconds: f64,
    /// Bytes of one read buffer.
    pub buffer_size: usize,
}

const CLASSES: [&str; STATUS_CLASSES] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The whole page: the server's families, then each hook's.
pub fn render(view: &ServerView<'_>, hooks: &[MetricsHook]) -> String {
    let mut x = Exposition::new();
    server_families(&mut x, view);
    for hook in hooks {
        hook(&mut x);
    }
    x.into_string()
}

fn server_families(x: &mut Exposition, v: &ServerView<'_>) {
    let s = v.snapshot;
    x.family(
        "stoat_uptime_seconds",
        MetricType::Gauge,
        "Seconds since the server started.",
    )
    .sample_f64(&[], v.uptime_seconds);
    connections(x, s, v.stats);
    requests(x, v);
    memory(x, v.stats);
    pipelines(x, v);
    deferred(x, v.stats);
    streams(x, s);
    if let Some((written, dropped)) = v.access_log {
        x.family(
            "stoat_access_log_lines_total",
            MetricType::Counter,
            "Access-log lines written.",
        )
        .sample(&[], written);
        x.family(
            "stoat_access_log_dropped_total",
            MetricType::Counter,
            "Access-log lines dropped: the queue was full (the writer fell behind) or the file was unusable.",
        )
        .sample(&[], dropped);
    }
}

fn connections(x: &mut Exposition, s: &Snapshot, st: &Stats) {
    x.family(
        "stoat_connections_accepted_total",
        MetricType::Counter,
        "Connections accepted.",
    )
    .sample(&[], st.accepted);
    x.family(
        "stoat_connections_open",
        MetricType::Gauge,
        "Connections open now.",
    )
    .sample(&[], st.connections as u64);
    x.family(
        "stoat_connections_closed_total",
        MetricType::Counter,
        "Connections closed, by reason: client_close (EOF, reset, or Connection: close), keepalive_timeout, request_timeout (408), write_stall, error (protocol or socket), evicted (at max_connections), shutdown.",
    );
    for reason in CloseReason::ALL {
        x.sample(&[("reason", reason.label())], s.closed(reason));
    }
}

fn requests(x: &mut Exposition, v: &ServerView<'_>) {
    let s = v.snapshot;
    let label = |i: usize| -> (&str, &str) {
        match v.routes.get(i) {
            Some(r) => (r.method.as_str(), r.pattern.as_str()),
            None => ("", "unmatched"),
        }
    };
    let used = || {
        s.routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.requests() > 0)
    };
    x.family(
        "stoat_requests_total",
        MetricType::Counter,
        "Responses sent, by route (method and pattern; \"unmatched\" for 404, 405 and protocol errors) and status class.",
    );
    for (i, r) in used() {
        let (method, route) = label(i);
        for (class, &n) in CLASSES.iter().zip(&r.classes) {
            if n > 0 {
                x.sample(&[("method", method), ("route", route), ("class", class)], n);
            }
        }
    }
    x.family(
        "stoat_request_duration_seconds",
        MetricType::Histogram,
        "From the first byte of the request head to the last byte of the response handed to the kernel, by route.",
    );
    for (i, r) in used() {
        let (method, route) = label(i);
        x.histogram(
            &[("method", method), ("route", route)],
            &r.duration,
            Unit::Nanoseconds,
        );
    }
    x.family(
        "stoat_request_bytes_total",
        MetricType::Counter,
        "Request bytes read (heads and bodies).",
    )
    .sample(&[], s.counter(Counter::RequestBytes));
    x.family(
        "stoat_response_bytes_total",
        MetricType::Counter,
        "Response bytes handed to the kernel.",
    )
    .sample(&[], s.counter(Counter::ResponseBytes));
}

fn memory(x: &mut Exposition, st: &Stats) {
    let cached = st.buffers_cached.min(st.buffers);
    x.family(
        "stoat_read_buffers",
        MetricType::Gauge,
        "Read buffers that exist, held by connections (in_use) or cached for reuse.",
    )
    .sample(&[("state", "in_use")], (st.buffers - cached) as u64)
    .sample(&[("state", "cached")], cached as u64);
    x.family(
        "stoat_read_buffer_waiters",
        MetricType::Gauge,
        "Connections waiting for a read buffer (the pool is at its limit).",
    )
    .sample(&[], st.waiting_for_buffer as u64);
    x.family(
        "stoat_body_bytes_reserved",
        MetricType::Gauge,
        "Bytes of body_memory_limit reserved by bodies larger than a buffer.",
    )
    .sample(&[], st.body_bytes as u64);
    x.family(
        "stoat_body_bytes_reserved_peak",
        MetricType::Gauge,
        "The most of body_memory_limit ever reserved at once.",
    )
    .sample(&[], st.body_bytes_peak as u64);
    x.family(
        "stoat_arenas",
        MetricType::Gauge,
        "Request arenas lent to a request now (in_use) or kept for reuse (cached).",
    )
    .sample(&[("state", "in_use")], st.arenas_in_use as u64)
    .sample(&[("state", "cached")], st.arenas_cached as u64);
    x.family(
        "stoat_arena_cached_bytes",
        MetricType::Gauge,
        "Bytes retained by cached request arenas.",
    )
    .sample(&[], st.arena_bytes_cached as u64);
    x.family(
        "stoat_arenas_dropped_total",
        MetricType::Counter,
        "Arenas freed at their reset for having grown too large.",
    )
    .sample(&[], st.arenas_dropped as u64);
}

fn pipelines(x: &mut Exposition, v: &ServerView<'_>) {
    if v.pipelines.is_empty() {
        return;
    }
    let s = v.snapshot;
    let each = |x: &mut Exposition, f: &dyn Fn(usize) -> u64| {
        for (i, p) in v.pipelines.iter().enumerate() {
            x.sample(&[("pipeline", &p.name)], f(i));
        }
    };
    x.family(
        "stoat_pipeline_ring_depth",
        MetricType::Gauge,
        "Jobs waiting in the pipeline's ring now.",
    );
    each(x, &|i| v.pipelines[i].depth);
    x.family(
        "stoat_pipeline_ring_capacity",
        MetricType::Gauge,
        "Slots of the pipeline's ring (ring_buffer_size).",
    );
    each(x, &|i| v.pipelines[i].capacity);
    x.family(
        "stoat_pipeline_jobs_total",
        MetricType::Counter,
        "Jobs taken from the pipeline's ring by its threads.",
    );
    each(x, &|i| s.pipelines.get(i).map_or(0, |p| p.queued.count()));
    x.family(
        "stoat_pipeline_rejected_total",
        MetricType::Counter,
        "Requests answered 503 because the pipeline's ring was full.",
    );
    each(x, &|i| v.pipelines[i].rejected);
    x.family(
        "stoat_pipeline_queue_seconds",
        MetricType::Histogram,
        "Time a job waited in the ring, from push to pick-up by a pipeline thread.",
    );
    for (p, snap) in v.pipelines.iter().zip(&s.pipelines) {
        x.histogram(&[("pipeline", &p.name)], &snap.queued, Unit::Nanoseconds);
    }
    x.family(
        "stoat_pipeline_service_seconds",
        MetricType::Histogram,
        "Time a pipeline thread spent on a job, from pick-up to its answer (a batch's time for each job in it).",
    );
    for (p, snap) in v.pipelines.iter().zip(&s.pipelines) {
        x.histogram(&[("pipeline", &p.name)], &snap.service, Unit::Nanoseconds);
    }
}

fn deferred(x: &mut Exposition, st: &Stats) {
    for (name, value, help) in [
        (
            "stoat_suspended_total",
            st.suspended,
            "Requests taken off the network thread (pipeline jobs, suspended handlers).",
        ),
        (
            "stoat_resumed_total",
            st.resumed,
            "Of those, answered in time.",
        ),
        (
            "stoat_expired_total",
            st.expired,
            "Of those, answered 503 at their deadline (the late answer discarded).",
        ),
        (
            "stoat_abandoned_total",
            st.abandoned,
            "Of those, ended unanswered: the responder was dropped (answered 500) or the client left before the answer was delivered.",
        ),
    ] {
        x.family(name, MetricType::Counter, help).sample(&[], value);
    }
}

fn streams(x: &mut Exposition, s: &Snapshot) {
    let open = |a: Counter, b: Counter| s.counter(a).saturating_sub(s.counter(b));
    x.family(
        "stoat_sse_streams_open",
        MetricType::Gauge,
        "Server-sent event streams open now.",
    )
    .sample(&[], open(Counter::SseOpened, Counter::SseClosed));
    x.family(
        "stoat_sse_events_total",
        MetricType::Counter,
        "Server-sent events written to connections.",
    )
    .sample(&[], s.counter(Counter::SseEvents));
    x.family(
        "stoat_sse_full_total",
        MetricType::Counter,
        "EventStream sends answered Full (the stream's backlog was full).",
    )
    .sample(&[], s.sse_full);
    x.family(
        "stoat_websockets_open",
        MetricType::Gauge,
        "WebSocket sessions open now.",
    )
    .sample(&[], open(Counter::WsOpened, Counter::WsClosed));
    x.family(
        "stoat_websocket_frames_total",
        MetricType::Counter,
        "WebSocket frames, by direction.",
    )
    .sample(&[("direction", "sent")], s.counter(Counter::WsFramesSent))
    .sample(
        &[("direction", "received")],
        s.counter(Counter::WsFramesReceived),
    );
    x.family(
        "stoat_websocket_full_total",
        MetricType::Counter,
        "WebSocket sends answered Full (the sender's backlog was full).",
    )
    .sample(&[], s.ws_full);
}

/// What a running server's metrics page and dashboard read: set once the
/// runtime has started (before that, the pages answer 503).
pub(crate) struct Live {
    pub metrics: Arc<Metrics>,
    pub stats: StatsReader,
    pub routes: Vec<RouteLabel>,
    pub pipelines: Vec<Arc<PipelineObs>>,
    pub access_log: Option<Arc<AccessLog>>,
    pub started: Instant,
    pub hooks: Vec<MetricsHook>,
    pub dashboard_hooks: Vec<DashboardHook>,
    pub buffer_size: usize,
}

impl Live {
    /// One consistent read of everything, handed to `f`.
    fn with_view<R>(&self, f: impl FnOnce(&ServerView<'_>) -> R) -> R {
        let snapshot = self.metrics.snapshot();
        let stats = self.stats.stats();
        let pipelines: Vec<PipelineView> = self
            .pipelines
            .iter()
            .map(|p| {
                let (depth, capacity) = (p.depth)();
                PipelineView {
                    name: p.name.clone(),
                    depth: depth as u64,
                    capacity: capacity as u64,
                    rejected: p.rejected.load(Ordering::Relaxed),
                }
            })
            .collect();
        f(&ServerView {
            snapshot: &snapshot,
            stats: &stats,
            routes: &self.routes,
            pipelines: &pipelines,
            access_log: self.access_log.as_ref().map(|l| (l.written(), l.dropped())),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            buffer_size: self.buffer_size,
        })
    }

    /// The exposition page.
    pub fn render(&self) -> String {
        self.with_view(|view| render(view, &self.hooks))
    }

    /// One dashboard sample.
    pub fn sample(&self, sampler: &mut Sampler) -> String {
        let mut extras = Vec::new();
        for hook in &self.dashboard_hooks {
            hook(&mut extras);
        }
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.with_view(|view| sampler.sample(Instant::now(), unix_ms, view, extras))
    }
}

/// The slot the pages read, filled after the runtime starts.
pub(crate) type LiveSlot = Arc<OnceLock<Live>>;

/// Registers the configured pages on `router`: the exposition at
/// `[http.metrics] path`, the dashboard at `dashboard` and its feed at
/// `dashboard + "/events"`. Returns the slot to fill and the feed; an
/// error names the key whose path a route has already.
pub(crate) fn register(
    config: &MetricsConfig,
    router: &mut Router,
) -> Result<(LiveSlot, Option<Arc<Feed>>), String> {
    let live: LiveSlot = Arc::new(OnceLock::new());
    fn taken(key: &'static str) -> impl Fn(crate::app::router::RouteError) -> String {
        move |e| format!("{key}: {e}")
    }
    if !config.path.is_empty() {
        let slot = live.clone();
        let page = move |_: &Request<'_>| match slot.get() {
            Some(live) => Response::bytes(live.render()).header("Content-Type", CONTENT_TYPE),
            None => Response::new(503),
        };
        router
            .add(Method::Get, &config.path, |_| Kind::Inline(Box::new(page)))
            .map_err(taken("http.metrics.path"))?;
    }
    let mut feed = None;
    if !config.dashboard.is_empty() {
        let page = |_: &Request<'_>| Response::html(PAGE);
        router
            .add(Method::Get, &config.dashboard, |_| {
                Kind::Inline(Box::new(page))
            })
            .map_err(taken("http.metrics.dashboard"))?;
        let slot = live.clone();
        let mut sampler = Sampler::new();
        let f = Arc::new(Feed::new(Box::new(move || match slot.get() {
            Some(live) => live.sample(&mut sampler),
            None => "{}".to_owned(),
        })));
        let events = format!("{}/events", config.dashboard.trim_end_matches('/'));
        let sub = f.clone();
        let handler = move |_: &Request<'_>, stream: EventStream| {
            sub.subscribe(Box::new(move |json| {
                !matches!(stream.send(SseEvent::data(json)), Err(SendError::Closed(_)))
            }));
        };
        router
            .add(Method::Get, &events, |_| {
                Kind::Stream(Box::new(handler), None)
            })
            .map_err(taken("http.metrics.dashboard"))?;
        feed = Some(f);
    }
    Ok((live, feed))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::runtime::metrics::{Metrics, Shape};

    #[test]
    fn escapes_labels_and_help() {
        let mut x = Exposition::new();
        x.family("a:b-c", MetricType::Gauge, "line\\one\ntwo")
            .sample(&[("9x", "q\"u\\o\nte")], 3);
        assert_eq!(
            x.as_str(),
            "# HELP a:b_c line\\\\one\\ntwo\n# TYPE a:b_c gauge\na:b_c{_9x=\"q\\\"u\\\\o\\nte\"} 3\n"
        );
    }

    #[test]
    fn histogram_lines() {
        let m = Metrics::new(Shape {
            routes: 1,
            pipelines: 0,
        });
        let mut r = m.recorder();
        r.response(Some(0), 200, Duration::from_nanos(1024));
        r.response(Some(0), 200, Duration::from_nanos(1025));
        let snap = m.snapshot();
        let mut x = Exposition::new();
        x.family("d_seconds", MetricType::Histogram, "h").histogram(
            &[("route", "/")],
            &snap.routes[0].duration,
            Unit::Nanoseconds,
        );
        let text = x.into_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[2],
            "d_seconds_bucket{route=\"/\",le=\"0.000001024\"} 1"
        );
        assert_eq!(
            lines[3],
            "d_seconds_bucket{route=\"/\",le=\"0.000002048\"} 2"
        );
        assert!(text.contains("d_seconds_bucket{route=\"/\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("d_seconds_sum{route=\"/\"} 0.000002049\n"));
        assert!(text.ends_with("d_seconds_count{route=\"/\"} 2\n"));
    }
}
