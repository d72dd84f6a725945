//! Static files over real sockets: content types, HEAD, validators and
//! 304, one range (206, 416), precompressed siblings, and every way out of
//! the root refused (`..`, percent-encoded dots and slashes, NUL, symlinks
//! leading out), in both threading models.

#[macro_use]
mod common;

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use stoat::app::{Coding, Compression, Files, Server};
use stoat::config::Model;

use common::{config, start_with, stop, Client, Resp};

both_models!(
    serves_files_with_type_and_validators,
    head_has_headers_no_body,
    conditional_requests_get_304,
    one_range_206_or_416,
    precompressed_sibling_by_accept_encoding,
    nothing_outside_the_root,
    changes_on_disk_are_seen,
    large_files_by_sendfile,
);

const SECRET: &str = "the secret outside the root";

/// A directory tree for one test: `base/root` is served, `base/outside`
/// holds a secret; removed on drop.
struct Tree {
    base: PathBuf,
    js: Vec<u8>,
}

impl Tree {
    fn new() -> Tree {
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "stoat-files-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&base);
        let root = base.join("root");
        fs::create_dir_all(root.join("sub/dir")).unwrap();
        fs::create_dir_all(base.join("outside")).unwrap();
        fs::write(base.join("outside/secret.txt"), SECRET).unwrap();
        fs::write(base.join("root-sibling.txt"), SECRET).unwrap();
        let js: Vec<u8> = (0..3000)
            .flat_map(|i| format!("function f{i}() {{ return {}; }}\n", i % 17).into_bytes())
            .collect();
        fs::write(root.join("app.js"), &js).unwrap();
        let c = Compression::new();
        fs::write(root.join("app.js.gz"), c.encode(Coding::Gzip, &js)).unwrap();
        fs::write(root.join("app.js.br"), c.encode(Coding::Brotli, &js)).unwrap();
        fs::write(root.join("sub/dir/x.css"), "body { color: red }").unwrap();
        fs::write(
            root.join("pic.webp"),
            [0x52u8, 0x49, 0x46, 0x46, 0, 1, 2, 3],
        )
        .unwrap();
        fs::write(root.join(".env"), SECRET).unwrap();
        std::os::unix::fs::symlink("app.js", root.join("inside")).unwrap();
        std::os::unix::fs::symlink(base.join("outside/secret.txt"), root.join("out")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("outdir")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("passwd")).unwrap();
        Tree { base, js }
    }

