//! Models loaded on first use and unloaded on demand: [`LazyEmbedder`]
//! over a [`ModelLoader`]. An [`Embedder`] decorator beside the trait: a
//! backend supplies the loader, the service (or anyone) uses the wrapper.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use super::{Embedder, ModelInfo, ModelState, Tokens};
use crate::error::Result;

/// What a lazily loaded model knows before its weights are in memory, and
/// how to load them.
///
/// Everything a batcher plans with ([`info`](Self::info), and each text's
/// tokens) must be answerable from the small part of a model (its
/// configuration and tokenizer), so that admitting a request never loads
/// the weights; [`load`](Self::load) is the expensive part.
pub trait ModelLoader: Send + Sync + 'static {
    /// The loaded model.
    type Model: Embedder;

    /// Loads the weights.
    ///
    /// # Errors
    ///
    /// Whatever loading fails with (a missing file, a model too large to
    /// load in the memory left).
    fn load(&self) -> Result<Self::Model>;

    /// The model as [`Embedder::info`] describes it, before it is loaded
    /// (`weight_bytes` may be `None` until it is).
    fn info(&self) -> ModelInfo;

    /// As [`Embedder::tokenize`], without the weights: the loaded model
    /// embeds these tokens.
    ///
    /// # Errors
    ///
    /// As [`Embedder::tokenize`].
    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>>;

    /// As [`Embedder::prompt_names`], without the weights. Default: none.
    fn prompt_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// As [`Embedder::tokenize_prompted`], without the weights. Default:
    /// `None` tokenizes as [`tokenize`](Self::tokenize), a name is an
    /// error.
    ///
    /// # Errors
    ///
    /// As [`Embedder::tokenize_prompted`].
    fn tokenize_prompted(&self, texts: &[&str], prompt: Option<&str>) -> Result<Vec<Tokens>> {
        match prompt {
            None => self.tokenize(texts),
            Some(name) => Err(super::unknown_prompt(name, &self.prompt_names())),
        }
    }
}

/// An [`Embedder`] whose weights are loaded on the first
/// [`embed_tokens`](Embedder::embed_tokens) and freed by [`unload`](Embedder::unload);
/// the next embed loads them again.
///
/// One load at a time: callers that need the model while it loads wait for
/// that load instead of starting their own. A failed load leaves the state
/// [`ModelState::Failed`] and returns its error; the next embed tries
/// again. An unload waits for embeds in progress, so a batch never loses
/// its model halfway.
///
/// ```
/// use membatch::{LazyEmbedder, ModelLoader};
/// use membatch::{Embedder, ModelInfo, Result, Tokens};
///
/// /// One token per byte.
/// fn bytes(texts: &[&str]) -> Vec<Tokens> {
///     texts.iter().map(|t| Tokens::new(t.bytes().map(u32::from).collect())).collect()
/// }
///
/// struct Length; // a toy model: one dimension, the text's length
/// impl Embedder for Length {
///     fn info(&self) -> ModelInfo { ModelInfo::new(1, 512) }
///     fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> { Ok(bytes(texts)) }
///     fn embed_tokens(&self, batch: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
///         Ok(batch.iter().map(|t| vec![t.len() as f32]).collect())
///     }
/// }
///
/// struct Loader;
/// impl ModelLoader for Loader {
///     type Model = Length;
///     fn load(&self) -> Result<Length> { Ok(Length) }
///     fn info(&self) -> ModelInfo { Length.info() }
///     fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> { Ok(bytes(texts)) }
/// }
///
/// let lazy = LazyEmbedder::new(Loader);
/// assert_eq!(lazy.state().as_str(), "unloaded");
/// assert_eq!(lazy.embed(&["abc"])?, vec![vec![3.0]]); // loads
/// assert!(lazy.state().is_loaded());
/// assert!(lazy.unload());
/// assert_eq!((lazy.state().as_str(), lazy.loads()), ("unloaded", 1));
/// # Ok::<(), membatch::Error>(())
/// ```
pub struct LazyEmbedder<L: ModelLoader> {
    loader: L,
    model: RwLock<Option<L::Model>>,
    /// Held while loading: one load at a time.
    loading: Mutex<()>,
    state: Mutex<ModelState>,
    loads: AtomicU64,
    /// The loaded model's weight bytes (0: not loaded, or not known), so
    /// that [`info`](Embedder::info), asked at every admission, takes no
    /// lock a waiting unload could hold up.
    weight_bytes: AtomicU64,
}

