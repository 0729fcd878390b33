//! `membatch.Embedder`: one model in this process, texts embedded in
//! memory-sized batches.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

use membatch::batch::EmbeddedBatch;
use membatch::{BatchEmbedder, BertEmbedder, EmbedOptions, Embedder as _, Prompt, Result};
use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::args::{config, model_name, opt_count, opt_str, texts};
use crate::errors::{raise, to_py};
use crate::fork::{Owned, Owner};

/// The per-call options of `encode`: the prompt (`None`: the model's
/// default prompt; `""`: none) and the Matryoshka dimensions.
pub(crate) fn options(
    prompt_name: Option<&Bound<'_, PyAny>>,
    dimensions: Option<&Bound<'_, PyAny>>,
) -> PyResult<EmbedOptions> {
    let mut options = EmbedOptions::new();
    match opt_str("prompt_name", prompt_name)? {
        None => {}
        Some(name) if name.is_empty() => options = options.with_prompt(Prompt::Off),
        Some(name) => options = options.with_prompt_name(name),
    }
    if let Some(n) = opt_count("dimensions", dimensions)? {
        options = options.with_dimensions(n);
    }
    Ok(options)
}

/// A `(vectors)` batch as numpy: the texts' indices (int64, `(k,)`) and
/// their vectors (float32, `(k, d)`), one copy from the vectors.
pub(crate) fn arrays<'py>(
    py: Python<'py>,
    vectors: &[Vec<f32>],
    dimension: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let d = vectors.first().map_or(dimension, Vec::len);
    let mut flat = Vec::with_capacity(vectors.len() * d);
    for v in vectors {
        flat.extend_from_slice(v);
    }
    Ok(PyArray1::from_vec(py, flat)
        .reshape([vectors.len(), d])?
        .into_any())
}

/// A sentence embedding model loaded in this process, running texts in
/// batches sized to the memory it may use.
///
/// See `membatch.Embedder` (python/membatch/__init__.py) for the methods
/// built on these.
#[pyclass(module = "membatch._membatch", subclass, frozen)]
pub struct Embedder {
    inner: Owned<Arc<BatchEmbedder<BertEmbedder>>>,
    model: String,
    precision: String,
    owner: Owner,
}

#[pymethods]
impl Embedder {
    /// `Embedder(model=None, **settings)`: see `membatch.Embedder` for the
    /// keywords (`precision`, `memory_budget`, … any setting of the table).
    #[new]
    #[pyo3(signature = (**settings))]
    fn new(py: Python<'_>, settings: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let config = config(settings)?;
        let name = model_name(&config);
        let precision = config.model().precision.to_string();
        // The load reads hundreds of megabytes: other Python threads run
        // meanwhile.
        let inner = py.detach(|| BatchEmbedder::load(&config)).map_err(to_py)?;
        let inner = Owned::new(Arc::new(inner));
        Ok(Embedder {
            owner: inner.owner(),
            inner,
            model: name,
            precision,
        })
    }

    /// The model: its directory, or its hub id and revision.
    #[getter]
    fn model(&self) -> &str {
        &self.model
    }

    /// How the weights are held: `"f32"` or `"int8"`.
    #[getter]
    fn precision(&self) -> &str {
        &self.precision
    }

    /// The length of the vectors `encode` returns (the model's, or the
    /// `dimensions` it was made with).
    #[getter]
    fn dimension(&self) -> usize {
        self.inner.embedder().info().dimension
    }

    /// The longest text, in tokens (special tokens included), the model
    /// reads: longer texts are cut to it.
    #[getter]
    fn max_seq_length(&self) -> usize {
        self.inner.embedder().info().max_seq_length
    }

    /// Whether the model's vectors have unit length.
    #[getter]
    fn normalized(&self) -> bool {
        self.inner.embedder().info().normalized
    }

    /// The model's prompts (config_sentence_transformers.json), by name.
    #[getter]
    fn prompts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.inner.embedder().prompts() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// The prompt every text is given unless a call names another.
    #[getter]
    fn default_prompt_name(&self) -> Option<&str> {
        self.inner.embedder().prompt_name()
    }

    /// How many tokens the model reads of each text (special tokens and
    /// the default prompt included, after truncation).
    fn token_counts(&self, py: Python<'_>, sentences: &Bound<'_, PyAny>) -> PyResult<Vec<usize>> {
        self.owner.check("Embedder")?;
        let (texts, _) = texts(sentences)?;
        let tokens = py.detach(|| self.inner.tokenize(&texts)).map_err(to_py)?;
        Ok(tokens.iter().map(|t| t.len()).collect())
    }

