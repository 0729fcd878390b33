"""membatch: sentence embeddings on CPU inside a memory limit.

The texts are embedded in batches sized to the memory the process may use
(its container's limit, read from the cgroup); when memory runs short a
batch is retried smaller, and what cannot be done at all raises a typed
exception (``membatch.ModelTooLarge``, ``membatch.MemoryPressure``, ...)
instead of the process being killed.

    >>> import membatch
    >>> model = membatch.Embedder()              # all-MiniLM-L6-v2
    >>> vectors = model.encode(["a text", "another one"])
    >>> vectors.shape
    (2, 384)

``Embedder`` runs one caller's texts; ``Service`` keeps one model resident
for every thread and coroutine of a process (``aencode``); ``Reranker``
scores (query, document) pairs. ``memory_report()`` says what membatch sees.
The guide is docs/python.md in membatch's repository.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _errors
from ._errors import (
    Error,
    InvalidConfig,
    InvalidInput,
    ModelFileError,
    ModelNotFound,
    HubError,
    MemoryLimitError,
    ModelTooLarge,
    BudgetTooSmall,
    MemoryPressure,
    MemoryCritical,
    PoolRefused,
    MemoryUnknown,
    Overloaded,
    RequestTooLarge,
    TextTooLong,
    TokenizationError,
    InferenceError,
    InternalError,
    TimedOut,
    ServiceClosed,
    WorkerFailed,
    ThreadPoolError,
    ForkError,
)
from ._membatch import Embedder as _Embedder
from ._membatch import Reranker as _Reranker
from ._membatch import Service as _Service
from ._membatch import __version__, _next_callback, memory_report

__all__ = ["Embedder", "Service", "Reranker", "memory_report", "__version__", *_errors.__all__]

Texts = Union[str, Iterable[str]]

# Prompt names sentence-transformers' encode_query / encode_document try,
# in order.
_QUERY_PROMPTS = ("query",)
_DOCUMENT_PROMPTS = ("document", "passage", "corpus")


# sentence-transformers' `encode` arguments that membatch accepts and
# ignores: they do not change the vectors (membatch sizes its batches to
# memory, runs on the CPU, returns numpy).
_IGNORED = {"batch_size", "show_progress_bar", "convert_to_numpy", "convert_to_tensor", "device",
            "pool", "chunk_size", "output_value", "precision", "task"}


def _check_ignored(ignored: Dict[str, Any]) -> None:
    """sentence-transformers arguments membatch accepts and ignores
    (``batch_size``, ``device``, ...) pass; those that would change the
    result, and unknown ones (a misspelt keyword), are refused."""
    if "prompt" in ignored and ignored["prompt"] is not None:
        raise _errors.InvalidConfig(
            "prompt: give one of the model's prompts by name (prompt_name=...), or put the text "
            "in front of each sentence"
        )
    unknown = sorted(set(ignored) - _IGNORED - {"prompt"})
    if unknown:
        raise _errors.InvalidConfig(f"unknown argument(s) {', '.join(unknown)} to encode")
    output_value = ignored.get("output_value", "sentence_embedding")
    if output_value not in (None, "sentence_embedding"):
        raise _errors.InvalidConfig(
            f"output_value={output_value!r}: membatch returns sentence embeddings only"
        )
    precision = ignored.get("precision", "float32")
    if precision not in (None, "float32"):
        raise _errors.InvalidConfig(
            f"precision={precision!r}: encode returns float32; for int8 weights make the "
            'model with Embedder(precision="int8")'
        )


def _normalize(a: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=-1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    a /= norms
    return a


def _cosine(a: Any, b: Any) -> np.ndarray:
    a = np.atleast_2d(np.asarray(a, dtype=np.float32)).copy()
    b = np.atleast_2d(np.asarray(b, dtype=np.float32)).copy()
    return _normalize(a) @ _normalize(b).T


def _ranked(
    scores: np.ndarray,
    documents: Sequence[str],
    top_n: Optional[int],
    return_documents: bool,
) -> List[Dict[str, Any]]:
    order = np.argsort(-scores, kind="stable")
    if top_n is not None:
        order = order[: max(int(top_n), 0)]
    out = []
    for i in order:
        item: Dict[str, Any] = {"index": int(i), "score": float(scores[i])}
        if return_documents:
            item["document"] = documents[int(i)]
        out.append(item)
    return out


def _first_prompt(prompts: Dict[str, str], names: Sequence[str]) -> Optional[str]:
    return next((n for n in names if n in prompts), None)


def _model_ref(model: Any) -> Any:
    """A bare sentence-transformers model name (``"all-MiniLM-L6-v2"``)
    means the ``sentence-transformers/`` repository, as in
    sentence-transformers; paths and ``org/name`` ids are kept."""
    if isinstance(model, str) and model and "/" not in model and not os.path.exists(model):
        return f"sentence-transformers/{model}"
    return model


def _check_device(device: Optional[str]) -> None:
    if device not in (None, "cpu"):
        raise _errors.InvalidConfig(f"device={device!r}: membatch runs on the CPU")


def _progress(total: int, show: bool) -> Any:
    if not show:
        return None
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover - depends on the environment
        import warnings

        warnings.warn("show_progress_bar needs tqdm (pip install tqdm)", stacklevel=3)
        return None
    return tqdm(total=total, desc="Batches", unit="text")


class Embedder(_Embedder):
    """A sentence embedding model in this process.

    ``Embedder(model=None, *, precision="f32", threads=None,
    memory_budget="70%", normalize=None, max_batch_size=64,
    prompt_name=None, dimensions=None, max_seq_length=None, **settings)``

    - ``model``: a model directory (sentence-transformers layout) or a
      Hugging Face hub id; ``None`` is all-MiniLM-L6-v2 (or
      ``MEMBATCH_MODEL``).
    - ``precision``: ``"f32"`` (exact) or ``"int8"`` (a third of the
      memory; cosine >= 0.998 to f32).
    - ``threads``: compute threads (default: the CPUs this process may use).
    - ``memory_budget``: the share of the memory limit (``"70%"``) or a
      size (``"512MiB"``, bytes as an int) that the model and its batches
      may use; the limit is the smaller of physical memory and the
      container's.
    - ``normalize``: force unit-length vectors on or off (default: as the
      model's modules say).
    - ``max_batch_size``: the largest batch; batches start at 8 and grow
      while memory allows.
    - ``prompt_name``, ``dimensions``: the default prompt and Matryoshka
      dimensions for every call.
    - ``**settings``: any other setting of membatch's table by name
      (``max_batch_tokens=...``); unset settings come from the
      ``MEMBATCH_*`` environment, then the defaults.

    Loading raises ``ModelNotFound``/``ModelFileError`` for a missing or
    corrupt model, ``ModelTooLarge`` when it cannot fit the budget,
    ``InvalidConfig`` for a bad setting.
    """

    def __new__(cls, model: Any = None, *, device: Optional[str] = None, **kwargs: Any) -> "Embedder":
        _check_device(device)
        return super().__new__(cls, model=_model_ref(model), **kwargs)

    def encode(
        self,
        sentences: Texts,
        *,
        batch_size: Optional[int] = None,
        normalize_embeddings: Optional[bool] = None,
        prompt_name: Optional[str] = None,
        dimensions: Optional[int] = None,
        truncate_dim: Optional[int] = None,
        show_progress_bar: bool = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        **ignored: Any,
    ) -> Any:
        """Embeds ``sentences``: a float32 array of shape (n, d), in input
        order (a single string gives shape (d,); ``[]`` gives (0, d)).

        ``prompt_name`` picks one of the model's prompts (``""``: none;
        default: the model's default prompt); ``dimensions`` (or
        ``truncate_dim``) keeps the first d dimensions (normalised again
        when the model normalises); ``normalize_embeddings=True`` makes
        every vector unit length. ``batch_size`` and other
        sentence-transformers arguments are accepted and ignored: membatch
        sizes its batches to the memory it may use. The GIL is released
        while the texts are embedded; Ctrl-C stops between batches.
        """
        _check_ignored(ignored)
        dims = dimensions if dimensions is not None else truncate_dim
        single = isinstance(sentences, str)
        width = self._output_dimension(dims)
        batches = self._batches(sentences, prompt_name=prompt_name, dimensions=dims)
        out = np.empty((batches.total, width), dtype=np.float32)
        bar = _progress(batches.total, show_progress_bar)
        filled = 0
        try:
            for indices, vectors in batches:
                out[indices] = vectors
                filled += len(indices)
                if bar is not None:
                    bar.update(len(indices))
        finally:
            batches.close()
            if bar is not None:
                bar.close()
        if filled != batches.total:  # never a partly filled array
            raise _errors.InternalError(f"{filled} of {batches.total} texts came back")
        if normalize_embeddings:
            _normalize(out)
        if convert_to_tensor:
            import torch  # type: ignore[import-not-found,unused-ignore]

            t = torch.from_numpy(out)
            return t[0] if single else t
        if single:
            return out[0]
        if not convert_to_numpy:
            return list(out)
        return out

    def encode_iter(
        self,
        sentences: Texts,
        *,
        normalize_embeddings: Optional[bool] = None,
        prompt_name: Optional[str] = None,
        dimensions: Optional[int] = None,
        truncate_dim: Optional[int] = None,
        **ignored: Any,
    ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """Embeds ``sentences`` batch by batch: yields ``(indices,
        vectors)``, int64 (k,) and float32 (k, d), as each batch is done
        (in the pipeline's order, by length; ``indices`` say which texts).
        For corpora whose vectors do not fit in memory at once: at most two
        batches' vectors are held."""
        _check_ignored(ignored)
        dims = dimensions if dimensions is not None else truncate_dim
        batches = self._batches(sentences, prompt_name=prompt_name, dimensions=dims)
        try:
            for indices, vectors in batches:
                if normalize_embeddings:
                    _normalize(vectors)
                yield indices, vectors
        finally:
            batches.close()

    def encode_query(self, sentences: Texts, **kwargs: Any) -> Any:
        """``encode`` behind the model's ``query`` prompt (if it has one)."""
        kwargs.setdefault("prompt_name", _first_prompt(self.prompts, _QUERY_PROMPTS))
        return self.encode(sentences, **kwargs)

    def encode_document(self, sentences: Texts, **kwargs: Any) -> Any:
        """``encode`` behind the model's ``document`` (else ``passage``,
        ``corpus``) prompt, if it has one."""
        kwargs.setdefault("prompt_name", _first_prompt(self.prompts, _DOCUMENT_PROMPTS))
        return self.encode(sentences, **kwargs)

    def similarity(self, a: Any, b: Any) -> np.ndarray:
        """Cosine similarity of every row of ``a`` with every row of ``b``:
        float32 (n, m)."""
        return _cosine(a, b)

    def get_sentence_embedding_dimension(self) -> int:
        """The length of the vectors ``encode`` returns."""
        return self.dimension

    def get_max_seq_length(self) -> int:
        """The longest text, in tokens, the model reads."""
        return self.max_seq_length


class Service(_Service):
    """One resident model shared by every thread and coroutine of a
    process: concurrent requests are merged into batches, the model loads
    on first use (and again after ``unload``), and work that does not fit
    is refused at once with ``Overloaded`` or ``MemoryCritical`` (each with
    ``retry_after`` in seconds).

    Takes ``Embedder``'s arguments and ``reranker`` (a cross-encoder's
    directory) for ``rerank``; service settings such as
    ``max_queued_requests`` go in ``**settings``.
    """

    def __new__(cls, model: Any = None, *, device: Optional[str] = None, **kwargs: Any) -> "Service":
        _check_device(device)
        return super().__new__(cls, model=_model_ref(model), **kwargs)

    def encode(
        self,
        sentences: Texts,
        *,
        normalize_embeddings: Optional[bool] = None,
        prompt_name: Optional[str] = None,
        dimensions: Optional[int] = None,
        truncate_dim: Optional[int] = None,
        timeout: Optional[float] = None,
        **ignored: Any,
    ) -> np.ndarray:
        """As ``Embedder.encode``, through the shared service; blocks this
        thread (not the others: the GIL is released) until answered, or
        ``timeout`` seconds (``TimedOut``)."""
        _check_ignored(ignored)
        single = isinstance(sentences, str)
        dims = dimensions if dimensions is not None else truncate_dim
        pending = self._submit(sentences, prompt_name=prompt_name, dimensions=dims)
        out = pending.wait(timeout)
        return self._finish(out, single, normalize_embeddings)

    async def aencode(
        self,
        sentences: Texts,
        *,
        normalize_embeddings: Optional[bool] = None,
        prompt_name: Optional[str] = None,
        dimensions: Optional[int] = None,
        truncate_dim: Optional[int] = None,
        **ignored: Any,
    ) -> np.ndarray:
        """``encode`` for asyncio: the event loop runs on while the texts
        are tokenised (on the loop's executor) and wait for their batch;
        refusals raise as soon as the texts are counted."""
        _check_ignored(ignored)
        single = isinstance(sentences, str)
        dims = dimensions if dimensions is not None else truncate_dim
        submit = functools.partial(self._submit, sentences, prompt_name=prompt_name, dimensions=dims)
        pending = await asyncio.get_running_loop().run_in_executor(None, submit)
        out = await _answer(pending)
        return self._finish(out, single, normalize_embeddings)

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: Optional[int] = None,
        *,
        return_documents: bool = False,
        timeout: Optional[float] = None,
    ) -> List[Dict[str, Any]]:
        """Scores ``documents`` against ``query`` with the service's
        reranker: ``[{"index", "score"(, "document")}]``, best first."""
        documents = list(documents) if not isinstance(documents, str) else documents
        scores = self._submit_rerank(query, documents).wait(timeout)[:, 0]
        return _ranked(scores, documents, top_n, return_documents)

    async def arerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: Optional[int] = None,
        *,
        return_documents: bool = False,
    ) -> List[Dict[str, Any]]:
        """``rerank`` for asyncio."""
        documents = list(documents) if not isinstance(documents, str) else documents
        submit = functools.partial(self._submit_rerank, query, documents)
        pending = await asyncio.get_running_loop().run_in_executor(None, submit)
        scores = (await _answer(pending))[:, 0]
        return _ranked(scores, documents, top_n, return_documents)

    def similarity(self, a: Any, b: Any) -> np.ndarray:
        """Cosine similarity of every row of ``a`` with every row of ``b``."""
        return _cosine(a, b)

    def get_sentence_embedding_dimension(self) -> int:
        """The length of the vectors ``encode`` returns."""
        return self.dimension

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    @staticmethod
    def _finish(out: np.ndarray, single: bool, normalize: Optional[bool]) -> np.ndarray:
        if normalize:
            _normalize(out)
        return out[0] if single else out


