"""Saving and loading a report generator: the finished model folder and the best-on-validation one.

A trained folder holds ``report_model.json`` (encoder, layer, prompt, sizes), ``projector.safetensors`` and
``language_model/`` (a transformers folder with its tokenizer; absent when only the projector was trained,
then ``report_model.json`` names the language model it was trained on; ``lora_adapter/`` instead when LoRA
adapters were trained, see :mod:`raddino.reportgen.lora`). ``best/`` holds the same for the epoch of
lowest validation loss; it is written beside and swapped in, so a crash while saving leaves it whole. The
resumable training state is the engine's (``checkpoints/``, :mod:`raddino.training.run_folder`); the
``checkpoint/`` folders of earlier versions held a pickled ``trainer.pt`` and are not read.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerBase

from raddino.io.atomic import atomic_write_text
from raddino.io.state_file import StateFileError
from raddino.reportgen.language_model import load_language_model
from raddino.reportgen.lora import ADAPTER_FOLDER, is_lora, load_adapters, save_adapters
from raddino.reportgen.model import Projector, ReportGenerator, embedding_width

MODEL_FILE = "report_model.json"


@dataclass
class ReportModelInfo:
    """What a trained report generator needs besides its weights."""

    encoder: str
    """The frozen encoder whose tokens it reads (transformers folder, DINOv2 file, preset or hub id)."""
    layer: int
    vision_dim: int
    num_image_tokens: int
    prompt: str
    max_report_tokens: int
    language_model: str
    """``language_model`` (the folder inside) or, for a projector-only run, the LM it was trained on."""
    zero_images: bool = False
    """Trained (and so decoded) with zeros in place of the image tokens: the no-image ablation."""
    adapter: str = ""
    """Folder (inside) of LoRA adapters on ``language_model``; empty when none were trained."""


def save_report_model(
    model: ReportGenerator,
    tokenizer: PreTrainedTokenizerBase,
    info: ReportModelInfo,
    folder: Path,
    save_language_model: bool,
) -> None:
    """Write the projector, the language model (when trained; its LoRA adapters alone when it carries
    them) and ``report_model.json`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {name: tensor.detach().cpu().contiguous() for name, tensor in model.projector.state_dict().items()},
        str(folder / "projector.safetensors"),
    )
    if is_lora(model.language_model):
        save_adapters(model.language_model, folder / ADAPTER_FOLDER)
        info = ReportModelInfo(**{**asdict(info), "adapter": ADAPTER_FOLDER})
    elif save_language_model:
        model.language_model.save_pretrained(str(folder / "language_model"))
        tokenizer.save_pretrained(str(folder / "language_model"))
        info = ReportModelInfo(**{**asdict(info), "language_model": "language_model"})
    # written last: its presence marks a complete folder
    atomic_write_text(folder / MODEL_FILE, json.dumps(asdict(info), indent=2))


def read_model_info(folder: str | Path) -> ReportModelInfo:
    """The ``report_model.json`` of a trained folder."""
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise ValueError(
            f"{folder}: not a trained report model (no {MODEL_FILE}); run `raddino report train`"
        )
    return ReportModelInfo(**json.loads(path.read_text(encoding="utf-8")))


def load_report_model(
    folder: str | Path, trainable_adapters: bool = False
) -> tuple[ReportGenerator, PreTrainedTokenizerBase, ReportModelInfo]:
    """A trained report generator, its tokenizer and its info, from a folder written by training.

    Args:
        folder: The trained folder or a checkpoint.
        trainable_adapters: Keep LoRA adapters separate and trainable (to resume training); by default
            they are merged into the LM's weights, which decodes as fast as the plain LM.
    """
    folder = Path(folder)
    info = read_model_info(folder)
    source = folder / info.language_model if info.language_model == "language_model" else info.language_model
    language_model, tokenizer = load_language_model(source)
    if info.adapter:
        language_model = load_adapters(language_model, folder / info.adapter, trainable_adapters)
    projector = Projector(info.vision_dim, embedding_width(language_model))
    projector.load_state_dict(load_file(str(folder / "projector.safetensors")))
    return ReportGenerator(projector, language_model), tokenizer, info


def save_best(
    out: Path,
    model: ReportGenerator,
    tokenizer: PreTrainedTokenizerBase,
    info: ReportModelInfo,
    save_language_model: bool,
) -> Path:
    """Write the model of the lowest validation loss so far to ``out/best``, whole (beside, then swapped)."""
    staging = _staging(out / "best")
    save_report_model(model, tokenizer, info, staging, save_language_model)
    return _swap_in(staging, out / "best")


def promote(best: Path, out: Path) -> None:
    """Make ``out`` the trained model of ``best``: its files copied over, ``report_model.json`` last."""
    for entry in sorted(best.iterdir()):
        if entry.name == MODEL_FILE:
            continue
        target = out / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        if entry.is_dir():
            shutil.copytree(entry, target)
        else:
            shutil.copyfile(entry, target)
    atomic_write_text(out / MODEL_FILE, (best / MODEL_FILE).read_text(encoding="utf-8"))


def _staging(target: Path) -> Path:
    staging = target.with_name(target.name + ".saving")
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def _swap_in(staging: Path, target: Path) -> Path:
    previous = target.with_name(target.name + ".previous")
    if target.exists():
        shutil.rmtree(previous, ignore_errors=True)
        target.rename(previous)
    staging.rename(target)
    shutil.rmtree(previous, ignore_errors=True)
    return target


def refuse_earlier_checkpoint(out: Path, hint: str) -> None:
    """Stop with one line when ``out`` holds a checkpoint of an earlier raddino version (``checkpoint/``
    with a pickled ``trainer.pt``): resuming it would mean unpickling a file found in a folder.

    Raises:
        StateFileError: names the folder and what to do (``hint``).
    """
    for name in ("checkpoint", "checkpoint.previous"):
        if (out / name / "trainer.pt").is_file():
            raise StateFileError(
                f"{out / name}: a report-training checkpoint of an earlier raddino version, which is not "
                f"read (its trainer.pt could run code when loaded); {hint}"
            )
