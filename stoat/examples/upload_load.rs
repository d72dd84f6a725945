//! A bounded upload load generator for `bench/upload/run.sh`: N clients
//! each upload one `Content-Length` body of SIZE bytes at RATE bytes/s in
//! small writes to `POST /echo`, reading the echo as it comes, and check
//! every echo is complete and byte-exact. Meanwhile the server's VmRSS and
//! VmHWM are sampled from /proc every 100 ms.
//!
//! Usage: `upload_load --addr HOST:PORT --pid SERVER_PID [--conns 2000]
//! [--size 1048576] [--rate 65536] [--write 4096] [--deadline 300]
//! [--settle 3] [--buffer-memory-limit BYTES]`. Prints one `key=value` line per figure; exits 1 if any
//! upload failed or the deadline passed (then it stops by itself).
//!
//! One writer and one reader thread per connection (small stacks): simple
//! blocking code, which is what a load this slow (a write every 60 ms per
//! connection) suits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    addr: SocketAddr,
    pid: u32,
    conns: usize,
    size: usize,
    rate: usize,
    write: usize,
    deadline: Duration,
    settle: Duration,
    /// The server's `buffer_memory_limit`, to judge the peak (0: unknown).
    limit: u64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        addr: "127.0.0.1:8080".parse().map_err(|e| format!("{e}"))?,
        pid: 0,
        conns: 2000,
        size: 1 << 20,
        rate: 64 << 10,
        write: 4096,
        deadline: Duration::from_secs(300),
        settle: Duration::from_secs(3),
        limit: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || v.parse::<u64>().map_err(|_| format!("bad {flag} {v:?}"));
        match flag.as_str() {
            "--addr" => a.addr = v.parse().map_err(|_| format!("bad address {v:?}"))?,
            "--pid" => a.pid = num()? as u32,
            "--conns" => a.conns = num()? as usize,
            "--size" => a.size = num()? as usize,
            "--rate" => a.rate = num()?.max(1) as usize,
            "--write" => a.write = num()?.max(1) as usize,
            "--deadline" => a.deadline = Duration::from_secs(num()?),
            "--settle" => a.settle = Duration::from_secs(num()?),
            "--buffer-memory-limit" => a.limit = num()?,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if a.pid == 0 {
        return Err("--pid is required".into());
    }
    Ok(a)
}

/// Byte `j` of client `i`'s body: differs per client and has no short
/// period, so crossed, lost or repeated bytes show.
fn byte(i: usize, j: usize) -> u8 {
    (j.wrapping_mul(31) ^ (j >> 13) ^ i.wrapping_mul(0x9E37)) as u8
}

