//! Every setting membatch reads, in one table: its name, its environment
//! variable (and the older names it still answers to), the flag the tools
//! give it, its default and what it does.
//!
//! The table is the one reader of the environment
//! ([`Config::from_env`]), the source of every tool's flags for the
//! library's settings, and of the settings reference in
//! `docs/configuration.md` (a test fails when they disagree). Each
//! setting's typed home is its configuration type's builder
//! ([`BatchConfig`](crate::BatchConfig), [`MemoryConfig`](crate::MemoryConfig),
//! [`ServiceConfig`](crate::service::ServiceConfig),
//! [`ModelConfig`](crate::ModelConfig)); the table says how text reaches it.
//!
//! Every variable is `MEMBATCH_<NAME>`. The `EMBEDDING_*` names of earlier
//! releases are aliases: reading one logs a line naming its replacement,
//! and when both are set the `MEMBATCH_` one wins (the log says so).
//!
//! ```
//! use membatch::{settings, Config};
//!
//! let batch = settings::find("max_batch_size").unwrap();
//! assert_eq!(batch.env(), "MEMBATCH_MAX_BATCH_SIZE");
//! assert_eq!(batch.flag(), Some("max-batch-size"));
//!
//! // What a tool does with `--max-batch-size 16`, over the environment.
//! let config = Config::builder().set(batch, "16", "--max-batch-size")?.build()?;
//! assert_eq!(config.batch().max_batch_size(), 16);
//! # Ok::<(), membatch::Error>(())
//! ```

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::batch::RetryPolicy;
use crate::config::{Config, ConfigBuilder};
use crate::env::{self, parse_bool, parse_count};
use crate::error::{Error, Result};
use crate::memory::MemoryLimit;
use crate::precision::Precision;
use crate::source::ModelSource;

/// The part of [`Config`] a setting belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Group {
    /// Which model runs, and how ([`ModelConfig`](crate::ModelConfig)).
    Model,
    /// The memory budget ([`MemoryConfig`](crate::MemoryConfig)).
    Memory,
    /// Batch sizes and waits ([`BatchConfig`](crate::BatchConfig)).
    Batching,
    /// A service's queue and idle unloading
    /// ([`ServiceConfig`](crate::service::ServiceConfig)).
    Service,
}

#[cfg(test)]
impl Group {
    /// The section heading `docs/configuration.md` gives the group.
    fn title(self) -> &'static str {
        match self {
            Group::Model => "Model (`ModelConfig`)",
            Group::Memory => "Memory (`MemoryConfig`)",
            Group::Batching => "Batching (`BatchConfig`)",
            Group::Service => "A service (`ServiceConfig`)",
        }
    }
}

type Apply = fn(ConfigBuilder, &str, &str) -> Result<ConfigBuilder>;

/// One setting of the table: see the [module docs](self).
#[derive(Clone, Copy)]
pub struct Setting {
    name: &'static str,
    env: &'static str,
    aliases: &'static [&'static str],
    flag: Option<&'static str>,
    group: Group,
    value: &'static str,
    default: &'static str,
    help: &'static str,
    /// The name the typed builders' checks give it in their errors.
    field: &'static str,
    /// Parses the text (naming the variable or flag it came from in an
    /// error) into the builder.
    apply: Apply,
}

impl std::fmt::Debug for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setting")
            .field("name", &self.name)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

impl Setting {
    /// The setting's name (`max_batch_size`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its environment variable (`MEMBATCH_MAX_BATCH_SIZE`).
    pub fn env(&self) -> &'static str {
        self.env
    }

    /// The older variables it still answers to (`EMBEDDING_MAX_BATCH_SIZE`).
    pub fn aliases(&self) -> &'static [&'static str] {
        self.aliases
    }

    /// The long flag the tools give it, without dashes (`max-batch-size`);
    /// `None` for a setting read from the environment only.
    pub fn flag(&self) -> Option<&'static str> {
        self.flag
    }

    /// The part of [`Config`] it belongs to.
    pub fn group(&self) -> Group {
        self.group
    }

    /// What its value looks like (`N`, `SIZE|PERCENT`).
    pub fn value_name(&self) -> &'static str {
        self.value
    }

    /// Its default, in words.
    pub fn default_text(&self) -> &'static str {
        self.default
    }

    /// What it does, in a sentence or two.
    pub fn help(&self) -> &'static str {
        self.help
    }

    /// Checks `value` as this setting would read it, without a builder
    /// (for a tool's argument parser).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming `origin`.
    pub fn check(&self, value: &str, origin: &str) -> Result<()> {
        (self.apply)(Config::builder(), origin, value.trim()).map(drop)
    }
}

