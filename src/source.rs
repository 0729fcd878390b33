//! Where a model's files come from: a local directory or the Hugging Face hub.
//!
//! When the caller names no model, membatch runs
//! `sentence-transformers/all-MiniLM-L6-v2`
//! ([`ModelSource::default_model`]):
//!
//! 1. the `MEMBATCH_MODEL` setting, when [`Config::from_env`](crate::Config::from_env)
//!    read one (a directory or a repo id);
//! 2. otherwise a copy placed in `models/sentence-transformers--all-MiniLM-L6-v2`
//!    under membatch's data directory (`$MEMBATCH_HOME`, default
//!    `$XDG_CACHE_HOME/membatch`, else `~/.cache/membatch`), where
//!    `scripts/fetch-model.sh` puts it;
//! 3. otherwise the model from the hub, through hf-hub's cache.
//!
//! Hub sources use hf-hub's cache (`HF_HOME`, default `~/.cache/huggingface`)
//! and work offline from it when `HF_HUB_OFFLINE=1`.

use std::path::{Path, PathBuf};

use crate::env;
use crate::error::{Error, ModelFileError, Result};

/// The model membatch runs when none is named.
pub const DEFAULT_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// A place to load a model from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelSource {
    /// A local directory in the sentence-transformers layout.
    Dir(PathBuf),
    /// A repository on the Hugging Face hub.
    Hub(HubModel),
}

/// A model repository on the Hugging Face hub, fetched through hf-hub's cache.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubModel {
    /// The repository id, e.g. `sentence-transformers/all-MiniLM-L6-v2`.
    pub repo_id: String,
    /// Branch, tag or commit; `main` by default.
    pub revision: String,
    /// The hf-hub cache directory; `None` means hf-hub's own default
    /// (`$HF_HOME/hub` or `~/.cache/huggingface/hub`).
    pub cache_dir: Option<PathBuf>,
    /// Use only the cache, never the network. `None` reads `HF_HUB_OFFLINE`.
    pub offline: Option<bool>,
}

impl HubModel {
    /// The `main` revision of `repo_id`, default cache, offline per `HF_HUB_OFFLINE`.
    pub fn new(repo_id: impl Into<String>) -> Self {
        HubModel {
            repo_id: repo_id.into(),
            revision: "main".to_string(),
            cache_dir: None,
            offline: None,
        }
    }

    /// Uses `revision` (branch, tag or commit) instead of `main`.
    #[must_use]
    pub fn revision(mut self, revision: impl Into<String>) -> Self {
        self.revision = revision.into();
        self
    }

    /// Uses `dir` as the hf-hub cache directory.
    #[must_use]
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Forces offline (`true`) or online (`false`) mode, whatever
    /// `HF_HUB_OFFLINE` says.
    #[must_use]
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = Some(offline);
        self
    }

    /// Whether this source may only use the cache.
    pub fn is_offline(&self) -> bool {
        // hf-hub's own variable: anything but a true value means online.
        self.offline.unwrap_or_else(|| {
            env::vars()
                .text("HF_HUB_OFFLINE")
                .is_some_and(|v| matches!(env::parse_bool("HF_HUB_OFFLINE", &v), Ok(true)))
        })
    }
}

impl ModelSource {
    /// A local model directory.
    pub fn dir(path: impl Into<PathBuf>) -> Self {
        ModelSource::Dir(path.into())
    }

    /// The `main` revision of a hub repository.
    pub fn hub(repo_id: impl Into<String>) -> Self {
        ModelSource::Hub(HubModel::new(repo_id))
    }

    /// Reads a user's model argument: an existing directory, or else a hub
    /// repo id of the form `owner/name`. Anything else is taken as a
    /// directory, so that loading it reports the path as missing.
    ///
    /// ```
    /// use membatch::ModelSource;
    /// assert_eq!(
    ///     ModelSource::parse("sentence-transformers/all-MiniLM-L6-v2"),
    ///     ModelSource::hub("sentence-transformers/all-MiniLM-L6-v2"),
    /// );
    /// assert_eq!(ModelSource::parse("./models/mini"), ModelSource::dir("./models/mini"));
    /// ```
    pub fn parse(arg: &str) -> Self {
        let path = Path::new(arg);
        if path.is_dir() || !looks_like_repo_id(arg) {
            ModelSource::Dir(path.to_path_buf())
        } else {
            ModelSource::hub(arg)
        }
    }

