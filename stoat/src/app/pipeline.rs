//! Service pipelines: routes whose handlers may block or compute run on a
//! pipeline's own threads, never on a network thread.
//!
//! Contract:
//! - A pipeline is named in the config (`[http.pipelines.NAME]`
//!   `ring_buffer_size`, `threads`); several routes may share one.
//! - The network thread copies the whole request (head bytes and body) into
//!   a [`Job`] and moves it into the pipeline's bounded ring. A full ring is
//!   answered at once with `503 Service Unavailable` and `Retry-After`.
//! - A pipeline thread takes every job available as one batch. If the
//!   pipeline has a batch handler ([`Server::pipeline_batch`]) it sees the
//!   whole batch first and may answer any job (one fsync for many commits);
//!   each job it leaves unanswered then runs its route's handler. Answers go
//!   back to the connection's owner through the job's [`Responder`].
//! - On shutdown the ring is closed once the network threads are done;
//!   pipeline threads finish the jobs in it and exit.
//!
//! [`Server::pipeline_batch`]: super::Server::pipeline_batch

use std::fmt;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use crate::app::deferred::Responder;
use crate::app::path_tree::Captures;
use crate::app::{Handler, IntoResponse, Request, Response};
use crate::proto::RequestHead;
use crate::runtime::ring::Ring;
use crate::runtime::{ArenaSlot, RawRequest};

/// Most jobs one pipeline thread takes at once.
const MAX_BATCH: usize = 256;

/// A request that left its network thread: its own copy of the head bytes
/// and the body, and its route's handler.
pub struct Job {
    head: RequestHead,
    /// Head bytes, then the body.
    bytes: Vec<u8>,
    body: Range<usize>,
    /// The path, as a range of `bytes`, and the route's parameters in it.
    path: Range<usize>,
    captures: Captures,
    route: Arc<PipelineRoute>,
    responder: Option<Responder>,
    /// The job's request arena (empty until its handler asks).
    arena: ArenaSlot,
    /// When it was pushed into the ring (with metrics on).
    pub(crate) pushed: Option<std::time::Instant>,
}

/// A route served by a pipeline.
pub(crate) struct PipelineRoute {
    pub handler: Box<dyn Handler>,
    pub names: Box<[Box<str>]>,
}

impl Job {
    /// Copies `raw` (whose path is `path`, a slice of `raw.buf`).
    pub(crate) fn new(
        raw: &RawRequest<'_>,
        path: &[u8],
        captures: Captures,
        route: Arc<PipelineRoute>,
        responder: Responder,
    ) -> Job {
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
        Job {
            head: raw.head.clone(),
            body: head_len..bytes.len(),
            bytes,
            path,
            captures,
            route,
            responder: Some(responder),
            arena: ArenaSlot::new(),
            pushed: None,
        }
    }

    /// The request, as a handler sees it.
    pub fn request(&self) -> Request<'_> {
        let raw = RawRequest {
            head: &self.head,
            buf: &self.bytes[..self.body.start],
            body: &self.bytes[self.body.clone()],
            arena: &self.arena,
        };
        Request::routed(
            raw,
            &self.bytes[self.path.clone()],
            &self.route.names,
            self.captures.spans(),
        )
    }

    /// Runs the route's handler for this job (a panic gives 500).
    pub fn run(&self) -> Response {
        let req = self.request();
        panic::catch_unwind(AssertUnwindSafe(|| self.route.handler.call(&req)))
            .unwrap_or_else(|_| Response::new(500))
    }

    /// Answers the job. `false`: already answered, or the client is gone.
    pub fn respond(&mut self, response: impl IntoResponse) -> bool {
        match self.responder.take() {
            Some(r) => r.send(response),
            None => false,
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

    /// Takes the responder back without answering (a full ring).
    pub(crate) fn into_responder(mut self) -> Option<Responder> {
        self.responder.take()
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("bytes", &self.bytes.len())
            .field("pending", &self.is_pending())
            .finish()
    }
}

/// A pipeline's handler for whole batches. See the module doc.
pub trait BatchHandler: Send + Sync + 'static {
    /// Sees every job of one batch; jobs left pending afterwards run their
    /// route's handler.
    fn call(&self, jobs: &mut [Job]);
}

impl<F> BatchHandler for F
where
    F: Fn(&mut [Job]) + Send + Sync + 'static,
{
    fn call(&self, jobs: &mut [Job]) {
        self(jobs)
    }
}

/// One running pipeline: its ring, and what its threads run.
pub(crate) struct Pipeline {
    pub ring: Ring<Job>,
    pub batch: Option<Box<dyn BatchHandler>>,
    /// Its index among the metrics' pipelines, and the registry (when on).
    pub metrics: std::sync::OnceLock<(usize, Arc<crate::runtime::metrics::Metrics>)>,
    /// Requests answered 503 because the ring was full (rare: one shared counter).
    pub rejected: std::sync::atomic::AtomicU64,
}

impl Pipeline {
    /// A pipeline thread: takes batches until the ring is closed and empty.
    pub fn work(&self) {
        let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
        let mut rec = self.metrics.get().map(|(i, m)| (*i, m.recorder()));
        while self.ring.wait_batch(MAX_BATCH, &mut batch) > 0 {
            let picked = rec.as_ref().map(|_| Instant::now());
            if let Some(b) = &self.batch {
                let _ = panic::catch_unwind(AssertUnwindSafe(|| b.call(&mut batch)));
            }
            let batch_done = picked.map(|_| Instant::now());
            for mut job in batch.drain(..) {
                let response = (job.is_pending() && !job.is_closed()).then(|| job.run());
                // Recorded before the answer leaves, so a client that has
                // its answer finds its job counted.
                if let (Some((i, rec)), Some(picked)) = (&mut rec, picked) {
                    let answered = match (&response, batch_done) {
                        (None, Some(done)) => done,
                        _ => Instant::now(),
                    };
                    let pushed = job.pushed.unwrap_or(picked);
                    rec.pipeline_job(
                        *i,
                        picked.saturating_duration_since(pushed),
                        answered.saturating_duration_since(picked),
                    );
                }
                if let Some(response) = response {
                    job.respond(response);
                }
                // A job dropped pending answers 500 (its responder's drop).
            }
        }
    }
}