/// Every setting, in the order `docs/configuration.md` lists them.
pub fn all() -> &'static [Setting] {
    TABLE
}

/// The setting named `name` (`max_batch_size`).
pub fn find(name: &str) -> Option<&'static Setting> {
    TABLE.iter().find(|s| s.name == name)
}

fn count(name: &str, v: &str) -> Result<usize> {
    parse_count(name, v)
}

fn whole<T: std::str::FromStr>(name: &str, v: &str) -> Result<T> {
    v.parse()
        .map_err(|_| Error::invalid_config(name, v, "not a whole number (0 or more)"))
}

/// The memory budget also answers to `EMBEDDING_MAX_MEMORY_PERCENT`, whose
/// bare number is a percentage, where `MEMBATCH_MAX_MEMORY`'s is bytes.
const PERCENT_ALIAS: &str = "EMBEDDING_MAX_MEMORY_PERCENT";

static TABLE: &[Setting] = &[
    Setting {
        name: "model",
        env: "MEMBATCH_MODEL",
        aliases: &[],
        flag: Some("model"),
        group: Group::Model,
        value: "DIR|REPO",
        default: "the fetched all-MiniLM-L6-v2, else the hub",
        help: "A model directory (sentence-transformers layout) or a hub repo id (`owner/name`).",
        field: "source",
        apply: |b, _, v| Ok(b.source(ModelSource::parse(v))),
    },
    Setting {
        name: "threads",
        env: "MEMBATCH_THREADS",
        aliases: &["EMBEDDING_THREADS"],
        flag: Some("threads"),
        group: Group::Model,
        value: "N",
        default: "rayon's global pool (all cores)",
        help: "Dedicated compute threads for tokenisation and forward passes (docs/threads.md).",
        field: "threads",
        apply: |b, n, v| Ok(b.threads(count(n, v)?)),
    },
    Setting {
        name: "max_seq_length",
        env: "MEMBATCH_MAX_SEQ_LENGTH",
        aliases: &["EMBEDDING_MAX_SEQ_LENGTH"],
        flag: Some("max-seq-length"),
        group: Group::Model,
        value: "N",
        default: "the model's (256 for all-MiniLM-L6-v2)",
        help: "Truncation length in tokens, special tokens included; lower means less memory per text.",
        field: "max_seq_length",
        apply: |b, n, v| Ok(b.max_seq_length(count(n, v)?)),
    },
    Setting {
        name: "normalize",
        env: "MEMBATCH_NORMALIZE",
        aliases: &["EMBEDDING_NORMALIZE"],
        flag: Some("normalize"),
        group: Group::Model,
        value: "BOOL",
        default: "as the model's modules.json says",
        help: "Forces L2 normalisation on or off (true/false, 1/0, yes/no, on/off).",
        field: "normalize",
        apply: |b, n, v| Ok(b.normalize(parse_bool(n, v)?)),
    },
    Setting {
        name: "precision",
        env: "MEMBATCH_PRECISION",
        aliases: &["EMBEDDING_PRECISION"],
        flag: Some("precision"),
        group: Group::Model,
        value: "f32|int8",
        default: "f32",
        help: "How the weights are held: `f32` is exact; `int8` holds a third of the memory \
               (cosine >= 0.998 to f32; docs/benchmarks.md).",
        field: "precision",
        apply: |b, n, v| {
            let p: Precision = v
                .parse()
                .map_err(|e: crate::precision::ParsePrecisionError| {
                    Error::invalid_config(n, v, e.to_string())
                })?;
            Ok(b.precision(p))
        },
    },
    Setting {
        name: "prompt_name",
        env: "MEMBATCH_PROMPT_NAME",
        aliases: &[],
        flag: Some("prompt-name"),
        group: Group::Model,
        value: "NAME",
        default: "the model's default_prompt_name, else none",
        help: "The model's prompt put before every text (`prompts` in \
               config_sentence_transformers.json, e.g. `query`); a call can choose another.",
        field: "prompt_name",
        apply: |b, _, v| Ok(b.prompt_name(v)),
    },
    Setting {
        name: "dimensions",
        env: "MEMBATCH_DIMENSIONS",
        aliases: &[],
        flag: Some("dimensions"),
        group: Group::Model,
        value: "N",
        default: "all of the model's",
        help: "Keep the first N dimensions of every vector (Matryoshka truncation), \
               normalised again when the model normalises.",
        field: "dimensions",
        apply: |b, n, v| Ok(b.dimensions(count(n, v)?)),
    },
    Setting {
        name: "max_memory",
        env: "MEMBATCH_MAX_MEMORY",
        aliases: &["EMBEDDING_MAX_MEMORY", PERCENT_ALIAS],
        flag: Some("memory-budget"),
        group: Group::Memory,
        value: "SIZE|PERCENT",
        default: "70%",
        help: "The memory budget: a size (512MiB, 1.5GB, 300M, bytes) or a percentage (60%) of \
               the effective limit, the smaller of physical memory and the cgroup limit.",
        field: "max_bytes",
        apply: |b, n, v| {
            let limit = if n == PERCENT_ALIAS {
                MemoryLimit::parse(n, &format!("{}%", v.trim_end_matches('%')))?
            } else {
                MemoryLimit::parse(n, v)?
            };
            Ok(b.memory_limit(limit))
        },
    },
    Setting {
        name: "min_batch_size",
        env: "MEMBATCH_MIN_BATCH_SIZE",
        aliases: &["EMBEDDING_MIN_BATCH_SIZE"],
        flag: Some("min-batch-size"),
        group: Group::Batching,
        value: "N",
        default: "8",
        help: "The batch size a run starts at, and the floor it grows back from (memory \
               pressure can still take a batch lower, down to one text).",
        field: "min_batch_size",
        apply: |b, n, v| Ok(b.min_batch_size(count(n, v)?)),
    },
    Setting {
        name: "max_batch_size",
        env: "MEMBATCH_MAX_BATCH_SIZE",
        aliases: &["EMBEDDING_MAX_BATCH_SIZE"],
        flag: Some("max-batch-size"),
        group: Group::Batching,
        value: "N",
        default: "64",
        help: "The largest batch; at least the minimum.",
        field: "max_batch_size",
        apply: |b, n, v| Ok(b.max_batch_size(count(n, v)?)),
    },
    Setting {
        name: "batch_step",
        env: "MEMBATCH_BATCH_STEP",
        aliases: &["EMBEDDING_BATCH_STEP"],
        flag: Some("batch-step"),
        group: Group::Batching,
        value: "N",
        default: "4",
        help: "Texts added to the batch size after each batch whose peak stayed in the normal band.",
        field: "step",
        apply: |b, n, v| Ok(b.step(count(n, v)?)),
    },
    Setting {
        name: "adaptive_batching",
        env: "MEMBATCH_ADAPTIVE_BATCHING",
        aliases: &["EMBEDDING_ADAPTIVE_BATCHING"],
        flag: Some("adaptive-batching"),
        group: Group::Batching,
        value: "BOOL",
        default: "true",
        help: "`false`: every batch has the maximum size. Memory checks stay on: pressure still \
               halves a batch, and the cost model still caps it to what fits.",
        field: "adaptive",
        apply: |b, n, v| Ok(b.adaptive(parse_bool(n, v)?)),
    },
    Setting {
        name: "max_batch_tokens",
        env: "MEMBATCH_MAX_BATCH_TOKENS",
        aliases: &["EMBEDDING_MAX_BATCH_TOKENS"],
        flag: Some("max-batch-tokens"),
        group: Group::Batching,
        value: "N",
        default: "no limit",
        help: "The most tokens one batch may hold, padding included; at least the model's \
               max_seq_length.",
        field: "max_batch_tokens",
        apply: |b, n, v| Ok(b.max_batch_tokens(count(n, v)?)),
    },
    Setting {
        name: "max_wait_ms",
        env: "MEMBATCH_MAX_WAIT_MS",
        aliases: &["EMBEDDING_MAX_WAIT_MS"],
        flag: Some("max-wait-ms"),
        group: Group::Batching,
        value: "MS",
        default: "10000",
        help: "How long a batch that cannot fit waits for memory other callers hold before \
               Error::MemoryPressure; 0 never waits.",
        field: "retry",
        apply: |b, n, v| {
            let ms: u64 = whole(n, v)?;
            Ok(b.retry(RetryPolicy::waiting(Duration::from_millis(ms))))
        },
    },
    Setting {
        name: "max_inputs_per_request",
        env: "MEMBATCH_MAX_INPUTS_PER_REQUEST",
        aliases: &["EMBEDDING_MAX_INPUTS_PER_REQUEST"],
        flag: Some("max-inputs-per-request"),
        group: Group::Service,
        value: "N",
        default: "2048",
        help: "The most texts one request may hold (Error::RequestTooLarge).",
        field: "max_inputs_per_request",
        apply: |b, n, v| {
            let n = count(n, v)?;
            Ok(b.with_service(|s| s.max_inputs_per_request(n)))
        },
    },
    Setting {
        name: "max_tokens_per_request",
        env: "MEMBATCH_MAX_TOKENS_PER_REQUEST",
        aliases: &["EMBEDDING_MAX_TOKENS_PER_REQUEST"],
        flag: Some("max-tokens-per-request"),
        group: Group::Service,
        value: "N",
        default: "300000",
        help: "The most tokens one request may hold; at most max_queued_tokens.",
        field: "max_tokens_per_request",
        apply: |b, n, v| {
            let n = count(n, v)?;
            Ok(b.with_service(|s| s.max_tokens_per_request(n)))
        },
    },
    Setting {
        name: "max_queued_requests",
        env: "MEMBATCH_MAX_QUEUED_REQUESTS",
        aliases: &["EMBEDDING_MAX_QUEUED_REQUESTS"],
        flag: Some("max-queued-requests"),
        group: Group::Service,
        value: "N",
        default: "1024",
        help: "Requests waiting in the queue before new ones are refused (Error::Overloaded).",
        field: "max_queued_requests",
        apply: |b, n, v| {
            let n = count(n, v)?;
            Ok(b.with_service(|s| s.max_queued_requests(n)))
        },
    },
    Setting {
        name: "max_queued_tokens",
        env: "MEMBATCH_MAX_QUEUED_TOKENS",
        aliases: &["EMBEDDING_MAX_QUEUED_TOKENS"],
        flag: Some("max-queued-tokens"),
        group: Group::Service,
        value: "N",
        default: "1048576",
        help: "Tokens waiting in the queue before new requests are refused.",
        field: "max_queued_tokens",
        apply: |b, n, v| {
            let n = count(n, v)?;
            Ok(b.with_service(|s| s.max_queued_tokens(n)))
        },
    },
    Setting {
        name: "batch_wait_ms",
        env: "MEMBATCH_BATCH_WAIT_MS",
        aliases: &["EMBEDDING_BATCH_WAIT_MS"],
        flag: Some("batch-wait-ms"),
        group: Group::Service,
        value: "MS",
        default: "0",
        help: "How long an idle worker waits for more requests before running a batch smaller \
               than the rule allows.",
        field: "batch_wait",
        apply: |b, n, v| {
            let ms: u64 = whole(n, v)?;
            Ok(b.with_service(|s| s.batch_wait(Duration::from_millis(ms))))
        },
    },
    Setting {
        name: "idle_unload_secs",
        env: "MEMBATCH_IDLE_UNLOAD_SECS",
        aliases: &["EMBEDDING_IDLE_UNLOAD_SECS"],
        flag: Some("idle-unload-secs"),
        group: Group::Service,
        value: "SECS",
        default: "never",
        help: "Unload the model after this many seconds without work (reloaded on the next \
               request); 0 is never.",
        field: "idle_unload",
        apply: |b, n, v| {
            let secs: u64 = whole(n, v)?;
            Ok(b.with_service(|s| s.idle_unload((secs > 0).then(|| Duration::from_secs(secs)))))
        },
    },
];

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    /// The variable that was used.
    pub(crate) var: &'static str,
    pub(crate) value: String,
    /// Other variables of the same setting that were set too, ignored.
    pub(crate) ignored: Vec<&'static str>,
}

