//! Test harness: runs the real `weasel` binary on a free port with a
//! temporary data directory, and talks HTTP/1.1 to it over TCP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every wait in these tests is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A running `weasel` process.
pub struct Weasel {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    /// The recovery line it printed at start-up.
    pub recovered: String,
}

/// A config for tests: Stoat's defaults except a free port, plus `http`
/// lines in `[http]` and `extra` lines in `[weasel]`.
pub fn config_text(http: &str, extra: &str) -> String {
    format!(
        "[http]\nport = 0\nnetwork_threads = 2\n{http}\n\
         [http.pipelines.commit_status]\nring_buffer_size = 1024\nthreads = 1\n\
         [weasel]\n{extra}\n"
    )
}

impl Weasel {
    /// Starts weasel on `dir` with `[weasel]` lines `extra`; waits for its
    /// `listening on` line.
    pub fn start(dir: &Path, extra: &str) -> Weasel {
        Weasel::start_with(dir, "", extra)
    }

    /// [`Weasel::start`] with `[http]` lines too.
    pub fn start_with(dir: &Path, http: &str, extra: &str) -> Weasel {
        Weasel::start_args(dir, http, extra, &[])
    }

    /// [`Weasel::start_with`] with more command-line arguments.
    pub fn start_args(dir: &Path, http: &str, extra: &str, args: &[&str]) -> Weasel {
        let config = dir.with_extension("toml");
        std::fs::write(&config, config_text(http, extra)).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_weasel"))
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weasel");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                // Keep draining after the start-up lines: a closed pipe
                // would fail the server's later log lines.
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + TIMEOUT;
        let mut recovered = String::new();
        let mut said = Vec::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!("weasel did not report listening; it said {said:#?}");
                }
            };
            said.push(line.clone());
            if line.contains("recovered") {
                recovered = line.clone();
            }
            if let Some(a) = line.strip_prefix("weasel: listening on http://") {
                break a.parse().expect("address in the listening line");
            }
        };
        Weasel {
            child: Some(child),
            addr,
            dir: dir.to_path_buf(),
            recovered,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` (a `kill` name like "HUP") to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Whether the process has exited (without waiting).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    /// Waits (bounded) for the process to exit by itself.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
            child
        });
        match rx.recv_timeout(TIMEOUT) {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!("weasel did not exit within {TIMEOUT:?}");
            }
        }
    }

    /// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`).
    pub fn mem_kib(&self, field: &str) -> u64 {
        proc_kib(self.pid(), field)
    }

    /// Resets the peak RSS (`VmHWM`) to the current RSS.
    pub fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").unwrap();
    }

    /// SIGKILLs the process and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL on Unix.
            let _ = c.wait();
        }
    }

    /// Sends SIGINT and waits (bounded) for the process to exit.
    pub fn interrupt(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(sent.success());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
            // Keep the child here if the wait times out: it is killed below.
            child
        });
        match rx.recv_timeout(TIMEOUT) {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!("weasel did not exit within {TIMEOUT:?} of SIGINT");
            }
        }
    }

    /// A new connection to it.
    pub fn conn(&self) -> Conn {
        Conn::connect(self.addr)
    }
}

/// A `/proc/PID/status` field in KiB.
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Runs `weasel` with `args` to its end (bounded): exit code, stdout,
/// stderr.
pub fn run_weasel(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weasel"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weasel");
    let pid = child.id().to_string();
    let (tx, rx) = mpsc::channel();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut o = String::new();
        let mut e = String::new();
        let _ = out.read_to_string(&mut o);
        let _ = err.read_to_string(&mut e);
        let status = child.wait();
        let _ = tx.send((status, o, e));
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok((status, o, e)) => (status.unwrap().code(), o, e),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("weasel {args:?} did not exit within {TIMEOUT:?}");
        }
    }
}

