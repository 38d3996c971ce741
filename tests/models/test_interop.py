"""What a user of the field plugs raddino's outputs into: transformers' pipeline, timm, pandas.

Each test loads an output the way that tool's own documentation does and checks the numbers against
raddino's encoder, so the README's interop table states a measured fact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from raddino.data.preprocess import PreprocessConfig
from raddino.models import dinov2_state_dict


def _image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((70, 60)) * 255).astype(np.uint8))


def test_transformers_image_feature_extraction_pipeline_reads_an_exported_folder(
    random_encoder, tmp_path: Path
):
    """``pipeline("image-feature-extraction", model=FOLDER)`` gives the encoder's tokens, CLS first."""
    from transformers import AutoImageProcessor, pipeline

    encoder = random_encoder()
    size = encoder.image_size
    folder = encoder.save_pretrained(
        tmp_path / "model", preprocess=PreprocessConfig(shortest_edge=size, crop_size=(size, size))
    )
    extractor = pipeline("image-feature-extraction", model=str(folder), framework="pt")
    tokens = extractor(_image().convert("RGB"), return_tensors=True)  # (1, 1 + h*w, D)
    pixels = AutoImageProcessor.from_pretrained(folder)(_image().convert("RGB"), return_tensors="pt")
    with torch.no_grad():
        features = encoder.forward_features(pixels["pixel_values"])
    assert tuple(tokens.shape) == (1, 1 + (size // encoder.patch_size) ** 2, encoder.embed_dim)
    torch.testing.assert_close(tokens[:, 0], features.cls, atol=1e-5, rtol=0)
    torch.testing.assert_close(tokens[:, 1:], features.patch_sequence, atol=1e-5, rtol=0)


def test_timm_vision_transformer_loads_the_dinov2_state_dict(random_encoder):
    """A DINOv2-format export loads into timm's ViT (its DINOv2 filter) and gives the same CLS token."""
    timm = pytest.importorskip("timm")
    from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

    encoder = random_encoder()
    config = encoder.config
    model = VisionTransformer(
        img_size=encoder.image_size,
        patch_size=encoder.patch_size,
        embed_dim=encoder.embed_dim,
        depth=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        mlp_ratio=config.mlp_ratio,
        init_values=1e-5,
        num_classes=0,
    ).eval()
    state = {name: tensor.float() for name, tensor in dinov2_state_dict(encoder).items()}
    state.pop("mask_token", None)  # timm's ViT has no iBOT mask token
    model.load_state_dict(checkpoint_filter_fn(state, model))
    pixels = torch.rand(
        2, 3, encoder.image_size, encoder.image_size, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        timm_tokens = model.forward_features(pixels)  # (B, 1 + h*w, D), final norm applied
        ours = encoder.forward_features(pixels)
    assert timm.__version__
    torch.testing.assert_close(timm_tokens[:, 0], ours.cls, atol=1e-5, rtol=0)
    torch.testing.assert_close(timm_tokens[:, 1:], ours.patch_sequence, atol=1e-5, rtol=0)


def test_pandas_reads_the_embeddings_file(tmp_path: Path, xray_folder: Path, tiny_encoder_dir: Path):
    """``pd.read_parquet`` of ``raddino embed``'s output: one row per image, ``cls`` as float vectors."""
    import pandas as pd

    from raddino.features.embed import EmbedConfig, embed
    from raddino.features.store import read_embeddings

    out = tmp_path / "emb.parquet"
    embed(
        EmbedConfig(
            input=str(xray_folder), model=str(tiny_encoder_dir), out=str(out), num_workers=0, device="cpu"
        )
    )
    frame = pd.read_parquet(out)
    ids, cls = read_embeddings(out)
    assert list(frame["id"]) == ids
    np.testing.assert_array_equal(np.stack(frame["cls"].to_numpy()), cls)
