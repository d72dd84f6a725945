//! HttpArena's HTTP/1.1 profiles (see `../shared/arena/README.md`), served
//! with Stoat's public API as any user would write them:
//!
//! | route | profile |
//! |---|---|
//! | `GET`/`POST /baseline11?a=&b=` | baseline, limited-conn: a + b (+ the body's integer) |
//! | `GET /pipeline` | pipelined: `ok` |
//! | `GET /json/{count}?m=` | json, json-comp: the first `count` items with `total`, serialized per request, compressed as negotiated |
//! | `POST /upload` | upload: the number of body bytes, counted as they stream (never held whole) |
//! | `GET /static/{file}` | static: the files of `DATA/static`, precompressed siblings by `Accept-Encoding` |
//! | `GET /ws` | echo-ws: WebSocket echo |
//!
//! Usage: `arena [--port 8080] [--threads N] [--data /data]`; stops on
//! SIGINT or SIGTERM.

use std::process;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use stoat::app::{
    BodyChunk, BodyWriter, Compression, Files, Handler, Message, Request, Response, Server,
    Session, WebSocket, WsContext,
};
use stoat::config::Config;

const USAGE: &str = "usage: arena [--port 8080] [--threads N] [--data /data] [--buffer-size BYTES]";

/// Largest upload: HttpArena's bodies go to 20 MB (their peers allow 25).
const MAX_UPLOAD: u64 = 25 * 1024 * 1024;

#[derive(Deserialize)]
struct Item {
    id: i64,
    name: String,
    category: String,
    price: i64,
    quantity: i64,
    active: bool,
    tags: Vec<String>,
    rating: Rating,
}

#[derive(Deserialize, Serialize)]
struct Rating {
    score: i64,
    count: i64,
}

/// An item as answered: borrowed from the data set, plus `total`.
#[derive(Serialize)]
struct ItemOut<'a> {
    id: i64,
    name: &'a str,
    category: &'a str,
    price: i64,
    quantity: i64,
    active: bool,
    tags: &'a [String],
    rating: &'a Rating,
    total: i64,
}

#[derive(Serialize)]
struct JsonOut<'a> {
    items: Vec<ItemOut<'a>>,
    count: usize,
}

/// `a + b` from the query (a missing or non-numeric one counts 0).
fn query_sum(req: &Request<'_>) -> i64 {
    let int = |name| {
        req.query(name)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0)
    };
    int("a") + int("b")
}

fn baseline_get(req: &Request<'_>) -> Response {
    Response::text(query_sum(req).to_string())
}

fn baseline_post(req: &Request<'_>) -> Response {
    let body = std::str::from_utf8(req.body())
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0);
    Response::text((query_sum(req) + body).to_string())
}

fn json(items: &[Item], req: &Request<'_>) -> Response {
    let Some(count) = req.param("count").and_then(|c| c.parse::<usize>().ok()) else {
        return Response::text("count must be a number\n").with_status(400);
    };
    let m = req
        .query("m")
        .and_then(|m| m.parse::<i64>().ok())
        .unwrap_or(1);
    let items: Vec<ItemOut<'_>> = items
        .iter()
        .take(count)
        .map(|d| ItemOut {
            id: d.id,
            name: &d.name,
            category: &d.category,
            price: d.price,
            quantity: d.quantity,
            active: d.active,
            tags: &d.tags,
            rating: &d.rating,
            total: d.price * d.quantity * m,
        })
        .collect();
    let count = items.len();
    match serde_json::to_vec(&JsonOut { items, count }) {
        Ok(body) => Response::json_bytes(body),
        Err(_) => Response::new(500),
    }
}

/// Counts the body's bytes as they come; answers at the end.
fn upload(
    _req: &Request<'_>,
    _res: &mut BodyWriter<'_, '_>,
) -> impl FnMut(BodyChunk<'_>, &mut BodyWriter<'_, '_>) {
    let mut bytes: u64 = 0;
    move |chunk, res| match chunk {
        BodyChunk::Data(data) => bytes += data.len() as u64,
        BodyChunk::End => {
            res.respond(Response::text(bytes.to_string()));
        }
    }
}

/// Echoes every message (pings are answered by the runtime).
struct Echo;

impl Session for Echo {
    fn on_message(&mut self, ws: &mut WsContext<'_>, msg: Message<'_>) {
        // Err: the connection is closing; nothing to do.
        let _ = ws.send(msg);
    }
}

fn main() {
    let (config, data) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("arena: {message}\n{USAGE}");
            process::exit(2);
        }
    };
    let server = match server(config, &data) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("arena: {e}");
            process::exit(1);
        }
    };
    let started =
        |h: &stoat::app::ServerHandle| eprintln!("arena: listening on {}", h.local_addr());
    if let Err(e) = server.run_with(started) {
        eprintln!("arena: {e}");
        process::exit(1);
    }
}

/// The server for the data in `data` (`dataset.json`, `static/`).
pub fn server(config: Config, data: &str) -> Result<Server, String> {
    let dataset = format!("{data}/dataset.json");
    let items: Vec<Item> = std::fs::read(&dataset)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
        .map_err(|e| format!("{dataset}: {e}"))?;
    let items = Arc::new(items);
    let files = Files::new("/static", format!("{data}/static"))
        .map_err(|e| e.to_string())?
        // RFC 9239 names text/javascript; the contract expects this one.
        .content_type("js", "application/javascript");
    let json_route = Compression::new().layer(move |req: &Request<'_>| json(&items, req));
    Ok(Server::new(config)
        .get("/pipeline", |_| Response::text("ok"))
        .get("/baseline11", baseline_get)
        .post("/baseline11", baseline_post)
        .get("/json/{count}", move |req| json_route.call(req))
        .post_streaming("/upload", upload)
        .get("/static/{file}", move |req| files.serve(req))
        .websocket("/ws", WebSocket::new(|_| Echo)))
}

/// The configuration and data directory the arguments ask for.
pub fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(Config, String), String> {
    let mut config = Config::default();
    config.http.port = 8080;
    // The limit is per server; only /upload streams, so only /upload takes
    // such bodies without holding them. Bodies of the other routes are
    // held whole, all of them together within body_memory_limit.
    config.http.max_body_size = MAX_UPLOAD;
    config.http.body_memory_limit =
        MAX_UPLOAD as usize + config.http.max_request_line + config.http.max_header_bytes;
    // Uploads are read buffer_size bytes per read(2): 64 KiB instead of the
    // default 16 KiB takes a fourth of the system calls (measured in
    // bench/arena/RESULTS.md: 1,738 -> 1,311 us of CPU per upload). A
    // connection gives its buffer back to the pool whenever it has no
    // unread bytes, so idle connections do not hold one.
    config.http.buffer_size = 64 * 1024;
    let mut data = String::from("/data");
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            process::exit(0);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => {
                config.http.port = value.parse().map_err(|_| format!("bad port {value:?}"))?
            }
            "--threads" => {
                config.http.network_threads = value
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("bad thread count {value:?}"))?;
            }
            "--data" => data = value,
            // The read buffer per connection (http.buffer_size): a streamed
            // upload is read this many bytes per read(2).
            "--buffer-size" => {
                config.http.buffer_size = value
                    .parse()
                    .map_err(|_| format!("bad buffer size {value:?}"))?
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok((config, data))
}
