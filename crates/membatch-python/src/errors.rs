//! membatch's errors as Python exceptions.
//!
//! The classes are defined in Python (`membatch/_errors.py`: several have
//! two bases, such as `InvalidConfig(Error, ValueError)`, which pyo3's
//! exception macro cannot express); this module maps every
//! [`membatch::Error`] variant to one of them, with the Rust message and
//! the variant's fields as attributes. `docs/python.md` has the table.

use membatch::{Error, ModelFileError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The exception for `err`: its class (`membatch._errors.<name>`), its
/// message (the error and its causes) and its fields.
pub(crate) fn to_py(err: Error) -> PyErr {
    Python::attach(|py| build(py, &err).unwrap_or_else(|e| e))
}

/// A `membatch` exception of class `class` with `message`, outside any
/// Rust error (bad arguments, a forked process).
pub(crate) fn raise(class: &str, message: impl Into<String>) -> PyErr {
    let message = message.into();
    Python::attach(|py| {
        new(py, class, &message, PyDict::new(py))
            .map(PyErr::from_value)
            .unwrap_or_else(|e| e)
    })
}

fn new<'py>(
    py: Python<'py>,
    class: &str,
    message: &str,
    attrs: Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyAny>> {
    let cls = py.import("membatch._errors")?.getattr(class)?;
    let value = cls.call1((message,))?;
    for (k, v) in attrs.iter() {
        value.setattr(k.extract::<String>()?, v)?;
    }
    Ok(value)
}

fn build(py: Python<'_>, err: &Error) -> PyResult<PyErr> {
    let attrs = PyDict::new(py);
    let class = match err {
        Error::ModelFile { path, kind } => {
            attrs.set_item("path", path)?;
            match kind {
                ModelFileError::Missing { .. } => "ModelNotFound",
                _ => "ModelFileError",
            }
        }
        Error::Hub { repo, file, reason } => {
            attrs.set_item("repo", repo)?;
            attrs.set_item("file", file)?;
            attrs.set_item("reason", reason)?;
            "HubError"
        }
        Error::InvalidConfig {
            name,
            value,
            reason,
        } => {
            attrs.set_item("name", name)?;
            attrs.set_item("value", value)?;
            attrs.set_item("reason", reason)?;
            "InvalidConfig"
        }
        Error::MemoryPressure {
            needed,
            available,
            level,
        } => {
            attrs.set_item("needed", needed)?;
            attrs.set_item("available", available)?;
            attrs.set_item("level", level.as_str())?;
            "MemoryPressure"
        }
        Error::PoolRefused { needed, reason } => {
            attrs.set_item("needed", needed)?;
            attrs.set_item("reason", reason)?;
            "PoolRefused"
        }
        Error::BudgetTooSmall {
            needed,
            budget,
            in_use,
            tokens,
        } => {
            attrs.set_item("needed", needed)?;
            attrs.set_item("budget", budget)?;
            attrs.set_item("in_use", in_use)?;
            attrs.set_item("tokens", tokens)?;
            "BudgetTooSmall"
        }
        Error::MemoryUnknown => "MemoryUnknown",
        Error::ModelTooLarge {
            needed,
            available,
            budget,
            precision,
        } => {
            attrs.set_item("needed", needed)?;
            attrs.set_item("available", available)?;
            attrs.set_item("budget", budget)?;
            attrs.set_item("precision", precision.to_string())?;
            "ModelTooLarge"
        }
        Error::Tokenization(_) => "TokenizationError",
        Error::Inference(_) => "InferenceError",
        Error::EmbedderContract { .. } | Error::EmbedderPanicked { .. } => "InternalError",
        Error::Overloaded {
            retry_after,
            queued_requests,
            queued_tokens,
            tokens,
        } => {
            attrs.set_item("retry_after", retry_after.as_secs_f64())?;
            attrs.set_item("queued_requests", queued_requests)?;
            attrs.set_item("queued_tokens", queued_tokens)?;
            attrs.set_item("tokens", tokens)?;
            "Overloaded"
        }
        Error::MemoryCritical {
            figure_bytes,
            budget_bytes,
            retry_after,
        } => {
            attrs.set_item("retry_after", retry_after.as_secs_f64())?;
            attrs.set_item("figure_bytes", figure_bytes)?;
            attrs.set_item("budget", budget_bytes)?;
            "MemoryCritical"
        }
        Error::RequestTooLarge { limit, got, max } => {
            attrs.set_item("limit", limit)?;
            attrs.set_item("got", got)?;
            attrs.set_item("max", max)?;
            "RequestTooLarge"
        }
        Error::TextTooLong { index, max_tokens } => {
            attrs.set_item("index", index)?;
            attrs.set_item("max_tokens", max_tokens)?;
            "TextTooLong"
        }
        Error::TimedOut { after } => {
            attrs.set_item("after", after.as_secs_f64())?;
            "TimedOut"
        }
        Error::Closed => "ServiceClosed",
        Error::WorkerFailed { .. } => "WorkerFailed",
        Error::ThreadPool { threads, .. } => {
            attrs.set_item("threads", threads)?;
            "ThreadPoolError"
        }
        // A variant newer than this mapping: the base class, with its
        // message.
        _ => "Error",
    };
    let value = new(py, class, &err.report().to_string(), attrs)?;
    Ok(PyErr::from_value(value))
}

/// One error of each of membatch's variants, as the package raises it:
/// the package's tests check every class, message and attribute of the
/// mapping (docs/python.md's table) through it, including the variants no
/// test can provoke on demand (a pool refusal, a worker failure).
pub(crate) fn example(variant: &str) -> Option<Error> {
    use std::path::PathBuf;
    use std::time::Duration;
    let boxed = |m: &str| -> membatch::BoxError {
        std::sync::Arc::new(std::io::Error::other(m.to_string()))
    };
    Some(match variant {
        "ModelFile.Missing" => Error::ModelFile {
            path: PathBuf::from("/models/x/config.json"),
            kind: ModelFileError::Missing {
                hint: String::new(),
            },
        },
        "ModelFile.Weights" => Error::ModelFile {
            path: PathBuf::from("/models/x/model.safetensors"),
            kind: ModelFileError::Weights(boxed("truncated")),
        },
        "Hub" => Error::Hub {
            repo: "org/model".into(),
            file: "config.json".into(),
            reason: "offline".into(),
        },
        "InvalidConfig" => Error::InvalidConfig {
            name: "max_memory".into(),
            value: "-5%".into(),
            reason: "negative".into(),
        },
        "MemoryPressure" => Error::MemoryPressure {
            needed: 2 << 20,
            available: 1 << 20,
            level: membatch::PressureLevel::Degraded,
        },
        "PoolRefused" => Error::PoolRefused {
            needed: 1 << 20,
            reason: "full".into(),
        },
        "BudgetTooSmall" => Error::BudgetTooSmall {
            needed: 3 << 20,
            budget: 2 << 20,
            in_use: 1 << 20,
            tokens: 256,
        },
        "MemoryUnknown" => Error::MemoryUnknown,
        "ModelTooLarge" => Error::ModelTooLarge {
            needed: 100 << 20,
            available: 50 << 20,
            budget: 60 << 20,
            precision: membatch::Precision::F32,
        },
        "Tokenization" => Error::Tokenization(boxed("bad text")),
        "Inference" => Error::Inference(boxed("bad tensor")),
        "EmbedderContract" => Error::EmbedderContract {
            method: "embed_tokens",
            expected: 2,
            got: 1,
        },
        "EmbedderPanicked" => Error::EmbedderPanicked {
            message: "boom".into(),
        },
        "Overloaded" => Error::Overloaded {
            retry_after: Duration::from_millis(1500),
            queued_requests: 10,
            queued_tokens: 1000,
            tokens: 50,
        },
        "MemoryCritical" => Error::MemoryCritical {
            figure_bytes: 95 << 20,
            budget_bytes: 100 << 20,
            retry_after: Duration::from_secs(2),
        },
        "RequestTooLarge" => Error::RequestTooLarge {
            limit: "inputs",
            got: 3000,
            max: 2048,
        },
        "TextTooLong" => Error::TextTooLong {
            index: 3,
            max_tokens: 256,
        },
        "TimedOut" => Error::TimedOut {
            after: Duration::from_secs(1),
        },
        "Closed" => Error::Closed,
        "WorkerFailed" => Error::WorkerFailed {
            cause: std::sync::Arc::new(Error::Closed),
        },
        "ThreadPool" => Error::ThreadPool {
            threads: 4,
            source: boxed("no threads"),
        },
        _ => return None,
    })
}
