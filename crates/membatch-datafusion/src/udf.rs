//! `embed(text [, model [, prompt [, dimensions]]])`: membatch as a
//! DataFusion scalar function.
//!
//! Each call gets one of DataFusion's record batches (8,192 rows by
//! default) and hands its non-null texts to membatch's
//! [`BatchEmbedder`]: sorted by length, cut into batches sized from the
//! memory budget, each forward pass holding a reservation in DataFusion's
//! memory pool (see [`crate::pool`]) for its predicted peak.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_datafusion_err, plan_datafusion_err, plan_err, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryPool, MemoryReservation};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use membatch::batch::BatchMetrics;
use membatch::{BatchConfig, BatchEmbedder, EmbedOptions, Embedder, MemoryBudget, Prompt};

use crate::pool::{reserve_weights, PoolShare};

/// The function's name unless [`EmbedUdfBuilder::name`] says otherwise.
pub const DEFAULT_NAME: &str = "embed";

/// Gives each built function its identity (DataFusion compares functions).
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// membatch's `embed` as a DataFusion [`ScalarUDFImpl`].
///
/// `embed(text)` embeds with the first model, `embed(text, 'name')` with
/// the model registered under `name` (a literal);
/// `embed(text, 'name', 'query')` puts the model's prompt `query` before
/// each text (a literal; `NULL` for the model's default), and
/// `embed(text, 'name', NULL, 256)` keeps the first 256 dimensions
/// (Matryoshka truncation, normalised again when the model normalises; a
/// literal, since the result type is fixed when the query is planned).
/// Text may be `Utf8`, `LargeUtf8`, `Utf8View` or a dictionary of them; the
/// result is a `FixedSizeList<Float32>` of the model's dimension (or the
/// call's), null where the text is null.
///
/// A function built with [`EmbedUdfBuilder::planning_model`] only plans:
/// it has the same name, signature and result type but no weights, for a
/// Ballista client or scheduler, whose plans run on executors that hold the
/// real model.
///
/// ```no_run
/// use std::sync::Arc;
/// use datafusion::execution::memory_pool::MemoryPool;
/// use membatch::{BertEmbedder, ModelSource};
/// use membatch_datafusion::{session, EmbedUdf};
///
/// # async fn run() -> datafusion::error::Result<()> {
/// // One pool for the model and the query: 1 GiB.
/// let pool: Arc<dyn MemoryPool> = session::shared_pool(1 << 30);
/// let model = BertEmbedder::load(ModelSource::parse("sentence-transformers/all-MiniLM-L6-v2"))
///     .map_err(|e| datafusion::error::DataFusionError::External(e.into()))?;
/// let embed = EmbedUdf::builder()
///     .model("minilm", model)
///     .pool(pool.clone())
///     .build()?;
/// let ctx = session::single_node(&embed, None, pool, 1)?;
/// ctx.sql("SELECT embed('a sentence')").await?.show().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct EmbedUdf {
    name: String,
    signature: Signature,
    models: Arc<Vec<Model>>,
    id: usize,
}

/// One model `embed` can run, or only plan with.
struct Model {
    name: String,
    dimension: usize,
    runner: Option<BatchEmbedder<Arc<dyn Embedder>>>,
    /// The model's weights, reserved in the pool while the function lives.
    _weights: Option<MemoryReservation>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("dimension", &self.dimension)
            .field("runs", &self.runner.is_some())
            .finish()
    }
}

impl PartialEq for EmbedUdf {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.name == other.name
    }
}

impl Eq for EmbedUdf {}

impl Hash for EmbedUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.id.hash(state);
    }
}

enum Kind {
    Run(Arc<dyn Embedder>),
    Plan(usize),
}

/// Builds an [`EmbedUdf`]; from [`EmbedUdf::builder`].
pub struct EmbedUdfBuilder {
    name: String,
    models: Vec<(String, Kind)>,
    pool: Option<Arc<dyn MemoryPool>>,
    budget: Option<MemoryBudget>,
    batch: Option<BatchConfig>,
}

