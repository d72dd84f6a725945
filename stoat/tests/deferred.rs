//! Requests answered off the network thread: pipelines, suspended requests
//! (`Responder`) and server-sent event streams, over real sockets, in both
//! threading models. The lost-wakeup class gets a stress test: 100,000
//! suspended requests resumed from other threads after random delays.

#[macro_use]
mod common;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use stoat::app::{
    per_job, EventStream, Job, Method, Request, Responder, Response, SendError, SseEvent,
};
use stoat::config::{Config, Model, PipelineConfig};

/// A thread answering responders at their due time (what a timer wheel or
/// an executor would do). Sends `(due, body, responder)`.
fn resumer() -> mpsc::Sender<(Instant, String, Responder)> {
    let (tx, rx) = mpsc::channel::<(Instant, String, Responder)>();
    thread::spawn(move || {
        let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
        let mut held = std::collections::HashMap::new();
        let mut seq = 0u64;
        loop {
            let next = heap
                .peek()
                .map(|Reverse((due, _))| due.saturating_duration_since(Instant::now()));
            let got = match next {
                Some(wait) => match rx.recv_timeout(wait) {
                    Ok(x) => Some(x),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                },
                None => match rx.recv() {
                    Ok(x) => Some(x),
                    Err(_) => return,
                },
            };
            if let Some((due, body, r)) = got {
                seq += 1;
                heap.push(Reverse((due, seq)));
                held.insert(seq, (body, r));
            }
            let now = Instant::now();
            while let Some(&Reverse((due, s))) = heap.peek() {
                if due > now {
                    break;
                }
                heap.pop();
                if let Some((body, r)) = held.remove(&s) {
                    let _ = r.send(body);
                }
            }
        }
    });
    tx
}

/// A tiny xorshift generator: deterministic delays without a dependency.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// 100,000 requests over 64 keep-alive connections, each suspended and
/// resumed from another thread after 0 to 5 ms: every one is answered with
/// its own body, none later than 2 s after it was sent (the request
/// deadline is 10 s: a lost wakeup would show as a 503 or a read timeout).
fn lost_wakeup_stress(model: Model) {
    const CONNS: usize = 64;
    const TOTAL: usize = 100_000;
    let resume = Mutex::new(resumer());
    let server = start_with(config(model), move |s| {
        s.suspend(Method::Get, "/later", move |req: &Request, r: Responder| {
            let id = req.query_param("id").unwrap_or("").to_owned();
            let us: u64 = req
                .query_param("us")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let due = Instant::now() + Duration::from_micros(us);
            let tx = resume.lock().unwrap().clone();
            tx.send((due, id, r)).unwrap();
        })
    });
    let addr = server.local_addr();
    let worst = Arc::new(Mutex::new(Duration::ZERO));
    let threads: Vec<_> = (0..CONNS)
        .map(|c| {
            let worst = worst.clone();
            thread::spawn(move || {
                let mut next = rng(c as u64 + 1);
                let mut client = Client::connect(addr);
                let n = TOTAL / CONNS + usize::from(c < TOTAL % CONNS);
                for i in 0..n {
                    let id = format!("{c}-{i}");
                    let us = next() % 5_001;
                    let sent = Instant::now();
                    client.send(
                        format!("GET /later?id={id}&us={us} HTTP/1.1\r\nHost: t\r\n\r\n")
                            .as_bytes(),
                    );
                    let r = client.response();
                    let took = sent.elapsed();
                    assert_eq!(r.status, 200, "request {id}: {r:?}");
                    assert_eq!(r.text(), id);
                    let mut w = worst.lock().unwrap();
                    *w = (*w).max(took);
                }
                n
            })
        })
        .collect();
    let answered: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(answered, TOTAL);
    let worst = *worst.lock().unwrap();
    assert!(
        worst < Duration::from_secs(2),
        "slowest answer took {worst:?}"
    );
    let stats = server.stats();
    assert_eq!(stats.suspended, TOTAL as u64);
    assert_eq!(stats.resumed, TOTAL as u64);
    assert_eq!(stats.expired + stats.abandoned, 0);
    stop(server);
}

