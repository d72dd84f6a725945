//! Differential testing of Stoat's sans-IO request parsing (`proto::Conn`:
//! `HeadParser` and `BodyDecoder` with the connection rules) against llhttp,
//! the parser in Node's `http` module, in strict mode.
//!
//! A generator builds request variants from the strictness table's requests
//! and valid ones, mutated: header name case and spelling, whitespace and
//! tabs around colons and values, Content-Length and Transfer-Encoding
//! combinations and spellings, chunk sizes with extensions and odd digits,
//! line endings, pipelined pairs. Each case goes to `Conn` (all bytes, then
//! end of input) and, over loopback, to `server.js` (Node; the client sends
//! the bytes and half-closes). Compared, as a [`Verdict`]: the body length
//! of every request each side completed (so where each message ended), and
//! how the input ended: cleanly between messages, refused, inside a message,
//! or with bytes left after a message that closes the connection.
//!
//! A disagreement is either a bug to fix in `stoat/src/proto` or one of the
//! classes in [`known`], each documented in `fuzz/llhttp-differences.md`
//! with the RFC 9112 section that makes our verdict right. The run fails
//! (exit 1) on any other disagreement, printing the case.
//!
//! Usage: `stoat-llhttp [--cases N] [--seed S] [--jobs J] [--show K]
//! [--verbose]` (defaults 4000 cases, seed 1, 4 at a time, 3 examples per
//! class). Needs `node` on PATH.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use stoat::proto::encode::{EncodeCtx, HeadStart, ResponseHead};
use stoat::proto::{Conn, ConnEvent as Event, DateCache, Limits, RequestHead, ResponseBody};

/// How a side's reading of the input ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// All input used, the last message complete.
    Clean,
    /// A parse error (our status, or llhttp's error code / Node's status).
    Refused(String),
    /// The input ended inside a message.
    Incomplete,
    /// A message closed the connection (`Connection: close`, HTTP/1.0);
    /// bytes after it were not read as requests.
    ClosedAfter,
    /// Node did not answer in time, or reset the connection.
    NoAnswer(String),
}

/// One side's reading of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    /// Body length of each request completed, in order.
    bodies: Vec<usize>,
    end: End,
}

impl Verdict {
    /// Whether two verdicts agree: the same messages with the same bodies,
    /// and the same kind of end. Refusals agree whatever their codes; a
    /// connection closed after a message agrees with a clean end or a
    /// refusal of what followed (llhttp refuses data after `close`).
    fn agrees(&self, other: &Verdict) -> bool {
        if self.bodies != other.bodies {
            return false;
        }
        use End::*;
        matches!(
            (&self.end, &other.end),
            (Clean, Clean)
                | (Refused(_), Refused(_))
                | (Incomplete, Incomplete)
                | (ClosedAfter, ClosedAfter | Clean | Refused(_))
                | (Clean | Refused(_), ClosedAfter)
        )
    }
}

/// Stoat's reading: `Conn` fed everything, then the end of input; every
/// request answered at once (200, keep-alive as the request allows).
fn ours(input: &[u8]) -> Verdict {
    ours_with_methods(input).0
}

/// [`ours`], with the method of each request whose head was read, and of
/// the request it stopped in (its first word, if its head was not read).
fn ours_with_methods(input: &[u8]) -> (Verdict, Vec<Vec<u8>>) {
    let mut methods = Vec::new();
    let v = ours_inner(input, &mut methods);
    (v, methods)
}

