"""Runs membatch and sentence-transformers on the same texts, with the same
thread count, one after the other, and prints tokens/s, texts/s, peak RSS and
the ratios. Peak RSS is sampled from /proc/<pid>/status every 5 ms for both
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


def main():
    bench_bin, python, model_dir, texts, threads, st_batch = sys.argv[1:7]
    workdir = os.path.dirname(os.path.abspath(__file__))
    corpus = os.path.join(os.environ.get("COMPARE_TMP", "/tmp"), f"membatch-compare-{texts}.txt")
    subprocess.run([bench_bin, "--texts", texts, "--dump-corpus", corpus], check=True)
    env = dict(os.environ, RAYON_NUM_THREADS=threads, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)

    runs = {}
    for precision in ("f32", "int8"):
        out, peak, wall = run_sampled(
            [bench_bin, "--texts", texts, "--modes", "batched", "--json", "--precision", precision], env
        )
        runs[precision] = (json.loads(out.strip().splitlines()[-1]), peak, wall)
    mb = runs["f32"][0]
    out, st_peak, st_wall = run_sampled(
        [python, os.path.join(workdir, "st_embed.py"), model_dir, corpus, threads, st_batch], env
    )
    st = json.loads(out.strip().splitlines()[-1])
    assert st["texts"] == mb["texts"], (st, mb)
    tokens = mb["tokens"]  # same tokenizer, special tokens included

    rows = [
        (f"membatch (BatchEmbedder, {p})", r["seconds"], peak, wall) for p, (r, peak, wall) in runs.items()
    ]
    rows.append(
        (f"sentence-transformers (torch {st['torch']}, batch {st['batch_size']})", st["seconds"], st_peak, st_wall)
    )
    print(f"corpus: mixed_corpus({texts}, 42): {mb['texts']} texts, {tokens} tokens; threads: {threads}; "
          f"cpu: {cpu_name()}; cores: {os.cpu_count()}")
    print()
    print("| implementation | tokens/s | texts/s | embed time | peak RSS (whole process) | wall (load included) |")
    print("|---|---|---|---|---|---|")
    for name, secs, peak, wall in rows:
        print(f"| {name} | {tokens / secs:,.0f} | {mb['texts'] / secs:.1f} | {secs:.1f} s | {peak / 2**20:,.0f} MiB | {wall:.1f} s |")
    print()
    for p, (r, peak, _) in runs.items():
        print(f"membatch {p} / sentence-transformers: tokens/s x{st['seconds'] / r['seconds']:.2f}, "
              f"peak RSS {100 * peak / st_peak:.0f}%")


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
