#!/usr/bin/env python3
"""The smallest memory limit each surface works in, per model and precision.

Root only: for each (model, precision, surface) it bisects the limit of a
fresh memory cgroup (v1 or v2, swap off) between LOW and HIGH MiB, to
STEP MiB. A limit passes when the job completes and the cgroup counts no
OOM kill; below the floor membatch refuses with a typed error (the
`refusal` column shows the last one seen, `oom` counts kills: always 0).

Surfaces:
  library  `membatch embed` (BatchEmbedder::load): 64 texts of the
           model's full length to an .npy file, exit 0.
  server   `membatch-server`: starts and loads the model, answers one
           request of 32 full-length texts, unloads (POST /memory/unload),
           answers another: 200 both times.

    sudo benches/floors.py                       # builds release binaries
    sudo benches/floors.py --models all-MiniLM-L6-v2 --precisions int8

Output: one line per combination, and a Markdown table at the end
(docs/memory.md "Floors").
"""
import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
MIB = 1 << 20
TEXT = "memory limits count every page the process touches, so batches must fit " * 40


def own_cgroup():
    """(version, directory to make children in)."""
    for line in open("/proc/self/cgroup"):
        _, controllers, path = line.rstrip("\n").split(":", 2)
        if "memory" in controllers.split(","):
            return 1, pathlib.Path("/sys/fs/cgroup/memory") / path.lstrip("/")
    # v2: a sibling tree at the mount root, memory controller enabled.
    root = pathlib.Path("/sys/fs/cgroup")
    try:
        (root / "cgroup.subtree_control").write_text("+memory")
    except OSError:
        pass
    return 2, root


class Cgroup:
    def __init__(self, limit_mib):
        version, parent = own_cgroup()
        self.version = version
        self.dir = parent / f"membatch-floor-{os.getpid()}-{time.monotonic_ns()}"
        self.dir.mkdir()
        limit = str(limit_mib * MIB)
        if version == 1:
            (self.dir / "memory.limit_in_bytes").write_text(limit)
            try:
                (self.dir / "memory.memsw.limit_in_bytes").write_text(limit)
            except OSError:
                pass
        else:
            (self.dir / "memory.max").write_text(limit)
            try:
                (self.dir / "memory.swap.max").write_text("0")
            except OSError:
                pass

    def spawn(self, argv, env, **kw):
        """Runs argv inside the cgroup: a shell moves itself in, then execs."""
        procs = self.dir / "cgroup.procs"
        script = f'echo $$ > "{procs}" && exec "$@"'
        return subprocess.Popen(["sh", "-c", script, "sh", *argv], env=env, **kw)

    def oom_kills(self):
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        for line in (self.dir / name).read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def remove(self):
        for _ in range(50):
            try:
                self.dir.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def model_dir(name):
    home = os.environ.get("MEMBATCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "membatch")
    return pathlib.Path(home) / "models" / f"sentence-transformers--{name}"


def env_for(model, precision):
    env = dict(os.environ)
    env.update(MEMBATCH_MODEL=str(model_dir(model)), MEMBATCH_PRECISION=precision,
               MEMBATCH_THREADS="2", RUST_LOG="warn")
    return env


def last_line(text):
    lines = [l for l in text.splitlines() if l.strip()]
    return lines[-1][:160] if lines else ""


def library(bins, cg, model, precision, work):
    src = work / "texts.txt"
    if not src.exists():
        src.write_text("".join(f"{i} {TEXT}\n" for i in range(64)))
    out = work / "vectors.npy"
    p = cg.spawn([str(bins / "membatch"), "embed", "--input", str(src), "--output", str(out)],
                 env_for(model, precision), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                 text=True)
    _, err = p.communicate(timeout=1800)
    return p.returncode == 0, "" if p.returncode == 0 else last_line(err) or f"exit {p.returncode}"


def server(bins, cg, model, precision, work):
    env = env_for(model, precision)
    env.update(MEMBATCH_HOST="127.0.0.1", MEMBATCH_PORT="0")
    p = cg.spawn([str(bins / "membatch-server")], env, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True)
    try:
        base = None
        line = p.stdout.readline()
        if line.startswith("membatch-server listening on "):
            base = line.split()[-1]
        if not base:
            p.wait(timeout=60)
            return False, last_line(p.stderr.read()) or f"exit {p.returncode}"

        def call(path, body=None):
            data = None if body is None else json.dumps(body).encode()
            req = urllib.request.Request(base + path, data=data,
                                         headers={"content-type": "application/json"},
                                         method="POST" if body is not None else "GET")
            try:
                with urllib.request.urlopen(req, timeout=600) as r:
                    return r.status, json.loads(r.read() or b"{}")
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read() or b"{}")
            except (urllib.error.URLError, ConnectionError) as e:
                return 0, {"error": {"message": f"no answer: {e}"}}

        body = {"input": [f"{i} {TEXT}" for i in range(32)], "model": model}
        for step in ("first request", "unload", "request after the unload"):
            if step == "unload":
                status, reply = call("/memory/unload", {})
            else:
                status, reply = call("/v1/embeddings", body)
            if status != 200:
                err = reply.get("error", {})
                message = err.get("message") if isinstance(err, dict) else str(err)
                return False, f"{step}: {status} {message}"[:160]
        return True, ""
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


