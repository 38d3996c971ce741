"""Student, EMA teacher, heads and the three objectives (DINOv2's ``train/ssl_meta_arch.py``).

The student and the teacher are the same network: an :class:`~raddino.models.Encoder`, the DINO head on the
CLS token and, for iBOT, a head on the masked patch tokens (the DINO head itself unless
``ibot.separate_head``, as in DINOv2). The teacher starts as a copy of the student, has no drop-path and
no gradient, and follows the student by EMA (:meth:`SSLMetaArch.update_teacher`). With ``gram.use_loss``
a third copy of the encoder, the Gram teacher (:mod:`raddino.pretrain.gram_teacher`), anchors the
student's patch similarities (DINOv3).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from raddino.models import DINOHead, Encoder, load_encoder
from raddino.pretrain.config import PretrainConfig
from raddino.pretrain.gram_teacher import GramTeacher
from raddino.pretrain.heads import build_heads
from raddino.pretrain.losses import DINOLoss, KoLeoLoss, iBOTPatchLoss
from raddino.training import LossTerms  # the engine's: ``total`` is back-propagated, ``terms`` logged

Batch = dict[str, torch.Tensor]


def build_encoder(config: PretrainConfig) -> Encoder:
    """The student's encoder: ``student.pretrained_weights`` when set, else preset ``student.arch`` at
    random (seeded by ``train.seed``)."""
    source = config.student.pretrained_weights
    if source:
        encoder = load_encoder(source, dtype=torch.float32)
    else:
        encoder = Encoder.from_preset(
            config.student.arch, seed=config.train.seed, **config.student.arch_overrides
        )
    encoder.set_drop_path(config.student.drop_path_rate)  # uniform, DINOv2's drop_path_uniform
    if config.student.activation_checkpointing:
        encoder.set_activation_checkpointing(True)
    return encoder


class SSLNetwork(nn.Module):
    """Encoder + DINO head (+ a separate iBOT head): one module so DDP/FSDP wrap it once.

    Student and teacher share this class, so their parameters line up name for name for the EMA. Its
    state dict holds ``encoder.*`` (the :class:`~raddino.models.Encoder`'s own names), ``dino_head.*``
    and ``ibot_head.*``; :func:`split_network_state` takes one apart.
    """

    def __init__(self, encoder: Encoder, dino_head: DINOHead, ibot_head: DINOHead | None) -> None:
        super().__init__()
        self.encoder = encoder
        self.dino_head = dino_head
        self.ibot_head = ibot_head

    def heads(self) -> dict[str, nn.Module]:
        """The heads by name (for parameter groups and clipping)."""
        heads: dict[str, nn.Module] = {"dino_head": self.dino_head}
        if self.ibot_head is not None:
            heads["ibot_head"] = self.ibot_head
        return heads

    def clip_groups(self) -> dict[str, nn.Module]:
        """The modules whose gradient norms are clipped and logged separately, as DINOv2 clips each
        student module: ``backbone`` (the encoder) and each head."""
        return {"backbone": self.encoder, **self.heads()}

    def _head_logits(
        self, global_cls: torch.Tensor, local_cls: torch.Tensor | None, patch_tokens: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The DINO head's logits of every token it sees, and the iBOT head's, from one call of each.

        Every token the DINO head sees (global and local CLS, and the masked patches when iBOT shares it,
        as DINOv2) goes through it in one batch, so its weight-normalised prototype matrix is formed once
        per network per step rather than once per crop size (with 65,536 prototypes that matrix, not the
        tokens, is what costs).
        """
        dino_inputs = [global_cls]  # (2B, D)
        if local_cls is not None:
            dino_inputs.append(local_cls)  # (nB, D)
        patch_logits = None
        if patch_tokens is not None and self.ibot_head is not None:
            patch_logits = self.ibot_head(patch_tokens)  # (M, K')
        elif patch_tokens is not None:
            dino_inputs.append(patch_tokens)  # (M, D)
        logits = self.dino_head(torch.cat(dino_inputs) if len(dino_inputs) > 1 else global_cls)
        return logits, patch_logits  # (2B [+ nB] [+ M], K): the rows in the order above; (M, K') or None

    def forward(
        self,
        global_crops: torch.Tensor,
        local_crops: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
        mask_indices: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Every crop's tokens and logits as whole tensors; :meth:`named_outputs` names their parts.

        Under FSDP2 this is the root unit, whose outputs get the pre-backward hooks; a view among them
        (the CLS column of the tokens, one crop size's rows of the logits) makes FSDP2 warn that an
        in-place op on it would skip the all-gather. So no output is a view: the parts are views taken
        after the call (:func:`call_named`).

        Args:
            global_crops: (2B, 3, S, S), crop-major.
            local_crops: (nB, 3, s, s) or None (teacher, or no local crops).
            masks: (2B, N) bool patches replaced by the mask token (student with iBOT), or None.
            mask_indices: (M,) flat indices into the (2B·N) patch tokens whose iBOT logits to return.

        Returns:
            ``global_cls`` (2B, D), ``global_patch_grid`` (2B, D, h, w), ``logits`` (2B + nB [+ M], K)
            of the DINO head (global CLS, local CLS, then the masked patches when iBOT shares the head),
            ``patch_logits`` (M, K') from a separate iBOT head.
        """
        features = self.encoder(global_crops, masks)
        patch_tokens = None
        if mask_indices is not None:
            patch_tokens = features.patch_sequence.flatten(0, 1).index_select(0, mask_indices)  # (M, D)
        local_cls = None
        if local_crops is not None and local_crops.shape[0] > 0:
            local_cls = self.encoder(local_crops).cls  # (nB, D)
        logits, patch_logits = self._head_logits(features.cls, local_cls, patch_tokens)
        outputs = {
            "global_cls": features.cls.clone(),  # (2B, D): a copy of the CLS column, not a view of it
            "global_patch_grid": features.patch_tokens,  # (2B, D, h, w), its own tensor
            "logits": logits,
        }
        if patch_logits is not None:
            outputs["patch_logits"] = patch_logits
        return outputs

    @staticmethod
    def named_outputs(outputs: dict[str, torch.Tensor], n_local: int, patches: bool) -> Batch:
        """``global_cls``, ``global_patches`` (2B, N, D), ``global_logits`` (2B, K), ``local_logits``
        (nB, K) when ``n_local``, ``patch_logits`` (M, K') when ``patches`` (mask indices were given)."""
        n_global = outputs["global_cls"].shape[0]
        logits = outputs["logits"]
        named = {
            "global_cls": outputs["global_cls"],
            "global_patches": outputs["global_patch_grid"].flatten(2).transpose(1, 2),
            "global_logits": logits[:n_global],
        }
        if n_local:
            named["local_logits"] = logits[n_global : n_global + n_local]
        if patches:
            named["patch_logits"] = outputs.get("patch_logits", logits[n_global + n_local :])
        return named


def call_named(network: nn.Module, *crops: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """``network(global_crops, local_crops, masks, mask_indices)`` (an :class:`SSLNetwork`, wrapped for
    training or not) with its outputs named by :meth:`SSLNetwork.named_outputs`."""
    local_crops, mask_indices = crops[1], crops[3]
    n_local = local_crops.shape[0] if local_crops is not None else 0
    return SSLNetwork.named_outputs(network(*crops), n_local, mask_indices is not None)


class SSLObjective(nn.Module):
    """DINO + iBOT + KoLeo from student and teacher outputs; owns the centres (saved in checkpoints)."""

    def __init__(self, config: PretrainConfig) -> None:
        super().__init__()
        self.config = config
        self.dino_loss = DINOLoss(config.dino.head_n_prototypes)
        patch_prototypes = (
            config.ibot.head_n_prototypes if config.ibot.separate_head else config.dino.head_n_prototypes
        )
        self.ibot_loss = iBOTPatchLoss(patch_prototypes)
        self.koleo_loss = KoLeoLoss()

    @property
    def use_ibot(self) -> bool:
        return self.config.ibot.loss_weight > 0

    @torch.no_grad()
    def teacher_targets(
        self, teacher: dict[str, torch.Tensor], teacher_temp: float, n_masked_patches: torch.Tensor | None
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Centred (or Sinkhorn-Knopp balanced) teacher probabilities; updates the EMA centres."""
        cls_logits = teacher["global_logits"]  # (2B, K)
        sinkhorn = self.config.train.centering == "sinkhorn_knopp"
        if sinkhorn:
            cls_probs = self.dino_loss.sinkhorn_knopp_teacher(cls_logits, teacher_temp)
        else:
            cls_probs = self.dino_loss.softmax_center_teacher(cls_logits, teacher_temp)
            self.dino_loss.update_center(cls_logits)
        patch_probs = None
        if "patch_logits" in teacher:
            patch_logits = teacher["patch_logits"]  # (M, K')
            if sinkhorn:
                assert n_masked_patches is not None
                patch_probs = self.ibot_loss.sinkhorn_knopp_teacher(
                    patch_logits, teacher_temp, n_masked_patches
                )
            else:
                patch_probs = self.ibot_loss.softmax_center_teacher(patch_logits, teacher_temp)
                self.ibot_loss.update_center(patch_logits)
        return list(cls_probs.chunk(2)), patch_probs

    def forward(
        self,
        student: dict[str, torch.Tensor],
        teacher: dict[str, torch.Tensor],
        batch: Batch,
        teacher_temp: float,
    ) -> LossTerms:
        """The weighted loss terms.

        DINO: cross-entropy over every (teacher global crop, other student crop) pair, averaged over pairs
        (DINOv2's 1/(n_global·(n_global−1) + n_global·n_local) normalisation); KoLeo on the student's
        encoder CLS tokens, per global crop and summed (DINOv2); iBOT on the masked patches, per image.
        """
        config = self.config
        teacher_probs, patch_probs = self.teacher_targets(
            teacher, teacher_temp, batch.get("n_masked_patches")
        )
        student_logits = list(student["global_logits"].chunk(2))  # 2 × (B, K)
        if "local_logits" in student:
            student_logits += list(student["local_logits"].chunk(config.crops.local_crops_number))
        terms: dict[str, torch.Tensor] = {}
        total = student["global_logits"].new_zeros((), dtype=torch.float32)
        if config.dino.loss_weight > 0:
            terms["dino"] = self.dino_loss(student_logits, teacher_probs)
            total = total + config.dino.loss_weight * terms["dino"]
        if config.dino.koleo_loss_weight > 0:
            terms["koleo"] = sum(
                (self.koleo_loss(cls) for cls in student["global_cls"].chunk(2)),
                start=total.new_zeros(()),
            )
            total = total + config.dino.koleo_loss_weight * terms["koleo"]
        if self.use_ibot and patch_probs is not None:
            terms["ibot"] = self.ibot_loss.forward_masked(
                student["patch_logits"], patch_probs, batch["masks"], batch.get("masks_weight")
            )
            total = total + config.ibot.loss_weight * terms["ibot"]
        return LossTerms(total=total, terms=terms)


class SSLMetaArch(nn.Module):
    """Student, teacher and objective of one pre-training run.

    Args:
        config: The run's config.
        encoder: The student's encoder (``build_encoder(config)`` when None).
    """

    def __init__(self, config: PretrainConfig, encoder: Encoder | None = None) -> None:
        super().__init__()
        self.config = config
        encoder = encoder if encoder is not None else build_encoder(config)
        ibot = config.ibot
        dino_head, ibot_head = build_heads(config, encoder)
        mask_token = encoder.mask_token
        if mask_token is not None and ibot.loss_weight <= 0:
            mask_token.requires_grad_(False)  # unused without iBOT; DDP would wait for its gradient
        self.student = SSLNetwork(encoder, dino_head, ibot_head)
        self.teacher = copy.deepcopy(self.student)
        self.teacher.encoder.set_drop_path(0.0)
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.objective = SSLObjective(config)
        self.gram_teacher = GramTeacher(self.teacher.encoder, config.gram) if config.gram.use_loss else None

    def train(self, mode: bool = True) -> SSLMetaArch:
        """Train mode for the student only: the teachers always run in eval mode (no drop-path)."""
        super().train(mode)
        self.teacher.eval()
        if self.gram_teacher is not None:
            self.gram_teacher.eval()
        return self

    @torch.no_grad()
    def update_teacher(self, momentum: float, student: nn.Module | None = None) -> None:
        """EMA: ``teacher ← momentum · teacher + (1 − momentum) · student`` on every parameter.

        Args:
            momentum: This step's value of the cosine 0.992 → 1.0 schedule.
            student: The module holding the student's current parameters when it is wrapped (DDP's
                ``.module``); shards are updated in place under FSDP.
        """
        source = self.student if student is None else student
        _reshard(self.teacher)  # an FSDP2 root keeps its parameters gathered after a forward
        _reshard(source)
        teacher_params = [param for _, param in sorted(self.teacher.named_parameters())]
        student_params = [param for _, param in sorted(source.named_parameters())]
        if len(teacher_params) != len(student_params):
            raise RuntimeError("student and teacher parameters do not line up")
        teacher_local = [_local(param) for param in teacher_params]
        student_local = [
            _local(param).to(t.dtype) for param, t in zip(student_params, teacher_local, strict=True)
        ]
        torch._foreach_mul_(teacher_local, momentum)
        torch._foreach_add_(teacher_local, student_local, alpha=1.0 - momentum)

    def forward_losses(
        self,
        batch: Batch,
        teacher_temp: float,
        student: nn.Module | None = None,
        gram_weight: float = 0.0,
    ) -> LossTerms:
        """One step's loss terms for a collated batch (``student`` is the wrapped student when wrapped).

        Args:
            batch: ``global_crops`` (2B, 3, S, S), ``local_crops`` (nB, 3, s, s), ``masks`` (2B, N) bool,
                ``mask_indices`` (M,), ``masks_weight`` (M,), ``n_masked_patches`` ().
            teacher_temp: This step's teacher temperature.
            gram_weight: This step's Gram anchoring weight (used once the Gram teacher is loaded).
        """
        use_ibot = self.objective.use_ibot
        mask_indices = batch["mask_indices"] if use_ibot else None
        with torch.no_grad():
            teacher_outputs = call_named(self.teacher, batch["global_crops"], None, None, mask_indices)
        network = self.student if student is None else student
        local_crops = batch.get("local_crops")
        masks = batch["masks"] if use_ibot else None
        student_outputs = call_named(network, batch["global_crops"], local_crops, masks, mask_indices)
        losses = self.objective(student_outputs, teacher_outputs, batch, teacher_temp)
        if self.gram_teacher is None or not self.gram_teacher.loaded:
            return losses
        gram = self.gram_teacher(student_outputs["global_patches"], batch["global_crops"], masks)
        terms = {**losses.terms, "gram": gram}
        return LossTerms(total=losses.total + gram_weight * gram, terms=terms)


def _reshard(module: nn.Module) -> None:
    """Free gathered FSDP2 parameters so every parameter is this rank's shard again (no-op otherwise)."""
    from torch.distributed.fsdp import FSDPModule

    for submodule in module.modules():
        if isinstance(submodule, FSDPModule):
            submodule.reshard()


def _local(param: torch.Tensor) -> torch.Tensor:
    """The tensor this process holds (its shard under FSDP2, where parameters are DTensors)."""
    to_local = getattr(param, "to_local", None)
    return to_local() if callable(to_local) else param.data


# Child names of checkpoints written before ``SSLNetwork.backbone`` became ``encoder``.
_LEGACY_PARTS = {"backbone": "encoder"}


def split_network_state(state: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """A student or teacher state dict taken apart by :class:`SSLNetwork` part.

    Args:
        state: ``SSLNetwork.state_dict()`` as a checkpoint stores it.

    Returns:
        ``{"encoder": ..., "dino_head": ..., "ibot_head": ...}`` (the parts present), each the part's own
        state dict: ``parts["encoder"]`` loads with ``Encoder.load_state_dict`` or
        :meth:`Encoder.from_state_dict`. Checkpoints from before the encoder was called ``encoder``
        (``backbone.*``) give the same parts.
    """
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        part, _, name = key.partition(".")
        parts.setdefault(_LEGACY_PARTS.get(part, part), {})[name] = value
    return parts


def _renamed(name: Any) -> Any:
    if not isinstance(name, str):
        return name
    part, dot, rest = name.partition(".")
    return _LEGACY_PARTS.get(part, part) + dot + rest


def rename_legacy_parts(payload: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint payload with the names of checkpoints written before ``SSLNetwork.backbone`` became
    ``encoder`` (``backbone.*``) brought to today's (``encoder.*``), so those runs still resume.

    Renames the keys of ``student`` and ``teacher`` and the parameter names of ``optimizer`` (its
    ``state`` keys and each group's ``params``); a payload with today's names is returned unchanged.
    """
    if not any(key.startswith("backbone.") for key in payload.get("student", {})):
        return payload
    upgraded = dict(payload)
    for network in ("student", "teacher"):
        upgraded[network] = {_renamed(key): value for key, value in payload[network].items()}
    optimizer = payload.get("optimizer")
    if isinstance(optimizer, dict) and "state" in optimizer:
        upgraded["optimizer"] = {
            **optimizer,
            "state": {_renamed(name): value for name, value in optimizer["state"].items()},
            "param_groups": [
                {**group, "params": [_renamed(name) for name in group.get("params", [])]}
                for group in optimizer.get("param_groups", [])
            ],
        }
    return upgraded


__all__ = [
    "LossTerms",
    "SSLMetaArch",
    "SSLNetwork",
    "SSLObjective",
    "build_encoder",
    "rename_legacy_parts",
    "split_network_state",
]
