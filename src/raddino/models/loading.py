"""``load_encoder``: one function for every place an encoder can come from.

Sources, tried in this order:

* ``preset:NAME`` — a randomly initialised preset (seed 0);
* a local folder with ``config.json`` — a transformers folder (``model_type`` ``dinov2``,
  ``dinov2_with_registers`` or ``dinov3_vit``), loaded with ``local_files_only`` and never
  ``trust_remote_code`` (a folder with only ``backbone_compatible.safetensors`` loads that file);
* a local ``.safetensors`` / ``.pth`` / ``.pt`` file — a DINOv2- or DINOv3-format state dict, the format
  told by its keys (``rope_embed.periods`` / ``storage_tokens``: DINOv3); ``.pth`` is read with
  ``torch.load(weights_only=True)``, which cannot run code;
* otherwise an ``owner/name`` hub id — the only way anything downloads.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from raddino.io.state_file import StateFileError, load_state
from raddino.models.convert import ConversionError, encoder_from_dinov2
from raddino.models.convert_dinov3 import encoder_from_dinov3, is_dinov3_state_dict
from raddino.models.encoder import Encoder

logger = logging.getLogger(__name__)

STATE_DICT_SUFFIXES = (".safetensors", ".pth", ".pt")
# The original-format weights file of a folder: the name in the RAD-DINO release (DINOv2), which raddino also
# gives DINOv3-format files (their keys tell the format).
DINOV2_FILE_NAME = "backbone_compatible.safetensors"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_ENCODER_TYPES = ("dinov2", "dinov2_with_registers", "dinov3_vit")
# Key prefixes of transformers' own weights files (DINOv2, DINOv3), not of the original formats.
_TRANSFORMERS_PREFIXES = ("embeddings.", "encoder.layer.", "model.layer.")
_PICKLE_HINT = (
    "raddino reads .pth/.pt files with torch.load(weights_only=True), which runs no code; "
    "save the state dict as plain tensors, or as .safetensors"
)


class ModelLoadError(ValueError):
    """An encoder could not be loaded; ``source`` says from where and ``reason`` why."""

    def __init__(self, source: str | Path, reason: str) -> None:
        self.source = str(source)
        self.reason = " ".join(str(reason).split())  # one line, whatever the library below said
        super().__init__(f"{self.source}: {self.reason}")


def is_hub_id(source: str) -> bool:
    """Whether ``source`` would be fetched from the Hugging Face hub (``owner/name``, not a local path)."""
    path = Path(source).expanduser()
    return bool(_HUB_ID.match(source)) and path.suffix not in STATE_DICT_SUFFIXES and not path.exists()


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a ``.safetensors`` file or a ``.pth`` / ``.pt`` state dict.

    A ``.pth`` holding ``{"teacher": {...}}`` or ``{"model": {...}}`` (DINOv2 training checkpoints) is
    unwrapped; pickles holding anything but tensors and containers are refused (``weights_only=True``).

    Raises:
        ModelLoadError: unreadable, corrupt, or not a mapping of names to tensors.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
            return load_file(str(path)), metadata
        except (SafetensorError, OSError, ValueError) as error:
            raise ModelLoadError(path, f"not a readable safetensors file: {_first_line(error)}") from error
    try:
        loaded = load_state(path, what="PyTorch weights file", hint=_PICKLE_HINT)
    except StateFileError as error:  # one line already, starting with the path
        raise ModelLoadError(path, str(error).removeprefix(f"{path}: ")) from None
    for wrapper in ("teacher", "model", "state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            logger.info("%s: using the %r entry of the checkpoint", path, wrapper)
            loaded = loaded[wrapper]
            break
    if not isinstance(loaded, dict) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        raise ModelLoadError(path, "expected a state dict (a mapping of names to tensors)")
    return loaded, {}


def backbone_subset(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The backbone's tensors: all of them, or the ``backbone.`` entries of a training checkpoint."""
    if "cls_token" not in state and "backbone.cls_token" in state:
        return {key[len("backbone.") :]: value for key, value in state.items() if key.startswith("backbone.")}
    return state


def load_original_file(
    path: str | Path, *, num_heads: int | None = None, dtype: torch.dtype | None = None
) -> Encoder:
    """An encoder from a DINOv2- or DINOv3-format state dict file (``backbone_compatible.safetensors``,
    a released ``dinov3_vitb16_pretrain_*.pth``, a training checkpoint), the format told by its keys.

    Args:
        path: The file.
        num_heads: Attention heads of a DINOv2 file; default: the file's ``num_heads`` metadata (raddino
            writes it), else width / 64 as in every DINOv2 model. A DINOv3 file's RoPE periods give its
            head width, so there it is only checked.
        dtype: Parameter dtype (float32 by default).

    Raises:
        ModelLoadError: unreadable file, or keys/shapes that do not make a DINOv2 or DINOv3 ViT (all named).
    """
    state, metadata = read_state_dict(path)
    state = backbone_subset(state)
    if any(key.startswith(_TRANSFORMERS_PREFIXES) for key in state):
        raise ModelLoadError(path, "this is a transformers weights file; pass the folder that holds it")
    try:
        if is_dinov3_state_dict(state):
            eps = metadata.get("layer_norm_eps")
            return encoder_from_dinov3(
                state, layer_norm_eps=float(eps) if eps else None, num_heads=num_heads, dtype=dtype
            )
        if num_heads is None and metadata.get("num_heads"):
            num_heads = int(metadata["num_heads"])
        return encoder_from_dinov2(state, num_heads=num_heads, dtype=dtype)
    except ConversionError as error:
        raise ModelLoadError(path, str(error)) from error


