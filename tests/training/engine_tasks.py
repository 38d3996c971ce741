"""Every task that trains on the engine, as the shared resume and checkpoint-safety tests drive it.

Each :class:`EngineCase` trains its task through the library entry point that users call
(``run_segment``, ``train_report_model``, ``pretrain``), at test size, with callbacks after every step, and
says where its run folder, CSV views and trained weights are.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from raddino.training import Callback
from raddino.training.tracking import TrackingConfig


class Killed(RuntimeError):
    """Raised from a callback: the run dies between two checkpoints."""


def kill_after(step: int) -> Callback:
    def callback(done: int, record: object) -> None:
        if done == step:
            raise Killed(f"killed after step {done}")

    return callback


class Payload:
    """Unpickling this creates a marker folder: what a planted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.makedirs, (str(self.marker),))


def write_csv(path: Path, rows: Sequence[dict[str, object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def segmentation_manifest(folder: Path) -> Path:
    """24 56-px images of 12 subjects, each with a bright square (``mask_square``)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    rows: list[dict[str, object]] = []
    for index in range(24):
        pixels = rng.integers(0, 60, (56, 56)).astype(np.uint8)
        square = np.zeros((56, 56), bool)
        top, left = rng.integers(4, 26, 2)
        square[top : top + 24, left : left + 24] = True
        pixels[square] = 220
        Image.fromarray(pixels).save(folder / f"{index}.png")
        Image.fromarray(square.astype(np.uint8) * 255).save(folder / f"{index}_square.png")
        split = "train" if index < 16 else ("val" if index < 20 else "test")
        rows.append({"path": f"{index}.png", "split": split, "mask_square": f"{index}_square.png"})
    return write_csv(folder / "manifest.csv", rows)


REPORTS = ("Heart size is normal. No effusion.", "The heart is enlarged. Small left effusion.")


def report_manifest(folder: Path) -> Path:
    """12 studies (8 train, 4 val) whose picture follows a one-sentence finding."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    rows: list[dict[str, object]] = []
    for index in range(12):
        pixels = rng.normal(0.3, 0.05, (56, 56))
        pixels[20:36, 20:36] += 0.4 * (index % 2)
        image = (np.clip(pixels, 0, 1) * 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"study{index:02d}.png")
        split = "train" if index < 8 else "val"
        name = f"study{index:02d}"
        rows.append({"path": f"{name}.png", "id": name, "split": split, "report": REPORTS[index % 2]})
    return write_csv(folder / "manifest.csv", rows)


@dataclass
class EngineCase:
    """One engine task as a user runs it.

    Attributes:
        name: Test id.
        train: ``(out, callbacks, overwrite, tracking=None)`` trains into ``out`` (resuming what is there),
            tracked as the ``TrackingConfig`` says.
        run_folder: The engine's run folder inside ``out``.
        views: CSV views (inside the run folder) derived from ``metrics.jsonl``.
        weights: The trained weights a finished run leaves in ``out``.
        kill_at: A step between two checkpoints.
        cli: The command line that trains into ``out`` (for the one-line error tests).
    """

    name: str
    train: Callable[..., object]
    run_folder: Callable[[Path], Path]
    views: tuple[str, ...]
    weights: Callable[[Path], dict[str, torch.Tensor]]
    kill_at: int
    cli: Callable[[Path], list[str]]


def segmentation_case(data: Path, encoder: Path) -> EngineCase:
    """The linear head with affine augmentation (the generator's state matters): 3 epochs of 4 steps."""
    from raddino.evaluate.segmentation import SegmentConfig, run_segment
    from raddino.evaluate.segmentation.train import SegTraining

    training = dict(epochs=3, batch_size=4, lr=5e-3, augment=True)

    def train(
        out: Path, callbacks: Sequence[Callback], overwrite: bool = False, tracking: Any = None
    ) -> object:
        config = SegmentConfig(
            input=str(data),
            model=str(encoder),
            out=str(out),
            heads=["linear"],
            resolution=56,
            device="cpu",
            save_predictions=False,
            progress=False,
            overwrite=overwrite,
            training=SegTraining(**training),  # type: ignore[arg-type]
            tracking=tracking or TrackingConfig(),
        )
        return run_segment(config, callbacks)

    def weights(out: Path) -> dict[str, torch.Tensor]:
        return torch.load(out / "checkpoints" / "linear.pt", weights_only=True)["state"]

    def cli(out: Path) -> list[str]:
        return ["segment", str(data), "--model", str(encoder), "--out", str(out), "--head", "linear",
                "--epochs", "3", "--device", "cpu", "--set", "resolution=56", "--set", "progress=false",
                "--set", "training.augment=true", "--set", "training.batch_size=4"]  # fmt: skip

    return EngineCase(
        "segmentation", train, lambda out: out / "training" / "linear", (), weights, kill_at=6, cli=cli
    )


def report_case(data: Path, encoder: Path, language_model: Path, cache: Path) -> EngineCase:
    """Projector + LM with dropout and best-on-validation: 3 epochs of 2 steps of 2 micro-batches."""
    from raddino.features.cache import FeatureConfig
    from raddino.reportgen import ReportTrainConfig, train_report_model

    features = FeatureConfig(model=str(encoder), cache_dir=str(cache), device="cpu", num_workers=0)

    def train(
        out: Path, callbacks: Sequence[Callback], overwrite: bool = False, tracking: Any = None
    ) -> object:
        config = ReportTrainConfig(
            input=str(data),
            language_model=str(language_model),
            out=str(out),
            features=features,
            val_split="val",
            projector_dropout=0.1,
            epochs=3,
            batch_size=4,
            micro_batch_size=2,
            learning_rate=3e-3,
            device="cpu",
            overwrite=overwrite,
            tracking=tracking or TrackingConfig(),
        )
        return train_report_model(config, callbacks)

    def weights(out: Path) -> dict[str, torch.Tensor]:
        projector = load_file(str(out / "projector.safetensors"))
        lm = load_file(str(out / "language_model" / "model.safetensors"))
        return {f"projector.{k}": v for k, v in projector.items()} | {f"lm.{k}": v for k, v in lm.items()}

    def cli(out: Path) -> list[str]:
        return ["report", "train", str(data), "--lm", str(language_model), "--encoder", str(encoder),
                "--out", str(out), "--epochs", "3", "--batch-size", "4", "--device", "cpu",
                "--set", f"features.cache_dir={cache}", "--set", "features.num_workers=0"]  # fmt: skip

    return EngineCase(
        "report", train, lambda out: out, ("train_log.csv", "val_log.csv"), weights, kill_at=3, cli=cli
    )


PRETRAIN_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "test.yaml"


def pretrain_manifest(folder: Path) -> Path:
    """12 small phantom chest X-rays."""
    from raddino.data.phantoms import generate_phantoms

    return generate_phantoms(folder, n=12, size=64, seed=0, workers=1, masks=False, progress=False)


def pretrain_case(data: Path) -> EngineCase:
    """``configs/test.yaml``: student with drop-path, EMA teacher, iBOT masks, KoLeo; 8 iterations,
    checkpoints at 4 and 8."""
    from raddino.pretrain.checkpoint import latest_checkpoint, read_checkpoint
    from raddino.pretrain.config import load_pretrain_config
    from raddino.pretrain.train import pretrain

    def train(
        out: Path, callbacks: Sequence[Callback], overwrite: bool = False, tracking: Any = None
    ) -> object:
        config = load_pretrain_config(PRETRAIN_CONFIG, [f"train.dataset_path={data}"])
        config.tracking = tracking or TrackingConfig()

        def on_step(done: int, record: object) -> None:
            for callback in callbacks:
                callback(done, record)  # type: ignore[arg-type]

        return pretrain(config, out, progress=False, on_step=on_step, overwrite=overwrite)

    def weights(out: Path) -> dict[str, torch.Tensor]:
        state = read_checkpoint(latest_checkpoint(out))  # type: ignore[arg-type]
        parts = ("student", "teacher", "objective")
        return {f"{part}.{name}": tensor for part in parts for name, tensor in state[part].items()}

    def cli(out: Path) -> list[str]:
        return ["pretrain", "--config", str(PRETRAIN_CONFIG), "--out", str(out), "--data", str(data)]

    return EngineCase("pretrain", train, lambda out: out, (), weights, kill_at=6, cli=cli)


def finetune_manifest(folder: Path) -> Path:
    """32 small labelled phantoms (train / val / test by subject)."""
    from raddino.data.phantoms import generate_phantoms

    return generate_phantoms(folder, n=32, size=64, seed=1, workers=1, masks=False, progress=False)


def finetune_case(data: Path, encoder: Path) -> EngineCase:
    """LoRA with adapter dropout, drop-path, augmentations and best-on-validation: 3 epochs of 3 steps of
    2 micro-batches; checkpoints at epoch ends."""
    from raddino.finetune import EncoderLora, FinetuneConfig, run_finetune

    def train(
        out: Path, callbacks: Sequence[Callback], overwrite: bool = False, tracking: Any = None
    ) -> object:
        config = FinetuneConfig(
            input=str(data), model=str(encoder), out=str(out), modes=["lora"], labels=["cardiomegaly"],
            lora=EncoderLora(rank=2, dropout=0.1), drop_path=0.1, epochs=3, batch_size=8, micro_batch_size=4,
            lr=1e-3, device="cpu", progress=False, bootstrap=0, overwrite=overwrite,
            tracking=tracking or TrackingConfig(),
        )  # fmt: skip
        return run_finetune(config, callbacks)

    def weights(out: Path) -> dict[str, torch.Tensor]:
        encoder_state = load_file(str(out / "lora" / "encoder" / "model.safetensors"))
        head = load_file(str(out / "lora" / "head.safetensors"))
        return {f"encoder.{k}": v for k, v in encoder_state.items()} | {
            f"head.{k}": v for k, v in head.items()
        }

    def cli(out: Path) -> list[str]:
        return ["finetune", str(data), "--model", str(encoder), "--out", str(out), "--mode", "lora",
                "--labels", "cardiomegaly", "--epochs", "3", "--device", "cpu"]  # fmt: skip

    views = ("train_log.csv", "val_log.csv")
    return EngineCase("finetune", train, lambda out: out / "lora", views, weights, kill_at=4, cli=cli)
