//! The TOML configuration: schema, defaults and validation.
//!
//! Contract: [`Config::from_toml_str`] and [`Config::load`] return either a
//! [`Config`] that passed [`Config::validate`], or a [`ConfigError`] naming the
//! file and the key at fault (`http.port`, `http.pipelines.work.threads`).
//! Every key is optional and takes the default shown in [`DEFAULT_CONFIG`]; an
//! unknown key is an error, so a typo is reported, never silently ignored. No
//! input makes anything here panic. The defaults serve on a 2-core machine.
//!
//! The protocol layer's view of the configuration is [`Config::limits`].

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde_path_to_error::Segment;

use crate::proto::Limits;

/// The shipped configuration file: every key at its default, each with a
/// one-line comment, plus the `commit_status` pipeline that Weasel uses.
pub const DEFAULT_CONFIG: &str = r#"# Stoat server configuration. Every key is optional; the values below are the defaults.

[http]
# Threading model: "per_core" (one epoll and listener per network thread) or "shared" (accept threads feed one epoll).
model = "per_core"
# Threads blocking in accept4 (shared model only); at least 1.
accept_threads = 1
# Event-loop threads that read, parse and write connections; at least 1.
network_threads = 2
# IP address to listen on ("0.0.0.0" or "::" for all interfaces).
bind_address = "127.0.0.1"
# TCP port to listen on; 0 picks any free port.
port = 8080
# listen(2) backlog of pending connections.
backlog = 1024
# TCP_DEFER_ACCEPT on the listening sockets (nginx's `listen ... deferred`):
# a connection is handed to the server only once its first bytes came (or
# after about this many seconds of silence); 0 = off. Saves the wait for the
# request after each accept, but a client that connects and stays silent is
# not seen (not counted, not timed out, not evicted) until then.
defer_accept_sec = 0
# Most open client connections at once; at least 1.
max_connections = 10000
# Pin each network thread to its own CPU core.
pin_threads = false
# Seconds a keep-alive connection may sit idle between requests.
keepalive_timeout_sec = 30
# Seconds a whole request head may take from its first byte (else 408).
request_timeout_sec = 10
# Longest gap in seconds between two reads of request body bytes (else 408).
body_timeout_sec = 10
# Longest time in seconds a response may make no write progress before the connection closes.
write_timeout_sec = 30
# Seconds graceful shutdown waits for open requests before closing connections.
drain_timeout_sec = 10
# Seconds between heartbeat comments on an idle server-sent event stream.
sse_heartbeat_sec = 15
# Events queued per server-sent event stream before send reports Full; 1 to 65536.
sse_backlog = 256
# Seconds between pings on an open WebSocket; 0: no pings. A ping unanswered by the next one closes it.
ws_ping_sec = 30
# Seconds a WebSocket may pass no message either way before it is closed (1001); 0: never.
ws_idle_timeout_sec = 300
# Largest WebSocket message in bytes, all fragments together (else close 1009); at least 125.
ws_max_message_size = 16777216
# Frames queued per WebSocket sender before send reports Full; 1 to 65536.
ws_backlog = 256
# Longest request line in bytes, CRLF included (else 414).
max_request_line = 8192
# Largest header section in bytes (else 431).
max_header_bytes = 8192
# Most header field lines in one request, at most 256 (else 431).
max_headers = 100
# Largest request body in bytes (else 413).
max_body_size = 1048576
# Longest chunk extension in bytes on one chunk-size line (else 400).
max_chunk_ext = 1024
# Largest trailer section of a chunked body in bytes (else 431).
max_trailer_bytes = 8192
# Read buffer bytes per connection; at least max_request_line + max_header_bytes, at most 1 MiB.
buffer_size = 16384
# Bytes for all read buffers together; at least 2 * buffer_size * network_threads.
buffer_memory_limit = 67108864
# Bytes for request bodies too large for one buffer, all together; at least
# max_body_size + max_request_line + max_header_bytes. A body is admitted whole
# (Content-Length, or max_body_size when chunked) or waits, not reading.
body_memory_limit = 16777216
# Bytes of responses queued for one client before the server stops reading and parsing its
# further pipelined requests until the client reads; 1024 to 1073741824.
max_pending_output = 65536
# Value of the Server response header; "" sends none.
server_name = "stoat"
# PROXY protocol header expected from trusted_proxies before HTTP: "off", "v1", "v2" or "any".
proxy_protocol = "off"
# Load balancers whose PROXY header and X-Forwarded-For/Forwarded are believed (CIDRs, like "10.0.0.0/8").
trusted_proxies = []
# Path answering 200 "ready", or 503 "draining" once a stop began.
health_path = "/healthz"
# Seconds after SIGTERM that the health path answers 503 while still serving, before the listener closes; 0: none.
drain_health_sec = 0

# Prometheus metrics and the live dashboard, served inline by the network threads.
[http.metrics]
# Path of the Prometheus text exposition (format 0.0.4); "" serves none.
path = ""
# Path of the live dashboard page (its event feed is this path + "/events"); "" serves none.
dashboard = ""

# Response compression for the whole server (inline routes and event streams), negotiated per request from Accept-Encoding.
[http.compression]
# Compress at all; off by default (a route can still be compressed on its own with Compression::layer).
enabled = false
# Codings offered, in order of preference for equal q-values: "gzip", "br".
codings = ["gzip", "br"]
# gzip level, 0 (stored) to 9 (smallest).
gzip_level = 1
# brotli quality, 0 to 11 (smallest).
brotli_level = 3
# Bodies shorter than this many bytes are sent as they are.
min_size = 256
# Largest body compressed on a network thread; larger ones are sent as they are.
inline_limit = 262144

# The access log, written by a thread of its own from a bounded ring per network thread (a full ring drops lines and counts them).
[http.access_log]
# File to append to, "stderr", or "" for no access log; SIGHUP reopens the file.
path = ""
# "combined" (the combined log format, then duration and route) or "json" (one object per line).
format = "combined"
# Lines each network thread's ring holds for the writer thread (128 bytes each, at least 1 KiB); 1 to 1048576.
queue = 4096

# A named service pipeline (names use A-Z, a-z, 0-9, '_' and '-').
[http.pipelines.commit_status]
# Slots in the pipeline's request ring; a power of two from 2 to 1048576.
ring_buffer_size = 1024
# Threads running the pipeline's handlers; at least 1.
threads = 1
# Scheduling priority below the network threads (nice value added), 0 to 19.
nice = 19

# Structured logs (tracing) to standard error.
[log]
# Filter: "error", "warn", "info", "debug", "trace", "off", or directives like "stoat=debug"; RUST_LOG overrides it.
level = "info"
"#;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The `[http]` table: the server engine.
    pub http: HttpConfig,
    /// The file the configuration was read from, for errors (not a key).
    #[serde(skip)]
    file: Option<PathBuf>,
    /// The `[log]` table: structured logs.
    pub log: LogConfig,
}

/// Two configurations are equal when their keys are: where they were read
/// from is not part of the value.
impl PartialEq for Config {
    fn eq(&self, other: &Config) -> bool {
        self.http == other.http && self.log == other.log
    }
}

impl Eq for Config {}

