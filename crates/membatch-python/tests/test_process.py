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
        import os, sys, membatch
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
            print("child: fresh service", fresh_service.encode(["z"]).shape, flush=True)
            # A normal exit: the parent's objects are dropped in the child
            # (left alone: their threads are the parent's).
            sys.exit(code)
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
        import membatch, signal, sys, time
        # Python's own Ctrl-C handler, whatever this process inherited (a
        # background job of a script starts with SIGINT ignored).
        signal.signal(signal.SIGINT, signal.default_int_handler)
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
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"no exit 60 s after Ctrl-C; stdout {out!r}, stderr {err!r}")
    assert p.returncode == 0, err
    assert out.startswith("interrupted"), out + err
    # One batch of 8 long texts takes well under a second.
    assert time.time() - sent < 10


def _memory_cgroup(limit: int) -> tuple[int, Path]:
    """A new memory cgroup (v1 or v2, swap off) with `limit` bytes."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            version, parent = 1, Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            break
    else:
        version, parent = 2, Path("/sys/fs/cgroup")
        try:
            (parent / "cgroup.subtree_control").write_text("+memory")
        except OSError:
            pass
    group = parent / f"membatch-pytest-{os.getpid()}-{time.monotonic_ns()}"
    group.mkdir()
    names = ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes") if version == 1 else (
        "memory.max", "memory.swap.max")
    (group / names[0]).write_text(str(limit))
    try:
        (group / names[1]).write_text(str(limit) if version == 1 else "0")
    except OSError:
        pass  # no swap accounting: nothing to switch off
    return version, group


def _oom_kills(version: int, group: Path) -> int:
    name = "memory.oom_control" if version == 1 else "memory.events"
    for line in (group / name).read_text().splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    return 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a memory cgroup (CI runs as root)")
def test_a_process_in_a_real_300_mib_cgroup_completes(minilm_dir, golden):
    """A child cgroup with a 300 MiB limit: membatch reads the limit, and
    embeds 2,000 texts with sentence-transformers' vectors, no OOM kill."""
    version, group = _memory_cgroup(300 << 20)
    try:
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
            print("done", v.shape, diff)
            """
        # A shell moves itself into the cgroup, then becomes Python.
        script = f'echo $$ > "{group / "cgroup.procs"}" && exec "$@"'
        p = subprocess.run(
            ["sh", "-c", script, "sh", sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True, text=True, timeout=300,
        )
        assert p.returncode == 0, f"exit {p.returncode}: {p.stderr}"
        words = p.stdout.split()
        assert words[0] == "done" and "(2000, 384)" in p.stdout, p.stdout
        assert float(words[3]) <= 1e-5, p.stdout
        assert _oom_kills(version, group) == 0
    finally:
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