/// A config with a pipeline `work` of `ring` slots and `threads` threads.
fn with_pipeline(model: Model, ring: usize, threads: usize) -> Config {
    let mut c = config(model);
    c.http.pipelines.insert(
        "work".into(),
        PipelineConfig {
            ring_buffer_size: ring,
            threads,
            ..PipelineConfig::default()
        },
    );
    c
}

/// Two requests in one packet: the first goes to a pipeline (and takes a
/// while), the second is inline. The answers come back in request order.
fn pipelined_pair_keeps_order(model: Model) {
    let server = start_with(with_pipeline(model, 16, 1), |s| {
        let mut s = s.get("/fast", |_| "fast");
        s.pipeline(
            "work",
            per_job(|req, ()| {
                thread::sleep(Duration::from_millis(50));
                Response::bytes(req.body().to_vec())
            }),
        )
        .unwrap()
        .post("/slow", ());
        s
    });
    let mut c = Client::connect(server.local_addr());
    for _ in 0..3 {
        c.send(
            b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nslowGET /fast HTTP/1.1\r\nHost: t\r\n\r\n",
        );
        let first = c.response();
        let second = c.response();
        assert_eq!((first.status, first.text().as_str()), (200, "slow"));
        assert_eq!((second.status, second.text().as_str()), (200, "fast"));
    }
    stop(server);
}

/// Opens a gate on drop, so a failing test cannot leave a pipeline thread
/// blocked (and the server's join hanging).
struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0 .0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.0 .1.notify_all();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