/// The `[http]` table. Field docs give each key's default and rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Threading model. Default [`Model::PerCore`].
    pub model: Model,
    /// Threads blocking in `accept4`, shared model only. Default 1; at least 1.
    pub accept_threads: usize,
    /// Event-loop threads. Default 2; at least 1.
    pub network_threads: usize,
    /// Address to listen on. Default `127.0.0.1`.
    pub bind_address: IpAddr,
    /// Port to listen on; 0 picks any free port. Default 8080.
    pub port: u16,
    /// `listen(2)` backlog. Default 1024; at most `i32::MAX`.
    pub backlog: u32,
    /// `TCP_DEFER_ACCEPT` seconds on the listening sockets; 0 (the
    /// default) = off. At most 3600.
    pub defer_accept_sec: u32,
    /// Most open client connections. Default 10000; at least 1.
    pub max_connections: usize,
    /// Pin each network thread to a core. Default false.
    pub pin_threads: bool,
    /// Idle keep-alive timeout in seconds. Default 30.
    pub keepalive_timeout_sec: u64,
    /// Whole-request-head timeout in seconds. Default 10.
    pub request_timeout_sec: u64,
    /// Longest gap between body reads in seconds. Default 10.
    pub body_timeout_sec: u64,
    /// Longest write stall in seconds. Default 30.
    pub write_timeout_sec: u64,
    /// Graceful-shutdown drain time in seconds. Default 10.
    pub drain_timeout_sec: u64,
    /// Interval between SSE heartbeats in seconds. Default 15.
    pub sse_heartbeat_sec: u64,
    /// Events queued per SSE stream before `send` reports `Full`. Default
    /// 256; 1 to 65536.
    pub sse_backlog: usize,
    /// Seconds between WebSocket pings; 0 disables them. Default 30.
    pub ws_ping_sec: u64,
    /// Seconds without a WebSocket message before closing; 0: never.
    /// Default 300.
    pub ws_idle_timeout_sec: u64,
    /// Largest WebSocket message in bytes (1009). Default 16 MiB; at least 125.
    pub ws_max_message_size: usize,
    /// Frames queued per WebSocket sender before `send` reports `Full`.
    /// Default 256; 1 to 65536.
    pub ws_backlog: usize,
    /// Longest request line in bytes (414). Default 8192; at least 16.
    pub max_request_line: usize,
    /// Largest header section in bytes (431). Default 8192; at least 2.
    pub max_header_bytes: usize,
    /// Most header lines (431). Default 100; 1 to [`Limits::MAX_HEADERS_CAP`].
    pub max_headers: usize,
    /// Largest request body in bytes (413). Default 1 MiB.
    pub max_body_size: u64,
    /// Longest chunk extension in bytes. Default 1024.
    pub max_chunk_ext: usize,
    /// Largest chunked-body trailer section in bytes. Default 8192.
    pub max_trailer_bytes: usize,
    /// Read buffer size in bytes. Default 16384; at least `max_request_line +
    /// max_header_bytes` (a request head must fit one buffer), at most
    /// [`MAX_BUFFER_SIZE`].
    pub buffer_size: usize,
    /// Bytes for all read buffers together. Default 64 MiB; at least
    /// `2 * buffer_size * network_threads`.
    pub buffer_memory_limit: usize,
    /// Bytes for bodies larger than one buffer, all together. Default 16
    /// MiB; at least `max_body_size + max_request_line + max_header_bytes`.
    pub body_memory_limit: usize,
    /// Bytes of responses queued for one client (encoded but not yet
    /// taken by its socket) above which the connection stops reading and
    /// parsing further pipelined requests until the client reads: a
    /// client that pipelines without reading holds at most this plus one
    /// response. Default 64 KiB; [`MIN_PENDING_OUTPUT`]`..=`[`MAX_PENDING_OUTPUT`].
    pub max_pending_output: usize,
    /// `Server` header value; empty sends none. Default `stoat`. No control
    /// characters, no leading or trailing whitespace.
    pub server_name: String,
    /// The PROXY protocol header connections from `trusted_proxies` must
    /// start with. Default [`ProxyProtocol::Off`]; any other value needs at
    /// least one trusted proxy.
    pub proxy_protocol: ProxyProtocol,
    /// Peers whose PROXY header and `X-Forwarded-For`/`Forwarded` fields
    /// are believed. Default none. Each an address block (`10.0.0.0/8`) or
    /// an address (a block of one); no host bits set below the prefix.
    pub trusted_proxies: Vec<Cidr>,
    /// The health path: `200 ready`, or `503 draining` once a stop began.
    /// Default `/healthz`; starts with `/`, visible ASCII only.
    pub health_path: String,
    /// Seconds the health path reports draining, while the server still
    /// serves, between SIGTERM and closing the listener (so a load balancer
    /// stops sending first). Default 0 (none); at most a week.
    pub drain_health_sec: u64,
    /// Named service pipelines (`[http.pipelines.NAME]`). Default none.
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// `[http.metrics]`: Prometheus exposition and dashboard. Default off.
    pub metrics: MetricsConfig,
    /// `[http.access_log]`: the access log. Default off.
    pub access_log: AccessLogConfig,
    /// `[http.compression]`: response compression for the whole server.
    /// Default off.
    pub compression: CompressionConfig,
}

/// How connections are spread over threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// `accept_threads` accept connections onto one epoll shared by all
    /// network threads; whichever thread gets the event owns the connection.
    Shared,
    /// Each network thread has its own epoll and listener; a connection never
    /// leaves its thread except to visit a service pipeline.
    #[default]
    PerCore,
}

/// `[http] proxy_protocol`: which PROXY header connections from trusted
/// proxies start with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyProtocol {
    /// No PROXY header is read: the first bytes are HTTP.
    #[default]
    Off,
    /// Version 1 (text) only.
    V1,
    /// Version 2 (binary) only.
    V2,
    /// Either version.
    Any,
}

impl ProxyProtocol {
    /// The versions the parser accepts, or `None` when off.
    pub fn accept(self) -> Option<crate::proto::proxy::Accept> {
        use crate::proto::proxy::Accept;
        match self {
            ProxyProtocol::Off => None,
            ProxyProtocol::V1 => Some(Accept::V1),
            ProxyProtocol::V2 => Some(Accept::V2),
            ProxyProtocol::Any => Some(Accept::Any),
        }
    }
}

/// An address block of `trusted_proxies`: `10.0.0.0/8`, `::1/128`, or a
/// single address. Parsing and containment are `ipnet`'s (widely used, no
/// dependencies); what this adds is the config's rules and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr(IpNet);

