//! `membatch.Service`: one resident model shared by the threads and
//! coroutines of a process, concurrent requests merged into batches.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

use membatch::service::Pending as RustPending;
use membatch::{EmbedService, Result};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::args::{config, model_name, opt_str, source, texts};
use crate::embedder::{arrays, options};
use crate::errors::{raise, to_py};
use crate::fork::{Owned, Owner};

/// One resident model for the whole process: Python threads calling
/// `encode` and coroutines awaiting `aencode` share its batches.
///
/// See `membatch.Service` (python/membatch/__init__.py).
#[pyclass(module = "membatch._membatch", subclass, frozen)]
pub struct Service {
    inner: Owned<EmbedService>,
    model: String,
    owner: Owner,
}

#[pymethods]
impl Service {
    /// `Service(model=None, *, reranker=None, **settings)`: see
    /// `membatch.Service`.
    #[new]
    #[pyo3(signature = (*, reranker=None, **settings))]
    fn new(
        py: Python<'_>,
        reranker: Option<&Bound<'_, PyAny>>,
        settings: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let config = config(settings)?;
        let reranker = match reranker {
            Some(r) if !r.is_none() => Some(source(r, "reranker")?),
            _ => None,
        };
        let name = model_name(&config);
        let inner = py
            .detach(|| EmbedService::load_with_reranker(&config, reranker))
            .map_err(to_py)?;
        let inner = Owned::new(inner);
        Ok(Service {
            owner: inner.owner(),
            inner,
            model: name,
        })
    }

    /// The model: its directory, or its hub id and revision.
    #[getter]
    fn model(&self) -> &str {
        &self.model
    }

    /// The length of the vectors `encode` returns.
    #[getter]
    fn dimension(&self) -> usize {
        self.inner.info().dimension
    }

    /// The longest text, in tokens, the model reads.
    #[getter]
    fn max_seq_length(&self) -> usize {
        self.inner.info().max_seq_length
    }

    /// `"unloaded"` (loads on the next request), `"loading"`, `"loaded"`
    /// or `"failed"` (the last load failed; the next request tries again).
    #[getter]
    fn model_state(&self) -> &'static str {
        self.inner.model_state().as_str()
    }

    /// Queues `sentences`; the answer is the returned `Pending`'s. Refused
    /// at once (`Overloaded`, `MemoryCritical`, `RequestTooLarge`) when the
    /// service cannot take them.
    #[pyo3(signature = (sentences, *, prompt_name=None, dimensions=None))]
    fn _submit(
        &self,
        py: Python<'_>,
        sentences: &Bound<'_, PyAny>,
        prompt_name: Option<&Bound<'_, PyAny>>,
        dimensions: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Pending> {
        self.owner.check("Service")?;
        let (texts, _) = texts(sentences)?;
        let options = options(prompt_name, dimensions)?;
        let dimension = options.dimensions.unwrap_or(self.inner.info().dimension);
        // Tokenising (admission counts tokens) runs without the GIL.
        let pending = py
            .detach(|| self.inner.submit_with(&texts, &options))
            .map_err(to_py)?;
        Ok(Pending::new(pending, dimension, self.owner))
    }

    /// Queues the scoring of each `(query, document)` pair with the
    /// service's reranker.
    fn _submit_rerank(
        &self,
        py: Python<'_>,
        query: &Bound<'_, PyAny>,
        documents: &Bound<'_, PyAny>,
    ) -> PyResult<Pending> {
        self.owner.check("Service")?;
        let query = opt_str("query", Some(query))?
            .ok_or_else(|| raise("InvalidInput", "query is None: give a str"))?;
        let (documents, _) = texts(documents)?;
        let pending = py
            .detach(|| self.inner.submit_rerank(&query, &documents))
            .map_err(to_py)?;
        Ok(Pending::new(pending, 1, self.owner))
    }

    /// Whether the service has a reranker.
    #[getter]
    fn has_reranker(&self) -> bool {
        self.inner.reranker_info().is_some()
    }

    /// Counters since the start: requests, batches, texts, tokens,
    /// refusals, queue depth.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.inner.metrics();
        let d = PyDict::new(py);
        d.set_item("queued_requests", m.queued_requests)?;
        d.set_item("queued_tokens", m.queued_tokens)?;
        d.set_item("accepted", m.accepted)?;
        d.set_item("completed", m.completed)?;
        d.set_item("failed", m.failed)?;
        d.set_item("cancelled", m.cancelled)?;
        d.set_item("batches", m.batches)?;
        d.set_item("texts", m.texts)?;
        d.set_item("tokens", m.tokens)?;
        let r = m.refused;
        d.set_item(
            "refused",
            r.overloaded + r.memory_critical + r.too_large + r.text_too_long + r.closed,
        )?;
        Ok(d)
    }

    /// Drops the model's weights now (it loads again on the next request);
    /// returns whether it was loaded.
    fn unload(&self, py: Python<'_>) -> PyResult<bool> {
        self.owner.check("Service")?;
        Ok(py.detach(|| self.inner.unload()).freed)
    }

    /// Refuses new work, lets queued work finish for up to `timeout`
    /// seconds, then stops the worker.
    #[pyo3(signature = (timeout=5.0))]
    fn shutdown(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        self.owner.check("Service")?;
        let deadline = seconds("timeout", timeout)?;
        py.detach(|| self.inner.shutdown(deadline));
        Ok(())
    }

    fn __repr__(&self) -> String {
        let info = self.inner.info();
        format!(
            "Service(model={:?}, dimension={}, model_state={:?})",
            self.model,
            info.dimension,
            self.model_state()
        )
    }
}

