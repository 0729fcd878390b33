"""Shared fixtures: the repository's reference files and model fixtures.

The real model (all-MiniLM-L6-v2) must have been fetched
(scripts/fetch-model.sh; scripts/python-test.sh does it): a test that needs
it fails, never skips, when it is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "models"


def model_home() -> Path:
    home = os.environ.get("MEMBATCH_HOME")
    if home:
        return Path(home)
    cache = os.environ.get("XDG_CACHE_HOME")
    return (Path(cache) if cache else Path.home() / ".cache") / "membatch"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    path = model_home() / "models" / "sentence-transformers--all-MiniLM-L6-v2"
    assert (path / "config.json").is_file(), (
        f"all-MiniLM-L6-v2 is not at {path}: run scripts/fetch-model.sh "
        "(scripts/python-test.sh does)"
    )
    return path


@pytest.fixture(scope="session")
def golden() -> dict:
    """sentence-transformers' vectors for all-MiniLM-L6-v2 (tests/data)."""
    return json.loads((ROOT / "tests" / "data" / "all-MiniLM-L6-v2.json").read_text())


@pytest.fixture(scope="session")
def embedder(minilm_dir):
    import membatch

    return membatch.Embedder(str(minilm_dir))


@pytest.fixture(scope="session")
def reranker_dir() -> Path:
    return FIXTURES / "tiny-bert-reranker"


@pytest.fixture(scope="session")
def prompted_dir() -> Path:
    """A tiny XLM-R model with query/passage prompts and references."""
    return FIXTURES / "tiny-xlm-roberta"


def run_python(code: str, timeout: float = 120, env: dict | None = None, **kwargs):
    """Runs `code` in a new interpreter of this venv; returns the
    CompletedProcess (stdout and stderr as text)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        **kwargs,
    )
