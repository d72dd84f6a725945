//! [`Router`]: which handler answers a request, by method and path.
//!
//! Contract:
//! - Routes are a method and a pattern (see `path_tree.rs`:
//!   exact segments and whole-segment `{param}`s; static segments win over
//!   parameters; a trailing `/` is significant).
//! - No path matches: `404 Not Found`. The path matches but not the method:
//!   `405 Method Not Allowed` with `Allow` listing the path's methods,
//!   sorted, `HEAD` included when `GET` is there. A method the router has
//!   no name for (`Method::Other`, e.g. `PROPFIND`) on a known path: `501
//!   Not Implemented` (RFC 9110 §9.1: "unrecognized or not implemented").
//! - `HEAD` is answered by the `GET` route when there is no `HEAD` route;
//!   the protocol layer sends the GET's header fields without the body
//!   (RFC 9110 §9.3.2).
//! - A handler that panics is answered with `500`; the connection lives on.
//! - A bad pattern or a route registered twice is a programming error found
//!   at startup: `Server::route` (and every registration method) panics
//!   with the pattern and the reason, as axum does; `Server::try_route`
//!   returns the error instead.
//!
//! As a [`Service`], the router answers inline on the network thread: it
//! builds a [`Request`] (no allocation), routes it, runs the handler and
//! encodes the [`Response`] straight into the connection's output.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use crate::app::deferred::{EventStream, Responder};
use crate::app::error_page::{self, ErrorPage};
use crate::app::path_tree::{Captures, PathTree, Pattern, PatternError};
use crate::app::pipeline::Enqueue;
use crate::app::request::path_of;
use crate::app::streaming::{self, StreamingHandler};
use crate::app::websocket::WebSocket;
use crate::app::{Compression, Handler, Request, Response};
use crate::proto::encode::Header;
use crate::proto::{Method, Span};
use crate::runtime::link::Answer;
use crate::runtime::{BodySink, BodyStream, RawRequest, ResponseSink, Service};

/// The methods a route can be registered for, in slot order.
const METHODS: [Method; 9] = [
    Method::Get,
    Method::Head,
    Method::Post,
    Method::Put,
    Method::Delete,
    Method::Options,
    Method::Patch,
    Method::Trace,
    Method::Connect,
];