fn ours_inner(input: &[u8], methods: &mut Vec<Vec<u8>>) -> Verdict {
    let limits = Limits::default();
    let now = Instant::now();
    let date = DateCache::new(1_700_000_000);
    let mut conn = Conn::new(now);
    let mut head = RequestHead::default();
    let mut out = Vec::new();
    let mut bodies = Vec::new();
    let mut body: Option<usize> = None;
    let mut closing = false;
    let mut at = 0;
    for _ in 0..100_000 {
        let rest = &input[at..];
        let (n, event) = match conn.poll(rest, now, &limits, &mut head) {
            Ok(x) => x,
            Err(e) => {
                if body.is_none() {
                    methods.push(first_word(rest));
                }
                return Verdict {
                    bodies,
                    end: End::Refused(format!("{} {e:?}", e.status())),
                };
            }
        };
        at += n;
        let answer = match event {
            Event::Head { complete } => {
                methods.push(head.method_span.of(rest).to_vec());
                conn.send_continue(&mut out);
                if complete {
                    Some(0)
                } else {
                    body = Some(0);
                    None
                }
            }
            Event::Body(r) => {
                *body.get_or_insert(0) += r.len();
                None
            }
            Event::BodyEnd => Some(body.take().unwrap_or(0)),
            // All input is here: the peer's end of input comes next (the
            // runtime sees the read return 0 once the buffer is used).
            Event::NeedInput if !conn.is_read_closed() => {
                conn.on_read_closed();
                None
            }
            Event::Close | Event::NeedInput | Event::Waiting => {
                if body.is_none() {
                    methods.push(first_word(rest));
                }
                let end = if body.is_some() {
                    End::Incomplete
                } else if closing {
                    if rest.is_empty() {
                        End::Clean
                    } else {
                        End::ClosedAfter
                    }
                } else if rest.iter().all(|&b| b == b'\r' || b == b'\n') {
                    // Empty lines between requests are skipped (RFC 9112
                    // §2.2); llhttp skips them too.
                    End::Clean
                } else {
                    End::Incomplete
                };
                return Verdict { bodies, end };
            }
        };
        if let Some(len) = answer {
            bodies.push(len);
            closing = !head.keep_alive;
            conn.respond(
                ResponseHead {
                    status: 200,
                    start: HeadStart::Headers(&[]),
                    body: ResponseBody::Length(2),
                },
                false,
                now,
                &mut out,
                EncodeCtx {
                    date: &date,
                    server: b"",
                },
            );
            out.clear();
        }
    }
    Verdict {
        bodies,
        end: End::NoAnswer("no progress in Conn".into()),
    }
}

/// Node's reading, from the bytes it sent back.
fn theirs(addr: SocketAddr, input: &[u8]) -> Verdict {
    let answer = match exchange(addr, input) {
        Ok(a) => a,
        Err(e) => {
            return Verdict {
                bodies: Vec::new(),
                end: End::NoAnswer(e),
            }
        }
    };
    let mut bodies = BTreeMap::new();
    let mut end = End::Clean;
    let mut rest = &answer[..];
    while !rest.is_empty() {
        let Some(head_end) = find(rest, b"\r\n\r\n") else {
            end = End::NoAnswer(format!("partial response {:?}", show(rest)));
            break;
        };
        let head = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let body_at = head_end + 4;
        let body = &rest[body_at..(body_at + len).min(rest.len())];
        rest = &rest[(body_at + len).min(rest.len())..];
        let body = String::from_utf8_lossy(body);
        match status {
            100 => {}
            200 => {
                let field = |k: &str| -> Option<usize> {
                    head.lines().find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.eq_ignore_ascii_case(k).then(|| v.trim().parse().ok())?
                    })
                };
                if let (Some(n), Some(len)) = (field("x-n"), field("x-len")) {
                    bodies.insert(n, len);
                }
            }
            400 if body.as_ref() == "HPE_INVALID_EOF_STATE" => end = End::Incomplete,
            s => end = End::Refused(format!("{s} {body}")),
        }
    }
    Verdict {
        bodies: bodies.into_values().collect(),
        end,
    }
}

/// Sends `input`, half-closes, reads until the server closes.
fn exchange(addr: SocketAddr, input: &[u8]) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    // The server may refuse and close before reading everything.
    let _ = s.write_all(input);
    let _ = s.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(answer),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !answer.is_empty() => {
                return Ok(answer)
            }
            Err(e) => return Err(format!("read: {e} after {:?}", show(&answer))),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Bytes as a Rust-like escaped string.
fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// Undoes [`show`] (`\\r`, `\\n`, `\\t`, `\\xNN`, `\\"`, `\\'`, `\\\\`).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let (c, n) = match b[i + 1] {
                b'r' => (b'\r', 2),
                b'n' => (b'\n', 2),
                b't' => (b'\t', 2),
                b'0' => (0, 2),
                b'x' => (
                    u8::from_str_radix(std::str::from_utf8(&b[i + 2..i + 4]).unwrap_or("00"), 16)
                        .unwrap_or(0),
                    4,
                ),
                c => (c, 2),
            };
            out.push(c);
            i += n;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The generator.

