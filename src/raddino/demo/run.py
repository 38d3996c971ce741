"""The demo's steps: the built-in end-to-end job behind ``raddino demo`` / ``make demo``.

Steps (each a library call; a finished step is recorded in ``OUT/demo_state.json`` and skipped when the
demo is re-run, so an interrupted demo resumes):

1. ``phantoms``: synthetic chest X-rays with findings, metadata, masks and reports (``generate_phantoms``);
2. ``pretrain``: a small ViT/14 with the full recipe (DINO + iBOT + KoLeo, EMA teacher, multi-crop) on
   them, from random init (``pretrain``), then its teacher exported (``export_run``);
3. ``random``: the same architecture at the same random init, saved the same way (the paper's baseline);
   with ``ablation`` (the default) also a run with iBOT off (``ibot.loss_weight: 0``, the paper's ablation);
4. per encoder: linear probing of the findings, kNN, metadata prediction, a linear segmentation head,
   and a tiny report generator (a 2-layer language model on the encoder's patch tokens);
5. ``compare`` (the paper's table layout), attention maps, correspondences and a PCA map of the
   pre-trained encoder, then the page ``report.html`` / ``report.md`` (:mod:`raddino.demo.page`).

With ``seeds > 1`` steps 2–4 (without the ablation and the report generator) run again for each further
pre-training seed ``seed + k`` under ``OUT/seeds/seedS/``, on the same phantoms and evaluation splits; each
seed's random-init encoder is that seed's starting point. The tables and figures show the first seed; the
margins table says, per metric, whether the margin holds over the seeds (:mod:`raddino.demo.robust`).

``OUT/demo.json`` holds every step's wall time and, per table column, the pre-trained encoder's margin
over random init: its mean over the seeds, each seed's value, the spread and the verdict.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from raddino.demo.plan import DemoPlan, full_plan
from raddino.demo.robust import SeedMargin, seed_margins
from raddino.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)


@dataclass
class DemoResult:
    """What the demo did: output folder, steps run now or skipped, numbers and margins."""

    out: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    margins: dict[str, dict[str, float]] = field(default_factory=dict)
    """task → column → pre-trained minus random-init mean (averaged over the pre-training seeds)."""
    seed_margins: dict[str, dict[str, SeedMargin]] = field(default_factory=dict)
    """task → column → the margin over the pre-training seeds, with its spread and verdict."""
    seeds: tuple[int, ...] = ()
    """The pre-training seeds."""

    @property
    def page(self) -> Path:
        """The demo's page, ``report.html``."""
        return self.out / "report.html"


class _Steps:
    """Runs named steps once: ``OUT/demo_state.json`` records finished ones with their wall time."""

    def __init__(self, out: Path, total: int) -> None:
        self.path = out / "demo_state.json"
        self.state: dict[str, Any] = (
            json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}
        )
        self.total, self.index = total, 0
        self.result = DemoResult(out=out)

    def __call__(self, name: str, action: Callable[[], Any]) -> None:
        self.index += 1
        if name in self.state:
            logger.info("[%d/%d] %s: done before, skipped", self.index, self.total, name)
            self.result.skipped.append(name)
            self.result.seconds[name] = self.state[name]["seconds"]
            return
        logger.info("[%d/%d] %s", self.index, self.total, name)
        started = time.perf_counter()
        action()
        seconds = time.perf_counter() - started
        self.state[name] = {"seconds": round(seconds, 2)}
        atomic_write_text(self.path, json.dumps(self.state, indent=2) + "\n")
        self.result.ran.append(name)
        self.result.seconds[name] = round(seconds, 2)


def _pretrain_step(plan: DemoPlan, manifest: Path, run: Path, model: Path, seed: int, ibot: bool) -> None:
    from raddino.config import load_config
    from raddino.pretrain.config import PretrainConfig
    from raddino.pretrain.export import export_run
    from raddino.pretrain.train import pretrain

    values = {
        **plan.pretrain,
        "train.dataset_path": str(manifest),
        "train.split": "train",  # validation and test phantoms stay unseen, as in the paper
        "train.seed": seed,
        "train.export_at_end": False,
    }
    if not ibot:
        values["ibot.loss_weight"] = 0.0
    config = load_config(PretrainConfig, values=values)
    pretrain(config, run, resume=True, progress=True)
    export_run(run, model, which="teacher", overwrite=True)


def _random_step(plan: DemoPlan, manifest: Path, model: Path, seed: int) -> None:
    """The pre-trained encoder's starting point (same architecture, same seed), saved like an export."""
    from raddino.config import load_config
    from raddino.data.preprocess import PreprocessConfig
    from raddino.pretrain.config import PretrainConfig
    from raddino.pretrain.meta_arch import build_encoder

    values = {**plan.pretrain, "train.dataset_path": str(manifest), "train.seed": seed}
    config = load_config(PretrainConfig, values=values)
    size = config.crops.global_crops_size
    build_encoder(config).save_pretrained(
        model,
        preprocess=PreprocessConfig(
            image_mean=(config.crops.mean,) * 3,
            image_std=(config.crops.std,) * 3,
            crop_size=(size, size),
            shortest_edge=size,
        ),
    )


