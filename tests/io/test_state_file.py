"""Safe training-state files: weights-only loading, checks before writing, RNG capture."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from raddino.io.state_file import (
    StateFileError,
    capture_rng,
    check_plain,
    load_state,
    restore_rng,
    save_state,
)


class _Payload:
    """Unpickling this creates a marker file: what a planted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.makedirs, (str(self.marker),))


def test_round_trip_keeps_tensors_and_plain_values(tmp_path: Path) -> None:
    payload = {"step": 3, "weights": {"w": torch.arange(4.0)}, "names": ["a", "b"], "dtype": torch.float16}
    save_state(payload, tmp_path / "state.pt")
    loaded = load_state(tmp_path / "state.pt")
    assert loaded["step"] == 3
    assert torch.equal(loaded["weights"]["w"], torch.arange(4.0))
    assert loaded["names"] == ["a", "b"]
    assert loaded["dtype"] == torch.float16


def test_planted_pickle_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    torch.save({"step": 1, "evil": _Payload(marker)}, tmp_path / "planted.pt")
    with pytest.raises(StateFileError) as caught:
        load_state(tmp_path / "planted.pt", "pre-training checkpoint", hint="see the README")
    assert not marker.exists()
    message = str(caught.value)
    assert "\n" not in message
    assert str(tmp_path / "planted.pt") in message
    assert "refused" in message
    assert "it names os.makedirs" in message
    assert "add_safe_globals" not in message  # not PyTorch's advice to trust the file
    assert message.endswith("see the README")


def test_save_refuses_payloads_that_could_not_be_read_back(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"state\.rng\[0\]: numpy.ndarray"):
        save_state({"rng": [np.zeros(3)]}, tmp_path / "state.pt")
    assert not (tmp_path / "state.pt").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left either


def test_check_plain_names_non_string_keys() -> None:
    with pytest.raises(TypeError, match="key"):
        check_plain({(1, 2): 3})


def test_truncated_file_is_one_clear_line(tmp_path: Path) -> None:
    save_state({"w": torch.randn(1000)}, tmp_path / "state.pt")
    data = (tmp_path / "state.pt").read_bytes()
    (tmp_path / "state.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(StateFileError, match="truncated or corrupt") as caught:
        load_state(tmp_path / "state.pt")
    assert "\n" not in str(caught.value)
    with pytest.raises(StateFileError, match="no such checkpoint"):
        load_state(tmp_path / "missing.pt")


def test_disk_full_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(StateFileError, match=r"state\.pt: cannot write: No space left on device"):
        save_state({"w": 1}, tmp_path / "state.pt")
    assert list(tmp_path.iterdir()) == []


def test_rng_states_survive_a_safe_round_trip(tmp_path: Path) -> None:
    random.seed(1)
    torch.manual_seed(3)
    generator = np.random.default_rng(2)
    save_state({"rng": capture_rng(), "numpy": generator.bit_generator.state}, tmp_path / "rng.pt")
    expected = (random.random(), torch.rand(1).item(), generator.random())
    random.seed(9)
    torch.manual_seed(9)
    loaded = load_state(tmp_path / "rng.pt")
    restore_rng(loaded["rng"])
    generator = np.random.default_rng(0)
    generator.bit_generator.state = loaded["numpy"]
    assert (random.random(), torch.rand(1).item(), generator.random()) == expected