/// xorshift64*: deterministic cases from a seed (no dependency needed for
/// a test-case generator).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A request as parts, so that mutations can target one part.
#[derive(Clone)]
struct Req {
    line: String,
    /// (name, separator incl. colon and whitespace, value, trailing
    /// whitespace) per field.
    fields: Vec<(String, String, String, String)>,
    body: Vec<u8>,
    eol: String,
}

impl Req {
    fn new(method: &str, version: &str) -> Req {
        Req {
            line: format!("{method} /p HTTP/{version}"),
            fields: vec![("Host".into(), ": ".into(), "t".into(), String::new())],
            body: Vec::new(),
            eol: "\r\n".into(),
        }
    }
    fn field(mut self, name: &str, value: &str) -> Req {
        self.fields
            .push((name.into(), ": ".into(), value.into(), String::new()));
        self
    }
    fn body(mut self, body: &[u8]) -> Req {
        self.body = body.to_vec();
        self
    }
    fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(self.line.as_bytes());
        b.extend_from_slice(self.eol.as_bytes());
        for (n, sep, v, ws) in &self.fields {
            b.extend_from_slice(format!("{n}{sep}{v}{ws}").as_bytes());
            b.extend_from_slice(self.eol.as_bytes());
        }
        b.extend_from_slice(self.eol.as_bytes());
        b.extend_from_slice(&self.body);
        b
    }
}

/// Chunked body pieces the mutations draw from.
fn chunked(rng: &mut Rng) -> Vec<u8> {
    let data = b"hello world, some body";
    let mut b = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let n = 1 + rng.below(data.len());
        let size = match rng.below(12) {
            0 => format!("{n:X}"),
            1 => format!("{n:x}"),
            2 => format!("00{n:x}"),
            3 => format!("{n:x};ext=1"),
            4 => format!("{n:x};ext=\"q d\""),
            5 => format!("{n:x} ;ext"),
            6 => format!("{n:x}\t"),
            7 => format!("{n:x};"),
            8 => format!("0x{n:x}"),
            9 => format!("+{n:x}"),
            10 => format!("{n:x} "),
            _ => format!("{n:x};a=b;c=d"),
        };
        b.extend_from_slice(size.as_bytes());
        b.extend_from_slice(rng.pick(&["\r\n", "\r\n", "\r\n", "\n", "\r"]).as_bytes());
        b.extend_from_slice(&data[..n]);
        b.extend_from_slice(
            rng.pick(&["\r\n", "\r\n", "\r\n", "\n", "", "XX"])
                .as_bytes(),
        );
    }
    b.extend_from_slice(rng.pick(&["0", "0", "00", "0;ext=1", "0 "]).as_bytes());
    b.extend_from_slice(b"\r\n");
    match rng.below(6) {
        0 => b.extend_from_slice(b"Trailer-A: x\r\n\r\n"),
        1 => b.extend_from_slice(b"\n"),
        2 => {}
        _ => b.extend_from_slice(b"\r\n"),
    }
    b
}

const CL_SPELLINGS: &[&str] = &[
    "Content-Length",
    "content-length",
    "CONTENT-LENGTH",
    "Content-length",
    "Content_Length",
    "Content-Lengt",
    "Content-Length ",
    " Content-Length",
    "\tContent-Length",
    "Content-Length\t",
];
const TE_SPELLINGS: &[&str] = &[
    "Transfer-Encoding",
    "transfer-encoding",
    "TRANSFER-ENCODING",
    "Transfer_Encoding",
    "Transfer-Encoding ",
    "Transfer-Encodin",
    " Transfer-Encoding",
];
const TE_VALUES: &[&str] = &[
    "chunked",
    "Chunked",
    "CHUNKED",
    " chunked",
    "chunked ",
    "chunked\t",
    "identity",
    "gzip, chunked",
    "chunked, gzip",
    "chunked, chunked",
    "chunked,",
    ",chunked",
    "xchunked",
    "chunkedx",
    "chunked;q=1",
    "\"chunked\"",
    "identity, chunked",
    "",
];
const SEPARATORS: &[&str] = &[": ", ":", ":\t", ": \t", ":  ", " : ", "\t: ", ":\t\t"];
const TRAILING: &[&str] = &["", "", "", " ", "\t", " \t", "\x0b", "\x0c"];