    fn root(&self) -> PathBuf {
        self.base.join("root")
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// A server with `Files` at `/static` (three levels deep).
fn server(model: Model, tree: &Tree) -> stoat::app::ServerHandle {
    let files = std::sync::Arc::new(
        Files::new("/static", tree.root())
            .expect("root opens")
            .content_type("js", "application/javascript"),
    );
    start_with(config(model), move |s: Server| {
        let (f1, f2, f3) = (files.clone(), files.clone(), files);
        s.get("/static/{a}", move |req| f1.serve(req))
            .get("/static/{a}/{b}", move |req| f2.serve(req))
            .get("/static/{a}/{b}/{c}", move |req| f3.serve(req))
    })
}

fn get(c: &mut Client, target: &str, extra: &str) -> Resp {
    c.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes());
    c.response()
}

fn serves_files_with_type_and_validators(model: Model) {
    let tree = Tree::new();
    let server = server(model, &tree);
    let mut c = Client::connect(server.local_addr());
    let r = get(&mut c, "/static/app.js", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, tree.js);
    assert_eq!(r.header("content-type"), Some("application/javascript"));
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let etag = r.header("etag").expect("ETag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let lm = r.header("last-modified").expect("Last-Modified");
    assert!(httpdate::parse_http_date(lm).is_ok(), "{lm}");

    let r = get(&mut c, "/static/sub/dir/x.css", "");
    assert_eq!((r.status, r.text().as_str()), (200, "body { color: red }"));
    assert_eq!(r.header("content-type"), Some("text/css"));
    assert_eq!(r.header("vary"), None, "no siblings");
    let r = get(&mut c, "/static/pic.webp", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.header("content-type"), Some("image/webp"));
    assert_eq!(r.header("content-encoding"), None);
    let r = get(&mut c, "/static/inside", "");
    assert_eq!(
        (r.status, &r.body),
        (200, &tree.js),
        "a symlink inside the root"
    );
    for missing in [
        "/static/nope.js",
        "/static/sub",
        "/static/sub/dir",
        "/static/.env",
    ] {
        assert_eq!(get(&mut c, missing, "").status, 404, "{missing}");
    }
    stop(server);
}

fn head_has_headers_no_body(model: Model) {
    let tree = Tree::new();
    let server = server(model, &tree);
    let mut c = Client::connect(server.local_addr());
    c.send(b"HEAD /static/app.js HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.head_response();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(&*tree.js.len().to_string())
    );
    assert!(r.header("etag").is_some());
    // The connection is still in step: the next answer is the next one.
    let r = get(&mut c, "/static/sub/dir/x.css", "");
    assert_eq!(r.text(), "body { color: red }");
    stop(server);
}

fn conditional_requests_get_304(model: Model) {
    let tree = Tree::new();
    let server = server(model, &tree);
    let mut c = Client::connect(server.local_addr());
    let r = get(&mut c, "/static/app.js", "");
    let etag = r.header("etag").unwrap().to_owned();
    let lm = r.header("last-modified").unwrap().to_owned();
    let cases = [
        (format!("If-None-Match: {etag}\r\n"), 304),
        (format!("If-None-Match: \"other\", W/{etag}\r\n"), 304),
        ("If-None-Match: *\r\n".to_owned(), 304),
        ("If-None-Match: \"other\"\r\n".to_owned(), 200),
        (format!("If-Modified-Since: {lm}\r\n"), 304),
        (
            "If-Modified-Since: Thu, 01 Jan 2099 00:00:00 GMT\r\n".to_owned(),
            304,
        ),
        (
            "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n".to_owned(),
            200,
        ),
        ("If-Modified-Since: not a date\r\n".to_owned(), 200),
        // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
        (
            format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {lm}\r\n"),
            200,
        ),
    ];
    for (fields, want) in cases {
        let r = get(&mut c, "/static/app.js", &fields);
        assert_eq!(r.status, want, "{fields:?}");
        if want == 304 {
            assert!(r.body.is_empty());
            assert_eq!(r.header("etag"), Some(&*etag));
        } else {
            assert_eq!(r.body, tree.js);
        }
    }
    stop(server);
}

fn one_range_206_or_416(model: Model) {
    let tree = Tree::new();
    let server = server(model, &tree);
    let mut c = Client::connect(server.local_addr());
    let len = tree.js.len();
    let r = get(
        &mut c,
        "/static/app.js",
        "Range: bytes=10-19\r\nAccept-Encoding: br\r\n",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &tree.js[10..20]);
    assert_eq!(
        r.header("content-range"),
        Some(&*format!("bytes 10-19/{len}"))
    );
    assert_eq!(
        r.header("content-encoding"),
        None,
        "a range is of the file itself"
    );
    let r = get(&mut c, "/static/app.js", "Range: bytes=-5\r\n");
    assert_eq!((r.status, &r.body[..]), (206, &tree.js[len - 5..]));
    let r = get(
        &mut c,
        "/static/app.js",
        &format!("Range: bytes={len}-\r\n"),
    );
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some(&*format!("bytes */{len}")));
    let r = get(&mut c, "/static/app.js", "Range: bytes=0-1,5-6\r\n");
    assert_eq!(
        (r.status, r.body.len()),
        (200, len),
        "several ranges: whole"
    );
    let etag = get(&mut c, "/static/app.js", "")
        .header("etag")
        .unwrap()
        .to_owned();
    let r = get(
        &mut c,
        "/static/app.js",
        &format!("Range: bytes=0-3\r\nIf-Range: {etag}\r\n"),
    );
    assert_eq!(r.status, 206);
    let r = get(
        &mut c,
        "/static/app.js",
        "Range: bytes=0-3\r\nIf-Range: \"stale\"\r\n",
    );
    assert_eq!((r.status, r.body.len()), (200, len));
    stop(server);
}

fn precompressed_sibling_by_accept_encoding(model: Model) {
    let tree = Tree::new();
    let server = server(model, &tree);
    let mut c = Client::connect(server.local_addr());
    let root = tree.root();
    let br = fs::read(root.join("app.js.br")).unwrap();
    let gz = fs::read(root.join("app.js.gz")).unwrap();
    let cases: [(&str, Option<&str>, &[u8]); 6] = [
        ("Accept-Encoding: br;q=1, gzip;q=0.8\r\n", Some("br"), &br),
        ("Accept-Encoding: gzip\r\n", Some("gzip"), &gz),
        ("Accept-Encoding: gzip;q=1, br;q=0.5\r\n", Some("gzip"), &gz),
        ("Accept-Encoding: deflate\r\n", None, &tree.js),
        ("Accept-Encoding: br;q=0, gzip;q=0\r\n", None, &tree.js),
        ("", None, &tree.js),
    ];
    let mut tags = Vec::new();
    for (fields, coding, body) in cases {
        let r = get(&mut c, "/static/app.js", fields);
        assert_eq!(r.status, 200, "{fields:?}");
        assert_eq!(r.header("content-encoding"), coding, "{fields:?}");
        assert_eq!(r.body, body, "{fields:?}");
        assert_eq!(r.header("content-type"), Some("application/javascript"));
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        tags.push(r.header("etag").unwrap().to_owned());
    }
    assert_ne!(tags[0], tags[1], "each representation has its own ETag");
    assert_ne!(tags[0], tags[5]);
    stop(server);
}

fn nothing_outside_the_root(model: Model) {
    let tree = Tree::new();
    let server = server(model, &tree);
    let targets = [
        "/static/../outside/secret.txt",
        "/static/../root-sibling.txt",
        "/static/sub/../../outside/secret.txt",
        "/static/%2e%2e/outside/secret.txt",
        "/static/%2E%2E/root-sibling.txt",
        "/static/..%2foutside%2fsecret.txt",
        "/static/%2e%2e%2f%2e%2e%2froot-sibling.txt",
        "/static/sub%2f..%2f..%2foutside%2fsecret.txt",
        "/static/app.js%00.txt",
        "/static/%00",
        "/static/out",
        "/static/outdir/secret.txt",
        "/static/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/.env",
        "/static/.%2eenv",
    ];
    for target in targets {
        // A fresh connection each: some refusals close it.
        let mut c = Client::connect(server.local_addr());
        c.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.response();
        assert!(
            matches!(r.status, 400 | 404),
            "{target}: {} {:?}",
            r.status,
            r.text()
        );
        assert!(!r.text().contains("secret"), "{target} leaked");
        assert!(!r.text().contains("root:"), "{target} leaked /etc/passwd");
    }
    stop(server);
}

/// With no revalidation interval, every request checks the disk: a file
/// changed is served anew (new ETag), a file removed is 404.
fn changes_on_disk_are_seen(model: Model) {
    let tree = Tree::new();
    let files = Files::new("/static", tree.root())
        .unwrap()
        .revalidate(std::time::Duration::ZERO);
    let server = start_with(config(model), move |s: Server| {
        s.get("/static/{a}", move |req| files.serve(req))
    });
    let mut c = Client::connect(server.local_addr());
    let path = tree.root().join("note.txt");
    fs::write(&path, "first").unwrap();
    let r = get(&mut c, "/static/note.txt", "");
    assert_eq!((r.status, r.text().as_str()), (200, "first"));
    let first_tag = r.header("etag").unwrap().to_owned();
    // A new file (new inode) of another size in its place.
    fs::remove_file(&path).unwrap();
    fs::write(&path, "second version").unwrap();
    let r = get(&mut c, "/static/note.txt", "");
    assert_eq!((r.status, r.text().as_str()), (200, "second version"));
    assert_ne!(r.header("etag").unwrap(), first_tag);
    fs::remove_file(&path).unwrap();
    assert_eq!(get(&mut c, "/static/note.txt", "").status, 404);
    stop(server);
}

/// Files over the cache limit go out by sendfile: whole, one range, HEAD,
/// pipelined behind and ahead of other responses, all byte-exact.
fn large_files_by_sendfile(model: Model) {
    let tree = Tree::new();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 9)) as u8)
        .collect();
    fs::write(tree.root().join("big.bin"), &big).unwrap();
    let files = Files::new("/static", tree.root())
        .unwrap()
        .cache_file_limit(64 * 1024);
    let server = start_with(config(model), move |s: Server| {
        s.get("/static/{a}", move |req| files.serve(req))
    });
    let mut c = Client::connect(server.local_addr());
    let r = get(&mut c, "/static/big.bin", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), big.len());
    assert!(r.body == big, "whole file differs");
    let r = get(
        &mut c,
        "/static/big.bin",
        "Range: bytes=1000000-1999999\r\n",
    );
    assert_eq!(r.status, 206);
    assert!(r.body == big[1_000_000..2_000_000], "range differs");
    c.send(b"HEAD /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.head_response();
    assert_eq!(r.header("content-length"), Some("3000000"));
    // Three pipelined: a file body between two small answers.
    c.send(
        b"GET /static/app.js HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /static/app.js HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(c.response().body, tree.js);
    assert!(c.response().body == big, "pipelined file differs");
    assert_eq!(c.response().body, tree.js);
    stop(server);
}