impl Cidr {
    /// Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address; refuses a
    /// block with host bits set below its prefix (`10.0.0.1/8`), which is
    /// almost always a typo.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let net = match text.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => match text.parse::<IpAddr>() {
                Ok(addr) => IpNet::from(addr),
                Err(_) => {
                    return Err(format!(
                        "invalid address block {text:?}: expected ADDRESS/PREFIX (like \"10.0.0.0/8\") or an address"
                    ))
                }
            },
        };
        if net.trunc() != net {
            return Err(format!(
                "address block {text:?} has host bits set below its prefix; did you mean \"{}\"?",
                net.trunc()
            ));
        }
        Ok(Cidr(net))
    }

    /// Whether `addr` is in the block. An IPv4-mapped IPv6 address
    /// (`::ffff:10.0.0.1`, how a dual-stack listener sees IPv4 peers)
    /// counts as its IPv4 address.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.contains(&addr.to_canonical())
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        Cidr::parse(text)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Cidr, D::Error> {
        let text = String::deserialize(deserializer)?;
        Cidr::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One `[http.pipelines.NAME]` table: a service pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Slots in the request ring. Default 1024; a power of two in
    /// [`MIN_RING_BUFFER_SIZE`]`..=`[`MAX_RING_BUFFER_SIZE`].
    pub ring_buffer_size: usize,
    /// Threads running the pipeline's handlers. Default 1; at least 1.
    pub threads: usize,
    /// How much lower than the network threads the pipeline's threads are
    /// scheduled (a nice value added to theirs): on a core both use, the
    /// event loops run first, so inline routes do not queue behind
    /// pipeline work. Default 19 (lowest); 0 to 19.
    pub nice: i32,
}

/// Smallest allowed `max_pending_output`.
pub const MIN_PENDING_OUTPUT: usize = 1024;
/// Largest allowed `max_pending_output` (1 GiB).
pub const MAX_PENDING_OUTPUT: usize = 1 << 30;
/// The `[http.metrics]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Path serving the Prometheus text exposition; empty: none. Default
    /// empty. Starts with `/`.
    pub path: String,
    /// Path serving the live dashboard; its event feed is `path + "/events"`.
    /// Empty: none. Default empty. Starts with `/`.
    pub dashboard: String,
}

impl MetricsConfig {
    /// Whether any of it is served.
    pub fn enabled(&self) -> bool {
        !self.path.is_empty() || !self.dashboard.is_empty()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (key, path) in [
            ("http.metrics.path", &self.path),
            ("http.metrics.dashboard", &self.dashboard),
        ] {
            let ok = path.is_empty()
                || (path.starts_with('/')
                    && path.bytes().all(|b| {
                        b.is_ascii_graphic() && b != b'?' && b != b'#' && b != b'{' && b != b'}'
                    }));
            if !ok {
                return Err(invalid(
                    key,
                    format!("must be empty or a path starting with '/' (no spaces, '?', '#', '{{' or '}}'), got {path:?}"),
                ));
            }
        }
        if !self.path.is_empty()
            && (self.path == self.dashboard || self.path == format!("{}/events", self.dashboard))
        {
            return Err(invalid(
                "http.metrics.path",
                "must differ from the dashboard's paths",
            ));
        }
        Ok(())
    }
}

/// The `[http.compression]` table: `Server` builds its
/// `stoat::app::Compression` from it when `enabled`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// Compress responses of every inline route and event stream. Default
    /// false.
    pub enabled: bool,
    /// Codings offered, in order of preference: `gzip`, `br`. Default
    /// `["gzip", "br"]`; no duplicates; empty offers none (off).
    pub codings: Vec<String>,
    /// gzip level. Default 1; 0 to 9.
    pub gzip_level: u32,
    /// brotli quality. Default 3; 0 to 11.
    pub brotli_level: u32,
    /// Bodies shorter than this are sent as they are. Default 256.
    pub min_size: usize,
    /// Largest body compressed on a network thread. Default 262144.
    pub inline_limit: usize,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            enabled: false,
            codings: vec!["gzip".into(), "br".into()],
            gzip_level: 1,
            brotli_level: 3,
            min_size: 256,
            inline_limit: 256 * 1024,
        }
    }
}

impl CompressionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        at_most("http.compression.gzip_level", self.gzip_level, 9)?;
        at_most("http.compression.brotli_level", self.brotli_level, 11)?;
        for (i, coding) in self.codings.iter().enumerate() {
            if coding != "gzip" && coding != "br" {
                return Err(invalid(
                    "http.compression.codings",
                    format!("must name \"gzip\" or \"br\", got {coding:?}"),
                ));
            }
            if self.codings[..i].contains(coding) {
                return Err(invalid(
                    "http.compression.codings",
                    format!("names {coding:?} twice"),
                ));
            }
        }
        Ok(())
    }
}

/// The `[http.access_log]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// A file to append to, `stderr`, or empty for no log. Default empty.
    pub path: String,
    /// Line format. Default [`AccessLogFormat::Combined`].
    pub format: AccessLogFormat,
    /// Lines each network thread's ring holds for the writer thread, at
    /// 128 bytes a line (a ring is at least 1 KiB, a power of two). Default
    /// 4096; 1 to 1048576.
    pub queue: usize,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            path: String::new(),
            format: AccessLogFormat::Combined,
            queue: 4096,
        }
    }
}

impl AccessLogConfig {
    /// Whether the log is on.
    pub fn enabled(&self) -> bool {
        !self.path.is_empty()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        at_least("http.access_log.queue", self.queue, 1)?;
        at_most("http.access_log.queue", self.queue, 1 << 20)
    }
}

/// The access log's line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormat {
    /// The combined log format, then the duration in seconds and the route.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

/// The `[log]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter (`info`, `stoat=debug,warn`); `RUST_LOG`
    /// overrides it. Default `info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
        }
    }
}

impl LogConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.level)
            .map(|_| ())
            .map_err(|e| invalid("log.level", format!("{e}: {:?}", self.level)))
    }
}

/// Largest allowed `buffer_size` (1 MiB).
pub const MAX_BUFFER_SIZE: usize = 1 << 20;
/// Smallest allowed `ring_buffer_size`.
pub const MIN_RING_BUFFER_SIZE: usize = 2;
/// Largest allowed `ring_buffer_size`.
pub const MAX_RING_BUFFER_SIZE: usize = 1 << 20;
/// Largest allowed value of any `*_sec` key (one week). Deadlines are
/// computed as `now + timeout`; the cap keeps that sum far from overflow.
pub const MAX_TIMEOUT_SEC: u64 = 7 * 24 * 60 * 60;
/// Smallest allowed `max_request_line`: `GET / HTTP/1.1\r\n` is 16 bytes.
pub const MIN_REQUEST_LINE: usize = 16;
/// Smallest allowed `max_header_bytes`: an empty header section is its final
/// CRLF.
pub const MIN_HEADER_BYTES: usize = 2;

/// A configuration that could not be read, parsed or validated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config error in {}: cannot read file: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why it could not be read.
        source: io::Error,
    },
    /// The text is not valid TOML.
    #[error(
        "config error in {}: {}invalid TOML: {message}",
        origin(file),
        at(position)
    )]
    Syntax {
        /// The file, when the text came from one.
        file: Option<PathBuf>,
        /// 1-based line and column of the error, when known.
        position: Option<(usize, usize)>,
        /// What is wrong.
        message: String,
    },
    /// A key that is not in the schema (often a typo).
    #[error("config error in {}: unknown key `{key}` ({expected})", origin(file))]
    UnknownKey {
        /// The file, when the text came from one.
        file: Option<PathBuf>,
        /// Full path of the unknown key, like `http.prot`.
        key: String,
        /// The keys allowed in its table.
        expected: String,
    },
    /// A value of the wrong type or out of its type's range.
    #[error("config error in {}: key `{key}`: {message}", origin(file))]
    Value {
        /// The file, when the text came from one.
        file: Option<PathBuf>,
        /// Full path of the key, like `http.port`.
        key: String,
        /// What is wrong, like `invalid type: string "x", expected u16`.
        message: String,
    },
    /// A well-typed value that breaks a validation rule.
    #[error("config error in {}: key `{key}`: {message}", origin(file))]
    Invalid {
        /// The file, when the text came from one.
        file: Option<PathBuf>,
        /// Full path of the key, like `http.network_threads`.
        key: String,
        /// The rule broken, like `must be at least 1`.
        message: String,
    },
}

