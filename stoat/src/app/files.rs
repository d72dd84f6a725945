//! Static files: [`Files`] serves a directory under a path prefix.
//!
//! Contract:
//! - `GET`/`HEAD` `{prefix}/{relative path}` answers the file at that
//!   relative path under the root directory: `200` with `Content-Type` from
//!   the extension (`mime_guess`, overridable per extension), `ETag`
//!   (`"{mtime}-{size}"` in hex, as nginx), `Last-Modified`, `Accept-Ranges:
//!   bytes`. A directory, a missing file or a dotfile (a segment starting
//!   with `.`): `404`.
//! - Conditional requests (RFC 9110 §13.2.2): `If-None-Match` (weak
//!   comparison, `*`) → `304`; without it, `If-Modified-Since` → `304` when
//!   the file is not newer.
//! - One byte range (RFC 9110 §14.2): `Range: bytes=a-b`, `a-`, `-n` →
//!   `206` with `Content-Range`; a range that starts past the end → `416`
//!   with `Content-Range: bytes */{size}`. Several ranges, or a malformed
//!   one, are ignored (the whole file, `200`), as the RFC allows. `If-Range`
//!   with a validator that does not match also gives the whole file.
//! - Precompressed siblings: when `name.br` or `name.gz` exists beside
//!   `name` and [`negotiate`](super::negotiate) picks its coding from
//!   `Accept-Encoding`, the sibling is sent with `Content-Encoding`, its own
//!   `ETag` and `Content-Length`; every answer of a file that has siblings
//!   carries `Vary: Accept-Encoding`. Range requests get the file itself.
//! - Nothing outside the root is ever served. The path is percent-decoded
//!   once ([`decode_path`](super::decode_path)); a `..` or `.` segment, a
//!   NUL, or bytes that do not decode to UTF-8 are refused with `400`
//!   (`%2e%2e`, `%2f` and `%00` are decoded first, so they are refused the
//!   same way). The file is then opened relative to the root's descriptor
//!   with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: the kernel
//!   refuses any resolution that leaves the root, symlinks included (`404`);
//!   symlinks that stay inside the root work. On kernels without `openat2`
//!   (before 5.6) the path is canonicalized and must start with the
//!   canonical root.
//!
//! Cost and the network thread: file contents up to
//! [`Files::cache_file_limit`] (default 1 MiB, 64 MiB in all) are kept in
//! memory with their validators, so a hit is a map lookup and an `Arc`
//! clone: no system call, no disk. An entry is checked against the disk
//! (open + fstat) at most once per [`Files::revalidate`] interval (default
//! 1 s), and reread only when its size, mtime or inode changed. Misses and
//! revalidations do open/fstat/read on the thread that runs the handler;
//! where the disk may be slow, register `Files` on a pipeline
//! (`on_pipeline`), whose threads take those waits instead of a network
//! thread. A file above the cache limit is opened per request and sent
//! from the page cache with `sendfile(2)` (`runtime/file_body.rs`: calls
//! of at most 256 KiB while the socket takes them; never read into
//! memory).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::app::compress::{negotiate, Choice, Coding};
use crate::app::query::decode_path;
use crate::app::{Handler, Request, Response};
use crate::proto::Method;
use crate::runtime::{Body, FileBody};