/// `value` seconds as a duration: finite and not negative, else
/// `InvalidConfig` naming `name`.
fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        raise(
            "InvalidConfig",
            format!("{name} = {value}: give a number of seconds, 0 or more"),
        )
    })
}

/// A request queued on a `Service`: wait for it (`wait`), or have a
/// callback run when it is answered (`add_done_callback`, which
/// `Service.aencode` turns into an asyncio future).
#[pyclass(module = "membatch._membatch", frozen)]
pub struct Pending {
    state: Mutex<State>,
    /// The one waker every poll registers (the answer's channel keeps
    /// only the last one it was polled with): it wakes every waiting
    /// thread and hands every callback over.
    wake: Arc<Wakeup>,
    dimension: usize,
    owner: Owner,
}

enum State {
    Waiting(RustPending),
    Done(Result<Vec<Vec<f32>>>),
    Taken,
}

/// Who waits for one answer: threads in `wait`, callbacks.
#[derive(Default)]
struct Wakeup {
    threads: Mutex<Vec<Thread>>,
    callbacks: Mutex<Vec<Py<PyAny>>>,
}

impl Wakeup {
    fn take_callbacks(&self) -> Vec<Py<PyAny>> {
        std::mem::take(&mut *self.callbacks.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    /// Called by the service's worker when the answer is sent: unparks the
    /// waiting threads, queues the callbacks for the package's notifier
    /// thread (the worker never waits for the GIL).
    fn wake_by_ref(self: &Arc<Self>) {
        for t in std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner())) {
            t.unpark();
        }
        let queue = callbacks().0;
        for cb in self.take_callbacks() {
            let _ = queue.send(cb);
        }
    }
}