/// Routes requests to handlers: the table a [`Server`](super::Server)'s
/// registration methods build (the one way to add routes). Reach it with
/// [`Server::router`](super::Server::router) to answer requests without
/// sockets ([`Router::handle`]); it is the [`Service`] the runtime runs.
#[derive(Default)]
pub struct Router {
    tree: PathTree,
    /// By endpoint id (see [`PathTree::insert`]).
    endpoints: Vec<Endpoint>,
    /// Some route streams its request body (see `streaming.rs`).
    streams_bodies: bool,
    /// Method and pattern of each route, by its index (for the metrics).
    labels: Vec<(&'static str, Box<str>)>,
    /// The server's compression (`Server::compression`): applied to every
    /// inline route's response and event stream. `None`: off.
    compression: Option<Box<Compression>>,
    /// The body of the errors the router and the runtime answer by
    /// themselves (see `error_page.rs`); `None`: the default bodies.
    error_page: Option<ErrorPage>,
}

/// Everything registered for one path shape.
struct Endpoint {
    /// The pattern as first registered (for messages).
    pattern: Box<str>,
    /// By method slot (see [`METHODS`]).
    routes: [Option<Route>; METHODS.len()],
    /// The `Allow` value for a 405.
    allow: Box<str>,
}

/// One registered route.
struct Route {
    kind: Kind,
    /// Its index in registration order (the metrics' route label).
    index: u32,
    /// Its pattern's parameter names, in order.
    names: Box<[Box<str>]>,
}

/// How a route answers.
pub(crate) enum Kind {
    /// On the network thread, at once.
    Inline(Box<dyn Handler>),
    /// Suspended: the handler gets a [`Responder`] to answer from anywhere.
    Suspend(Box<dyn SuspendHandler>),
    /// A server-sent event stream, with its own compression (else the
    /// server's).
    Stream(Box<dyn StreamHandler>, Option<Box<Compression>>),
    /// Takes the request body as it arrives (see `streaming.rs`).
    BodyStream(Box<dyn StreamingHandler>),
    /// A WebSocket endpoint.
    WebSocket(Box<WebSocket>),
    /// On a pipeline's threads (see `pipeline.rs`).
    Pipeline(Box<dyn Enqueue>),
}

/// A handler that answers later: it gets the request and a [`Responder`]
/// (`Send + 'static`) to answer with from any thread. It runs on the
/// network thread, so it must only hand the work off, not do it.
pub(crate) trait SuspendHandler: Send + Sync + 'static {
    /// Starts answering `req`.
    fn call(&self, req: &Request<'_>, responder: Responder);
}

impl<F> SuspendHandler for F
where
    F: Fn(&Request<'_>, Responder) + Send + Sync + 'static,
{
    fn call(&self, req: &Request<'_>, responder: Responder) {
        self(req, responder)
    }
}

/// A handler that serves a server-sent event stream: it gets the request
/// and the [`EventStream`] (`Send + 'static`) to push events into from any
/// thread. It runs on the network thread, so it must only hand the stream
/// off. The response ends when the stream is dropped.
pub(crate) trait StreamHandler: Send + Sync + 'static {
    /// Starts the stream for `req`.
    fn call(&self, req: &Request<'_>, stream: EventStream);
}

impl<F> StreamHandler for F
where
    F: Fn(&Request<'_>, EventStream) + Send + Sync + 'static,
{
    fn call(&self, req: &Request<'_>, stream: EventStream) {
        self(req, stream)
    }
}

/// Response fields of an event stream (WHATWG HTML, "Server-sent events";
/// `X-Accel-Buffering: no` tells nginx not to buffer it).
const SSE_HEADERS: [Header<'static>; 3] = [
    Header {
        name: "Content-Type",
        value: b"text/event-stream",
    },
    Header {
        name: "Cache-Control",
        value: b"no-cache",
    },
    Header {
        name: "X-Accel-Buffering",
        value: b"no",
    },
];

/// Why a route was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The pattern is malformed.
    #[error("invalid route pattern {pattern:?}: {source}")]
    Pattern {
        /// The pattern given.
        pattern: String,
        /// What is wrong with it.
        source: PatternError,
    },
    /// A route with this method and pattern shape exists already.
    #[error("duplicate route: {method} {pattern:?} (already registered as {existing:?})")]
    Duplicate {
        /// The method.
        method: &'static str,
        /// The pattern given.
        pattern: String,
        /// The pattern registered first.
        existing: String,
    },
    /// Routes are registered for named methods only, not `Method::Other`.
    #[error("route for {pattern:?}: Method::Other cannot be routed")]
    UnnamedMethod {
        /// The pattern given.
        pattern: String,
    },
}

/// What routing found for a method and path.
enum Routed<'r> {
    /// This route.
    Found(&'r Route),
    /// No route has the path.
    NotFound,
    /// The path has routes, not for this method: the `Allow` value.
    MethodNotAllowed(&'r str),
    /// A method with no name on a known path.
    NotImplemented,
}

impl Router {
    /// Adds a route: `kind` gets the pattern's parameter names. The one
    /// way routes are added; `Server`'s registration methods build the
    /// kinds.
    pub(crate) fn add(
        &mut self,
        method: Method,
        pattern: &str,
        kind: impl FnOnce(Box<[Box<str>]>) -> Kind,
    ) -> Result<(), RouteError> {
        let streams = &mut self.streams_bodies;
        let kind = |names| {
            let kind = kind(names);
            if matches!(kind, Kind::BodyStream(_)) {
                *streams = true;
            }
            kind
        };
        Self::insert(
            &mut self.tree,
            &mut self.endpoints,
            &mut self.labels,
            method,
            pattern,
            kind,
        )
    }

    /// Sets the server-wide compression (see `compression`).
    pub(crate) fn set_compression(&mut self, compression: Option<Compression>) {
        self.compression = compression.map(Box::new);
    }

    /// Whether the server-wide compression is set.
    pub(crate) fn has_compression(&self) -> bool {
        self.compression.is_some()
    }

    /// Method and pattern of every route, by route index.
    pub(crate) fn route_labels(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.labels.iter().map(|(m, p)| (*m, &**p))
    }

    fn insert(
        tree: &mut PathTree,
        endpoints: &mut Vec<Endpoint>,
        labels: &mut Vec<(&'static str, Box<str>)>,
        method: Method,
        pattern: &str,
        kind: impl FnOnce(Box<[Box<str>]>) -> Kind,
    ) -> Result<(), RouteError> {
        let (Some(slot), Some(name)) = (slot(method), method.as_str()) else {
            return Err(RouteError::UnnamedMethod {
                pattern: pattern.to_owned(),
            });
        };
        let parsed = Pattern::parse(pattern).map_err(|source| RouteError::Pattern {
            pattern: pattern.to_owned(),
            source,
        })?;
        let id = tree.insert(&parsed);
        if id == endpoints.len() {
            endpoints.push(Endpoint {
                pattern: pattern.into(),
                routes: Default::default(),
                allow: "".into(),
            });
        }
        let endpoint = &mut endpoints[id];
        if endpoint.routes[slot].is_some() {
            return Err(RouteError::Duplicate {
                method: name,
                pattern: pattern.to_owned(),
                existing: endpoint.pattern.to_string(),
            });
        }
        let names: Box<[Box<str>]> = parsed.names().into();
        endpoint.routes[slot] = Some(Route {
            kind: kind(names.clone()),
            index: labels.len() as u32,
            names,
        });
        labels.push((name, pattern.into()));
        endpoint.allow = allow(&endpoint.routes).into();
        Ok(())
    }

    /// Answers one request: routes it, runs the handler, and returns the
    /// response (404, 405, 501 or 500 as the module doc says). This is what
    /// the server runs per request; call it directly to test an app
    /// without sockets.
    #[inline]
    pub fn handle(&self, raw: &RawRequest<'_>) -> Response {
        let mut caps = Captures::default();
        let (path, id) = self.find(raw, &mut caps);
        match self.route_for(raw.head.method, id) {
            Routed::Found(route) => {
                let Kind::Inline(handler) = &route.kind else {
                    // Suspended, streamed and pipelined routes need the
                    // runtime (`Service::call`).
                    return self.engine_error(Response::new(500));
                };
                let req = Request::routed(*raw, path, &route.names, caps.spans());
                // The handler is user code: a panic must not take the
                // network thread (and its other connections) down.
                let res = panic::catch_unwind(AssertUnwindSafe(|| handler.call(&req)))
                    .unwrap_or_else(|_| self.engine_error(Response::new(500)));
                match &self.compression {
                    Some(c) => c.apply_inline(&req, res),
                    None => res,
                }
            }
            Routed::NotFound => self.engine_error(Response::new(404)),
            Routed::MethodNotAllowed(allow) => {
                // RFC 9110 §15.5.6: the origin server MUST generate an Allow
                // header field in a 405 response.
                self.engine_error(Response::new(405).header("Allow", allow.to_owned()))
            }
            Routed::NotImplemented => self.engine_error(Response::new(501)),
        }
    }

    /// Sets the body of the errors the engine answers by itself (see
    /// `error_page.rs`).
    pub(crate) fn set_error_page(&mut self, page: ErrorPage) {
        self.error_page = Some(page);
    }

    /// `response`, an error the engine generated, with the error page's
    /// body when one is set. Off the hot path: only errors come here.
    #[cold]
    #[inline(never)]
    fn engine_error(&self, response: Response) -> Response {
        match &self.error_page {
            Some(page) => {
                let message = error_page::message(response.status());
                page.apply(response, message)
            }
            None => response,
        }
    }

    /// The request's path and its endpoint, parameter values in `caps`.
    #[inline(always)]
    fn find<'a>(&self, raw: &RawRequest<'a>, caps: &mut Captures) -> (&'a [u8], Option<usize>) {
        let target = raw.head.target.of(raw.buf);
        // An exact route holds no `?`: a target equal to one is a path
        // without a query, found without looking for the query first.
        if let Some(id) = self.tree.find_exact(target) {
            return (target, Some(id));
        }
        self.find_path(raw, target, caps)
    }

    /// [`Router::find`] past the exact match of the whole target: the
    /// path without the query, then the patterns (out of line, so the
    /// exact lookup stays small).
    #[inline(never)]
    fn find_path<'a>(
        &self,
        raw: &RawRequest<'a>,
        target: &'a [u8],
        caps: &mut Captures,
    ) -> (&'a [u8], Option<usize>) {
        let path = path_of(raw);
        let id = if path.len() == target.len() {
            // The path is the whole target: no exact route has it.
            self.tree.find_pattern(path, caps)
        } else {
            self.tree.find(path, caps)
        };
        (path, id)
    }

    /// Finds the route for `method` and `path`; parameter values go into
    /// `caps`.
    #[cfg(test)]
    fn resolve(&self, method: Method, path: &[u8], caps: &mut Captures) -> Routed<'_> {
        self.route_for(method, self.tree.find(path, caps))
    }

    /// The route of endpoint `id` for `method`.
    #[inline]
    fn route_for(&self, method: Method, id: Option<usize>) -> Routed<'_> {
        let Some(id) = id else {
            return Routed::NotFound;
        };
        let endpoint = &self.endpoints[id];
        let Some(slot) = slot(method) else {
            return Routed::NotImplemented;
        };
        let route = match &endpoint.routes[slot] {
            Some(route) => route,
            // RFC 9110 §9.3.2: HEAD is GET without the body.
            None if method == Method::Head => match &endpoint.routes[0] {
                Some(route) => route,
                None => return Routed::MethodNotAllowed(&endpoint.allow),
            },
            None => return Routed::MethodNotAllowed(&endpoint.allow),
        };
        Routed::Found(route)
    }
}