/// Why [`Files::new`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilesError {
    /// The prefix is not `/` followed by path text without a trailing `/`.
    #[error("files prefix {0:?} must start with '/' and not end with '/' (use \"\" for the root)")]
    Prefix(String),
    /// The root directory cannot be opened.
    #[error("files root {path}: {source}")]
    Root {
        /// The directory given.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Serves the files of a directory. See the module doc.
///
/// ```no_run
/// use stoat::app::{Files, Server};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let files = Files::new("/static", "/srv/www")?.content_type("js", "application/javascript");
/// let server = Server::new(Default::default()).get("/static/{file}", move |req| files.serve(req));
/// # let _ = server; Ok(()) }
/// ```
pub struct Files {
    prefix: Box<str>,
    root: PathBuf,
    /// The canonical root (the `openat2`-less fallback compares with it).
    canonical: PathBuf,
    root_fd: OwnedFd,
    precompressed: bool,
    overrides: Vec<(Box<str>, &'static str)>,
    cache: RwLock<Cache>,
    cache_file_limit: u64,
    cache_limit: u64,
    revalidate: Duration,
    /// When the server started: cache clocks count from it.
    epoch: Instant,
}

#[derive(Default)]
struct Cache {
    map: HashMap<Box<str>, Arc<Entry>>,
    bytes: u64,
}

/// One file and its precompressed siblings.
struct Entry {
    /// Identity, brotli, gzip.
    variants: [Option<Variant>; 3],
    content_type: &'static str,
    /// When (since `epoch`) it was last checked against the disk.
    checked: Duration,
}

/// One file on disk: read into memory (`data`), or kept open (`file`) to
/// be sent with `sendfile`.
struct Variant {
    data: Arc<[u8]>,
    file: Option<Arc<File>>,
    /// The file's size.
    len: u64,
    etag: Box<str>,
    last_modified: Box<str>,
    modified: SystemTime,
    /// Size, mtime (ns) and inode: what says the file changed.
    stamp: (u64, i64, u64),
}

/// A file found but not cached (too large): read per request.
struct Loose {
    variant: Variant,
    content_type: &'static str,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("prefix", &self.prefix)
            .field("root", &self.root)
            .field("precompressed", &self.precompressed)
            .finish()
    }
}

/// Siblings, by index in [`Entry::variants`].
const SIBLINGS: [(usize, Coding); 2] = [(1, Coding::Brotli), (2, Coding::Gzip)];

impl Files {
    /// Serves the directory `root` under `prefix` (`"/static"`: the request
    /// `/static/app.js` gets `root/app.js`; `""` serves from `/`).
    pub fn new(prefix: &str, root: impl AsRef<Path>) -> Result<Files, FilesError> {
        if !prefix.is_empty() && (!prefix.starts_with('/') || prefix.ends_with('/')) {
            return Err(FilesError::Prefix(prefix.to_owned()));
        }
        let root = root.as_ref().to_path_buf();
        let err = |source| FilesError::Root {
            path: root.clone(),
            source,
        };
        let canonical = root.canonicalize().map_err(err)?;
        let root_fd = rustix::fs::open(
            &canonical,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(e.into()))?;
        Ok(Files {
            prefix: prefix.into(),
            root,
            canonical,
            root_fd,
            precompressed: true,
            overrides: Vec::new(),
            cache: RwLock::new(Cache::default()),
            cache_file_limit: 1024 * 1024,
            cache_limit: 64 * 1024 * 1024,
            revalidate: Duration::from_secs(1),
            epoch: Instant::now(),
        })
    }

    /// Whether `.br`/`.gz` siblings are looked for (default: yes).
    pub fn precompressed(mut self, on: bool) -> Files {
        self.precompressed = on;
        self
    }

    /// The `Content-Type` of files with extension `ext` (no dot, ASCII
    /// case-insensitive), instead of `mime_guess`'s.
    pub fn content_type(mut self, ext: &str, content_type: &'static str) -> Files {
        self.overrides
            .push((ext.to_ascii_lowercase().into(), content_type));
        self
    }

    /// Files up to `bytes` are cached in memory (0: none).
    pub fn cache_file_limit(mut self, bytes: u64) -> Files {
        self.cache_file_limit = bytes;
        self
    }

    /// The cache holds at most `bytes` of file contents in all.
    pub fn cache_limit(mut self, bytes: u64) -> Files {
        self.cache_limit = bytes;
        self
    }

    /// How long a cached file is served before it is checked against the
    /// disk again.
    pub fn revalidate(mut self, every: Duration) -> Files {
        self.revalidate = every;
        self
    }

    /// Answers `req` (see the module doc).
    pub fn serve(&self, req: &Request<'_>) -> Response {
        if !matches!(req.method(), Method::Get | Method::Head) {
            return Response::new(405).header("Allow", "GET, HEAD");
        }
        let rel = match self.relative(req.path_bytes()) {
            Ok(rel) => rel,
            Err(status) => return Response::new(status),
        };
        let now = self.epoch.elapsed();
        if let Some(entry) = self.cached(&rel, now) {
            return self.answer(req, &entry.variants, entry.content_type);
        }
        match self.load(&rel, now) {
            Ok(Loaded::Cached(entry)) => self.answer(req, &entry.variants, entry.content_type),
            Ok(Loaded::Loose(loose)) => {
                let variants = [Some(loose.variant), None, None];
                self.answer(req, &variants, loose.content_type)
            }
            Err(status) => Response::new(status),
        }
    }

    /// The path under the root that `path` (raw) names, decoded and
    /// checked; or the status to answer.
    fn relative(&self, path: &[u8]) -> Result<String, u16> {
        let rest = path.strip_prefix(self.prefix.as_bytes()).ok_or(404u16)?;
        if rest.first() != Some(&b'/') {
            return Err(404);
        }
        relative_path(rest)
    }

    fn cached(&self, rel: &str, now: Duration) -> Option<Arc<Entry>> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let entry = cache.map.get(rel)?;
        (now.saturating_sub(entry.checked) < self.revalidate).then(|| entry.clone())
    }

    /// Opens `rel` and its siblings, caching them when small enough
    /// (reusing what is cached when the disk has not changed).
    fn load(&self, rel: &str, now: Duration) -> Result<Loaded, u16> {
        let (file, meta) = match self.open(rel) {
            Ok(opened) => opened,
            Err(status) => {
                self.forget(rel);
                return Err(status);
            }
        };
        let content_type = self.content_type_of(rel);
        let old = {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            cache.map.get(rel).cloned()
        };
        let reuse = |i: usize, meta: &std::fs::Metadata| {
            old.as_ref()
                .and_then(|e| e.variants[i].as_ref())
                .filter(|v| v.stamp == stamp(meta))
                .map(|v| Variant {
                    data: v.data.clone(),
                    file: v.file.clone(),
                    len: v.len,
                    etag: v.etag.clone(),
                    last_modified: v.last_modified.clone(),
                    modified: v.modified,
                    stamp: v.stamp,
                })
        };
        if meta.len() > self.cache_file_limit {
            // Too large to cache: sent from the open file by sendfile.
            let variant = file_variant(file, &meta);
            return Ok(Loaded::Loose(Loose {
                variant,
                content_type,
            }));
        }
        let identity = match reuse(0, &meta) {
            Some(v) => v,
            None => read_variant(file, &meta).map_err(|_| 500u16)?,
        };
        let mut variants = [Some(identity), None, None];
        if self.precompressed && super::compressible(content_type.as_bytes()) {
            for (i, coding) in SIBLINGS {
                let name = format!("{rel}{}", coding.suffix());
                let Ok((file, meta)) = self.open(&name) else {
                    continue;
                };
                if meta.len() > self.cache_file_limit {
                    continue;
                }
                variants[i] = match reuse(i, &meta) {
                    Some(v) => Some(v),
                    None => read_variant(file, &meta).ok(),
                };
            }
        }
        let entry = Arc::new(Entry {
            variants,
            content_type,
            checked: now,
        });
        let size: u64 = entry
            .variants
            .iter()
            .flatten()
            .map(|v| v.data.len() as u64)
            .sum();
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        let old_size = cache.map.get(rel).map_or(0, |e| {
            e.variants
                .iter()
                .flatten()
                .map(|v| v.data.len() as u64)
                .sum()
        });
        if cache.bytes - old_size + size <= self.cache_limit {
            cache.bytes = cache.bytes - old_size + size;
            cache.map.insert(rel.into(), entry.clone());
        }
        Ok(Loaded::Cached(entry))
    }

    /// Drops the cache entry of `rel` (its file is gone).
    fn forget(&self, rel: &str) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = cache.map.remove(rel) {
            let size: u64 = old
                .variants
                .iter()
                .flatten()
                .map(|v| v.data.len() as u64)
                .sum();
            cache.bytes -= size;
        }
    }

    /// Opens the regular file `rel` beneath the root.
    fn open(&self, rel: &str) -> Result<(File, std::fs::Metadata), u16> {
        let fd = match rustix::fs::openat2(
            &self.root_fd,
            rel,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOSYS) => self.open_checked(rel)?,
            Err(_) => return Err(404),
        };
        let file = File::from(fd);
        let meta = file.metadata().map_err(|_| 404u16)?;
        if !meta.is_file() {
            return Err(404);
        }
        Ok((file, meta))
    }

    /// [`Files::open`] without `openat2`: the canonical path must lie
    /// under the canonical root.
    fn open_checked(&self, rel: &str) -> Result<OwnedFd, u16> {
        let path = self
            .canonical
            .join(rel)
            .canonicalize()
            .map_err(|_| 404u16)?;
        if !path.starts_with(&self.canonical) {
            return Err(404);
        }
        rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(|_| 404)
    }

    fn content_type_of(&self, rel: &str) -> &'static str {
        let ext = rel.rsplit_once('.').map_or("", |(_, ext)| ext);
        if let Some((_, ct)) = self
            .overrides
            .iter()
            .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        {
            return ct;
        }
        mime_guess::from_ext(ext)
            .first_raw()
            .unwrap_or("application/octet-stream")
    }

    /// The answer for a file whose variants are `variants`.
    fn answer(
        &self,
        req: &Request<'_>,
        variants: &[Option<Variant>; 3],
        content_type: &'static str,
    ) -> Response {
        let Some(identity) = &variants[0] else {
            return Response::new(404);
        };
        let has_siblings = variants[1].is_some() || variants[2].is_some();
        let range = req.header("range");
        // A range is over the file itself (see the module doc).
        let (variant, coding) = match (has_siblings, range) {
            (true, None) => {
                let offered: Vec<Coding> = SIBLINGS
                    .iter()
                    .filter(|(i, _)| variants[*i].is_some())
                    .map(|&(_, c)| c)
                    .collect();
                match negotiate(req.header("accept-encoding"), &offered) {
                    Choice::Coding(c) => {
                        let i = SIBLINGS
                            .iter()
                            .find(|(_, s)| *s == c)
                            .map_or(0, |(i, _)| *i);
                        (variants[i].as_ref().unwrap_or(identity), Some(c))
                    }
                    _ => (identity, None),
                }
            }
            _ => (identity, None),
        };
        let mut res = Response::new(200)
            .header("Content-Type", content_type)
            .header("ETag", String::from(&*variant.etag))
            .header("Last-Modified", String::from(&*variant.last_modified));
        if let Some(coding) = coding {
            res = res.header("Content-Encoding", coding.token());
        }
        if has_siblings {
            res = res.header("Vary", "Accept-Encoding");
        }
        if not_modified(req, variant) {
            return res.with_status(304);
        }
        res = res.header("Accept-Ranges", "bytes");
        let len = variant.len;
        if let Some(range) = range.filter(|_| if_range_holds(req, variant)) {
            match parse_range(range, len) {
                Range::Whole => {}
                Range::Unsatisfiable => {
                    return res
                        .with_status(416)
                        .header("Content-Range", format!("bytes */{len}"));
                }
                Range::Part(first, last) => {
                    let part = match &variant.file {
                        Some(file) => Body::File(FileBody::new(
                            file.clone(),
                            first,
                            (last - first + 1) as usize,
                        )),
                        None => Body::Bytes(variant.data[first as usize..=last as usize].to_vec()),
                    };
                    return res
                        .with_status(206)
                        .header("Content-Range", format!("bytes {first}-{last}/{len}"))
                        .body(part);
                }
            }
        }
        match &variant.file {
            Some(file) => res.body(Body::File(FileBody::new(file.clone(), 0, len as usize))),
            None => res.body(Body::Shared(variant.data.clone())),
        }
    }
}