SURFACES = {"library": library, "server": server}


def trial(bins, surface, model, precision, mib, work):
    cg = Cgroup(mib)
    try:
        ok, why = SURFACES[surface](bins, cg, model, precision, work)
        return ok, why, cg.oom_kills()
    finally:
        cg.remove()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["all-MiniLM-L6-v2", "all-mpnet-base-v2"])
    ap.add_argument("--precisions", nargs="+", default=["f32", "int8"])
    ap.add_argument("--surfaces", nargs="+", default=list(SURFACES))
    ap.add_argument("--low", type=int, default=32, help="MiB, assumed to fail")
    ap.add_argument("--high", type=int, default=1024, help="MiB, checked to pass")
    ap.add_argument("--step", type=int, default=4, help="MiB")
    ap.add_argument("--bin-dir", default=str(ROOT / "target/release"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("floors.py: needs root (it makes memory cgroups)")
    bins = pathlib.Path(args.bin_dir)
    if args.bin_dir == str(ROOT / "target/release"):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "membatch-cli",
                        "-p", "membatch-server"], cwd=ROOT, check=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        print(f"{'model':<20} {'precision':<9} {'surface':<8} {'floor':>8} {'oom':>4}  "
              "refusal just below", flush=True)
        for model in args.models:
            for precision in args.precisions:
                for surface in args.surfaces:
                    lo, hi = args.low, args.high
                    ok, why, ooms = trial(bins, surface, model, precision, hi, work)
                    total_ooms = ooms
                    if not ok:
                        print(f"{model:<20} {precision:<9} {surface:<8} {'>' + str(hi):>8} "
                              f"{ooms:>4}  {why}", flush=True)
                        rows.append((model, precision, surface, None, why))
                        continue
                    refusal = ""
                    while hi - lo > args.step:
                        mid = (lo + hi) // 2
                        ok, why, ooms = trial(bins, surface, model, precision, mid, work)
                        total_ooms += ooms
                        if ok:
                            hi = mid
                        else:
                            lo, refusal = mid, why
                    print(f"{model:<20} {precision:<9} {surface:<8} {str(hi) + ' MiB':>8} "
                          f"{total_ooms:>4}  {refusal}", flush=True)
                    rows.append((model, precision, surface, hi, refusal))
    print("\n| model | precision | " + " | ".join(args.surfaces) + " |")
    print("|---|---|" + "---|" * len(args.surfaces))
    for model in args.models:
        for precision in args.precisions:
            cells = []
            for surface in args.surfaces:
                floor = next((r[3] for r in rows if r[:3] == (model, precision, surface)), None)
                cells.append(f"{floor} MiB" if floor else "over the high bound")
            print(f"| {model} | {precision} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
