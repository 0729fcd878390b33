"""The places Python services break: fork, Ctrl-C, a real memory limit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_python


def test_fork_after_load_raises_in_the_child_and_a_new_model_works(minilm_dir):
    r = run_python(
        f"""
        import os, membatch
        m = membatch.Embedder({str(minilm_dir)!r})
        s = membatch.Service({str(minilm_dir)!r})
        m.encode(["parent uses the pool first"])
        s.encode(["and the service's worker"])
        pid = os.fork()
        if pid == 0:
            code = 0
            for obj, name in ((m, "Embedder"), (s, "Service")):
                try:
                    obj.encode(["x"])
                    print("child:", name, "ran")
                    code = 3
                except membatch.ForkError as e:
                    print("child:", name, "ForkError:", e)
            fresh = membatch.Embedder({str(minilm_dir)!r})
            print("child: fresh", fresh.encode(["y"]).shape)
            fresh_service = membatch.Service({str(minilm_dir)!r})
            print("child: fresh service", fresh_service.encode(["z"]).shape)
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        print("parent: child exit", os.waitstatus_to_exitcode(status))
        print("parent still works", m.encode(["p"]).shape, s.encode(["q"]).shape)
        """,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "child: Embedder ForkError" in out and "child: Service ForkError" in out, out
    assert "process" in out and "post_fork" in out
    assert "child: fresh (1, 384)" in out and "child: fresh service (1, 384)" in out, out
    assert "parent: child exit 0" in out, out
    assert "parent still works (1, 384) (1, 384)" in out, out


def test_multiprocessing_fork_pool_workers_get_a_clear_error(minilm_dir):
    r = run_python(
        f"""
        import multiprocessing as mp, membatch
        m = membatch.Embedder({str(minilm_dir)!r})
        m.encode(["warm"])
        def work(text):
            try:
                return m.encode([text]).shape
            except membatch.ForkError:
                return "ForkError"
        if __name__ == "__main__":
            with mp.get_context("fork").Pool(2) as pool:
                print(pool.map(work, ["a", "b", "c"]))
        """,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "['ForkError', 'ForkError', 'ForkError']" in r.stdout


def test_ctrl_c_stops_between_batches(minilm_dir):
    code = f"""
        import membatch, sys, time
        m = membatch.Embedder({str(minilm_dir)!r}, max_batch_size=8)
        texts = [("word " * 200) + str(i) for i in range(50_000)]
        print("ready", flush=True)
        t = time.time()
        try:
            m.encode(texts)
            print("finished")
        except KeyboardInterrupt:
            print("interrupted", round(time.time() - t, 2), flush=True)
        """
    p = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout.readline().strip() == "ready"
    time.sleep(2.0)
    sent = time.time()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert out.startswith("interrupted"), out + err
    # One batch of 8 long texts takes well under a second.
    assert time.time() - sent < 10


def _cgroup_v1_memory() -> Path | None:
    root = Path("/sys/fs/cgroup/memory")
    return root if (root / "memory.limit_in_bytes").exists() else None


def _cgroup_v2() -> Path | None:
    root = Path("/sys/fs/cgroup")
    return root if (root / "cgroup.controllers").exists() else None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a memory cgroup (CI runs as root)")
def test_a_process_in_a_real_300_mib_cgroup_completes(minilm_dir, golden):
    """A child cgroup with a 300 MiB limit: membatch reads the limit, and
    embeds 2,000 texts with sentence-transformers' vectors."""
    v1, v2 = _cgroup_v1_memory(), _cgroup_v2()
    assert v1 or v2, "no memory cgroup hierarchy found"
    group = (v1 or v2) / f"membatch-pytest-{os.getpid()}"
    group.mkdir()
    try:
        if v1:
            (group / "memory.limit_in_bytes").write_text(str(300 << 20))
        else:
            (group / "memory.max").write_text(str(300 << 20))
            (group / "memory.swap.max").write_text("0")
        code = f"""
            import json, numpy as np, membatch
            r = membatch.memory_report()
            assert r["cgroup_limit_bytes"] == {300 << 20}, r
            g = json.load(open({str(ROOT / "tests" / "data" / "all-MiniLM-L6-v2.json")!r}))
            texts = (g["texts"] * 60)[:2000]
            m = membatch.Embedder({str(minilm_dir)!r})
            v = m.encode(texts)
            want = np.asarray(g["embeddings"], dtype=np.float32)
            diff = max(float(np.abs(v[i] - want[i % len(want)]).max()) for i in range(len(texts)))
            print("done", v.shape, diff, membatch.memory_report()["peak_rss_bytes"])
            """
        p = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: (group / "cgroup.procs").write_text(str(os.getpid())),
        )
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"exit {p.returncode}: {err}"
        words = out.split()
        assert words[0] == "done" and "(2000, 384)" in out, out
        assert float(words[3]) <= 1e-5, out
        assert int(words[4]) < 300 << 20
    finally:
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
