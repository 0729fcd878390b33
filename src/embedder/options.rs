//! [`EmbedOptions`]: how one call embeds its texts (which of the model's
//! prompts goes before them, how many dimensions the vectors keep, what a
//! text too long for the model gets), the same on every surface.

use super::{Embedder, ModelInfo, ModelState, Tokens};
use crate::error::{Error, Result};

/// Which of the model's named prompts goes before a call's texts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Prompt {
    /// The embedder's own: the prompt it was built with (for a
    /// `BertEmbedder`, its `prompt_name` setting, else the model's
    /// `default_prompt_name`), else none.
    #[default]
    Default,
    /// No prompt, whatever the embedder's default.
    Off,
    /// The model's prompt of this name (`"query"`, `"document"`): an
    /// unknown name is an error that lists the model's prompts.
    Named(String),
}

/// What a call does with a text longer than the model reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Truncation {
    /// Keep its first tokens, as the model's tokenizer truncates (the
    /// default, as sentence-transformers does).
    #[default]
    Cut,
    /// Refuse the call with [`Error::TextTooLong`].
    Refuse,
}

/// How one call embeds its texts: a prompt, Matryoshka dimensions, and what
/// a text too long for the model gets. The default changes nothing: the
/// embedder's own prompt, every dimension, long texts cut.
///
/// Taken by [`Embedder::embed_with`],
/// [`BatchEmbedder::embed_with`](crate::BatchEmbedder::embed_with) and
/// [`EmbedService::submit_with`](crate::EmbedService::submit_with), so a
/// query and a document can go through one resident model with different
/// prompts, and one request can ask for shorter vectors than the next.
///
/// ```
/// use membatch::{EmbedOptions, Embedder, ModelInfo, Result, Tokens};
///
/// /// A toy backend: four dimensions, normalised.
/// struct Four;
/// impl Embedder for Four {
///     fn info(&self) -> ModelInfo { ModelInfo::new(4, 512).with_normalized(true) }
///     fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
///         Ok(texts.iter().map(|t| Tokens::new(t.bytes().map(u32::from).collect())).collect())
///     }
///     fn embed_tokens(&self, batch: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
///         Ok(batch.iter().map(|_| vec![0.6, 0.8, 0.0, 0.0]).collect())
///     }
/// }
///
/// // The first dimension only, normalised again as the model normalises.
/// let short = Four.embed_with(&["a"], &EmbedOptions::new().with_dimensions(1))?;
/// assert_eq!(short, vec![vec![1.0]]);
/// // This model has no prompts: naming one is an error saying so.
/// let err = Four.embed_with(&["a"], &EmbedOptions::new().with_prompt_name("query"));
/// assert!(err.unwrap_err().to_string().contains("no prompts"));
/// # Ok::<(), membatch::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct EmbedOptions {
    /// The prompt before each text. Default: [`Prompt::Default`].
    pub prompt: Prompt,
    /// Keep the first `n` dimensions of each vector (Matryoshka
    /// truncation), normalised again when the model normalises
    /// ([`ModelInfo::normalized`]). Between 1 and the model's dimension.
    /// Default: all.
    pub dimensions: Option<usize>,
    /// What a text longer than the model reads gets. Default: cut.
    pub truncation: Truncation,
}

impl EmbedOptions {
    /// The defaults: the embedder's own prompt, every dimension, long texts
    /// cut.
    pub fn new() -> Self {
        EmbedOptions::default()
    }

    /// With the model's prompt `name` before each text.
    #[must_use]
    pub fn with_prompt_name(mut self, name: impl Into<String>) -> Self {
        self.prompt = Prompt::Named(name.into());
        self
    }

    /// With this prompt choice.
    #[must_use]
    pub fn with_prompt(mut self, prompt: Prompt) -> Self {
        self.prompt = prompt;
        self
    }

    /// Keeping the first `n` dimensions (see
    /// [`dimensions`](Self::dimensions)).
    #[must_use]
    pub fn with_dimensions(mut self, n: usize) -> Self {
        self.dimensions = Some(n);
        self
    }

    /// With this handling of texts longer than the model reads.
    #[must_use]
    pub fn with_truncation(mut self, truncation: Truncation) -> Self {
        self.truncation = truncation;
        self
    }

    /// Checks what can be checked before any text is tokenized: the
    /// dimensions against the model's, the prompt's name against the
    /// embedder's prompts.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming `dimensions` or `prompt_name`.
    pub fn check(&self, embedder: &(impl Embedder + ?Sized)) -> Result<()> {
        if let Some(n) = self.dimensions {
            let width = embedder.info().dimension;
            if n == 0 || n > width {
                return Err(Error::invalid_config(
                    "dimensions",
                    n,
                    format!("must be between 1 and the model's dimension ({width})"),
                ));
            }
        }
        if let Prompt::Named(name) = &self.prompt {
            let names = embedder.prompt_names();
            if !names.iter().any(|n| n == name) {
                return Err(unknown_prompt(name, &names));
            }
        }
        Ok(())
    }

