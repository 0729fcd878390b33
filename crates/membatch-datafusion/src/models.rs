//! Models named on a command line, `[NAME=]SOURCE`, loaded to embed or
//! read only as far as planning needs (the dimension).

use std::str::FromStr;

use membatch::settings::Group;
use membatch::{BertEmbedder, BertEmbedderBuilder, Config, Embedder, MemoryBudget, ModelSource};

use crate::udf::EmbedUdfBuilder;

/// The library's settings this crate's binaries take as flags
/// (`--memory-budget`, `--threads`, `--precision`, ...): all but `--model`,
/// which names models there (`[NAME=]SOURCE`, repeatable). For those
/// binaries, not part of the API.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct ModelFlags;

impl membatch_bin::Groups for ModelFlags {
    const GROUPS: &'static [Group] = &[Group::Model, Group::Memory, Group::Batching];
    const EXCEPT: &'static [&'static str] = &["model"];
}

/// A model for `embed`: the name SQL calls it by and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The name in `embed(text, 'name')`.
    pub name: String,
    /// A local sentence-transformers directory or a Hugging Face repo id.
    pub source: ModelSource,
}

impl ModelSpec {
    /// The model `config` names (`MEMBATCH_MODEL`), else membatch's
    /// default ([`ModelSource::default_model`]), named after its last path
    /// segment.
    pub fn default_for(config: &Config) -> Self {
        let source = config
            .model()
            .source
            .clone()
            .unwrap_or_else(ModelSource::default_model);
        ModelSpec {
            name: short_name(&source),
            source,
        }
    }

    /// The model with `config`'s settings (threads, precision, ...).
    fn builder(&self, config: &Config) -> Result<BertEmbedderBuilder, membatch::Error> {
        let config = config
            .clone()
            .into_builder()
            .source(self.source.clone())
            .build()?;
        Ok(BertEmbedderBuilder::from(config.model().clone()))
    }

    /// Loads the model, weights and all, admitted by `budget` (the one
    /// its batches run under: `MemoryBudget::admit_load`).
    ///
    /// # Errors
    ///
    /// membatch's, reading or checking the model.
    pub fn load(
        &self,
        config: &Config,
        budget: &MemoryBudget,
    ) -> Result<BertEmbedder, membatch::Error> {
        self.builder(config)?.budget(budget.clone()).build()
    }

    /// The model's dimension, from its configuration alone (no weights).
    ///
    /// # Errors
    ///
    /// membatch's, reading or checking the configuration and tokenizer.
    pub fn dimension(&self, config: &Config) -> Result<usize, membatch::Error> {
        Ok(self.builder(config)?.build_lazy()?.info().dimension)
    }
}

/// The last segment of a directory or repo id (`all-MiniLM-L6-v2`).
fn short_name(source: &ModelSource) -> String {
    let id = match source {
        ModelSource::Dir(p) => p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        other => other.id().split('@').next().unwrap_or_default().to_string(),
    };
    // A cached hub directory is named `owner--repo`.
    let last = id.rsplit(['/', '\\']).next().unwrap_or(&id);
    last.rsplit("--").next().unwrap_or(last).to_string()
}

impl FromStr for ModelSpec {
    type Err = String;

    /// `SOURCE` (named after its last segment) or `NAME=SOURCE`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("a model is a directory or a repo id, optionally NAME=SOURCE".into());
        }
        match s.split_once('=') {
            Some((name, source)) if !name.is_empty() && !source.is_empty() => Ok(ModelSpec {
                name: name.to_string(),
                source: ModelSource::parse(source),
            }),
            Some(_) => Err(format!("{s:?}: expected NAME=SOURCE")),
            None => {
                let source = ModelSource::parse(s);
                Ok(ModelSpec {
                    name: short_name(&source),
                    source,
                })
            }
        }
    }
}

/// Adds every model of `specs` (or the default one) to `builder`: loaded
/// under `run`'s budget (the one the UDF's batches run under) when given,
/// else only its dimension read, for planning.
///
/// # Errors
///
/// membatch's, reading a model.
pub fn add_models(
    mut builder: EmbedUdfBuilder,
    specs: &[ModelSpec],
    config: &Config,
    run: Option<&MemoryBudget>,
) -> Result<EmbedUdfBuilder, membatch::Error> {
    let default = [ModelSpec::default_for(config)];
    let specs = if specs.is_empty() {
        &default[..]
    } else {
        specs
    };
    for spec in specs {
        builder = if let Some(budget) = run {
            builder.model(spec.name.clone(), spec.load(config, budget)?)
        } else {
            builder.planning_model(spec.name.clone(), spec.dimension(config)?)
        };
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_named_after_their_last_segment_or_explicitly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sentence-transformers--all-MiniLM-L6-v2");
        std::fs::create_dir(&path).unwrap();
        let spec: ModelSpec = path.to_str().unwrap().parse().unwrap();
        assert_eq!(spec.name, "all-MiniLM-L6-v2");
        let spec: ModelSpec = "mini=sentence-transformers/all-MiniLM-L6-v2"
            .parse()
            .unwrap();
        assert_eq!(spec.name, "mini");
        let spec: ModelSpec = "sentence-transformers/all-mpnet-base-v2".parse().unwrap();
        assert_eq!(spec.name, "all-mpnet-base-v2");
        assert!("=x".parse::<ModelSpec>().is_err());
        assert!("".parse::<ModelSpec>().is_err());
    }
}