/// An inline route's response through the server's compression (out of
/// line: the uncompressed path stays small).
#[cold]
#[inline(never)]
fn send_compressed(c: &Compression, req: &Request<'_>, res: Response, sink: &mut ResponseSink<'_>) {
    c.apply_inline(req, res).send(sink)
}

impl Service for Router {
    /// A late answer is the `Response` a `Responder` (or a pipeline job)
    /// left (app/deferred.rs).
    fn answer_late(&self, answer: Answer, res: &mut ResponseSink<'_>) {
        if let Ok(response) = answer.downcast::<Response>() {
            response.send(res);
        }
    }

    fn error_body(&self, status: u16, message: &str) -> Option<(&str, Vec<u8>)> {
        let page = self.error_page.as_ref()?;
        Some((page.content_type(), page.render(status, message)))
    }

    fn open_stream(
        &self,
        raw: &RawRequest<'_>,
        res: &mut BodySink<'_>,
    ) -> Option<Box<dyn BodyStream>> {
        self.open_body_stream(raw, res)
    }

    #[inline]
    fn call(&self, raw: &RawRequest<'_>, sink: &mut ResponseSink<'_>) {
        let target = raw.head.target.of(raw.buf);
        // An exact route holds no `?` and no parameter: a target equal to
        // one is its whole path, served with no captures to set up.
        match self.tree.find_exact(target) {
            Some(id) => self.serve(raw, target, Some(id), &[], sink),
            None => self.call_pattern(raw, target, sink),
        }
    }
}