_notifier_thread: Optional[threading.Thread] = None
_notifier_pid: Optional[int] = None
_notifier_lock = threading.Lock()


def _notify_loop() -> None:
    """Runs the callbacks of answered requests (``Pending.add_done_callback``),
    on a daemon thread of this process."""
    while True:
        callback = _next_callback()
        if callback is None:
            return
        try:
            callback()
        except BaseException:  # a callback's failure is its caller's, not the thread's
            pass


def _notifier() -> None:
    """Starts this process's notifier thread, once (again in a forked
    child, where the parent's did not come along)."""
    global _notifier_pid, _notifier_thread

    def running() -> bool:
        return _notifier_pid == os.getpid() and _notifier_thread is not None and _notifier_thread.is_alive()

    if running():
        return
    with _notifier_lock:
        if not running():
            _notifier_thread = threading.Thread(target=_notify_loop, name="membatch-notify", daemon=True)
            _notifier_thread.start()
            _notifier_pid = os.getpid()


async def _answer(pending: Any) -> np.ndarray:
    """Awaits a queued request: the notifier thread sets an asyncio future
    when the answer comes."""
    _notifier()
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def wake() -> None:
        def settle() -> None:
            if not done.done():
                done.set_result(None)

        try:
            loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the loop closed meanwhile: nobody waits
            pass

    pending.add_done_callback(wake)
    await done
    return pending.result()