/// One case: a base request, then 1-3 mutations, sometimes a pipelined
/// second request.
fn case(rng: &mut Rng, bases: &[Vec<u8>]) -> Vec<u8> {
    // A third of the cases start from the strictness table and the
    // integration tests' requests (mutated at the byte level).
    if rng.chance(25) {
        let mut b = bases[rng.below(bases.len())].clone();
        if rng.chance(50) {
            byte_mutation(rng, &mut b);
        }
        if rng.chance(20) {
            b.extend_from_slice(&bases[rng.below(bases.len())]);
        }
        return b;
    }
    let method = rng.pick(&["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]);
    let version = rng.pick(&["1.1", "1.1", "1.1", "1.0"]);
    let mut r = Req::new(method, version);
    if version == "1.0" && rng.chance(50) {
        r = r.field("Connection", "keep-alive");
    }
    match rng.below(5) {
        0 => {}
        1 | 2 => {
            let n = rng.below(12);
            r = r
                .field(rng.pick(CL_SPELLINGS), &n.to_string())
                .body(&b"0123456789abcdef"[..n]);
        }
        _ => {
            r = r.field(rng.pick(TE_SPELLINGS), rng.pick(TE_VALUES));
            let body = chunked(rng);
            r = r.body(&body);
        }
    }
    for _ in 0..1 + rng.below(3) {
        mutate(rng, &mut r);
    }
    let mut b = r.bytes();
    if rng.chance(30) {
        let mut second = Req::new("GET", "1.1");
        if rng.chance(50) {
            mutate(rng, &mut second);
        }
        b.extend_from_slice(&second.bytes());
    }
    b
}

/// A structural mutation.
fn mutate(rng: &mut Rng, r: &mut Req) {
    if r.fields.is_empty() {
        r.fields
            .push(("Accept".into(), ": ".into(), "*/*".into(), String::new()));
    }
    let i = rng.below(r.fields.len());
    match rng.below(14) {
        // Name case and spelling of an existing field.
        0 => {
            let n = &mut r.fields[i].0;
            *n = match rng.below(3) {
                0 => n.to_ascii_lowercase(),
                1 => n.to_ascii_uppercase(),
                _ => format!("{n}{}", rng.pick(&["", "-", "_", " ", "\t", "\0"])),
            }
        }
        // Whitespace around the colon and the value.
        1 | 2 => r.fields[i].1 = (rng.pick(SEPARATORS)).into(),
        3 => r.fields[i].3 = (rng.pick(TRAILING)).into(),
        // Content-Length combinations and spellings.
        4 => {
            let n = r.body.len();
            let v = match rng.below(10) {
                0 => format!("{n}, {n}"),
                1 => format!("{n},{n}"),
                2 => format!("0{n}"),
                3 => format!("{n} "),
                4 => format!("+{n}"),
                5 => format!("{}", n + 1),
                6 => format!("{n}, {}", n + 1),
                7 => format!(",{n}"),
                8 => format!("{n}.0"),
                _ => format!("{n}"),
            };
            r.fields.push((
                (rng.pick(CL_SPELLINGS)).into(),
                ": ".into(),
                v,
                String::new(),
            ));
        }
        5 => r.fields.push((
            (rng.pick(TE_SPELLINGS)).into(),
            ": ".into(),
            (rng.pick(TE_VALUES)).into(),
            String::new(),
        )),
        // Line endings.
        6 => r.eol = (rng.pick(&["\n", "\r\n", "\r\n", "\r"])).into(),
        7 => {
            let f = &mut r.fields[i];
            f.2.push_str(rng.pick(&["\r", "\n", "\r\n folded", "\r\n\tfolded", "\0", "\x7f", "é"]));
        }
        // Request line.
        8 => {
            r.line = match rng.below(8) {
                0 => r.line.replacen(' ', "  ", 1),
                1 => r.line.replacen(' ', "\t", 1),
                2 => r.line.replace("HTTP/", "http/"),
                3 => r.line.replace("/p", "/p q"),
                4 => r.line.replace("HTTP/1.1", "HTTP/1.2"),
                5 => format!("{} ", r.line),
                6 => r.line.replace("/p", "http://t/p"),
                _ => r.line.replace("/p", "*"),
            }
        }
        // Host.
        9 => match rng.below(4) {
            0 => {
                r.fields.remove(0);
            }
            1 => r
                .fields
                .push(("Host".into(), ": ".into(), "t".into(), String::new())),
            2 => r.fields[0].2 = (rng.pick(&["", "a b", "t:80", "[::1]", "t:x", "t@u"])).into(),
            _ => r
                .fields
                .push(("host".into(), ": ".into(), "u".into(), String::new())),
        },
        // Other fields that touch framing or the connection.
        10 => {
            let (n, v) = rng.pick(&[
                ("Connection", "close"),
                ("Connection", "keep-alive"),
                ("Connection", "Close"),
                ("Connection", "upgrade"),
                ("Expect", "100-continue"),
                ("Expect", "200-ok"),
                ("X-Empty", ""),
                ("Te", "trailers"),
            ]);
            r.fields
                .push((n.into(), ": ".into(), v.into(), String::new()));
        }
        // A field line without colon or name.
        11 => r.fields.push((
            (rng.pick(&["NoColon", "", "X-A b", "X:A"])).into(),
            (rng.pick(&["", ": ", ":"])).into(),
            "v".into(),
            String::new(),
        )),
        // Body longer or shorter than announced.
        12 => {
            if rng.chance(50) {
                r.body.extend_from_slice(b"xyz");
            } else {
                let n = r.body.len().saturating_sub(1 + rng.below(3));
                r.body.truncate(n);
            }
        }
        // Leading empty line.
        _ => r.line = format!("{}{}", rng.pick(&["\r\n", "\n", " "]), r.line),
    }
}

/// A byte-level mutation of a whole request.
fn byte_mutation(rng: &mut Rng, b: &mut Vec<u8>) {
    if b.is_empty() {
        return;
    }
    let at = rng.below(b.len());
    match rng.below(5) {
        0 => b[at] = rng.pick(&b" \t\r\n:;,\"0aA\x00\x7f"[..]),
        1 => {
            b.remove(at);
        }
        2 => b.insert(at, rng.pick(&b" \t\r\n:;"[..])),
        3 => b[at] = b[at].to_ascii_uppercase(),
        _ => b.truncate(at),
    }
}

/// The strictness table's and the integration tests' requests (the same
/// seeds as the fuzz corpus, written by `fuzz/seed/seed_corpus.py`).
fn bases() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/head_diff");
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| std::fs::read(e.ok()?.path()).ok())
                .filter(|b| b.len() < 4096)
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    if v.is_empty() {
        v.push(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec());
    }
    v
}

