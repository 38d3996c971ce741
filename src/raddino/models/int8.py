"""Static int8 encoders for CPU inference: quantise, save as a folder that runs no code, load back.

Every ``nn.Linear`` of the encoder (attention projections, MLP) becomes a quantised linear with
per-channel symmetric int8 weights and a calibrated per-tensor int8 activation scale (torch.ao's eager
mode, x86 backend); patch embedding, LayerNorm, LayerScale and the attention product stay float32. Why
torch.ao: it is PyTorch's own static post-training quantisation, so it needs nothing beyond torch (ONNX
Runtime's ``quantize_static`` would do the same through an ONNX export and a new dependency); torch marks
it deprecated in favour of torchao. x86's default qconfig keeps 7 of the 8 activation bits
(``reduce_range``, against overflow on CPUs without VNNI); all 8 is the default here because only that
variant passed the acceptance gate on the demo's pre-trained encoders (BENCHMARKS.md, section int8).

An int8 folder holds ``config.json`` (the float architecture), ``int8_weights.pt`` (the quantised
state dict, read with ``torch.load(weights_only=True)`` through :mod:`raddino.io.state_file`),
``int8.json`` (qconfig, calibration set, the gate's numbers) and ``preprocessor_config.json``.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from raddino.data.preprocess import PreprocessConfig
from raddino.io.atomic import atomic_directory
from raddino.io.state_file import StateFileError, load_state, save_state
from raddino.models.encoder import Encoder
from raddino.models.loading import ModelLoadError

INT8_INFO_FILE = "int8.json"
INT8_WEIGHTS_FILE = "int8_weights.pt"
INT8_FORMAT = "raddino-int8-static"
ENGINE = "x86"


@contextmanager
def _quiet() -> Iterator[None]:
    """torch.ao's eager mode announces its successor (torchao) and warns on uncalibrated observers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def qconfig_summary(full_range: bool) -> dict[str, Any]:
    """What ``int8.json`` records of the quantisation (enough to rebuild the modules)."""
    return {
        "engine": ENGINE,
        "weights": "int8, symmetric, per output channel",
        "activations": "int8, affine, per tensor, histogram-calibrated",
        "activation_bits": 8 if full_range else 7,
        "full_range": full_range,
        "modules": "nn.Linear",
    }


def _prepared(encoder: nn.Module, full_range: bool) -> nn.Module:
    """A float copy of ``encoder`` with every ``nn.Linear`` wrapped and observed, ready to calibrate."""
    from torch.ao.quantization import (
        HistogramObserver,
        QConfig,
        QuantWrapper,
        default_per_channel_weight_observer,
        get_default_qconfig,
        prepare,
    )

    torch.backends.quantized.engine = ENGINE
    model = copy.deepcopy(encoder).cpu().float().eval()
    qconfig = get_default_qconfig(ENGINE)  # per-channel symmetric int8 weights, 7-bit histogram activations
    if full_range:
        activation = HistogramObserver.with_args(reduce_range=False)
        qconfig = QConfig(activation=activation, weight=default_per_channel_weight_observer)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                wrapped = QuantWrapper(child)
                wrapped.qconfig = qconfig
                setattr(module, name, wrapped)
    with _quiet():
        prepare(model, inplace=True)
    return model


def _converted(model: nn.Module) -> nn.Module:
    from torch.ao.quantization import convert

    with _quiet():
        convert(model, inplace=True)
    return model.eval()


def quantize_int8(
    encoder: nn.Module, calibration: Iterable[torch.Tensor], full_range: bool = True
) -> nn.Module:
    """A static int8 copy of ``encoder`` for CPU inference, calibrated on ``calibration`` batches.

    Args:
        encoder: A float encoder (left unchanged).
        calibration: Preprocessed image batches (B, 3, H, W) of the user's data; a few hundred images.
        full_range: All 8 bits for activations (x86's default ``reduce_range`` keeps 7).

    Returns:
        The quantised copy, in eval mode; it runs on the CPU only.

    Raises:
        ValueError: ``calibration`` holds no image.
    """
    model = _prepared(encoder, full_range)
    seen = 0
    with torch.inference_mode(), _quiet():
        for pixels in calibration:  # (B, 3, H, W)
            model(pixels.float().cpu())
            seen += pixels.shape[0]
    if seen == 0:
        raise ValueError("int8 calibration needs at least one image")
    return _converted(model)


