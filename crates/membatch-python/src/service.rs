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
use membatch::{EmbedService, ModelSource, ModelState, Result};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::args::{config, opt_str, texts};
use crate::embedder::{arrays, options};
use crate::errors::{raise, to_py};
use crate::fork::Owner;

/// One resident model for the whole process: Python threads calling
/// `encode` and coroutines awaiting `aencode` share its batches.
///
/// See `membatch.Service` (python/membatch/__init__.py).
#[pyclass(module = "membatch._membatch", subclass, frozen)]
pub struct Service {
    inner: EmbedService,
    model: String,
    owner: Owner,
}

#[pymethods]
impl Service {
    #[new]
    #[pyo3(signature = (
        model=None, *, reranker=None, precision=None, threads=None, memory_budget=None,
        normalize=None, max_batch_size=None, prompt_name=None, dimensions=None,
        max_seq_length=None, **settings
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: Option<&Bound<'_, PyAny>>,
        reranker: Option<&Bound<'_, PyAny>>,
        precision: Option<&Bound<'_, PyAny>>,
        threads: Option<&Bound<'_, PyAny>>,
        memory_budget: Option<&Bound<'_, PyAny>>,
        normalize: Option<&Bound<'_, PyAny>>,
        max_batch_size: Option<&Bound<'_, PyAny>>,
        prompt_name: Option<&Bound<'_, PyAny>>,
        dimensions: Option<&Bound<'_, PyAny>>,
        max_seq_length: Option<&Bound<'_, PyAny>>,
        settings: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let config = config(
            &[
                ("model", "model", model),
                ("precision", "precision", precision),
                ("threads", "threads", threads),
                ("memory_budget", "max_memory", memory_budget),
                ("normalize", "normalize", normalize),
                ("max_batch_size", "max_batch_size", max_batch_size),
                ("prompt_name", "prompt_name", prompt_name),
                ("dimensions", "dimensions", dimensions),
                ("max_seq_length", "max_seq_length", max_seq_length),
            ],
            settings,
        )?;
        let reranker = match reranker {
            Some(r) if !r.is_none() => Some(ModelSource::parse(
                &r.extract::<std::path::PathBuf>()
                    .map_err(|_| {
                        raise(
                            "InvalidConfig",
                            "reranker: give a model directory or hub id",
                        )
                    })?
                    .to_string_lossy(),
            )),
            _ => None,
        };
        let name = config
            .model()
            .source
            .clone()
            .unwrap_or_else(ModelSource::default_model)
            .id();
        let inner = py
            .detach(|| EmbedService::load_with_reranker(&config, reranker))
            .map_err(to_py)?;
        Ok(Service {
            inner,
            model: name,
            owner: Owner::here(),
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

    /// `"loaded"`, `"unloaded"` (loads on the next request) or `"failed"`.
    #[getter]
    fn model_state(&self) -> &'static str {
        match self.inner.model_state() {
            ModelState::Loaded => "loaded",
            ModelState::Unloaded => "unloaded",
            _ => "failed",
        }
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
    fn shutdown(&self, py: Python<'_>, timeout: f64) {
        if self.owner.check("Service").is_err() {
            return;
        }
        let deadline = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        py.detach(|| self.inner.shutdown(deadline));
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

/// A request queued on a `Service`: wait for it (`wait`), or have a
/// callback run when it is answered (`add_done_callback`, which
/// `Service.aencode` turns into an asyncio future).
#[pyclass(module = "membatch._membatch", frozen)]
pub struct Pending {
    state: Mutex<State>,
    dimension: usize,
    owner: Owner,
}

enum State {
    Waiting(RustPending),
    Done(Result<Vec<Vec<f32>>>),
    Taken,
}

impl Pending {
    fn new(pending: RustPending, dimension: usize, owner: Owner) -> Self {
        Pending {
            state: Mutex::new(State::Waiting(pending)),
            dimension,
            owner,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Polls the request with `waker`; true when it is answered.
    fn poll(&self, waker: &Waker) -> bool {
        let mut state = self.state();
        if let State::Waiting(p) = &mut *state {
            match Pin::new(p).poll(&mut Context::from_waker(waker)) {
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
        self.poll(Waker::noop())
    }

    /// Blocks until the answer is here (without the GIL; Ctrl-C is
    /// honoured), then returns it as `result` does; `TimedOut` after
    /// `timeout` seconds (the request stays queued: wait again, or drop it).
    #[pyo3(signature = (timeout=None))]
    fn wait<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        self.owner.check("Service")?;
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let deadline =
            timeout.map(|t| std::time::Instant::now() + Duration::from_secs_f64(t.clamp(0.0, 1e9)));
        loop {
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) && !self.poll(&waker) {
                return Err(raise(
                    "TimedOut",
                    format!("no answer within {} s", timeout.unwrap_or_default()),
                ));
            }
            let done = py.detach(|| {
                self.poll(&waker) || {
                    // Woken by the answer, or every 100 ms to look for a
                    // signal (Ctrl-C).
                    std::thread::park_timeout(Duration::from_millis(100));
                    self.poll(&waker)
                }
            });
            if done {
                return self.result(py);
            }
            py.check_signals()?;
        }
    }

    /// The answer: a float32 array of shape (n, d); raises the service's
    /// error; raises `InvalidInput` when it is not here yet or was taken.
    fn result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if !self.poll(Waker::noop()) {
            return Err(raise(
                "InvalidInput",
                "the answer is not here yet: wait() for it",
            ));
        }
        let taken = std::mem::replace(&mut *self.state(), State::Taken);
        match taken {
            State::Done(Ok(vectors)) => arrays(py, &vectors, self.dimension),
            State::Done(Err(e)) => Err(to_py(e)),
            State::Taken | State::Waiting(_) => {
                Err(raise("InvalidInput", "the answer was already taken"))
            }
        }
    }

    /// Runs `callback()` once the answer is here (on the package's
    /// notifier thread, which `membatch._notifier()` starts), or now if it
    /// is. The callback should only hand over, as
    /// `loop.call_soon_threadsafe` does.
    fn add_done_callback(&self, py: Python<'_>, callback: Py<PyAny>) -> PyResult<()> {
        self.owner.check("Service")?;
        let notify = Arc::new(Notify {
            callback: Mutex::new(Some(callback)),
        });
        if self.poll(&Waker::from(Arc::clone(&notify))) {
            // Answered already: the waker will not be woken.
            let cb = notify
                .callback
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(cb) = cb {
                cb.call0(py)?;
            }
        }
        Ok(())
    }
}

/// Wakes a thread parked in `wait`.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Hands a Python callback to the package's notifier thread when the
/// answer comes: the service's worker never waits for the GIL, and no
/// thread of membatch's own ever takes it. (A thread made in Rust that is
/// inside `Python::attach` when the interpreter exits aborts the process:
/// CPython ends it with `pthread_exit` and pyo3's guard then releases a
/// thread state that is gone. The notifier is a Python daemon thread,
/// `membatch._notify_loop`, and pyo3 parks such a thread coming back from
/// `detach` at exit instead.)
struct Notify {
    callback: Mutex<Option<Py<PyAny>>>,
}

impl Wake for Notify {
    fn wake(self: Arc<Self>) {
        let cb = self
            .callback
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(cb) = cb {
            let _ = callbacks().0.send(cb);
        }
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

/// The next callback whose answer came, waiting for it without the GIL
/// (for the package's notifier thread).
#[pyfunction]
pub(crate) fn _next_callback(py: Python<'_>) -> Option<Py<PyAny>> {
    let rx = callbacks().1;
    py.detach(|| rx.lock().unwrap_or_else(|p| p.into_inner()).recv().ok())
}
