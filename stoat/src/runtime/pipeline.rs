//! Pipeline threads: started, owned and stopped by the runtime.
//!
//! Contract:
//! - A pipeline is a bounded [`Ring`] of jobs and `threads` threads that
//!   take every job available as one batch (at most [`MAX_BATCH`]) and give
//!   it to the pipeline's work function. What a job is, and what the work
//!   does with it, is the app layer's (`app/pipeline.rs`); this file only
//!   owns the threads.
//! - [`start`] spawns all of a pipeline's threads or none: if a spawn fails,
//!   the ring is closed, the threads already started are joined, and the
//!   error is returned.
//! - [`serve`] starts every pipeline, then the network threads; the
//!   pipelines are attached to the [`ServerHandle`], which, once the
//!   network threads are done (no more jobs can come), closes each ring;
//!   the pipeline threads finish the jobs left in it and exit, and are
//!   joined. If anything fails to start, whatever did start is stopped and
//!   joined before the error is returned.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::Config;
use crate::runtime::ring::Ring;
use crate::runtime::{server, ServerHandle, Service};

/// Most jobs one pipeline thread takes at once.
pub(crate) const MAX_BATCH: usize = 256;

/// Spawns a pipeline's threads, given its name, thread count and nice.
pub(crate) type Starter = Box<dyn FnOnce(&str, usize, i32) -> io::Result<Running> + Send>;

/// What a pipeline's threads do with each batch.
pub(crate) type Work<T> = Arc<dyn Fn(&mut Vec<T>) + Send + Sync>;

/// A pipeline ready to start: its name and how to start its threads.
pub(crate) struct PipelineStart {
    /// The pipeline's name (`[http.pipelines.NAME]`).
    pub name: String,
    /// Spawns the threads (see [`start`]).
    pub start: Starter,
}

/// A started pipeline: how to stop it, and its threads.
pub(crate) struct Running {
    stop: Box<dyn FnOnce() + Send + Sync>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Closes the ring and joins the threads (they finish the queued jobs).
    pub fn stop(self) {
        (self.stop)();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Why [`serve`] failed.
#[derive(Debug)]
pub(crate) enum ServeError {
    /// A thread of pipeline `name` could not be spawned.
    Pipeline { name: String, source: io::Error },
    /// The network side could not start (bind, threads).
    Runtime(io::Error),
}

/// Starts `threads` threads named `stoat-NAME-i`, each lowering its
/// priority by `nice` and then taking batches from `ring` for `work` until
/// the ring is closed and empty. All or none: see the module doc.
pub(crate) fn start<T: Send + 'static>(
    name: &str,
    threads: usize,
    nice: i32,
    ring: Arc<Ring<T>>,
    work: Work<T>,
) -> io::Result<Running> {
    let mut joins = Vec::with_capacity(threads);
    for i in 0..threads {
        let (r, w) = (ring.clone(), work.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("stoat-{name}-{i}"))
            .spawn(move || {
                // Blocking or computing handlers must not take the CPU from
                // the network threads on a shared core
                // (`[http.pipelines.NAME] nice`).
                let _ = crate::sys::lower_current_thread_priority(nice);
                let mut batch: Vec<T> = Vec::with_capacity(MAX_BATCH);
                while r.wait_batch(MAX_BATCH, &mut batch) > 0 {
                    w(&mut batch);
                    // Jobs the work left are dropped here.
                    batch.clear();
                }
            });
        match spawned {
            Ok(t) => joins.push(t),
            Err(e) => {
                // None of the pipeline runs: the ones started exit on the
                // closed, empty ring.
                ring.close();
                for t in joins {
                    let _ = t.join();
                }
                return Err(e);
            }
        }
    }
    Ok(Running {
        stop: Box::new(move || ring.close()),
        threads: joins,
    })
}

/// Starts `pipelines` (threads and nice from `config`; a pipeline missing
/// from it is the caller's error, checked before), then the network
/// threads serving `service`. The config must have passed
/// [`Config::validate`]. See the module doc.
pub(crate) fn serve(
    config: &Config,
    service: Arc<dyn Service>,
    pipelines: Vec<PipelineStart>,
    observers: crate::runtime::Observers,
) -> Result<ServerHandle, ServeError> {
    let mut running: Vec<Running> = Vec::with_capacity(pipelines.len());
    let stop_all = |running: Vec<Running>| running.into_iter().for_each(Running::stop);
    for p in pipelines {
        let (threads, nice) = config
            .http
            .pipelines
            .get(&p.name)
            .map_or((1, 0), |pc| (pc.threads, pc.nice));
        match (p.start)(&p.name, threads, nice) {
            Ok(r) => running.push(r),
            Err(source) => {
                stop_all(running);
                return Err(ServeError::Pipeline {
                    name: p.name,
                    source,
                });
            }
        }
    }
    let mut handle = match server::start_observed(config, service, observers) {
        Ok(h) => h,
        Err(e) => {
            stop_all(running);
            return Err(ServeError::Runtime(e));
        }
    };
    for r in running {
        handle.attach(r.stop, r.threads);
    }
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Every job pushed before the stop is worked, and the stop joins.
    #[test]
    fn threads_work_every_job_then_stop() {
        let ring = Arc::new(Ring::with_capacity(64));
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        let running = start(
            "t",
            2,
            0,
            ring.clone(),
            Arc::new(move |b: &mut Vec<usize>| {
                s.fetch_add(b.drain(..).sum::<usize>(), Ordering::SeqCst);
            }),
        )
        .unwrap();
        for i in 1..=10 {
            ring.try_push(i).unwrap();
        }
        running.stop();
        assert_eq!(seen.load(Ordering::SeqCst), 55);
        assert!(ring.is_closed());
    }
}