impl<L: ModelLoader> std::fmt::Debug for LazyEmbedder<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyEmbedder")
            .field("state", &*self.state.lock())
            .field("loads", &self.loads())
            .finish_non_exhaustive()
    }
}

impl<L: ModelLoader> LazyEmbedder<L> {
    /// An embedder over `loader`, nothing loaded yet.
    pub fn new(loader: L) -> Self {
        LazyEmbedder {
            loader,
            model: RwLock::new(None),
            loading: Mutex::new(()),
            state: Mutex::new(ModelState::Unloaded),
            loads: AtomicU64::new(0),
            weight_bytes: AtomicU64::new(0),
        }
    }

    /// The loader.
    pub fn loader(&self) -> &L {
        &self.loader
    }

    /// How many times the weights were loaded.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// Loads the weights now, unless they are loaded (waits for a load in
    /// progress).
    ///
    /// # Errors
    ///
    /// The loader's error; the state becomes [`ModelState::Failed`].
    pub fn load(&self) -> Result<()> {
        let _one = self.loading.lock();
        if self.model.read().is_some() {
            return Ok(());
        }
        *self.state.lock() = ModelState::Loading;
        tracing::info!("loading the model");
        let started = std::time::Instant::now();
        match self.loader.load() {
            Ok(model) => {
                let bytes = model.info().weight_bytes.unwrap_or(0);
                *self.model.write() = Some(model);
                self.weight_bytes.store(bytes, Ordering::Relaxed);
                *self.state.lock() = ModelState::Loaded;
                self.loads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(seconds = started.elapsed().as_secs_f64(), "model loaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e.report(), "loading the model failed");
                *self.state.lock() = ModelState::Failed(e.clone());
                Err(e)
            }
        }
    }
}

impl<L: ModelLoader> Embedder for LazyEmbedder<L> {
    /// The loader's description; the weights' bytes once they are loaded.
    fn info(&self) -> ModelInfo {
        let weights = Some(self.weight_bytes.load(Ordering::Relaxed)).filter(|&b| b > 0);
        let info = self.loader.info();
        info.with_weight_bytes(weights.or(info.weight_bytes))
    }

    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
        self.loader.tokenize(texts)
    }

    fn prompt_names(&self) -> Vec<String> {
        self.loader.prompt_names()
    }

    fn tokenize_prompted(&self, texts: &[&str], prompt: Option<&str>) -> Result<Vec<Tokens>> {
        self.loader.tokenize_prompted(texts, prompt)
    }

    fn embed_tokens(&self, batch: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
        loop {
            if let Some(model) = self.model.read().as_ref() {
                return model.embed_tokens(batch);
            }
            // An unload may slip in between this load and the read above;
            // then load again.
            self.load()?;
        }
    }

    fn state(&self) -> ModelState {
        self.state.lock().clone()
    }

    fn ensure_loaded(&self) -> Result<()> {
        self.load()
    }

    /// Drops the weights (after any embed in progress) and returns the
    /// freed memory to the OS.
    fn unload(&self) -> bool {
        let _no_load = self.loading.lock();
        let freed = self.model.write().take().is_some();
        if freed {
            self.weight_bytes.store(0, Ordering::Relaxed);
            *self.state.lock() = ModelState::Unloaded;
            crate::memory::trim();
            tracing::debug!("model unloaded");
        }
        freed
    }
}