load_dinov2_file = load_original_file  # the earlier name, from before DINOv3 files were read


def _check_weight_files(folder: Path) -> None:
    """Open the header of every safetensors weights file of a transformers folder (cheap: no tensors).

    transformers would otherwise stop on a truncated or corrupt file with a bare ``SafetensorError``
    that does not say which file; a download cut short is the usual cause.

    Raises:
        ModelLoadError: names the file that is truncated, corrupt or listed by the index but missing.
    """
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        files = [folder / "model.safetensors"]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = [folder / name for name in sorted(set(weight_map.values()))]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ModelLoadError(index, f"not a readable safetensors index: {_first_line(error)}") from error
    else:
        return  # no safetensors weights: transformers says what it found instead
    for file in files:
        if not file.is_file():
            raise ModelLoadError(file, f"listed in {index.name} but missing")
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except (SafetensorError, OSError, ValueError) as error:
            raise ModelLoadError(
                file,
                f"not a readable safetensors file ({_first_line(error)}); it may be truncated or corrupt: "
                "copy or download it again",
            ) from error


def _load_transformers(source: str, *, local: bool, dtype: torch.dtype | None) -> Encoder:
    """A transformers DINOv2 / DINOv3 model from a folder (``local``) or the hub; missing weights are an
    error."""
    from transformers import AutoConfig, AutoModel

    options = {"local_files_only": local, "trust_remote_code": False}
    where = "folder" if local else "Hugging Face hub model"
    try:
        config = AutoConfig.from_pretrained(source, **options)
    except (OSError, ValueError) as error:
        raise ModelLoadError(source, f"cannot read the {where}'s config: {_first_line(error)}") from error
    if config.model_type not in _ENCODER_TYPES:
        kinds = ", ".join(_ENCODER_TYPES)
        raise ModelLoadError(
            source, f"model type {config.model_type!r} is not a DINOv2 or DINOv3 encoder ({kinds})"
        )
    if local:
        _check_weight_files(Path(source))
    try:
        model, info = AutoModel.from_pretrained(
            source,
            **options,
            attn_implementation="sdpa",
            dtype=dtype or torch.float32,
            output_loading_info=True,
        )
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise ModelLoadError(source, f"cannot load the {where}'s weights: {_first_line(error)}") from error
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        names = [str(name) for name in info.get(kind) or []]
        if names:
            problems.append(f"{kind.replace('_', ' ')}: {', '.join(sorted(names)[:8])}")
    if problems:
        raise ModelLoadError(source, "weights do not match the config (" + "; ".join(problems) + ")")
    return Encoder(model).eval()


def load_encoder(
    source: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    num_heads: int | None = None,
) -> Encoder:
    """Load an encoder from a preset, a local transformers folder, a DINOv2 / DINOv3 state dict or a hub id.

    Args:
        source: ``preset:NAME``, a folder, a ``.safetensors`` / ``.pth`` / ``.pt`` file, or ``owner/name``.
        device: Where to put it (default: the CPU).
        dtype: Parameter dtype (default: float32).
        num_heads: Attention heads for DINOv2 state dicts whose width is not 64 × heads (DINOv3 files
            need none).

    Returns:
        The encoder in eval mode.

    Raises:
        ModelLoadError: the source does not exist, is not an encoder, or its weights do not fit (the
            message names the source and the keys at fault).
    """
    text = str(source)
    if text.startswith("preset:"):
        try:
            encoder = Encoder.from_preset(text.removeprefix("preset:"), seed=0).eval()
        except KeyError as error:
            raise ModelLoadError(text, str(error.args[0])) from error
    else:
        path = Path(text).expanduser()
        if path.is_dir():
            if (path / "int8.json").is_file():  # a static int8 folder (raddino export --format int8)
                from raddino.models.int8 import load_int8_encoder

                return load_int8_encoder(path, device=device, dtype=dtype)
            if (path / "config.json").is_file():
                encoder = _load_transformers(str(path), local=True, dtype=dtype)
            elif (path / DINOV2_FILE_NAME).is_file():
                encoder = load_original_file(path / DINOV2_FILE_NAME, num_heads=num_heads, dtype=dtype)
            else:
                raise ModelLoadError(path, f"folder has neither config.json nor {DINOV2_FILE_NAME}")
        elif path.is_file():
            if path.suffix not in STATE_DICT_SUFFIXES:
                raise ModelLoadError(
                    path,
                    f"unknown model file type {path.suffix!r}; expected {', '.join(STATE_DICT_SUFFIXES)}",
                )
            encoder = load_original_file(path, num_heads=num_heads, dtype=dtype)
        elif is_hub_id(text):
            logger.info("%s is not a local path: loading it from the Hugging Face hub", text)
            encoder = _load_transformers(text, local=False, dtype=dtype)
        else:
            raise ModelLoadError(text, "no such file or folder (hub model ids look like owner/name)")
    if dtype is not None:
        encoder.to(dtype)
    return encoder.to(device) if device is not None else encoder
