//! The PROXY protocol and client addresses on the wire, in both threading
//! models: headers from trusted proxies give the handler the client's
//! address (v1, v2, v2 LOCAL, byte by byte, on every request of the
//! connection, in pipeline jobs too); a missing, malformed, truncated or
//! not-accepted header from a trusted proxy, and any header from anyone
//! else, close the connection without an answer and are counted;
//! `X-Forwarded-For` and `Forwarded` are believed from trusted proxies only.

#[macro_use]
mod common;

use std::io::Write;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};

use common::*;
use stoat::app::{per_job, Request, Response, ServerHandle};
use stoat::config::{Config, Model, PipelineConfig, ProxyProtocol};

/// A server trusting 127.0.0.1 only, with `mode`; `/who` and the pipeline
/// route `/job` answer `client=C peer=P`.
fn server(model: Model, mode: ProxyProtocol) -> ServerHandle {
    let mut cfg: Config = config(model);
    cfg.http.proxy_protocol = mode;
    cfg.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    cfg.http
        .pipelines
        .insert("work".to_owned(), PipelineConfig::default());
    let who = |req: &Request<'_>| {
        let show = |a: Option<SocketAddr>| a.map_or("none".to_owned(), |a| a.to_string());
        Response::text(format!(
            "client={} peer={}",
            show(req.client_addr()),
            show(req.peer_addr())
        ))
    };
    start_with(cfg, move |s| {
        let mut s = s.get("/who", who);
        s.pipeline("work", per_job(move |req, ()| who(req)))
            .unwrap()
            .get("/job", ());
        s
    })
}

/// A connection to `to` from source address `from` (any port).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    rustix::net::bind(&fd, &SocketAddr::from((from, 0))).unwrap();
    rustix::net::connect(&fd, &to).unwrap();
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

const WHO: &[u8] = b"GET /who HTTP/1.1\r\nHost: t\r\n\r\n";

fn v2_inet(src: [u8; 4], sport: u16, ver_cmd: u8, tlvs: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(ver_cmd);
    h.push(0x11);
    h.extend_from_slice(&((12 + tlvs.len()) as u16).to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&80u16.to_be_bytes());
    h.extend_from_slice(tlvs);
    h
}

/// Sends `bytes` and expects the connection to end with nothing sent back.
#[track_caller]
fn refused(stream: TcpStream, bytes: &[u8]) {
    let mut c = Client::from_stream(stream);
    c.send_lossy(bytes);
    if let Err(e) = c.try_end() {
        panic!("{}: {e}", show(bytes));
    }
}