impl Config {
    /// Reads, parses and validates the TOML file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&text, Some(path))
    }

    /// Parses and validates TOML `text`; `file` names its origin in errors.
    pub fn from_toml_str(text: &str, file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config: Config = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| ConfigError::from_toml(&e, text, file))?;
        config.file = file.map(Path::to_path_buf);
        config.validate()?;
        Ok(config)
    }

    /// Checks every rule of the schema; the error names the first key at
    /// fault, and the file the configuration was read from (if it was).
    /// `Server::start` calls it once, after the last change through
    /// `Server::config_mut`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.http.validate().map_err(|e| e.in_file(self.file()))?;
        self.http
            .metrics
            .validate()
            .map_err(|e| e.in_file(self.file()))?;
        self.http
            .access_log
            .validate()
            .map_err(|e| e.in_file(self.file()))?;
        self.http
            .compression
            .validate()
            .map_err(|e| e.in_file(self.file()))?;
        self.log.validate().map_err(|e| e.in_file(self.file()))
    }

    /// The file the configuration was read from ([`Config::load`], or
    /// [`Config::from_toml_str`] given one).
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The protocol layer's limits and timeouts.
    pub fn limits(&self) -> Limits {
        let http = &self.http;
        Limits {
            max_request_line: http.max_request_line,
            max_header_bytes: http.max_header_bytes,
            max_headers: http.max_headers,
            max_body_size: http.max_body_size,
            max_chunk_ext: http.max_chunk_ext,
            max_trailer_bytes: http.max_trailer_bytes,
            keepalive_timeout: http.keepalive_timeout(),
            request_timeout: http.request_timeout(),
            body_timeout: http.body_timeout(),
            write_timeout: http.write_timeout(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            model: Model::PerCore,
            accept_threads: 1,
            network_threads: 2,
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            backlog: 1024,
            defer_accept_sec: 0,
            max_connections: 10_000,
            pin_threads: false,
            keepalive_timeout_sec: 30,
            request_timeout_sec: 10,
            body_timeout_sec: 10,
            write_timeout_sec: 30,
            drain_timeout_sec: 10,
            sse_heartbeat_sec: 15,
            sse_backlog: 256,
            ws_ping_sec: 30,
            ws_idle_timeout_sec: 300,
            ws_max_message_size: 16 * 1024 * 1024,
            ws_backlog: 256,
            max_request_line: 8 * 1024,
            max_header_bytes: 8 * 1024,
            max_headers: 100,
            max_body_size: 1024 * 1024,
            max_chunk_ext: 1024,
            max_trailer_bytes: 8 * 1024,
            buffer_size: 16 * 1024,
            buffer_memory_limit: 64 * 1024 * 1024,
            body_memory_limit: 16 * 1024 * 1024,
            max_pending_output: 64 * 1024,
            server_name: "stoat".to_owned(),
            proxy_protocol: ProxyProtocol::Off,
            trusted_proxies: Vec::new(),
            health_path: "/healthz".to_owned(),
            drain_health_sec: 0,
            pipelines: BTreeMap::new(),
            metrics: MetricsConfig::default(),
            access_log: AccessLogConfig::default(),
            compression: CompressionConfig::default(),
        }
    }
}

