//! The sentence-transformers metadata that decides what a model's output is:
//! `modules.json`, the pooling config and `sentence_bert_config.json`.
//!
//! A model directory without these files is a plain transformer; it gets
//! sentence-transformers' own defaults (mean pooling, no normalisation).

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
}

impl SentenceConfig {
    pub(crate) fn load(files: &ModelFiles) -> Result<Self> {
        let max_seq_length = match files.optional("sentence_bert_config.json")? {
            Some(p) => read_json::<SentenceBertConfig>(&p)?.max_seq_length,
            None => None,
        };
        let Some(modules_path) = files.optional("modules.json")? else {
            // No module list: a pooling folder on its own still says how to pool.
            let pooling = match files.optional("1_Pooling/config.json")? {
                Some(p) => pooling_from_file(&p)?,
                None => Pooling::Mean,
            };
            return Ok(SentenceConfig {
                pooling,
                normalize: false,
                max_seq_length,
            });
        };
        let modules: Vec<Module> = read_json(&modules_path)?;
        let mut pooling = None;
        let mut normalize = false;
        for module in &modules {
            // "sentence_transformers.models.Pooling" -> "Pooling"
            match module.kind.rsplit('.').next().unwrap_or_default() {
                "Transformer" => {}
                "Pooling" => {
                    let file = format!("{}/config.json", module.path.trim_end_matches('/'));
                    pooling = Some(pooling_from_file(&files.required(&file)?)?);
                }
                // Normalize has no parameters, and its folder may be absent.
                "Normalize" => normalize = true,
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
        Ok(SentenceConfig {
            pooling: pooling.unwrap_or(Pooling::Mean),
            normalize,
            max_seq_length,
        })
    }
}

fn pooling_from_file(path: &Path) -> Result<Pooling> {
    let c: PoolingConfig = read_json(path)?;
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
        SentenceConfig::load(&ModelSource::dir(dir.path()).resolve().unwrap())
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
                max_seq_length: Some(256)
            }
        );
    }

    #[test]
    fn cls_and_max_pooling_are_read() {
        for (flag, want) in [
            ("pooling_mode_cls_token", Pooling::Cls),
            ("pooling_mode_max_tokens", Pooling::Max),
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
                max_seq_length: None
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

        let dir = write_tree(&[("modules.json", MODULES)]);
        let err = load(&dir).unwrap_err();
        assert!(
            matches!(&err, Error::ModelFile { path, kind: ModelFileError::Missing { .. } } if path.ends_with("1_Pooling/config.json")),
            "{err:?}"
        );
    }
}