    /// The model to run when the caller names none: a local copy of the
    /// default model, else the hub (see the module docs). The environment's
    /// `MEMBATCH_MODEL` is read by [`Config::from_env`](crate::Config::from_env).
    pub fn default_model() -> Self {
        let local = default_model_dir();
        if local.join("config.json").is_file() {
            ModelSource::Dir(local)
        } else {
            ModelSource::hub(DEFAULT_MODEL)
        }
    }

    /// A short name for logs and cache keys: the directory or the repo id.
    pub fn id(&self) -> String {
        match self {
            ModelSource::Dir(p) => p.display().to_string(),
            ModelSource::Hub(h) => format!("{}@{}", h.repo_id, h.revision),
        }
    }

    /// Finds the model's files, fetching them when the source is the hub.
    ///
    /// # Errors
    ///
    /// [`Error::ModelFile`] when a local directory is missing;
    /// [`Error::Hub`] when a hub file can be neither found in the cache nor
    /// fetched.
    pub fn resolve(&self) -> Result<ModelFiles> {
        match self {
            ModelSource::Dir(dir) => {
                if !dir.is_dir() {
                    return Err(Error::model_file(
                        dir,
                        ModelFileError::Missing {
                            hint: missing_model_hint(dir),
                        },
                    ));
                }
                Ok(ModelFiles {
                    inner: Files::Dir(dir.clone()),
                })
            }
            #[cfg(feature = "hub")]
            ModelSource::Hub(hub) => Ok(ModelFiles {
                inner: Files::Hub(Box::new(hub::HubFiles::new(hub)?)),
            }),
            #[cfg(not(feature = "hub"))]
            ModelSource::Hub(hub) => Err(Error::Hub {
                repo: hub.repo_id.clone(),
                file: String::new(),
                reason: "membatch was built without its `hub` feature".into(),
            }),
        }
    }
}

impl From<PathBuf> for ModelSource {
    fn from(p: PathBuf) -> Self {
        ModelSource::Dir(p)
    }
}

impl From<&Path> for ModelSource {
    fn from(p: &Path) -> Self {
        ModelSource::Dir(p.to_path_buf())
    }
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id())
    }
}

/// The model files of one source, local paths once resolved.
#[derive(Debug)]
pub struct ModelFiles {
    inner: Files,
}

#[derive(Debug)]
enum Files {
    Dir(PathBuf),
    #[cfg(feature = "hub")]
    Hub(Box<hub::HubFiles>),
}

impl ModelFiles {
    /// The local path of a file the model cannot do without.
    ///
    /// # Errors
    ///
    /// [`Error::ModelFile`] with [`ModelFileError::Missing`] when it is not
    /// there; [`Error::Hub`] when it cannot be fetched.
    pub fn required(&self, name: &str) -> Result<PathBuf> {
        match (self.optional(name)?, &self.inner) {
            (Some(p), _) => Ok(p),
            (None, Files::Dir(dir)) => Err(Error::model_file(
                dir.join(name),
                ModelFileError::Missing {
                    hint: String::new(),
                },
            )),
            #[cfg(feature = "hub")]
            (None, Files::Hub(h)) => Err(h.not_found(name)),
        }
    }

    /// The local path of a file the model may lack (`Ok(None)` when it does).
    ///
    /// # Errors
    ///
    /// [`Error::Hub`] when the hub cannot say whether the file exists.
    pub fn optional(&self, name: &str) -> Result<Option<PathBuf>> {
        match &self.inner {
            Files::Dir(dir) => {
                let p = dir.join(name);
                Ok(p.is_file().then_some(p))
            }
            #[cfg(feature = "hub")]
            Files::Hub(h) => h.get(name),
        }
    }
}

