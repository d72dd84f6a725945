//! Shared helpers of the integration tests: a test server built on the app
//! layer, a raw-socket client that reads one response at a time (framed by
//! `Content-Length`, chunked coding or the connection's end), and bounded
//! waits. Nothing here can hang: every read has a timeout and every wait a
//! deadline.

// Each test binary uses its own share of these helpers.
#![allow(dead_code)]

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use stoat::app::{Request, Response, Server, ServerHandle};
use stoat::config::{Config, Model};

/// How long any single read may wait, and the deadline of every wait.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Size of the body of `GET /big`.
pub const BIG_LEN: usize = 10 * 1024 * 1024;

/// Generates `mod NAME { #[test] fn per_core(); #[test] fn shared(); }`,
/// each calling `NAME(Model)` from the enclosing module, so every case runs
/// against both threading models (`cargo test NAME` runs both). Brought in
/// with `#[macro_use] mod common;`.
#[allow(unused_macros)]
macro_rules! both_models {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn per_core() {
                super::$name(::stoat::config::Model::PerCore);
            }

            #[test]
            fn shared() {
                super::$name(::stoat::config::Model::Shared);
            }
        }
    )*};
}

/// The configuration every test server starts from: `model`, 127.0.0.1, a
/// free port, two network threads.
pub fn config(model: Model) -> Config {
    let mut c = Config::default();
    c.http.model = model;
    c.http.port = 0;
    c.http.network_threads = 2;
    c.http.accept_threads = 1;
    c
}

/// The body of `GET /big`: a pattern with no short period, so a lost,
/// repeated or reordered piece shows.
pub fn big_body() -> Arc<[u8]> {
    static BIG: OnceLock<Arc<[u8]>> = OnceLock::new();
    BIG.get_or_init(|| (0..BIG_LEN).map(big_byte).collect::<Vec<u8>>().into())
        .clone()
}

/// Byte `i` of the big body.
pub fn big_byte(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 13) ^ (i >> 21)) as u8
}

/// The routes every test server has:
/// - `GET /hello`: `hello`
/// - `GET /p/{n}`: the request's path
/// - `POST /echo`: the request body
/// - `GET /big`: [`big_body`] (10 MiB)
pub fn app(server: Server) -> Server {
    server
        .get("/hello", |_: &Request<'_>| Response::text("hello"))
        .get("/p/{n}", |req: &Request<'_>| {
            Response::text(req.path().to_owned())
        })
        .post("/echo", |req: &Request<'_>| {
            Response::bytes(req.body().to_vec())
        })
        .get("/big", |_: &Request<'_>| Response::bytes(big_body()))
}

/// Starts a server of `model` with the [`app`] routes.
pub fn start(model: Model) -> ServerHandle {
    start_with(config(model), app)
}

/// Starts a server with `config` and the routes `routes` adds.
pub fn start_with(config: Config, routes: impl FnOnce(Server) -> Server) -> ServerHandle {
    routes(Server::new(config)).start().expect("server starts")
}

/// A server of `model` with the [`app`] routes and `/block`, whose handler
/// says it was entered, then waits until released (bounded: a broken test
/// must not hang the server thread) and answers `finished` (`timed out`
/// when never released). Returns the server and the channels: entered,
/// release.
pub fn blocking_server(model: Model) -> (ServerHandle, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let entered_tx = std::sync::Mutex::new(entered_tx);
    let release_rx = std::sync::Mutex::new(release_rx);
    let server = start_with(config(model), move |s| {
        app(s).get("/block", move |_: &Request<'_>| {
            let _ = entered_tx.lock().unwrap().send(());
            let released = release_rx.lock().unwrap().recv_timeout(TIMEOUT * 2);
            Response::text(if released.is_ok() {
                "finished"
            } else {
                "timed out"
            })
        })
    });
    (server, entered_rx, release_tx)
}

/// Stops a server: `shutdown`, then `join`, which must return within
/// [`TIMEOUT`] (then the test fails rather than hangs).
pub fn stop(handle: ServerHandle) {
    handle.shutdown();
    join(handle);
}

/// Waits for the server's threads, at most [`TIMEOUT`] plus the default
/// drain time.
pub fn join(handle: ServerHandle) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handle.join());
    });
    match rx.recv_timeout(TIMEOUT + Duration::from_secs(10)) {
        Ok(result) => result.expect("server threads exit cleanly"),
        Err(_) => panic!("ServerHandle::join did not return"),
    }
}

