//! The sentence-transformers metadata that decides what a model's output is:
//! `modules.json`, the pooling config, `sentence_bert_config.json` and the
//! prompts of `config_sentence_transformers.json`.
//!
//! A model directory without these files is a plain transformer; it gets
//! sentence-transformers' own defaults (mean pooling, no normalisation).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::pooling::Pooling;
use crate::error::{boxed, Error, ModelFileError, Result};
use crate::source::ModelFiles;

/// What the sentence-transformers files say about a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentenceConfig {
    pub(crate) pooling: Pooling,
    /// A `Normalize` module follows pooling.
    pub(crate) normalize: bool,
    /// `max_seq_length` from `sentence_bert_config.json`, when present.
    pub(crate) max_seq_length: Option<usize>,
    /// Named prompts (`prompts` of `config_sentence_transformers.json`):
    /// text put before an input, such as E5's `"query: "`.
    pub(crate) prompts: BTreeMap<String, String>,
    /// The prompt applied when the caller names none.
    pub(crate) default_prompt_name: Option<String>,
    /// Whether a prompt's tokens are pooled with the text's (the pooling
    /// config's `include_prompt`, default true).
    pub(crate) include_prompt: bool,
}

/// `config_sentence_transformers.json`, the fields that change the output.
#[derive(Deserialize, Default)]
#[serde(default)]
struct StConfig {
    prompts: BTreeMap<String, String>,
    default_prompt_name: Option<String>,
}

#[derive(Deserialize)]
struct Module {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// The flags of a `Pooling` module's `config.json`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct PoolingConfig {
    pooling_mode_cls_token: bool,
    pooling_mode_mean_tokens: bool,
    pooling_mode_max_tokens: bool,
    pooling_mode_mean_sqrt_len_tokens: bool,
    pooling_mode_weightedmean_tokens: bool,
    pooling_mode_lasttoken: bool,
    include_prompt: Option<bool>,
}

impl SentenceConfig {
    /// Reads the files. `pooling`, when given, is the caller's choice and
    /// replaces the pooling config's modes (which then need not exist).
    ///
    /// A `modules.json` that lists a `Pooling` module whose config is
    /// missing is an error naming the file unless the caller chose the
    /// pooling: the modes cannot be inferred (a BERT model may be trained
    /// for mean or CLS pooling), and a guessed default would give vectors
    /// in another space without a word.
    pub(crate) fn load(files: &ModelFiles, pooling: Option<Pooling>) -> Result<Self> {
        let max_seq_length = match files.optional("sentence_bert_config.json")? {
            Some(p) => read_json::<SentenceBertConfig>(&p)?.max_seq_length,
            None => None,
        };
        let st: StConfig = match files.optional("config_sentence_transformers.json")? {
            Some(p) => read_json(&p)?,
            None => StConfig::default(),
        };
        if let Some(name) = &st.default_prompt_name {
            if !st.prompts.contains_key(name) {
                let path = files.required("config_sentence_transformers.json")?;
                return Err(Error::model_file(
                    path,
                    ModelFileError::InvalidSetting {
                        name: "default_prompt_name".into(),
                        found: name.clone(),
                        reason: "is not one of the file's prompts".into(),
                    },
                ));
            }
        }
        let mut config = SentenceConfig {
            pooling: pooling.unwrap_or(Pooling::Mean),
            normalize: false,
            max_seq_length,
            prompts: st.prompts,
            default_prompt_name: st.default_prompt_name,
            include_prompt: true,
        };
        let Some(modules_path) = files.optional("modules.json")? else {
            // No module list: a pooling folder on its own still says how to pool.
            if let Some(p) = files.optional("1_Pooling/config.json")? {
                config.read_pooling(&p, pooling)?;
            }
            return Ok(config);
        };
        let modules: Vec<Module> = read_json(&modules_path)?;
        for module in &modules {
            // "sentence_transformers.models.Pooling" -> "Pooling"
            match module.kind.rsplit('.').next().unwrap_or_default() {
                "Transformer" => {}
                "Pooling" => {
                    let file = format!("{}/config.json", module.path.trim_end_matches('/'));
                    match (files.optional(&file)?, pooling) {
                        (Some(p), _) => config.read_pooling(&p, pooling)?,
                        (None, Some(chosen)) => tracing::info!(
                            file,
                            pooling = ?chosen,
                            "the model's pooling config is missing; using the pooling chosen by the caller"
                        ),
                        (None, None) => {
                            let hint = " (modules.json lists a Pooling module; choose the pooling \
                                        the model was trained with, as its model card says, with \
                                        BertEmbedderBuilder::pooling)";
                            return Err(match files.required(&file) {
                                Err(Error::ModelFile { path, .. }) | Ok(path) => Error::model_file(
                                    path,
                                    ModelFileError::Missing { hint: hint.into() },
                                ),
                                Err(e) => e,
                            });
                        }
                    }
                }
                // Normalize has no parameters, and its folder may be absent.
                "Normalize" => config.normalize = true,
                _ => {
                    return Err(Error::model_file(
                        modules_path,
                        ModelFileError::UnsupportedModule {
                            found: module.kind.clone(),
                        },
                    ))
                }
            }
        }
        Ok(config)
    }

