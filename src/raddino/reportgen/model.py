"""LLaVA-style report generator: frozen-encoder patch tokens → 2-layer MLP projector → causal language model.

The encoder is not part of this module: its patch tokens are computed once (``raddino embed``) and fed in
as ``image_tokens`` (B, N, D_vision). The projector maps them to the language model's embedding width and
they take the place of the ``<image>`` placeholder in the prompt (paper §4.5, following LLaVA-1.5).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

IMAGE_PLACEHOLDER = "<image>"
# The paper's instruction (RAD-DINO §4.5, Methods "Report generation").
PROMPT = f"{IMAGE_PLACEHOLDER} Provide a description of the findings in the radiology image."
IGNORE_INDEX = -100  # label value that transformers' cross-entropy skips


def embedding_width(language_model: PreTrainedModel) -> int:
    """Width of a language model's input token embeddings (its hidden size)."""
    embeddings = language_model.get_input_embeddings()
    assert isinstance(embeddings, nn.Embedding), type(embeddings)
    return embeddings.embedding_dim


class Projector(nn.Module):
    """LLaVA-1.5's ``mlp2x_gelu`` connector: Linear(D_vision → D_lm), GELU, Linear(D_lm → D_lm).

    Args:
        vision_dim: Width of the encoder's patch tokens.
        text_dim: Width of the language model's input embeddings.
        dropout: Dropout on the incoming image tokens in train mode (LLaVA uses none; it regularises a
            projector trained on few studies). Not part of the saved weights.
    """

    def __init__(self, vision_dim: int, text_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.vision_dim = vision_dim
        self.text_dim = text_dim
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(nn.Linear(vision_dim, text_dim), nn.GELU(), nn.Linear(text_dim, text_dim))

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """Project (B, N, D_vision) patch tokens to (B, N, D_lm) language-model embeddings."""
        return self.layers(self.dropout(image_tokens))


class ReportGenerator(nn.Module):
    """Projector + causal language model; the image tokens fill the positions marked by ``image_mask``.

    Args:
        projector: Maps encoder tokens to the language model's width.
        language_model: Any transformers causal LM (``AutoModelForCausalLM``).
    """

    projector: Projector
    language_model: PreTrainedModel

    def __init__(self, projector: Projector, language_model: PreTrainedModel) -> None:
        super().__init__()
        text_dim = embedding_width(language_model)
        if projector.text_dim != text_dim:
            raise ValueError(
                f"projector output width {projector.text_dim} != language model embedding width {text_dim}"
            )
        self.projector = projector
        self.language_model = language_model

    def embed_inputs(
        self, input_ids: torch.Tensor, image_mask: torch.Tensor, image_tokens: torch.Tensor
    ) -> torch.Tensor:
        """Text embeddings with the projected image tokens written at the image positions.

        Args:
            input_ids: (B, T) token ids; image positions hold any valid id (they are overwritten).
            image_mask: (B, T) bool, exactly N True positions per row.
            image_tokens: (B, N, D_vision) encoder patch tokens.

        Returns:
            (B, T, D_lm) input embeddings for the language model.
        """
        embeddings = self.language_model.get_input_embeddings()(input_ids)  # (B, T, D_lm)
        projected = self.projector(image_tokens.to(embeddings.dtype))  # (B, N, D_lm)
        batch, count = image_tokens.shape[:2]
        per_row = image_mask.sum(dim=1)
        if not bool((per_row == count).all()):
            raise ValueError(f"each row needs {count} image positions, got {per_row.tolist()}")
        # Row-major boolean indexing visits each row's image positions in order, so image token n of
        # row b lands on that row's n-th image position.
        embeddings = embeddings.masked_scatter(image_mask.unsqueeze(-1), projected.reshape(batch * count, -1))
        return embeddings

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        image_mask: torch.Tensor,
        image_tokens: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean next-token cross-entropy over the report tokens (labels ≠ -100), or logits without labels.

        Args:
            input_ids: (B, T) prompt + report ids, right-padded.
            attention_mask: (B, T) 1 for real tokens.
            image_mask: (B, T) True at the image positions.
            image_tokens: (B, N, D_vision).
            labels: (B, T) the report ids, ``-100`` at the prompt, image and padding positions.
        """
        embeddings = self.embed_inputs(input_ids, image_mask, image_tokens)
        positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # (B, T), right or left padding alike
        output = self.language_model(
            inputs_embeds=embeddings, attention_mask=attention_mask, position_ids=positions, labels=labels
        )
        return output.loss if labels is not None else output.logits

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters with ``requires_grad`` (the projector, and the LM unless it was frozen)."""
        return [parameter for parameter in self.parameters() if parameter.requires_grad]
