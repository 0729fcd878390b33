"""Runs sentence-transformers, ONNX Runtime (f32 and its dynamic int8, the
same model exported with torch) and membatch (f32 and int8) on the same
texts, with the same thread count, one after the other, and prints tokens/s,
texts/s, peak RSS, each row's min/mean cosine to sentence-transformers' f32
vectors, and the ratios; with ROUNDS > 1, ONNX Runtime f32 and membatch f32
again in alternating order and the median of the rounds' ratios. Peak RSS is sampled from /proc/<pid>/status every 5 ms for both
processes the same way (membatch's guards reset the kernel's own high-water
mark, so rusage cannot be used for it). Called by benches/compare.sh."""
import json
import os
import subprocess
import sys
import threading
import time


def run_sampled(cmd, env):
    """Runs cmd, returns (stdout, peak RSS in bytes, wall seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        path = f"/proc/{proc.pid}/status"
        while not done.is_set():
            try:
                with open(path) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            peak = max(peak, int(line.split()[1]) * 1024)
                            break
            except OSError:
                pass
            time.sleep(0.005)

    t = threading.Thread(target=sample)
    t.start()
    out, err = proc.communicate()
    done.set()
    t.join()
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({proc.returncode}):\n{err}")
    return out, peak, time.perf_counter() - start


def load_membatch_vectors(path, texts):
    import numpy as np

    v = np.fromfile(path, dtype="<f4")
    return v.reshape(texts, -1)


def cosines(a, b):
    """Min and mean cosine between matching rows of a and b."""
    import numpy as np

    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    c = (a * b).sum(axis=1)
    return float(c.min()), float(c.mean())


def main():
    import numpy as np

    bench_bin, python, model_dir, texts, threads, batch = sys.argv[1:7]
    rounds = int(sys.argv[7]) if len(sys.argv) > 7 else 1
    onnx_cache = os.environ.get("COMPARE_ONNX_CACHE", "target/compare-onnx")
    workdir = os.path.dirname(os.path.abspath(__file__))
    tmp = os.environ.get("COMPARE_TMP", "/tmp")
    corpus = os.path.join(tmp, f"membatch-compare-{texts}.txt")
    subprocess.run([bench_bin, "--texts", texts, "--dump-corpus", corpus], check=True)
    env = dict(os.environ, RAYON_NUM_THREADS=threads, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    ort_script = os.path.join(workdir, "ort_embed.py")
    # Export and quantise once (cached), outside every measured run.
    subprocess.run([python, ort_script, "prepare", model_dir, onnx_cache], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    rows = []  # (name, seconds, peak, wall, vectors)
    out = os.path.join(tmp, "membatch-compare-st.npy")
    st_out, st_peak, st_wall = run_sampled(
        [python, os.path.join(workdir, "st_embed.py"), model_dir, corpus, threads, batch, out], env
    )
    st = json.loads(st_out.strip().splitlines()[-1])
    rows.append((f"sentence-transformers f32 (torch {st['torch']}, batch {batch})", st["seconds"], st_peak,
                 st_wall, np.load(out)))

    def ort(variant):
        out = os.path.join(tmp, f"membatch-compare-ort-{variant}.npy")
        o, peak, wall = run_sampled(
            [python, ort_script, "run", model_dir, onnx_cache, variant, corpus, threads, batch, out], env
        )
        return json.loads(o.strip().splitlines()[-1]), peak, wall, out

    def membatch(precision):
        out = os.path.join(tmp, f"membatch-compare-{precision}.f32")
        o, peak, wall = run_sampled(
            [bench_bin, "--texts", texts, "--modes", "batched", "--json", "--precision", precision,
             "--dump-vectors", out], env
        )
        return json.loads(o.strip().splitlines()[-1]), peak, wall, out

    for variant, label in (("f32", "f32"), ("int8", "int8 dynamic, per tensor"),
                           ("int8-channel", "int8 dynamic, per channel")):
        r, peak, wall, out = ort(variant)
        rows.append((f"ONNX Runtime {r['onnxruntime']} {label} (batch {batch})", r["seconds"], peak, wall,
                     np.load(out)))
    runs = {}
    for precision in ("f32", "int8"):
        r, peak, wall, out = membatch(precision)
        runs[precision] = r
        rows.append((f"membatch {precision} (BatchEmbedder)", r["seconds"], peak, wall,
                     load_membatch_vectors(out, r["texts"])))
    # Round 1 is the table's own two rows; later rounds alternate which
    # of the two runs first, so a steady drift of the host favours neither.
    paired = [(rows[1][1], runs["f32"]["seconds"])]
    for i in range(1, rounds):
        order = ("membatch", "ort") if i % 2 else ("ort", "membatch")
        secs = {}
        for who in order:
            r = (membatch("f32") if who == "membatch" else ort("f32"))[0]
            secs[who] = r["seconds"]
        paired.append((secs["ort"], secs["membatch"]))
    mb = runs["f32"]
    assert st["texts"] == mb["texts"], (st, mb)
    tokens = mb["tokens"]  # same tokenizer, special tokens included
    reference = rows[0][4]

    print(f"corpus: mixed_corpus({texts}, 42): {mb['texts']} texts, {tokens} tokens; threads: {threads}; "
          f"cpu: {cpu_name()}; cores: {os.cpu_count()}")
    print()
    print("| implementation | tokens/s | texts/s | embed time | peak RSS (whole process) | wall (load included) "
          "| min / mean cosine to sentence-transformers f32 |")
    print("|---|---|---|---|---|---|---|")
    for name, secs, peak, wall, vectors in rows:
        lo, mean = cosines(vectors, reference)
        print(f"| {name} | {tokens / secs:,.0f} | {mb['texts'] / secs:.1f} | {secs:.1f} s | "
              f"{peak / 2**20:,.0f} MiB | {wall:.1f} s | {lo:.5f} / {mean:.5f} |")
    print()
    ort_f32 = rows[1][1]
    st_secs = rows[0][1]
    for name, secs, *_ in rows[-2:]:
        print(f"{name}: x{st_secs / secs:.2f} sentence-transformers, x{ort_f32 / secs:.2f} ONNX Runtime f32")
    if rounds > 1:
        ratios = sorted(o / m for o, m in paired)
        median = (ratios[(rounds - 1) // 2] + ratios[rounds // 2]) / 2
        print()
        print(f"membatch f32 against ONNX Runtime f32, {rounds} rounds (tokens/s):")
        for i, (o, m) in enumerate(paired, 1):
            print(f"  round {i}: ONNX Runtime {tokens / o:,.0f}, membatch {tokens / m:,.0f}, x{o / m:.2f}")
        print(f"  median x{median:.3f} (range x{ratios[0]:.2f}-x{ratios[-1]:.2f})")
    lo, mean = cosines(rows[-1][4], rows[-2][4])
    print(f"membatch int8 / membatch f32: tokens/s x{runs['f32']['seconds'] / runs['int8']['seconds']:.2f}, "
          f"cosine min {lo:.5f} mean {mean:.5f}")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
