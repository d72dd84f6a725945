//! Suspended requests answered by a tokio runtime in a side thread: the
//! handler runs on a network thread, hands its `Responder` (which is `Send +
//! 'static`) to an async task and returns at once; the task awaits (a timer
//! here, a database call in real life) and answers from a tokio worker.
//!
//! - `GET /later?ms=N`: answered `later N` after N ms by a tokio task.
//! - `GET /plaintext`: inline, for comparison.
//!
//! Usage: `tokio_resume [--port P]` (default 8080). Listens on 127.0.0.1;
//! stops on SIGINT or SIGTERM.

use std::process;
use std::time::Duration;

use stoat::app::{Method, Response, Server};
use stoat::config::Config;

fn main() {
    let mut config = Config::default();
    config.http.bind_address = [127, 0, 0, 1].into();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next().map(|v| v.parse::<u16>())) {
            ("--port", Some(Ok(port))) => config.http.port = port,
            _ => {
                eprintln!("usage: tokio_resume [--port P]");
                process::exit(2);
            }
        }
    }
    // The runtime lives in its own threads; handlers reach it through a
    // Handle, which is Send + Sync.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio_resume: {e}");
            process::exit(1);
        }
    };
    let handle = runtime.handle().clone();
    let server = Server::new(config)
        .get("/plaintext", |_| Response::text("Hello, World!"))
        .suspend(Method::Get, "/later", move |req, responder| {
            let ms: u64 = req
                .query_param("ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
                .min(60_000);
            handle.spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                // Err: the client left, or the deadline answered 503.
                let _ = responder.send(format!("later {ms}"));
            });
        });
    let result = server.run();
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Err(e) = result {
        eprintln!("tokio_resume: {e}");
        process::exit(1);
    }
}
