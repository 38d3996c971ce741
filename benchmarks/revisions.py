"""Hot-path speed of the working tree against a baseline revision, both measured in the same run.

Checks out the baseline with ``git worktree`` in a temporary folder and copies the working tree's ``src/``
beside it (so edits made by others while this runs change nothing that is measured), prepares every
workload's inputs once, then runs each workload's command for the two revisions alternately, each run in a
fresh process with ``PYTHONPATH`` set to that revision's ``src/`` and this same Python. After one warm-up run
of each, ``--repeats`` rounds follow; the order inside a round flips every round, so neither revision always
runs second. Workloads, each through the command line of the revision it runs:

``prepare`` (12 DICOMs), ``embed`` (200 PNGs, test-sized encoder), ``probe-heads`` (the probe's batched
heads, timed around the call) and ``pretrain`` (the CPU demo config for 1 and 1 + ``--pretrain-iterations``
iterations: the difference of the two wall times gives the time per iteration); see ``build_workloads``.

For each workload it reports the median time of each revision, the median of the per-round ratios
current / baseline with their min–max, and the noise: like-against-like ratios (each revision's run in a
round against its run in the next round, the same distance apart as a pair). A ratio whose distance from 1
(on a log scale) is no larger than the largest like-against-like distance is "within noise". The section
"revisions" of BENCHMARKS.md records it with the load average and the machine's CPU busy share.

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
SECONDS_MARK = "bench-seconds="

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
start = time.perf_counter()
train_linear_heads(features, labels, specs, HeadTraining(epochs=10), seed=0, progress=False)
print(f"bench-seconds={time.perf_counter() - start}")
"""


@dataclass(frozen=True)
class Variant:
    """One revision under test: a name and the folder put on PYTHONPATH."""

    name: str
    source: Path


@dataclass(frozen=True)
class Step:
    """One command of a run: its words, where ``{out}`` stands for a fresh output folder."""

    label: str
    words: str


@dataclass(frozen=True)
class Workload:
    """A named hot path: its commands in run order, and what its time means."""

    name: str
    description: str
    steps: tuple[Step, ...]
    marginal: int | None = None
    """When set, the second step does this many more iterations than the first: also report their
    difference per iteration."""


@dataclass
class Timings:
    """Seconds per step for each repeat of one variant (wall or in-process), and child CPU seconds."""

    seconds: list[list[float]] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def build_workloads(inputs: Path, pretrain_iterations: int) -> dict[str, Workload]:
    """The commands of every workload over the inputs prepared in ``inputs`` (``-m raddino`` words)."""
    config, phantoms = inputs / "demo_cpu.yaml", inputs / "phantoms" / "manifest.csv"
    embed = (
        f"-m raddino embed {inputs}/png --model {inputs}/model --out {{out}}/emb.parquet"
        " --num-workers 0 --batch-size 16 --device cpu"
    )

    def pretrain(iterations: int) -> Step:
        # one checkpoint, written at the end of every run
        words = (
            f"-m raddino pretrain --config {config} --out {{out}}/run --data {phantoms}"
            f" --set train.max_iterations={iterations} --set train.export_at_end=false"
            " --set train.checkpoint_period=1000000"
        )
        return Step(f"{iterations} iteration{'s' * (iterations > 1)} (wall)", words)

    return {
        "prepare": Workload(
            "prepare",
            "`raddino prepare IN OUT --workers 1 --quiet`: 12 DICOMs 1500×1800, 16 bits"
            " (wall, start-up included)",
            (Step("wall", f"-m raddino prepare {inputs}/dicom {{out}} --workers 1 --quiet"),),
        ),
        "embed": Workload(
            "embed",
            "`raddino embed --num-workers 0 --batch-size 16`: 200 PNGs 128×153, test-sized ViT at 56 px"
            " (wall, start-up included)",
            (Step("wall", embed),),
        ),
        "probe-heads": Workload(
            "probe-heads",
            "`train_linear_heads`: 10,000 × 768 random features, 14 labels, 10 heads, 10 epochs, batch 96"
            " (the call alone, timed in its process)",
            (Step("call", "-c {probe}"),),
        ),
        "pretrain": Workload(
            "pretrain",
            f"`raddino pretrain -c configs/demo_cpu.yaml`: 200 phantoms at 128 px, 1 and"
            f" {1 + pretrain_iterations} iterations, no export, one checkpoint at the end",
            (pretrain(1), pretrain(1 + pretrain_iterations)),
            marginal=pretrain_iterations,
        ),
    }


def command(step: Step, out: Path) -> list[str]:
    """This interpreter and the step's words, with the output folder (and the probe's code) filled in."""
    words = [
        {"{probe}": PROBE_SNIPPET}.get(word, word.replace("{out}", str(out))) for word in step.words.split()
    ]
    return [sys.executable, *words]