    /// The width of the vectors these options give from a model of
    /// `info`.
    pub(crate) fn dimension(&self, info: &ModelInfo) -> usize {
        self.dimensions
            .unwrap_or(info.dimension)
            .min(info.dimension)
    }

    /// Tokenizes `texts` as these options say: behind the chosen prompt,
    /// refusing a text truncation cut when they refuse long texts.
    ///
    /// # Errors
    ///
    /// As [`Embedder::tokenize_prompted`]; [`Error::TextTooLong`] for the
    /// first text cut, with [`Truncation::Refuse`].
    pub(crate) fn tokenize(
        &self,
        embedder: &(impl Embedder + ?Sized),
        texts: &[&str],
    ) -> Result<Vec<Tokens>> {
        let tokens = self.tokenize_prompted(embedder, texts)?;
        self.check_truncation(&tokens, embedder.info().max_seq_length)?;
        Ok(tokens)
    }

    /// Tokenizes `texts` behind the chosen prompt.
    fn tokenize_prompted(
        &self,
        embedder: &(impl Embedder + ?Sized),
        texts: &[&str],
    ) -> Result<Vec<Tokens>> {
        match &self.prompt {
            Prompt::Default => embedder.tokenize(texts),
            Prompt::Off => embedder.tokenize_prompted(texts, None),
            Prompt::Named(name) => embedder.tokenize_prompted(texts, Some(name)),
        }
    }

    /// With [`Truncation::Refuse`], [`Error::TextTooLong`] for the first of
    /// `tokens` truncation cut.
    ///
    /// # Errors
    ///
    /// As said.
    pub(crate) fn check_truncation(&self, tokens: &[Tokens], max_tokens: usize) -> Result<()> {
        if self.truncation == Truncation::Refuse {
            if let Some(index) = tokens.iter().position(Tokens::is_truncated) {
                return Err(Error::TextTooLong { index, max_tokens });
            }
        }
        Ok(())
    }

    /// Shapes `vectors` from a model of `info` as these options say: the
    /// first [`dimensions`](Self::dimensions), normalised again when the
    /// model normalises.
    pub(crate) fn shape(&self, info: &ModelInfo, vectors: &mut [Vec<f32>]) {
        if let Some(n) = self.dimensions {
            for v in vectors {
                truncate_dimensions(v, n, info.normalized);
            }
        }
    }
}

/// Keeps the first `n` values of `v` and, when `renormalize`, scales them
/// back to unit length (a zero vector stays zero).
pub(crate) fn truncate_dimensions(v: &mut Vec<f32>, n: usize, renormalize: bool) {
    if n >= v.len() {
        return;
    }
    v.truncate(n);
    if renormalize {
        l2_normalize(v);
    }
}

/// Divides by the L2 norm, floored at 1e-12 like torch's `normalize` (a
/// zero vector stays zero): what a model's `Normalize` module does, and
/// what a cut vector gets again.
pub(crate) fn l2_normalize(x: &mut [f32]) {
    let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    x.iter_mut().for_each(|v| *v /= norm);
}

/// The error for a prompt the model does not define, listing those it
/// does.
pub(crate) fn unknown_prompt(name: &str, known: &[String]) -> Error {
    Error::invalid_config(
        "prompt_name",
        name,
        if known.is_empty() {
            "the model defines no prompts (config_sentence_transformers.json)".to_string()
        } else {
            format!("the model's prompts are: {}", known.join(", "))
        },
    )
}

/// An embedder seen through one call's options: it tokenizes behind the
/// options' prompt and gives vectors of their dimensions, so a batcher
/// counts prompted texts truly and plans with the real output width.
pub(crate) struct WithOptions<'a, E: ?Sized> {
    pub(crate) embedder: &'a E,
    pub(crate) options: &'a EmbedOptions,
}