/// Polls `cond` every few milliseconds until it holds; fails the test with
/// `what` if it does not within [`TIMEOUT`].
#[track_caller]
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until the server holds exactly `n` connections.
#[track_caller]
pub fn wait_connections(handle: &ServerHandle, n: usize) {
    wait_until(&format!("{n} open connections"), || {
        handle.stats().connections == n
    });
}

/// One parsed response.
#[derive(Clone)]
pub struct Resp {
    pub status: u16,
    pub reason: String,
    /// (name, value) in order received; values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
}

impl fmt::Debug for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resp")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("headers", &self.headers)
            .field("body", &format_args!("{}", show(&self.body)))
            .field("trailers", &self.trailers)
            .finish()
    }
}

impl Resp {
    /// The first value of `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How many fields named `name` there are.
    pub fn count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// Whether `Connection` lists `option` (case-insensitive).
    pub fn connection_has(&self, option: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(','))
            .any(|o| o.trim().eq_ignore_ascii_case(option))
    }

    /// The body as text (lossy), for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How the connection ended, as a client sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Read returned 0.
    Eof,
    /// The peer reset the connection (a close with unread input does that).
    Reset,
}

/// A raw HTTP/1.1 client over one TCP connection. Bytes read past the end
/// of a response stay buffered for the next one (pipelining).
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to `addr`; reads and writes time out after [`TIMEOUT`].
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// A client over an existing stream (a clone of another client's, to
    /// read while another thread writes); reads time out after [`TIMEOUT`].
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes all of `bytes`. If the server closed instead, fails the test
    /// with whatever it had answered.
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes) {
            let mut got = std::mem::take(&mut self.buf);
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = self.stream.read(&mut chunk) {
                got.extend_from_slice(&chunk[..n]);
            }
            panic!(
                "writing the request failed ({e}); the server had sent {}",
                show(&got)
            );
        }
    }

    /// Writes `bytes`, ignoring a peer that already closed (it may answer
    /// and close before reading everything).
    pub fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Reads one response to a request that was not HEAD.
    #[track_caller]
    pub fn response(&mut self) -> Resp {
        match self.try_response(false) {
            Ok(r) => r,
            Err(e) => panic!("reading a response: {e}"),
        }
    }

    /// Reads one response to a HEAD request (no body, whatever the framing
    /// fields say).
    #[track_caller]
    pub fn head_response(&mut self) -> Resp {
        match self.try_response(true) {
            Ok(r) => r,
            Err(e) => panic!("reading a HEAD response: {e}"),
        }
    }

    /// Reads one response; `head`: it answers a HEAD request.
    pub fn try_response(&mut self, head: bool) -> Result<Resp, String> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.fill()? == 0 {
                return Err(format!(
                    "connection ended inside a response head; got {}",
                    show(&self.buf)
                ));
            }
        };
        let head_bytes: Vec<u8> = self.buf.drain(..end).collect();
        let text = std::str::from_utf8(&head_bytes)
            .map_err(|_| format!("response head is not UTF-8: {}", show(&head_bytes)))?;
        let mut lines = text[..text.len() - 4].split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let rest = status_line
            .strip_prefix("HTTP/1.1 ")
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let status: u16 = rest
            .get(..3)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status code in {status_line:?}"))?;
        let reason = rest.get(4..).unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        for line in lines {
            let (n, v) = line
                .split_once(':')
                .ok_or_else(|| format!("bad header line {line:?}"))?;
            if n.is_empty() || n.contains(|c: char| c.is_ascii_whitespace()) {
                return Err(format!("bad header name in {line:?}"));
            }
            headers.push((n.to_owned(), v.trim().to_owned()));
        }
        let mut resp = Resp {
            status,
            reason,
            headers,
            body: Vec::new(),
            trailers: Vec::new(),
        };
        if head || status < 200 || status == 204 || status == 304 {
            return Ok(resp);
        }
        let te = resp.header("transfer-encoding").map(str::to_owned);
        let cl = resp.header("content-length").map(str::to_owned);
        match (te, cl) {
            (Some(_), Some(_)) => return Err("response has both TE and CL".into()),
            (Some(te), None) => {
                if !te.eq_ignore_ascii_case("chunked") {
                    return Err(format!("unexpected transfer coding {te:?}"));
                }
                self.read_chunked(&mut resp)?;
            }
            (None, Some(cl)) => {
                if resp.count("content-length") != 1 {
                    return Err("several Content-Length fields".into());
                }
                let n: usize = cl
                    .parse()
                    .map_err(|_| format!("bad Content-Length {cl:?}"))?;
                resp.body = self.take(n)?;
            }
            (None, None) => {
                // Delimited by the connection's end.
                loop {
                    match self.fill() {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => return Err(e),
                    }
                }
                resp.body = std::mem::take(&mut self.buf);
            }
        }
        Ok(resp)
    }

    fn read_chunked(&mut self, resp: &mut Resp) -> Result<(), String> {
        loop {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| format!("bad chunk size line {line:?}"))?;
            if size == 0 {
                loop {
                    let t = self.line()?;
                    if t.is_empty() {
                        return Ok(());
                    }
                    let (n, v) = t.split_once(':').ok_or("bad trailer line")?;
                    resp.trailers.push((n.to_owned(), v.trim().to_owned()));
                }
            }
            let data = self.take(size + 2)?;
            if !data.ends_with(b"\r\n") {
                return Err("chunk data not followed by CRLF".into());
            }
            resp.body.extend_from_slice(&data[..size]);
        }
    }

    /// One CRLF-terminated line, without the CRLF.
    fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return String::from_utf8(line[..i].to_vec()).map_err(|_| "line not UTF-8".into());
            }
            if self.fill()? == 0 {
                return Err("connection ended inside a chunked body".into());
            }
        }
    }

    /// Exactly `n` bytes.
    fn take(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(format!(
                    "connection ended after {} of {n} body bytes",
                    self.buf.len()
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads once more into the buffer; Ok(0) at the end of the stream.
    fn fill(&mut self) -> Result<usize, String> {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) if is_timeout(&e) => Err(format!(
                "no data within {TIMEOUT:?}; buffered {}",
                show(&self.buf)
            )),
            Err(e) => Err(format!("read error: {e}")),
        }
    }

    /// Expects the server to have closed the connection: nothing more
    /// arrives, and the stream ends (EOF or reset) within [`TIMEOUT`].
    pub fn try_end(&mut self) -> Result<End, String> {
        if !self.buf.is_empty() {
            return Err(format!(
                "unexpected bytes after the response: {}",
                show(&self.buf)
            ));
        }
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => Ok(End::Eof),
            Ok(n) => Err(format!(
                "unexpected bytes instead of the end: {}",
                show(&chunk[..n])
            )),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(End::Reset),
            Err(e) if is_timeout(&e) => {
                Err(format!("the connection is still open after {TIMEOUT:?}"))
            }
            Err(e) => Err(format!("read error: {e}")),
        }
    }

    /// [`Client::try_end`], failing the test on error.
    #[track_caller]
    pub fn expect_end(&mut self) -> End {
        match self.try_end() {
            Ok(end) => end,
            Err(e) => panic!("expected the server to close: {e}"),
        }
    }

    /// Expects no response to have arrived yet (without waiting).
    #[track_caller]
    pub fn expect_nothing_yet(&mut self) {
        assert!(self.buf.is_empty(), "bytes buffered: {}", show(&self.buf));
        self.stream.set_nonblocking(true).unwrap();
        let mut chunk = [0u8; 256];
        let r = self.stream.read(&mut chunk);
        self.stream.set_nonblocking(false).unwrap();
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Ok(0) => panic!("the server closed early"),
            Ok(n) => panic!("a response came early: {}", show(&chunk[..n])),
            Err(e) => panic!("read error: {e}"),
        }
    }

    /// Closes our side so that the kernel sends RST instead of FIN
    /// (`SO_LINGER` with a zero timeout).
    pub fn reset(self) {
        rustix::net::sockopt::set_socket_linger(self.stream.as_fd(), Some(Duration::ZERO))
            .expect("SO_LINGER");
        drop(self.stream);
    }

    /// Half-closes our side (FIN): the server sees the end of the request
    /// stream.
    pub fn shutdown_write(&self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }
}

/// Bytes for a failure message: at most 300 of them, lossy UTF-8.
pub fn show(bytes: &[u8]) -> String {
    const MAX: usize = 300;
    if bytes.len() <= MAX {
        format!("{:?}", String::from_utf8_lossy(bytes))
    } else {
        format!(
            "{:?}... ({} bytes in all)",
            String::from_utf8_lossy(&bytes[..MAX]),
            bytes.len()
        )
    }
}

/// Whether a read error is the read timeout expiring.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The first index of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A `GET path` request with `Host`.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// A `POST /echo` request with a `Content-Length` body.
pub fn post_echo(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}
