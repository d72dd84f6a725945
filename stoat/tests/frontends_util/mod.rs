//! Helpers of `frontends.rs`: real HAProxy and nginx started on loopback
//! with the configurations of `docs/deploy/`, Weasel processes, `wrk`, and
//! a few raw-socket clients. Nothing here can hang: every wait has a
//! deadline, every process is killed and reaped on drop.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Deadline of a process start or a backend state change.
pub const START: Duration = Duration::from_secs(30);

/// The frontend programs the tests need, or `None` after printing SKIPPED
/// (or failing, when `STOAT_REQUIRE_FRONTENDS` is set: CI installs them).
pub fn require(names: &[&str]) -> Option<Vec<PathBuf>> {
    let mut found = Vec::new();
    for name in names {
        let path = ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"]
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|p| p.exists());
        match path {
            Some(p) => found.push(p),
            None => {
                if std::env::var_os("STOAT_REQUIRE_FRONTENDS").is_some() {
                    panic!("STOAT_REQUIRE_FRONTENDS is set but {name} is not installed");
                }
                eprintln!(
                    "SKIPPED: {name} is not installed (apt-get install haproxy nginx-light wrk)"
                );
                return None;
            }
        }
    }
    Some(found)
}

/// A free loopback port: bound, then released for the caller to bind.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `cond` every 10 ms until it holds, for at most `limit`.
#[track_caller]
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("stoat-frontends-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The repository's `docs/deploy/NAME`.
pub fn deploy_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/deploy")
        .join(name)
}