def is_int8(encoder: nn.Module) -> bool:
    """Whether ``encoder`` holds torch.ao quantised linears (CPU only, float32 inputs only)."""
    from torch.ao.nn.quantized import Linear as QuantisedLinear

    return any(isinstance(module, QuantisedLinear) for module in encoder.modules())


def save_int8(
    model: Encoder,
    out: str | Path,
    *,
    info: Mapping[str, Any],
    preprocess: PreprocessConfig | None = None,
) -> list[Path]:
    """Write an int8 folder atomically (replacing ``out`` whole): config, weights, ``int8.json``, processor.

    Args:
        model: A model from :func:`quantize_int8` of an :class:`Encoder`.
        out: The folder.
        info: Written as ``int8.json`` with ``format`` added; must hold ``qconfig`` (see
            :func:`qconfig_summary`).
        preprocess: The inference preprocessing to record (the release's by default).

    Returns:
        The files, as they will be named once in place.
    """
    out = Path(out)
    names = ("config.json", INT8_WEIGHTS_FILE, INT8_INFO_FILE, "preprocessor_config.json")
    with atomic_directory(out) as staging:
        model.config.to_json_file(str(staging / names[0]))
        save_state({"format": INT8_FORMAT, "state": model.state_dict()}, staging / names[1])
        (staging / names[2]).write_text(json.dumps({"format": INT8_FORMAT, **info}, indent=2) + "\n")
        processor = (preprocess or PreprocessConfig()).to_processor_dict()
        (staging / names[3]).write_text(json.dumps(processor, indent=2) + "\n")
    return [out / name for name in names]


def read_int8_info(folder: str | Path) -> dict[str, Any]:
    """``int8.json`` of an int8 folder.

    Raises:
        ModelLoadError: unreadable, not JSON, or not an int8 record of this format.
    """
    path = Path(folder) / INT8_INFO_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(path, f"not a readable int8 record: {error}") from error
    if not isinstance(info, dict) or info.get("format") != INT8_FORMAT:
        raise ModelLoadError(path, f"not an int8 record (expected format {INT8_FORMAT!r})")
    if not isinstance(info.get("qconfig"), dict) or "full_range" not in info["qconfig"]:
        raise ModelLoadError(path, "key 'qconfig.full_range' is missing")
    return info


def load_int8_encoder(
    folder: str | Path, *, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> Encoder:
    """The quantised encoder of an int8 folder written by :func:`save_int8`.

    Args:
        folder: The folder.
        device: Must be the CPU (or ``None``): torch.ao's quantised linears run nowhere else.
        dtype: Must be float32 (or ``None``): the quantised linears take float32 activations.

    Raises:
        ModelLoadError: a device or dtype it cannot run at, an unreadable or unsafe weights file (a
            pickle that would run code is refused, never run), or weights that do not fit the config.
    """
    folder = Path(folder)
    if device is not None and torch.device(device).type != "cpu":
        raise ModelLoadError(folder, f"an int8 encoder runs on the CPU only, not {device}; use --device cpu")
    if dtype is not None and dtype != torch.float32:
        raise ModelLoadError(folder, f"an int8 encoder takes float32 inputs, not {dtype}; use fp32")
    from transformers import AutoConfig

    info = read_int8_info(folder)
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise ModelLoadError(folder / "config.json", f"cannot read the config: {error}") from error
    weights = folder / INT8_WEIGHTS_FILE
    try:
        payload = load_state(weights, what="int8 weights file")
    except StateFileError as error:  # one line, naming the file
        raise ModelLoadError(weights, str(error).removeprefix(f"{weights}: ")) from None
    if payload.get("format") != INT8_FORMAT or not isinstance(payload.get("state"), dict):
        raise ModelLoadError(weights, f"not an int8 state dict (expected format {INT8_FORMAT!r})")
    skeleton = _converted(_prepared(Encoder.from_config(config, seed=0), bool(info["qconfig"]["full_range"])))
    try:
        skeleton.load_state_dict(payload["state"], strict=True)
    except (RuntimeError, ValueError, TypeError) as error:
        first = str(error).strip().splitlines()
        raise ModelLoadError(weights, f"weights do not fit config.json: {' '.join(first[:2])}") from error
    assert isinstance(skeleton, Encoder)
    return skeleton


__all__ = [
    "INT8_INFO_FILE",
    "INT8_WEIGHTS_FILE",
    "is_int8",
    "load_int8_encoder",
    "qconfig_summary",
    "quantize_int8",
    "read_int8_info",
    "save_int8",
]