/// The setting's value: its `MEMBATCH_` variable, else the first alias set.
fn lookup(setting: &Setting, get: &impl Fn(&str) -> Option<String>) -> Option<Found> {
    let vars = env::Vars::new(get);
    let mut set = std::iter::once(setting.env)
        .chain(setting.aliases.iter().copied())
        .filter_map(|name| vars.text(name).map(|v| (name, v)));
    let (var, value) = set.next()?;
    Some(Found {
        var,
        value,
        ignored: set.map(|(name, _)| name).collect(),
    })
}

/// Logs, once per process and variable, an alias in use or a variable that
/// another one overrides.
fn log_once(setting: &Setting, found: &Found) {
    static LOGGED: OnceLock<Mutex<BTreeSet<&'static str>>> = OnceLock::new();
    let first_time = |var: &'static str| {
        LOGGED
            .get_or_init(Default::default)
            .lock()
            .map(|mut seen| seen.insert(var))
            .unwrap_or(false)
    };
    for ignored in &found.ignored {
        if first_time(ignored) {
            tracing::warn!(
                "{ignored} is ignored: {} is set too and wins (both set {})",
                found.var,
                setting.name
            );
        }
    }
    if found.var != setting.env && first_time(found.var) {
        tracing::warn!(
            "{} is an older name of {}: it still works; rename it",
            found.var,
            setting.env
        );
    }
}

