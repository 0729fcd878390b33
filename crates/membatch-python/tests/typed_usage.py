"""Checked by mypy (scripts/python-test.sh), not run: the stubs give a
user's code real types."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

import membatch


def use(texts: list[str]) -> float:
    model = membatch.Embedder("dir", precision="int8", memory_budget="60%")
    vectors = model.encode(texts)
    dim: int = model.dimension
    counts: list[int] = model.token_counts(texts)
    for indices, batch in model.encode_iter(texts):
        ids: npt.NDArray[np.int64] = indices
        block: npt.NDArray[np.float32] = batch
    service = membatch.Service(max_queued_requests=10)
    shared: np.ndarray = service.encode(texts, timeout=1.0)
    ranked = membatch.Reranker("dir").rerank("q", texts, top_n=3)
    first: int = ranked[0]["index"]
    report = membatch.memory_report()
    try:
        model.encode(texts)
    except membatch.Overloaded as e:
        print(e.retry_after)
    return float(np.asarray(vectors).sum()) + dim + len(counts) + first + report["budget_bytes"] + shared.size