impl Handler for Files {
    fn call(&self, req: &Request<'_>) -> Response {
        self.serve(req)
    }
}

enum Loaded {
    Cached(Arc<Entry>),
    Loose(Loose),
}

/// Decodes and checks the path after the prefix (starting with `/`): the
/// relative path to open, or `400`/`404`.
fn relative_path(raw: &[u8]) -> Result<String, u16> {
    let decoded = decode_path(raw).ok_or(400u16)?;
    let mut rel = String::with_capacity(decoded.len());
    for segment in decoded.split('/') {
        match segment {
            // `//` and the leading `/`: nothing to add.
            "" => continue,
            "." | ".." => return Err(400),
            s if s.contains('\0') => return Err(400),
            // Dotfiles (`.git`, `.env`) are not served.
            s if s.starts_with('.') => return Err(404),
            s => {
                if !rel.is_empty() {
                    rel.push('/');
                }
                rel.push_str(s);
            }
        }
    }
    if rel.is_empty() {
        return Err(404);
    }
    Ok(rel)
}

fn stamp(meta: &std::fs::Metadata) -> (u64, i64, u64) {
    (
        meta.len(),
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        meta.ino(),
    )
}

fn read_variant(mut file: File, meta: &std::fs::Metadata) -> io::Result<Variant> {
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut data)?;
    let mut variant = file_variant(file, meta);
    variant.file = None;
    variant.len = data.len() as u64;
    variant.data = data.into();
    Ok(variant)
}

