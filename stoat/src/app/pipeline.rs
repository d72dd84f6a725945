//! Typed service pipelines: routes whose work may block or compute run on a
//! pipeline's own threads, never on a network thread.
//!
//! Contract:
//! - A pipeline is named in the config (`[http.pipelines.NAME]`
//!   `ring_buffer_size`, `threads`, `nice`). [`Server::pipeline`] opens it
//!   with its batch handler and fails at once if the name is not
//!   configured; routes are registered on the [`Pipeline`] it returns,
//!   each with a value of the pipeline's route type `R` (an enum of your
//!   own, say) that every [`Job`] of that route carries ([`Job::route`]).
//! - The network thread copies the whole request (head bytes and body) into
//!   a [`Job`] and moves it into the pipeline's bounded ring. A full ring is
//!   answered at once with `503 Service Unavailable` and `Retry-After`.
//! - A pipeline thread (started, owned and stopped by the runtime, see
//!   `runtime/pipeline.rs`) takes every job available as one batch and
//!   gives it to the batch handler, which answers each job
//!   ([`Job::respond`], or later through [`Job::take_responder`]). A job
//!   left unanswered is answered `500`; a panic in the handler answers the
//!   batch's unanswered jobs `500`.
//! - On shutdown the ring is closed once the network threads are done;
//!   pipeline threads finish the jobs in it and exit.
//!
//! [`Server::pipeline`]: super::Server::pipeline

use std::fmt;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::app::deferred::Responder;
use crate::app::path_tree::Captures;
use crate::app::request::client_addr_given;
use crate::app::router::Kind;
use crate::app::{IntoResponse, Request, Response, SendError, Server};
use crate::proto::{Method, RequestHead};
use crate::runtime::metrics::Recorder;
use crate::runtime::pipeline::{self as threads, PipelineStart};
use crate::runtime::ring::Ring;
use crate::runtime::{ArenaSlot, ConnInfo, RawRequest, Resolved};

/// A request that left its network thread for a pipeline: its own copy of
/// the head bytes and the body, and the route it came by (`R`, the value
/// given when the route was registered).
pub struct Job<R = ()> {
    head: RequestHead,
    /// Head bytes, then the body.
    bytes: Vec<u8>,
    body: Range<usize>,
    /// The path, as a range of `bytes`, and the route's parameters in it.
    path: Range<usize>,
    captures: Captures,
    names: Arc<[Box<str>]>,
    route: R,
    responder: Option<Responder>,
    /// The job's request arena (empty until its handler asks).
    arena: ArenaSlot,
    /// The connection's peer and client addresses, resolved on the
    /// network thread (the socket cannot be asked from here).
    addrs: Resolved,
    /// When it was pushed into the ring (with metrics on).
    pub(crate) pushed: Option<std::time::Instant>,
}

impl<R: Copy> Job<R> {
    /// The route this job came by: the value its route was registered with.
    pub fn route(&self) -> R {
        self.route
    }
}

impl<R> Job<R> {
    /// The request, as a handler sees it.
    pub fn request(&self) -> Request<'_> {
        let raw = RawRequest {
            head: &self.head,
            buf: &self.bytes[..self.body.start],
            body: &self.bytes[self.body.clone()],
            arena: &self.arena,
            conn: ConnInfo::from_resolved(&self.addrs),
        };
        Request::routed(
            raw,
            &self.bytes[self.path.clone()],
            &self.names,
            self.captures.spans(),
        )
    }

    /// Answers the job. `Err(SendError::Closed(response))`: answered
    /// already, the client is gone or the deadline passed.
    pub fn respond(&mut self, response: impl IntoResponse) -> Result<(), SendError<Response>> {
        match self.responder.take() {
            Some(r) => r.send(response),
            None => Err(SendError::Closed(response.into_response())),
        }
    }

    /// Takes the job's responder, to answer later (after a group fsync,
    /// say). The job then counts as answered for the pipeline.
    pub fn take_responder(&mut self) -> Option<Responder> {
        self.responder.take()
    }

    /// Whether the job still waits for an answer.
    pub fn is_pending(&self) -> bool {
        self.responder.is_some()
    }

    /// Whether the client is gone (or the deadline passed): answering is
    /// pointless.
    pub fn is_closed(&self) -> bool {
        self.responder.as_ref().map_or(true, |r| r.is_closed())
    }
}

impl<R: fmt::Debug> fmt::Debug for Job<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("route", &self.route)
            .field("bytes", &self.bytes.len())
            .field("pending", &self.is_pending())
            .finish()
    }
}

