"""Hot-path speed of the working tree against a baseline revision, both measured in the same run.

Checks out the baseline with ``git worktree`` in a temporary folder and copies the working tree's ``src/``
beside it (so edits made while this runs change nothing that is measured), prepares every workload's
inputs once, then runs each workload's command for the two revisions alternately, each run a fresh process
of this same Python with that revision's ``src/`` on PYTHONPATH, through that revision's command line.
After one warm-up run of each, ``--repeats`` rounds follow; the order inside a round flips every round.

Workloads: ``prepare`` (12 DICOMs), ``embed`` (200 PNGs, a test-sized encoder), ``probe-heads`` (the
probe's batched heads, timed around the call) and ``pretrain`` (the CPU demo config for 1 and
1 + ``--pretrain-iterations`` iterations: the difference of the two gives the cost of one iteration).

Per workload it reports each revision's median, the median of the per-round ratios current / baseline with
their min–max, and the noise: the ratios of each revision's run in one round to its run in the next (like
against like, as far apart in time as a pair). A ratio no further from 1 (on a log scale) than the largest
like-against-like ratio is "within noise". BENCHMARKS.md's section "revisions" records it with the load.

    python benchmarks/revisions.py --baseline 68aed2d
    python benchmarks/revisions.py --baseline 68aed2d --workloads prepare embed --repeats 7
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.embed import make_images
from benchmarks.prepare import cpu_ticks, make_dicoms
from benchmarks.report import write_section

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("prepare", "embed", "probe-heads", "pretrain")
VARIANTS = ("baseline", "current")
MARKS = ("bench-seconds=", "bench-cpu-seconds=")  # what a process may report of itself

PROBE_SNIPPET = """
import time, torch
try:
    from raddino.evaluate.probe import HeadSpec, HeadTraining, train_linear_heads
except ImportError:
    from raddino.evaluate.linear_heads import HeadSpec, HeadTraining, train_linear_heads
generator = torch.Generator().manual_seed(0)
features = {"cls": torch.randn(10_000, 768, generator=generator)}  # (N, D)
labels = (torch.rand(10_000, 14, generator=generator) < 0.3).float()  # (N, C)
specs = [HeadSpec("cls", 1e-5 * 2 ** step) for step in range(10)]
start, cpu = time.perf_counter(), time.process_time()
train_linear_heads(features, labels, specs, HeadTraining(epochs=10), seed=0, progress=False)
print(f"bench-seconds={time.perf_counter() - start}")
print(f"bench-cpu-seconds={time.process_time() - cpu}")
"""


@dataclass(frozen=True)
class Workload:
    """A named hot path: the words after ``python`` of each of its commands (``{out}``: a fresh folder)."""

    name: str
    description: str
    steps: tuple[tuple[str, str], ...]
    """(label, words) in run order."""
    marginal: int | None = None
    """When set, the last step does this many more iterations than the one before: report the difference
    per iteration too."""


@dataclass
class Result:
    """A measured workload: per variant, per repeat, per step seconds and CPU seconds; the machine's load."""

    seconds: dict[str, list[list[float]]] = field(default_factory=lambda: {name: [] for name in VARIANTS})
    cpu: dict[str, list[list[float]]] = field(default_factory=lambda: {name: [] for name in VARIANTS})
    loads: list[float] = field(default_factory=list)
    busy: float = 0.0


def build_workloads(inputs: Path, pretrain_iterations: int) -> dict[str, Workload]:
    """Every workload's commands over the inputs that :func:`prepare_inputs` wrote to ``inputs``."""

    def pretrain(iterations: int) -> tuple[str, str]:
        words = (  # the one checkpoint is the one every run writes at its end
            f"-m raddino pretrain --config {inputs}/demo_cpu.yaml --out {{out}}/run"
            f" --data {inputs}/phantoms/manifest.csv --set train.max_iterations={iterations}"
            " --set train.export_at_end=false --set train.checkpoint_period=1000000"
        )
        return f"{iterations} iteration{'s' * (iterations > 1)}, wall", words

    embed = (
        f"-m raddino embed {inputs}/png --model {inputs}/model --out {{out}}/emb.parquet"
        " --num-workers 0 --batch-size 16 --device cpu"
    )
    workloads = [
        Workload(
            "prepare",
            "`raddino prepare IN OUT --workers 1 --quiet`: 12 DICOMs 1500×1800, 16 bits (wall: start-up too)",
            (("wall", f"-m raddino prepare {inputs}/dicom {{out}} --workers 1 --quiet"),),
        ),
        Workload(
            "embed",
            "`raddino embed --num-workers 0 --batch-size 16`: 200 PNGs 128×153, test-sized ViT at 56 px"
            " (wall: start-up too)",
            (("wall", embed),),
        ),
        Workload(
            "probe-heads",
            "`train_linear_heads`: 10,000 × 768 random features, 14 labels, 10 heads, 10 epochs, batch 96"
            " (the call alone, timed in its process)",
            (("call", "-c {probe}"),),
        ),
        Workload(
            "pretrain",
            f"`raddino pretrain -c configs/demo_cpu.yaml`: 200 phantoms at 128 px, 1 and"
            f" {1 + pretrain_iterations} iterations, no export, one checkpoint at the end",
            (pretrain(1), pretrain(1 + pretrain_iterations)),
            marginal=pretrain_iterations,
        ),
    ]
    return {workload.name: workload for workload in workloads}


