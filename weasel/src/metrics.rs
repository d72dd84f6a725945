//! Weasel's own metrics, beside Stoat's on `/metrics`, and its dashboard
//! tiles.
//!
//! Contract: [`CommitMetrics`] is counted by the commit pipeline's thread
//! (the only writer of the histograms, through a lock it alone takes per
//! batch) and read on scrape. Families:
//! - `weasel_commits_total{outcome="committed"|"conflict"}`: commits decided
//!   and made durable, by outcome.
//! - `weasel_duplicates_total`: commits answered from an earlier outcome with
//!   the same `request_id` (a retry), not decided again.
//! - `weasel_batch_size`: commits decided per durable write (histogram).
//! - `weasel_log_append_seconds`: the write and `fdatasync` of one batch
//!   record (histogram; the sync is nearly all of it).
//! - `weasel_log_bytes_total`: bytes appended to the commit log.
//! - `weasel_log_records_total`: durable writes (records).
//! - `weasel_watchers`: open `GET /v1/watch` streams.
//!
//! Metrics are on in Weasel: a configuration without an `[http.metrics]`
//! table serves `/metrics` and `/dashboard` ([`default_on`]); an explicit
//! `path = ""` turns them off.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stoat::app::dashboard::{Extra, ExtraValue};
use stoat::app::metrics::{Exposition, MetricType, Unit};
use stoat::runtime::metrics::{histogram, HistogramReader, HistogramWriter};

use crate::store::Store;

/// Counters and histograms of the commit path.
#[derive(Debug)]
pub struct CommitMetrics {
    /// Commits decided as committed.
    pub committed: AtomicU64,
    /// Commits decided as conflicts.
    pub conflicts: AtomicU64,
    /// Commits answered from an earlier outcome (same `request_id`).
    pub duplicates: AtomicU64,
    /// Bytes appended to the log.
    pub log_bytes: AtomicU64,
    batch: Mutex<HistogramWriter>,
    batch_read: HistogramReader,
    append: Mutex<HistogramWriter>,
    append_read: HistogramReader,
}

impl Default for CommitMetrics {
    fn default() -> CommitMetrics {
        let (batch, batch_read) = histogram();
        let (append, append_read) = histogram();
        CommitMetrics {
            committed: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            log_bytes: AtomicU64::new(0),
            batch: Mutex::new(batch),
            batch_read,
            append: Mutex::new(append),
            append_read,
        }
    }
}

impl CommitMetrics {
    /// One durable batch record: `commits` decided in it, `bytes` written,
    /// `took` for its write and sync.
    pub fn record_batch(&self, commits: usize, bytes: usize, took: Duration) {
        self.log_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.batch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(commits as u64);
        self.append
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record_duration(took);
    }
}

/// Weasel's families, for `Server::metrics_hook`.
pub fn expose(store: &Arc<Store>, x: &mut Exposition) {
    let m = &store.stats.commits;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    x.family(
        "weasel_commits_total",
        MetricType::Counter,
        "Commits decided and made durable, by outcome.",
    )
    .sample(&[("outcome", "committed")], load(&m.committed))
    .sample(&[("outcome", "conflict")], load(&m.conflicts));
    x.family(
        "weasel_duplicates_total",
        MetricType::Counter,
        "Commits answered from an earlier outcome with the same request_id (retries), not decided again.",
    )
    .sample(&[], load(&m.duplicates));
    x.family(
        "weasel_batch_size",
        MetricType::Histogram,
        "Commits decided per durable write (group commit).",
    )
    .histogram(&[], &m.batch_read.snapshot(), Unit::Count);
    x.family(
        "weasel_log_append_seconds",
        MetricType::Histogram,
        "Write and fdatasync of one batch record to the commit log.",
    )
    .histogram(&[], &m.append_read.snapshot(), Unit::Nanoseconds);
    x.family(
        "weasel_log_bytes_total",
        MetricType::Counter,
        "Bytes appended to the commit log.",
    )
    .sample(&[], load(&m.log_bytes));
    x.family(
        "weasel_log_records_total",
        MetricType::Counter,
        "Batch records written (one write and one fdatasync each).",
    )
    .sample(&[], load(&store.stats.records));
    x.family(
        "weasel_watchers",
        MetricType::Gauge,
        "Open GET /v1/watch streams.",
    )
    .sample(&[], store.hub.watchers() as u64);
}

/// Weasel's dashboard tiles, for `Server::dashboard_hook`.
pub fn tiles(store: &Arc<Store>, out: &mut Vec<Extra>) {
    let m = &store.stats.commits;
    out.push(Extra {
        key: "commits".into(),
        label: "Commits / s".into(),
        value: ExtraValue::Counter(m.committed.load(Ordering::Relaxed)),
    });
    out.push(Extra {
        key: "conflicts".into(),
        label: "Conflicts / s".into(),
        value: ExtraValue::Counter(m.conflicts.load(Ordering::Relaxed)),
    });
    out.push(Extra {
        key: "fsync".into(),
        label: "Log write + fsync".into(),
        value: ExtraValue::Latency(m.append_read.snapshot()),
    });
    out.push(Extra {
        key: "watchers".into(),
        label: "Watchers".into(),
        value: ExtraValue::Gauge(store.hub.watchers() as f64),
    });
}

/// Turns Weasel's metrics on in a configuration table without an
/// `[http.metrics]` table of its own.
pub fn default_on(table: &mut toml::Table) {
    let http = table
        .entry("http")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(http) = http {
        http.entry("metrics").or_insert_with(|| {
            let mut m = toml::Table::new();
            m.insert("path".into(), toml::Value::String("/metrics".into()));
            m.insert("dashboard".into(), toml::Value::String("/dashboard".into()));
            toml::Value::Table(m)
        });
    }
}

/// Stoat's default configuration text with Weasel's metrics values.
pub fn default_text(stoat_default: &str) -> String {
    stoat_default
        .replacen(
            "\npath = \"\"\n# Path of the live dashboard",
            "\npath = \"/metrics\"\n# Path of the live dashboard",
            1,
        )
        .replacen("\ndashboard = \"\"\n", "\ndashboard = \"/dashboard\"\n", 1)
}