impl HttpConfig {
    /// The address to listen on: `bind_address` and `port`.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind_address, self.port)
    }

    /// The `Server` header value, or `None` when `server_name` is empty.
    pub fn server_header(&self) -> Option<&str> {
        Some(self.server_name.as_str()).filter(|s| !s.is_empty())
    }

    /// `keepalive_timeout_sec` as a duration.
    pub fn keepalive_timeout(&self) -> Duration {
        Duration::from_secs(self.keepalive_timeout_sec)
    }

    /// `request_timeout_sec` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_sec)
    }

    /// `body_timeout_sec` as a duration.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_sec)
    }

    /// `write_timeout_sec` as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_sec)
    }

    /// `drain_timeout_sec` as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_sec)
    }

    /// `sse_heartbeat_sec` as a duration.
    pub fn sse_heartbeat(&self) -> Duration {
        Duration::from_secs(self.sse_heartbeat_sec)
    }

    /// `drain_health_sec` as a duration.
    pub fn drain_health(&self) -> Duration {
        Duration::from_secs(self.drain_health_sec)
    }

    /// Whether `peer` is one of `trusted_proxies`.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(peer))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        at_least("http.accept_threads", self.accept_threads, 1)?;
        at_least("http.network_threads", self.network_threads, 1)?;
        if self.backlog > i32::MAX as u32 {
            return Err(invalid(
                "http.backlog",
                format!("must be at most {}", i32::MAX),
            ));
        }
        at_most("http.defer_accept_sec", self.defer_accept_sec, 3600)?;
        at_least("http.max_connections", self.max_connections, 1)?;
        for (key, secs) in [
            ("http.keepalive_timeout_sec", self.keepalive_timeout_sec),
            ("http.request_timeout_sec", self.request_timeout_sec),
            ("http.body_timeout_sec", self.body_timeout_sec),
            ("http.write_timeout_sec", self.write_timeout_sec),
            ("http.drain_timeout_sec", self.drain_timeout_sec),
            ("http.sse_heartbeat_sec", self.sse_heartbeat_sec),
        ] {
            at_least(key, secs, 1)?;
            at_most(key, secs, MAX_TIMEOUT_SEC)?;
        }
        at_least("http.sse_backlog", self.sse_backlog, 1)?;
        at_most("http.sse_backlog", self.sse_backlog, 65_536)?;
        at_most("http.ws_ping_sec", self.ws_ping_sec, MAX_TIMEOUT_SEC)?;
        at_most(
            "http.ws_idle_timeout_sec",
            self.ws_idle_timeout_sec,
            MAX_TIMEOUT_SEC,
        )?;
        at_least("http.ws_max_message_size", self.ws_max_message_size, 125)?;
        at_least("http.ws_backlog", self.ws_backlog, 1)?;
        at_most("http.ws_backlog", self.ws_backlog, 65_536)?;
        at_least(
            "http.max_request_line",
            self.max_request_line,
            MIN_REQUEST_LINE,
        )?;
        at_least(
            "http.max_header_bytes",
            self.max_header_bytes,
            MIN_HEADER_BYTES,
        )?;
        at_least("http.max_headers", self.max_headers, 1)?;
        at_most(
            "http.max_headers",
            self.max_headers,
            Limits::MAX_HEADERS_CAP,
        )?;
        self.validate_buffers()?;
        at_least(
            "http.max_pending_output",
            self.max_pending_output,
            MIN_PENDING_OUTPUT,
        )?;
        at_most(
            "http.max_pending_output",
            self.max_pending_output,
            MAX_PENDING_OUTPUT,
        )?;
        self.validate_server_name()?;
        self.validate_proxies()?;
        for (name, pipeline) in &self.pipelines {
            let mut key = "http.pipelines".to_owned();
            push_key(&mut key, name);
            pipeline.validate(name, key)?;
        }
        Ok(())
    }

    fn validate_buffers(&self) -> Result<(), ConfigError> {
        // A request head must fit one buffer, so the buffer bounds the head.
        let head = self.max_request_line.checked_add(self.max_header_bytes);
        if head.filter(|&head| self.buffer_size >= head).is_none() {
            return Err(invalid(
                "http.buffer_size",
                format!(
                    "must be at least max_request_line + max_header_bytes ({} + {})",
                    self.max_request_line, self.max_header_bytes
                ),
            ));
        }
        at_most("http.buffer_size", self.buffer_size, MAX_BUFFER_SIZE)?;
        // Every network thread can hold at least two buffers at once.
        let floor = self
            .buffer_size
            .checked_mul(2)
            .and_then(|n| n.checked_mul(self.network_threads));
        if floor
            .filter(|&floor| self.buffer_memory_limit >= floor)
            .is_none()
        {
            return Err(invalid(
                "http.buffer_memory_limit",
                format!(
                    "must be at least 2 * buffer_size * network_threads (2 * {} * {})",
                    self.buffer_size, self.network_threads
                ),
            ));
        }
        // Any admissible request fits the body budget on its own, so a
        // waiting body is always admitted once the others finish.
        let whole = (self.max_body_size as u128)
            + self.max_request_line as u128
            + self.max_header_bytes as u128;
        if (self.body_memory_limit as u128) < whole {
            return Err(invalid(
                "http.body_memory_limit",
                format!(
                    "must be at least max_body_size + max_request_line + max_header_bytes ({whole})"
                ),
            ));
        }
        Ok(())
    }

    fn validate_proxies(&self) -> Result<(), ConfigError> {
        if self.proxy_protocol != ProxyProtocol::Off && self.trusted_proxies.is_empty() {
            return Err(invalid(
                "http.trusted_proxies",
                format!(
                    "must list at least one address block when proxy_protocol is {:?} (else every connection is refused)",
                    format!("{:?}", self.proxy_protocol).to_ascii_lowercase()
                ),
            ));
        }
        let path = &self.health_path;
        if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "http.health_path",
                "must start with '/' and hold only visible ASCII characters",
            ));
        }
        at_most(
            "http.drain_health_sec",
            self.drain_health_sec,
            MAX_TIMEOUT_SEC,
        )
    }

    fn validate_server_name(&self) -> Result<(), ConfigError> {
        let key = "http.server_name";
        if self.server_name.chars().any(char::is_control) {
            return Err(invalid(key, "must not contain control characters"));
        }
        // RFC 9110 §5.5: a field value does not include leading or trailing
        // whitespace.
        if self.server_name.trim() != self.server_name {
            return Err(invalid(key, "must not start or end with whitespace"));
        }
        Ok(())
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            ring_buffer_size: 1024,
            threads: 1,
            nice: 19,
        }
    }
}

impl PipelineConfig {
    fn validate(&self, name: &str, key: String) -> Result<(), ConfigError> {
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(invalid(
                key,
                "pipeline names must be non-empty and use only A-Z, a-z, 0-9, '_' and '-'",
            ));
        }
        let size = self.ring_buffer_size;
        if !size.is_power_of_two() || !(MIN_RING_BUFFER_SIZE..=MAX_RING_BUFFER_SIZE).contains(&size)
        {
            return Err(invalid(
                format!("{key}.ring_buffer_size"),
                format!(
                    "must be a power of two from {MIN_RING_BUFFER_SIZE} to {MAX_RING_BUFFER_SIZE}, got {size}"
                ),
            ));
        }
        at_least(&format!("{key}.threads"), self.threads, 1)?;
        at_least(&format!("{key}.nice"), self.nice, 0)?;
        at_most(&format!("{key}.nice"), self.nice, 19)
    }
}

impl ConfigError {
    /// Full path of the key at fault, like `http.port`, when the error has one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::Value { key, .. }
            | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
        }
    }

    /// The file the configuration came from, when known.
    pub fn file(&self) -> Option<&Path> {
        match self {
            ConfigError::Read { file, .. } => Some(file),
            ConfigError::Syntax { file, .. }
            | ConfigError::UnknownKey { file, .. }
            | ConfigError::Value { file, .. }
            | ConfigError::Invalid { file, .. } => file.as_deref(),
        }
    }

    fn from_toml(
        err: &serde_path_to_error::Error<toml::de::Error>,
        text: &str,
        file: Option<&Path>,
    ) -> ConfigError {
        let file = file.map(Path::to_path_buf);
        let mut key = key_path(err.path());
        let inner = err.inner();
        // toml splits some messages over lines; keep the error on one line.
        let message = inner
            .message()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        if let Some((field, expected)) = unknown_field(&message) {
            // The path may end at the unknown key or at its parent table;
            // either way, name the key itself.
            if !key_path_ends_with(err.path(), field) {
                push_key(&mut key, field);
            }
            return ConfigError::UnknownKey {
                file,
                key,
                expected: expected.to_owned(),
            };
        }
        // The root is a table of tables; an error there is in the TOML itself.
        if key.is_empty() {
            let position = inner.span().and_then(|span| line_column(text, span.start));
            return ConfigError::Syntax {
                file,
                position,
                message,
            };
        }
        ConfigError::Value { file, key, message }
    }

    fn in_file(mut self, path: Option<&Path>) -> ConfigError {
        match &mut self {
            ConfigError::Read { .. } => {}
            ConfigError::Syntax { file, .. }
            | ConfigError::UnknownKey { file, .. }
            | ConfigError::Value { file, .. }
            | ConfigError::Invalid { file, .. } => {
                if file.is_none() {
                    *file = path.map(Path::to_path_buf);
                }
            }
        }
        self
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: None,
        key: key.into(),
        message: message.into(),
    }
}

fn at_least<T: PartialOrd + fmt::Display>(key: &str, value: T, min: T) -> Result<(), ConfigError> {
    if value < min {
        return Err(invalid(key, format!("must be at least {min}")));
    }
    Ok(())
}

fn at_most<T: PartialOrd + fmt::Display>(key: &str, value: T, max: T) -> Result<(), ConfigError> {
    if value > max {
        return Err(invalid(key, format!("must be at most {max}")));
    }
    Ok(())
}

/// Renders a deserializer path as a TOML dotted key, quoting segments that
/// are not bare keys.
fn key_path(path: &serde_path_to_error::Path) -> String {
    let mut key = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: name } => push_key(&mut key, name),
            Segment::Enum { variant } => push_key(&mut key, variant),
            Segment::Unknown => push_key(&mut key, "?"),
        }
    }
    key
}