/// More requests than the ring holds while its only thread is blocked:
/// the overflow is answered 503 with Retry-After at once, the rest 200
/// once the thread runs again, and the server serves normally afterwards.
fn burst_over_ring_gets_503(model: Model) {
    const RING: usize = 4;
    const BURST: usize = 24;
    let gate = Gate(Arc::new((Mutex::new(false), std::sync::Condvar::new())));
    let g = gate.0.clone();
    let server = start_with(with_pipeline(model, RING, 1), move |mut s| {
        s.pipeline(
            "work",
            per_job(move |_, ()| {
                let (open, cv) = &*g;
                let mut open = open.lock().unwrap();
                while !*open {
                    open = cv.wait(open).unwrap();
                }
                "done"
            }),
        )
        .unwrap()
        .get("/job", ());
        s
    });
    let addr = server.local_addr();
    let mut clients: Vec<Client> = (0..BURST).map(|_| Client::connect(addr)).collect();
    for c in &mut clients {
        c.send(b"GET /job HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    // Every request is either refused (answered, counted in `requests`) or
    // in the pipeline (`suspended`); refusals are written before they are
    // counted, so once the sum is BURST their bytes are in our sockets.
    wait_until("every request refused or queued", || {
        let s = server.stats();
        s.requests + s.suspended == BURST as u64
    });
    let queued = server.stats().suspended as usize;
    // The thread holds one batch (at most the ring's size) and the ring
    // holds up to RING more.
    assert!((1..=2 * RING).contains(&queued), "{queued} queued");
    let mut pending = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        let mut byte = [0u8; 1];
        c.stream.set_nonblocking(true).unwrap();
        let ready = c.stream.peek(&mut byte).is_ok();
        c.stream.set_nonblocking(false).unwrap();
        if ready {
            let r = c.response();
            assert_eq!(r.status, 503, "{r:?}");
            assert_eq!(r.header("retry-after"), Some("1"));
        } else {
            pending.push(i);
        }
    }
    assert_eq!(pending.len(), queued);
    gate.open();
    for i in pending {
        let r = clients[i].response();
        assert_eq!((r.status, r.text().as_str()), (200, "done"));
    }
    // The server is fine afterwards: every connection serves again.
    for c in &mut clients {
        c.send(b"GET /job HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.response();
        assert_eq!((r.status, r.text().as_str()), (200, "done"));
    }
    stop(server);
}

/// Routes of the batch test's pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    Gate,
    Job,
    Left,
}

/// A pipeline's batch handler sees every job that queued while its thread
/// was busy as one batch (group work: one fsync for many commits), each
/// with the route it came by, and answers them itself; a job it leaves
/// unanswered gets 500.
fn batch_handler_sees_whole_batch(model: Model) {
    let gate = Gate(Arc::new((Mutex::new(false), std::sync::Condvar::new())));
    let g = gate.0.clone();
    let seen_gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = seen_gate.clone();
    let server = start_with(with_pipeline(model, 64, 1), move |mut s| {
        s.pipeline("work", move |jobs: &mut [Job<Work>]| {
            let n = jobs.len();
            for job in jobs.iter_mut() {
                match job.route() {
                    Work::Gate => {
                        seen.store(true, std::sync::atomic::Ordering::SeqCst);
                        let (open, cv) = &*g;
                        let mut open = open.lock().unwrap();
                        while !*open {
                            open = cv.wait(open).unwrap();
                        }
                        job.respond("gate").unwrap();
                    }
                    Work::Left => {} // Left unanswered: 500.
                    Work::Job => job.respond(format!("batch of {n}")).unwrap(),
                }
            }
        })
        .unwrap()
        .get("/gate", Work::Gate)
        .get("/job", Work::Job)
        .get("/left", Work::Left);
        s
    });
    let addr = server.local_addr();
    let mut gatec = Client::connect(addr);
    gatec.send(b"GET /gate HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_until("the thread to hold the gate", || {
        seen_gate.load(std::sync::atomic::Ordering::SeqCst)
    });
    let mut clients: Vec<Client> = (0..5).map(|_| Client::connect(addr)).collect();
    for c in &mut clients {
        c.send(b"GET /job HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    let mut left = Client::connect(addr);
    left.send(b"GET /left HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_until("six jobs queued", || server.stats().suspended == 7);
    gate.open();
    assert_eq!(gatec.response().text(), "gate");
    for c in &mut clients {
        assert_eq!(c.response().text(), "batch of 6");
    }
    let r = left.response();
    assert_eq!(r.status, 500, "{r:?}");
    stop(server);
}

/// A dropped responder answers 500; an unanswered one 503 at the request
/// deadline, and its late answer is discarded; the counters say so.
fn dropped_and_expired_responders(model: Model) {
    let mut cfg = config(model);
    cfg.http.request_timeout_sec = 1;
    let held: Arc<Mutex<Vec<Responder>>> = Arc::default();
    let h = held.clone();
    let server = start_with(cfg, move |s| {
        s.suspend(Method::Get, "/drop", |_: &Request, r: Responder| drop(r))
            .suspend(Method::Get, "/hold", move |_: &Request, r: Responder| {
                h.lock().unwrap().push(r)
            })
    });
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /drop HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().status, 500);
    let sent = Instant::now();
    c.send(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.header("retry-after").is_some());
    assert!(sent.elapsed() >= Duration::from_secs(1));
    // The late answer is discarded, and the responder says why.
    let late = held.lock().unwrap().pop().unwrap();
    assert!(late.is_closed());
    assert!(matches!(late.send("too late"), Err(SendError::Closed(_))));
    // The connection goes on.
    c.send(b"GET /drop HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().status, 500);
    let stats = server.stats();
    assert_eq!(
        (stats.suspended, stats.abandoned, stats.expired),
        (3, 2, 1),
        "{stats:?}"
    );
    stop(server);
}

/// A client that disconnects while suspended makes `is_closed()` true, and
/// a resume racing the disconnect (at every offset around it) neither
/// leaks the connection nor disturbs the server.
fn resume_races_disconnect(model: Model) {
    let held: Arc<Mutex<Vec<Responder>>> = Arc::default();
    let h = held.clone();
    let resume = Mutex::new(resumer());
    let server = start_with(config(model), move |s| {
        s.suspend(Method::Get, "/hold", move |_: &Request, r: Responder| {
            h.lock().unwrap().push(r)
        })
        .suspend(Method::Get, "/race", move |req: &Request, r: Responder| {
            let us: u64 = req
                .query_param("us")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let tx = resume.lock().unwrap().clone();
            tx.send((Instant::now() + Duration::from_micros(us), "late".into(), r))
                .unwrap();
        })
    });
    let addr = server.local_addr();
    // is_closed after a disconnect.
    let mut c = Client::connect(addr);
    c.send(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_until("the request to be held", || held.lock().unwrap().len() == 1);
    let r = held.lock().unwrap().pop().unwrap();
    assert!(!r.is_closed());
    drop(c);
    wait_until("is_closed after the client left", || r.is_closed());
    assert!(matches!(
        r.send("nobody listens"),
        Err(SendError::Closed(_))
    ));
    // Resumes racing closes and resets.
    for i in 0..300u64 {
        let mut c = Client::connect(addr);
        c.send(format!("GET /race?us={} HTTP/1.1\r\nHost: t\r\n\r\n", (i * 7) % 400).as_bytes());
        thread::sleep(Duration::from_micros((i * 13) % 400));
        if i % 2 == 0 {
            c.reset();
        } else {
            drop(c);
        }
    }
    wait_connections(&server, 0);
    let mut c = Client::connect(addr);
    c.send(b"GET /race?us=0 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().text(), "late");
    drop(c);
    wait_connections(&server, 0);
    // Every suspended request is counted once as it ended: the one held
    // when its client left and the races lost to a disconnect as
    // abandoned, the rest as resumed (the soak found the client-gone ones
    // counted nowhere).
    wait_until("every suspended request to be counted as it ended", || {
        let s = server.stats();
        s.resumed + s.expired + s.abandoned == s.suspended
    });
    let s = server.stats();
    assert_eq!(s.suspended, 302, "{s:?}");
    assert!(s.abandoned >= 1 && s.resumed >= 1, "{s:?}");
    stop(server);
}

/// Reads a chunked SSE response incrementally: the head, then events.
struct SseClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Decoded body bytes not yet split into events.
    body: Vec<u8>,
    ended: bool,
}

impl SseClient {
    fn open(addr: SocketAddr, path: &str, extra: &str) -> SseClient {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes())
            .unwrap();
        SseClient {
            stream,
            buf: Vec::new(),
            body: Vec::new(),
            ended: false,
        }
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The response head (status line and fields).
    fn head(&mut self) -> String {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                return String::from_utf8(head).unwrap();
            }
            assert!(self.fill(), "connection ended inside the head");
        }
    }

    /// Decodes whole chunks from `buf` into `body`.
    fn decode(&mut self) {
        loop {
            let Some(line_end) = find(&self.buf, b"\r\n") else {
                return;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&self.buf[..line_end]).unwrap(), 16)
                    .expect("chunk size");
            if size == 0 {
                if self.buf.len() >= line_end + 4 {
                    self.ended = true;
                    self.buf.drain(..line_end + 4);
                }
                return;
            }
            let need = line_end + 2 + size + 2;
            if self.buf.len() < need {
                return;
            }
            self.body
                .extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
            assert_eq!(&self.buf[need - 2..need], b"\r\n");
            self.buf.drain(..need);
        }
    }

    /// The next event (its text, without the final blank line), or `None`
    /// at the end of the stream.
    fn next_event(&mut self) -> Option<String> {
        loop {
            self.decode();
            if let Some(i) = find(&self.body, b"\n\n") {
                let ev: Vec<u8> = self.body.drain(..i + 2).collect();
                return Some(String::from_utf8(ev[..i].to_vec()).unwrap());
            }
            if self.ended || !self.fill() {
                return None;
            }
        }
    }
}

/// The SSE response head, the event format, Last-Event-ID, the end of the
/// stream, and the heartbeat of an idle stream.
fn sse_basics(model: Model) {
    let mut cfg = config(model);
    cfg.http.sse_heartbeat_sec = 1;
    let idle: Arc<Mutex<Vec<EventStream>>> = Arc::default();
    let keep = idle.clone();
    let server = start_with(cfg, move |s| {
        s.sse("/events", |req: &Request, stream: EventStream| {
            let from: u64 = stream
                .last_event_id()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let n: u64 = req
                .query_param("n")
                .and_then(|v| v.parse().ok())
                .unwrap_or(3);
            thread::spawn(move || {
                for id in from + 1..=from + n {
                    stream
                        .send(SseEvent::data(format!("line {id}\nsecond")).id(id.to_string()))
                        .unwrap();
                }
                stream.send(SseEvent::comment("bye").retry(500)).unwrap();
            });
        })
        .sse("/idle", move |_: &Request, stream: EventStream| {
            keep.lock().unwrap().push(stream)
        })
    });
    let addr = server.local_addr();
    let mut c = SseClient::open(addr, "/events?n=2", "Last-Event-ID: 40\r\n");
    let head = c.head().to_ascii_lowercase();
    for want in [
        "http/1.1 200 ok\r\n",
        "content-type: text/event-stream\r\n",
        "cache-control: no-cache\r\n",
        "x-accel-buffering: no\r\n",
        "transfer-encoding: chunked\r\n",
    ] {
        assert!(head.contains(want), "{want:?} missing in {head}");
    }
    assert_eq!(
        c.next_event().unwrap(),
        "id: 41\ndata: line 41\ndata: second"
    );
    assert_eq!(
        c.next_event().unwrap(),
        "id: 42\ndata: line 42\ndata: second"
    );
    assert_eq!(c.next_event().unwrap(), ": bye\nretry: 500");
    assert_eq!(c.next_event(), None);
    assert!(c.ended, "the stream ends with the last chunk");

    // Nothing is ever sent on /idle: what arrives (within the client's
    // read timeout) can only be the heartbeat.
    let mut c = SseClient::open(addr, "/idle", "");
    c.head();
    assert_eq!(c.next_event().unwrap(), ":", "a heartbeat comment");
    idle.lock().unwrap().clear();
    assert_eq!(c.next_event(), None);
    stop(server);
}

/// Full is reported when the client does not read (after the socket and
/// the backlog fill), and Closed soon after the client disconnects.
fn sse_full_and_closed(model: Model) {
    let mut cfg = config(model);
    cfg.http.sse_backlog = 8;
    let streams: Arc<Mutex<Vec<EventStream>>> = Arc::default();
    let keep = streams.clone();
    let server = start_with(cfg, move |s| {
        s.sse("/events", move |_: &Request, stream: EventStream| {
            keep.lock().unwrap().push(stream)
        })
    });
    let addr = server.local_addr();
    let c = SseClient::open(addr, "/events", "");
    wait_until("the stream", || streams.lock().unwrap().len() == 1);
    let stream = streams.lock().unwrap().pop().unwrap();
    let big = "x".repeat(64 * 1024);
    let start = Instant::now();
    let mut sent = 0;
    loop {
        match stream.send(SseEvent::data(big.clone())) {
            Ok(()) => sent += 1,
            Err(SendError::Full(e)) => {
                // The event comes back whole.
                assert_eq!(e, SseEvent::data(big.clone()));
                break;
            }
            Err(e) => panic!("{e} while the client is there"),
        }
        // Sent as fast as the stream takes them: the owner moves them to
        // the socket while it takes more, and once it stops, the backlog
        // fills. (Paced by a sleep, a loaded machine could run out of time
        // before the socket's buffers, a few MB on loopback, were full.)
        assert!(start.elapsed() < TIMEOUT, "never Full after {sent} events");
    }
    assert!(!stream.is_closed());
    drop(c);
    wait_until("Closed after the client left", || {
        stream.send(SseEvent::data("x")) == Err(SendError::Closed(SseEvent::data("x")))
    });
    assert!(stream.is_closed());
    drop(stream);
    wait_connections(&server, 0);
    stop(server);
}

/// Wakes by sending on a channel (what a producer thread waits on).
struct ChannelWaker(Mutex<mpsc::Sender<()>>);

impl std::task::Wake for ChannelWaker {
    fn wake(self: Arc<Self>) {
        let _ = self.0.lock().unwrap().send(());
    }
}

/// A full stream registers a waker; it is woken once the client reads
/// (room again), and a send then succeeds: no polling on a timer. A second
/// waker registered while the stream is full is woken when it closes.
fn sse_writable_wakeup(model: Model) {
    let streams: Arc<Mutex<Vec<EventStream>>> = Arc::default();
    let st = streams.clone();
    let mut cfg = config(model);
    cfg.http.sse_backlog = 2;
    let server = start_with(cfg, move |s| {
        s.sse("/events", move |_, stream| st.lock().unwrap().push(stream))
    });
    let addr = server.local_addr();
    let big = SseEvent::data("x".repeat(1 << 20));
    // Opens a stream and fills it until Full with `waker` registered (room
    // may appear between a Full and the poll: then it sends again).
    let full_stream = |waker: &std::task::Waker| {
        let mut client = TcpStream::connect(addr).unwrap();
        client
            .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        wait_until("the stream", || streams.lock().unwrap().len() == 1);
        let stream = streams.lock().unwrap().pop().unwrap();
        let start = Instant::now();
        loop {
            match stream.send(big.clone()) {
                Ok(()) => continue,
                Err(SendError::Full(_)) => {
                    if stream.poll_writable(waker).is_pending() {
                        break;
                    }
                }
                Err(e) => panic!("{e}"),
            }
            assert!(start.elapsed() < TIMEOUT, "never Full");
        }
        (client, stream)
    };
    let (tx, rx) = mpsc::channel();
    let waker = std::task::Waker::from(Arc::new(ChannelWaker(Mutex::new(tx))));
    // The client reads everything on another thread: room comes back.
    let (client, stream) = full_stream(&waker);
    assert!(rx.try_recv().is_err(), "woken while still full");
    let mut reader = client.try_clone().unwrap();
    let drain = thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });
    rx.recv_timeout(TIMEOUT).expect("woken when there is room");
    stream
        .send(SseEvent::data("after"))
        .expect("room after the wakeup");
    drop(stream);
    client.shutdown(std::net::Shutdown::Both).unwrap();
    drain.join().unwrap();
    // A full stream whose client leaves: the waker hears of the close.
    let (client, stream) = full_stream(&waker);
    client.shutdown(std::net::Shutdown::Both).unwrap();
    rx.recv_timeout(TIMEOUT)
        .expect("woken when the stream closes");
    assert!(stream.is_closed());
    assert!(stream.poll_writable(&waker).is_ready());
    drop(stream);
    wait_connections(&server, 0);
    stop(server);
}