/// A child process killed and reaped on drop, its stderr lines forwarded
/// to a channel (and echoed, for the test's log).
pub struct Proc {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, mut command: Command) -> Proc {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}"));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let tag = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{tag}] {line}");
                if tx.send(line).is_err() {
                    // Nobody listens any more; keep draining the pipe.
                }
            }
        });
        Proc {
            child,
            lines: rx,
            name: name.to_owned(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for a stderr line containing `needle`; returns it.
    #[track_caller]
    pub fn wait_line(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("{}: no line with {needle:?} within {limit:?}", self.name),
            }
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid()).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Waits for the process to exit, at most `limit`; returns its status.
    #[track_caller]
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {limit:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// HAProxy running `docs/deploy/haproxy.cfg` in the foreground.
pub struct Haproxy {
    pub proc: Proc,
    pub port: u16,
    pub dir: TempDir,
}

impl Haproxy {
    pub fn start(bin: &Path, backend1: u16, backend2: u16) -> Haproxy {
        let dir = TempDir::new("haproxy");
        let port = free_port();
        let mut command = Command::new(bin);
        command
            .arg("-db")
            .arg("-f")
            .arg(deploy_file("haproxy.cfg"))
            .env("STOAT_FRONTEND_PORT", port.to_string())
            .env("STOAT_BACKEND1_PORT", backend1.to_string())
            .env("STOAT_BACKEND2_PORT", backend2.to_string())
            .env("STOAT_HAPROXY_DIR", dir.path());
        let proc = Proc::spawn("haproxy", command);
        wait_for("haproxy to listen", START, || listening(port));
        Haproxy { proc, port, dir }
    }

    /// One command on the admin socket; its answer.
    pub fn admin(&self, command: &str) -> String {
        let mut s = UnixStream::connect(self.dir.path().join("haproxy.sock")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("{command}\n").as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// Each server's operational state (`UP`, `DOWN`, `MAINT`...), by name.
    pub fn server_states(&self) -> HashMap<String, String> {
        let csv = self.admin("show stat");
        let mut lines = csv.lines();
        let Some(header) = lines.next() else {
            return HashMap::new();
        };
        let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
        let col = |name: &str| columns.iter().position(|c| *c == name);
        let (Some(px), Some(sv), Some(status)) = (col("pxname"), col("svname"), col("status"))
        else {
            return HashMap::new();
        };
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > status && f[px] == "stoat" && f[sv].starts_with('s'))
            .map(|f| (f[sv].to_owned(), f[status].to_owned()))
            .collect()
    }

    /// Waits until server `name` is `state` (`UP` or `DOWN`).
    #[track_caller]
    pub fn wait_server(&self, name: &str, state: &str) {
        wait_for(&format!("haproxy to see {name} {state}"), START, || {
            self.server_states()
                .get(name)
                .is_some_and(|s| s.split_whitespace().next() == Some(state))
        });
    }
}

/// nginx running `docs/deploy/nginx.conf` (placeholders filled in).
pub struct Nginx {
    pub proc: Proc,
    pub port: u16,
    pub dir: TempDir,
}

impl Nginx {
    pub fn start(bin: &Path, backend: u16) -> Nginx {
        let dir = TempDir::new("nginx");
        let port = free_port();
        let template = std::fs::read_to_string(deploy_file("nginx.conf")).unwrap();
        let conf = template
            .replace("${STOAT_FRONTEND_PORT}", &port.to_string())
            .replace("${STOAT_BACKEND_PORT}", &backend.to_string())
            .replace("${STOAT_NGINX_DIR}", &dir.path().display().to_string());
        assert!(
            !conf.contains("${STOAT_"),
            "a placeholder left in nginx.conf"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let mut command = Command::new(bin);
        command
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .arg("-e")
            .arg(dir.path().join("error.log"));
        let proc = Proc::spawn("nginx", command);
        wait_for("nginx to listen", START, || listening(port));
        Nginx { proc, port, dir }
    }
}

/// What `wrk` reported.
#[derive(Debug, Default, Clone, Copy)]
pub struct WrkResult {
    pub requests: u64,
    pub connect_errors: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub timeouts: u64,
    pub non_2xx: u64,
}

impl WrkResult {
    pub fn failures(&self) -> u64 {
        self.connect_errors + self.read_errors + self.write_errors + self.timeouts + self.non_2xx
    }
}

/// A `wrk` run in the background.
pub struct Wrk {
    child: Child,
}

impl Wrk {
    /// `wrk -t2 -c{connections} -d{secs}s --timeout 10s URL`.
    pub fn start(url: &str, connections: u32, secs: u32) -> Wrk {
        Wrk::start_script(url, connections, secs, None)
    }

    /// With a Lua `script` (`-s`).
    pub fn start_script(url: &str, connections: u32, secs: u32, script: Option<&Path>) -> Wrk {
        let mut command = Command::new("wrk");
        if let Some(script) = script {
            command.arg("-s").arg(script);
        }
        let child = command
            .args([
                "-t2",
                &format!("-c{connections}"),
                &format!("-d{secs}s"),
                "--timeout",
                "10s",
            ])
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("wrk starts");
        Wrk { child }
    }

    /// Stops it now (SIGINT: wrk reports what it did so far) and parses
    /// its report.
    pub fn interrupt(self) -> WrkResult {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
        self.finish(Duration::from_secs(30))
    }

    /// Waits for it (bounded by its duration plus a margin) and parses its report.
    pub fn finish(mut self, limit: Duration) -> WrkResult {
        let deadline = Instant::now() + limit;
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "wrk did not finish within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        eprintln!("{out}");
        parse_wrk(&out)
    }
}

impl Drop for Wrk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `N requests in`, `Socket errors: connect A, read B, write C,
/// timeout D` and `Non-2xx or 3xx responses: N` from wrk's report.
pub fn parse_wrk(out: &str) -> WrkResult {
    let mut r = WrkResult::default();
    let number = |s: &str| s.trim().trim_end_matches(',').parse::<u64>().unwrap_or(0);
    for line in out.lines().map(str::trim) {
        if let Some(at) = line.find(" requests in ") {
            r.requests = number(&line[..at]);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            for part in rest.split(',') {
                let mut words = part.split_whitespace();
                let (Some(kind), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let n = number(n);
                match kind {
                    "connect" => r.connect_errors = n,
                    "read" => r.read_errors = n,
                    "write" => r.write_errors = n,
                    "timeout" => r.timeouts = n,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = number(rest);
        }
    }
    r
}

/// One HTTP/1.1 request on a fresh connection; the status and body.
pub fn fetch(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    split_response(&out)
}

/// Status and body of a whole `Connection: close` response.
pub fn split_response(bytes: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(bytes);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[test]
fn parse_wrk_report() {
    let out = "Running 2s test @ http://127.0.0.1:1/\n  2 threads and 8 connections\n\
               12345 requests in 2.00s, 1.2MB read\n  Socket errors: connect 1, read 2, write 3, timeout 4\n\
               \x20 Non-2xx or 3xx responses: 5\nRequests/sec: 6172.5\n";
    let r = parse_wrk(out);
    assert_eq!(
        (
            r.requests,
            r.connect_errors,
            r.read_errors,
            r.write_errors,
            r.timeouts,
            r.non_2xx
        ),
        (12345, 1, 2, 3, 4, 5)
    );
    assert_eq!(r.failures(), 15);
    assert_eq!(
        parse_wrk("  10 requests in 1.00s, 1KB read\n").failures(),
        0
    );
}

/// The `weasel` binary of this build (`target/<profile>/weasel`), brought
/// up to date first (`cargo build -p weasel`, bounded).
pub fn weasel_bin() -> PathBuf {
    // The test runs as target/<profile>/deps/frontends-HASH.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let bin = profile_dir.join("weasel");
    // Built (or found up to date) every time: a stale binary would test
    // old code.
    {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut child = Command::new(cargo)
            .args(["build", "-p", "weasel", "--bin", "weasel"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .spawn()
            .expect("cargo build -p weasel starts");
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "cargo build -p weasel failed");
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("cargo build -p weasel took more than 15 minutes");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(bin.exists(), "no weasel binary at {}", bin.display());
    bin
}

/// A Weasel process (and, after handovers, its successors: the test
/// process is their subreaper, so they are its children once their
/// parent exits), killed and reaped on drop.
pub struct WeaselProc {
    /// The first process; its stderr pipe is shared by its successors.
    pub first: Proc,
    /// The process serving now.
    pub pid: i32,
    pub port: u16,
    pub dir: TempDir,
}

impl WeaselProc {
    /// Starts `weasel --config FILE` with `http` keys added to `[http]`
    /// (port 0 is not allowed: the port must survive restarts).
    pub fn start(bin: &Path, port: u16, http: &str, tag: &str) -> WeaselProc {
        let dir = TempDir::new(tag);
        let config = dir.path().join("weasel.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nport = {port}\nnetwork_threads = 2\n{http}\n\n[http.pipelines.commit_status]\n\n\
                 [weasel]\ndata_dir = \"{}\"\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let first = Self::spawn(bin, &config, tag);
        first.wait_line("weasel: listening on", START);
        let pid = first.pid();
        WeaselProc {
            first,
            pid,
            port,
            dir,
        }
    }

    fn spawn(bin: &Path, config: &Path, tag: &str) -> Proc {
        let mut command = Command::new(bin);
        command.arg("--config").arg(config);
        Proc::spawn(tag, command)
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("weasel.toml")
    }

    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Waits for process `pid` (a child of ours) to exit; reaps it.
    #[track_caller]
    pub fn wait_exit_of(&mut self, pid: i32, limit: Duration) {
        if pid == self.first.pid() {
            let status = self.first.wait_exit(limit);
            assert!(status.success(), "weasel {pid} exited with {status}");
            return;
        }
        let p = rustix::process::Pid::from_raw(pid).unwrap();
        let deadline = Instant::now() + limit;
        loop {
            match rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG) {
                Ok(Some((_, status))) => {
                    assert!(
                        status.exit_status() == Some(0),
                        "weasel {pid} exited with {status:?}"
                    );
                    return;
                }
                Ok(None) => {}
                Err(e) => panic!("waitpid({pid}): {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "weasel {pid} did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGUSR2: hands over to a new process; waits until the new one
    /// serves and the old one has exited. Returns the new pid.
    #[track_caller]
    pub fn hand_over(&mut self) -> i32 {
        let old = self.pid;
        self.signal(rustix::process::Signal::USR2);
        let line = self.first.wait_line("took over; draining", START);
        let pid: i32 = line
            .split("pid ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {line:?}"));
        self.first.wait_line("weasel: listening on", START);
        self.wait_exit_of(old, START);
        self.pid = pid;
        pid
    }

    /// SIGTERM, then waits for the exit.
    #[track_caller]
    pub fn stop(&mut self) {
        self.signal(rustix::process::Signal::TERM);
        let pid = self.pid;
        self.wait_exit_of(pid, START);
    }

    /// Starts a fresh process on the same port and data (after `stop`).
    pub fn restart(&mut self, bin: &Path, tag: &str) {
        let config = self.config();
        self.first = Self::spawn(bin, &config, tag);
        self.first.wait_line("weasel: listening on", START);
        self.pid = self.first.pid();
    }
}

impl Drop for WeaselProc {
    fn drop(&mut self) {
        if self.pid != self.first.pid() {
            if let Some(p) = rustix::process::Pid::from_raw(self.pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
            }
        }
    }
}

/// Makes this process the subreaper of its descendants, so a successor
/// whose parent (a Weasel that handed over) exits becomes our child.
pub fn become_subreaper() {
    let me = rustix::process::getpid();
    rustix::process::set_child_subreaper(Some(me)).unwrap();
}

/// A keep-alive HTTP/1.1 client that reconnects when the server closes
/// (after a `Connection: close` response), and counts every request that
/// failed (an error or end of stream instead of a whole response).
pub struct KeepAlive {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl KeepAlive {
    pub fn new(addr: SocketAddr) -> KeepAlive {
        KeepAlive {
            addr,
            stream: None,
            buf: Vec::new(),
        }
    }

    /// One request; `Ok((status, body))` or the failure.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s.set_nodelay(true).unwrap();
            self.stream = Some(s);
            self.buf.clear();
        }
        let result = self.exchange(method, path, body);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        let s = self.stream.as_mut().unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        s.write_all(&req).map_err(|e| format!("write: {e}"))?;
        let mut chunk = [0u8; 16384];
        let head_end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("end of stream instead of a response".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad head {head:?}"))?;
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no content-length in {head:?}"))?;
        let close = head
            .lines()
            .any(|l| l.starts_with("connection:") && l.contains("close"));
        while self.buf.len() < head_end + len {
            let n = s.read(&mut chunk).map_err(|e| format!("read body: {e}"))?;
            if n == 0 {
                return Err("end of stream inside a body".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        if close {
            self.stream = None;
        }
        Ok((status, body))
    }
}