/// Whether the last segment of `path` is the map key `name`.
fn key_path_ends_with(path: &serde_path_to_error::Path, name: &str) -> bool {
    matches!(path.iter().next_back(), Some(Segment::Map { key }) if key == name)
}

/// Appends `name` to the dotted key `key`, quoted unless it is a TOML bare key.
fn push_key(key: &mut String, name: &str) {
    if !key.is_empty() {
        key.push('.');
    }
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.push_str(name);
    } else {
        key.push_str(&format!("{name:?}"));
    }
}

/// Splits serde's `unknown field `x`, expected ...` message into the field
/// and the hint.
fn unknown_field(message: &str) -> Option<(&str, &str)> {
    message.strip_prefix("unknown field `")?.split_once("`, ")
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> Option<(usize, usize)> {
    let before = text.get(..offset)?;
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Some((line, before[line_start..].chars().count() + 1))
}

/// Displays an error's origin: the file, or `<built-in>` for text without one.
fn origin(file: &Option<PathBuf>) -> impl fmt::Display + '_ {
    struct Origin<'a>(&'a Option<PathBuf>);
    impl fmt::Display for Origin<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0 {
                Some(file) => write!(f, "{}", file.display()),
                None => f.write_str("<built-in>"),
            }
        }
    }
    Origin(file)
}