// ---------------------------------------------------------------------------
// Known, documented differences (fuzz/llhttp-differences.md).

/// The class of a disagreement already explained in
/// `fuzz/llhttp-differences.md`, or `None`.
fn known(input: &[u8], ours: &Verdict, theirs: &Verdict) -> Option<&'static str> {
    let (_, methods) = ours_with_methods(input);
    let prefix = |a: &[usize], b: &[usize]| a.len() <= b.len() && b[..a.len()] == *a;
    // We refused a message llhttp took (or got no further in): one of our
    // documented rules, where the RFC asks for the refusal.
    if let End::Refused(why) = &ours.end {
        if prefix(&ours.bodies, &theirs.bodies) {
            let rule = why.split(' ').nth(1).unwrap_or("");
            let class = match rule {
                "DuplicateHost" | "BadHost" | "MissingHost" => "D1 Host field rules",
                "BadRequestLine" => "D2 request-line whitespace",
                "VersionNotSupported" => "D3 HTTP version",
                "UnknownTransferCoding" | "ChunkedNotLast" => {
                    "D4 Transfer-Encoding other than chunked"
                }
                "TransferEncodingInHttp10" => "D5 Transfer-Encoding in HTTP/1.0",
                "UnsupportedExpectation" => "D6 Expect other than 100-continue",
                "BodyTooLarge" | "RequestLineTooLong" | "HeaderTooLarge" => "D7 limits",
                "BareCr" | "BareLf" => "D18 bare CR or LF",
                "BadChunkLine" if find(input, b";;").is_some() => "D20 empty chunk extension name",
                "ContentLengthWithTransferEncoding" => "D19 Content-Length with Transfer-Encoding",
                _ => "",
            };
            if !class.is_empty() {
                return Some(class);
            }
        }
    }
    // We closed after a message llhttp kept the connection open after:
    // `close` among the connection options wins over `keep-alive`.
    if ours.end == End::ClosedAfter && prefix(&ours.bodies, &theirs.bodies) {
        let lower = input.to_ascii_lowercase();
        if find(&lower, b"connection:").is_some() && find(&lower, b"close").is_some() {
            return Some("D14 close wins over keep-alive");
        }
    }
    // llhttp stopped reading (cleanly) where we read on: after an Upgrade
    // request (llhttp hands the rest to an upgrade handler; a server that
    // ignores Upgrade reads requests on), or after `keep-alive` followed by
    // whitespace (llhttp does not see the option; the connection closes).
    if theirs.end == End::Clean && prefix(&theirs.bodies, &ours.bodies) {
        let lower = input.to_ascii_lowercase();
        if find(&lower, b"\r\nupgrade:").is_some() {
            return Some("D16 Upgrade not taken");
        }
        if find(&lower, b"keep-alive \t").is_some()
            || find(&lower, b"keep-alive \r").is_some()
            || find(&lower, b"keep-alive\t").is_some()
        {
            return Some("D15 whitespace after keep-alive");
        }
    }
    // llhttp refused a message we took (or were still reading at the end).
    if let End::Refused(why) = &theirs.end {
        if prefix(&theirs.bodies, &ours.bodies) {
            let k = theirs.bodies.len();
            let method = methods.get(k).map(Vec::as_slice).unwrap_or(b"");
            let code = why.split(' ').nth(1).unwrap_or("");
            return match code {
                "HPE_INVALID_METHOD" if !LLHTTP_METHODS.contains(&method) => {
                    Some("D8 method tokens llhttp does not know")
                }
                "connect" if methods.iter().any(|m| m == b"CONNECT") => Some("D9 CONNECT"),
                "HPE_UNEXPECTED_CONTENT_LENGTH" => Some("D10 repeated equal Content-Length"),
                "HPE_INVALID_CONTENT_LENGTH" | "HPE_INVALID_TRANSFER_ENCODING"
                    if ours.end != End::Incomplete || ours.bodies.len() > k =>
                {
                    Some("D11 whitespace after a framing field value")
                }
                "HPE_INVALID_URL" => Some("D12 request-target leniency"),
                "HPE_INVALID_CHUNK_SIZE" | "HPE_STRICT"
                    if [
                        &b" ;"[..],
                        b"\t;",
                        b"; ",
                        b";\t",
                        b" =",
                        b"\t=",
                        b"= ",
                        b"=\t",
                    ]
                    .iter()
                    .any(|w| find(input, w).is_some()) =>
                {
                    Some("D17 whitespace in a chunk extension")
                }
                // llhttp refuses at the first byte no request can have; we
                // refuse at the end of the line, and at the end of input
                // close without an answer (RFC 9112 §8: an incomplete
                // message). The same input completed, we refuse it too.
                _ if ours.end == End::Incomplete && ours.bodies.len() == k => {
                    let mut done = input.to_vec();
                    done.extend_from_slice(b"\r\n\r\n");
                    let completed = crate::ours(&done);
                    match completed.end {
                        End::Refused(_) if completed.bodies.len() == k => {
                            Some("D13 refused before the end of the line")
                        }
                        _ => match code {
                            "HPE_INVALID_TRANSFER_ENCODING" | "HPE_INVALID_CONTENT_LENGTH" => {
                                Some("D11 whitespace after a framing field value")
                            }
                            _ => None,
                        },
                    }
                }
                _ => None,
            };
        }
    }
    None
}