/// 1,000 concurrent streams fed by one producer thread: every event
/// reaches every stream, in order.
fn sse_thousand_streams(model: Model) {
    const STREAMS: usize = 1000;
    const EVENTS: usize = 20;
    let (tx, rx) = mpsc::channel::<EventStream>();
    let tx = Mutex::new(tx);
    let server = start_with(config(model), move |s| {
        s.sse("/events", move |_: &Request, stream: EventStream| {
            tx.lock().unwrap().send(stream).unwrap();
        })
    });
    let addr = server.local_addr();
    let producer = thread::spawn(move || {
        let streams: Vec<EventStream> = (0..STREAMS).map(|_| rx.recv().unwrap()).collect();
        for id in 1..=EVENTS {
            for s in &streams {
                s.send(SseEvent::data(id.to_string()).id(id.to_string()))
                    .unwrap();
            }
        }
        // Dropping the streams ends every response.
    });
    let mut groups: Vec<Vec<SseClient>> = (0..8).map(|_| Vec::new()).collect();
    for i in 0..STREAMS {
        groups[i % 8].push(SseClient::open(addr, "/events", ""));
    }
    producer.join().unwrap();
    let readers: Vec<_> = groups
        .into_iter()
        .map(|mine| {
            thread::spawn(move || {
                for mut c in mine {
                    c.head();
                    for id in 1..=EVENTS {
                        assert_eq!(c.next_event().unwrap(), format!("id: {id}\ndata: {id}"));
                    }
                    assert_eq!(c.next_event(), None);
                }
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    stop(server);
}

both_models!(
    lost_wakeup_stress,
    pipelined_pair_keeps_order,
    burst_over_ring_gets_503,
    batch_handler_sees_whole_batch,
    dropped_and_expired_responders,
    resume_races_disconnect,
    sse_basics,
    sse_full_and_closed,
    sse_writable_wakeup,
    sse_thousand_streams,
);
