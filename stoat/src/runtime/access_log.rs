//! The access log: one line per response, written by a thread of its own.
//!
//! Contract:
//! - A network thread never formats or writes a line. It fills a fixed-size
//!   [`Entry`] (numbers, the peer address, and the request's method, target,
//!   `Referer` and `User-Agent` copied into 256 inline bytes) and offers it
//!   to a bounded queue with [`AccessLogSender::send`], which never blocks:
//!   when the queue is full the entry is dropped and counted
//!   ([`AccessLog::dropped`]). A log file on a stalled disk, or a FIFO that
//!   nobody reads, therefore slows no request; it only loses lines.
//! - The writer thread (`stoat-access-log`) takes entries in batches,
//!   formats them (`combined`: the Apache/nginx combined format followed by
//!   the duration in seconds and the route pattern; `json`: one object per
//!   line), and writes through a 64 KiB buffer. While lines flow it looks
//!   at the queue every 10 ms, so senders never have to wake it; once a
//!   look finds the queue empty it flushes and blocks, so lines reach the
//!   file within about 20 ms of the load stopping.
//! - [`AccessLog::reopen`] (called on SIGHUP, logrotate's convention) makes
//!   the writer close and reopen the file by its path before its next write,
//!   or within a second when idle. A file that cannot be reopened is
//!   reported once through `tracing` and lines are dropped (and counted)
//!   until a later reopen succeeds.
//! - Dropping the [`AccessLog`] and every sender ends the thread after it
//!   has written what was queued.
//!
//! Why std's `sync_channel`: it is a bounded array queue (crossbeam's
//! design, in std since 1.67) whose `try_send` is a few atomics and returns
//! the entry when full; nothing here needs more.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Inline bytes for method, target, `Referer` and `User-Agent` together.
pub const TEXT_BYTES: usize = 256;

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The process's standard error.
    Stderr,
    /// A file, appended to (created with mode 0644 if missing).
    File(PathBuf),
}

/// The line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `remote - - [time] "METHOD target HTTP/1.1" status bytes "referer"
    /// "user-agent" duration "route"`.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

/// One response, as a network thread hands it over. Fixed size: nothing
/// allocated per request.
#[derive(Clone)]
pub struct Entry {
    /// Unix time of the response in milliseconds.
    pub unix_ms: u64,
    /// The client's address, when known.
    pub remote: Option<SocketAddr>,
    /// Response status code.
    pub status: u16,
    /// Route index (into the names given to [`AccessLog::start`]); `u32::MAX`
    /// for none.
    pub route: u32,
    /// Request bytes (head and body).
    pub request_bytes: u64,
    /// Response bytes.
    pub response_bytes: u64,
    /// From the first byte of the head to the last byte handed to the kernel.
    pub duration: Duration,
    /// Lengths of method, target, referer, user agent in `text`.
    lens: [u8; 4],
    /// Bit i set: part i was cut to fit.
    cut: u8,
    text: [u8; TEXT_BYTES],
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("status", &self.status)
            .field("route", &self.route)
            .field("method", &String::from_utf8_lossy(self.part(0)))
            .field("target", &String::from_utf8_lossy(self.part(1)))
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// An entry; the text parts are cut to share [`TEXT_BYTES`]: the method
    /// gets up to 16 bytes, the target what the others leave (at least 160),
    /// referer and user agent up to 40 each, first.
    pub fn new(method: &[u8], target: &[u8], referer: &[u8], user_agent: &[u8]) -> Entry {
        let mut e = Entry {
            unix_ms: 0,
            remote: None,
            status: 0,
            route: u32::MAX,
            request_bytes: 0,
            response_bytes: 0,
            duration: Duration::ZERO,
            lens: [0; 4],
            cut: 0,
            text: [0; TEXT_BYTES],
        };
        let m = method.len().min(16);
        let r = referer.len().min(40);
        let u = user_agent.len().min(40);
        let t = target.len().min(TEXT_BYTES - m - r - u);
        let mut at = 0;
        for (i, (part, n)) in [(method, m), (target, t), (referer, r), (user_agent, u)]
            .into_iter()
            .enumerate()
        {
            e.text[at..at + n].copy_from_slice(&part[..n]);
            at += n;
            // n <= 216 (bounded above), so it fits a u8.
            e.lens[i] = n as u8;
            if n < part.len() {
                e.cut |= 1 << i;
            }
        }
        e
    }

    fn part(&self, i: usize) -> &[u8] {
        let start: usize = self.lens[..i].iter().map(|&n| n as usize).sum();
        &self.text[start..start + self.lens[i] as usize]
    }