/// Displays `line L, column C: ` when the position is known.
fn at(position: &Option<(usize, usize)>) -> String {
    match position {
        Some((line, column)) => format!("line {line}, column {column}: "),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, Some(Path::new("weasel.toml")))
    }

    /// Parses `[http]` + `body` and returns the error, checking its key.
    fn http_err(body: &str, key: &str) -> ConfigError {
        let err = parse(&format!("[http]\n{body}\n")).expect_err(body);
        assert_eq!(err.key(), Some(key), "{err}");
        err
    }

    fn rule(body: &str, key: &str, message: &str) {
        let err = http_err(body, key);
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("config error in weasel.toml: key `{key}`: {message}")
        );
    }

    fn expected_default() -> Config {
        let mut config = Config::default();
        config
            .http
            .pipelines
            .insert("commit_status".to_owned(), PipelineConfig::default());
        config
    }

    #[test]
    fn default_config_text_is_defaults_plus_commit_status() {
        let config = Config::from_toml_str(DEFAULT_CONFIG, None).unwrap();
        assert_eq!(config, expected_default());
        assert_eq!(
            config.http.pipelines["commit_status"],
            PipelineConfig {
                ring_buffer_size: 1024,
                threads: 1,
                nice: 19,
            }
        );
    }

    #[test]
    fn default_config_text_comments_every_key() {
        let lines: Vec<&str> = DEFAULT_CONFIG.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.contains(" = ") && !line.starts_with('#') {
                assert!(lines[i - 1].starts_with("# "), "no comment above {line}");
            }
        }
    }

    #[test]
    fn empty_text_is_default_and_valid() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(parse("[http]\n").unwrap(), Config::default());
        Config::default().validate().unwrap();
    }

    #[test]
    fn default_limits_match_proto_defaults() {
        assert_eq!(Config::default().limits(), Limits::default());
    }

    #[test]
    fn limits_follow_config() {
        let config = parse(
            "[http]\nmax_headers = 50\nmax_body_size = 5\nwrite_timeout_sec = 7\n\
             keepalive_timeout_sec = 3\nrequest_timeout_sec = 4\nbody_timeout_sec = 5\n\
             max_request_line = 100\nmax_header_bytes = 200\nmax_chunk_ext = 9\nmax_trailer_bytes = 11",
        )
        .unwrap();
        let limits = config.limits();
        assert_eq!(limits.max_headers, 50);
        assert_eq!(limits.max_body_size, 5);
        assert_eq!(limits.max_request_line, 100);
        assert_eq!(limits.max_header_bytes, 200);
        assert_eq!(limits.max_chunk_ext, 9);
        assert_eq!(limits.max_trailer_bytes, 11);
        assert_eq!(limits.write_timeout, Duration::from_secs(7));
        assert_eq!(limits.keepalive_timeout, Duration::from_secs(3));
        assert_eq!(limits.request_timeout, Duration::from_secs(4));
        assert_eq!(limits.body_timeout, Duration::from_secs(5));
    }

    #[test]
    fn accessors() {
        let config = parse(
            "[http]\nmodel = \"shared\"\nbind_address = \"::1\"\nport = 0\nserver_name = \"\"\n\
             drain_timeout_sec = 2\nsse_heartbeat_sec = 3",
        )
        .unwrap();
        let http = &config.http;
        assert_eq!(http.model, Model::Shared);
        assert_eq!(http.socket_addr(), "[::1]:0".parse().unwrap());
        assert_eq!(http.server_header(), None);
        assert_eq!(http.drain_timeout(), Duration::from_secs(2));
        assert_eq!(http.sse_heartbeat(), Duration::from_secs(3));
        assert_eq!(Config::default().http.server_header(), Some("stoat"));
    }

    #[test]
    fn unknown_top_level_key() {
        let err = parse("prot = 1").unwrap_err();
        assert!(matches!(err, ConfigError::UnknownKey { .. }), "{err:?}");
        assert_eq!(err.key(), Some("prot"));
        assert!(
            err.to_string()
                .starts_with("config error in weasel.toml: unknown key `prot`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_http_key() {
        let err = http_err("prot = 8080", "http.prot");
        assert!(matches!(err, ConfigError::UnknownKey { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("config error in weasel.toml: unknown key `http.prot`"),
            "{msg}"
        );
        assert!(msg.contains("`port`"), "lists the allowed keys: {msg}");
    }

    #[test]
    fn unknown_pipeline_key() {
        let err = parse("[http.pipelines.work]\nthread = 2").unwrap_err();
        assert!(matches!(err, ConfigError::UnknownKey { .. }), "{err:?}");
        assert_eq!(err.key(), Some("http.pipelines.work.thread"));
        assert!(
            err.to_string()
                .contains("unknown key `http.pipelines.work.thread`"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_names_key() {
        let err = http_err("port = \"x\"", "http.port");
        assert!(matches!(err, ConfigError::Value { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "config error in weasel.toml: key `http.port`: invalid type: string \"x\", expected u16"
        );
    }

    #[test]
    fn out_of_range_names_key() {
        http_err("port = 70000", "http.port");
        http_err("network_threads = -1", "http.network_threads");
        http_err("bind_address = \"localhost\"", "http.bind_address");
        http_err("model = \"threaded\"", "http.model");
        http_err("pin_threads = 1", "http.pin_threads");
        let err = parse("[http.pipelines.work]\nthreads = \"many\"").unwrap_err();
        assert_eq!(err.key(), Some("http.pipelines.work.threads"));
        let err = parse("http = 5").unwrap_err();
        assert_eq!(err.key(), Some("http"));
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("[http]\nport = = 1\n").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
        assert_eq!(err.key(), None);
        let msg = err.to_string();
        assert!(
            msg.starts_with("config error in weasel.toml: line 2, column "),
            "{msg}"
        );
    }

    #[test]
    fn duplicate_key_is_an_error() {
        let err = parse("[http]\nport = 1\nport = 2\n").unwrap_err();
        assert!(err.to_string().contains("weasel.toml"), "{err}");
    }

    #[test]
    fn file_name_in_message() {
        let err = Config::from_toml_str(
            "[http]\nnetwork_threads = 0",
            Some(Path::new("/etc/w.toml")),
        )
        .unwrap_err();
        assert_eq!(err.file(), Some(Path::new("/etc/w.toml")));
        assert_eq!(
            err.to_string(),
            "config error in /etc/w.toml: key `http.network_threads`: must be at least 1"
        );
        let err = Config::from_toml_str("[http]\nnetwork_threads = 0", None).unwrap_err();
        assert_eq!(err.file(), None);
        assert!(
            err.to_string().starts_with("config error in <built-in>: "),
            "{err}"
        );
    }

    #[test]
    fn load_reads_file_and_names_it() {
        let dir = std::env::temp_dir().join(format!("stoat-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("weasel.toml");
        std::fs::write(&path, "[http]\nport = 9000\n").unwrap();
        assert_eq!(Config::load(&path).unwrap().http.port, 9000);
        std::fs::write(&path, "[http]\nport = \"x\"\n").unwrap();
        let err = Config::load(&path).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
        let err = Config::load(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("weasel.toml"), "{err}");
        assert_eq!(err.key(), None);
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn two_pipelines() {
        let config = parse(
            "[http.pipelines.commit_status]\nring_buffer_size = 64\nthreads = 4\n\
             [http.pipelines.render-2]\n",
        )
        .unwrap();
        let pipelines = &config.http.pipelines;
        assert_eq!(pipelines.len(), 2);
        assert_eq!(
            pipelines["commit_status"],
            PipelineConfig {
                ring_buffer_size: 64,
                threads: 4,
                nice: 19
            }
        );
        assert_eq!(pipelines["render-2"], PipelineConfig::default());
    }

    #[test]
    fn max_pending_output_is_bounded() {
        for bad in ["1023", "0", "1073741825"] {
            let err = parse(&format!("[http]\nmax_pending_output = {bad}")).unwrap_err();
            assert_eq!(err.key(), Some("http.max_pending_output"), "{err}");
        }
        let config = parse("[http]\nmax_pending_output = 1024").unwrap();
        assert_eq!(config.http.max_pending_output, 1024);
    }

    #[test]
    fn body_memory_limit_fits_one_whole_request() {
        let err =
            parse("[http]\nmax_body_size = 1048576\nbody_memory_limit = 1048576").unwrap_err();
        assert_eq!(err.key(), Some("http.body_memory_limit"), "{err}");
        parse("[http]\nmax_body_size = 1048576\nbody_memory_limit = 1064960").unwrap();
    }

    #[test]
    fn pipeline_nice_bounds() {
        let err = parse("[http.pipelines.work]\nnice = 20").unwrap_err();
        assert_eq!(err.key(), Some("http.pipelines.work.nice"), "{err}");
        let err = parse("[http.pipelines.work]\nnice = -1").unwrap_err();
        assert_eq!(err.key(), Some("http.pipelines.work.nice"), "{err}");
        let ok = parse("[http.pipelines.work]\nnice = 0").unwrap();
        assert_eq!(ok.http.pipelines["work"].nice, 0);
    }

    #[test]
    fn accept_threads_at_least_one() {
        rule(
            "accept_threads = 0",
            "http.accept_threads",
            "must be at least 1",
        );
    }

    #[test]
    fn network_threads_at_least_one() {
        rule(
            "network_threads = 0",
            "http.network_threads",
            "must be at least 1",
        );
    }

    #[test]
    fn backlog_fits_listen() {
        rule(
            "backlog = 2147483648",
            "http.backlog",
            "must be at most 2147483647",
        );
    }

    #[test]
    fn max_connections_at_least_one() {
        rule(
            "max_connections = 0",
            "http.max_connections",
            "must be at least 1",
        );
    }

    #[test]
    fn timeouts_at_least_one_second() {
        for name in [
            "keepalive_timeout_sec",
            "request_timeout_sec",
            "body_timeout_sec",
            "write_timeout_sec",
            "drain_timeout_sec",
            "sse_heartbeat_sec",
        ] {
            rule(
                &format!("{name} = 0"),
                &format!("http.{name}"),
                "must be at least 1",
            );
        }
    }

    #[test]
    fn compression_table() {
        let c = parse(
            "[http.compression]\nenabled = true\ncodings = [\"br\"]\ngzip_level = 9\n\
             brotli_level = 11\nmin_size = 0\ninline_limit = 1",
        )
        .unwrap()
        .http
        .compression;
        assert!(c.enabled);
        assert_eq!(c.codings, ["br"]);
        assert_eq!(
            (c.gzip_level, c.brotli_level, c.min_size, c.inline_limit),
            (9, 11, 0, 1)
        );
        for (body, key, message) in [
            ("gzip_level = 10", "gzip_level", "must be at most 9"),
            ("brotli_level = 12", "brotli_level", "must be at most 11"),
            (
                "codings = [\"zstd\"]",
                "codings",
                "must name \"gzip\" or \"br\", got \"zstd\"",
            ),
            (
                "codings = [\"br\", \"br\"]",
                "codings",
                "names \"br\" twice",
            ),
        ] {
            let err = parse(&format!("[http.compression]\n{body}")).unwrap_err();
            assert_eq!(
                err.key(),
                Some(&*format!("http.compression.{key}")),
                "{body}"
            );
            assert!(err.to_string().ends_with(message), "{err}");
        }
        let err = parse("[http.compression]\nlevel = 3").unwrap_err();
        assert!(err.to_string().contains("level"), "{err}");
    }

    #[test]
    fn timeouts_at_most_a_week() {
        rule(
            "write_timeout_sec = 604801",
            "http.write_timeout_sec",
            "must be at most 604800",
        );
    }

    #[test]
    fn max_request_line_floor() {
        rule(
            "max_request_line = 15",
            "http.max_request_line",
            "must be at least 16",
        );
    }

    #[test]
    fn max_header_bytes_floor() {
        rule(
            "max_header_bytes = 1",
            "http.max_header_bytes",
            "must be at least 2",
        );
    }

    #[test]
    fn max_headers_bounds() {
        rule(
            "max_headers = 257",
            "http.max_headers",
            "must be at most 256",
        );
        rule("max_headers = 0", "http.max_headers", "must be at least 1");
        parse("[http]\nmax_headers = 256").unwrap();
    }

    #[test]
    fn defer_accept_key() {
        assert_eq!(HttpConfig::default().defer_accept_sec, 0);
        rule(
            "defer_accept_sec = 3601",
            "http.defer_accept_sec",
            "must be at most 3600",
        );
        let c = parse("[http]\ndefer_accept_sec = 5").unwrap();
        assert_eq!(c.http.defer_accept_sec, 5);
    }

    #[test]
    fn websocket_keys() {
        rule("ws_backlog = 0", "http.ws_backlog", "must be at least 1");
        rule(
            "ws_backlog = 65537",
            "http.ws_backlog",
            "must be at most 65536",
        );
        rule(
            "ws_max_message_size = 124",
            "http.ws_max_message_size",
            "must be at least 125",
        );
        let c = parse("[http]\nws_ping_sec = 0\nws_idle_timeout_sec = 0").unwrap();
        assert_eq!((c.http.ws_ping_sec, c.http.ws_idle_timeout_sec), (0, 0));
        assert_eq!(HttpConfig::default().ws_max_message_size, 16 * 1024 * 1024);
    }

    #[test]
    fn buffer_holds_a_head() {
        rule(
            "max_request_line = 10000",
            "http.buffer_size",
            "must be at least max_request_line + max_header_bytes (10000 + 8192)",
        );
        parse("[http]\nbuffer_size = 20000\nmax_request_line = 11808").unwrap();
    }

    #[test]
    fn buffer_size_at_most_one_mib() {
        rule(
            "buffer_size = 1048577\nbuffer_memory_limit = 1073741824",
            "http.buffer_size",
            "must be at most 1048576",
        );
    }

    #[test]
    fn buffer_memory_limit_two_buffers_per_thread() {
        rule(
            "buffer_memory_limit = 65535",
            "http.buffer_memory_limit",
            "must be at least 2 * buffer_size * network_threads (2 * 16384 * 2)",
        );
        parse("[http]\nbuffer_memory_limit = 65536").unwrap();
        // Overflow in the product is an error, not a panic.
        let mut config = Config::default();
        config.http.network_threads = usize::MAX;
        assert_eq!(
            config.validate().unwrap_err().key(),
            Some("http.buffer_memory_limit")
        );
    }

    #[test]
    fn server_name_no_control_chars() {
        rule(
            "server_name = \"stoat\\r\\nX: y\"",
            "http.server_name",
            "must not contain control characters",
        );
        rule(
            "server_name = \" stoat\"",
            "http.server_name",
            "must not start or end with whitespace",
        );
    }

    #[test]
    fn pipeline_name_charset() {
        let err = parse("[http.pipelines.\"a b\"]").unwrap_err();
        assert_eq!(err.key(), Some("http.pipelines.\"a b\""));
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err:?}");
        let err = parse("[http.pipelines.\"\"]").unwrap_err();
        assert_eq!(err.key(), Some("http.pipelines.\"\""));
    }

    #[test]
    fn pipeline_ring_power_of_two() {
        for size in ["1000", "1", "0", "2097152"] {
            let err =
                parse(&format!("[http.pipelines.work]\nring_buffer_size = {size}")).unwrap_err();
            assert_eq!(
                err.key(),
                Some("http.pipelines.work.ring_buffer_size"),
                "{size}"
            );
            assert!(matches!(err, ConfigError::Invalid { .. }), "{err:?}");
        }
        parse("[http.pipelines.work]\nring_buffer_size = 2").unwrap();
        parse("[http.pipelines.work]\nring_buffer_size = 1048576").unwrap();
    }

    #[test]
    fn proxy_keys() {
        let c = parse(
            "[http]\nproxy_protocol = \"v2\"\ntrusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\", \"::1\", \"2001:db8::/32\"]\n\
             health_path = \"/ready\"\ndrain_health_sec = 4",
        )
        .unwrap();
        let http = &c.http;
        assert_eq!(http.proxy_protocol, ProxyProtocol::V2);
        assert_eq!(
            http.proxy_protocol.accept(),
            Some(crate::proto::proxy::Accept::V2)
        );
        assert_eq!(ProxyProtocol::Off.accept(), None);
        assert_eq!(http.health_path, "/ready");
        assert_eq!(http.drain_health(), Duration::from_secs(4));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(http.is_trusted_proxy(ip("127.0.0.1")));
        assert!(!http.is_trusted_proxy(ip("127.0.0.2")));
        assert!(http.is_trusted_proxy(ip("10.255.0.1")));
        assert!(!http.is_trusted_proxy(ip("11.0.0.1")));
        assert!(http.is_trusted_proxy(ip("::1")));
        assert!(http.is_trusted_proxy(ip("2001:db8:1::5")));
        // A dual-stack listener's view of an IPv4 peer.
        assert!(http.is_trusted_proxy(ip("::ffff:10.1.2.3")));
        assert!(!http.is_trusted_proxy(ip("::ffff:11.1.2.3")));
        assert_eq!(http.trusted_proxies[2].to_string(), "::1/128");
        for (text, mode) in [
            ("off", ProxyProtocol::Off),
            ("v1", ProxyProtocol::V1),
            ("any", ProxyProtocol::Any),
        ] {
            let c = parse(&format!(
                "[http]\nproxy_protocol = \"{text}\"\ntrusted_proxies = [\"127.0.0.1\"]"
            ))
            .unwrap();
            assert_eq!(c.http.proxy_protocol, mode);
        }
        let d = HttpConfig::default();
        assert_eq!(
            (
                d.proxy_protocol,
                d.trusted_proxies.len(),
                d.health_path.as_str(),
                d.drain_health_sec
            ),
            (ProxyProtocol::Off, 0, "/healthz", 0)
        );
    }

    #[test]
    fn proxy_key_errors() {
        http_err("proxy_protocol = \"v3\"", "http.proxy_protocol");
        http_err("proxy_protocol = true", "http.proxy_protocol");
        rule(
            "proxy_protocol = \"any\"",
            "http.trusted_proxies",
            "must list at least one address block when proxy_protocol is \"any\" (else every connection is refused)",
        );
        let err = http_err(
            "trusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/33\"]",
            "http.trusted_proxies[1]",
        );
        assert_eq!(
            err.to_string(),
            "config error in weasel.toml: key `http.trusted_proxies[1]`: invalid address block \"10.0.0.0/33\": expected ADDRESS/PREFIX (like \"10.0.0.0/8\") or an address"
        );
        http_err(
            "trusted_proxies = [\"localhost\"]",
            "http.trusted_proxies[0]",
        );
        http_err("trusted_proxies = [\"\"]", "http.trusted_proxies[0]");
        http_err("trusted_proxies = [\"::1/129\"]", "http.trusted_proxies[0]");
        http_err("trusted_proxies = [7]", "http.trusted_proxies[0]");
        http_err("trusted_proxies = \"127.0.0.1\"", "http.trusted_proxies");
        let err = http_err(
            "trusted_proxies = [\"10.0.0.1/8\"]",
            "http.trusted_proxies[0]",
        );
        assert!(
            err.to_string().ends_with("did you mean \"10.0.0.0/8\"?"),
            "{err}"
        );
        rule(
            "health_path = \"healthz\"",
            "http.health_path",
            "must start with '/' and hold only visible ASCII characters",
        );
        rule(
            "health_path = \"/a b\"",
            "http.health_path",
            "must start with '/' and hold only visible ASCII characters",
        );
        rule(
            "drain_health_sec = 604801",
            "http.drain_health_sec",
            "must be at most 604800",
        );
    }

    #[test]
    fn pipeline_threads_at_least_one() {
        let err = parse("[http.pipelines.work]\nthreads = 0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "config error in weasel.toml: key `http.pipelines.work.threads`: must be at least 1"
        );
    }
}
