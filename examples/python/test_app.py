"""The FastAPI example against its HTTP contract, with the real model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

import membatch
from examples.python import app as example

ROOT = Path(__file__).resolve().parents[2]


def golden() -> dict:
    return json.loads((ROOT / "tests" / "data" / "all-MiniLM-L6-v2.json").read_text())


def test_embed_health_memory():
    g = golden()
    with TestClient(example.app) as client:
        health = client.get("/health").json()
        assert health == {"status": "ok", "model": "unloaded"}
        r = client.post("/embed", json={"texts": g["texts"][:5]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["dimension"] == 384
        got = np.asarray(body["embeddings"], dtype=np.float32)
        assert np.abs(got - np.asarray(g["embeddings"][:5], dtype=np.float32)).max() <= 1e-5
        assert client.get("/health").json()["model"] == "loaded"
        memory = client.get("/memory").json()
        assert memory["budget_bytes"] > 0 and memory["level"] == "normal"
        cut = client.post("/embed", json={"texts": ["x"], "dimensions": 64}).json()
        assert cut["dimension"] == 64


def test_bad_requests_get_the_reason():
    with TestClient(example.app) as client:
        r = client.post("/embed", json={"texts": ["x"], "prompt_name": "nope"})
        assert r.status_code == 422
        assert r.json()["error"] == "InvalidConfig"
        assert client.post("/embed", json={"texts": []}).status_code == 422
        assert client.post("/embed", json={"texts": [1]}).status_code == 422


def test_refusals_are_503_with_retry_after(monkeypatch):
    monkeypatch.setenv("MEMBATCH_MAX_INPUTS_PER_REQUEST", "2")
    with TestClient(example.app) as client:
        r = client.post("/embed", json={"texts": ["a", "b", "c"]})
        assert r.status_code == 422 and r.json()["error"] == "RequestTooLarge"

    @example.app.get("/overloaded-for-test")
    async def overloaded():
        membatch._membatch._raise_example("Overloaded")

    with TestClient(example.app) as client:
        r = client.get("/overloaded-for-test")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "2"
