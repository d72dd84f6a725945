//! Streamed request bodies (`Server::post_streaming`) over real sockets,
//! both models: large `Content-Length` and chunked uploads echoed intact
//! piece by piece with no body budget used; a client that stops reading
//! its echo stalls its own upload (the server stops reading) and then
//! resumes; `413` decided up front; a disconnect mid-stream frees
//! everything.

#[macro_use]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use stoat::app::{BodyChunk, BodyHandler, BodyWriter, Request, Response, Server};
use stoat::config::{Config, Model};

both_models!(
    large_uploads_stream_and_echo,
    unread_echo_stalls_upload_then_resumes,
    too_large_decided_up_front,
    disconnect_mid_stream_frees_everything,
    body_less_request_reaches_the_handler,
);

/// Counts handlers opened and dropped.
#[derive(Default)]
struct Counts {
    opened: AtomicUsize,
    dropped: AtomicUsize,
}

/// Echoes each piece as it comes; counts its drop.
struct Echo {
    counts: Arc<Counts>,
}

impl BodyHandler for Echo {
    fn on_chunk(&mut self, chunk: BodyChunk<'_>, res: &mut BodyWriter<'_, '_>) {
        match chunk {
            BodyChunk::Data(bytes) => {
                res.write(bytes);
            }
            BodyChunk::End => {
                res.finish();
            }
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.counts.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// `POST /echo` streams the body back (`Content-Length` when known);
/// `POST /count` answers the body's length once it has ended; `GET /hello`.
fn routes(counts: Arc<Counts>) -> impl FnOnce(Server) -> Server {
    move |server| {
        let echo_counts = counts.clone();
        server
            .get("/hello", |_: &Request<'_>| Response::text("hello"))
            .post_streaming(
                "/echo",
                move |req: &Request<'_>, res: &mut BodyWriter<'_, '_>| {
                    echo_counts.opened.fetch_add(1, Ordering::SeqCst);
                    res.start(Response::bytes(Vec::new()), req.content_length());
                    Echo {
                        counts: echo_counts.clone(),
                    }
                },
            )
            .post_streaming(
                "/count",
                move |_: &Request<'_>, _: &mut BodyWriter<'_, '_>| {
                    counts.opened.fetch_add(1, Ordering::SeqCst);
                    let mut n = 0usize;
                    move |chunk: BodyChunk<'_>, res: &mut BodyWriter<'_, '_>| match chunk {
                        BodyChunk::Data(bytes) => n += bytes.len(),
                        BodyChunk::End => {
                            res.respond(Response::text(format!("{n}")));
                        }
                    }
                },
            )
    }
}

/// One network thread, a pool of four 16 KiB buffers, bodies up to 256 MiB.
fn small_pool(model: Model) -> Config {
    let mut c = config(model);
    c.http.network_threads = 1;
    c.http.buffer_size = 16 * 1024;
    c.http.buffer_memory_limit = 4 * 16 * 1024;
    c.http.max_body_size = 256 << 20;
    c.http.body_memory_limit = (256 << 20) + (64 << 10);
    c
}

/// A body pattern whose period is no power of two: a lost, repeated or
/// reordered piece shows.
const PERIOD: usize = (1 << 20) + 7;

/// The pattern twice over, so that any piece of at most `PERIOD` bytes is
/// one slice.
fn pattern() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| (0..2 * PERIOD).map(|i| big_byte(i % PERIOD)).collect())
}

/// Bytes `from..from + len` of the endless pattern (`len` at most `PERIOD`).
fn piece(from: usize, len: usize) -> &'static [u8] {
    let at = from % PERIOD;
    &pattern()[at..at + len]
}

/// The same, owned, of any length.
fn body_at(from: usize, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut at = from;
    while v.len() < len {
        let n = (len - v.len()).min(PERIOD);
        v.extend_from_slice(piece(at, n));
        at += n;
    }
    v
}

/// Checks `got` is the pattern from 0, naming the first difference.
#[track_caller]
fn check_pattern(got: &[u8], len: usize) {
    assert_eq!(got.len(), len, "echo length");
    let mut at = 0;
    while at < len {
        let n = (len - at).min(PERIOD);
        if &got[at..at + n] != piece(at, n) {
            let i = (at..at + n)
                .find(|&i| got[i] != piece(i, 1)[0])
                .unwrap_or(at);
            panic!("echo differs at byte {i} of {len}");
        }
        at += n;
    }
}