fn v1_header_gives_the_client(model: Model) {
    let server = server(model, ProxyProtocol::Any);
    let s = connect_from(Ipv4Addr::LOCALHOST, server.local_addr());
    let local = s.local_addr().unwrap();
    let mut c = Client::from_stream(s);
    c.send(b"PROXY TCP4 192.0.2.1 127.0.0.1 4000 80\r\n");
    c.send(WHO);
    let want = format!("client=192.0.2.1:4000 peer={local}");
    assert_eq!(c.response().text(), want);
    // Every request of the connection, and pipeline jobs too.
    c.send(b"GET /job HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().text(), want);
    c.send(WHO);
    assert_eq!(c.response().text(), want);
    assert_eq!(server.stats().proxy_proxied, 1);
    stop(server);
}

fn v2_header_gives_the_client(model: Model) {
    let server = server(model, ProxyProtocol::V2);
    let s = connect_from(Ipv4Addr::LOCALHOST, server.local_addr());
    let local = s.local_addr().unwrap();
    let mut c = Client::from_stream(s);
    // With TLVs (ALPN, NOOP padding), and the request in the same write.
    let mut bytes = v2_inet(
        [203, 0, 113, 9],
        61000,
        0x21,
        &[1, 0, 2, b'h', b'2', 4, 0, 1, 0],
    );
    bytes.extend_from_slice(WHO);
    c.send(&bytes);
    assert_eq!(
        c.response().text(),
        format!("client=203.0.113.9:61000 peer={local}")
    );
    stop(server);
}

fn v2_header_byte_by_byte(model: Model) {
    let server = server(model, ProxyProtocol::Any);
    let s = connect_from(Ipv4Addr::LOCALHOST, server.local_addr());
    s.set_nodelay(true).unwrap();
    let mut c = Client::from_stream(s);
    let mut bytes = v2_inet([198, 51, 100, 4], 1234, 0x21, &[]);
    bytes.extend_from_slice(WHO);
    for b in &bytes {
        c.send(std::slice::from_ref(b));
    }
    assert!(c.response().text().starts_with("client=198.51.100.4:1234 "));
    stop(server);
}

fn v2_local_uses_the_peer(model: Model) {
    let server = server(model, ProxyProtocol::V2);
    let s = connect_from(Ipv4Addr::LOCALHOST, server.local_addr());
    let local = s.local_addr().unwrap();
    let mut c = Client::from_stream(s);
    // LOCAL: what HAProxy's health checks send.
    c.send(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00");
    c.send(WHO);
    assert_eq!(c.response().text(), format!("client={local} peer={local}"));
    assert_eq!(server.stats().proxy_local, 1);
    stop(server);
}

fn trusted_peer_without_valid_header_is_refused(model: Model) {
    let server = server(model, ProxyProtocol::V2);
    let addr = server.local_addr();
    let from = Ipv4Addr::LOCALHOST;
    let cases: Vec<Vec<u8>> = vec![
        // Missing.
        WHO.to_vec(),
        // v1 where only v2 is accepted.
        [&b"PROXY TCP4 192.0.2.1 127.0.0.1 4000 80\r\n"[..], WHO].concat(),
        // Bad version, bad command, bad family.
        [&v2_inet([1, 2, 3, 4], 1, 0x11, &[])[..], WHO].concat(),
        [&v2_inet([1, 2, 3, 4], 1, 0x23, &[])[..], WHO].concat(),
        {
            let mut h = v2_inet([1, 2, 3, 4], 1, 0x21, &[]);
            h[13] = 0x14;
            h
        },
        // A TLV running past the header.
        [&v2_inet([1, 2, 3, 4], 1, 0x21, &[1, 0, 9])[..], WHO].concat(),
    ];
    for (i, bytes) in cases.iter().enumerate() {
        refused(connect_from(from, addr), bytes);
        wait_until("the refusal counted", || {
            server.stats().proxy_refused == i as u64 + 1
        });
    }
    // Truncated: the header cut short, then the end of the stream.
    let s = connect_from(from, addr);
    let mut c = Client::from_stream(s);
    c.send(&v2_inet([1, 2, 3, 4], 1, 0x21, &[])[..20]);
    c.stream.shutdown(Shutdown::Write).unwrap();
    c.try_end().unwrap();
    let n = cases.len() as u64 + 1;
    wait_until("the truncated header counted", || {
        server.stats().proxy_refused == n
    });
    assert_eq!(server.stats().requests, 0);
    stop(server);
}

fn untrusted_peer(model: Model) {
    let server = server(model, ProxyProtocol::Any);
    let addr = server.local_addr();
    let other = Ipv4Addr::new(127, 0, 0, 2);
    // Plain HTTP is served; its own address is the client, whatever
    // forwarding fields it sends.
    let s = connect_from(other, addr);
    let local = s.local_addr().unwrap();
    let mut c = Client::from_stream(s);
    c.send(b"GET /who HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 192.0.2.66\r\nForwarded: for=192.0.2.67\r\n\r\n");
    assert_eq!(c.response().text(), format!("client={local} peer={local}"));
    // A spoofed PROXY header (either version) is refused, unanswered.
    refused(
        connect_from(other, addr),
        &[&b"PROXY TCP4 192.0.2.1 127.0.0.1 4000 80\r\n"[..], WHO].concat(),
    );
    refused(
        connect_from(other, addr),
        &[&v2_inet([192, 0, 2, 1], 4000, 0x21, &[])[..], WHO].concat(),
    );
    wait_until("both counted", || server.stats().proxy_refused == 2);
    stop(server);
}

fn forwarding_fields_from_trusted_proxies_only(model: Model) {
    let server = server(model, ProxyProtocol::Off);
    let addr = server.local_addr();
    let ask = |from: Ipv4Addr, fields: &str| {
        let mut c = Client::from_stream(connect_from(from, addr));
        c.send(format!("GET /who HTTP/1.1\r\nHost: t\r\n{fields}\r\n").as_bytes());
        let text = c.response().text();
        text.split_whitespace().next().unwrap().to_owned()
    };
    let lo = Ipv4Addr::LOCALHOST;
    // From the trusted 127.0.0.1: the nearest untrusted hop.
    assert_eq!(
        ask(lo, "X-Forwarded-For: 6.6.6.6, 192.0.2.7\r\n"),
        "client=192.0.2.7:0"
    );
    assert_eq!(
        ask(lo, "X-Forwarded-For: 192.0.2.7, 127.0.0.1\r\n"),
        "client=192.0.2.7:0"
    );
    assert_eq!(
        ask(lo, "Forwarded: for=\"[2001:db8::5]:99\";proto=https\r\n"),
        "client=[2001:db8::5]:99"
    );
    // Forwarded wins over X-Forwarded-For.
    assert_eq!(
        ask(
            lo,
            "X-Forwarded-For: 192.0.2.1\r\nForwarded: for=192.0.2.2\r\n"
        ),
        "client=192.0.2.2:0"
    );
    // Unreadable: the peer itself.
    assert!(ask(lo, "X-Forwarded-For: unknown\r\n").starts_with("client=127.0.0.1:"));
    // From 127.0.0.2, not trusted: ignored.
    assert!(ask(
        Ipv4Addr::new(127, 0, 0, 2),
        "X-Forwarded-For: 192.0.2.7\r\n"
    )
    .starts_with("client=127.0.0.2:"));
    stop(server);
}

both_models!(
    v1_header_gives_the_client,
    v2_header_gives_the_client,
    v2_header_byte_by_byte,
    v2_local_uses_the_peer,
    trusted_peer_without_valid_header_is_refused,
    untrusted_peer,
    forwarding_fields_from_trusted_proxies_only,
);

#[test]
fn header_from_a_trusted_peer_that_never_completes_times_out_unanswered() {
    let mut cfg: Config = config(Model::PerCore);
    cfg.http.proxy_protocol = ProxyProtocol::V1;
    cfg.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    cfg.http.request_timeout_sec = 1;
    let server = start_with(cfg, |s| s.get("/who", |_: &Request<'_>| "x"));
    let mut c = Client::from_stream(connect_from(Ipv4Addr::LOCALHOST, server.local_addr()));
    c.send(b"PROXY TCP4 192.0.2.1 ");
    // The request timeout (1 s) closes it, with nothing sent.
    c.try_end().unwrap();
    wait_until("counted", || server.stats().proxy_refused == 1);
    let _ = c.stream.write_all(b"x");
    stop(server);
}