impl Router {
    /// [`Service::call`] past the exact match of the whole target: the
    /// path without its query, then the patterns with their captures (out
    /// of line, so the exact route's path stays small).
    #[inline(never)]
    fn call_pattern(&self, raw: &RawRequest<'_>, target: &[u8], sink: &mut ResponseSink<'_>) {
        let mut caps = Captures::default();
        let (path, id) = self.find_path(raw, target, &mut caps);
        self.serve(raw, path, id, caps.spans(), sink);
    }

    /// Runs endpoint `id`'s route for the request's method (or answers
    /// 404, 405 or 501): `path` is the request's path, `captures` the
    /// values of the route's parameters in it.
    #[inline(always)]
    fn serve(
        &self,
        raw: &RawRequest<'_>,
        path: &[u8],
        id: Option<usize>,
        captures: &[Span],
        sink: &mut ResponseSink<'_>,
    ) {
        let route = match self.route_for(raw.head.method, id) {
            Routed::Found(route) => route,
            _ => return self.handle(raw).send(sink),
        };
        sink.set_route(route.index);
        match &route.kind {
            Kind::Inline(handler) => {
                let req = Request::routed(*raw, path, &route.names, captures);
                // The handler is user code: a panic must not take the
                // network thread (and its other connections) down. Its
                // response is sent inside the guard, where it was built
                // (not moved out through the guard's result first).
                let sent = panic::catch_unwind(AssertUnwindSafe(|| {
                    let res = handler.call(&req);
                    match &self.compression {
                        Some(c) => send_compressed(c, &req, res, sink),
                        None => res.send(sink),
                    }
                }));
                if sent.is_err() && !sink.is_sent() {
                    self.engine_error(Response::new(500)).send(sink);
                }
            }
            Kind::Suspend(handler) => {
                let Some(link) = sink.suspend() else {
                    return self.engine_error(Response::new(500)).send(sink);
                };
                let req = Request::routed(*raw, path, &route.names, captures);
                // A panic drops the responder, which answers 500.
                let _ = panic::catch_unwind(AssertUnwindSafe(|| {
                    handler.call(&req, Responder::new(link))
                }));
            }
            Kind::Stream(handler, own) => {
                let req = Request::routed(*raw, path, &route.names, captures);
                let last_id = req.header_str("last-event-id").map(str::to_owned);
                // Compressed, every byte of the stream goes through the
                // coder, heartbeats included (see `runtime/link.rs`).
                let compression = own.as_deref().or(self.compression.as_deref());
                let coder = compression.and_then(|c| c.stream_coder(&req));
                let mut headers = [SSE_HEADERS[0]; SSE_HEADERS.len() + 2];
                headers[..SSE_HEADERS.len()].copy_from_slice(&SSE_HEADERS);
                let mut n = SSE_HEADERS.len();
                if compression.is_some_and(|c| c.is_on()) {
                    headers[n] = Header {
                        name: "Vary",
                        value: b"Accept-Encoding",
                    };
                    n += 1;
                }
                if let Some((coding, _)) = &coder {
                    headers[n] = Header {
                        name: "Content-Encoding",
                        value: coding.token().as_bytes(),
                    };
                    n += 1;
                }
                let Some(link) = sink.stream(200, &headers[..n]) else {
                    // A HEAD request: the head alone was sent.
                    return;
                };
                if let Some((_, coder)) = coder {
                    link.set_coder(coder);
                }
                let _ = panic::catch_unwind(AssertUnwindSafe(|| {
                    handler.call(&req, EventStream::new(link, last_id))
                }));
            }
            Kind::BodyStream(handler) => {
                // A request without a body: the body's end comes at once.
                let req = Request::routed(*raw, path, &route.names, captures);
                sink.streamed(raw.arena, |res| {
                    streaming::open(&**handler, &req, res).end(res);
                });
            }
            Kind::WebSocket(endpoint) => {
                let req = Request::routed(*raw, path, &route.names, captures);
                endpoint.accept(&req, sink);
            }
            Kind::Pipeline(queue) => {
                let Some(link) = sink.suspend() else {
                    return self.engine_error(Response::new(500)).send(sink);
                };
                let responder = Responder::new(link.clone());
                if let Err(responder) = queue.enqueue(raw, path, Captures::of(captures), responder)
                {
                    // Full: answer at once, without waking anyone.
                    responder.disarm();
                    sink.unsuspend(&link);
                    // RFC 9110 §15.6.4 and §10.2.3: 503 with Retry-After.
                    self.engine_error(
                        Response::text("the service is busy; retry shortly\n")
                            .with_status(503)
                            .header("Retry-After", "1"),
                    )
                    .send(sink);
                }
            }
        }
    }
}