/// (VmRSS, VmHWM) of `pid` in KiB.
fn rss(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = s.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Uploads client `i`'s body, paced (its head was sent already).
fn writer(mut s: TcpStream, i: usize, a: &Args, start: Instant) -> std::io::Result<()> {
    let mut piece = vec![0u8; a.write];
    let mut at = 0;
    // Spread the clients over the first interval.
    let offset = Duration::from_secs_f64((i % 64) as f64 / 64.0 * a.write as f64 / a.rate as f64);
    while at < a.size {
        let due = start + offset + Duration::from_secs_f64(at as f64 / a.rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let n = a.write.min(a.size - at);
        for (k, b) in piece[..n].iter_mut().enumerate() {
            *b = byte(i, at + k);
        }
        s.write_all(&piece[..n])?;
        at += n;
    }
    Ok(())
}

/// Reads client `i`'s echo; `Err` says what was wrong.
fn reader(mut s: TcpStream, i: usize, size: usize) -> Result<(), String> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut head = Vec::new();
    let body_start = loop {
        let n = s.read(&mut buf).map_err(|e| format!("read head: {e}"))?;
        if n == 0 {
            return Err("closed before the response head".into());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if head.len() > 8192 {
            return Err("response head too long".into());
        }
    };
    let text = String::from_utf8_lossy(&head[..body_start]).to_ascii_lowercase();
    if !text.starts_with("http/1.1 200") {
        return Err(format!("status: {}", text.lines().next().unwrap_or("")));
    }
    if !text.contains(&format!("content-length: {size}\r\n")) {
        return Err(format!("no content-length {size}: {text:?}"));
    }
    let mut got = 0;
    let check = |bytes: &[u8], got: &mut usize| -> Result<(), String> {
        for (k, &b) in bytes.iter().enumerate() {
            if *got + k >= size || b != byte(i, *got + k) {
                return Err(format!("echo differs at byte {}", *got + k));
            }
        }
        *got += bytes.len();
        Ok(())
    };
    check(&head[body_start..], &mut got)?;
    while got < size {
        let n = s.read(&mut buf).map_err(|e| format!("read body: {e}"))?;
        if n == 0 {
            return Err(format!("closed after {got} of {size} echo bytes"));
        }
        check(&buf[..n], &mut got)?;
    }
    Ok(())
}

fn main() {
    let a = match parse() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("upload_load: {e}");
            std::process::exit(2);
        }
    };
    let _ = stoat::sys::raise_nofile_limit();
    let done = Arc::new(AtomicBool::new(false));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let hwm = Arc::new(AtomicU64::new(0));
    let (base, _) = rss(a.pid).unwrap_or_else(|| {
        eprintln!("upload_load: cannot read /proc/{}/status", a.pid);
        std::process::exit(2);
    });
    let sampler = {
        let (done, peak_rss, hwm, pid) = (done.clone(), peak_rss.clone(), hwm.clone(), a.pid);
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some((r, h)) = rss(pid) {
                    peak_rss.fetch_max(r, Ordering::Relaxed);
                    hwm.fetch_max(h, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    {
        // The run stops by itself.
        let deadline = a.deadline;
        std::thread::spawn(move || {
            std::thread::sleep(deadline);
            println!("result=FAIL deadline {deadline:?} passed");
            std::process::exit(1);
        });
    }
    let start = Instant::now();
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut threads = Vec::with_capacity(2 * a.conns);
    for i in 0..a.conns {
        let s = match TcpStream::connect(a.addr) {
            Ok(s) => s,
            Err(e) => {
                failed.fetch_add(1, Ordering::Relaxed);
                first_error
                    .lock()
                    .unwrap()
                    .get_or_insert(format!("connect: {e}"));
                continue;
            }
        };
        let _ = s.set_nodelay(true);
        // The head goes at once: a server times a connection's first head
        // from the accept, and spawning threads may lag on a busy machine.
        let head = format!(
            "POST /echo HTTP/1.1\r\nHost: load\r\nContent-Length: {}\r\n\r\n",
            a.size
        );
        if let Err(e) = (&s).write_all(head.as_bytes()) {
            failed.fetch_add(1, Ordering::Relaxed);
            first_error
                .lock()
                .unwrap()
                .get_or_insert(format!("send head: {e}"));
            continue;
        }
        let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
        let w = s.try_clone().expect("dup socket");
        let spawn = |f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(f)
                .expect("spawn thread")
        };
        let args = a.clone();
        threads.push(spawn(Box::new(move || {
            let _ = writer(w, i, &args, start);
        })));
        let (ok, failed, first_error, size) =
            (ok.clone(), failed.clone(), first_error.clone(), a.size);
        threads.push(spawn(Box::new(move || match reader(s, i, size) {
            Ok(()) => {
                ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                failed.fetch_add(1, Ordering::Relaxed);
                first_error
                    .lock()
                    .unwrap()
                    .get_or_insert(format!("client {i}: {e}"));
            }
        })));
    }
    for t in threads {
        let _ = t.join();
    }
    let elapsed = start.elapsed();
    std::thread::sleep(a.settle);
    let after = rss(a.pid).map_or(0, |(r, _)| r);
    let final_hwm = rss(a.pid).map_or(0, |(_, h)| h);
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "clients={} body_bytes={} rate_bytes_per_sec={} write_bytes={}",
        a.conns, a.size, a.rate, a.write
    );
    println!("answered_ok={ok} failed={failed}");
    println!("total_secs={:.2}", elapsed.as_secs_f64());
    println!("rss_baseline_kib={base}");
    println!("rss_peak_sampled_kib={}", peak_rss.load(Ordering::Relaxed));
    println!("vm_hwm_kib={}", final_hwm.max(hwm.load(Ordering::Relaxed)));
    println!("rss_after_kib={after} (after {:?} idle)", a.settle);
    if let Some(e) = first_error.lock().unwrap().as_ref() {
        println!("first_error={e}");
    }
    let peak = final_hwm.max(hwm.load(Ordering::Relaxed));
    let mut pass = ok == a.conns;
    if a.limit > 0 {
        let bound = a.limit / 1024 + 32 * 1024;
        let within = peak <= bound;
        println!("peak_within_limit_plus_32mib={within} (bound {bound} KiB)");
        pass &= within;
    }
    let back = after * 10 <= base * 11;
    println!("rss_after_within_10pct_of_baseline={back}");
    pass &= back;
    println!("result={}", if pass { "PASS" } else { "FAIL" });
    std::process::exit(if pass { 0 } else { 1 });
}