def _train_reports(manifest: Path) -> list[str]:
    with open(manifest, newline="", encoding="utf-8") as handle:
        return [row["report"] for row in csv.DictReader(handle) if row.get("split") == "train"]


def _evaluations(plan: DemoPlan, manifest: Path, model: Path, out: Path, cache: Path, lm: Path) -> dict:
    """One encoder's evaluation steps (name → action), results under ``out``."""
    from raddino.evaluate.knn import KnnConfig, run_knn
    from raddino.evaluate.metadata import MetadataConfig, run_metadata
    from raddino.evaluate.probe import ProbeConfig, run_probe
    from raddino.evaluate.probe.heads import HeadTraining
    from raddino.evaluate.segmentation import SegmentConfig, run_segment
    from raddino.evaluate.segmentation.train import SegTraining
    from raddino.features.cache import FeatureConfig
    from raddino.reportgen import (
        ReportGenerateConfig,
        ReportTrainConfig,
        StudySelection,
        generate_reports,
        train_report_model,
    )

    features = FeatureConfig(model=str(model), cache_dir=str(cache), num_workers=0, device="cpu")
    inputs = str(manifest)

    def probe() -> None:
        run_probe(
            ProbeConfig(
                input=inputs,
                out=str(out / "probe"),
                features=features,
                seeds=list(plan.probe_seeds),
                lrs=[1e-4, 1e-3],
                training=HeadTraining(epochs=plan.probe_epochs),
                progress=True,
                overwrite=True,
            )
        )

    def reports() -> None:
        report_features = FeatureConfig(model=str(model), cache_dir=str(cache), num_workers=0, device="cpu")
        train_report_model(
            ReportTrainConfig(
                input=inputs,
                language_model=str(lm),
                out=str(out / "report_model"),
                features=report_features,
                learning_rate=3e-3,  # an LM trained from scratch needs more than LLaVA's 2e-5
                epochs=plan.report_epochs,
                batch_size=16,
                micro_batch_size=16,
                device="cpu",
                checkpoint_every=10_000,
                overwrite=True,
            )
        )
        generate_reports(
            ReportGenerateConfig(
                model=str(out / "report_model"),
                input=inputs,
                out=str(out / "reports.csv"),
                features=report_features,
                studies=StudySelection(split="test"),
                max_new_tokens=80,
                batch_size=32,
                device="cpu",
                overwrite=True,
            )
        )

    return {
        "probe": probe,
        "knn": lambda: run_knn(
            KnnConfig(input=inputs, out=str(out / "knn"), features=features, ks=list(plan.knn_ks))
        ),
        "metadata": lambda: run_metadata(
            MetadataConfig(
                input=inputs, out=str(out / "metadata"), features=features, folds=plan.metadata_folds
            )
        ),
        "segment": lambda: run_segment(
            SegmentConfig(
                input=inputs,
                model=str(model),
                out=str(out / "segment"),
                structures=["right_lung", "left_lung", "heart"],
                heads=["linear"],
                training=SegTraining(epochs=plan.segment_epochs, channels=plan.segment_channels),
                device="cpu",
                progress=True,
            )
        ),
        "reports": reports,
    }


# The columns of the page's tables: the paper's summary metrics, then per-finding AUPRC as Table 2.
FINDINGS = ("cardiomegaly", "pleural_effusion", "lung_opacity", "nodule", "pneumothorax", "fibrosis")
TABLE_COLUMNS = (
    "macro_auprc",
    "macro_auroc",
    "precision_at_k",
    *(f"auprc/{finding}" for finding in FINDINGS),
    *(f"accuracy/{target}" for target in ("sex", "age", "weight", "bmi")),
    "dice/linear",
    *(f"dice/linear/{s}" for s in ("right_lung", "left_lung", "heart")),
)


_SEED_TASKS = ("probe", "knn", "metadata", "segment")


def _seed_folders(out: Path, seed: int) -> dict[str, Path]:
    """A further pre-training seed's evaluation folders (encoder name → folder)."""
    root = out / "seeds" / f"seed{seed}"
    return {"pre-trained": root / "eval" / "pretrained", "random init": root / "eval" / "random"}


def _further_seed(steps: _Steps, plan: DemoPlan, out: Path, manifest: Path, lm: Path, seed: int) -> None:
    """Steps of one further pre-training seed: pre-train, its starting point, and the four evaluations."""
    root = out / "seeds" / f"seed{seed}"
    models = {"pre-trained": root / "models" / "pretrained", "random init": root / "models" / "random"}
    folders = _seed_folders(out, seed)
    tag = f"seed {seed}"
    steps(
        f"pretrain ({tag})",
        lambda: _pretrain_step(plan, manifest, root / "run", models["pre-trained"], seed, True),
    )
    steps(f"random init ({tag})", lambda: _random_step(plan, manifest, models["random init"], seed))
    for name, model in models.items():
        actions = _evaluations(plan, manifest, model, folders[name], out / "feature_cache", lm)
        for task in _SEED_TASKS:
            steps(f"{task} ({name}, {tag})", actions[task])


