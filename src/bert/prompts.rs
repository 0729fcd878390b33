//! Prompts: the model's named prompts (`config_sentence_transformers.json`)
//! and the one in force.

use std::collections::BTreeMap;

use tokenizers::Tokenizer;

use crate::embedder::unknown_prompt;
use crate::error::{BoxError, Error, Result};

/// A model's named prompts, each resolved once at load (the tokens
/// pooling leaves out of it are counted then, not per call).
#[derive(Debug, Clone, Default)]
pub(crate) struct Prompts {
    pub(super) texts: BTreeMap<String, String>,
    resolved: BTreeMap<String, ActivePrompt>,
}

impl Prompts {
    /// The prompts `texts`, pooled with the text or not (`include_prompt`
    /// of the pooling config), for texts `tokenizer` encodes.
    pub(super) fn new(
        texts: BTreeMap<String, String>,
        include_prompt: bool,
        tokenizer: &Tokenizer,
    ) -> Result<Self> {
        let mut resolved = BTreeMap::new();
        for (name, text) in &texts {
            // Without include_prompt, sentence-transformers leaves the
            // prompt's tokens out of pooling: as many leading tokens as the
            // prompt alone has, less its end token.
            let skip = if include_prompt || text.is_empty() {
                0
            } else {
                let alone = tokenizer
                    .encode(text.as_str(), true)
                    .map_err(|e| Error::Tokenization(BoxError::from(e)))?;
                alone.len().saturating_sub(1)
            };
            let prompt = ActivePrompt {
                name: name.clone(),
                text: text.clone(),
                skip,
            };
            resolved.insert(name.clone(), prompt);
        }
        Ok(Prompts { texts, resolved })
    }

    /// The prompts' names, in order.
    pub(super) fn names(&self) -> Vec<String> {
        self.texts.keys().cloned().collect()
    }

    /// The prompt `name`, ready to put before texts.
    pub(super) fn active(&self, name: &str) -> Result<&ActivePrompt> {
        self.resolved
            .get(name)
            .ok_or_else(|| unknown_prompt(name, &self.names()))
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