/// membatch's own data directory: `$MEMBATCH_HOME`, else
/// `$XDG_CACHE_HOME/membatch`, else `~/.cache/membatch`.
fn membatch_home() -> PathBuf {
    let vars = env::vars();
    if let Some(home) = vars.text(env::HOME) {
        return PathBuf::from(home);
    }
    let cache = vars
        .text("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| vars.text("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("membatch")
}

/// Where membatch looks for a local copy of [`DEFAULT_MODEL`] (step 2 of
/// the module docs): `models/sentence-transformers--all-MiniLM-L6-v2`
/// under `$MEMBATCH_HOME` (default `$XDG_CACHE_HOME/membatch`, else
/// `~/.cache/membatch`). A tool that places the model for membatch puts
/// it here.
pub fn default_model_dir() -> PathBuf {
    membatch_home()
        .join("models")
        .join(DEFAULT_MODEL.replace('/', "--"))
}

/// What to do about a model directory that is not there: where the
/// default model goes when it is the default model's place, else how to
/// name another.
fn missing_model_hint(dir: &Path) -> String {
    if dir == default_model_dir() {
        format!(
            " (set MEMBATCH_MODEL to a model directory or hub repo id, or place {DEFAULT_MODEL} in {})",
            dir.display()
        )
    } else {
        " (no such directory: set MEMBATCH_MODEL, or the model source, to a model directory \
         that exists or to a hub repo id such as sentence-transformers/all-MiniLM-L6-v2)"
            .to_string()
    }
}

/// `owner/name`: one slash, both parts non-empty, no path-like start.
fn looks_like_repo_id(s: &str) -> bool {
    let mut parts = s.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(owner), Some(name), None) => {
            !owner.is_empty()
                && !name.is_empty()
                && !owner.starts_with('.')
                && !owner.starts_with('~')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        }
        _ => false,
    }
}

#[cfg(feature = "hub")]
mod hub {
    //! Hub access through hf-hub. hf-hub 0.4 has no offline switch of its own,
    //! so offline mode reads its cache directly (the same layout it writes).

    use std::path::PathBuf;

    use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
    use hf_hub::{Cache, Repo, RepoType};

    use super::HubModel;
    use crate::error::{Error, Result};

    #[derive(Debug)]
    pub(super) struct HubFiles {
        repo_id: String,
        cache: hf_hub::CacheRepo,
        api: Option<ApiRepo>,
    }

    impl HubFiles {
        pub(super) fn new(model: &HubModel) -> Result<Self> {
            let repo = Repo::with_revision(
                model.repo_id.clone(),
                RepoType::Model,
                model.revision.clone(),
            );
            let cache = match &model.cache_dir {
                Some(dir) => Cache::new(dir.clone()),
                None => Cache::from_env(),
            };
            let api = if model.is_offline() {
                None
            } else {
                let api = ApiBuilder::from_cache(cache.clone())
                    .with_progress(false)
                    .build()
                    .map_err(|e| hub_error(&model.repo_id, "", e.to_string()))?;
                Some(api.repo(repo.clone()))
            };
            Ok(HubFiles {
                repo_id: model.repo_id.clone(),
                cache: cache.repo(repo),
                api,
            })
        }

        /// The error for a required file that is neither cached nor fetchable.
        pub(super) fn not_found(&self, name: &str) -> Error {
            let reason = if self.api.is_none() {
                "not in the hf-hub cache, and offline mode (HF_HUB_OFFLINE=1) forbids a download"
            } else {
                "the repository has no such file"
            };
            hub_error(&self.repo_id, name, reason.to_string())
        }

        pub(super) fn get(&self, name: &str) -> Result<Option<PathBuf>> {
            if let Some(p) = self.cache.get(name) {
                return Ok(Some(p));
            }
            let Some(api) = &self.api else {
                // Offline and not cached. An optional file that was never
                // downloaded looks the same as one the repo lacks; the caller
                // decides whether that is fatal.
                return Ok(None);
            };
            match api.get(name) {
                Ok(p) => Ok(Some(p)),
                Err(ApiError::RequestError(e)) if matches!(*e, ureq::Error::Status(404, _)) => {
                    Ok(None)
                }
                Err(e) => Err(hub_error(
                    &self.repo_id,
                    name,
                    format!("{e} (to run from the cache alone set HF_HUB_OFFLINE=1)"),
                )),
            }
        }
    }

    fn hub_error(repo: &str, file: &str, reason: String) -> Error {
        Error::Hub {
            repo: repo.to_string(),
            file: file.to_string(),
            reason,
        }
    }
}