def run_demo(
    out: str | Path = "demo", plan: DemoPlan | None = None, seed: int = 0, seeds: int = 1
) -> DemoResult:
    """Run the demo into ``out``; steps finished by an earlier run in ``out`` are skipped.

    Args:
        out: Output folder: ``report.html``, ``report.md``, ``demo.json`` and every step's outputs.
        plan: Sizes (default :func:`full_plan`; :func:`quick_plan` for a seconds-long check).
        seed: Seed of the phantoms, the evaluations' splits and the first pre-training run.
        seeds: Pre-training seeds ``seed, seed + 1, …``: each further one pre-trains again from its own
            initialisation and is evaluated against that initialisation (the ablation runs once).

    Returns:
        The steps run and skipped, their wall times and the pre-trained encoder's margins.

    Raises:
        ValueError: ``seeds`` below 1.
    """
    from raddino.data.phantoms import PhantomSettings, generate_phantoms
    from raddino.demo.page import build_page, figure_steps, margins_from_results
    from raddino.evaluate.compare import CompareConfig, run_compare
    from raddino.reportgen import build_causal_lm, train_report_tokenizer

    if seeds < 1:
        raise ValueError(f"seeds: {seeds}, the demo needs at least one pre-training seed")
    plan = plan or full_plan()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "phantoms" / "manifest.csv"
    models = {"pre-trained": out / "models" / "pretrained", "random init": out / "models" / "random"}
    if plan.ablation:
        models["iBOT off"] = out / "models" / "ibot_off"
    folders = {name: out / "eval" / path.name for name, path in models.items()}
    lm = out / "report_lm"
    further = [seed + k for k in range(1, seeds)]
    figure_actions = figure_steps(out, manifest, models["pre-trained"], plan.size)
    total = 4 + len(models) * 5 + len(figure_actions) + 2 + int(plan.ablation) + len(further) * 10
    steps = _Steps(out, total=total)

    settings = PhantomSettings(subtle_fraction=plan.subtle_fraction)
    steps(
        "phantoms",
        lambda: generate_phantoms(
            out / "phantoms", n=plan.images, size=plan.size, seed=seed, settings=settings
        ),
    )
    steps("pretrain", lambda: _pretrain_step(plan, manifest, out / "run", models["pre-trained"], seed, True))
    if plan.ablation:
        steps(
            "pretrain iBOT off",
            lambda: _pretrain_step(plan, manifest, out / "run_ibot_off", models["iBOT off"], seed, False),
        )
    steps("random init", lambda: _random_step(plan, manifest, models["random init"], seed))

    def language_model() -> None:
        tokenizer = train_report_tokenizer(_train_reports(manifest), vocab_size=600)
        build_causal_lm(tokenizer, lm, hidden_size=plan.report_hidden, num_layers=2, num_heads=4, seed=seed)

    steps("report language model", language_model)
    for name, model in models.items():
        actions = _evaluations(plan, manifest, model, folders[name], out / "feature_cache", lm)
        for task, action in actions.items():
            steps(f"{task} ({name})", action)
    for further_seed in further:
        _further_seed(steps, plan, out, manifest, lm, further_seed)
    results = [str(folders[n] / task / f"{task}.json") for task in _SEED_TASKS for n in models]
    steps(
        "compare",
        lambda: run_compare(
            CompareConfig(
                results=results,
                out=str(out / "compare"),
                names=[n for _ in _SEED_TASKS for n in models],
                columns=list(TABLE_COLUMNS),
            )
        ),
    )
    for name, action in figure_actions.items():
        steps(name, action)
    seed_folders = [folders, *(_seed_folders(out, s) for s in further)]
    steps("page", lambda: build_page(out, plan, list(models), folders, seed_folders[1:]))
    result = steps.result
    per_seed = [margins_from_results(f) for f in seed_folders]
    result.seeds = (seed, *further)
    result.seed_margins = seed_margins(per_seed)
    result.margins = {
        t: {c: round(m.mean, 4) for c, m in cols.items()} for t, cols in result.seed_margins.items()
    }
    _write_summary(out, plan, result)
    return result


def _write_summary(out: Path, plan: DemoPlan, result: DemoResult) -> None:
    """``OUT/demo.json``: the plan, each step's seconds, the margins over the seeds, the tables."""
    summary = {
        "plan": asdict(plan),
        "seconds": result.seconds,
        "total_seconds": round(sum(result.seconds.values()), 1),
        "seeds": list(result.seeds),
        "margins": result.margins,
        "seed_margins": {
            task: {column: margin.as_dict() for column, margin in columns.items()}
            for task, columns in result.seed_margins.items()
        },
        "tables": json.loads((out / "compare" / "compare.json").read_text(encoding="utf-8"))["tables"],
        "report_generation": json.loads((out / "report_scores.json").read_text(encoding="utf-8")),
    }
    atomic_write_text(out / "demo.json", json.dumps(summary, indent=2) + "\n")
