//! Prompts: the model's named prompts (`config_sentence_transformers.json`)
//! and the one in force.

use std::collections::BTreeMap;

use tokenizers::Tokenizer;

use crate::embedder::unknown_prompt;
use crate::error::{BoxError, Error, Result};

/// A model's named prompts and how they are pooled.
#[derive(Debug, Clone, Default)]
pub(crate) struct Prompts {
    pub(super) texts: BTreeMap<String, String>,
    /// The pooling config's `include_prompt`.
    pub(super) include_prompt: bool,
}

impl Prompts {
    /// The prompts' names, in order.
    pub(super) fn names(&self) -> Vec<String> {
        self.texts.keys().cloned().collect()
    }

    /// The prompt `name`, ready to put before texts.
    pub(super) fn active(&self, name: &str, tokenizer: &Tokenizer) -> Result<ActivePrompt> {
        let Some(text) = self.texts.get(name) else {
            return Err(unknown_prompt(name, &self.names()));
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
