"""Every error as a typed membatch exception, never a crash."""

from __future__ import annotations

import random
import shutil
import threading

import numpy as np
import pytest

import membatch
from membatch import _membatch

# membatch's Rust error variants and the class each becomes (the table in
# docs/python.md), with an attribute each carries.
MAPPING = {
    "ModelFile.Missing": ("ModelNotFound", "path"),
    "ModelFile.Weights": ("ModelFileError", "path"),
    "Hub": ("HubError", "repo"),
    "InvalidConfig": ("InvalidConfig", "reason"),
    "MemoryPressure": ("MemoryPressure", "available"),
    "PoolRefused": ("PoolRefused", "needed"),
    "BudgetTooSmall": ("BudgetTooSmall", "tokens"),
    "MemoryUnknown": ("MemoryUnknown", None),
    "ModelTooLarge": ("ModelTooLarge", "needed"),
    "Tokenization": ("TokenizationError", None),
    "Inference": ("InferenceError", None),
    "EmbedderContract": ("InternalError", None),
    "EmbedderPanicked": ("InternalError", None),
    "Overloaded": ("Overloaded", "retry_after"),
    "MemoryCritical": ("MemoryCritical", "retry_after"),
    "RequestTooLarge": ("RequestTooLarge", "max"),
    "TextTooLong": ("TextTooLong", "max_tokens"),
    "TimedOut": ("TimedOut", "after"),
    "Closed": ("ServiceClosed", None),
    "WorkerFailed": ("WorkerFailed", None),
    "ThreadPool": ("ThreadPoolError", "threads"),
}


@pytest.mark.parametrize("variant", sorted(MAPPING))
def test_every_rust_error_variant_has_its_class(variant):
    cls_name, attr = MAPPING[variant]
    cls = getattr(membatch, cls_name)
    assert issubclass(cls, membatch.Error)
    with pytest.raises(cls) as info:
        _membatch._raise_example(variant)
    assert type(info.value) is cls
    assert str(info.value)  # the Rust message, with its causes
    if attr is not None:
        assert getattr(info.value, attr) is not None


def test_the_mapping_carries_the_fields_and_the_causes():
    with pytest.raises(membatch.Overloaded) as info:
        _membatch._raise_example("Overloaded")
    assert info.value.retry_after == pytest.approx(1.5)
    assert info.value.queued_requests == 10
    with pytest.raises(membatch.MemoryCritical) as info:
        _membatch._raise_example("MemoryCritical")
    assert info.value.retry_after == pytest.approx(2.0)
    assert isinstance(info.value, membatch.MemoryLimitError)
    with pytest.raises(membatch.ModelFileError) as info:
        _membatch._raise_example("ModelFile.Weights")
    assert "truncated" in str(info.value)  # the cause, after the error
    with pytest.raises(membatch.ModelTooLarge) as info:
        _membatch._raise_example("ModelTooLarge")
    assert "int8" in str(info.value)
    assert info.value.precision == "f32"


def test_python_bases_let_callers_catch_the_usual_way():
    assert issubclass(membatch.InvalidConfig, ValueError)
    assert issubclass(membatch.InvalidInput, TypeError)
    assert issubclass(membatch.ModelNotFound, FileNotFoundError)
    assert issubclass(membatch.TimedOut, TimeoutError)
    assert issubclass(membatch.ForkError, RuntimeError)


@pytest.mark.parametrize(
    "bad, says",
    [
        (None, "None"),
        (b"bytes", "decode"),
        (bytearray(b"x"), "decode"),
        (42, "int"),
        ([1, 2], "sentences[0] is a int"),
        (["ok", None], "sentences[1] is a NoneType"),
        (["ok", b"x"], "decode it first"),
        ("\ud800", "Unicode"),
        (["fine", "bad \udc00"], "sentences[1] is not valid Unicode"),
    ],
)
def test_bad_texts_raise_invalid_input(embedder, bad, says):
    with pytest.raises(membatch.InvalidInput, match=None) as info:
        embedder.encode(bad)
    assert says in str(info.value)


@pytest.mark.parametrize(
    "kwargs, says",
    [
        ({"memory_budget": "-5%"}, "memory_budget"),
        ({"memory_budget": "abc"}, "memory_budget"),
        ({"memory_budget": "0"}, "memory_budget"),
        ({"precision": "f16"}, "precision"),
        ({"threads": 0}, "threads"),
        ({"max_batch_size": -1}, "max_batch_size"),
        ({"normalize": "maybe"}, "normalize"),
        ({"dimensions": 10_000}, "dimensions"),
        ({"prompt_name": "nope"}, "prompt_name"),
        ({"no_such_setting": 1}, "unknown setting"),
        ({"memory_budget": [1]}, "memory_budget"),
    ],
)
def test_invalid_settings_raise_invalid_config(minilm_dir, kwargs, says):
    with pytest.raises(membatch.InvalidConfig) as info:
        membatch.Embedder(str(minilm_dir), **kwargs)
    assert says in str(info.value)


