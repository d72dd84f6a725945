//! Speed and size of the compression choices behind `app/compress.rs`:
//! gzip through Stoat (flate2 + zlib-rs, deflate state reused per thread),
//! raw deflate through miniz_oxide (flate2's other pure-Rust backend), and
//! brotli, at several levels, over HttpArena's json answers and static
//! files, in MB of input per CPU second of this thread (CPU time, not wall
//! time: the machine may be shared). Run it in release:
//!
//! `taskset -c 0 cargo run --release -p stoat --example compress_levels -- [DATA]`
//! (DATA defaults to /work/shared/arena/data).

use stoat::app::{Coding, Compression};

fn main() {
    let data = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/work/shared/arena/data".into());
    let dataset = std::fs::read(format!("{data}/dataset.json")).expect("dataset.json");
    let items: Vec<serde_json::Value> = serde_json::from_slice(&dataset).expect("json");
    // A json-comp answer of 25 and of 50 items, as served.
    let json = |n: usize| {
        serde_json::to_vec(&serde_json::json!({ "items": &items[..n], "count": n })).unwrap()
    };
    let mut bodies: Vec<(String, Vec<u8>)> =
        vec![("json/25".into(), json(25)), ("json/50".into(), json(50))];
    for name in ["app.js", "components.css", "header.html", "manifest.json"] {
        bodies.push((
            name.into(),
            std::fs::read(format!("{data}/static/{name}")).expect("static file"),
        ));
    }
    println!(
        "{:16} {:>8} {:22} {:>9} {:>7} {:>9}",
        "body", "bytes", "codec", "out", "ratio", "MB/s"
    );
    for (name, body) in &bodies {
        for level in [1, 4, 6, 9] {
            let c = Compression::new().gzip_level(level);
            report(name, body, &format!("gzip zlib-rs {level}"), || {
                c.encode(Coding::Gzip, body)
            });
        }
        for level in [1u8, 4, 6] {
            report(name, body, &format!("deflate miniz {level}"), || {
                miniz_oxide::deflate::compress_to_vec(body, level)
            });
        }
        for level in [0, 1, 3, 4, 5, 11] {
            let c = Compression::new().brotli_level(level);
            report(name, body, &format!("brotli {level}"), || {
                c.encode(Coding::Brotli, body)
            });
        }
    }
}

/// This thread's CPU time in seconds (wall time means little on a shared
/// machine).
fn cpu_secs() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// Runs `f` until it used ~0.3 s of CPU; prints output size and input MB
/// per CPU second.
fn report(name: &str, body: &[u8], codec: &str, mut f: impl FnMut() -> Vec<u8>) {
    let out = f().len();
    let start = cpu_secs();
    let mut runs = 0u32;
    while cpu_secs() - start < 0.3 {
        std::hint::black_box(f());
        runs += 1;
    }
    let secs = cpu_secs() - start;
    let mbs = body.len() as f64 * f64::from(runs) / secs / 1e6;
    println!(
        "{name:16} {:>8} {codec:22} {out:>9} {:>7.3} {mbs:>9.1}",
        body.len(),
        out as f64 / body.len() as f64
    );
}
