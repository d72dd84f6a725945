//! Server-sent events through a real nginx reverse proxy (Debian's nginx,
//! started by this test on loopback with its own configuration): each event
//! reaches the client on its own, before the next one is sent and while the
//! stream stays open (nothing waits for a buffer to fill), because Stoat's
//! `X-Accel-Buffering: no` turns nginx's response buffering off. No clock:
//! the read timeout only bounds a failure.
//!
//! nginx is not part of the Rust toolchain: without it the test reports
//! that it was skipped, unless `STOAT_REQUIRE_NGINX` is set (`.ci/run`
//! installs nginx and sets it), in which case a missing nginx fails.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};

use common::*;
use stoat::app::{EventStream, Request, SseEvent};
use stoat::config::Model;

/// The nginx binary, if there is one.
fn nginx() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A running nginx, stopped (killed and reaped) on drop.
struct Nginx {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_nginx(bin: &PathBuf, upstream: u16) -> Nginx {
    let dir = std::env::temp_dir().join(format!("stoat-nginx-{}-{upstream}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = TempDir(dir);
    let d = dir.0.display();
    // A free port: bound here, released just before nginx binds it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log;\nevents {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
         proxy_pass http://127.0.0.1:{upstream};\n      proxy_http_version 1.1;\n\
         proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n"
    );
    let conf_path = dir.0.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(bin)
        .arg("-p")
        .arg(&dir.0)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.0.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx starts");
    let nginx = Nginx {
        child,
        port,
        _dir: dir,
    };
    wait_until("nginx to listen", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    nginx
}

#[test]
fn sse_events_pass_nginx_one_by_one() {
    let Some(bin) = nginx() else {
        if std::env::var_os("STOAT_REQUIRE_NGINX").is_some() {
            panic!("STOAT_REQUIRE_NGINX is set but nginx is not installed");
        }
        eprintln!("SKIPPED: nginx is not installed (apt-get install nginx-light)");
        return;
    };
    let (tx, rx) = mpsc::channel::<EventStream>();
    let tx = Mutex::new(tx);
    let server = start_with(config(Model::PerCore), move |s| {
        s.sse("/events", move |_: &Request, stream: EventStream| {
            tx.lock().unwrap().send(stream).unwrap();
        })
    });
    let nginx = start_nginx(&bin, server.local_addr().port());
    let mut client = TcpStream::connect(("127.0.0.1", nginx.port)).unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    client
        .write_all(b"GET /events HTTP/1.1\r\nHost: proxied\r\n\r\n")
        .unwrap();
    let stream = rx.recv_timeout(TIMEOUT).expect("the request reaches stoat");
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    // The head comes first (nginx sends it once the upstream's arrives).
    while find(&got, b"\r\n\r\n").is_none() {
        let n = client.read(&mut chunk).unwrap();
        assert!(n > 0, "nginx closed before the head");
        got.extend_from_slice(&chunk[..n]);
    }
    let head_end = find(&got, b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    got.drain(..head_end);
    for id in 1..=20 {
        let marker = format!("data: event-{id}\n");
        stream
            .send(SseEvent::data(format!("event-{id}")).id(id.to_string()))
            .unwrap();
        while find(&got, marker.as_bytes()).is_none() {
            let n = client
                .read(&mut chunk)
                .expect("event within the read timeout");
            assert!(n > 0, "nginx closed the stream");
            got.extend_from_slice(&chunk[..n]);
        }
        let at = find(&got, marker.as_bytes()).unwrap() + marker.len();
        // Only this event: nothing was sent after it yet.
        assert!(
            find(&got[at..], b"data: ").is_none(),
            "more than event {id} arrived"
        );
        got.drain(..at);
    }
    drop(stream);
    drop(client);
    drop(nginx);
    stop(server);
}