/// Writes `len` pattern bytes in pieces of varied size from another
/// thread, through a clone of `stream`.
fn write_body_async(stream: &TcpStream, len: usize) -> std::thread::JoinHandle<()> {
    let mut w = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut at = 0;
        let mut step = 1;
        while at < len {
            step = (step * 7 + 3) % 40_000 + 1;
            let n = step.min(len - at);
            w.write_all(piece(at, n)).expect("upload write");
            at += n;
        }
    })
}

/// An 8 MiB `Content-Length` upload and a 4 MiB chunked one (chunks of
/// varied size) on one keep-alive connection, each echoed while it is
/// sent, through a pool of four buffers: intact, no body budget used, and
/// the connection serves on.
fn large_uploads_stream_and_echo(model: Model) {
    let counts = Arc::new(Counts::default());
    let server = start_with(small_pool(model), routes(counts.clone()));
    let mut c = Client::connect(server.local_addr());
    const CL: usize = 8 << 20;
    c.send(format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {CL}\r\n\r\n").as_bytes());
    let writer = write_body_async(&c.stream, CL);
    let r = c.response();
    writer.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(&*CL.to_string()));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    check_pattern(&r.body, CL);

    const CHUNKED: usize = 4 << 20;
    let body = body_at(0, CHUNKED);
    let mut framed =
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let (mut at, mut step) = (0, 5);
    while at < CHUNKED {
        step = (step * 13 + 11) % 70_000 + 1;
        let n = step.min(CHUNKED - at);
        framed.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        framed.extend_from_slice(&body[at..at + n]);
        framed.extend_from_slice(b"\r\n");
        at += n;
    }
    framed.extend_from_slice(b"0\r\n\r\n");
    framed.extend_from_slice(&get("/hello"));
    let mut w = c.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&framed).expect("chunked upload"));
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    check_pattern(&r.body, CHUNKED);
    let r = c.response();
    writer.join().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));

    let stats = server.stats();
    assert_eq!(stats.body_bytes_peak, 0, "no body budget used: {stats:?}");
    assert!(stats.buffers <= 4, "{stats:?}");
    assert_eq!(counts.opened.load(Ordering::SeqCst), 2);
    wait_until("both handlers dropped", || {
        counts.dropped.load(Ordering::SeqCst) == 2
    });
    drop(c);
    wait_connections(&server, 0);
    stop(server);
}

/// Writes pattern bytes from `*at` without blocking until the socket
/// accepts nothing for `quiet` (the server has stopped reading) or `len`
/// bytes are written.
fn write_until_stalled(stream: &mut TcpStream, at: &mut usize, len: usize, quiet: Duration) {
    stream.set_nonblocking(true).unwrap();
    let size = 64 * 1024;
    while *at < len {
        let n = size.min(len - *at);
        match stream.write(piece(*at, n)) {
            Ok(k) => *at += k,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let fd = stream.as_fd();
                let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
                let timeout = Timespec::try_from(quiet).unwrap();
                if poll(&mut fds, Some(&timeout)).expect("poll") == 0 {
                    break;
                }
            }
            Err(e) => panic!("upload write: {e}"),
        }
    }
    stream.set_nonblocking(false).unwrap();
}

