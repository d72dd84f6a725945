//! The runtime under a raw `Service` (no app layer), over real sockets, in
//! both threading models.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use stoat::config::{Config, Model};
use stoat::proto::encode::Header;
use stoat::runtime::{self, Body, RawRequest, ResponseSink, Service};

struct Echo;

impl Service for Echo {
    fn call(&self, req: &RawRequest<'_>, res: &mut ResponseSink<'_>) {
        let mut text = req.head.target.of(req.buf).to_vec();
        text.push(b'|');
        text.extend_from_slice(req.body);
        res.send(
            200,
            &[Header {
                name: "Content-Type",
                value: b"text/plain",
            }],
            Body::Bytes(text),
            false,
        );
    }
}

fn config(model: Model) -> Config {
    let mut c = Config::default();
    c.http.model = model;
    c.http.port = 0;
    c.http.network_threads = 2;
    c
}

fn roundtrip(model: Model) {
    let server = runtime::start(&config(model), Arc::new(Echo)).unwrap();
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    let bodies: Vec<&str> = got
        .split("\r\n\r\n")
        .skip(1)
        .map(|b| b.split("HTTP/1.1").next().unwrap())
        .collect();
    assert_eq!(bodies, ["/a|", "/b|xyz", "/c|"], "{got}");
    assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 3);
    drop(s);
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn per_core_roundtrip() {
    roundtrip(Model::PerCore);
}

#[test]
fn shared_roundtrip() {
    roundtrip(Model::Shared);
}
