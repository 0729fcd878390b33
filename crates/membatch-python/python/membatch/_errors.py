"""membatch's exceptions.

Every error membatch's Rust core returns is raised as one of these classes,
with the Rust message (the error and its causes) as ``str(e)`` and the
error's fields as attributes (``e.retry_after``, ``e.needed``, ...). The
table of which error becomes which class is in ``docs/python.md``.
"""

from __future__ import annotations

from pathlib import Path


class Error(Exception):
    """The base of every membatch exception."""


class InvalidConfig(Error, ValueError):
    """A setting's value is not one it takes (``memory_budget="-5%"``, an
    unknown setting, a prompt name the model lacks, ``dimensions`` over the
    model's). Attributes: ``name``, ``value``, ``reason`` (when the Rust
    core refused it)."""

    name: str
    value: str
    reason: str


class InvalidInput(Error, TypeError, ValueError):
    """The texts are not texts: ``None``, ``bytes``, a non-string item, a
    string that is not valid Unicode."""


class ModelFileError(Error):
    """A model file is unreadable, corrupt or of an unsupported kind.
    Attribute: ``path``."""

    path: "Path"


class ModelNotFound(ModelFileError, FileNotFoundError):
    """A model file (or the model's directory) does not exist. Attribute:
    ``path``."""


class HubError(Error):
    """The Hugging Face hub could not give a model file. Attributes:
    ``repo``, ``file``, ``reason``."""

    repo: str
    file: str
    reason: str


class MemoryLimitError(Error):
    """The base of the memory refusals: the work does not fit the memory
    membatch may use (its budget, inside the container's limit)."""


class ModelTooLarge(MemoryLimitError):
    """The model's weights and one full-length text do not fit the budget.
    Raise the limit or ``memory_budget``, or load with
    ``precision="int8"``. Attributes: ``needed``, ``available``, ``budget``,
    ``precision``."""

    needed: int
    available: int
    budget: int
    precision: str


class BudgetTooSmall(MemoryLimitError):
    """One text of the model's full length does not fit the budget.
    Attributes: ``needed``, ``budget``, ``in_use``, ``tokens``."""

    needed: int
    budget: int
    in_use: int
    tokens: int


class MemoryPressure(MemoryLimitError):
    """Not enough memory free for the work now, even in batches of one;
    retry with less, or later. Attributes: ``needed``, ``available``,
    ``level``."""

    needed: int
    available: int
    level: str


class MemoryCritical(MemoryLimitError):
    """The budget is critically full: a service refuses new work until use
    falls. Attributes: ``retry_after`` (seconds), ``figure_bytes``,
    ``budget``."""

    retry_after: float
    figure_bytes: int
    budget: int


class PoolRefused(MemoryLimitError):
    """A memory pool shared by several budgets has no room. Attributes:
    ``needed``, ``reason``."""

    needed: int
    reason: str


class MemoryUnknown(MemoryLimitError):
    """The system's memory figures cannot be read; give an absolute
    ``memory_budget`` (``"512MiB"``)."""


class Overloaded(Error):
    """A service's queue is full. Attributes: ``retry_after`` (seconds),
    ``queued_requests``, ``queued_tokens``, ``tokens``."""

    retry_after: float
    queued_requests: int
    queued_tokens: int
    tokens: int


class RequestTooLarge(Error, ValueError):
    """A request is over a per-request limit of the service. Attributes:
    ``limit``, ``got``, ``max``."""

    limit: str
    got: int
    max: int


class TextTooLong(Error, ValueError):
    """A text is longer than the model reads and truncation was refused.
    Attributes: ``index``, ``max_tokens``."""

    index: int
    max_tokens: int


class TokenizationError(Error):
    """The tokenizer failed on a text."""


class InferenceError(Error):
    """The forward pass failed."""


class InternalError(Error):
    """A bug in membatch or in an embedder (a panic caught, a wrong number
    of results): please report it with the message."""


class TimedOut(Error, TimeoutError):
    """No answer within the time given. Attribute: ``after`` (seconds)."""

    after: float


class ServiceClosed(Error):
    """The service was shut down."""


class WorkerFailed(Error):
    """A service's worker stopped after repeated failures."""


class ThreadPoolError(Error):
    """The compute threads could not be started. Attribute: ``threads``."""

    threads: int


class ForkError(Error, RuntimeError):
    """The object was made in the parent of this forked process: its
    compute threads did not come along. Make it in the process that uses
    it."""


__all__ = [
    "Error",
    "InvalidConfig",
    "InvalidInput",
    "ModelFileError",
    "ModelNotFound",
    "HubError",
    "MemoryLimitError",
    "ModelTooLarge",
    "BudgetTooSmall",
    "MemoryPressure",
    "MemoryCritical",
    "PoolRefused",
    "MemoryUnknown",
    "Overloaded",
    "RequestTooLarge",
    "TextTooLong",
    "TokenizationError",
    "InferenceError",
    "InternalError",
    "TimedOut",
    "ServiceClosed",
    "WorkerFailed",
    "ThreadPoolError",
    "ForkError",
]