    /// Takes the modes (unless the caller chose them) and `include_prompt`
    /// from a pooling config.
    fn read_pooling(&mut self, path: &Path, chosen: Option<Pooling>) -> Result<()> {
        let c: PoolingConfig = read_json(path)?;
        self.include_prompt = c.include_prompt.unwrap_or(true);
        if chosen.is_none() {
            self.pooling = pooling_modes(&c, path)?;
        }
        Ok(())
    }
}

fn pooling_modes(c: &PoolingConfig, path: &Path) -> Result<Pooling> {
    let enabled: Vec<&str> = [
        (c.pooling_mode_cls_token, "cls"),
        (c.pooling_mode_mean_tokens, "mean"),
        (c.pooling_mode_max_tokens, "max"),
        (c.pooling_mode_mean_sqrt_len_tokens, "mean_sqrt_len_tokens"),
        (c.pooling_mode_weightedmean_tokens, "weightedmean"),
        (c.pooling_mode_lasttoken, "lasttoken"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    match enabled.as_slice() {
        ["cls"] => Ok(Pooling::Cls),
        ["mean"] => Ok(Pooling::Mean),
        ["max"] => Ok(Pooling::Max),
        ["lasttoken"] => Ok(Pooling::LastToken),
        other => Err(Error::model_file(
            path,
            ModelFileError::UnsupportedPooling {
                found: if other.is_empty() {
                    "none".to_string()
                } else {
                    other.join("+")
                },
            },
        )),
    }
}

/// Reads and parses a JSON file; errors name the file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound {
            ModelFileError::Missing {
                hint: String::new(),
            }
        } else {
            ModelFileError::Io(boxed(e))
        };
        Error::model_file(path, kind)
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::model_file(path, ModelFileError::Json(boxed(e))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ModelSource;
    use crate::test_util::write_tree;

    fn load(dir: &tempfile::TempDir) -> Result<SentenceConfig> {
        SentenceConfig::load(&ModelSource::dir(dir.path()).resolve().unwrap(), None)
    }

    const MODULES: &str = r#"[
      {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
      {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
      {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
    ]"#;

    #[test]
    fn minilm_layout_means_mean_pooling_normalised_256() {
        let dir = write_tree(&[
            ("modules.json", MODULES),
            (
                "1_Pooling/config.json",
                r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true}"#,
            ),
            (
                "sentence_bert_config.json",
                r#"{"max_seq_length": 256, "do_lower_case": false}"#,
            ),
        ]);
        assert_eq!(
            load(&dir).unwrap(),
            SentenceConfig {
                pooling: Pooling::Mean,
                normalize: true,
                max_seq_length: Some(256),
                prompts: BTreeMap::new(),
                default_prompt_name: None,
                include_prompt: true,
            }
        );
    }

    #[test]
    fn cls_and_max_pooling_are_read() {
        for (flag, want) in [
            ("pooling_mode_cls_token", Pooling::Cls),
            ("pooling_mode_max_tokens", Pooling::Max),
            ("pooling_mode_lasttoken", Pooling::LastToken),
        ] {
            let dir = write_tree(&[
                ("modules.json", MODULES),
                ("1_Pooling/config.json", &format!(r#"{{"{flag}": true}}"#)),
            ]);
            assert_eq!(load(&dir).unwrap().pooling, want);
        }
    }

    #[test]
    fn no_metadata_means_plain_mean_pooling() {
        let dir = write_tree(&[("config.json", "{}")]);
        assert_eq!(
            load(&dir).unwrap(),
            SentenceConfig {
                pooling: Pooling::Mean,
                normalize: false,
                max_seq_length: None,
                prompts: BTreeMap::new(),
                default_prompt_name: None,
                include_prompt: true,
            }
        );
    }

    #[test]
    fn unsupported_pooling_names_the_file_and_modes() {
        let dir = write_tree(&[
            ("modules.json", MODULES),
            (
                "1_Pooling/config.json",
                r#"{"pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": true}"#,
            ),
        ]);
        let err = load(&dir).unwrap_err();
        let Error::ModelFile { path, kind } = &err else {
            panic!("{err:?}")
        };
        assert!(path.ends_with("1_Pooling/config.json"));
        assert!(
            matches!(kind, ModelFileError::UnsupportedPooling { found } if found == "mean+max")
        );
    }

    #[test]
    fn a_missing_pooling_config_is_an_error_unless_the_caller_chooses() {
        // modules.json lists Pooling, 1_Pooling/ is absent (PyPI
        // rohan-pristine 1.0.0 ships so).
        let dir = write_tree(&[("modules.json", MODULES)]);
        let files = ModelSource::dir(dir.path()).resolve().unwrap();
        let err = SentenceConfig::load(&files, None).unwrap_err();
        let Error::ModelFile { path, kind } = &err else {
            panic!("{err:?}")
        };
        assert!(path.ends_with("1_Pooling/config.json"));
        assert!(
            matches!(kind, ModelFileError::Missing { hint } if hint.contains("BertEmbedderBuilder::pooling")),
            "{kind:?}"
        );
        let chosen = SentenceConfig::load(&files, Some(Pooling::Cls)).unwrap();
        assert_eq!(chosen.pooling, Pooling::Cls);
        assert!(chosen.normalize);
    }

    #[test]
    fn a_chosen_pooling_replaces_the_files_modes_but_keeps_include_prompt() {
        let dir = write_tree(&[
            ("modules.json", MODULES),
            (
                "1_Pooling/config.json",
                r#"{"pooling_mode_mean_tokens": true, "include_prompt": false}"#,
            ),
        ]);
        let files = ModelSource::dir(dir.path()).resolve().unwrap();
        let c = SentenceConfig::load(&files, Some(Pooling::Max)).unwrap();
        assert_eq!(c.pooling, Pooling::Max);
        assert!(!c.include_prompt);
    }

    #[test]
    fn prompts_and_their_default_are_read() {
        let dir = write_tree(&[(
            "config_sentence_transformers.json",
            r#"{"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": "query"}"#,
        )]);
        let c = load(&dir).unwrap();
        assert_eq!(c.prompts.len(), 2);
        assert_eq!(c.prompts["query"], "query: ");
        assert_eq!(c.default_prompt_name.as_deref(), Some("query"));

        let dir = write_tree(&[(
            "config_sentence_transformers.json",
            r#"{"prompts": {"query": "query: "}, "default_prompt_name": "document"}"#,
        )]);
        let err = load(&dir).unwrap_err();
        assert!(
            matches!(&err, Error::ModelFile { kind: ModelFileError::InvalidSetting { name, .. }, .. } if name == "default_prompt_name"),
            "{err:?}"
        );
    }

    #[test]
    fn unsupported_module_is_an_error() {
        let dir = write_tree(&[(
            "modules.json",
            r#"[{"path": "2_Dense", "type": "sentence_transformers.models.Dense"}]"#,
        )]);
        let err = load(&dir).unwrap_err();
        assert!(
            matches!(&err, Error::ModelFile { kind: ModelFileError::UnsupportedModule { found }, .. } if found.ends_with("Dense")),
            "{err:?}"
        );
    }

    #[test]
    fn broken_json_and_missing_pooling_file_name_the_file() {
        let dir = write_tree(&[("modules.json", "[{")]);
        let err = load(&dir).unwrap_err();
        assert!(
            matches!(&err, Error::ModelFile { path, kind: ModelFileError::Json(_) } if path.ends_with("modules.json")),
            "{err:?}"
        );
    }
}
