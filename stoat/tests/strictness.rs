//! Bad input over the wire, in both threading models: each request of the
//! table gets its error status and then the connection closes (RFC 9112:
//! once framing is in doubt, nothing after it can be trusted). Every case
//! runs on a fresh connection; all failures are reported together, by name.

#[macro_use]
mod common;

use stoat::config::Model;

use common::{start, stop, wait_connections, Client};

both_models!(bad_input_table);

/// `(name, bytes sent, expected status)`.
type Case = (&'static str, Vec<u8>, u16);

fn cases() -> Vec<Case> {
    fn head(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }
    let long_target = format!("/{}", "a".repeat(9000));
    let big_field = "b".repeat(9000);
    let many_fields: String = (0..120).map(|i| format!("X-F{i}: v\r\n")).collect();
    vec![
        // Framing.
        (
            "Content-Length with Transfer-Encoding",
            head("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            "Transfer-Encoding with Content-Length",
            head("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            "two different Content-Length",
            head("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
            400,
        ),
        (
            "Content-Length list with different values",
            head("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello!"),
            400,
        ),
        (
            "Content-Length with plus sign",
            head("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello"),
            400,
        ),
        (
            "Content-Length negative",
            head("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\nhello"),
            400,
        ),
        (
            "Content-Length in hex",
            head("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0x5\r\n\r\nhello"),
            400,
        ),
        (
            "Content-Length with inner space",
            head("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1 0\r\n\r\nhelloworld"),
            400,
        ),
        (
            "Content-Length overflow",
            head("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\nhello"),
            400,
        ),
        (
            "Transfer-Encoding gzip, chunked (unknown coding)",
            head("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
            501,
        ),
        (
            "Transfer-Encoding chunked, gzip (chunked not last)",
            head("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            "HTTP/1.0 with Transfer-Encoding",
            head("POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400,
        ),
        // Field syntax.
        (
            "space before colon",
            head("GET /hello HTTP/1.1\r\nHost: t\r\nX-A : b\r\n\r\n"),
            400,
        ),
        (
            "obs-fold",
            head("GET /hello HTTP/1.1\r\nHost: t\r\nX-A: b\r\n  folded\r\n\r\n"),
            400,
        ),
        (
            "bare CR in a value",
            head("GET /hello HTTP/1.1\r\nHost: t\r\nX-A: b\rc\r\n\r\n"),
            400,
        ),
        (
            "bare LF line end",
            head("GET /hello HTTP/1.1\nHost: t\n\n"),
            400,
        ),
        (
            "NUL in a value",
            head("GET /hello HTTP/1.1\r\nHost: t\r\nX-A: b\0c\r\n\r\n"),
            400,
        ),
        (
            "bad token character in a name",
            head("GET /hello HTTP/1.1\r\nHost: t\r\nX@A: b\r\n\r\n"),
            400,
        ),
        (
            "missing Host",
            head("GET /hello HTTP/1.1\r\nAccept: */*\r\n\r\n"),
            400,
        ),
        (
            "duplicate Host",
            head("GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            400,
        ),
        (
            "duplicate Host, same value",
            head("GET /hello HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
            400,
        ),
        // Request line.
        (
            "double space in request line",
            head("GET  /hello HTTP/1.1\r\nHost: t\r\n\r\n"),
            400,
        ),
        (
            "tab in request line",
            head("GET\t/hello HTTP/1.1\r\nHost: t\r\n\r\n"),
            400,
        ),
        (
            "missing target",
            head("GET HTTP/1.1\r\nHost: t\r\n\r\n"),
            400,
        ),
        (
            "HTTP/2.0",
            head("GET /hello HTTP/2.0\r\nHost: t\r\n\r\n"),
            505,
        ),
        (
            "HTTP/3.0",
            head("GET /hello HTTP/3.0\r\nHost: t\r\n\r\n"),
            505,
        ),
        (
            "malformed version HTTP/1",
            head("GET /hello HTTP/1\r\nHost: t\r\n\r\n"),
            400,
        ),
        (
            "malformed version HTTP/x.y",
            head("GET /hello HTTP/x.y\r\nHost: t\r\n\r\n"),
            400,
        ),
        (
            "malformed version, lower case",
            head("GET /hello http/1.1\r\nHost: t\r\n\r\n"),
            400,
        ),
        // Chunked body.
        (
            "bad chunk size",
            head("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk size overflow",
            head("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk data not followed by CRLF",
            head("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"),
            400,
        ),
        // Limits.
        (
            "body too large by Content-Length (no body sent)",
            head("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n"),
            413,
        ),
        (
            "request line too long",
            head(&format!("GET {long_target} HTTP/1.1\r\nHost: t\r\n\r\n")),
            414,
        ),
        (
            "header field too large",
            head(&format!("GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: {big_field}\r\n\r\n")),
            431,
        ),
        (
            "too many header fields",
            head(&format!("GET /hello HTTP/1.1\r\nHost: t\r\n{many_fields}\r\n")),
            431,
        ),
        (
            "unsupported expectation",
            head("POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx"),
            417,
        ),
    ]
}

/// Runs one case; `Err` says what went wrong.
fn run_case(addr: std::net::SocketAddr, bytes: &[u8], status: u16) -> Result<(), String> {
    let mut c = Client::connect(addr);
    // The server may answer and close before reading everything.
    c.send_lossy(bytes);
    let r = c.try_response(false)?;
    if r.status != status {
        return Err(format!(
            "status {} {:?} (body {:?}), expected {status}",
            r.status,
            r.reason,
            r.text()
        ));
    }
    if !r.connection_has("close") {
        return Err(format!("no `Connection: close` on the error: {r:?}"));
    }
    c.try_end().map(|_| ())
}

fn bad_input_table(model: Model) {
    let server = start(model);
    let addr = server.local_addr();
    let mut failures = Vec::new();
    let cases = cases();
    for (name, bytes, status) in &cases {
        if let Err(e) = run_case(addr, bytes, *status) {
            failures.push(format!("  {name}: {e}"));
        }
    }
    // Nothing is left open: every refused connection was closed.
    wait_connections(&server, 0);
    // And the server still serves.
    let mut c = Client::connect(addr);
    c.send(&common::get("/hello"));
    assert_eq!(c.response().text(), "hello");
    drop(c);
    stop(server);
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