/// A pipeline's routes, being registered: returned by
/// [`Server::pipeline`]. Each route is a method, a pattern (as
/// [`Server::route`]) and the value of `R` its jobs carry.
///
/// ```no_run
/// use stoat::app::{Job, Response, Server};
///
/// #[derive(Clone, Copy, Debug)]
/// enum Work { Resize, Status }
///
/// fn main() -> Result<(), stoat::app::StartError> {
///     let mut server = Server::default();
///     server
///         .pipeline("commit_status", |jobs: &mut [Job<Work>]| {
///             for job in jobs {
///                 let answer = match job.route() {
///                     Work::Resize => Response::text("resized"),
///                     Work::Status => Response::text("idle"),
///                 };
///                 let _ = job.respond(answer); // Err: the client left.
///             }
///         })?
///         .post("/resize", Work::Resize)
///         .get("/status", Work::Status);
///     server.run()
/// }
/// ```
///
/// [`Server::route`]: super::Server::route
/// [`Server::pipeline`]: super::Server::pipeline
pub struct Pipeline<'s, R> {
    server: &'s mut Server,
    ring: Arc<Ring<Job<R>>>,
    obs: Arc<PipelineObs>,
}

/// What the metrics read of one pipeline: its ring's depth, the 503s for
/// a full ring, and (with metrics on) where its jobs' times are recorded.
pub(crate) struct PipelineObs {
    /// Its configured name.
    pub name: String,
    /// Jobs in the ring now, and its capacity.
    pub depth: Box<dyn Fn() -> (usize, usize) + Send + Sync>,
    /// Requests answered 503 because the ring was full (rare: one shared counter).
    pub rejected: AtomicU64,
    /// Its index among the metrics' pipelines and its recorder (set at
    /// start when metrics are on; locked once per batch, never per request).
    pub metrics: OnceLock<(usize, Mutex<Recorder>)>,
}

impl PipelineObs {
    pub(crate) fn new<T: Send + 'static>(name: &str, ring: Arc<Ring<T>>) -> Arc<PipelineObs> {
        Arc::new(PipelineObs {
            name: name.to_owned(),
            depth: Box::new(move || (ring.len(), ring.capacity())),
            rejected: AtomicU64::new(0),
            metrics: OnceLock::new(),
        })
    }
}

impl<R: Copy + Send + Sync + 'static> Pipeline<'_, R> {
    pub(crate) fn new(
        server: &mut Server,
        ring: Arc<Ring<Job<R>>>,
        obs: Arc<PipelineObs>,
    ) -> Pipeline<'_, R> {
        Pipeline { server, ring, obs }
    }

    /// Routes `method` requests matching `pattern` to this pipeline, as
    /// jobs carrying `route`.
    ///
    /// # Panics
    ///
    /// As [`Server::route`](super::Server::route).
    #[track_caller]
    pub fn route(self, method: Method, pattern: &str, route: R) -> Self {
        let ring = self.ring.clone();
        let obs = self.obs.clone();
        self.server.add_kind(method, pattern, move |names| {
            Kind::Pipeline(Box::new(Entry {
                ring,
                obs,
                route,
                names: names.into(),
            }))
        });
        self
    }

    /// Routes `GET` (and `HEAD`) to this pipeline; see [`Pipeline::route`].
    #[track_caller]
    pub fn get(self, pattern: &str, route: R) -> Self {
        self.route(Method::Get, pattern, route)
    }

    /// Routes `POST` to this pipeline; see [`Pipeline::route`].
    #[track_caller]
    pub fn post(self, pattern: &str, route: R) -> Self {
        self.route(Method::Post, pattern, route)
    }

    /// Routes `PUT` to this pipeline; see [`Pipeline::route`].
    #[track_caller]
    pub fn put(self, pattern: &str, route: R) -> Self {
        self.route(Method::Put, pattern, route)
    }

    /// Routes `DELETE` to this pipeline; see [`Pipeline::route`].
    #[track_caller]
    pub fn delete(self, pattern: &str, route: R) -> Self {
        self.route(Method::Delete, pattern, route)
    }

    /// Routes `PATCH` to this pipeline; see [`Pipeline::route`].
    #[track_caller]
    pub fn patch(self, pattern: &str, route: R) -> Self {
        self.route(Method::Patch, pattern, route)
    }
}

impl<R> fmt::Debug for Pipeline<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("capacity", &self.ring.capacity())
            .finish()
    }
}