impl Router {
    /// The consumer of a request's body, when its route streams it.
    fn open_body_stream(
        &self,
        raw: &RawRequest<'_>,
        res: &mut BodySink<'_>,
    ) -> Option<Box<dyn BodyStream>> {
        if !self.streams_bodies {
            return None;
        }
        let mut caps = Captures::default();
        let (path, id) = self.find(raw, &mut caps);
        let Routed::Found(route) = self.route_for(raw.head.method, id) else {
            return None;
        };
        let Kind::BodyStream(handler) = &route.kind else {
            return None;
        };
        let req = Request::routed(*raw, path, &route.names, caps.spans());
        Some(streaming::open(&**handler, &req, res))
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for endpoint in &self.endpoints {
            for (method, route) in METHODS.iter().zip(&endpoint.routes) {
                if route.is_some() {
                    list.entry(&format_args!(
                        "{} {}",
                        method.as_str().unwrap_or("?"),
                        endpoint.pattern
                    ));
                }
            }
        }
        list.finish()
    }
}

/// The slot of a method in [`Endpoint::routes`].
#[inline]
fn slot(method: Method) -> Option<usize> {
    Some(match method {
        Method::Get => 0,
        Method::Head => 1,
        Method::Post => 2,
        Method::Put => 3,
        Method::Delete => 4,
        Method::Options => 5,
        Method::Patch => 6,
        Method::Trace => 7,
        Method::Connect => 8,
        Method::Other => return None,
    })
}

