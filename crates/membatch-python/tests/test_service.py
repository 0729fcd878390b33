"""Service: one resident model for threads and coroutines."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pytest

import membatch

from conftest import run_python


@pytest.fixture(scope="module")
def service(minilm_dir, reranker_dir):
    s = membatch.Service(str(minilm_dir), reranker=str(reranker_dir))
    yield s
    s.shutdown()


def test_service_vectors_equal_the_golden_file(service, golden):
    got = service.encode(golden["texts"])
    assert np.abs(got - np.asarray(golden["embeddings"], dtype=np.float32)).max() <= 1e-5
    assert service.encode(golden["texts"][0]).shape == (384,)
    assert service.encode([]).shape == (0, 384)
    assert service.model_state == "loaded"
    assert service.dimension == service.get_sentence_embedding_dimension() == 384


def test_threads_share_one_service_and_its_batches(service, golden):
    want = np.asarray(golden["embeddings"], dtype=np.float32)
    n = len(golden["texts"])
    before = service.metrics()
    results = {}

    def worker(k):
        idx = [(k * 7 + j) % n for j in range(10)]
        results[k] = (idx, service.encode([golden["texts"][i] for i in idx]))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 16
    for idx, got in results.values():
        assert np.abs(got - want[idx]).max() <= 1e-5
    after = service.metrics()
    assert after["completed"] - before["completed"] == 16
    # Requests were merged: fewer batches than requests.
    assert after["batches"] - before["batches"] < 16


def test_asyncio_callers_share_it_too(service, golden):
    want = np.asarray(golden["embeddings"], dtype=np.float32)

    async def main():
        tasks = [service.aencode([golden["texts"][i % len(want)]]) for i in range(100)]
        return await asyncio.gather(*tasks)

    out = asyncio.run(main())
    for i, got in enumerate(out):
        assert got.shape == (1, 384)
        assert np.abs(got[0] - want[i % len(want)]).max() <= 1e-5


def test_asyncio_refusals_raise_at_once(minilm_dir):
    service = membatch.Service(str(minilm_dir), max_inputs_per_request=2)

    async def main():
        with pytest.raises(membatch.RequestTooLarge):
            await service.aencode(["a", "b", "c"])
        return await service.aencode(["a", "b"], dimensions=32)

    assert asyncio.run(main()).shape == (2, 32)
    assert service.encode(["a", "b"], truncate_dim=48).shape == (2, 48)
    service.shutdown()


def test_rerank_through_the_service_equals_the_reranker(service, reranker_dir):
    ref = json.loads((reranker_dir / "reference.json").read_text())
    ranked = service.rerank(ref["query"], ref["documents"])
    scores = {r["index"]: r["score"] for r in ranked}
    assert len(scores) == len(ref["documents"])
    for i, logit in enumerate(ref["logits"]):
        assert abs(scores[i] - logit) <= 1e-5
    assert [r["index"] for r in ranked] == sorted(scores, key=lambda i: -scores[i])

    async def main():
        return await service.arerank(ref["query"], ref["documents"], top_n=1)

    assert asyncio.run(main())[0]["index"] == ranked[0]["index"]


def test_unload_and_reload(minilm_dir, golden):
    s = membatch.Service(str(minilm_dir))
    first = s.encode(golden["texts"][:3])
    assert s.unload() is True
    assert s.model_state == "unloaded"
    again = s.encode(golden["texts"][:3])
    assert np.array_equal(first, again)
    s.shutdown()


def test_the_interpreter_exits_cleanly_with_a_service_running(minilm_dir):
    r = run_python(
        f"""
        import threading, membatch
        s = membatch.Service({str(minilm_dir)!r})
        s.encode(["warm"])
        def busy():
            while True:
                s.encode(["still running " * 50] * 16)
        for _ in range(4):
            threading.Thread(target=busy, daemon=True).start()
        import asyncio
        async def later():
            await s.aencode(["x"])
        asyncio.run(later())
        print("leaving")
        """,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "leaving" in r.stdout
    assert "panicked" not in r.stderr and "Traceback" not in r.stderr, r.stderr