def prepare_inputs(inputs: Path, current: Path, names: list[str]) -> None:
    """Write the inputs the chosen workloads read, once, with the current tree's code."""
    inputs.mkdir()
    if "prepare" in names:
        make_dicoms(inputs / "dicom", 12, height=1800, width=1500)
    if "embed" in names:
        from raddino.data.preprocess import PreprocessConfig
        from raddino.models import Encoder

        make_images(inputs / "png", 200, 128)
        Encoder.from_preset("test", seed=0).save_pretrained(
            inputs / "model", preprocess=PreprocessConfig(shortest_edge=56, crop_size=(56, 56))
        )
    if "pretrain" in names:
        shutil.copy(ROOT / "configs" / "demo_cpu.yaml", inputs / "demo_cpu.yaml")
        words = f"-m raddino phantoms --out {inputs}/phantoms --n 200 --size 128 --workers 1"
        run_command(words, current, inputs, inputs / "phantoms.log")
    os.sync()  # the pages just written flushed now, not during a measured run


def run_command(words: str, source: Path, cwd: Path, log: Path, threads: int = 0) -> list[float | None]:
    """``python WORDS`` with ``source`` on PYTHONPATH; the [seconds, CPU seconds] it reports, if it does.

    ``threads`` > 0 caps each process's intra-op thread pool (OpenMP, MKL): on cores that other jobs take,
    spare pool threads spin, and the time then measures the contention more than the code.
    """
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PYTHONPATH=str(source), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TQDM_DISABLE="1")
    if threads > 0:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    argv = [sys.executable, *(PROBE_SNIPPET if word == "{probe}" else word for word in words.split())]
    with open(log, "w", encoding="utf-8") as handle:
        done = subprocess.run(argv, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False)
    text = log.read_text(encoding="utf-8", errors="replace")
    if done.returncode != 0:
        tail = "\n".join(text.splitlines()[-15:])
        raise SystemExit(f"{source}: python {words[:60]}... exited {done.returncode}; see {log}:\n{tail}")
    lines = text.splitlines()
    found = [[float(line[len(mark) :]) for line in lines if line.startswith(mark)] for mark in MARKS]
    return [values[-1] if values else None for values in found]