/// The methods llhttp parses for HTTP (its `HTTP_METHOD_MAP`, llhttp 9 in
/// Node 20); any other token is `HPE_INVALID_METHOD` there.
const LLHTTP_METHODS: &[&[u8]] = &[
    b"DELETE",
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"CONNECT",
    b"OPTIONS",
    b"TRACE",
    b"COPY",
    b"LOCK",
    b"MKCOL",
    b"MOVE",
    b"PROPFIND",
    b"PROPPATCH",
    b"SEARCH",
    b"UNLOCK",
    b"BIND",
    b"REBIND",
    b"UNBIND",
    b"ACL",
    b"REPORT",
    b"MKACTIVITY",
    b"CHECKOUT",
    b"MERGE",
    b"M-SEARCH",
    b"NOTIFY",
    b"SUBSCRIBE",
    b"UNSUBSCRIBE",
    b"PATCH",
    b"PURGE",
    b"MKCALENDAR",
    b"LINK",
    b"UNLINK",
    b"SOURCE",
    b"QUERY",
];

/// The bytes up to the first space (after skipped empty lines).
fn first_word(b: &[u8]) -> Vec<u8> {
    let start = b
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .unwrap_or(b.len());
    let b = &b[start..];
    b[..b.iter().position(|&c| c == b' ').unwrap_or(b.len())].to_vec()
}