/// A batch handler that answers each job on its own with `f(request,
/// route)`, in arrival order (a panic answers that job 500): for
/// pipelines whose work is per request (blocking calls, computation).
///
/// ```no_run
/// use stoat::app::{per_job, Server};
///
/// # fn main() -> Result<(), stoat::app::StartError> {
/// let mut server = Server::default();
/// server
///     .pipeline("commit_status", per_job(|req, ()| format!("{} bytes", req.body().len())))?
///     .post("/measure", ());
/// # Ok(())
/// # }
/// ```
pub fn per_job<R, F, T>(f: F) -> impl Fn(&mut [Job<R>]) + Send + Sync + 'static
where
    R: Copy + 'static,
    F: Fn(&Request<'_>, R) -> T + Send + Sync + 'static,
    T: IntoResponse,
{
    move |jobs: &mut [Job<R>]| {
        for job in jobs {
            if job.is_closed() {
                continue;
            }
            let req = job.request();
            let response =
                panic::catch_unwind(AssertUnwindSafe(|| f(&req, job.route()).into_response()))
                    .unwrap_or_else(|_| Response::new(500));
            // Err: the client left meanwhile; nothing to do.
            let _ = job.respond(response);
        }
    }
}

/// How a pipeline's threads are started: its ring and batch handler, for
/// the runtime (`runtime/pipeline.rs`).
pub(crate) fn starter<R, F>(
    name: &str,
    ring: Arc<Ring<Job<R>>>,
    obs: Arc<PipelineObs>,
    batch: F,
) -> PipelineStart
where
    R: Send + 'static,
    F: Fn(&mut [Job<R>]) + Send + Sync + 'static,
{
    let work = Arc::new(move |jobs: &mut Vec<Job<R>>| {
        let picked = obs.metrics.get().map(|(i, rec)| {
            // Queueing (push to pick-up) is recorded before any job of the
            // batch is answered: a client that has its answer finds its
            // job counted.
            let picked = Instant::now();
            let mut rec = rec.lock().unwrap_or_else(|e| e.into_inner());
            for job in jobs.iter() {
                let pushed = job.pushed.unwrap_or(picked);
                rec.pipeline_queued(*i, picked.saturating_duration_since(pushed));
            }
            picked
        });
        // A panic leaves the unanswered jobs to their responders' drop,
        // which answers 500.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| batch(jobs)));
        if let (Some((i, rec)), Some(picked)) = (obs.metrics.get(), picked) {
            // Service: the batch's time, shared by its jobs (one clock
            // read per batch, not per job).
            let service = picked.elapsed();
            let mut rec = rec.lock().unwrap_or_else(|e| e.into_inner());
            for _ in jobs.iter() {
                rec.pipeline_service(*i, service);
            }
        }
    });
    PipelineStart {
        name: name.to_owned(),
        start: Box::new(move |name, n, nice| threads::start(name, n, nice, ring, work)),
    }
}

/// What the router keeps for a pipeline route: where its jobs go, and what
/// they carry.
pub(crate) trait Enqueue: Send + Sync {
    /// Copies `raw` (whose path is `path`, a slice of `raw.buf`) into a job
    /// and queues it; a full ring gives the responder back.
    fn enqueue(
        &self,
        raw: &RawRequest<'_>,
        path: &[u8],
        captures: Captures,
        responder: Responder,
    ) -> Result<(), Responder>;
}

/// One pipeline route.
struct Entry<R> {
    ring: Arc<Ring<Job<R>>>,
    obs: Arc<PipelineObs>,
    route: R,
    names: Arc<[Box<str>]>,
}

impl<R: Copy + Send + Sync + 'static> Enqueue for Entry<R> {
    fn enqueue(
        &self,
        raw: &RawRequest<'_>,
        path: &[u8],
        captures: Captures,
        responder: Responder,
    ) -> Result<(), Responder> {
        let head_len = raw.head.len;
        let mut bytes = Vec::with_capacity(head_len + raw.body.len());
        bytes.extend_from_slice(&raw.buf[..head_len]);
        bytes.extend_from_slice(raw.body);
        let path_start = (path.as_ptr() as usize).saturating_sub(raw.buf.as_ptr() as usize);
        let path = if path_start + path.len() <= head_len {
            path_start..path_start + path.len()
        } else {
            // The path is always inside the head; keep a valid range anyway.
            0..0
        };
        // One `getpeername` for both addresses.
        let peer = raw.conn.peer_addr();
        let job = Job {
            head: raw.head.clone(),
            body: head_len..bytes.len(),
            bytes,
            path,
            captures,
            names: self.names.clone(),
            route: self.route,
            responder: Some(responder),
            arena: ArenaSlot::new(),
            addrs: Resolved {
                peer,
                client: client_addr_given(raw, || peer),
            },
            pushed: self.obs.metrics.get().map(|_| Instant::now()),
        };
        self.ring.try_push(job).map_err(|mut job| {
            self.obs.rejected.fetch_add(1, Ordering::Relaxed);
            // `job` was built with a responder just above.
            job.responder
                .take()
                .expect("a job is built with its responder")
        })
    }
}