impl Config {
    /// The defaults overridden by the environment: every `MEMBATCH_*`
    /// variable of the [settings table](crate::settings) (and the older
    /// `EMBEDDING_*` names), as `docs/configuration.md` lists them. An
    /// empty or blank variable counts as unset.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first variable with a bad value,
    /// or the variable of a setting a combination check refuses.
    pub fn from_env() -> Result<Self> {
        ConfigBuilder::from_env()?.build()
    }

    /// As [`from_env`](Self::from_env), reading variables through `get`.
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        ConfigBuilder::from_lookup(get)?.build()
    }
}

impl ConfigBuilder {
    /// The defaults overridden by the environment, not yet checked as a
    /// whole: a tool sets its flags over it, then [`build`](Self::build)s,
    /// so a flag can correct what a variable set, and each check names the
    /// variable or flag that set the value it refuses.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first variable whose value the
    /// setting cannot take.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(env::process)
    }

    /// As [`ConfigBuilder::from_env`], reading variables through `get`.
    ///
    /// # Errors
    ///
    /// As [`ConfigBuilder::from_env`].
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut builder = Config::builder();
        for setting in TABLE {
            if let Some(found) = lookup(setting, &get) {
                log_once(setting, &found);
                builder = builder.set(setting, &found.value, found.var)?;
            }
        }
        Ok(builder)
    }

    /// Sets one setting from text, as the environment or a flag gives it.
    /// `origin` (`MEMBATCH_THREADS`, `--threads`) names it in errors, here
    /// and in [`build`](Self::build)'s checks of combinations (which name
    /// a setting nobody set by its variable).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming `origin` when the text is not a
    /// value of the setting.
    pub fn set(self, setting: &Setting, value: &str, origin: &str) -> Result<Self> {
        let mut b = (setting.apply)(self, origin, value.trim())?;
        if b.origins.is_empty() {
            b.origins = TABLE.iter().map(|s| (s.field, s.env.to_string())).collect();
        }
        match b
            .origins
            .iter_mut()
            .find(|(field, _)| *field == setting.field)
        {
            Some(entry) => entry.1 = origin.to_string(),
            None => b.origins.push((setting.field, origin.to_string())),
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::lookup as vars;

    /// The settings reference of `docs/configuration.md`, from the table.
    fn reference() -> String {
        let cell = |s: &str| s.replace('|', "\\|");
        let mut out = String::new();
        for group in [Group::Model, Group::Memory, Group::Batching, Group::Service] {
            out.push_str(&format!(
                "### {}\n\n| variable | flag | default | what it does |\n|---|---|---|---|\n",
                group.title()
            ));
            for s in all().iter().filter(|s| s.group == group) {
                let mut var = format!("`{}`", s.env);
                for alias in s.aliases {
                    var.push_str(&format!("<br>(was `{alias}`)"));
                }
                let flag = s
                    .flag
                    .map_or("—".to_string(), |f| format!("`--{f} {}`", cell(s.value)));
                out.push_str(&format!(
                    "| {var} | {flag} | {} | {} |\n",
                    cell(s.default),
                    cell(s.help)
                ));
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_docs_list_every_setting_as_the_table_says() {
        const BEGIN: &str = "<!-- settings: generated from src/settings.rs -->\n";
        const END: &str = "<!-- end of settings -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
            panic!("docs/configuration.md has no generated settings section");
        };
        let wanted = reference();
        let found = &doc[b + BEGIN.len()..e];
        if found != wanted {
            if std::env::var_os("MEMBATCH_UPDATE_DOCS").is_some() {
                let updated = format!("{}{wanted}{}", &doc[..b + BEGIN.len()], &doc[e..]);
                std::fs::write(path, updated).unwrap();
            } else {
                panic!(
                    "docs/configuration.md disagrees with the settings table; \
                     MEMBATCH_UPDATE_DOCS=1 cargo test --lib settings rewrites it:\n{wanted}"
                );
            }
        }
    }

    #[test]
    fn every_variable_is_the_prefix_and_the_name() {
        let mut names = BTreeSet::new();
        for s in all() {
            assert_eq!(s.env, format!("MEMBATCH_{}", s.name.to_uppercase()));
            assert!(names.insert(s.name), "{} twice", s.name);
            for alias in s.aliases {
                assert!(alias.starts_with("EMBEDDING_"), "{alias}");
                assert!(names.insert(alias), "{alias} twice");
            }
            if let Some(flag) = s.flag {
                assert!(names.insert(flag) || flag == s.name, "--{flag} twice");
            }
        }
    }

    #[test]
    fn every_default_the_table_states_is_the_default() {
        let default = Config::default();
        let mut checked = 0;
        for s in all() {
            // Defaults in words ("the model's", "never") are not values; any
            // text is a model directory or a prompt's name.
            if ["model", "prompt_name"].contains(&s.name) || s.check(s.default, "default").is_err()
            {
                continue;
            }
            let c = Config::builder()
                .set(s, s.default, "default")
                .unwrap()
                .build()
                .unwrap();
            if s.name == "max_memory" {
                // A percentage set is the default percentage applied.
                let gib = 1 << 30;
                assert_eq!(
                    c.memory().budget_bytes(gib),
                    default.memory().budget_bytes(gib)
                );
            } else {
                assert_eq!(c, default, "{}'s stated default {:?}", s.name, s.default);
            }
            checked += 1;
        }
        assert_eq!(checked, 12, "the defaults that are values");
    }

    #[test]
    fn every_setting_reaches_its_config() {
        let c = Config::from_lookup(vars(&[
            ("MEMBATCH_MODEL", "/models/minilm"),
            ("MEMBATCH_THREADS", "2"),
            ("MEMBATCH_MAX_SEQ_LENGTH", "128"),
            ("MEMBATCH_NORMALIZE", "off"),
            ("MEMBATCH_PRECISION", "INT8"),
            ("MEMBATCH_PROMPT_NAME", "query"),
            ("MEMBATCH_DIMENSIONS", "256"),
            ("MEMBATCH_MAX_MEMORY", "300MiB"),
            ("MEMBATCH_MIN_BATCH_SIZE", "4"),
            ("MEMBATCH_MAX_BATCH_SIZE", " 32 "),
            ("MEMBATCH_BATCH_STEP", "2"),
            ("MEMBATCH_ADAPTIVE_BATCHING", "FALSE"),
            ("MEMBATCH_MAX_BATCH_TOKENS", "8192"),
            ("MEMBATCH_MAX_WAIT_MS", "250"),
            ("MEMBATCH_MAX_INPUTS_PER_REQUEST", "16"),
            ("MEMBATCH_MAX_TOKENS_PER_REQUEST", "4000"),
            ("MEMBATCH_MAX_QUEUED_REQUESTS", "7"),
            ("MEMBATCH_MAX_QUEUED_TOKENS", "5000"),
            ("MEMBATCH_BATCH_WAIT_MS", "5"),
            ("MEMBATCH_IDLE_UNLOAD_SECS", "60"),
        ]))
        .unwrap();
        let m = c.model();
        assert_eq!(m.source, Some(ModelSource::dir("/models/minilm")));
        assert_eq!(
            (m.threads, m.max_seq_length, m.normalize, m.precision),
            (Some(2), Some(128), Some(false), Precision::Int8)
        );
        assert_eq!(
            (m.prompt_name.as_deref(), m.dimensions),
            (Some("query"), Some(256))
        );
        assert_eq!(c.memory().max_bytes(), Some(300 << 20));
        let b = c.batch();
        assert_eq!(
            (
                b.min_batch_size(),
                b.max_batch_size(),
                b.step(),
                b.adaptive()
            ),
            (4, 32, 2, false)
        );
        assert_eq!(b.max_batch_tokens(), Some(8192));
        assert_eq!(b.retry().max_wait, Duration::from_millis(250));
        let s = c.service();
        assert_eq!(
            (
                s.max_inputs_per_request(),
                s.max_tokens_per_request(),
                s.max_queued_requests(),
                s.max_queued_tokens()
            ),
            (16, 4000, 7, 5000)
        );
        assert_eq!(s.batch_wait(), Duration::from_millis(5));
        assert_eq!(s.idle_unload(), Some(Duration::from_secs(60)));
        assert_eq!(Config::from_lookup(vars(&[])).unwrap(), Config::default());
        let off = Config::from_lookup(vars(&[("MEMBATCH_IDLE_UNLOAD_SECS", "0")])).unwrap();
        assert_eq!(off.service().idle_unload(), None);
    }

    #[test]
    fn an_alias_works_and_the_new_name_wins_over_it() {
        let old = Config::from_lookup(vars(&[("EMBEDDING_MAX_BATCH_SIZE", "16")])).unwrap();
        assert_eq!(old.batch().max_batch_size(), 16);
        let both = Config::from_lookup(vars(&[
            ("EMBEDDING_MAX_BATCH_SIZE", "16"),
            ("MEMBATCH_MAX_BATCH_SIZE", "24"),
        ]))
        .unwrap();
        assert_eq!(both.batch().max_batch_size(), 24);
        let found = lookup(
            find("max_batch_size").unwrap(),
            &vars(&[
                ("EMBEDDING_MAX_BATCH_SIZE", "16"),
                ("MEMBATCH_MAX_BATCH_SIZE", "24"),
            ]),
        )
        .unwrap();
        assert_eq!(found.var, "MEMBATCH_MAX_BATCH_SIZE");
        assert_eq!(found.ignored, ["EMBEDDING_MAX_BATCH_SIZE"]);
    }

    #[test]
    fn the_old_percent_variable_is_a_percentage_of_the_budget() {
        let c = Config::from_lookup(vars(&[("EMBEDDING_MAX_MEMORY_PERCENT", "50")])).unwrap();
        assert_eq!(c.memory().max_percent(), Some(50.0));
        assert_eq!(c.memory().max_bytes(), None);
        let c = Config::from_lookup(vars(&[("MEMBATCH_MAX_MEMORY", "50%")])).unwrap();
        assert_eq!(c.memory().max_percent(), Some(50.0));
        let new_wins = Config::from_lookup(vars(&[
            ("EMBEDDING_MAX_MEMORY_PERCENT", "50"),
            ("MEMBATCH_MAX_MEMORY", "1GiB"),
        ]))
        .unwrap();
        assert_eq!(new_wins.memory().max_bytes(), Some(1 << 30));
        assert_eq!(new_wins.memory().max_percent(), None);
    }

    #[test]
    fn bad_values_name_the_variable_that_gave_them() {
        for (pairs, var) in [
            (&[("MEMBATCH_THREADS", "0")][..], "MEMBATCH_THREADS"),
            (&[("EMBEDDING_THREADS", "0")][..], "EMBEDDING_THREADS"),
            (
                &[("MEMBATCH_MAX_SEQ_LENGTH", "long")][..],
                "MEMBATCH_MAX_SEQ_LENGTH",
            ),
            (&[("MEMBATCH_NORMALIZE", "2")][..], "MEMBATCH_NORMALIZE"),
            (&[("MEMBATCH_PRECISION", "int4")][..], "MEMBATCH_PRECISION"),
            (
                &[("MEMBATCH_MAX_MEMORY", "lots")][..],
                "MEMBATCH_MAX_MEMORY",
            ),
            (
                &[("EMBEDDING_MAX_MEMORY_PERCENT", "150")][..],
                "EMBEDDING_MAX_MEMORY_PERCENT",
            ),
            (
                &[("MEMBATCH_MAX_WAIT_MS", "soon")][..],
                "MEMBATCH_MAX_WAIT_MS",
            ),
            (
                &[("MEMBATCH_ADAPTIVE_BATCHING", "maybe")][..],
                "MEMBATCH_ADAPTIVE_BATCHING",
            ),
            // Combinations: the check's field is renamed for the variable.
            (
                &[("MEMBATCH_MIN_BATCH_SIZE", "65")][..],
                "MEMBATCH_MIN_BATCH_SIZE",
            ),
            // A check refusing a setting nobody set names its variable.
            (
                &[("EMBEDDING_MAX_QUEUED_TOKENS", "100")][..],
                "MEMBATCH_MAX_TOKENS_PER_REQUEST",
            ),
            (
                &[("MEMBATCH_MAX_BATCH_SIZE", "4")][..],
                "MEMBATCH_MIN_BATCH_SIZE",
            ),
            (
                &[
                    ("MEMBATCH_MAX_QUEUED_TOKENS", "100"),
                    ("MEMBATCH_MAX_TOKENS_PER_REQUEST", "200"),
                ][..],
                "MEMBATCH_MAX_TOKENS_PER_REQUEST",
            ),
        ] {
            let pairs: &'static [(&'static str, &'static str)] = pairs;
            match Config::from_lookup(vars(pairs)) {
                Err(Error::InvalidConfig { name, .. }) => assert_eq!(name, var, "{pairs:?}"),
                other => panic!("{pairs:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_flag_overrides_the_environment_and_is_named_in_errors() {
        let threads = find("threads").unwrap();
        let b = Config::from_lookup(vars(&[("MEMBATCH_THREADS", "3")]))
            .unwrap()
            .into_builder();
        let c = b
            .clone()
            .set(threads, "2", "--threads")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(c.model().threads, Some(2));
        match b.set(threads, "none", "--threads") {
            Err(Error::InvalidConfig { name, .. }) => assert_eq!(name, "--threads"),
            other => panic!("{other:?}"),
        }
        let min = find("min_batch_size").unwrap();
        match Config::builder()
            .set(min, "100", "--min-batch-size")
            .unwrap()
            .build()
        {
            Err(Error::InvalidConfig { name, .. }) => assert_eq!(name, "--min-batch-size"),
            other => panic!("{other:?}"),
        }
        // A flag corrects what a variable set: the check runs once, on both.
        let env = ConfigBuilder::from_lookup(vars(&[("MEMBATCH_MAX_BATCH_SIZE", "4")])).unwrap();
        let c = env
            .clone()
            .set(min, "2", "--min-batch-size")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(
            (c.batch().min_batch_size(), c.batch().max_batch_size()),
            (2, 4)
        );
        match env
            .set(find("max_batch_size").unwrap(), "6", "--max-batch-size")
            .unwrap()
            .build()
        {
            Err(Error::InvalidConfig { name, .. }) => assert_eq!(name, "MEMBATCH_MIN_BATCH_SIZE"),
            other => panic!("{other:?}"),
        }
        assert!(min.check("0", "--min-batch-size").is_err());
        assert!(min.check("3", "--min-batch-size").is_ok());
    }

    #[test]
    fn using_an_alias_logs_its_replacement_once() {
        use std::io::Write;
        use std::sync::Arc;
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            // Names no other test uses, so that "once per process" holds.
            let pairs = vars(&[
                ("EMBEDDING_BATCH_WAIT_MS", "1"),
                ("EMBEDDING_IDLE_UNLOAD_SECS", "5"),
                ("MEMBATCH_IDLE_UNLOAD_SECS", "6"),
            ]);
            Config::from_lookup(&pairs).unwrap();
            Config::from_lookup(&pairs).unwrap();
        });
        let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert!(
            lines.iter().any(|l| l
                .contains("EMBEDDING_BATCH_WAIT_MS is an older name of MEMBATCH_BATCH_WAIT_MS")),
            "{log}"
        );
        assert!(
            lines.iter().any(|l| l.contains(
                "EMBEDDING_IDLE_UNLOAD_SECS is ignored: MEMBATCH_IDLE_UNLOAD_SECS is set too and wins"
            )),
            "{log}"
        );
    }
}