    fn was_cut(&self, i: usize) -> bool {
        self.cut & (1 << i) != 0
    }
}

/// What the writer thread and the senders share.
#[derive(Debug, Default)]
struct Counts {
    dropped: AtomicU64,
    written: AtomicU64,
    reopen: Arc<AtomicBool>,
    /// The log is being dropped: write what is queued and exit.
    closing: AtomicBool,
}

/// What goes through the queue. The size difference is the point: the
/// queue holds entries inline (no allocation per request); `Wake` is rare.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Entry(Entry),
    /// Look at the flags now (sent on close).
    Wake,
}

/// A network thread's handle on the queue.
#[derive(Clone)]
pub struct AccessLogSender {
    tx: SyncSender<Msg>,
    counts: Arc<Counts>,
}

impl std::fmt::Debug for AccessLogSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogSender").finish_non_exhaustive()
    }
}

impl AccessLogSender {
    /// Queues `entry`; when the queue is full (or the writer is gone) drops
    /// it and counts it. Never blocks. Returns whether it was queued.
    #[inline]
    pub fn send(&self, entry: Entry) -> bool {
        match self.tx.try_send(Msg::Entry(entry)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// A running access log: its writer thread and the first sender.
#[derive(Debug)]
pub struct AccessLog {
    sender: Option<AccessLogSender>,
    thread: Option<JoinHandle<()>>,
    /// Closed by the writer thread as it exits (a Mutex: `AccessLog` is
    /// shared between threads, a `Receiver` is not `Sync`).
    exited: std::sync::Mutex<Receiver<()>>,
}

impl AccessLog {
    /// Opens `target` and starts the writer thread with a queue of `queue`
    /// entries. `routes` names route indexes (a method and a pattern).
    pub fn start(
        target: Target,
        format: Format,
        queue: usize,
        routes: Vec<String>,
    ) -> io::Result<AccessLog> {
        let out = Output::open(&target)?;
        let (tx, rx) = mpsc::sync_channel(queue.max(1));
        let counts = Arc::new(Counts::default());
        let (exit_tx, exited) = mpsc::channel();
        let writer = Writer {
            rx,
            out: Some(out),
            target,
            format,
            routes,
            counts: counts.clone(),
            line: String::with_capacity(512),
            reported: false,
            time: (u64::MAX, String::new()),
        };
        let thread = std::thread::Builder::new()
            .name("stoat-access-log".into())
            .spawn(move || {
                writer.run();
                drop(exit_tx);
            })?;
        Ok(AccessLog {
            sender: Some(AccessLogSender { tx, counts }),
            thread: Some(thread),
            exited: std::sync::Mutex::new(exited),
        })
    }

    /// A sender for one network thread.
    pub fn sender(&self) -> AccessLogSender {
        // `sender` is only taken in `drop`.
        self.sender
            .clone()
            .expect("access log sender present until drop")
    }

    /// Entries dropped because the queue was full or the file was unusable.
    pub fn dropped(&self) -> u64 {
        self.counts().dropped.load(Ordering::Relaxed)
    }

    /// Lines written.
    pub fn written(&self) -> u64 {
        self.counts().written.load(Ordering::Relaxed)
    }

    /// Asks the writer to reopen its file (after logrotate moved it).
    pub fn reopen(&self) {
        self.counts().reopen.store(true, Ordering::Release);
    }

    /// The flag that [`reopen`](Self::reopen) sets, for a signal handler
    /// (`signal_hook::flag::register(SIGHUP, flag)`): setting a flag is all
    /// a handler may do.
    pub fn reopen_flag(&self) -> Arc<AtomicBool> {
        self.counts().reopen.clone()
    }

    fn counts(&self) -> &Arc<Counts> {
        &self
            .sender
            .as_ref()
            .expect("access log sender present until drop")
            .counts
    }
}

/// How long dropping the log waits for the writer to finish its queue.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

impl Drop for AccessLog {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            sender.counts.closing.store(true, Ordering::Release);
            // A full queue means the writer is awake (or blocked writing).
            let _ = sender.tx.try_send(Msg::Wake);
        }
        if let Some(thread) = self.thread.take() {
            // A writer blocked on its target (a stalled disk, a FIFO nobody
            // reads) must not hold the server's stop: wait a bounded time,
            // then leave it detached.
            let exited = self.exited.lock().unwrap_or_else(|e| e.into_inner());
            match exited.recv_timeout(CLOSE_WAIT) {
                Err(RecvTimeoutError::Timeout) => {
                    tracing::warn!(
                        "access log writer still blocked at close; lines queued are lost"
                    );
                }
                _ => {
                    let _ = thread.join();
                }
            }
        }
    }
}

/// The file or stderr.
enum Output {
    Stderr(io::Stderr),
    File(BufWriter<File>),
}

impl Output {
    fn open(target: &Target) -> io::Result<Output> {
        Ok(match target {
            Target::Stderr => Output::Stderr(io::stderr()),
            Target::File(path) => Output::File(BufWriter::with_capacity(
                64 * 1024,
                OpenOptions::new().create(true).append(true).open(path)?,
            )),
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Output::Stderr(e) => e.write_all(bytes),
            Output::File(f) => f.write_all(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stderr(e) => e.flush(),
            Output::File(f) => f.flush(),
        }
    }
}

/// The writer thread's state.
struct Writer {
    rx: Receiver<Msg>,
    /// `None` after a failed reopen, until one succeeds.
    out: Option<Output>,
    target: Target,
    format: Format,
    routes: Vec<String>,
    counts: Arc<Counts>,
    line: String,
    /// A write error has been reported (once per failure, not per line).
    reported: bool,
    /// The last second formatted, and its text (CLF or RFC 3339 without
    /// the milliseconds): lines of one second share it.
    time: (u64, String),
}

/// How long the idle writer waits before looking at the reopen flag again.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// While lines flow, how often the writer takes them (a queue of 4096
/// holds 400,000 lines a second at this interval). Lines reach the file
/// at most two intervals after their response when the load stops.
const BATCH_INTERVAL: Duration = Duration::from_millis(10);

impl Writer {
    fn run(mut self) {
        // While lines flow, the writer wakes every BATCH_INTERVAL and takes
        // what came: senders then never wake it (no futex per request). When
        // a look finds nothing, it flushes and blocks until the next line
        // (or IDLE_CHECK, for the reopen flag).
        let mut flowing = false;
        loop {
            let first = if flowing {
                std::thread::sleep(BATCH_INTERVAL);
                match self.rx.try_recv() {
                    Ok(msg) => Some(msg),
                    Err(mpsc::TryRecvError::Empty) => None,
                    Err(mpsc::TryRecvError::Disconnected) => break,
                }
            } else {
                match self.rx.recv_timeout(IDLE_CHECK) {
                    Ok(msg) => Some(msg),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            self.check_reopen();
            match first {
                Some(msg) => {
                    self.take(msg);
                    while let Ok(msg) = self.rx.try_recv() {
                        self.take(msg);
                    }
                    flowing = true;
                }
                None => {
                    self.flush();
                    flowing = false;
                }
            }
            if self.counts.closing.load(Ordering::Acquire) {
                while let Ok(msg) = self.rx.try_recv() {
                    self.take(msg);
                }
                break;
            }
        }
        self.flush();
    }

    fn check_reopen(&mut self) {
        let asked = self.counts.reopen.swap(false, Ordering::AcqRel);
        if !asked {
            return;
        }
        self.flush();
        match Output::open(&self.target) {
            Ok(out) => {
                self.out = Some(out);
                self.reported = false;
                tracing::info!(target = ?self.target, "access log reopened");
            }
            Err(e) => {
                self.out = None;
                tracing::error!(target = ?self.target, error = %e, "access log reopen failed; lines are dropped until a reopen succeeds");
            }
        }
    }

    fn take(&mut self, msg: Msg) {
        if let Msg::Entry(entry) = msg {
            self.write(&entry);
        }
    }

    fn write(&mut self, entry: &Entry) {
        self.line.clear();
        let secs = entry.unix_ms / 1000;
        if self.time.0 != secs {
            self.time.1.clear();
            match self.format {
                Format::Combined => clf_time(&mut self.time.1, entry.unix_ms),
                Format::Json => rfc3339_secs(&mut self.time.1, entry.unix_ms),
            }
            self.time.0 = secs;
        }
        match self.format {
            Format::Combined => combined(&mut self.line, entry, &self.routes, &self.time.1),
            Format::Json => json(&mut self.line, entry, &self.routes, &self.time.1),
        }
        self.line.push('\n');
        let result = match self.out.as_mut() {
            Some(out) => out.write_all(self.line.as_bytes()),
            None => Err(io::Error::other("no file open")),
        };
        match result {
            Ok(()) => {
                self.counts.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                if !self.reported {
                    self.reported = true;
                    tracing::error!(error = %e, "access log write failed");
                }
            }
        }
    }

    fn flush(&mut self) {
        if let Some(out) = self.out.as_mut() {
            if let Err(e) = out.flush() {
                if !self.reported {
                    self.reported = true;
                    tracing::error!(error = %e, "access log flush failed");
                }
            }
        }
    }
}

fn route_name(routes: &[String], route: u32) -> &str {
    routes.get(route as usize).map_or("-", String::as_str)
}

/// The combined format, then duration (seconds) and route: nginx's
/// `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent
/// "$http_referer" "$http_user_agent" $request_time "route"`. Bytes outside
/// printable ASCII, `"` and `\` are written `\xHH`, as nginx escapes them.
/// `time` is the entry's second, formatted.
fn combined(line: &mut String, e: &Entry, routes: &[String], time: &str) {
    match e.remote {
        Some(addr) => push_ip(line, addr.ip()),
        None => line.push('-'),
    }
    line.push_str(" - - [");
    line.push_str(time);
    line.push_str("] \"");
    escape_clf(line, e.part(0), false);
    line.push(' ');
    escape_clf(line, e.part(1), e.was_cut(1));
    line.push_str(" HTTP/1.1\" ");
    push_int(line, u64::from(e.status));
    line.push(' ');
    push_int(line, e.response_bytes);
    line.push_str(" \"");
    dash_or(line, e.part(2), e.was_cut(2));
    line.push_str("\" \"");
    dash_or(line, e.part(3), e.was_cut(3));
    line.push_str("\" ");
    push_int(line, e.duration.as_secs());
    line.push('.');
    let micros = e.duration.subsec_micros();
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(micros);
    for _ in digits.len()..6 {
        line.push('0');
    }
    line.push_str(digits);
    line.push_str(" \"");
    escape_clf(line, route_name(routes, e.route).as_bytes(), false);
    line.push('"');
}

fn push_int(line: &mut String, n: u64) {
    line.push_str(itoa::Buffer::new().format(n));
}

fn push_ip(line: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    line.push('.');
                }
                push_int(line, u64::from(*o));
            }
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(line, "{v6}");
        }
    }
}

fn dash_or(line: &mut String, bytes: &[u8], cut: bool) {
    if bytes.is_empty() {
        line.push('-');
    } else {
        escape_clf(line, bytes, cut);
    }
}

fn escape_clf(line: &mut String, bytes: &[u8], cut: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
    if bytes.iter().all(|&b| plain(b)) {
        // Printable ASCII: valid UTF-8 as it is.
        line.push_str(std::str::from_utf8(bytes).unwrap_or_default());
    } else {
        for &b in bytes {
            if plain(b) {
                line.push(b as char);
            } else {
                line.push_str("\\x");
                line.push(HEX[usize::from(b >> 4)] as char);
                line.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
    if cut {
        line.push_str("...");
    }
}

/// One JSON object: time (RFC 3339, UTC, milliseconds), remote, method,
/// target, status, request_bytes, response_bytes, duration_us, route,
/// referer, user_agent; `"cut": true` when a text field was shortened.
/// `time` is the entry's second, formatted without the milliseconds.
fn json(line: &mut String, e: &Entry, routes: &[String], time: &str) {
    line.push_str("{\"time\":\"");
    line.push_str(time);
    line.push('.');
    let ms = e.unix_ms % 1000;
    if ms < 100 {
        line.push('0');
    }
    if ms < 10 {
        line.push('0');
    }
    push_int(line, ms);
    line.push_str("Z\",\"remote\":");
    match e.remote {
        Some(addr) => {
            line.push('"');
            if addr.is_ipv6() {
                line.push('[');
            }
            push_ip(line, addr.ip());
            if addr.is_ipv6() {
                line.push(']');
            }
            line.push(':');
            push_int(line, u64::from(addr.port()));
            line.push('"');
        }
        None => line.push_str("null"),
    }
    line.push_str(",\"method\":");
    json_str(line, e.part(0));
    line.push_str(",\"target\":");
    json_str(line, e.part(1));
    line.push_str(",\"status\":");
    push_int(line, u64::from(e.status));
    line.push_str(",\"request_bytes\":");
    push_int(line, e.request_bytes);
    line.push_str(",\"response_bytes\":");
    push_int(line, e.response_bytes);
    line.push_str(",\"duration_us\":");
    push_int(
        line,
        u64::try_from(e.duration.as_micros()).unwrap_or(u64::MAX),
    );
    line.push_str(",\"route\":");
    json_str(line, route_name(routes, e.route).as_bytes());
    line.push_str(",\"referer\":");
    json_str(line, e.part(2));
    line.push_str(",\"user_agent\":");
    json_str(line, e.part(3));
    if e.cut != 0 {
        line.push_str(",\"cut\":true");
    }
    line.push('}');
}

/// A JSON string of bytes: UTF-8 kept, invalid bytes as U+FFFD, control
/// characters, `"` and `\` escaped.
fn json_str(line: &mut String, bytes: &[u8]) {
    line.push('"');
    if bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        line.push_str(std::str::from_utf8(bytes).unwrap_or_default());
        line.push('"');
        return;
    }
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(line, "\\u{:04x}", c as u32);
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `03/Dec/2026:08:20:44 +0000` (the log is in UTC).
fn clf_time(line: &mut String, unix_ms: u64) {
    let secs = (unix_ms / 1000) as i64;
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    let _ = write!(
        line,
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000",
        MONTHS[m as usize - 1],
        t / 3600,
        t / 60 % 60,
        t % 60
    );
}

/// `2026-12-03T08:20:44` (the milliseconds and `Z` follow per line).
fn rfc3339_secs(line: &mut String, unix_ms: u64) {
    let secs = (unix_ms / 1000) as i64;
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    let _ = write!(
        line,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        t / 3600,
        t / 60 % 60,
        t % 60,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let mut e = Entry::new(b"GET", b"/v1/kv/a?x=\"1\"", b"", b"curl/8.0");
        e.unix_ms = 1_796_285_244_123; // 2026-12-03T08:07:24.123Z
        e.remote = Some("127.0.0.1:5555".parse().unwrap());
        e.status = 200;
        e.route = 0;
        e.request_bytes = 80;
        e.response_bytes = 13;
        e.duration = Duration::from_micros(1_250);
        e
    }

    #[test]
    fn combined_line() {
        let mut s = String::new();
        let mut t = String::new();
        clf_time(&mut t, entry().unix_ms);
        combined(&mut s, &entry(), &["GET /v1/kv/{key}".into()], &t);
        assert_eq!(
            s,
            "127.0.0.1 - - [03/Dec/2026:08:07:24 +0000] \"GET /v1/kv/a?x=\\x221\\x22 HTTP/1.1\" \
             200 13 \"-\" \"curl/8.0\" 0.001250 \"GET /v1/kv/{key}\""
        );
    }

    #[test]
    fn json_line() {
        let mut s = String::new();
        let mut t = String::new();
        rfc3339_secs(&mut t, entry().unix_ms);
        json(&mut s, &entry(), &[], &t);
        assert_eq!(
            s,
            "{\"time\":\"2026-12-03T08:07:24.123Z\",\"remote\":\"127.0.0.1:5555\",\"method\":\"GET\",\
             \"target\":\"/v1/kv/a?x=\\\"1\\\"\",\"status\":200,\"request_bytes\":80,\"response_bytes\":13,\
             \"duration_us\":1250,\"route\":\"-\",\"referer\":\"\",\"user_agent\":\"curl/8.0\"}"
        );
    }

    #[test]
    fn long_parts_are_cut_to_fit() {
        let target = vec![b'a'; 1000];
        let ua = vec![b'u'; 100];
        let e = Entry::new(b"GET", &target, b"", &ua);
        assert_eq!(e.part(3).len(), 40);
        assert_eq!(e.part(1).len(), TEXT_BYTES - 3 - 40);
        assert!(e.was_cut(1) && e.was_cut(3) && !e.was_cut(0));
        let mut s = String::new();
        json(&mut s, &e, &[], "t");
        assert!(s.ends_with(",\"cut\":true}"), "{s}");
    }

    #[test]
    fn writes_to_a_file_and_reopens_it() {
        let dir = std::env::temp_dir().join(format!("stoat-alog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let log = AccessLog::start(Target::File(path.clone()), Format::Json, 16, vec![]).unwrap();
        let tx = log.sender();
        assert!(tx.send(entry()));
        wait_for(|| {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .count()
                == 1
        });
        // logrotate: move the file away, then signal.
        let rotated = dir.join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen_flag().store(true, Ordering::Release);
        assert!(tx.send(entry()));
        wait_for(|| {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .count()
                == 1
        });
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap().lines().count(),
            1
        );
        assert_eq!(log.written(), 2);
        assert_eq!(log.dropped(), 0);
        drop(tx);
        drop(log);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Polls `done` until it holds, failing after 10 s.
    fn wait_for(mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            std::thread::yield_now();
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(-1), (1969, 12, 31));
        assert_eq!(civil(20_790), (2026, 12, 3));
    }
}