/// A variant sent from the open `file`, not read.
fn file_variant(file: File, meta: &std::fs::Metadata) -> Variant {
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let secs = modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Variant {
        data: Arc::from(&[][..]),
        etag: format!("\"{secs:x}-{:x}\"", meta.len()).into(),
        last_modified: httpdate::fmt_http_date(modified).into(),
        modified,
        stamp: stamp(meta),
        file: Some(Arc::new(file)),
        len: meta.len(),
    }
}

/// RFC 9110 §13.1.2 and §13.1.3, for GET and HEAD: whether a `304` is the
/// answer.
fn not_modified(req: &Request<'_>, variant: &Variant) -> bool {
    if let Some(list) = req.header("if-none-match") {
        return etag_in(list, &variant.etag, false);
    }
    if let Some(since) = req.header_str("if-modified-since") {
        if let Ok(since) = httpdate::parse_http_date(since.trim()) {
            return whole_seconds(variant.modified) <= since;
        }
    }
    false
}

/// RFC 9110 §13.1.5: the range applies if `If-Range` is absent, or is the
/// (strong) entity tag, or exactly the `Last-Modified` date.
fn if_range_holds(req: &Request<'_>, variant: &Variant) -> bool {
    let Some(value) = req.header("if-range") else {
        return true;
    };
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return etag_in(value, &variant.etag, true);
    }
    value == variant.last_modified.as_bytes()
}

