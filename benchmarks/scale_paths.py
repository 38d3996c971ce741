"""Time and peak memory of the paths that see every row of a million-row data set, against a revision.

Four steps, each in its own fresh process, for this tree and for ``--against`` (a revision's ``src/`` from
``git archive``, as ``benchmarks/scale.py`` does), the order flipping every round:

- ``manifest``: ``read_manifest`` of an N-row CSV (path, subject_id, two labels; ids derived from the
  paths) and its splits drawn by subject (no split column: one sha256 per subject);
- ``resume``: what ``embed`` does before embedding anything on a rerun: read the manifest, the ids of the
  complete shards (90% of the rows, in parts of 1024), and find the pending rows;
- ``merge``: ``EmbeddingStore.merge`` of those parts (768-d float32 CLS, 3 KiB per row) into one file;
- ``prepare``: ``raddino prepare`` of tiny 16×16 PNGs (hard links of one file), fresh at the small sizes
  and, at N, resumed over a folder where every output exists (hard links again), which is the path that
  sees every entry without decoding any: a fresh prepare of a million images takes about 20 minutes per
  core here (1.15 ms per image, mostly the atomic, fsynced write).

Peak RSS is the process's ``VmHWM`` above the same revision's idle process (its imports). The earlier
revision's ``resume`` runs that revision's own two lines from ``embed`` (``done_ids`` and the list of
pending rows), since ``embed`` itself needs a model.

    python benchmarks/scale_paths.py --against REV --write     # N = 1M, prepare fresh at 10k and 40k
    python benchmarks/scale_paths.py --size 20000 --fresh 2000 --rounds 1   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import command_line, write_section
from benchmarks.scale import _revision, _status_kib

ROOT = Path(__file__).resolve().parent.parent
DIM = 768
PART_ROWS = 1024
DONE_FRACTION = 0.9
LINKS_PER_FILE = 30_000  # two uses (inputs, outputs) per seed file stay under ext4's 65,000


def _path(index: int) -> str:
    return f"d{index % 100:02d}/img{index:07d}.png"


def make_data(folder: Path, count: int, fresh: list[int]) -> dict[str, float]:
    """The CSVs, the parts of a 90%-done embeddings run, and prepare's inputs and finished outputs."""
    import torch

    from raddino.features.store import EmbeddingStore, ShardWriter
    from raddino.io.png import write_png

    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "manifest.csv", "w", encoding="utf-8") as handle:
        handle.write("path,subject_id,effusion,nodule\n")
        for start in range(0, count, 65536):
            handle.writelines(
                f"{_path(i)},s{i // 2:07d},{i % 2},{i % 3 == 0:d}\n"
                for i in range(start, min(count, start + 65536))
            )
    store = EmbeddingStore(folder / "emb.parquet")
    store.shards_dir.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(store, max_rows=PART_ROWS)
    rng = np.random.default_rng(0)
    done = int(count * DONE_FRACTION)
    for start in range(0, done, 8192):
        ids = [_path(i)[: -len(".png")] for i in range(start, min(done, start + 8192))]
        cls = torch.from_numpy(rng.normal(size=(len(ids), DIM)).astype(np.float32))
        writer.add(ids, [f"{row_id}.png" for row_id in ids], {"cls": cls})
    writer.flush()
    seeds = [folder / f"seed{number}.png" for number in range(count // LINKS_PER_FILE + 1)]
    for seed in seeds:  # a file takes at most 65,000 hard links (ext4)
        write_png(seed, np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16))
    for name, rows, under in [*((f"fresh{n}", n, "in") for n in fresh), ("done", count, "done/out/in")]:
        (folder / under).mkdir(parents=True, exist_ok=True)
        with open(folder / f"{name}.csv", "w", encoding="utf-8") as handle:
            handle.write("path,subject_id\n")
            handle.writelines(f"in/{_path(i)},s{i // 2:07d}\n" for i in range(rows))
        for part in range(100):
            (folder / under / f"d{part:02d}").mkdir(exist_ok=True)
        for i in range(rows if under != "in" else max(fresh)):
            target = folder / under / _path(i)
            if not target.exists():
                os.link(seeds[i // LINKS_PER_FILE], target)
    return {"seconds": time.perf_counter() - started}


def child(step: str, folder: Path, size: int) -> dict[str, Any]:
    """Run one step in this (fresh) process with whichever raddino is on the path; time and peak memory."""
    from raddino.data.prepare import prepare_images
    from raddino.data.splits import resolve_splits
    from raddino.features.store import EmbeddingStore
    from raddino.io.manifest import read_manifest

    started = time.perf_counter()
    result: dict[str, Any] = {}
    columnar = _has_columns()  # this tree's columnar manifest, or the earlier revision's rows
    if step == "manifest":
        manifest = read_manifest(folder / "manifest.csv")
        splits = resolve_splits(manifest) if columnar else resolve_splits(manifest.rows, manifest.columns)
        result["rows"], result["train"] = len(manifest), len(splits.train)
    elif step == "resume":
        manifest = read_manifest(folder / "manifest.csv")
        store = EmbeddingStore(folder / "emb.parquet")
        if columnar:
            from raddino.features.store import pending_rows

            pending = len(pending_rows(manifest.column_array("id"), store.done_id_array()))
        else:  # the earlier revision's lines in features/embed.py
            done = store.done_ids()
            pending = len([index for index, row in enumerate(manifest.rows) if row["id"] not in done])
        result["pending"] = pending
    elif step == "merge":
        result["rows"] = EmbeddingStore(folder / "emb.parquet").merge()
    elif step.startswith("prepare"):
        name = step.removeprefix("prepare-")
        out = folder / ("done/out" if name == "done" else f"out-{name}-{os.getpid()}")
        summary = prepare_images(folder / f"{name}.csv", out, size=None, workers=1, progress=False)
        result["written"], result["skipped"] = summary.written, summary.skipped
        if name != "done":
            shutil.rmtree(out)
    result["seconds"] = time.perf_counter() - started
    result["rss_peak_mib"] = _status_kib("VmHWM") / 1024
    return result


def _has_columns() -> bool:
    from raddino.io.manifest import Manifest

    return hasattr(Manifest, "column_array")


def _run_child(step: str, folder: Path, args: argparse.Namespace, source: Path | None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", step, "--data", str(folder), "--size", str(args.size)]
    command += ["--fresh", *map(str, args.fresh)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(source or ROOT / "src"), environment.get("PYTHONPATH", "")]
    )
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    if done.returncode != 0:
        raise RuntimeError(f"{step} at {folder}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Every step on both sides, alternating; the data made once by this tree."""
    earlier = work / "earlier"
    earlier.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", args.against, "src"], capture_output=True, check=True, cwd=ROOT
    )
    subprocess.run(["tar", "-x", "-C", str(earlier)], input=archive.stdout, check=True)
    folder = work / "data"
    made = _run_child("make", folder, args, None)
    print(f"data for {args.size:,} rows written in {made['seconds']:.0f} s", flush=True)
    steps = [
        "idle",
        "manifest",
        "resume",
        "merge",
        *(f"prepare-fresh{n}" for n in args.fresh),
        "prepare-done",
    ]
    results: dict[str, dict[str, list[dict[str, Any]]]] = {step: {"before": [], "now": []} for step in steps}
    for round_index in range(args.rounds):
        sides = [("before", earlier / "src"), ("now", None)]
        for side, source in sides if round_index % 2 == 0 else sides[::-1]:
            for step in steps:
                results[step][side].append(_run_child(step, folder, args, source))
                print(side, step, json.dumps(results[step][side][-1]), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return results


def table(results: dict[str, Any], size: int, fresh: list[int]) -> str:
    """The markdown table: median seconds and peak RSS above idle, before and now."""
    labels = {
        "manifest": f"manifest: read {size:,} rows + splits by subject",
        "resume": f"embed resume check: {size:,} rows, {DONE_FRACTION:.0%} done in parts of {PART_ROWS}",
        "merge": f"embed merge: {int(size * DONE_FRACTION):,} rows × 768-d CLS",
        **{f"prepare-fresh{n}": f"prepare, fresh: {n:,} tiny PNGs" for n in fresh},
        "prepare-done": f"prepare, resumed: {size:,} entries, every output there",
    }
    idle = {
        side: float(np.median([r["rss_peak_mib"] for r in results["idle"][side]]))
        for side in ("before", "now")
    }
    lines = [
        f"Idle process (the imports): {idle['before']:,.0f} MiB before, {idle['now']:,.0f} MiB now.",
        "",
        "| step | seconds before | seconds now | now ÷ before | ÷ per round | peak RSS above idle, before "
        "| now | now ÷ before |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for step, label in labels.items():
        seconds = {side: float(np.median([r["seconds"] for r in results[step][side]])) for side in idle}
        memory = {
            side: float(np.median([r["rss_peak_mib"] for r in results[step][side]])) - idle[side]
            for side in idle
        }
        lines.append(
            f"| {label} | {seconds['before']:.1f} | {seconds['now']:.1f} "
            f"| {seconds['now'] / seconds['before']:.2f} | {_round_ratios(results[step])} "
            f"| {memory['before']:,.0f} MiB | {memory['now']:,.0f} MiB "
            f"| {memory['now'] / max(memory['before'], 1e-9):.2f} |"
        )
    return "\n".join(lines)


def _round_ratios(sides: dict[str, list[dict[str, Any]]]) -> str:
    pairs = zip(sides["before"], sides["now"], strict=True)
    return ", ".join(f"{now['seconds'] / before['seconds']:.2f}" for before, now in pairs)


SECTION = """## A million rows: manifests, `embed` resume and merge, `prepare`

Each step in its own process, this tree against revision {against} (its `src/` from `git archive`), {rounds}
round(s) alternating the order, medians; one intra-op thread; other jobs share the two cores, so times are
noisy (memory is not). The docstring of `benchmarks/scale_paths.py` says what each step does. A fresh
`prepare` of a million images would take 20 minutes or more per core here (1.15 ms per tiny image on an idle
core, mostly the atomic, fsynced write), so it runs fresh at {fresh} entries and, at {size:,}, as a resumed
run over a folder where every output exists: the path that sees every entry without decoding one.

Peaks above idle include a part that does not grow with the rows: about 50 MiB once pyarrow first turns
Python values into Arrow ones (it imports pandas then), and a few times one row group while Parquet is
decoded and encoded. The earlier `merge` already read one part at a time; what grew with the rows was its
Python set of ids, now an Arrow array of them and one hash aggregation. Compare a size's row with the
check at a smaller size below for the part that grows. A fresh `prepare` runs the same per-image code on
both sides (read, resize, atomic write; the per-entry bookkeeping is under 0.3 ms of it, by cProfile), so
its ratios are the load's swings: compare the rounds.

{table}
"""


def render(run: dict[str, Any], heading: bool = True) -> str:
    """The section's text (or, without ``heading``, the table and its provenance line) from a run's JSON."""
    fresh = " and ".join(f"{n:,}" for n in run["fresh"])
    text = table(run["results"], run["size"], run["fresh"])
    if heading:
        text = SECTION.format(
            against=f"`{run['against']}`", rounds=run["rounds"], fresh=fresh, size=run["size"], table=text
        )
    return (
        text
        + f"\n\nWhole run: {run['minutes']:.1f} minutes at revision {run['revision']}; `{run['command']}`.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1_000_000, help="rows of the manifest and the resume")
    parser.add_argument("--fresh", type=int, nargs="+", default=[10_000, 40_000], help="fresh prepare sizes")
    parser.add_argument("--against", default="HEAD", help="the earlier revision (a commit)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds")
    parser.add_argument("--work", type=Path, default=None, help="folder for the data (default: a temporary)")
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        default=None,
        help="render saved runs instead (the first in full)",
    )
    parser.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "make":
        print(json.dumps(make_data(args.data, args.size, args.fresh)))
        return
    if args.child == "idle":
        from raddino.data.prepare import prepare_images  # noqa: F401  (the same imports as the steps)
        from raddino.features.store import EmbeddingStore  # noqa: F401

        print(json.dumps({"seconds": 0.0, "rss_peak_mib": _status_kib("VmHWM") / 1024}))
        return
    if args.child:
        print(json.dumps(child(args.child, args.data, args.size)))
        return
    runs = [json.loads(path.read_text(encoding="utf-8")) for path in args.from_json or []]
    if not runs:
        started = time.perf_counter()
        results = measure(args.work or Path(tempfile.mkdtemp(prefix="raddino-scale-paths-")), args)
        run = {
            "command": command_line(),
            "revision": _revision(),
            "against": args.against,
            "results": results,
        }
        run.update(size=args.size, fresh=args.fresh, rounds=args.rounds)
        run["minutes"] = (time.perf_counter() - started) / 60
        runs = [run]
    if args.json:
        args.json.write_text(json.dumps(runs[0], indent=2), encoding="utf-8")
    body = render(runs[0])
    for check in runs[1:]:  # smaller runs with more rounds, where a large run's single round is noisy
        body += f"\nCheck at {check['size']:,} rows, {check['rounds']} alternating rounds (medians):\n\n"
        body += render(check, heading=False)
    print(body)
    if args.write:
        write_section("scale_paths", body)


if __name__ == "__main__":
    main()
