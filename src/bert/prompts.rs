//! Prompts: the model's named prompts (`config_sentence_transformers.json`),
//! the one in force, and an embedder behind one of them.

use std::collections::BTreeMap;

use tokenizers::Tokenizer;

use super::BertEmbedder;
use crate::embedder::{Embedder, ModelInfo, Tokens};
use crate::error::{BoxError, Error, Result};

/// A model's named prompts and how they are pooled.
#[derive(Debug, Clone, Default)]
pub(crate) struct Prompts {
    pub(super) texts: BTreeMap<String, String>,
    /// The pooling config's `include_prompt`.
    pub(super) include_prompt: bool,
}

impl Prompts {
    /// The prompt `name`, ready to put before texts.
    pub(super) fn active(&self, name: &str, tokenizer: &Tokenizer) -> Result<ActivePrompt> {
        let Some(text) = self.texts.get(name) else {
            let known: Vec<&str> = self.texts.keys().map(String::as_str).collect();
            return Err(Error::invalid_config(
                "prompt_name",
                name,
                if known.is_empty() {
                    "the model defines no prompts (config_sentence_transformers.json)".to_string()
                } else {
                    format!("the model's prompts are: {}", known.join(", "))
                },
            ));
        };
        // Without include_prompt, sentence-transformers leaves the prompt's
        // tokens out of pooling: as many leading tokens as the prompt alone
        // has, less its end token.
        let skip = if self.include_prompt || text.is_empty() {
            0
        } else {
            let alone = tokenizer
                .encode(text.as_str(), true)
                .map_err(|e| Error::Tokenization(BoxError::from(e)))?;
            alone.len().saturating_sub(1)
        };
        Ok(ActivePrompt {
            name: name.to_string(),
            text: text.clone(),
            skip,
        })
    }
}

/// A prompt in force.
#[derive(Debug, Clone)]
pub(crate) struct ActivePrompt {
    pub(super) name: String,
    pub(super) text: String,
    /// Leading tokens left out of pooling.
    pub(super) skip: usize,
}

/// A [`BertEmbedder`] behind one of its model's prompts, from
/// [`BertEmbedder::with_prompt`]: every text is embedded and counted with
/// the prompt before it.
#[derive(Debug, Clone)]
pub struct Prompted<'a> {
    pub(super) embedder: &'a BertEmbedder,
    pub(super) prompt: ActivePrompt,
}

impl Embedder for Prompted<'_> {
    fn info(&self) -> ModelInfo {
        self.embedder.info
    }

    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
        self.embedder.tokenize_prompted(texts, Some(&self.prompt))
    }

    fn embed_tokens(&self, batch: &[&Tokens]) -> Result<Vec<Vec<f32>>> {
        self.embedder.embed_skipping(batch, self.prompt.skip)
    }
}