def run_once(workload: Workload, source: Path, scratch: Path, tag: str, threads: int) -> list[list[float]]:
    """Every step once, in fresh output folders: [seconds per step, CPU seconds per step].

    CPU seconds: user + system time of the step's process and of every process it waited for, unless the
    process reports its own (the probe: the call alone).
    """
    seconds, cpu = [], []
    for index, (_, words) in enumerate(workload.steps):
        out = scratch / "out" / f"{workload.name}-{tag}-{index}"
        out.mkdir(parents=True)
        before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        log = scratch / "logs" / f"{out.name}.log"
        wall, own_cpu = run_command(words.replace("{out}", str(out)), source, scratch, log, threads)
        seconds.append(wall if wall is not None else time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(own_cpu or after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        shutil.rmtree(out)
    return [seconds, cpu]


def measure(
    workload: Workload, sources: dict[str, Path], scratch: Path, repeats: int, threads: int
) -> Result:
    """A warm-up run of each variant, then ``repeats`` rounds of one run each (the order flips each round)."""
    for name, source in sources.items():
        run_once(workload, source, scratch, f"{name}-warmup", threads)
    result, (busy_before, total_before) = Result(loads=[os.getloadavg()[0]]), cpu_ticks()
    for round_index in range(repeats):
        for name in VARIANTS if round_index % 2 == 0 else VARIANTS[::-1]:
            seconds, cpu = run_once(workload, sources[name], scratch, f"{name}-{round_index}", threads)
            result.seconds[name].append(seconds)
            result.cpu[name].append(cpu)
            shown = ", ".join(f"{value:.2f} s" for value in seconds)
            print(f"  {workload.name} round {round_index + 1} {name}: {shown}", flush=True)
        result.loads.append(os.getloadavg()[0])
    busy_after, total_after = cpu_ticks()
    result.busy = (busy_after - busy_before) / max(1, total_after - total_before)
    return result


def compare(baseline: list[float], current: list[float]) -> dict[str, float]:
    """Medians, pair ratios and the like-against-like noise (largest |log ratio|) of two series.

    A series with a value at or below zero (a difference of times swamped by noise) has no ratio.
    """
    row = {"baseline": statistics.median(baseline), "current": statistics.median(current)}
    if min(baseline + current) <= 0:
        return row | dict.fromkeys(("ratio", "low", "high", "within"), math.nan) | {"noise": math.inf}
    ratios = [c / b for b, c in zip(baseline, current, strict=True)]
    like = [
        later / earlier for series in (baseline, current) for earlier, later in itertools.pairwise(series)
    ]
    noise, ratio = max(abs(math.log(value)) for value in like), statistics.median(ratios)
    within = float(abs(math.log(ratio)) <= noise)
    return row | {"ratio": ratio, "low": min(ratios), "high": max(ratios), "noise": noise, "within": within}


def table_rows(workload: Workload, result: Result) -> list[str]:
    """Markdown rows: each step's wall time, then CPU time (or both per iteration, with a marginal)."""

    def column(timings: dict[str, list[list[float]]], name: str, step: int | None) -> list[float]:
        if step is not None:  # one step's value per repeat
            return [repeat[step] for repeat in timings[name]]
        return [(repeat[-1] - repeat[-2]) / (workload.marginal or 1) for repeat in timings[name]]

    wanted: list[tuple[str, dict[str, list[list[float]]], int | None]]
    wanted = [(label, result.seconds, index) for index, (label, _) in enumerate(workload.steps)]
    if workload.marginal:
        per = f"per iteration, {{}} (difference of the last two / {workload.marginal})"
        wanted += [(per.format("wall"), result.seconds, None), (per.format("CPU"), result.cpu, None)]
    else:
        wanted.append(("CPU time", result.cpu, 0))
    rows = []
    for label, timings, step in wanted:
        row = compare(column(timings, "baseline", step), column(timings, "current", step))
        change = row["ratio"] - 1
        verdict = (
            "not measurable: a difference at or below zero"
            if math.isnan(row["within"])
            else "within noise"
            if row["within"]
            else f"{'slower' if change > 0 else 'faster'} by {abs(change):.0%}, beyond noise"
        )
        rows.append(
            f"| {workload.name}: {label} | {row['baseline']:.3f} | {row['current']:.3f}"
            f" | **{row['ratio']:.3f}** ({row['low']:.3f}–{row['high']:.3f})"
            f" | ±{math.expm1(row['noise']):.1%} | {verdict} |"
        )
    return rows


def git(*words: str) -> subprocess.CompletedProcess[str]:
    """``git WORDS`` in this repository, its output captured."""
    return subprocess.run(["git", *words], cwd=ROOT, capture_output=True, text=True, check=False)


def describe_current() -> str:
    """The working tree as measured: its commit and how many files under src/ differ from it (now)."""
    changed = len(git("status", "--short", "--", "src").stdout.splitlines())
    state = f"with {changed} uncommitted file(s) in src/" if changed else "clean"
    return f"the working tree at {git('rev-parse', '--short', 'HEAD').stdout.strip()}, {state}"


def write_report(args: argparse.Namespace, current: str, workloads: list[Workload], results: dict) -> str:
    """The BENCHMARKS.md section: what ran, one table row per measurement, how to read it, the load."""
    lines = [
        "| measured | baseline median (s) | current median (s) | current / baseline (pairs min–max)"
        " | noise | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    loads = []
    for workload in workloads:
        result = results[workload.name]
        if isinstance(result, str):
            loads.append(f"{workload.name}: not measured ({result})")
            continue
        lines.extend(table_rows(workload, result))
        loads.append(
            f"{workload.name}: load average {min(result.loads):.1f}–{max(result.loads):.1f},"
            f" machine CPU busy {result.busy:.0%}"
        )
    described = "\n".join(f"- {workload.description}" for workload in workloads)
    threads = f"{args.threads} intra-op thread(s) per process" if args.threads else "default thread pools"
    title = f"`{args.current}`" if args.current else "The working tree"
    return f"""## {title} against `{args.baseline}`

Baseline: `{args.baseline_commit}`; current: {current}. Each run is a fresh process of the same Python
with that revision's `src/` on PYTHONPATH (a working tree's copied when the script started) and
{threads}, on the same inputs, through that revision's command line; one warm-up run each, then
{args.repeats} rounds alternating baseline and current (the order flips every round).

{described}

{chr(10).join(lines)}

Ratio: the median of the per-round ratios current / baseline (above 1: the current tree is slower), with
their min–max. Noise: the largest change between one revision's runs in consecutive rounds (like against
like, as far apart in time as a pair); "within noise" means the ratio is no further from 1 than that, on a
log scale. CPU time is user + system time of every process of the run (the probe's: of the call alone);
with one thread per process it moves less than wall time when other jobs take the cores.

While measuring, on {os.cpu_count()} cores shared with other jobs: {"; ".join(loads)}.
"""


def add_worktree(revision: str, folder: Path, option: str) -> str:
    """A detached worktree of ``revision`` (given as ``--option``) in ``folder``; its full commit hash."""
    commit = git("rev-parse", "--verify", f"{revision}^{{commit}}")
    if commit.returncode != 0:
        raise SystemExit(f"--{option} {revision}: not a commit of {ROOT}")
    added = git("worktree", "add", "--detach", "--quiet", str(folder), commit.stdout.strip())
    if added.returncode != 0:
        raise SystemExit(f"git worktree add {folder}: {added.stderr.strip()}")
    return commit.stdout.strip()


def check_imports(sources: dict[str, Path], scratch: Path) -> None:
    """Each variant's process imports raddino from its own source folder, not from the installed one."""
    for name, source in sources.items():
        log = scratch / "logs" / f"import-{name}.log"
        run_command("-c print(__import__('raddino').__file__)", source, scratch, log)
        imported = Path(log.read_text(encoding="utf-8").strip()).resolve()
        if not imported.is_relative_to(source.resolve()):
            raise SystemExit(f"{name}: raddino imported from {imported}, not from {source}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", required=True, help="revision to compare with (commit, tag or branch)")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--current", help="a revision to measure instead of the working tree")
    parser.add_argument(
        "--repeats", type=int, default=5, help="measured rounds per workload, after a warm-up"
    )
    parser.add_argument("--pretrain-iterations", type=int, default=40, help="iterations beyond the first")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per process (0: default)")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error("--repeats must be at least 2 (the noise compares consecutive rounds)")
    names = [name for name in WORKLOADS if name in args.workloads]

    with tempfile.TemporaryDirectory(prefix="raddino-revisions-") as scratch_name:
        scratch = Path(scratch_name)
        (scratch / "logs").mkdir()
        worktrees: list[Path] = []
        try:
            sources = {name: scratch / name / "src" for name in VARIANTS}
            worktrees.append(scratch / "baseline")
            args.baseline_commit = add_worktree(args.baseline, worktrees[-1], "baseline")
            if args.current:
                worktrees.append(scratch / "current")
                current = f"`{add_worktree(args.current, worktrees[-1], 'current')}` ({args.current})"
            else:
                current = describe_current()
                ignore = shutil.ignore_patterns("__pycache__")
                shutil.copytree(ROOT / "src", sources["current"], ignore=ignore)
            check_imports(sources, scratch)
            print(f"preparing inputs for {', '.join(names)} ...", flush=True)
            prepare_inputs(scratch / "inputs", sources["current"], names)
            workloads = [
                build_workloads(scratch / "inputs", args.pretrain_iterations)[name] for name in names
            ]
            results: dict[str, Result | str] = {}
            for workload in workloads:
                print(f"{workload.name}: warm-up, then {args.repeats} rounds", flush=True)
                try:
                    results[workload.name] = measure(workload, sources, scratch, args.repeats, args.threads)
                except SystemExit as failure:  # a command that failed: recorded, the others still measured
                    print(failure, file=sys.stderr)
                    results[workload.name] = str(failure).splitlines()[0]
        finally:
            for folder in worktrees:
                git("worktree", "remove", "--force", str(folder))
    body = write_report(args, current, workloads, results)
    print(body)
    if not args.no_write:
        write_section("revisions", body)


if __name__ == "__main__":
    main()