def test_per_call_options_are_checked(embedder):
    with pytest.raises(membatch.InvalidConfig, match="prompt"):
        embedder.encode(["x"], prompt_name="nope")
    with pytest.raises(membatch.InvalidConfig, match="dimensions"):
        embedder.encode(["x"], dimensions=1000)
    with pytest.raises(membatch.InvalidConfig, match="dimensions"):
        embedder.encode(["x"], dimensions=0)
    with pytest.raises(membatch.InvalidInput):
        embedder.encode(["x"], prompt_name=3)


def test_a_missing_model_directory(tmp_path):
    with pytest.raises(membatch.ModelNotFound) as info:
        membatch.Embedder(str(tmp_path / "nothing-here"))
    assert "nothing-here" in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(membatch.ModelNotFound) as info:
        membatch.Embedder(str(empty))
    assert info.value.path.name == "config.json"


def test_a_corrupt_model_directory(tmp_path, minilm_dir):
    model = tmp_path / "model"
    shutil.copytree(minilm_dir, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])
    with pytest.raises(membatch.ModelFileError) as info:
        membatch.Embedder(str(model))
    assert "model.safetensors" in str(info.value)
    (model / "config.json").write_text("{ not json")
    with pytest.raises(membatch.ModelFileError, match="JSON"):
        membatch.Embedder(str(model))


def test_a_hub_model_offline_is_a_hub_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(membatch.HubError) as info:
        membatch.Embedder("membatch-test/no-such-model")
    assert info.value.repo == "membatch-test/no-such-model"


def test_a_budget_too_small_for_the_model(minilm_dir):
    with pytest.raises(membatch.ModelTooLarge) as info:
        membatch.Embedder(str(minilm_dir), memory_budget="20MiB")
    assert info.value.needed > info.value.available
    assert "int8" in str(info.value)


def test_a_huge_string_is_embedded_not_a_crash(embedder):
    huge = "lorem ipsum dolor sit amet " * (100_000_000 // 27)
    v = embedder.encode([huge, "short"])
    assert v.shape == (2, 384)
    assert np.isfinite(v).all()
    assert embedder.token_counts([huge]) == [256]


def test_service_refusals_carry_retry_after(minilm_dir):
    service = membatch.Service(str(minilm_dir), max_queued_requests=1, max_inputs_per_request=4)
    with pytest.raises(membatch.RequestTooLarge) as info:
        service.encode(["a"] * 5)
    assert info.value.max == 4
    refusals = []
    errors = []
    go = threading.Barrier(8)

    def call():
        go.wait()
        try:
            service.encode(["some words to embed " * 20] * 4)
        except membatch.Overloaded as e:
            refusals.append(e)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert refusals, "8 callers at once against a queue of 1 request: some must be refused"
    assert all(0 < e.retry_after <= 60 and e.queued_requests >= 1 for e in refusals)
    service.shutdown()
    with pytest.raises(membatch.ServiceClosed):
        service.encode(["after shutdown"])


def test_a_wait_that_runs_out_raises_timed_out(minilm_dir):
    service = membatch.Service(str(minilm_dir))
    pending = service._submit(["a long text to embed " * 30] * 64)
    with pytest.raises(membatch.TimedOut) as info:
        pending.wait(0.0)
    assert info.value.after == 0.0
    assert pending.wait().shape == (64, 384)
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(membatch.InvalidConfig, match="timeout"):
            service.encode(["x"], timeout=bad)
        with pytest.raises(membatch.InvalidConfig, match="timeout"):
            service.shutdown(bad)


def test_a_callback_runs_whoever_polls_first(minilm_dir):
    import time

    service = membatch.Service(str(minilm_dir))
    pending = service._submit(["a text to embed " * 40] * 32)
    fired = []
    pending.add_done_callback(lambda: fired.append("first"))
    pending.add_done_callback(lambda: fired.append("second"))
    # Polls by others do not take the callbacks' place.
    while not pending.done():
        time.sleep(0.001)
    for _ in range(200):
        if len(fired) == 2:
            break
        time.sleep(0.01)
    assert sorted(fired) == ["first", "second"]
    assert pending.result().shape == (32, 384)
    with pytest.raises(membatch.Error, match="already taken"):
        pending.result()
    late = []
    pending.add_done_callback(lambda: late.append(1))
    assert late == [1]


def test_random_unicode_never_crashes(embedder):
    """Any valid str, whatever its code points (controls, combining marks,
    emoji, private use, unassigned), is embedded: finite vectors, no
    exception."""
    rng = random.Random(34)
    ranges = [(0, 0x7F), (0x80, 0x2FF), (0x300, 0x36F), (0x4E00, 0x9FFF), (0x1F300, 0x1FAFF),
              (0xE000, 0xF8FF), (0xFFF0, 0xFFFF), (0x10000, 0x10FFFF)]
    texts = []
    for _ in range(300):
        chars = []
        for _ in range(rng.randrange(0, 80)):
            lo, hi = rng.choice(ranges)
            c = rng.randrange(lo, hi + 1)
            chars.append(chr(c) if not 0xD800 <= c <= 0xDFFF else " ")
        texts.append("".join(chars))
    v = embedder.encode(texts)
    assert v.shape == (300, 384)
    assert np.isfinite(v).all()
    assert len(embedder.token_counts(texts)) == 300