/// The `Allow` value for an endpoint: its methods, with HEAD when GET is
/// there, sorted, comma-separated (RFC 9110 §10.2.1: `Allow = #method`).
fn allow(routes: &[Option<Route>; METHODS.len()]) -> String {
    let mut names: Vec<&str> = METHODS
        .iter()
        .zip(routes)
        .filter(|(_, route)| route.is_some())
        .filter_map(|(method, _)| method.as_str())
        .collect();
    if routes[0].is_some() && routes[1].is_none() {
        names.push("HEAD");
    }
    names.sort_unstable();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::app::request::tests::head;
    use crate::app::Body;
    use crate::app::Server;
    use crate::proto::{Conn, DateCache, Event, Limits, RequestHead};
    use crate::runtime::outbox::Outbox;
    use crate::runtime::ArenaSlot;

    /// A router whose handlers answer with their own name.
    fn router() -> Router {
        Server::default()
            .get("/", |_| "root")
            .get("/plaintext", |_| "plain")
            .post("/plaintext", |_| "plain-post")
            .get("/users/{id}", |_| "user")
            .delete("/users/{uid}", |_| "user-delete")
            .get("/users/me", |_| "me")
            .get("/users/{id}/posts/{post}", |_| "post")
            .put("/kv/{key}", |_| "kv-put")
            .patch("/kv/{key}", |_| "kv-patch")
            .route(Method::Head, "/only-head", |_| "head")
            .route(Method::Options, "/opt", |_| "opt")
            .get("/dir/", |_| "dir")
            .into_router()
    }

    /// What routing `method path` gives: the handler's answer and the
    /// parameters, or the status and the `Allow` value.
    fn route(r: &Router, method: &str, target: &str) -> (String, Vec<(String, String)>) {
        let buf = format!("{method} {target} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes();
        let head = head(&buf);
        let raw = RawRequest {
            head: &head,
            buf: &buf,
            body: b"",
            arena: &ArenaSlot::new(),
            conn: Default::default(),
        };
        let path = path_of(&raw);
        let mut caps = Captures::default();
        match r.resolve(head.method, path, &mut caps) {
            Routed::Found(route) => {
                let Kind::Inline(handler) = &route.kind else {
                    panic!("not inline");
                };
                let req = Request::routed(raw, path, &route.names, caps.spans());
                let res = handler.call(&req);
                let params = req
                    .params()
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .collect();
                (
                    String::from_utf8(res.body_bytes().to_vec()).unwrap(),
                    params,
                )
            }
            Routed::NotFound => ("404".into(), vec![]),
            Routed::MethodNotAllowed(allow) => (format!("405 {allow}"), vec![]),
            Routed::NotImplemented => ("501".into(), vec![]),
        }
    }

    fn answer(r: &Router, method: &str, target: &str) -> String {
        route(r, method, target).0
    }

    fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn exact_and_param_routes() {
        let r = router();
        assert_eq!(route(&r, "GET", "/"), ("root".into(), vec![]));
        assert_eq!(answer(&r, "GET", "/plaintext"), "plain");
        assert_eq!(answer(&r, "POST", "/plaintext"), "plain-post");
        assert_eq!(answer(&r, "GET", "/plaintext?x=1"), "plain");
        assert_eq!(answer(&r, "GET", "http://h/plaintext"), "plain");
        assert_eq!(
            route(&r, "GET", "/users/42"),
            ("user".into(), params(&[("id", "42")]))
        );
        // Each route keeps its own parameter names.
        assert_eq!(
            route(&r, "DELETE", "/users/42"),
            ("user-delete".into(), params(&[("uid", "42")]))
        );
        assert_eq!(
            route(&r, "GET", "/users/7/posts/x%2Fy?z"),
            ("post".into(), params(&[("id", "7"), ("post", "x%2Fy")]))
        );
        assert_eq!(answer(&r, "PUT", "/kv/k"), "kv-put");
        assert_eq!(answer(&r, "PATCH", "/kv/k"), "kv-patch");
        assert_eq!(answer(&r, "OPTIONS", "/opt"), "opt");
    }

    #[test]
    fn static_wins_over_param() {
        let r = router();
        assert_eq!(route(&r, "GET", "/users/me"), ("me".into(), vec![]));
        // DELETE has no static `me` route: the parameter route answers.
        assert_eq!(
            route(&r, "DELETE", "/users/me"),
            ("405 GET, HEAD".into(), vec![])
        );
    }

    #[test]
    fn not_found() {
        let r = router();
        for target in [
            "/nope",
            "/plaintext/",
            "/PLAINTEXT",
            "/users",
            "/users/",
            "/users/1/posts",
            "/users/1/posts/",
            "/dir",
            "//",
            "*",
        ] {
            assert_eq!(answer(&r, "GET", target), "404", "{target}");
        }
        assert_eq!(answer(&r, "GET", "/dir/"), "dir");
        assert_eq!(answer(&Router::default(), "GET", "/"), "404");
    }

    #[test]
    fn method_not_allowed_lists_methods() {
        let r = router();
        assert_eq!(answer(&r, "DELETE", "/"), "405 GET, HEAD");
        assert_eq!(answer(&r, "PUT", "/plaintext"), "405 GET, HEAD, POST");
        assert_eq!(answer(&r, "GET", "/kv/a"), "405 PATCH, PUT");
        assert_eq!(answer(&r, "HEAD", "/kv/a"), "405 PATCH, PUT");
        assert_eq!(answer(&r, "POST", "/users/1"), "405 DELETE, GET, HEAD");
        assert_eq!(answer(&r, "GET", "/only-head"), "405 HEAD");
        assert_eq!(answer(&r, "TRACE", "/opt"), "405 OPTIONS");
    }

    #[test]
    fn head_falls_back_to_get() {
        let r = router();
        assert_eq!(answer(&r, "HEAD", "/plaintext"), "plain");
        assert_eq!(
            route(&r, "HEAD", "/users/3"),
            ("user".into(), params(&[("id", "3")]))
        );
        assert_eq!(answer(&r, "HEAD", "/only-head"), "head");
        // A HEAD route of its own wins over GET.
        let r = Server::default()
            .get("/x", |_| "get")
            .route(Method::Head, "/x", |_| "head")
            .into_router();
        assert_eq!(answer(&r, "HEAD", "/x"), "head");
        assert_eq!(answer(&r, "POST", "/x"), "405 GET, HEAD");
    }

    #[test]
    fn unnamed_method_is_not_implemented() {
        let r = router();
        assert_eq!(answer(&r, "PROPFIND", "/plaintext"), "501");
        assert_eq!(answer(&r, "PROPFIND", "/nope"), "404");
    }

    #[test]
    fn route_errors() {
        let mut r = Server::default();
        r.try_route(Method::Get, "/a/{x}", |_| "").unwrap();
        assert_eq!(
            r.try_route(Method::Get, "/a/{y}", |_| ""),
            Err(RouteError::Duplicate {
                method: "GET",
                pattern: "/a/{y}".into(),
                existing: "/a/{x}".into()
            })
        );
        r.try_route(Method::Post, "/a/{y}", |_| "").unwrap();
        assert!(matches!(
            r.try_route(Method::Get, "a", |_| ""),
            Err(RouteError::Pattern {
                source: PatternError::NoLeadingSlash,
                ..
            })
        ));
        assert!(matches!(
            r.try_route(Method::Other, "/b", |_| ""),
            Err(RouteError::UnnamedMethod { .. })
        ));
        assert_eq!(format!("{:?}", r.router()), "[GET /a/{x}, POST /a/{x}]");
    }

    #[test]
    #[should_panic(expected = "invalid route pattern \"/a/{id\"")]
    fn bad_pattern_panics() {
        let _ = Server::default().get("/a/{id", |_| "");
    }

    #[test]
    #[should_panic(expected = "duplicate route: GET \"/a\"")]
    fn duplicate_route_panics() {
        let _ = Server::default().get("/a", |_| "").get("/a", |_| "");
    }

    /// Serves `request` (a whole request, body included) through the
    /// router as the runtime does, and returns the bytes written.
    fn serve(router: &Router, request: &[u8]) -> String {
        let now = Instant::now();
        let limits = Limits::default();
        let mut conn = Conn::new(now);
        let mut head = RequestHead::default();
        let (mut at, event) = conn.poll(request, now, &limits, &mut head).unwrap();
        let mut body = Vec::new();
        if event == (Event::Head { complete: false }) {
            loop {
                let (n, event) = conn.poll(&request[at..], now, &limits, &mut head).unwrap();
                match event {
                    Event::Body(range) => body.extend_from_slice(&request[at..][range]),
                    Event::BodyEnd => break,
                    e => panic!("unexpected {e:?}"),
                }
                at += n;
            }
        } else {
            assert_eq!(event, Event::Head { complete: true });
        }
        let mut out = Outbox::default();
        let date = DateCache::new(784111777);
        let running = std::sync::atomic::AtomicBool::new(false);
        let mut memo = crate::proto::encode::HeadMemo::default();
        let mut sink = ResponseSink {
            conn: &mut conn,
            out: &mut out,
            date: &date,
            server: b"stoat",
            memo: &mut memo,
            now,
            sent: false,
            stopping: &running,
            link: None,
            route: u32::MAX,
            status: 0,
        };
        let raw = RawRequest {
            head: &head,
            buf: request,
            body: &body,
            arena: &ArenaSlot::new(),
            conn: Default::default(),
        };
        router.call(&raw, &mut sink);
        assert!(sink.is_sent());
        let mut iov = Vec::new();
        out.slices(&mut iov);
        let bytes: Vec<u8> = iov.iter().flat_map(|s| s.iter().copied()).collect();
        String::from_utf8(bytes).unwrap()
    }

    const DATE: &str = "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";

    /// The preformatted heads of the common constructors say what the
    /// general encoder would, and changing the status or content type, or
    /// adding a field, leaves the preset.
    #[test]
    fn preset_heads_match_their_fields() {
        let r = Server::default()
            .get("/text", |_| Response::text("t"))
            .get("/html", |_| Response::html("<p>"))
            .get("/json", |_| Response::json_bytes("{}"))
            .get("/bytes", |_| Response::bytes(&b"\x00\x01"[..]))
            .get("/created", |_| Response::text("c").with_status(201))
            .get("/csv", |_| {
                Response::text("a,b").header("Content-Type", "text/csv")
            })
            .get("/extra", |_| Response::json_bytes("[]").header("X-A", "1"))
            .into_router();
        let cases = [
            ("/text", "200 OK", "text/plain; charset=utf-8", "", "t"),
            ("/html", "200 OK", "text/html; charset=utf-8", "", "<p>"),
            ("/json", "200 OK", "application/json", "", "{}"),
            (
                "/bytes",
                "200 OK",
                "application/octet-stream",
                "",
                "\x00\x01",
            ),
            (
                "/created",
                "201 Created",
                "text/plain; charset=utf-8",
                "",
                "c",
            ),
            ("/csv", "200 OK", "text/csv", "", "a,b"),
            ("/extra", "200 OK", "application/json", "X-A: 1\r\n", "[]"),
        ];
        for (path, status, content_type, extra, body) in cases {
            let out = serve(
                &r,
                format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
            );
            assert_eq!(
                out,
                format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{extra}\
                     Content-Length: {}\r\nServer: stoat\r\n{DATE}{body}",
                    body.len()
                ),
                "{path}"
            );
        }
    }

    #[test]
    fn serves_plaintext() {
        let r = Server::default()
            .get("/plaintext", |_| Response::text("Hello, World!"))
            .into_router();
        let out = serve(&r, b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            out,
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: 13\r\nServer: stoat\r\n{DATE}Hello, World!"
            )
        );
        // HEAD: the GET's fields, no body.
        let out = serve(&r, b"HEAD /plaintext HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            out,
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: 13\r\nServer: stoat\r\n{DATE}"
            )
        );
    }

    #[test]
    fn serves_headers_and_echo() {
        let r = Server::default()
            .post("/echo/{name}", |req| {
                Response::bytes(req.body().to_vec())
                    .with_status(201)
                    .header("X-Name", req.param("name").unwrap_or("").to_owned())
                    .header("Content-Length", "1")
                    .header("Connection", "close")
            })
            .into_router();
        let out = serve(
            &r,
            b"POST /echo/bob HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert_eq!(
            out,
            format!(
                "HTTP/1.1 201 Created\r\nContent-Type: application/octet-stream\r\n\
                 X-Name: bob\r\nContent-Length: 5\r\nConnection: close\r\n\
                 Server: stoat\r\n{DATE}hello"
            )
        );
    }

    #[test]
    fn serves_many_headers() {
        let r = Server::default()
            .get("/many/{n}", |req| {
                let n: usize = req.param("n").and_then(|n| n.parse().ok()).unwrap_or(0);
                let mut res = Response::ok();
                for i in 0..n {
                    res.append_header("X-I", i).unwrap();
                }
                res
            })
            .into_router();
        for n in [1, 15, 16, 40] {
            let out = serve(
                &r,
                format!("GET /many/{n} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
            );
            assert_eq!(out.matches("\r\nX-I: ").count(), n, "{out}");
            assert!(out.contains(&format!("X-I: {}\r\nContent-Length: 0\r\n", n - 1)));
        }
    }

    #[test]
    fn serves_errors() {
        let r = Server::default()
            .get("/a", |_| "a")
            .post("/a", |_| "a")
            .get("/panic", |_| -> &'static str { panic!("handler bug") })
            .into_router();
        let out = serve(&r, b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(
            out.starts_with("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"),
            "{out}"
        );
        let out = serve(&r, b"DELETE /a HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(
            out.starts_with(
                "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD, POST\r\nContent-Length: 0\r\n"
            ),
            "{out}"
        );
        let out = serve(&r, b"BREW /a HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 501 Not Implemented\r\n"), "{out}");
        let out = serve(&r, b"GET /panic HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(
            out.starts_with("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"),
            "{out}"
        );
        assert!(!out.contains("close"), "the connection lives on: {out}");
    }

    /// `handle` looks paths up in three ways (exact target, path without
    /// query, parameter pattern); they agree with `resolve`.
    #[test]
    fn handle_agrees_with_resolve() {
        let r = router();
        for method in [
            "GET", "HEAD", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "BREW",
        ] {
            for target in [
                "/",
                "/?",
                "/plaintext",
                "/plaintext?a=1",
                "/plaintext/?a",
                "http://h/plaintext?q",
                "http://h",
                "/users/me",
                "/users/me?x=/users/7",
                "/users/7",
                "/users/7?",
                "/users/7/posts/8?x#y",
                "/kv/k",
                "/dir/?",
                "/only-head",
                "/opt",
                "/nope?/plaintext",
                "*",
            ] {
                let (want, params) = route(&r, method, target);
                let buf = format!("{method} {target} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes();
                let head = head(&buf);
                let raw = RawRequest {
                    head: &head,
                    buf: &buf,
                    body: b"",
                    arena: &ArenaSlot::new(),
                    conn: Default::default(),
                };
                let res = r.handle(&raw);
                let got = match res.status() {
                    200 => String::from_utf8(res.body_bytes().to_vec()).unwrap(),
                    405 => format!(
                        "405 {}",
                        String::from_utf8_lossy(res.header_value("allow").unwrap())
                    ),
                    status => status.to_string(),
                };
                assert_eq!(got, want, "{method} {target}");
                if !params.is_empty() {
                    let mut caps = Captures::default();
                    let path = path_of(&raw);
                    assert!(r.tree.find(path, &mut caps).is_some());
                    assert_eq!(caps.spans().len(), params.len(), "{method} {target}");
                }
            }
        }
    }

    #[test]
    fn handle_without_sockets() {
        let r = Server::default()
            .get("/users/{id}", |req| {
                Response::text(format!("user {}", req.param("id").unwrap_or("?")))
            })
            .into_router();
        let buf = b"GET /users/9 HTTP/1.1\r\nHost: h\r\n\r\n";
        let head = head(buf);
        let res = r.handle(&RawRequest {
            head: &head,
            buf,
            body: b"",
            arena: &ArenaSlot::new(),
            conn: Default::default(),
        });
        assert_eq!((res.status(), res.body_bytes()), (200, &b"user 9"[..]));
        assert!(matches!(res.into_body(), Body::Bytes(_)));
    }
}
