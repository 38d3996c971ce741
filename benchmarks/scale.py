"""Peak memory and time of ``probe`` and ``knn`` over many frozen feature vectors (no encoder needed).

For each size N, synthetic 768-d CLS and pooled-patch vectors (numpy, seeded; the first dimensions carry
five findings' labels, so the numbers mean something) are written as an embeddings file in the format
``raddino embed`` writes, with a labelled manifest (two images per subject). Then, each in its own fresh
process so one measurement cannot inflate the next:

- ``idle``: the imports alone (the constant every command pays);
- ``cache``: the first read of the embeddings, which writes the memory-mapped feature cache;
- ``knn``: ``raddino knn`` (feature ``cls``, k in 10/20/100/200), the cache already written;
- ``probe``: ``raddino probe`` (features ``cls`` and ``cls+patch_mean``, five learning rates, one seed;
  ``--epochs`` epochs instead of the paper's 100, since memory does not grow with epochs).

Splits are 70/15/15 by subject up to ``--queries-above`` images; above, exact kNN's time (queries × bank)
would be hours on a CPU, so the manifest's split column keeps ``--queries`` validation and as many test
images and puts every other image in the memory bank (the probe trains on them all).

Peak RSS is the process's ``VmHWM`` (``ru_maxrss`` would carry the parent's peak across ``exec``): it counts
the pages of the memory-mapped cache the command has touched, which the kernel may drop at any time; the
peak of private (anonymous) memory, sampled from ``/proc/self/status`` every 20 ms, is reported beside it.
Ratios are (peak − idle) over the raw float32 bytes of the vectors the command reads (knn: CLS, 3 KiB per
image; probe: CLS and pooled patch, 6 KiB), whatever the storage.

    python benchmarks/scale.py --write                          # 10k, 100k, 300k, 1M on CPU (about an hour)
    python benchmarks/scale.py --sizes 10000 --float16-at       # a quick look, nothing written
    python benchmarks/scale.py --device cuda --queries-above 1000000 --write   # where a GPU is at hand
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import command_line, write_section

DIM = 768
FINDINGS = ("effusion", "nodule", "cardiomegaly", "edema", "pneumothorax")
COLUMNS = {"idle": 0, "cache": 2, "knn": 1, "probe": 2}  # vector columns each step reads


def make_data(folder: Path, count: int, queries: int = 0, seed: int = 0) -> dict[str, float]:
    """Write ``count`` synthetic images' vectors and labels: ``emb.parquet`` and ``manifest.csv``.

    With ``queries``, a ``split`` column puts the last ``2 * queries`` images in val and test (whole
    subjects: ``queries`` is even) and the rest in train.
    """
    import torch

    from raddino.features.store import EmbeddingStore, ShardWriter

    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    store = EmbeddingStore(folder / "emb.parquet")
    store.shards_dir.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(store, max_rows=8192)
    chunk = 8192
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        rows = csv.writer(handle)
        rows.writerow(["path", "id", "subject_id", *FINDINGS, *(["split"] if queries else [])])
        for start in range(0, count, chunk):
            size = min(chunk, count - start)
            labels = (rng.random((size, len(FINDINGS))) < 0.3).astype(np.float32)  # (n, C)
            cls = rng.normal(size=(size, DIM)).astype(np.float32)
            cls[:, : len(FINDINGS)] += 1.5 * labels
            patch_mean = rng.normal(size=(size, DIM)).astype(np.float32)
            ids = [f"img{index:07d}" for index in range(start, start + size)]
            writer.add(
                ids,
                [f"{row_id}.png" for row_id in ids],
                {"cls": torch.from_numpy(cls), "patch_mean": torch.from_numpy(patch_mean)},
            )
            for offset, row_id in enumerate(ids):
                split = []
                if queries:
                    left = count - start - offset  # images from this one to the end
                    split = ["train" if left > 2 * queries else "val" if left > queries else "test"]
                subject = f"s{(start + offset) // 2:07d}"
                rows.writerow([f"{row_id}.png", row_id, subject, *labels[offset].astype(int), *split])
    writer.flush()
    store.merge()
    return {"seconds": time.perf_counter() - started}


def _status_kib(field: str) -> int:
    """One ``kB`` field of ``/proc/self/status`` (``VmHWM``, ``RssAnon``)."""
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


class AnonymousPeak:
    """The largest ``RssAnon`` of this process, sampled from ``/proc/self/status`` in a thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval,), daemon=True)
        self._thread.start()

    def _sample(self, interval: float) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, _status_kib("RssAnon"))
            self._stop.wait(interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_kib


def _feature_config(folder: Path, device: str, dtype: str) -> Any:
    from raddino.features.cache import FeatureConfig

    settings: dict[str, Any] = {"embeddings": str(folder / "emb.parquet"), "device": device}
    if dtype != "float32":
        settings["storage"] = dtype
    return FeatureConfig(**settings)


def child(step: str, folder: Path, args: argparse.Namespace, dtype: str) -> dict[str, Any]:
    """Run one step in this (fresh) process; returns its time and peak memory."""
    if step == "make":
        return make_data(folder, args.sizes[0], args.queries if args.sizes[0] > args.queries_above else 0)
    import torch

    from raddino.evaluate.knn import KnnConfig, run_knn
    from raddino.evaluate.probe import ProbeConfig, run_probe
    from raddino.evaluate.probe.heads import HeadTraining
    from raddino.features.cache import FeatureConfig, FeatureTable

    torch.set_num_threads(args.threads)
    sampler = AnonymousPeak()
    storage = {"storage": dtype} if dtype != "float32" else {}  # so the script also runs on older revisions
    features = FeatureConfig(embeddings=str(folder / "emb.parquet"), device=args.device, **storage)
    started = time.perf_counter()
    result: dict[str, Any] = {}
    if step == "cache":
        table = FeatureTable.load(folder / "emb.parquet", ["cls+patch_mean"], **storage)
        result["rows"] = len(table.ids)
    elif step == "knn":
        knn = run_knn(
            KnnConfig(
                input=str(folder / "manifest.csv"), out=str(folder / "knn"), features=features, figure=False
            )
        )
        result["macro_auprc"] = knn.summary["macro_auprc"].mean
        sizes = json.loads((folder / "knn" / "knn.json").read_text(encoding="utf-8"))["splits"]
        result["queries"], result["bank"] = sizes["val"] + sizes["test"], sizes["train"]
    elif step == "probe":
        probe = run_probe(
            ProbeConfig(
                input=str(folder / "manifest.csv"),
                out=str(folder / "probe"),
                features=features,
                training=HeadTraining(epochs=args.epochs),
                seeds=[0],
                progress=False,
                figure=False,
                overwrite=True,
            )
        )
        result["macro_auprc"] = probe.summary["macro_auprc"].mean
    result["seconds"] = time.perf_counter() - started
    result["anon_peak_mib"] = sampler.stop() / 1024
    result["rss_peak_mib"] = _status_kib("VmHWM") / 1024
    return result


def _run_child(
    step: str, folder: Path, args: argparse.Namespace, size: int, dtype: str, source: Path | None = None
) -> dict[str, Any]:
    """One step in a fresh process; ``source``: a ``src/`` folder to import raddino from instead."""
    command = [sys.executable, __file__, "--child", step, "--data", str(folder), "--dtype", dtype]
    command += ["--sizes", str(size), "--device", args.device, "--epochs", str(args.epochs)]
    command += ["--threads", str(args.threads), "--queries", str(args.queries)]
    command += ["--queries-above", str(args.queries_above)]
    environment = dict(os.environ)
    if source is not None:
        environment["PYTHONPATH"] = os.pathsep.join([str(source), environment.get("PYTHONPATH", "")])
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    if done.returncode != 0:
        raise RuntimeError(f"{step} at {folder}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (size, storage, step) in its own process; a size's data is removed once it is measured."""
    rows = []
    for count in args.sizes:
        folder = work / f"n{count}"
        made = _run_child("make", folder, args, count, "float32")
        print(f"{count}: data written in {made['seconds']:.0f} s", flush=True)
        idle = _run_child("idle", folder, args, count, "float32")
        for dtype in ["float32", *(["float16"] if count in args.float16_at else [])]:
            rows.append({"size": count, "step": "idle", "storage": dtype, **idle})
            for step in ["cache", *args.commands]:
                values = _run_child(step, folder, args, count, dtype)
                rows.append({"size": count, "step": step, "storage": dtype, **values})
                print(json.dumps(rows[-1]), flush=True)
        if not args.keep:
            shutil.rmtree(folder)
    return rows


def against(work: Path, args: argparse.Namespace) -> str:
    """Alternating runs of ``knn`` and ``probe`` at one size: the revision ``args.against`` and this tree.

    The earlier revision's ``src/`` comes from ``git archive``; each round runs both sides one after the
    other, the order flipping every round, so both meet the same load.
    """
    count, folder, earlier = args.against_size, work / f"ab{args.against_size}", work / "earlier"
    earlier.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", args.against, "src"],
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    subprocess.run(["tar", "-x", "-C", str(earlier)], input=archive.stdout, check=True)
    _run_child("make", folder, args, count, "float32")
    _run_child("cache", folder, args, count, "float32")  # this tree's copies exist before it is timed
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for round_index in range(args.rounds):
        sides = [("before", earlier / "src"), ("now", None)]
        for side, source in sides if round_index % 2 == 0 else sides[::-1]:
            for step in args.commands:
                results.setdefault((step, side), []).append(
                    _run_child(step, folder, args, count, "float32", source)
                )
    shutil.rmtree(folder, ignore_errors=True)
    lines = [
        f"Alternating runs at {count:,} vectors, {args.rounds} rounds (median), revision {args.against} "
        "against this tree:",
        "",
        "| step | seconds before | seconds now | now ÷ before | ÷ per round | peak RSS before | peak RSS now "
        "| macro AUPRC before / now |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for step in args.commands:
        before, now = results[step, "before"], results[step, "now"]
        median = {
            side: float(np.median([r["seconds"] for r in runs])) for side, runs in (("b", before), ("n", now))
        }
        ratios = [f"{n['seconds'] / b['seconds']:.2f}" for b, n in zip(before, now, strict=True)]
        lines.append(
            f"| {step} | {median['b']:.1f} | {median['n']:.1f} | {median['n'] / median['b']:.2f} "
            f"| {', '.join(ratios)} "
            f"| {np.median([r['rss_peak_mib'] for r in before]):,.0f} MiB "
            f"| {np.median([r['rss_peak_mib'] for r in now]):,.0f} MiB "
            f"| {before[0]['macro_auprc']:.6f} / {now[0]['macro_auprc']:.6f} |"
        )
    return "\n".join(lines)


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the measurements: peaks over the idle process, as ratios to the raw bytes."""
    idle = {(row["size"], row.get("storage", "float32")): row for row in rows if row["step"] == "idle"}
    lines = [
        "| step | storage | vectors | kNN bank / queries | raw bytes read | peak RSS − idle | ÷ raw "
        "| peak private − idle | ÷ raw | per vector | seconds | s per 100k |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        if row["step"] == "idle":
            continue
        count, storage = row["size"], row.get("storage", "float32")
        raw = count * DIM * 4 * COLUMNS[row["step"]] / 2**20
        rss = row["rss_peak_mib"] - idle[count, storage]["rss_peak_mib"]
        anon = row["anon_peak_mib"] - idle[count, storage]["anon_peak_mib"]
        split = f"{row['bank']:,} / {row['queries']:,}" if "bank" in row else ""
        lines.append(
            f"| {row['step']} | {storage} | {count:,} | {split} | {raw:,.0f} MiB | {rss:,.0f} MiB "
            f"| {rss / raw:.2f} | {anon:,.0f} MiB | {anon / raw:.2f} | {rss * 2**20 / count / 1024:.1f} KiB "
            f"| {row['seconds']:,.1f} | {row['seconds'] * 1e5 / count:,.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 300_000, 1_000_000])
    parser.add_argument("--commands", nargs="+", default=["knn", "probe"], choices=["knn", "probe"])
    parser.add_argument("--device", default="cpu", help="where kNN's similarities are computed")
    parser.add_argument(
        "--float16-at", type=int, nargs="*", default=[100_000], help="sizes also run in float16"
    )
    parser.add_argument("--queries-above", type=int, default=300_000, help="larger sizes keep few queries")
    parser.add_argument("--queries", type=int, default=10_000, help="val (and test) images above it")
    parser.add_argument("--epochs", type=int, default=1, help="probe epochs (memory does not depend on it)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", type=Path, default=None, help="folder for the data (default: a temporary)")
    parser.add_argument("--keep", action="store_true", help="keep the data of each size")
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    parser.add_argument("--from-json", type=Path, default=None, help="render an earlier run's JSON instead")
    parser.add_argument("--before", type=Path, default=None, help="JSON of an earlier revision's run")
    parser.add_argument("--against", default=None, help="also time knn and probe against this revision")
    parser.add_argument("--against-size", type=int, default=100_000, help="vectors of those runs")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds against the revision")
    parser.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data, args, args.dtype)))
        return
    if args.from_json:
        run = _read_run(args.from_json)
    else:
        work = args.work or Path(tempfile.mkdtemp(prefix="raddino-scale-"))
        rows = measure(work, args)
        run = {"command": command_line(), "load_average": os.getloadavg()[0], "rows": rows}
        run["revision"] = _revision()
    if args.against:  # kept with the run, so a later rendering shows it
        run["against"] = against(Path(tempfile.mkdtemp(prefix="raddino-scale-ab-")), args)
    if args.json:
        args.json.write_text(json.dumps(run, indent=2), encoding="utf-8")
    body = (
        f"Measured with `{run.get('command', 'python benchmarks/scale.py')}` at revision "
        f"{run.get('revision', '?')}; load average {run.get('load_average', float('nan')):.1f} on "
        f"{os.cpu_count()} cores when it ended (other work shares the machine: times are noisy, memory is "
        f"not).\n\n" + table(run["rows"])
    )
    if run.get("against"):
        body += "\n\n" + run["against"]
    if args.before:
        before = _read_run(args.before)
        body += f"\n\nBefore this change (revision {before['revision']}, same script):\n\n" + table(
            before["rows"]
        )
    print(body)
    if args.write:
        write_section("scale", SECTION.format(tables=body, queries=args.queries, above=args.queries_above))


def _read_run(path: Path) -> dict[str, Any]:
    """A run's JSON: ``{"rows": [...], "revision": ..., ...}`` (a bare list of rows is read too)."""
    loaded = json.loads(path.read_text(encoding="utf-8"))
    return {"rows": loaded} if isinstance(loaded, list) else loaded


def _revision() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent,
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "src", "benchmarks"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent,
    )
    return (done.stdout.strip() or "?") + (" + uncommitted changes" if dirty.stdout.strip() else "")


SECTION = """## Features at scale: `knn` and `probe` memory and time

Synthetic 768-d vectors in the embeddings format, each step in its own process (the docstring of
`benchmarks/scale.py` says how). *Raw bytes* are the float32 vectors the command reads (knn: CLS; probe:
CLS and pooled patch), whatever the storage; peaks are above the idle process (the imports, about the
constant every command pays). Peak RSS counts the memory-mapped cache's pages, which the kernel can drop;
*private* is the command's own memory. Target: peak ≤ 2× the raw bytes plus a constant.

Up to {above:,} images the splits are 70/15/15 by subject. Above, the manifest keeps {queries:,} validation
and {queries:,} test images and puts all others in the kNN bank (and the probe's training set): exact kNN
costs queries × bank similarities (300k queries against a 700k bank are 11 times the 300k row's), while
its memory is set by the bank. The probe runs one epoch (memory does not grow with epochs).

{tables}
"""


if __name__ == "__main__":
    main()