impl Pending {
    fn new(pending: RustPending, dimension: usize, owner: Owner) -> Self {
        Pending {
            state: Mutex::new(State::Waiting(pending)),
            wake: Arc::default(),
            dimension,
            owner,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Polls the request; true when it is answered.
    fn poll(&self) -> bool {
        let mut state = self.state();
        if let State::Waiting(p) = &mut *state {
            let waker = Waker::from(Arc::clone(&self.wake));
            match Pin::new(p).poll(&mut Context::from_waker(&waker)) {
                Poll::Ready(answer) => *state = State::Done(answer),
                Poll::Pending => return false,
            }
        }
        true
    }
}

#[pymethods]
impl Pending {
    /// Whether the answer is here.
    fn done(&self) -> bool {
        self.poll()
    }

    /// Blocks until the answer is here (without the GIL; Ctrl-C is
    /// honoured), then returns it as `result` does; `TimedOut` after
    /// `timeout` seconds (the request stays queued: wait again, or drop it).
    #[pyo3(signature = (timeout=None))]
    fn wait<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        self.owner.check("Service")?;
        let limit = timeout.map(|t| seconds("timeout", t)).transpose()?;
        let deadline = limit.map(|l| std::time::Instant::now() + l);
        loop {
            let done = py.detach(|| {
                self.wake
                    .threads
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(std::thread::current());
                self.poll() || {
                    // Woken by the answer, or every 100 ms to look for a
                    // signal (Ctrl-C) and the deadline.
                    std::thread::park_timeout(Duration::from_millis(100));
                    self.poll()
                }
            });
            if done {
                return self.result(py);
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Err(to_py(membatch::Error::TimedOut {
                    after: limit.unwrap_or_default(),
                }));
            }
            py.check_signals()?;
        }
    }

    /// The answer: a float32 array of shape (n, d); raises the service's
    /// error; raises `membatch.Error` when it is not here yet (`wait` for
    /// it) or was already taken.
    fn result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if !self.poll() {
            return Err(raise("Error", "the answer is not here yet: wait() for it"));
        }
        let taken = std::mem::replace(&mut *self.state(), State::Taken);
        match taken {
            State::Done(Ok(vectors)) => arrays(py, &vectors, self.dimension),
            State::Done(Err(e)) => Err(to_py(e)),
            State::Taken | State::Waiting(_) => Err(raise("Error", "the answer was already taken")),
        }
    }

    /// Runs `callback()` once the answer is here (on the package's
    /// notifier thread, which `membatch._notifier()` starts), or now if it
    /// is. Each callback runs once. It should only hand over, as
    /// `loop.call_soon_threadsafe` does.
    fn add_done_callback(&self, py: Python<'_>, callback: Py<PyAny>) -> PyResult<()> {
        self.owner.check("Service")?;
        // The thread that will run it (started once per process).
        py.import("membatch")?.getattr("_notifier")?.call0()?;
        self.wake
            .callbacks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(callback);
        if self.poll() {
            // Answered already (the waker may have run before the push):
            // whatever is still queued runs now, each callback once.
            for cb in self.wake.take_callbacks() {
                cb.call0(py)?;
            }
        }
        Ok(())
    }
}

type Callbacks = (Sender<Py<PyAny>>, Arc<Mutex<Receiver<Py<PyAny>>>>);

/// This process's queue of callbacks to run (made again in a forked
/// child: the parent's notifier thread did not come along).
fn callbacks() -> Callbacks {
    static QUEUE: Mutex<Option<(u32, Callbacks)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut slot = QUEUE.lock().unwrap_or_else(|p| p.into_inner());
    match &*slot {
        Some((p, q)) if *p == pid => q.clone(),
        _ => {
            let (tx, rx) = channel();
            let q = (tx, Arc::new(Mutex::new(rx)));
            *slot = Some((pid, q.clone()));
            q
        }
    }
}

/// The next callback whose answer came, waiting for it without the GIL:
/// for the package's notifier thread (`membatch._notify_loop`), a Python
/// daemon thread. No thread of membatch's own takes the GIL: a thread
/// made in Rust that is inside `Python::attach` when the interpreter
/// exits aborts the process (CPython ends it with `pthread_exit`, and
/// pyo3's guard then releases a thread state that is gone), while pyo3
/// parks a Python thread that comes back from `detach` at exit.
#[pyfunction]
pub(crate) fn _next_callback(py: Python<'_>) -> Option<Py<PyAny>> {
    let rx = callbacks().1;
    py.detach(|| rx.lock().unwrap_or_else(|p| p.into_inner()).recv().ok())
}