def prepare_inputs(inputs: Path, current: Variant, names: list[str]) -> None:
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
        words = f"-m raddino phantoms --out {inputs}/phantoms --n 200 --size 128 --workers 1".split()
        run_command([sys.executable, *words], current, inputs, inputs / "phantoms.log")
    os.sync()  # written pages flushed now, not during a measured run


def run_command(argv: list[str], variant: Variant, cwd: Path, log: Path) -> float | None:
    """Run one command with ``variant`` on PYTHONPATH; the seconds it reports itself, if it does."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PYTHONPATH=str(variant.source), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TQDM_DISABLE="1")
    with open(log, "w", encoding="utf-8") as handle:
        done = subprocess.run(argv, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False)
    text = log.read_text(encoding="utf-8", errors="replace")
    if done.returncode != 0:
        tail = "\n".join(text.splitlines()[-15:])
        raise SystemExit(
            f"{variant.name}: {' '.join(argv[1:4])} ... exited {done.returncode}; see {log}:\n{tail}"
        )
    reported = [line for line in text.splitlines() if line.startswith(SECONDS_MARK)]
    return float(reported[-1][len(SECONDS_MARK) :]) if reported else None


def run_once(workload: Workload, variant: Variant, scratch: Path, tag: str) -> tuple[list[float], float]:
    """Every step of ``workload`` once, in fresh output folders: (seconds per step, CPU seconds)."""
    seconds, before = [], resource.getrusage(resource.RUSAGE_CHILDREN)
    for index, step in enumerate(workload.steps):
        out = scratch / "out" / f"{workload.name}-{variant.name}-{tag}-{index}"
        out.mkdir(parents=True)
        log = scratch / "logs" / f"{out.name}.log"
        start = time.perf_counter()
        reported = run_command(command(step, out), variant, scratch, log)
        seconds.append(reported if reported is not None else time.perf_counter() - start)
        shutil.rmtree(out)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


@dataclass
class Result:
    """A measured workload: each variant's timings, 1-minute load averages, the machine's busy share."""

    timings: dict[str, Timings]
    loads: list[float]
    busy: float


def measure(workload: Workload, variants: list[Variant], scratch: Path, repeats: int) -> Result:
    """Warm-up then ``repeats`` alternating rounds (the order flips every round)."""
    for variant in variants:
        run_once(workload, variant, scratch, "warmup")
    result = Result({variant.name: Timings() for variant in variants}, [os.getloadavg()[0]], 0.0)
    busy_before, total_before = cpu_ticks()
    for round_index in range(repeats):
        for variant in variants if round_index % 2 == 0 else variants[::-1]:
            seconds, cpu = run_once(workload, variant, scratch, str(round_index))
            result.timings[variant.name].seconds.append(seconds)
            result.timings[variant.name].cpu.append(cpu)
            shown = ", ".join(f"{value:.2f} s" for value in seconds)
            print(f"  {workload.name} round {round_index + 1} {variant.name}: {shown}", flush=True)
        result.loads.append(os.getloadavg()[0])
    busy_after, total_after = cpu_ticks()
    result.busy = (busy_after - busy_before) / max(1, total_after - total_before)
    return result


def compare(baseline: list[float], current: list[float]) -> dict[str, float]:
    """Medians, pair ratios and the like-against-like noise (largest |log ratio|) of two series.

    A series with a value at or below zero (a difference of wall times swamped by noise) has no ratio.
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
    """One Markdown row per step, per iteration (when the workload has a marginal) and for CPU time."""
    base, current = result.timings["baseline"], result.timings["current"]
    series = [
        (
            f"{workload.name}: {step.label}",
            [s[index] for s in base.seconds],
            [s[index] for s in current.seconds],
        )
        for index, step in enumerate(workload.steps)
    ]
    if workload.marginal:
        extra = workload.marginal
        label = f"{workload.name}: per iteration (difference of the two walls / {extra})"
        baseline_rate = [(s[-1] - s[-2]) / extra for s in base.seconds]
        series.append((label, baseline_rate, [(s[-1] - s[-2]) / extra for s in current.seconds]))
    series.append((f"{workload.name}: CPU time of the run's processes", base.cpu, current.cpu))
    rows = []
    for label, baseline_seconds, current_seconds in series:
        row = compare(baseline_seconds, current_seconds)
        change = row["ratio"] - 1
        verdict = (
            "not measurable: a difference at or below zero"
            if math.isnan(row["within"])
            else "within noise"
            if row["within"]
            else f"{'slower' if change > 0 else 'faster'} by {abs(change):.0%}, beyond noise"
        )
        rows.append(
            f"| {label} | {row['baseline']:.3f} | {row['current']:.3f} | **{row['ratio']:.3f}** "
            f"({row['low']:.3f}–{row['high']:.3f}) | ±{math.expm1(row['noise']):.1%} | {verdict} |"
        )
    return rows