impl<E: Embedder + ?Sized> Embedder for WithOptions<'_, E> {
    fn info(&self) -> ModelInfo {
        let info = self.embedder.info();
        ModelInfo {
            dimension: self.options.dimension(&info),
            ..info
        }
    }

    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
        // Truncation is checked on the whole text's tokens by the caller:
        // a batcher may hand a huge text over as a prefix.
        self.options.tokenize_prompted(self.embedder, texts)
    }

    fn embed_tokens(&self, batch: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
        let mut vectors = self.embedder.embed_tokens(batch)?;
        self.options.shape(&self.embedder.info(), &mut vectors);
        Ok(vectors)
    }

    fn prompt_names(&self) -> Vec<String> {
        self.embedder.prompt_names()
    }

    fn tokenize_prompted(&self, texts: &[&str], prompt: Option<&str>) -> Result<Vec<Tokens>> {
        self.embedder.tokenize_prompted(texts, prompt)
    }

    fn state(&self) -> ModelState {
        self.embedder.state()
    }

    fn unload(&self) -> bool {
        self.embedder.unload()
    }

    fn ensure_loaded(&self) -> Result<()> {
        self.embedder.ensure_loaded()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two prompts, a token per byte (the prompt's included), four
    /// normalised dimensions: the byte count, the prompt's tokens, 0, 1.
    struct Prompts;
    impl Embedder for Prompts {
        fn info(&self) -> ModelInfo {
            ModelInfo::new(4, 8).with_normalized(true)
        }
        fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
            self.tokenize_prompted(texts, Some("query"))
        }
        fn embed_tokens(&self, batch: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
            Ok(batch
                .iter()
                .map(|t| vec![t.len() as f32, t.pooling_skip() as f32, 0.0, 1.0])
                .collect())
        }
        fn prompt_names(&self) -> Vec<String> {
            vec!["document".into(), "query".into()]
        }
        fn tokenize_prompted(&self, texts: &[&str], prompt: Option<&str>) -> Result<Vec<Tokens>> {
            let prefix = match prompt {
                None => "",
                Some("query") => "q: ",
                Some("document") => "d:: ",
                Some(other) => return Err(unknown_prompt(other, &self.prompt_names())),
            };
            Ok(texts
                .iter()
                .map(|t| {
                    let all: Vec<u32> = prefix.bytes().chain(t.bytes()).map(u32::from).collect();
                    let cut = all.len() > 8;
                    Tokens::new(all.into_iter().take(8).collect())
                        .truncated(cut)
                        .with_pooling_skip(prefix.len())
                })
                .collect())
        }
    }

    #[test]
    fn the_prompt_chosen_is_the_one_tokenized() {
        let first = |o: EmbedOptions| Prompts.embed_with(&["ab"], &o).unwrap()[0][..2].to_vec();
        assert_eq!(
            first(EmbedOptions::new()),
            [5.0, 3.0],
            "the embedder's own: query"
        );
        assert_eq!(
            first(EmbedOptions::new().with_prompt(Prompt::Off)),
            [2.0, 0.0]
        );
        assert_eq!(
            first(EmbedOptions::new().with_prompt_name("document")),
            [6.0, 4.0]
        );
    }

    #[test]
    fn an_unknown_prompt_lists_the_models() {
        let err = Prompts
            .embed_with(&["ab"], &EmbedOptions::new().with_prompt_name("passage"))
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("passage") && text.contains("document, query"),
            "{text}"
        );
        assert!(matches!(err, Error::InvalidConfig { name, .. } if name == "prompt_name"));
    }

    #[test]
    fn dimensions_keep_the_first_values_normalised_again() {
        let v = Prompts
            .embed_with(&["a"], &EmbedOptions::new().with_dimensions(2))
            .unwrap();
        // [4, 3] / 5
        assert_eq!(v, vec![vec![0.8, 0.6]]);
        for bad in [0, 5] {
            let err = Prompts
                .embed_with(&["a"], &EmbedOptions::new().with_dimensions(bad))
                .unwrap_err();
            assert!(
                matches!(&err, Error::InvalidConfig { name, .. } if name == "dimensions"),
                "{bad}: {err}"
            );
            assert!(err
                .to_string()
                .contains("between 1 and the model's dimension (4)"));
        }
    }

    #[test]
    fn without_renormalising_the_values_are_kept_as_they_are() {
        let mut v = vec![3.0, 4.0, 12.0];
        truncate_dimensions(&mut v, 2, false);
        assert_eq!(v, [3.0, 4.0]);
        let mut zero = vec![0.0; 3];
        truncate_dimensions(&mut zero, 1, true);
        assert_eq!(zero, [0.0], "a zero vector stays zero");
    }

    #[test]
    fn refusing_long_texts_names_the_first_cut() {
        let refuse = EmbedOptions::new().with_truncation(Truncation::Refuse);
        let err = Prompts
            .embed_with(&["a", "much too long"], &refuse)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::TextTooLong {
                    index: 1,
                    max_tokens: 8
                }
            ),
            "{err}"
        );
        assert!(Prompts.embed_with(&["a"], &refuse).is_ok());
    }

    #[test]
    fn the_view_reports_the_options_width_and_shapes_its_vectors() {
        let options = EmbedOptions::new()
            .with_dimensions(3)
            .with_prompt(Prompt::Off);
        let view = WithOptions {
            embedder: &Prompts,
            options: &options,
        };
        assert_eq!(view.info().dimension, 3);
        let tokens = view.tokenize(&["xyz"]).unwrap();
        assert_eq!(tokens[0].pooling_skip(), 0);
        let v = view.embed_tokens(&[&tokens[0]]).unwrap();
        assert_eq!(v[0].len(), 3);
    }
}