/// Whether `etag` is in the `If-None-Match`/`If-Range` list (`*` matches
/// any); weak comparison unless `strong`.
fn etag_in(list: &[u8], etag: &str, strong: bool) -> bool {
    let etag = etag.as_bytes();
    list.split(|&b| b == b',').any(|item| {
        let item = item.trim_ascii();
        if item == b"*" {
            return true;
        }
        match item.strip_prefix(b"W/") {
            Some(weak) => !strong && weak == etag,
            None => item == etag,
        }
    })
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// What a `Range` value asks of a representation of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// Ignore it: not one valid byte range.
    Whole,
    /// `416`.
    Unsatisfiable,
    /// Bytes `first..=last`.
    Part(u64, u64),
}

/// RFC 9110 §14.1.2: `bytes=first-last`, `bytes=first-`, `bytes=-suffix`.
fn parse_range(value: &[u8], len: u64) -> Range {
    let Some(spec) = value.trim_ascii().strip_prefix(b"bytes=") else {
        return Range::Whole;
    };
    if spec.contains(&b',') {
        // Several ranges: served whole (RFC 9110 §14.2 lets a server
        // ignore Range), which also avoids multipart bodies.
        return Range::Whole;
    }
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return Range::Whole;
    };
    let (first, last) = (spec[..dash].trim_ascii(), spec[dash + 1..].trim_ascii());
    let number = |s: &[u8]| -> Option<u64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    match (number(first), number(last)) {
        (None, Some(suffix)) if first.is_empty() => {
            if suffix == 0 || len == 0 {
                Range::Unsatisfiable
            } else {
                Range::Part(len.saturating_sub(suffix), len - 1)
            }
        }
        (Some(first), None) if last.is_empty() => {
            if first >= len {
                Range::Unsatisfiable
            } else {
                Range::Part(first, len - 1)
            }
        }
        (Some(first), Some(last)) if first <= last => {
            if first >= len {
                Range::Unsatisfiable
            } else {
                Range::Part(first, last.min(len - 1))
            }
        }
        _ => Range::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_path_table() {
        let table: &[(&[u8], Result<&str, u16>)] = &[
            (b"/app.js", Ok("app.js")),
            (b"/a/b/c.css", Ok("a/b/c.css")),
            (b"//a//b", Ok("a/b")),
            (b"/sp%20ace.txt", Ok("sp ace.txt")),
            (b"/a+b", Ok("a+b")),
            (b"/", Err(404)),
            (b"/..", Err(400)),
            (b"/../etc/passwd", Err(400)),
            (b"/a/../../etc/passwd", Err(400)),
            (b"/%2e%2e/etc/passwd", Err(400)),
            (b"/%2E%2E%2Fetc%2Fpasswd", Err(400)),
            (b"/a%2f..%2f..%2fsecret", Err(400)),
            (b"/.%2e/x", Err(400)),
            (b"/./x", Err(400)),
            (b"/x%00.js", Err(400)),
            (b"/%ff", Err(400)),
            (b"/.env", Err(404)),
            (b"/a/.git/config", Err(404)),
            // An absolute path once decoded stays under the root.
            (b"/%2fetc%2fpasswd", Ok("etc/passwd")),
        ];
        for &(raw, want) in table {
            assert_eq!(
                relative_path(raw).as_deref().map_err(|e| *e),
                want,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn range_table() {
        let table: &[(&str, u64, Range)] = &[
            ("bytes=0-0", 10, Range::Part(0, 0)),
            ("bytes=0-9", 10, Range::Part(0, 9)),
            ("bytes=2-100", 10, Range::Part(2, 9)),
            ("bytes=5-", 10, Range::Part(5, 9)),
            ("bytes=-3", 10, Range::Part(7, 9)),
            ("bytes=-30", 10, Range::Part(0, 9)),
            ("bytes=10-", 10, Range::Unsatisfiable),
            ("bytes=10-20", 10, Range::Unsatisfiable),
            ("bytes=-0", 10, Range::Unsatisfiable),
            ("bytes=0-", 0, Range::Unsatisfiable),
            ("bytes=5-2", 10, Range::Whole),
            ("bytes=0-1,3-4", 10, Range::Whole),
            ("bytes=a-b", 10, Range::Whole),
            ("bytes=-", 10, Range::Whole),
            ("items=0-1", 10, Range::Whole),
            ("bytes=+1-2", 10, Range::Whole),
            (" bytes=1-2 ", 10, Range::Part(1, 2)),
        ];
        for (value, len, want) in table {
            assert_eq!(
                &parse_range(value.as_bytes(), *len),
                want,
                "{value} of {len}"
            );
        }
    }

    #[test]
    fn etag_comparison() {
        let tag = "\"5f-10\"";
        assert!(etag_in(b"\"5f-10\"", tag, false));
        assert!(etag_in(b"W/\"5f-10\"", tag, false));
        assert!(!etag_in(b"W/\"5f-10\"", tag, true));
        assert!(etag_in(b"\"x\", \"5f-10\"", tag, true));
        assert!(etag_in(b"*", tag, false));
        assert!(!etag_in(b"\"5f-11\"", tag, false));
        assert!(!etag_in(b"5f-10", tag, false));
    }
}