impl std::fmt::Debug for EmbedUdfBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedUdfBuilder")
            .field("name", &self.name)
            .field(
                "models",
                &self.models.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl EmbedUdf {
    /// A builder: name `embed`, no model yet, no pool, membatch's memory
    /// and batch settings from the environment.
    pub fn builder() -> EmbedUdfBuilder {
        EmbedUdfBuilder {
            name: DEFAULT_NAME.into(),
            models: Vec::new(),
            pool: None,
            budget: None,
            batch: None,
        }
    }

    /// The function for a [`SessionContext`](datafusion::prelude::SessionContext)
    /// (`ctx.register_udf(udf.to_udf())`), sharing this one's models.
    pub fn to_udf(&self) -> ScalarUDF {
        ScalarUDF::new_from_impl(self.clone())
    }

    /// The models, as (name, dimension), the default first.
    pub fn models(&self) -> Vec<(String, usize)> {
        self.models
            .iter()
            .map(|m| (m.name.clone(), m.dimension))
            .collect()
    }

    /// Whether this function embeds (it holds at least one model's
    /// weights) rather than only plans.
    pub fn runs(&self) -> bool {
        self.models.iter().any(|m| m.runner.is_some())
    }

    /// What the function has done so far, summed over its models.
    pub fn metrics(&self) -> BatchMetrics {
        let mut sum = BatchMetrics::default();
        for m in self.models.iter().filter_map(|m| m.runner.as_ref()) {
            let b = m.metrics();
            sum.batches += b.batches;
            sum.texts += b.texts;
            sum.tokens += b.tokens;
            sum.padded_tokens += b.padded_tokens;
            sum.retries += b.retries;
            sum.shrinks += b.shrinks;
            sum.waits += b.waits;
            sum.cleanups = sum.cleanups.max(b.cleanups);
            sum.peak_memory_bytes = sum.peak_memory_bytes.max(b.peak_memory_bytes);
            sum.peak_rss_bytes = sum.peak_rss_bytes.max(b.peak_rss_bytes);
            sum.busy += b.busy;
            sum.batch_size = b.batch_size;
        }
        sum
    }

    fn model_named(&self, name: Option<&str>) -> Result<&Model> {
        match name {
            None => self
                .models
                .first()
                .ok_or_else(|| plan_datafusion_err!("{} has no model", self.name)),
            Some(name) => self.models.iter().find(|m| m.name == name).ok_or_else(|| {
                plan_datafusion_err!(
                    "{}: no model named {name:?} (this session has {})",
                    self.name,
                    self.model_names()
                )
            }),
        }
    }

    fn model_names(&self) -> String {
        self.models
            .iter()
            .map(|m| format!("{:?}", m.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The model a call names in its second argument (a literal).
    fn model_of_scalar(&self, scalar: Option<&ScalarValue>) -> Result<&Model> {
        match scalar.map(ScalarValue::try_as_str) {
            Some(Some(Some(name))) => self.model_named(Some(name)),
            _ => plan_err!(
                "{}'s second argument must be a model name as a literal string ({})",
                self.name,
                self.model_names()
            ),
        }
    }

    /// The model and options of a call whose arguments after the text are
    /// `literals` (`None` where an argument is not a literal), checked.
    fn call(&self, literals: &[Option<&ScalarValue>]) -> Result<(&Model, EmbedOptions)> {
        let model = match literals.first() {
            None => self.model_named(None)?,
            Some(scalar) => self.model_of_scalar(*scalar)?,
        };
        let mut options = EmbedOptions::new();
        match literals.get(1) {
            None => {}
            Some(Some(s)) if s.is_null() => {}
            Some(Some(s)) => match s.try_as_str() {
                Some(Some(name)) => options = options.with_prompt(Prompt::Named(name.into())),
                _ => {
                    return plan_err!(
                        "{}'s third argument must be a prompt name as a literal string, or NULL",
                        self.name
                    )
                }
            },
            Some(None) => {
                return plan_err!(
                    "{}'s third argument must be a prompt name as a literal string, or NULL",
                    self.name
                )
            }
        }
        if let Some(scalar) = literals.get(2) {
            let n = scalar
                .and_then(|s| s.cast_to(&DataType::Int64).ok())
                .and_then(|s| match s {
                    ScalarValue::Int64(Some(n)) => Some(n),
                    _ => None,
                });
            match n {
                Some(n) if n >= 1 && n as u64 <= model.dimension as u64 => {
                    options = options.with_dimensions(n as usize);
                }
                Some(n) => {
                    return plan_err!(
                        "{}: dimensions {n} is not between 1 and model {:?}'s {}",
                        self.name,
                        model.name,
                        model.dimension
                    )
                }
                None => {
                    return plan_err!(
                        "{}'s fourth argument must be a number of dimensions as a literal integer",
                        self.name
                    )
                }
            }
        }
        if let Some(runner) = &model.runner {
            options
                .check(runner.embedder())
                .map_err(|e| plan_datafusion_err!("{}: {}", self.name, e.report()))?;
        }
        Ok((model, options))
    }
}

impl EmbedUdfBuilder {
    /// The function's name in SQL (default `embed`).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds a model that embeds, under `name` (the first model is the
    /// default).
    #[must_use]
    pub fn model(mut self, name: impl Into<String>, embedder: impl Embedder + 'static) -> Self {
        self.models
            .push((name.into(), Kind::Run(Arc::new(embedder))));
        self
    }

    /// Adds a model this process only plans with: same name and dimension,
    /// no weights (a Ballista client or scheduler). Calling it fails.
    #[must_use]
    pub fn planning_model(mut self, name: impl Into<String>, dimension: usize) -> Self {
        self.models.push((name.into(), Kind::Plan(dimension)));
        self
    }

    /// The DataFusion pool the forward passes reserve in, the weights
    /// reserved once when the function is built. Without one, only
    /// membatch's own budget bounds the batches.
    #[must_use]
    pub fn pool(mut self, pool: Arc<dyn MemoryPool>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// membatch's memory budget (default: from the `MEMBATCH_*` variables).
    #[must_use]
    pub fn budget(mut self, budget: MemoryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// membatch's batch settings (default: from the `MEMBATCH_*` variables).
    #[must_use]
    pub fn batch(mut self, batch: BatchConfig) -> Self {
        self.batch = Some(batch);
        self
    }

    /// The function.
    ///
    /// # Errors
    ///
    /// A plan error without models or with two of one name; membatch's
    /// settings errors; `ResourcesExhausted` when the pool cannot hold a
    /// model's weights.
    pub fn build(self) -> Result<EmbedUdf> {
        if self.models.is_empty() {
            return plan_err!("{} needs at least one model", self.name);
        }
        for (i, (name, _)) in self.models.iter().enumerate() {
            if self.models[..i].iter().any(|(n, _)| n == name) {
                return plan_err!("{}: two models named {name:?}", self.name);
            }
        }
        let needs_runtime = self.models.iter().any(|(_, k)| matches!(k, Kind::Run(_)));
        let (budget, batch) = if needs_runtime {
            // Unset parts come from the environment's settings.
            let from_env = || membatch::Config::from_env().map_err(external);
            let budget = match self.budget {
                Some(b) => b,
                None => MemoryBudget::new(from_env()?.memory().clone()),
            };
            let budget = match &self.pool {
                Some(pool) => budget.sharing(Arc::new(PoolShare::new(pool))),
                None => budget,
            };
            let batch = match self.batch {
                Some(b) => b,
                None => *from_env()?.batch(),
            };
            (Some(budget), Some(batch))
        } else {
            (None, None)
        };
        let mut models = Vec::with_capacity(self.models.len());
        for (name, kind) in self.models {
            let model = match kind {
                Kind::Plan(dimension) => Model {
                    name,
                    dimension,
                    runner: None,
                    _weights: None,
                },
                Kind::Run(embedder) => {
                    let weights = match (&self.pool, embedder.info().weight_bytes) {
                        (Some(pool), Some(bytes)) => {
                            Some(reserve_weights(pool, &name, bytes).map_err(|e| {
                                DataFusionError::ResourcesExhausted(format!(
                                    "the memory pool cannot hold model {name:?}'s weights ({}): {}",
                                    bytesize::ByteSize(bytes),
                                    e.strip_backtrace()
                                ))
                            })?)
                        }
                        _ => None,
                    };
                    let dimension = embedder.info().dimension;
                    let (Some(budget), Some(batch)) = (&budget, batch) else {
                        unreachable!("a runnable model has a budget and batch settings")
                    };
                    let runner =
                        BatchEmbedder::new(embedder, budget.clone(), batch).map_err(external)?;
                    Model {
                        name,
                        dimension,
                        runner: Some(runner),
                        _weights: weights,
                    }
                }
            };
            models.push(model);
        }
        Ok(EmbedUdf {
            signature: Signature::one_of(
                vec![
                    TypeSignature::String(1),
                    TypeSignature::String(2),
                    TypeSignature::Any(3),
                    TypeSignature::Any(4),
                ],
                Volatility::Immutable,
            ),
            name: self.name,
            models: Arc::new(models),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }
}

/// A membatch error in DataFusion's terms: memory it could not get is
/// `ResourcesExhausted` (the query may be retried with more memory or
/// less parallelism), the rest is external.
pub fn to_datafusion(e: membatch::Error) -> DataFusionError {
    use membatch::Error as E;
    match e {
        E::PoolRefused { .. }
        | E::MemoryPressure { .. }
        | E::BudgetTooSmall { .. }
        | E::MemoryCritical { .. }
        | E::ModelTooLarge { .. } => DataFusionError::ResourcesExhausted(format!(
            "membatch: {}",
            membatch::ErrorReport::new(&e)
        )),
        other => external(other),
    }
}

fn external(e: membatch::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The type of one model's vectors.
fn vector_type(dimension: usize) -> Result<DataType> {
    let size = i32::try_from(dimension)
        .map_err(|_| plan_datafusion_err!("dimension {dimension} is too large for Arrow"))?;
    Ok(DataType::FixedSizeList(
        Arc::new(Field::new_list_field(DataType::Float32, false)),
        size,
    ))
}

impl ScalarUDFImpl for EmbedUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        // The type depends on the model argument: see return_field_from_args.
        vector_type(self.model_named(None)?.dimension)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let literals = args.scalar_arguments.get(1..).unwrap_or_default();
        let (model, options) = self.call(literals)?;
        Ok(Arc::new(Field::new(
            self.name(),
            vector_type(options.dimensions.unwrap_or(model.dimension))?,
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let literals: Vec<Option<&ScalarValue>> = args
            .args
            .iter()
            .skip(1)
            .map(|a| match a {
                ColumnarValue::Scalar(s) => Some(s),
                ColumnarValue::Array(_) => None,
            })
            .collect();
        let (model, options) = self.call(&literals)?;
        let runner = model.runner.as_ref().ok_or_else(|| {
            exec_datafusion_err!(
                "{}: this process only plans with model {:?}; it runs on membatch executors \
                 (register the function with the model on the process that executes)",
                self.name,
                model.name
            )
        })?;
        let Some(text) = args.args.first() else {
            return plan_err!("{} takes the text to embed", self.name);
        };
        let texts = plain_strings(text.to_array(args.number_rows)?)?;
        let values = strings(&texts)?;
        let dimension = options.dimensions.unwrap_or(model.dimension);
        embed_rows(runner, &options, dimension, &values, texts.logical_nulls())
            .map(ColumnarValue::Array)
    }
}

/// A string array of any kind as Utf8, LargeUtf8 or Utf8View (a
/// dictionary is unpacked).
fn plain_strings(array: ArrayRef) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Dictionary(_, value) => Ok(cast(&array, value)?),
        _ => Ok(array),
    }
}

/// The rows of a string array, `None` where null.
fn strings(array: &ArrayRef) -> Result<Vec<Option<&str>>> {
    Ok(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().collect(),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().collect(),
        DataType::Utf8View => array.as_string_view().iter().collect(),
        DataType::Null => vec![None; array.len()],
        other => return plan_err!("embed takes text, not {other}"),
    })
}

/// Embeds the non-null rows and lays the vectors out row by row; a null
/// row holds zeros under its null bit.
fn embed_rows(
    runner: &BatchEmbedder<Arc<dyn Embedder>>,
    options: &EmbedOptions,
    dimension: usize,
    rows: &[Option<&str>],
    nulls: Option<datafusion::arrow::buffer::NullBuffer>,
) -> Result<ArrayRef> {
    let (present, texts): (Vec<usize>, Vec<&str>) = rows
        .iter()
        .enumerate()
        .filter_map(|(row, t)| t.map(|t| (row, t)))
        .unzip();
    let mut values = vec![0f32; rows.len() * dimension];
    if !texts.is_empty() {
        for batch in runner.stream_with(&texts, options).map_err(to_datafusion)? {
            let batch = batch.map_err(to_datafusion)?;
            for (i, vector) in batch.indices.into_iter().zip(batch.embeddings) {
                if vector.len() != dimension {
                    return Err(exec_datafusion_err!(
                        "the model returned a vector of {} values, not its dimension {dimension}",
                        vector.len()
                    ));
                }
                let row = present[i];
                values[row * dimension..(row + 1) * dimension].copy_from_slice(&vector);
            }
        }
    }
    let size = i32::try_from(dimension)
        .map_err(|_| exec_datafusion_err!("dimension {dimension} is too large for Arrow"))?;
    let list = FixedSizeListArray::try_new(
        Arc::new(Field::new_list_field(DataType::Float32, false)),
        size,
        Arc::new(Float32Array::from(values)),
        nulls,
    )?;
    Ok(Arc::new(list))
}