// ---------------------------------------------------------------------------

struct Node(Child, SocketAddr);

impl Node {
    fn start() -> Node {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/server.js");
        let mut child = Command::new("node")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot run node (install nodejs)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("node did not print its port");
        let port: u16 = line.trim().parse().expect("node printed no port");
        Node(child, SocketAddr::from(([127, 0, 0, 1], port)))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        drop(self.0.stdin.take()); // server.js exits when stdin closes
        let _ = self.0.wait();
    }
}

fn main() {
    let mut cases = 4000usize;
    let mut seed = 1u64;
    let mut jobs = 4usize;
    let mut show_n = 3usize;
    let mut verbose = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = || -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{a} needs a number"))
        };
        match a.as_str() {
            "--cases" => cases = num() as usize,
            "--seed" => seed = num().max(1),
            "--jobs" => jobs = num().max(1) as usize,
            "--show" => show_n = num() as usize,
            "--verbose" => verbose = true,
            // One input, given as a Rust-escaped string (as printed).
            "--one" => {
                let text = args.next().expect("--one needs an input");
                let input = unescape(&text);
                let node = Node::start();
                println!(
                    "stoat:  {:?}\nllhttp: {:?}",
                    ours(&input),
                    theirs(node.1, &input)
                );
                return;
            }
            _ => {
                eprintln!(
                    "usage: stoat-llhttp [--cases N] [--seed S] [--jobs J] [--show K] [--verbose]"
                );
                std::process::exit(2);
            }
        }
    }
    let started = Instant::now();
    let node = Node::start();
    let bases = bases();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let inputs: Vec<Vec<u8>> = (0..cases).map(|_| case(&mut rng, &bases)).collect();

    let next = AtomicUsize::new(0);
    // class -> (count, examples)
    let classes: Mutex<BTreeMap<String, (usize, Vec<String>)>> = Mutex::new(BTreeMap::new());
    let agreed = AtomicUsize::new(0);
    let refused_both = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(input) = inputs.get(i) else { return };
                let a = ours(input);
                let b = theirs(node.1, input);
                if a.agrees(&b) {
                    agreed.fetch_add(1, Ordering::Relaxed);
                    if matches!(a.end, End::Refused(_)) {
                        refused_both.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                let class = match (&b.end, known(input, &a, &b)) {
                    (End::NoAnswer(_), _) => "no answer from node".to_owned(),
                    (_, Some(k)) => format!("known: {k}"),
                    (_, None) => "UNEXPLAINED".to_owned(),
                };
                let line = format!(
                    "    case {i}: {:?}\n      stoat: {:?}\n      llhttp: {:?}",
                    show(input),
                    a,
                    b
                );
                let mut c = classes.lock().unwrap();
                let e = c.entry(class).or_default();
                e.0 += 1;
                if e.1.len() < show_n || verbose {
                    e.1.push(line);
                }
            });
        }
    });
    drop(node);
    let classes = classes.into_inner().unwrap();
    let disagreed: usize = classes.values().map(|c| c.0).sum();
    println!(
        "llhttp differential: {cases} cases (seed {seed}), {} agree ({} refused by both), {disagreed} disagree, {:.1} s",
        agreed.load(Ordering::Relaxed),
        refused_both.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    for (class, (n, examples)) in &classes {
        println!("  {class}: {n}");
        for e in examples {
            println!("{e}");
        }
    }
    let bad = classes
        .iter()
        .filter(|(k, _)| !k.starts_with("known: "))
        .map(|(_, v)| v.0)
        .sum::<usize>();
    if bad > 0 {
        println!("{bad} disagreements are neither fixed nor in fuzz/llhttp-differences.md");
        std::process::exit(1);
    }
}
