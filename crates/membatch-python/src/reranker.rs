//! `membatch.Reranker`: a cross-encoder scoring (query, document) pairs in
//! memory-sized batches.

use membatch::rerank::rerank_in_batches;
use membatch::{BatchConfig, BertReranker, MemoryBudget, Reranker as _};
use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::args::{config, opt_str, source, texts};
use crate::errors::{raise, to_py};
use crate::fork::{Owned, Owner};

/// A cross-encoder (reranker) loaded in this process.
///
/// See `membatch.Reranker` (python/membatch/__init__.py).
#[pyclass(module = "membatch._membatch", subclass, frozen)]
pub struct Reranker {
    inner: Owned<BertReranker>,
    budget: MemoryBudget,
    batch: BatchConfig,
    model: String,
    owner: Owner,
}

#[pymethods]
impl Reranker {
    /// `Reranker(model, **settings)`: see `membatch.Reranker`.
    #[new]
    #[pyo3(signature = (model, **settings))]
    fn new(
        py: Python<'_>,
        model: &Bound<'_, PyAny>,
        settings: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let config = config(settings)?;
        let source = source(model, "model")?;
        let name = source.id();
        let budget = MemoryBudget::new(config.memory().clone());
        let inner = py
            .detach(|| BertReranker::load_with(&config, source, &budget))
            .map_err(to_py)?;
        let inner = Owned::new(inner);
        Ok(Reranker {
            owner: inner.owner(),
            inner,
            budget,
            batch: *config.batch(),
            model: name,
        })
    }

    /// The model: its directory, or its hub id and revision.
    #[getter]
    fn model(&self) -> &str {
        &self.model
    }

    /// The longest pair, in tokens, the model reads.
    #[getter]
    fn max_seq_length(&self) -> usize {
        self.inner.info().max_seq_length
    }

    /// The model's score (its logit) for each `(query, document)` pair, in
    /// the documents' order.
    fn scores<'py>(
        &self,
        py: Python<'py>,
        query: &Bound<'_, PyAny>,
        documents: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        self.owner.check("Reranker")?;
        let query = opt_str("query", Some(query))?
            .ok_or_else(|| raise("InvalidInput", "query is None: give a str"))?;
        let (documents, _) = texts(documents)?;
        let scores = py
            .detach(|| {
                rerank_in_batches(
                    &*self.inner,
                    &query,
                    &documents,
                    self.budget.clone(),
                    self.batch,
                )
            })
            .map_err(to_py)?;
        Ok(PyArray1::from_vec(py, scores))
    }

    fn __repr__(&self) -> String {
        format!("Reranker(model={:?})", self.model)
    }
}
