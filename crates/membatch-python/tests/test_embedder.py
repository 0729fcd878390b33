"""Embedder: sentence-transformers' vectors, shapes, order, options."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

import membatch


def test_vectors_equal_sentence_transformers_golden_file(embedder, golden):
    want = np.asarray(golden["embeddings"], dtype=np.float32)
    got = embedder.encode(golden["texts"])
    assert got.dtype == np.float32
    assert got.shape == want.shape == (len(golden["texts"]), 384)
    assert np.abs(got - want).max() <= 1e-5


def test_results_come_back_in_input_order_whatever_the_batching(embedder, golden):
    texts = list(golden["texts"]) * 3
    order = list(range(len(texts)))
    random.Random(7).shuffle(order)
    shuffled = [texts[i] for i in order]
    got = embedder.encode(shuffled)
    want = np.asarray(golden["embeddings"], dtype=np.float32)
    for row, i in enumerate(order):
        assert np.abs(got[row] - want[i % len(want)]).max() <= 1e-5


def test_a_single_string_gives_one_vector_and_an_empty_list_gives_zero_rows(embedder, golden):
    one = embedder.encode(golden["texts"][1])
    assert one.shape == (384,)
    assert np.abs(one - np.asarray(golden["embeddings"][1], dtype=np.float32)).max() <= 1e-5
    empty = embedder.encode([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    assert embedder.encode([], dimensions=64).shape == (0, 64)


def test_any_iterable_of_strings_is_accepted(embedder, golden):
    texts = golden["texts"][:5]
    from_list = embedder.encode(texts)
    assert np.array_equal(embedder.encode(tuple(texts)), from_list)
    assert np.array_equal(embedder.encode(t for t in texts), from_list)


def test_encode_iter_yields_every_text_once_in_batches(embedder, golden):
    texts = golden["texts"] * 5
    seen = np.zeros(len(texts), dtype=int)
    want = np.asarray(golden["embeddings"], dtype=np.float32)
    batches = 0
    for indices, vectors in embedder.encode_iter(texts):
        batches += 1
        assert indices.dtype == np.int64 and vectors.shape == (len(indices), 384)
        seen[indices] += 1
        for i, v in zip(indices, vectors):
            assert np.abs(v - want[i % len(want)]).max() <= 1e-5
    assert (seen == 1).all()
    assert batches > 1


def test_dimensions_cut_and_normalise_again(embedder, golden):
    full = embedder.encode(golden["texts"][:4])
    cut = embedder.encode(golden["texts"][:4], dimensions=128)
    assert cut.shape == (4, 128)
    want = full[:, :128] / np.linalg.norm(full[:, :128], axis=1, keepdims=True)
    assert np.abs(cut - want).max() <= 1e-6
    assert np.array_equal(embedder.encode(golden["texts"][:4], truncate_dim=128), cut)


def test_normalize_embeddings_gives_unit_vectors(minilm_dir, golden):
    raw = membatch.Embedder(str(minilm_dir), normalize=False)
    assert not raw.normalized
    refs = golden["unnormalized_mean_pooled"]
    pooled = raw.encode([r["text"] for r in refs])
    want = np.asarray([r["embedding"] for r in refs], dtype=np.float32)
    assert np.abs(pooled - want).max() <= 1e-5
    assert not np.allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-3)
    unit = raw.encode(golden["texts"][:6], normalize_embeddings=True)
    assert np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)


def test_prompts_match_sentence_transformers(prompted_dir):
    ref = json.loads((prompted_dir / "reference.json").read_text())
    model = membatch.Embedder(str(prompted_dir))
    assert model.prompts == {"query": "query: ", "passage": "passage: "}
    assert model.default_prompt_name is None
    plain = model.encode(ref["texts"])
    assert np.abs(plain - np.asarray(ref["embeddings"], dtype=np.float32)).max() <= 1e-5
    query = model.encode_query(ref["texts"])
    assert np.abs(query - np.asarray(ref["query"], dtype=np.float32)).max() <= 1e-5
    # No "document" prompt: encode_document takes "passage", as
    # sentence-transformers does.
    doc = model.encode_document(ref["texts"])
    assert np.abs(doc - np.asarray(ref["passage"], dtype=np.float32)).max() <= 1e-5
    assert np.array_equal(model.encode(ref["texts"], prompt_name="query"), query)
    assert np.array_equal(model.encode(ref["texts"], prompt_name=""), plain)


def test_a_default_prompt_applies_unless_switched_off(prompted_dir):
    ref = json.loads((prompted_dir / "reference.json").read_text())
    model = membatch.Embedder(str(prompted_dir), prompt_name="query")
    assert model.default_prompt_name == "query"
    assert np.abs(model.encode(ref["texts"]) - np.asarray(ref["query"], dtype=np.float32)).max() <= 1e-5
    assert np.abs(model.encode(ref["texts"], prompt_name="") - np.asarray(ref["embeddings"], dtype=np.float32)).max() <= 1e-5


def test_properties_and_sentence_transformers_helpers(embedder, golden):
    assert embedder.dimension == embedder.get_sentence_embedding_dimension() == 384
    assert embedder.max_seq_length == embedder.get_max_seq_length() == 256
    assert embedder.precision == "f32"
    assert embedder.normalized
    assert embedder.token_counts(golden["texts"]) == golden["token_counts"]
    assert "all-MiniLM-L6-v2" in repr(embedder)
    v = embedder.encode(["a cat sits", "a cat sat", "stock markets fell"])
    sim = embedder.similarity(v, v)
    assert sim.shape == (3, 3)
    assert np.allclose(np.diag(sim), 1.0, atol=1e-6)
    assert sim[0, 1] > sim[0, 2]
    assert np.allclose(sim, v @ v.T, atol=1e-6)


def test_int8_stays_close_to_f32(minilm_dir, golden):
    int8 = membatch.Embedder(str(minilm_dir), precision="int8")
    assert int8.precision == "int8"
    got = int8.encode(golden["texts"])
    want = np.asarray(golden["embeddings"], dtype=np.float32)
    cos = (got * want).sum(axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.99


def test_sentence_transformers_arguments_are_accepted(embedder, golden):
    texts = golden["texts"][:3]
    base = embedder.encode(texts)
    same = embedder.encode(texts, batch_size=1, device="cpu", show_progress_bar=False, convert_to_numpy=True)
    assert np.array_equal(base, same)
    as_list = embedder.encode(texts, convert_to_numpy=False)
    assert isinstance(as_list, list) and len(as_list) == 3
    with pytest.raises(membatch.InvalidConfig):
        embedder.encode(texts, output_value="token_embeddings")
    with pytest.raises(membatch.InvalidConfig):
        embedder.encode(texts, precision="binary")
    # A misspelt keyword, or a literal prompt, would change nothing
    # silently: refused.
    with pytest.raises(membatch.InvalidConfig, match="normalise_embeddings"):
        embedder.encode(texts, normalise_embeddings=True)
    with pytest.raises(membatch.InvalidConfig, match="prompt_name"):
        embedder.encode(texts, prompt="query: ")
    assert np.array_equal(embedder.encode(texts, prompt=None), base)


def test_sentence_transformers_constructor_habits(minilm_dir, monkeypatch, tmp_path):
    assert membatch.Embedder(str(minilm_dir), device="cpu").dimension == 384
    with pytest.raises(membatch.InvalidConfig, match="CPU"):
        membatch.Embedder(str(minilm_dir), device="cuda")
    # A bare model name is the sentence-transformers/ repository, as in
    # sentence-transformers (offline here: the hub's error names it).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(membatch.HubError) as info:
        membatch.Embedder("no-such-model-here")
    assert info.value.repo == "sentence-transformers/no-such-model-here"


def test_an_abandoned_iterator_stops_its_thread(embedder, golden):
    import gc
    import time
    from pathlib import Path

    def encode_threads() -> int:
        return sum(
            1 for t in Path("/proc/self/task").iterdir()
            if (t / "comm").read_text().strip() == "membatch-encode"
        )

    def settle(want: int) -> int:
        deadline = time.monotonic() + 30
        while encode_threads() != want and time.monotonic() < deadline:
            time.sleep(0.05)
        return encode_threads()

    # Earlier calls' threads end just after their last batch is taken.
    before = settle(0)
    assert before == 0
    it = embedder.encode_iter([f"text number {i}" for i in range(5000)])
    next(it)
    assert encode_threads() == before + 1
    del it
    gc.collect()
    # The thread finishes the batch it is computing, finds nobody to hand
    # it to, and ends (one batch: well under a second unloaded).
    assert settle(0) == 0


def test_threads_setting_gives_the_same_vectors(minilm_dir, golden):
    one = membatch.Embedder(str(minilm_dir), threads=1).encode(golden["texts"][:8])
    want = np.asarray(golden["embeddings"][:8], dtype=np.float32)
    assert np.abs(one - want).max() <= 1e-5


def test_settings_by_table_name(minilm_dir):
    model = membatch.Embedder(str(minilm_dir), max_seq_length=32, min_batch_size=2)
    assert model.max_seq_length == 32
    long = "word " * 500
    assert model.token_counts([long]) == [32]
    names = [name for name, _, _ in membatch._membatch._settings()]
    assert "max_memory" in names and "max_batch_size" in names


def test_the_environment_sets_what_the_arguments_leave_unset(minilm_dir, monkeypatch):
    monkeypatch.setenv("MEMBATCH_MAX_SEQ_LENGTH", "40")
    assert membatch.Embedder(str(minilm_dir)).max_seq_length == 40
    assert membatch.Embedder(str(minilm_dir), max_seq_length=50).max_seq_length == 50


def test_memory_report_says_what_membatch_sees():
    r = membatch.memory_report()
    for key in ("rss_bytes", "effective_limit_bytes", "budget_bytes", "headroom_bytes", "level"):
        assert key in r
    assert r["level"] in ("normal", "cautious", "degraded", "critical")
    assert 0 < r["budget_bytes"] <= r["effective_limit_bytes"]
    half = membatch.memory_report(memory_budget="50%")
    assert abs(half["budget_bytes"] - half["effective_limit_bytes"] * 0.5) <= 1
    assert membatch.memory_report(memory_budget="100MiB")["budget_bytes"] == 100 << 20


def test_reranker_scores_equal_the_reference_logits(reranker_dir):
    ref = json.loads((reranker_dir / "reference.json").read_text())
    rr = membatch.Reranker(str(reranker_dir))
    scores = rr.scores(ref["query"], ref["documents"])
    assert np.abs(scores - np.asarray(ref["logits"], dtype=np.float32)).max() <= 1e-5
    ranked = rr.rerank(ref["query"], ref["documents"], top_n=2, return_documents=True)
    best = np.argsort(-np.asarray(ref["logits"]))[:2]
    assert [r["index"] for r in ranked] == list(best)
    assert ranked[0]["document"] == ref["documents"][best[0]]
    pairs = [(ref["query"], d) for d in ref["documents"]]
    assert np.abs(rr.predict(pairs, apply_sigmoid=False) - scores).max() <= 1e-6
    # sentence-transformers' CrossEncoder.predict: a sigmoid by default.
    assert np.abs(rr.predict(pairs) - np.asarray(ref["scores_sigmoid"], dtype=np.float32)).max() <= 1e-5
    one = rr.predict(pairs[1])
    assert isinstance(one, float) and abs(one - ref["scores_sigmoid"][1]) <= 1e-5
