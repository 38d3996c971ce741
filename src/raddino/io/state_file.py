"""Training-state files that cannot run code: ``torch.save`` of tensors and plain containers only.

Every checkpoint raddino writes goes through :func:`save_state` and is read back through
:func:`load_state`, which uses ``torch.load(weights_only=True)``: PyTorch's restricted unpickler accepts
tensors, dicts, lists, tuples, strings and numbers and refuses any other global, so a planted
``__reduce__`` payload is an error, never a call. :func:`save_state` checks the payload before writing it,
so a state that could not be read back safely is never written. RNG states of Python and torch are
turned into such values by :func:`capture_rng` and restored by :func:`restore_rng`.
"""

from __future__ import annotations

import pickle
import random
import re
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from raddino.io.atomic import atomic_path

_GLOBAL = re.compile(r"GLOBAL (\S+)")
_PLAIN = (str, int, float, bool, type(None), torch.dtype, torch.Size)


class StateFileError(RuntimeError):
    """A state file is missing, unreadable, refused as unsafe, or could not be written; one line."""


def check_plain(value: Any, where: str = "state") -> None:
    """Raise ``TypeError`` naming the first value ``torch.load(weights_only=True)`` would refuse.

    Args:
        value: A payload to be saved.
        where: Its name, extended with keys and indices as the check descends (``state.rng[0].torch``).
    """
    if isinstance(value, (torch.Tensor, *_PLAIN)):
        return
    if isinstance(value, (dict, OrderedDict)):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where}: key {key!r} of type {type(key).__name__} is not str or int")
            check_plain(item, f"{where}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_plain(item, f"{where}[{index}]")
        return
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    raise TypeError(f"{where}: {kind} is not a tensor or plain value")


def save_state(payload: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``payload`` to ``path`` atomically after checking it holds only safe values.

    Raises:
        TypeError: the payload holds an object a safe load would refuse (the message names its key).
        StateFileError: the file could not be written (disk full, permissions); names the file.
    """
    path = Path(path)
    check_plain(dict(payload))
    try:
        with atomic_path(path) as temporary:
            torch.save(dict(payload), temporary)
    except OSError as error:
        raise StateFileError(f"{path}: cannot write: {error.strerror or error}") from error
    return path


def load_state(path: str | Path, what: str = "checkpoint", hint: str = "") -> dict[str, Any]:
    """Read a state file onto the CPU with ``weights_only=True``.

    Args:
        path: The file.
        what: What it is, for the message (``"pre-training checkpoint"``).
        hint: What the user can do when the file is refused (how to convert an old file).

    Raises:
        StateFileError: missing, truncated or corrupt, or refused because it holds Python objects; one
            line naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise StateFileError(f"{path}: no such {what}")
    try:
        with warnings.catch_warnings():
            # a bare (non-zip) pickle makes torch warn about its protocol before refusing it
            warnings.simplefilter("ignore", UserWarning)
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = _GLOBAL.search(str(error))
        refused = f"it names {found.group(1)}" if found else "not tensors and plain values"
        reason = f"refused: it holds Python objects that loading would run ({refused})"
        raise StateFileError(f"{path}: {what} {reason}" + (f"; {hint}" if hint else "")) from None
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StateFileError(f"{path}: cannot read {what} (truncated or corrupt?): {message}") from None
    if not isinstance(loaded, dict):
        raise StateFileError(f"{path}: not a {what} (holds {type(loaded).__name__}, expected a dict)")
    return loaded


def capture_rng(cuda_device: torch.device | None = None) -> dict[str, Any]:
    """The RNG states of Python's ``random`` and torch, as safe values.

    NumPy's global generator is not captured: raddino draws from explicit ``np.random.Generator`` objects,
    whose ``bit_generator.state`` is a plain dict that can be saved as it is.
    """
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
        "torch": torch.get_rng_state(),
    }
    if cuda_device is not None and cuda_device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(cuda_device)
    return state


def restore_rng(state: Mapping[str, Any], cuda_device: torch.device | None = None) -> None:
    """Restore what :func:`capture_rng` captured (keys that are absent are left alone)."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(int(v) for v in internal.tolist()), gauss))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and cuda_device is not None and cuda_device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], cuda_device)
