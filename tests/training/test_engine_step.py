"""The optimisation step (accumulation, non-finite losses, clipping, hooks, gradient sync) and precision."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import pytest
import torch
from torch import nn

from raddino.training.precision import MixedPrecision, resolve_precision
from raddino.training.schedules import Schedules, constant_schedule
from raddino.training.step import (
    LossTerms,
    NonFiniteLossError,
    Optimization,
    apply_learning_rate,
    optimization_step,
)

CPU = torch.device("cpu")
FP32 = MixedPrecision(CPU, None)


def _optimization(lr: float = 0.1, **settings: object) -> Optimization:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    return Optimization(
        model, optimizer, Schedules({"learning_rate": constant_schedule(lr, 10)}, 10), **settings
    )  # type: ignore[arg-type]


def _mse(model: nn.Module) -> object:
    def loss(batch: tuple[torch.Tensor, torch.Tensor], values: Mapping[str, float]) -> LossTerms:
        inputs, targets = batch
        return LossTerms((model(inputs) - targets).square().mean())

    return loss


def test_weighted_micro_batches_give_the_whole_batch_gradient_and_mean_loss() -> None:
    inputs, targets = torch.randn(4, 3, generator=torch.Generator().manual_seed(1)), torch.ones(4, 1)
    whole, split = _optimization(), _optimization()
    full = optimization_step(whole, FP32, None, 0, [((inputs, targets), 1.0)], _mse(whole.model), {})
    parts = [((inputs[:3], targets[:3]), 0.75), ((inputs[3:], targets[3:]), 0.25)]
    accumulated = optimization_step(split, FP32, None, 0, parts, _mse(split.model), {})
    assert accumulated.losses["loss"] == pytest.approx(full.losses["loss"], rel=1e-6)
    for a, b in zip(whole.model.parameters(), split.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert not torch.equal(whole.model.weight, _optimization().model.weight)  # one step was taken


def test_a_non_finite_term_is_named_and_the_weights_are_not_touched() -> None:
    optimization = _optimization()
    before = optimization.model.weight.detach().clone()

    def loss(batch: object, values: Mapping[str, float]) -> LossTerms:
        prediction = optimization.model(torch.ones(1, 3)).sum()
        return LossTerms(
            prediction * float("nan"), {"dino": prediction, "koleo": prediction * 0 + float("inf")}
        )

    with pytest.raises(NonFiniteLossError, match=r"^step 3: loss term 'koleo' is inf; stopping") as caught:
        optimization_step(optimization, FP32, None, 2, [(None, 1.0)], loss, {}, advice="lower the lr")
    assert "\n" not in str(caught.value)
    assert str(caught.value).endswith("lower the lr)")
    assert torch.equal(optimization.model.weight, before)


def test_clipping_logs_the_norm_before_it_and_hooks_see_the_stepped_weights() -> None:
    seen: list[tuple[int, float, dict[str, float]]] = []
    optimization = _optimization(lr=1.0, max_grad_norm=0.1)
    optimization.after_step.append(
        lambda step, values: seen.append((step, float(model.bias.detach()), dict(values)))
    )
    model = optimization.model
    start = [p.detach().clone() for p in model.parameters()]
    batch = (torch.full((2, 3), 10.0), torch.zeros(2, 1))
    model.zero_grad()
    _mse(model)(batch, {}).total.backward()  # type: ignore[operator]
    expected = torch.cat([p.grad.flatten() for p in model.parameters()]).norm()  # type: ignore[union-attr]
    result = optimization_step(optimization, FP32, None, 4, [(batch, 1.0)], _mse(model), {"momentum": 0.9})
    assert result.grad_norms["grad_norm"] == pytest.approx(float(expected), rel=1e-5)
    after = [p.detach() for p in model.parameters()]
    moved = torch.cat([(p - s).flatten() for p, s in zip(after, start, strict=True)]).norm()
    assert float(moved) == pytest.approx(0.1, rel=1e-4)  # SGD lr 1: the step is the clipped gradient
    assert seen == [(4, float(model.bias.detach()), {"momentum": 0.9})]
    assert seen[0][1] != float(start[1])


def test_gradient_sync_is_off_for_every_micro_batch_but_the_last() -> None:
    calls: list[bool] = []

    @contextlib.contextmanager
    def sync(enabled: bool) -> Iterator[None]:
        calls.append(enabled)
        yield

    optimization = _optimization(gradient_sync=sync)
    batch = (torch.ones(1, 3), torch.ones(1, 1))
    micro_batches = ((batch, 1 / 3) for _ in range(3))  # a generator: drawn one ahead
    optimization_step(optimization, FP32, None, 0, micro_batches, _mse(optimization.model), {})
    assert calls == [False, False, True]


def test_schedules_are_written_into_every_group_with_its_scale() -> None:
    weights, biases = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW(
        [{"params": [weights], "lr_scale": 0.2}, {"params": [biases], "wd_scale": 0.0}]
    )
    apply_learning_rate(optimizer, {"learning_rate": 1e-3, "weight_decay": 0.04})
    assert [group["lr"] for group in optimizer.param_groups] == [pytest.approx(2e-4), 1e-3]
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.04, 0.0]


def test_precision_per_device() -> None:
    assert resolve_precision("auto", CPU).dtype is None  # fp32 on the CPU: exact numbers
    bf16 = resolve_precision("bf16", CPU)
    with bf16.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert bf16.grad_scaler() is None  # bf16 needs no loss scaling
    with pytest.raises(ValueError, match="precision fp16 needs a GPU"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", CPU)  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 loss scaling is for CUDA")
def test_fp16_on_cuda_steps_through_the_grad_scaler() -> None:
    device = torch.device("cuda")
    fp16 = resolve_precision("fp16", device)
    scaler = fp16.grad_scaler()
    assert scaler is not None
    optimization = _optimization()
    optimization.model.to(device)
    batch = (torch.ones(2, 3, device=device), torch.zeros(2, 1, device=device))
    result = optimization_step(optimization, fp16, scaler, 0, [(batch, 1.0)], _mse(optimization.model), {})
    assert result.losses["loss"] > 0
    assert scaler.get_scale() > 1