class Reranker(_Reranker):
    """A cross-encoder (reranker) in this process: scores (query, document)
    pairs in memory-sized batches.

    ``Reranker(model, *, precision="f32", threads=None,
    memory_budget="70%", max_batch_size=64, **settings)``
    """

    def __new__(cls, model: Any, *, device: Optional[str] = None, **kwargs: Any) -> "Reranker":
        _check_device(device)
        return super().__new__(cls, model, **kwargs)

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: Optional[int] = None,
        *,
        return_documents: bool = False,
    ) -> List[Dict[str, Any]]:
        """``[{"index", "score"(, "document")}]``, best first; ``score`` is
        the model's logit."""
        documents = list(documents) if not isinstance(documents, str) else documents
        return _ranked(self.scores(query, documents), documents, top_n, return_documents)

    def predict(self, pairs: Any, *, apply_sigmoid: bool = True) -> Any:
        """sentence-transformers' ``CrossEncoder.predict`` for one-label
        models: the score of each ``(query, document)`` pair, in order,
        through a sigmoid (as sentence-transformers does by default;
        ``apply_sigmoid=False`` gives the logits). One pair gives a float."""
        single = isinstance(pairs, tuple) and len(pairs) == 2 and all(isinstance(p, str) for p in pairs)
        rows = [pairs] if single else list(pairs)
        out = np.empty(len(rows), dtype=np.float32)
        by_query: Dict[str, List[int]] = {}
        for i, pair in enumerate(rows):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise _errors.InvalidInput(f"pairs[{i}] is not a (query, document) pair")
            by_query.setdefault(pair[0], []).append(i)
        for query, idx in by_query.items():
            out[idx] = self.scores(query, [rows[i][1] for i in idx])
        if apply_sigmoid:
            out = (1.0 / (1.0 + np.exp(-out))).astype(np.float32)
        return float(out[0]) if single else out