    /// The dimension `encode` gives with `dimensions` (checked against the
    /// model's).
    #[pyo3(signature = (dimensions=None))]
    fn _output_dimension(&self, dimensions: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        let options = options(None, dimensions)?;
        options.check(self.inner.embedder()).map_err(to_py)?;
        Ok(options
            .dimensions
            .unwrap_or_else(|| self.inner.embedder().info().dimension))
    }

    /// Starts embedding `sentences` on a thread of its own, a batch ahead
    /// of the caller at most: an iterator of `(indices, vectors)` numpy
    /// pairs in the pipeline's order (by length).
    #[pyo3(signature = (sentences, *, prompt_name=None, dimensions=None))]
    fn _batches(
        &self,
        sentences: &Bound<'_, PyAny>,
        prompt_name: Option<&Bound<'_, PyAny>>,
        dimensions: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Batches> {
        self.owner.check("Embedder")?;
        let (texts, _) = texts(sentences)?;
        let options = options(prompt_name, dimensions)?;
        let embedder = self.inner.embedder();
        options.check(embedder).map_err(to_py)?;
        let dimension = options.dimensions.unwrap_or(embedder.info().dimension);
        let total = texts.len();
        // The next batch is computed while the caller takes the last one,
        // and waits to be handed over: two batches' vectors at most,
        // whatever the input.
        let (tx, rx) = sync_channel::<Message>(0);
        let batcher = Arc::clone(&*self.inner);
        std::thread::Builder::new()
            .name("membatch-encode".into())
            .spawn(move || {
                let stream = match batcher.stream_with(&texts, &options) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Message::Batch(Err(e)));
                        return;
                    }
                };
                for batch in stream {
                    let failed = batch.is_err();
                    // A closed channel: the caller stopped (an exception,
                    // Ctrl-C, a dropped iterator); the rest is not run.
                    if tx.send(Message::Batch(batch)).is_err() || failed {
                        return;
                    }
                }
                let _ = tx.send(Message::Done);
            })
            .map_err(|e| raise("ThreadPoolError", format!("cannot start a thread: {e}")))?;
        Ok(Batches {
            total,
            rx: Mutex::new(Some(rx)),
            dimension,
            owner: self.owner,
        })
    }

    fn __repr__(&self) -> String {
        let info = self.inner.embedder().info();
        format!(
            "Embedder(model={:?}, precision={:?}, dimension={}, max_seq_length={})",
            self.model, self.precision, info.dimension, info.max_seq_length
        )
    }
}

/// What the thread computing an `encode`'s batches hands over.
enum Message {
    Batch(Result<EmbeddedBatch>),
    /// Every batch was handed over. (A thread that ends without saying so
    /// failed: the caller is told, never given a partial result.)
    Done,
}

/// The batches of one `encode`, as they are computed.
#[pyclass(module = "membatch._membatch", frozen)]
pub struct Batches {
    total: usize,
    rx: Mutex<Option<Receiver<Message>>>,
    dimension: usize,
    owner: Owner,
}

#[pymethods]
impl Batches {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// How many texts the batches hold in all.
    #[getter]
    fn total(&self) -> usize {
        self.total
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        self.owner.check("Embedder")?;
        // The lock is held while waiting (without the GIL), so that two
        // threads sharing the iterator take batches in turn.
        let next = py.detach(|| {
            let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
            rx.as_ref().map(Receiver::recv)
        });
        match next {
            Some(Ok(Message::Batch(Ok(batch)))) => {
                let indices: Vec<i64> = batch.indices.iter().map(|&i| i as i64).collect();
                let indices = PyArray1::from_vec(py, indices).into_any();
                let vectors = arrays(py, &batch.embeddings, self.dimension)?;
                Ok(Some(PyTuple::new(py, [indices, vectors])?))
            }
            Some(Ok(Message::Batch(Err(e)))) => {
                self.close(py);
                Err(to_py(e))
            }
            Some(Ok(Message::Done)) | None => {
                self.close(py);
                Ok(None)
            }
            Some(Err(_)) => {
                self.close(py);
                Err(raise(
                    "InternalError",
                    "the thread computing the batches stopped before the last one",
                ))
            }
        }
    }

    /// Stops the work: the batch being computed is the last.
    fn close(&self, py: Python<'_>) {
        // Without the GIL: another thread may hold the lock in `__next__`,
        // waiting for a batch.
        py.detach(|| self.rx.lock().unwrap_or_else(|p| p.into_inner()).take());
    }
}
