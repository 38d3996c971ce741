"""Each mode trains what it should: requires_grad counts, no gradients or optimiser state on frozen
parameters, frozen weights bitwise unchanged in the exported encoder, LoRA merged == LoRA adapter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from raddino.finetune import EncoderLora, FinetuneConfig, run_finetune
from raddino.finetune.data import load_finetune_data, preprocess_for
from raddino.finetune.modes import LORA_ADAPTER_FOLDER, prepare_encoder, trainable_parameter_count
from raddino.finetune.task import FinetuneTaskRunner
from raddino.io.failures import FailureLog
from raddino.models import Encoder, load_encoder
from raddino.training import resolve_precision
from raddino.training.distributed import DistributedContext
from raddino.training.step import optimization_step

CPU = DistributedContext(0, 1, 0, torch.device("cpu"))


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_requires_grad_counts_per_mode() -> None:
    counts = {}
    for mode in ("frozen", "last-k", "lora", "full"):
        encoder = Encoder.from_preset("test", seed=0)
        prepare_encoder(encoder, mode, 1, EncoderLora(rank=4, target_modules=["q_proj", "v_proj"]))  # type: ignore[arg-type]
        counts[mode] = trainable_parameter_count(encoder)
    reference = Encoder.from_preset("test", seed=0)
    final_norm = reference.family.final_norm(reference.backbone)
    width, blocks = reference.embed_dim, len(reference.blocks)
    assert counts["frozen"] == 0
    assert counts["last-k"] == _count(reference.blocks[-1]) + _count(final_norm)
    assert counts["lora"] == blocks * 2 * 4 * (width + width)  # A (r×in) and B (out×r) per projection
    assert counts["full"] == _count(reference)


def _trained_task(config: FinetuneConfig, mode: str, steps: int) -> FinetuneTaskRunner:
    data = load_finetune_data(config, preprocess_for(config), FailureLog(Path(config.out) / "errors.csv"))
    task = FinetuneTaskRunner(config, mode, data, CPU)  # type: ignore[arg-type]
    optimization = task.build(CPU.device)
    task.begin(0)
    precision = resolve_precision("fp32", CPU.device)
    for step in range(steps):
        values = optimization.schedules.at(step)
        optimization.apply_schedules(optimization.optimizer, values)
        optimization_step(optimization, precision, None, step, task.micro_batches(step), task.loss, values)
    task.optimizer = optimization.optimizer  # type: ignore[attr-defined]
    return task


@pytest.mark.parametrize("mode", ["frozen", "last-k", "lora"])
def test_frozen_parameters_get_no_gradient_and_no_optimiser_state(
    make_config: Callable[..., FinetuneConfig], mode: str
) -> None:
    task = _trained_task(make_config(lora=EncoderLora(rank=2)), mode, steps=2)
    optimizer: torch.optim.Optimizer = task.optimizer  # type: ignore[attr-defined]
    with_state = {id(p) for p in optimizer.state}
    for name, parameter in task.network.named_parameters():
        if parameter.requires_grad:
            assert id(parameter) in with_state, name
        else:
            assert parameter.grad is None, name
            assert id(parameter) not in with_state, name
    in_groups = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    assert in_groups == trainable_parameter_count(task.network)


def _exported(out: Path, mode: str) -> dict[str, torch.Tensor]:
    return load_file(str(out / mode / "encoder" / "model.safetensors"))


def test_frozen_weights_are_bitwise_unchanged_in_the_exported_encoder(
    make_config: Callable[..., FinetuneConfig], tiny_encoder_dir: Path
) -> None:
    config = make_config(modes=["frozen", "last-k", "full"], epochs=1)
    run_finetune(config)
    source = load_file(str(tiny_encoder_dir / "model.safetensors"))
    out = Path(config.out)
    frozen, last_k, full = (_exported(out, mode) for mode in ("frozen", "last-k", "full"))
    assert frozen.keys() == source.keys() == last_k.keys()
    for name, tensor in source.items():
        assert torch.equal(frozen[name], tensor), name
        in_last_block = name.startswith("encoder.layer.1.") or name.startswith("layernorm.")
        if not in_last_block:
            assert torch.equal(last_k[name], tensor), name
    changed = [name for name in source if name.startswith("encoder.layer.1.") and "weight" in name]
    assert all(not torch.equal(last_k[name], source[name]) for name in changed)
    assert not torch.equal(
        full["embeddings.patch_embeddings.projection.weight"],
        source["embeddings.patch_embeddings.projection.weight"],
    )


def test_lora_merged_export_equals_the_adapter_on_the_base_encoder(
    make_config: Callable[..., FinetuneConfig], tmp_path: Path
) -> None:
    peft = pytest.importorskip("peft")
    from transformers import AutoModel

    lora = dict(rank=4, alpha=8.0, target_modules=["q_proj", "v_proj", "fc1"])
    merged_config = make_config(modes=["lora"], epochs=1, lora=EncoderLora(**lora), out=str(tmp_path / "m"))
    adapter_config = make_config(
        modes=["lora"], epochs=1, lora=EncoderLora(**lora, export="adapter"), out=str(tmp_path / "a")
    )
    run_finetune(merged_config)
    run_finetune(adapter_config)
    merged = AutoModel.from_pretrained(tmp_path / "m" / "lora" / "encoder").eval()
    base_folder = tmp_path / "a" / "lora" / "encoder"
    adapted = peft.PeftModel.from_pretrained(
        AutoModel.from_pretrained(base_folder), str(base_folder / LORA_ADAPTER_FOLDER)
    ).eval()
    pixels = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = adapted(pixel_values=pixels).last_hidden_state
        found = merged(pixel_values=pixels).last_hidden_state
        ours = load_encoder(tmp_path / "m" / "lora" / "encoder").forward_features(pixels).cls
    torch.testing.assert_close(found, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours, expected[:, 0], atol=1e-5, rtol=1e-5)
    trained = load_file(str(tmp_path / "m" / "lora" / "encoder" / "model.safetensors"))
    base = load_file(str(base_folder / "model.safetensors"))
    moved = sorted(name for name in base if not torch.equal(base[name], trained[name]))
    assert moved
    assert all(any(t in name for t in ("q_proj", "v_proj", "fc1", "query", "value", "fc1")) for name in moved)


@pytest.mark.parametrize("preset", ["test", "test16"])
def test_default_lora_targets_fit_both_families_and_merge_exactly(preset: str) -> None:
    from raddino.finetune.modes import merged_encoder

    encoder = Encoder.from_preset(preset, seed=0)
    adapted = prepare_encoder(encoder, "lora", 1, EncoderLora(rank=2))
    with torch.no_grad():  # B starts at 0: move it so the merge has something to fold in
        for name, parameter in encoder.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    assert trainable_parameter_count(encoder) == len(encoder.blocks) * 4 * 2 * 2 * encoder.embed_dim
    side = 4 * encoder.patch_size
    pixels = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        adapters = encoder.eval().forward_features(pixels).patch_tokens
        merged = merged_encoder(encoder, adapted).eval().forward_features(pixels).patch_tokens
        plain = Encoder.from_preset(preset, seed=0).eval().forward_features(pixels).patch_tokens
    torch.testing.assert_close(merged, adapters, atol=1e-5, rtol=1e-5)
    assert float((adapters - plain).abs().max()) > 3e-4  # small LayerScale (1e-5) of the test presets