/// Runs the server on `dir` (config as [`Weasel::start_with`], plus
/// `args`) expecting it to stop by itself before listening: exit code and
/// stderr.
pub fn start_fails(dir: &Path, http: &str, extra: &str, args: &[&str]) -> (Option<i32>, String) {
    let config = dir.with_extension("fail.toml");
    std::fs::write(&config, config_text(http, extra)).unwrap();
    let mut all: Vec<&std::ffi::OsStr> = vec![
        "--config".as_ref(),
        config.as_os_str(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
    ];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    let (code, _, err) = run_weasel(&all);
    assert!(!err.contains("listening on"), "it started: {err}");
    (code, err)
}

impl Drop for Weasel {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        Conn::try_connect(addr).expect("connect")
    }

    pub fn try_connect(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends a request; `headers` are extra `Name: value` lines.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &[u8],
    ) -> std::io::Result<()> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes)
    }

    /// Sends `bytes` as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends and reads the response.
    pub fn request(&mut self, method: &str, path: &str, headers: &[&str], body: &[u8]) -> Resp {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &[u8],
    ) -> std::io::Result<Resp> {
        self.send(method, path, headers, body)?;
        self.response()
    }

    pub fn get(&mut self, path: &str) -> Resp {
        self.request("GET", path, &[], b"")
    }

    pub fn commit_json(&mut self, body: &serde_json::Value) -> Resp {
        self.request(
            "POST",
            "/v1/commit",
            &["Content-Type: application/json"],
            body.to_string().as_bytes(),
        )
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn eof() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed")
    }

    /// Reads until `buf` holds `needle`; returns the index after it.
    fn until(&mut self, needle: &[u8]) -> std::io::Result<usize> {
        loop {
            if let Some(i) = self.buf.windows(needle.len()).position(|w| w == needle) {
                return Ok(i + needle.len());
            }
            if self.fill()? == 0 {
                return Err(Conn::eof());
            }
        }
    }

    /// Reads a response head and its Content-Length body (a chunked body is
    /// left unread: see [`Conn::sse`]).
    pub fn response(&mut self) -> std::io::Result<Resp> {
        let end = self.until(b"\r\n\r\n")?;
        let head: Vec<u8> = self.buf.drain(..end).collect();
        let text = String::from_utf8_lossy(&head);
        let mut lines = text.trim_end().split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.get(9..12))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line in {text:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().map_err(std::io::Error::other)?;
            while self.buf.len() < len {
                if self.fill()? == 0 {
                    return Err(Conn::eof());
                }
            }
            resp.body = self.buf.drain(..len).collect();
        }
        Ok(resp)
    }

    /// Turns this connection, after a `GET /v1/watch` head, into an SSE reader.
    pub fn sse(self) -> Sse {
        Sse {
            conn: self,
            data: Vec::new(),
        }
    }
}

/// A server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Reads SSE events from a chunked response body.
pub struct Sse {
    conn: Conn,
    /// De-chunked body bytes not yet parsed.
    data: Vec<u8>,
}

impl Sse {
    /// The next event (comments skipped); `None` when the stream ended.
    pub fn next(&mut self) -> std::io::Result<Option<SseEvent>> {
        loop {
            if let Some(i) = self.data.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.data.drain(..i + 2).collect();
                let text = String::from_utf8_lossy(&block);
                let mut ev = SseEvent::default();
                let mut any = false;
                let mut data_lines = Vec::new();
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        ev.id = Some(v.to_owned());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        ev.event = Some(v.to_owned());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data_lines.push(v.to_owned());
                        any = true;
                    }
                }
                if !any {
                    continue; // A comment (heartbeat or greeting).
                }
                ev.data = data_lines.join("\n");
                return Ok(Some(ev));
            }
            // One chunk: size line, data, CRLF.
            let end = match self.conn.until(b"\r\n") {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            };
            let line: Vec<u8> = self.conn.buf.drain(..end).collect();
            let size = usize::from_str_radix(String::from_utf8_lossy(&line).trim(), 16)
                .map_err(std::io::Error::other)?;
            while self.conn.buf.len() < size + 2 {
                if self.conn.fill()? == 0 {
                    return Ok(None);
                }
            }
            if size == 0 {
                return Ok(None);
            }
            self.data.extend(self.conn.buf.drain(..size));
            self.conn.buf.drain(..2);
        }
    }

    /// The next event, which must exist.
    pub fn expect(&mut self) -> SseEvent {
        self.next()
            .expect("reading the watch stream")
            .expect("the watch stream ended")
    }
}

/// A commit body: set each `(key, value)`, with `preconditions`.
pub fn commit_body(
    request_id: &str,
    pre: &[(&str, u64)],
    sets: &[(&str, &str)],
) -> serde_json::Value {
    serde_json::json!({
        "request_id": request_id,
        "preconditions": pre.iter().map(|(k, v)| serde_json::json!({"key": k, "version": v})).collect::<Vec<_>>(),
        "operations": sets.iter().map(|(k, v)| serde_json::json!({"op": "set", "key": k, "value": v})).collect::<Vec<_>>(),
    })
}
