//! Python arguments as membatch's settings and texts.
//!
//! Keyword arguments become settings of the library's one table
//! (`membatch::settings`): a value is given to the setting as text, as an
//! environment variable or a flag would give it, so it is parsed and
//! checked in one place, and an error names the keyword. Unset keywords
//! leave the `MEMBATCH_*` environment (and then the defaults) in force.

use membatch::{settings, Config, ConfigBuilder};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyString};

use crate::errors::{raise, to_py};

/// A keyword's value as the text a setting parses, or `None` when unset.
fn setting_text(keyword: &str, value: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    if value.is_none() {
        return Ok(None);
    }
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(Some(b.is_true().to_string()));
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(Some(s.to_cow()?.into_owned()));
    }
    if let Ok(i) = value.extract::<i64>() {
        return Ok(Some(i.to_string()));
    }
    if let Ok(f) = value.extract::<f64>() {
        return Ok(Some(f.to_string()));
    }
    // A pathlib.Path (or any os.PathLike) for a model directory.
    if let Ok(p) = value.extract::<std::path::PathBuf>() {
        return Ok(Some(p.to_string_lossy().into_owned()));
    }
    Err(raise(
        "InvalidConfig",
        format!(
            "invalid setting {keyword}: a {} is not a value of it (give a str, int, float or bool)",
            type_name(value)
        ),
    ))
}

/// The settings table's name for a Python keyword: the table's own
/// names, and `memory_budget` (sentence-transformers users' word) for
/// `max_memory`.
fn setting_name(keyword: &str) -> &str {
    match keyword {
        "memory_budget" => "max_memory",
        other => other,
    }
}

/// The configuration for the keywords `settings` (`model=`,
/// `memory_budget=`, `max_queued_requests=`, … any setting of the table),
/// over the environment; a `None` value leaves a setting unset.
pub(crate) fn config(settings: Option<&Bound<'_, PyDict>>) -> PyResult<Config> {
    let mut builder = ConfigBuilder::from_env().map_err(to_py)?;
    for (k, value) in settings.into_iter().flat_map(|d| d.iter()) {
        let keyword: String = k.extract()?;
        let Some(setting) = settings::find(setting_name(&keyword)) else {
            let known: Vec<&str> = settings::all().iter().map(|s| s.name()).collect();
            return Err(raise(
                "InvalidConfig",
                format!(
                    "unknown setting {keyword:?}; the settings are: memory_budget, {}",
                    known.join(", ")
                ),
            ));
        };
        if let Some(text) = setting_text(&keyword, &value)? {
            builder = builder.set(setting, &text, &keyword).map_err(to_py)?;
        }
    }
    let config = builder.build().map_err(to_py)?;
    // Always a dedicated pool: rayon's global pool cannot be made again in
    // a forked child, a pool of the embedder's own can (`os.fork`, see
    // `crate::fork`). One thread per CPU the process may use (the cgroup's
    // CPU quota included), as the global pool would have.
    if config.model().threads.is_none() {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        return config
            .into_builder()
            .threads(threads)
            .build()
            .map_err(to_py);
    }
    Ok(config)
}

/// What `sentences` holds: one string (`true`: the caller wants a single
/// vector back), or the strings of a list, tuple or any iterable.
pub(crate) fn texts(sentences: &Bound<'_, PyAny>) -> PyResult<(Vec<String>, bool)> {
    if let Ok(s) = sentences.cast::<PyString>() {
        return Ok((vec![text(s, None)?], true));
    }
    if sentences.is_none() {
        return Err(raise(
            "InvalidInput",
            "sentences is None: give a str or a list of str",
        ));
    }
    if sentences.cast::<PyBytes>().is_ok() || sentences.cast::<PyByteArray>().is_ok() {
        return Err(raise(
            "InvalidInput",
            "sentences is bytes: decode it to str first (data.decode(\"utf-8\"))",
        ));
    }
    let iter = sentences.try_iter().map_err(|_| {
        raise(
            "InvalidInput",
            format!(
                "sentences is a {}: give a str or a list of str",
                type_name(sentences)
            ),
        )
    })?;
    let mut out = Vec::with_capacity(sentences.len().unwrap_or(0));
    for (i, item) in iter.enumerate() {
        let item = item?;
        match item.cast::<PyString>() {
            Ok(s) => out.push(text(s, Some(i))?),
            Err(_) => {
                return Err(raise(
                    "InvalidInput",
                    format!(
                        "sentences[{i}] is a {}, not a str{}",
                        type_name(&item),
                        if item.cast::<PyBytes>().is_ok() {
                            ": decode it first"
                        } else {
                            ""
                        }
                    ),
                ))
            }
        }
    }
    Ok((out, false))
}

/// One string's text; a string that is not valid Unicode (a lone
/// surrogate) is refused by name.
fn text(s: &Bound<'_, PyString>, index: Option<usize>) -> PyResult<String> {
    s.to_cow().map(|c| c.into_owned()).map_err(|_| {
        let which = index.map_or("sentences".to_string(), |i| format!("sentences[{i}]"));
        raise(
            "InvalidInput",
            format!("{which} is not valid Unicode (it holds a lone surrogate)"),
        )
    })
}

/// An optional string argument, refused by name when it is not a str.
pub(crate) fn opt_str(name: &str, value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => match v.cast::<PyString>() {
            Ok(s) => Ok(Some(s.to_cow()?.into_owned())),
            Err(_) => Err(raise(
                "InvalidInput",
                format!("{name} is a {}, not a str", type_name(v)),
            )),
        },
    }
}

/// An optional positive count, refused by name otherwise.
pub(crate) fn opt_count(name: &str, value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    match value {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) if v.cast::<PyBool>().is_ok() => Err(raise(
            "InvalidInput",
            format!("{name} is a bool, not an int"),
        )),
        Some(v) => match v.extract::<i64>() {
            Ok(n) if n > 0 => Ok(Some(n as usize)),
            Ok(n) => Err(raise(
                "InvalidConfig",
                format!("{name} = {n}: give a positive number"),
            )),
            Err(_) => Err(raise(
                "InvalidInput",
                format!("{name} is a {}, not an int", type_name(v)),
            )),
        },
    }
}

pub(crate) fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "value".into())
}

/// The model `config` loads, by the name `repr` and `.model` show: its
/// directory, or its hub id and revision.
pub(crate) fn model_name(config: &Config) -> String {
    config
        .model()
        .source
        .clone()
        .unwrap_or_else(membatch::ModelSource::default_model)
        .id()
}

/// A model given as a directory (str or `os.PathLike`) or a hub id; the
/// error names `keyword`.
pub(crate) fn source(value: &Bound<'_, PyAny>, keyword: &str) -> PyResult<membatch::ModelSource> {
    let path: std::path::PathBuf = value.extract().map_err(|_| {
        raise(
            "InvalidConfig",
            format!("{keyword}: give a model directory or hub id"),
        )
    })?;
    Ok(membatch::ModelSource::parse(&path.to_string_lossy()))
}