/// A client that uploads 192 MiB without reading its echo: the server
/// stops reading once its output for the connection is above its bound,
/// so the client's writes stall after what the kernel buffers hold, far
/// short of the body (a server that read on would have to hold the whole
/// echo). Once the client reads, the upload resumes and the echo is
/// intact.
fn unread_echo_stalls_upload_then_resumes(model: Model) {
    let counts = Arc::new(Counts::default());
    let server = start_with(small_pool(model), routes(counts.clone()));
    let mut c = Client::connect(server.local_addr());
    const LEN: usize = 192 << 20;
    c.send(format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {LEN}\r\n\r\n").as_bytes());
    let mut at = 0;
    write_until_stalled(&mut c.stream, &mut at, LEN, Duration::from_millis(500));
    assert!(
        at < 96 << 20,
        "the upload did not stall: {at} of {LEN} bytes taken without a read"
    );
    let stats = server.stats();
    assert_eq!(stats.body_bytes, 0, "{stats:?}");
    assert!(stats.buffers <= 4, "{stats:?}");
    assert_eq!(stats.connections, 1);

    // Read the echo now; the rest of the upload goes through.
    let reader = {
        let mut r = Client::from_stream(c.stream.try_clone().unwrap());
        std::thread::spawn(move || r.response())
    };
    let mut w = c.stream.try_clone().unwrap();
    while at < LEN {
        let n = (256 * 1024).min(LEN - at);
        w.write_all(piece(at, n)).expect("upload write");
        at += n;
    }
    let r = reader.join().unwrap();
    assert_eq!(r.status, 200);
    check_pattern(&r.body, LEN);
    assert_eq!(server.stats().body_bytes_peak, 0);
    assert!(!r.connection_has("close"), "{:?}", r.headers);
    c.send(&get("/hello"));
    let mut c = Client::from_stream(c.stream);
    assert_eq!(c.response().text(), "hello");
    stop(server);
}

/// `413` for a `Content-Length` over `max_body_size` comes before the
/// handler runs; a chunked body that grows past it gets `413` too while
/// the handler has not answered. Both close.
fn too_large_decided_up_front(model: Model) {
    let counts = Arc::new(Counts::default());
    let mut cfg = config(model);
    cfg.http.max_body_size = 1 << 20;
    let server = start_with(cfg, routes(counts.clone()));
    let mut c = Client::connect(server.local_addr());
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 413);
    assert!(r.connection_has("close"));
    c.expect_end();
    assert_eq!(counts.opened.load(Ordering::SeqCst), 0, "handler ran");

    let mut c = Client::connect(server.local_addr());
    c.send(b"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    let piece = body_at(0, 64 * 1024);
    for _ in 0..17 {
        let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
        chunk.extend_from_slice(&piece);
        chunk.extend_from_slice(b"\r\n");
        c.send_lossy(&chunk);
    }
    let r = c.response();
    assert_eq!(r.status, 413);
    assert!(r.connection_has("close"));
    assert_eq!(counts.opened.load(Ordering::SeqCst), 1);
    wait_connections(&server, 0);
    stop(server);
}

/// Eight uploads cut off mid-body (four by FIN, four by RST): every
/// connection closes, every handler is dropped, no budget is held, and
/// the pool's buffers all come back (unused, they are then freed: the
/// pool's count falls to zero).
fn disconnect_mid_stream_frees_everything(model: Model) {
    let counts = Arc::new(Counts::default());
    let server = start_with(small_pool(model), routes(counts.clone()));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let mut c = Client::connect(server.local_addr());
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n");
        c.send(&body_at(0, 100_000));
        clients.push(c);
    }
    wait_until("eight handlers opened", || {
        counts.opened.load(Ordering::SeqCst) == 8
    });
    for (i, c) in clients.into_iter().enumerate() {
        if i % 2 == 0 {
            c.reset();
        } else {
            c.shutdown_write();
            let mut s = c.stream;
            // Whatever was echoed, then the end.
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    }
    wait_connections(&server, 0);
    wait_until("every handler dropped", || {
        counts.dropped.load(Ordering::SeqCst) == 8
    });
    let stats = server.stats();
    assert_eq!(stats.body_bytes, 0, "{stats:?}");
    assert_eq!(stats.body_bytes_peak, 0, "{stats:?}");
    wait_until("the pool's buffers back and freed", || {
        server.stats().buffers == 0
    });
    stop(server);
}

/// A request without a body to a streamed route: the handler runs and
/// gets the end at once; pipelined requests behind it are answered in
/// order.
fn body_less_request_reaches_the_handler(model: Model) {
    let counts = Arc::new(Counts::default());
    let server = start_with(config(model), routes(counts.clone()));
    let mut c = Client::connect(server.local_addr());
    let mut burst = b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".to_vec();
    burst.extend_from_slice(b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    burst.extend_from_slice(&get("/hello"));
    c.send(&burst);
    assert_eq!(c.response().text(), "0");
    assert_eq!(c.response().text(), "3");
    assert_eq!(c.response().text(), "hello");
    assert_eq!(counts.opened.load(Ordering::SeqCst), 2);
    stop(server);
}
