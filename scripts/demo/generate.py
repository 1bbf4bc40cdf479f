"""Generates the demo ensemble: a synthetic catalogue, 50 models trained on it, the manifest.

    scripts/demo/generate [--force] [--jobs N]

Phases (each timed, the times kept in generated/STAMP.json):
  1. data      the taxonomy and the train / calib / valid / test splits (catalogue.py)
  2. models    every entry of models.MODELS, each in a fresh process (fasttext_job.py,
               onnx_job.py), N at a time (default 2: one per core, each single-threaded, which
               also keeps every output byte-identical from run to run)
  3. manifest  models/demo/manifest.toml (manifest.py) and generated/models.json
  4. stamp     generated/STAMP.json: the hash of every file and of this generator

Skipped in a second when the stamp matches (see stamp.py); anything missing or corrupt, or a
changed generator, regenerates everything.
"""

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import common
import stamp
from models import MODELS

LOGS = os.path.join(common.REPO, ".runtime", "demo-logs")


def phase_data():
    import catalogue

    tax, splits = catalogue.build()
    os.makedirs(common.DATA, exist_ok=True)
    for name in catalogue.SPLITS:
        catalogue.write_jsonl(common.split_path(name), splits[name])
    with open(common.LABELS, "w", encoding="utf-8") as f:
        f.write("".join(l.path + "\n" for l in tax.leaves))
    with open(common.RENAMES, "w", encoding="utf-8") as f:
        f.write("".join(f"{l.slug}\t{l.path}\n" for l in tax.leaves))
    return {name: len(rows) for name, rows in splits.items()}, len(tax.leaves)


def run_job(spec):
    """One model in a fresh process; its output goes to .runtime/demo-logs/<name>.log.
    Returns the CPU seconds it used."""
    script = "fasttext_job.py" if spec["kind"] == "fasttext" else "onnx_job.py"
    env = dict(os.environ, MALLOC_PERTURB_="255", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    log = os.path.join(LOGS, spec["name"] + ".log")
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen([sys.executable, os.path.join(common.HERE, script),
                                 json.dumps(spec)], stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=common.HERE)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        with open(log, encoding="utf-8") as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"model {spec['name']} failed (exit {proc.returncode}); log {log}:\n"
                           f"{tail}")
    return usage.ru_utime + usage.ru_stime


def phase_models(jobs):
    from tqdm import tqdm

    os.makedirs(LOGS, exist_ok=True)
    os.makedirs(common.REPORTS, exist_ok=True)
    # Longest first, so that the two workers finish together.
    order = sorted(MODELS, key=lambda m: -m["cost"])
    running, lock = set(), threading.Lock()
    bar = tqdm(total=sum(m["cost"] for m in order), desc=f"models 0/{len(order)}",
               dynamic_ncols=True,
               bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]{postfix}")
    done, cpu = 0, {}

    def work(spec):
        with lock:
            running.add(spec["name"])
        try:
            return run_job(spec)
        finally:
            with lock:
                running.discard(spec["name"])

    with cf.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(work, spec): spec for spec in order}
        try:
            for fut in cf.as_completed(futures):
                spec = futures[fut]
                cpu[spec["name"]] = fut.result()
                done += 1
                bar.set_description_str(f"models {done}/{len(order)}", refresh=False)
                with lock:
                    now = ", ".join(sorted(running))
                bar.set_postfix_str(f"training {now}" if now else "", refresh=False)
                bar.update(spec["cost"])
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        finally:
            bar.close()
    return cpu


def read_reports():
    out = {}
    for spec in MODELS:
        with open(os.path.join(common.REPORTS, spec["name"] + ".json"), encoding="utf-8") as f:
            out[spec["name"]] = json.load(f)
    return out


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--force", action="store_true", help="regenerate even when up to date")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2,
                    help="models trained at once (default: one per core)")
    args = ap.parse_args()

    if not args.force:
        why = stamp.check()
        if why is None:
            print("demo ensemble up to date")
            return
        print(f"generating the demo ensemble: {why}")

    times = {}
    t0 = time.monotonic()
    shutil.rmtree(common.GEN, ignore_errors=True)
    print("data: taxonomy and products ...", flush=True)
    sizes, n_labels = phase_data()
    times["data"] = time.monotonic() - t0
    print(f"data: {n_labels} leaf labels; " + ", ".join(f"{k} {v}" for k, v in sizes.items())
          + f" items ({times['data']:.1f}s)", flush=True)

    t = time.monotonic()
    cpu = phase_models(args.jobs)
    times["models"] = time.monotonic() - t

    t = time.monotonic()
    reports = read_reports()
    import manifest

    manifest.write(reports, n_labels)
    common.write_json(os.path.join(common.GEN, "models.json"), reports)
    times["manifest"] = time.monotonic() - t

    t = time.monotonic()
    by_kind = {}
    for spec in MODELS:
        k = by_kind.setdefault(spec["kind"], [0, 0, 0.0])
        k[0] += 1
        k[1] += reports[spec["name"]]["bytes"]
        k[2] += cpu[spec["name"]]
    summary = {"labels": n_labels, "items": sizes,
               "cpu_seconds": {k: round(v, 1) for k, v in sorted(cpu.items())},
               "models": {k: {"count": v[0], "bytes": v[1], "cpu_seconds": round(v[2], 1)}
                          for k, v in by_kind.items()}}
    times["stamp"] = time.monotonic() - t  # the hashing itself is timed below
    doc = stamp.write({"summary": summary, "seconds": {k: round(v, 1) for k, v in times.items()}})
    times["stamp"] = time.monotonic() - t
    total_bytes = sum(os.path.getsize(os.path.join(common.GEN, p)) for p in doc["files"])

    print(f"done in {time.monotonic() - t0:.0f}s: "
          + ", ".join(f"{k} {v:.1f}s" for k, v in times.items()))
    for kind, (count, size, seconds) in sorted(by_kind.items()):
        print(f"  {count} {kind} models, {human(size)}, {seconds:.0f} CPU-seconds")
    print(f"  models: {sum(cpu.values()):.0f} CPU-seconds on {args.jobs} workers in "
          f"{times['models']:.0f}s (an idle machine: about {sum(cpu.values()) / args.jobs:.0f}s)")
    print(f"  {n_labels} labels; generated/ holds {len(doc['files'])} files, {human(total_bytes)}")
    print(f"  wrote {os.path.relpath(common.MANIFEST, common.REPO)}")


if __name__ == "__main__":
    main()