def git(*words: str) -> subprocess.CompletedProcess[str]:
    """``git WORDS`` in this repository, its output captured."""
    return subprocess.run(["git", *words], cwd=ROOT, capture_output=True, text=True, check=False)


def describe_current() -> str:
    """The working tree as measured: its commit and how many files under src/ differ from it."""
    changed = len(git("status", "--short", "--", "src").stdout.splitlines())
    state = f"with {changed} uncommitted file(s) in src/" if changed else "clean"
    return f"working tree at {git('rev-parse', '--short', 'HEAD').stdout.strip()}, {state}"


def write_report(args: argparse.Namespace, current: str, workloads: list[Workload], results: dict) -> str:
    """The BENCHMARKS.md section: one table row per measurement, then how to read it and the load."""
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
    return f"""## The working tree against {args.baseline}

Baseline: `{args.baseline_commit}`; current: {current}. Each run is a fresh process of the same Python
with that revision's `src/` on PYTHONPATH (the working tree's copied when the script started), on the same
inputs, through that revision's command line; one warm-up run each, then {args.repeats} rounds alternating
baseline and current (the order flips every round).

{described}

{chr(10).join(lines)}

Ratio: the median of the per-round ratios current / baseline (above 1: the current tree is slower), with
their min–max. Noise: the largest change between one revision's runs in consecutive rounds (like against
like, as far apart in time as a pair); "within noise" means the ratio is no further from 1 than that, on a
log scale. CPU time counts every process a run waited for (user + system), so it moves less than wall time
when other jobs take the cores.

While measuring, on {os.cpu_count()} cores shared with other jobs: {"; ".join(loads)}.
"""


def add_baseline(revision: str, scratch: Path) -> tuple[Path, str]:
    """A detached worktree of ``revision`` under ``scratch``, and its full commit hash."""
    commit = git("rev-parse", "--verify", f"{revision}^{{commit}}")
    if commit.returncode != 0:
        raise SystemExit(f"--baseline {revision}: not a commit of {ROOT}")
    folder = scratch / "baseline"
    added = git("worktree", "add", "--detach", "--quiet", str(folder), commit.stdout.strip())
    if added.returncode != 0:
        raise SystemExit(f"git worktree add {folder}: {added.stderr.strip()}")
    return folder, commit.stdout.strip()


def check_imports(variants: list[Variant], scratch: Path) -> None:
    """Each variant's process imports raddino from its own source folder (not the installed one)."""
    for variant in variants:
        log = scratch / "logs" / f"import-{variant.name}.log"
        run_command([sys.executable, "-c", "import raddino; print(raddino.__file__)"], variant, scratch, log)
        imported = Path(log.read_text(encoding="utf-8").strip()).resolve()
        if not imported.is_relative_to(variant.source.resolve()):
            raise SystemExit(f"{variant.name}: raddino imported from {imported}, not from {variant.source}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", required=True, help="revision to compare with (commit, tag or branch)")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument(
        "--repeats", type=int, default=5, help="measured rounds per workload (after a warm-up)"
    )
    parser.add_argument("--pretrain-iterations", type=int, default=40, help="iterations beyond the first")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error("--repeats must be at least 2 (the noise compares consecutive rounds)")
    names = [name for name in WORKLOADS if name in args.workloads]

    with tempfile.TemporaryDirectory(prefix="raddino-revisions-") as scratch_name:
        scratch = Path(scratch_name)
        (scratch / "logs").mkdir()
        worktree = None
        try:
            worktree, args.baseline_commit = add_baseline(args.baseline, scratch)
            current_label = describe_current()
            shutil.copytree(
                ROOT / "src", scratch / "current" / "src", ignore=shutil.ignore_patterns("__pycache__")
            )
            variants = [
                Variant("baseline", worktree / "src"),
                Variant("current", scratch / "current" / "src"),
            ]
            check_imports(variants, scratch)
            inputs = scratch / "inputs"
            print(f"preparing inputs for {', '.join(names)} ...", flush=True)
            prepare_inputs(inputs, variants[1], names)
            workloads = [build_workloads(inputs, args.pretrain_iterations)[name] for name in names]
            results: dict[str, Result | str] = {}
            for workload in workloads:
                print(f"{workload.name}: warm-up, then {args.repeats} rounds", flush=True)
                try:
                    results[workload.name] = measure(workload, variants, scratch, args.repeats)
                except SystemExit as failure:  # a command that failed: record it, measure the others
                    print(failure, file=sys.stderr)
                    results[workload.name] = str(failure).splitlines()[0]
        finally:
            if worktree is not None:
                git("worktree", "remove", "--force", str(worktree))
    body = write_report(args, current_label, workloads, results)
    print(body)
    if not args.no_write:
        write_section("revisions", body)


if __name__ == "__main__":
    main()
