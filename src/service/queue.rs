//! What the handles and the worker share: the queue, its admission rules,
//! and the counters.

use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use futures_channel::oneshot;
use parking_lot::{Condvar, Mutex};

use super::config::ServiceConfig;
use super::metrics::{Counters, Kind};
use super::pending::Answer;
use crate::batch::BatchEmbedder;
use crate::embedder::{Embedder, Reranker, Tokens};
use crate::error::Error;
use crate::memory::MemoryBudget;
use crate::rerank::PairLane;

/// One accepted request: its texts as tokenized at admission (the only
/// time they are), and where its answer goes.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) kind: Kind,
    pub(crate) texts: Vec<Tokens>,
    pub(crate) tokens: usize,
    /// Where the answer goes (the worker takes it when it takes the request).
    pub(crate) tx: Option<oneshot::Sender<Answer>>,
    pub(crate) arrived: Instant,
    /// The caller's span at admission (a server's request span): the
    /// worker says in it which batches ran the request's texts.
    pub(crate) span: tracing::Span,
}

/// Whether the service takes work.
#[derive(Debug, Clone)]
pub(crate) enum Status {
    Open,
    /// No new work; what is queued runs until `until` (if any).
    Draining {
        until: Option<Instant>,
    },
    /// No work at all: every request gets this error.
    Closed(Error),
}

/// The queue and the worker's state, under one lock.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) requests: VecDeque<Request>,
    /// Tokens and texts of `requests`.
    pub(crate) tokens: usize,
    pub(crate) texts: usize,
    pub(crate) status: Status,
    /// A batch is running.
    pub(crate) running: bool,
    /// Callers counting their tokens now (work on its way).
    pub(crate) submitting: usize,
    /// The last request's arrival or batch's end.
    pub(crate) last_activity: Instant,
    /// Unloads asked for, and done (tickets).
    pub(crate) unloads_wanted: u64,
    pub(crate) unloads_done: u64,
    /// The worker has stopped for good.
    pub(crate) worker_exited: bool,
}

impl Queue {
    /// The error a new request gets, when the service takes none.
    pub(crate) fn refusal(&self) -> Option<Error> {
        match &self.status {
            Status::Open => None,
            Status::Draining { .. } => Some(Error::Closed),
            Status::Closed(e) => Some(e.clone()),
        }
    }
}

/// Everything behind the handles and the worker.
pub(crate) struct Shared {
    pub(crate) embedder: Arc<dyn Embedder>,
    pub(crate) batcher: BatchEmbedder<Arc<dyn Embedder>>,
    /// The reranker's lane, when the service has one: its own batch rule
    /// and cost model, in the same budget and queue.
    pub(crate) reranker: Option<(Arc<dyn Reranker>, BatchEmbedder<PairLane>)>,
    pub(crate) config: ServiceConfig,
    pub(crate) queue: Mutex<Queue>,
    /// Signalled when the worker has something to do: a request, an
    /// unload, a shutdown.
    pub(crate) work: Condvar,
    /// Signalled when the worker finishes something others wait for: a
    /// batch, an unload, its exit.
    pub(crate) done: Condvar,
    /// Lock order: `queue` before `counters`, never the other way.
    pub(crate) counters: Mutex<Counters>,
    /// Live handles; the last one to go starts a drain.
    pub(crate) handles: AtomicUsize,
    /// The worker thread, when the builder started it.
    pub(crate) thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The last unload's figures.
    pub(crate) last_unload: Mutex<Option<super::metrics::UnloadReport>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("queue", &*self.queue.lock())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(
        embedder: Arc<dyn Embedder>,
        reranker: Option<Arc<dyn Reranker>>,
        budget: MemoryBudget,
        batch: crate::batch::BatchConfig,
        config: ServiceConfig,
    ) -> crate::error::Result<Self> {
        let batcher = BatchEmbedder::new(embedder.clone(), budget.clone(), batch)?;
        let reranker = match reranker {
            Some(r) => Some((r.clone(), BatchEmbedder::new(PairLane(r), budget, batch)?)),
            None => None,
        };
        Ok(Shared {
            embedder,
            batcher,
            reranker,
            config,
            queue: Mutex::new(Queue {
                requests: VecDeque::new(),
                tokens: 0,
                texts: 0,
                status: Status::Open,
                running: false,
                submitting: 0,
                last_activity: Instant::now(),
                unloads_wanted: 0,
                unloads_done: 0,
                worker_exited: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            counters: Mutex::new(Counters::default()),
            handles: AtomicUsize::new(0),
            thread: Mutex::new(None),
            last_unload: Mutex::new(None),
        })
    }

    /// Closes the service with `error` for every queued and every later
    /// request, answering the queued ones now.
    pub(crate) fn close(&self, error: Error) {
        let drained: Vec<Request> = {
            let mut q = self.queue.lock();
            if !matches!(q.status, Status::Closed(_)) {
                q.status = Status::Closed(error.clone());
            }
            q.tokens = 0;
            q.texts = 0;
            q.requests.drain(..).collect()
        };
        // Counted before answering, under the lock: a caller that has its
        // error always finds it counted.
        let mut c = self.counters.lock();
        c.failed += drained.len() as u64;
        for r in drained.into_iter().filter_map(|r| r.tx) {
            let _ = r.send(Err(error.clone()));
        }
        drop(c);
        self.work.notify_all();
        self.done.notify_all();
    }
}

/// Counts a caller as submitting while it lives, so an idle unload waits
/// for its request.
pub(crate) struct Submitting<'a>(pub(crate) &'a Shared);

impl<'a> Submitting<'a> {
    pub(crate) fn new(shared: &'a Shared) -> Self {
        shared.queue.lock().submitting += 1;
        Submitting(shared)
    }
}

impl Drop for Submitting<'_> {
    fn drop(&mut self) {
        let mut q = self.0.queue.lock();
        q.submitting -= 1;
        q.last_activity = Instant::now();
    }
}
