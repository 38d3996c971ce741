"""``raddino search``: the k images of an embeddings file most similar to a query image (cosine on CLS).

The query is an id of the embeddings file, or an image file that is embedded on the spot with the same
model and preprocessing the file was made with (read from its ``run.json``), so similarities compare like
with like.

The file's vectors are read from their memory-mapped copy (:mod:`raddino.features.vectors`) and compared
exactly by blocks (or through a FAISS index, ``backend: faiss``), so a search over a million images holds
no copy of them; only the neighbours' paths are looked up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow.parquet as pq
import torch

from raddino.config import save_config
from raddino.evaluate.neighbours import Backend, NeighbourError, nearest_neighbours
from raddino.evaluate.results import markdown_table, write_json
from raddino.features.cache import FeatureTable
from raddino.features.store import EmbeddingStore
from raddino.features.vectors import StorageDtype
from raddino.io.atomic import atomic_path, atomic_write_text
from raddino.training.distributed import pick_device


class SearchError(ValueError):
    """The query or the embeddings file cannot be used; the message names it."""


@dataclass
class SearchConfig:
    """Settings of ``raddino search``."""

    embeddings: str = ""
    """Embeddings ``.parquet`` to search (from ``raddino embed``)."""
    query: str = ""
    """An id of the embeddings file, or an image file (embedded with the file's model)."""
    k: int = 5
    """How many neighbours."""
    column: Literal["cls", "patch_mean"] = "cls"
    """Which vector is compared: the CLS token or the mean of the patch tokens."""
    model: str = ""
    """Encoder for an image query; default: the one recorded with the embeddings."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """Where an image query is embedded and the similarities are computed; auto: CUDA, else MPS, else
    the CPU."""
    out: str = ""
    """Folder for ``search.json``, ``search.md`` and the ``search.png`` contact sheet (optional)."""
    storage: StorageDtype = "float32"
    """How the vectors are held (a memory-mapped copy beside the embeddings): float16 halves memory and
    disk; similarities are computed in float32."""
    backend: Backend = "exact"
    """exact: every similarity, by blocks of matrix products; faiss: a FAISS index (needs the faiss
    package), approximate unless ``faiss_index`` is Flat."""
    faiss_index: str = "HNSW32"
    """FAISS index factory string for ``backend: faiss``."""

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")


@dataclass
class Neighbour:
    rank: int
    id: str
    path: str
    similarity: float


@dataclass
class SearchResult:
    query: str
    neighbours: list[Neighbour]
    outputs: dict[str, Path]

    def __str__(self) -> str:
        lines = [f"{n.rank:3d}  {n.similarity:.4f}  {n.id}  {n.path}" for n in self.neighbours]
        return f"nearest to {self.query}:\n" + "\n".join(lines)


def _recorded_model(embeddings: Path) -> str:
    run_file = EmbeddingStore(embeddings).run_file
    if not run_file.exists():
        raise SearchError(f"{embeddings}: no run.json beside it records the model; pass --model")
    return str(json.loads(run_file.read_text(encoding="utf-8"))["model"])


def embed_query(image: Path, model: str, column: str, device: str = "auto") -> np.ndarray:
    """(1, D) vector of one image with ``model`` and the model's preprocessing."""
    from raddino.data.preprocess import InferencePreprocessor
    from raddino.features.embed import preprocess_config_for
    from raddino.io.images import read_image
    from raddino.models import load_encoder

    target = pick_device(device, 0)  # type: ignore[arg-type]
    encoder = load_encoder(model).to(target).eval()
    pixels = InferencePreprocessor(preprocess_config_for(model))(read_image(image))  # (3, H, W)
    with torch.inference_mode():
        features = encoder.forward_features(pixels.unsqueeze(0).to(target))
    vector = features.cls if column == "cls" else features.patch_tokens.float().mean(dim=(2, 3))  # (1, D)
    return vector.float().cpu().numpy()


def _contact_sheet(path: Path, query: Path | None, neighbours: list[Neighbour], size: int = 160) -> Path:
    """Query (when an image) and neighbours side by side, for a quick look."""
    from PIL import Image, ImageDraw

    from raddino.io.images import read_image

    tiles: list[tuple[str, Image.Image]] = []
    for label, source in [
        ("query", query),
        *[(f"#{n.rank} {n.similarity:.3f}", Path(n.path)) for n in neighbours],
    ]:
        if source is None:
            continue
        try:
            pixels = read_image(source).pixels
            tile = Image.fromarray(np.round(pixels * 255).astype(np.uint8)).resize((size, size))
        except Exception:
            tile = Image.new("L", (size, size), 0)
        tiles.append((label, tile))
    sheet = Image.new("L", (size * len(tiles), size + 16), 255)
    draw = ImageDraw.Draw(sheet)
    for position, (label, tile) in enumerate(tiles):
        sheet.paste(tile, (position * size, 16))
        draw.text((position * size + 4, 2), label, fill=0)
    with atomic_path(path) as temporary:
        sheet.save(temporary, format="PNG")
    return path


def search(config: SearchConfig) -> SearchResult:
    """Find the ``k`` most similar images to ``config.query``.

    Raises:
        SearchError: the embeddings file or the query cannot be used.
    """
    embeddings = Path(config.embeddings)
    if not embeddings.is_file():
        raise SearchError(f"{embeddings}: no such embeddings file")
    table = FeatureTable.load(embeddings, [config.column], config.storage)
    memory = table.view(config.column)
    query_image: Path | None = None
    position = table.ids.index_of(config.query)
    if position >= 0:
        query: np.ndarray = memory.take([position])  # (1, D)
    elif Path(config.query).is_file():
        query_image = Path(config.query)
        model = config.model or _recorded_model(embeddings)
        query = embed_query(query_image, model, config.column, config.device)
    else:
        raise SearchError(f"query '{config.query}' is neither an id of {embeddings} nor an image file")
    try:
        device = pick_device(config.device, 0)
    except RuntimeError as error:
        raise NeighbourError(f"device: {error}") from error
    asked = config.k + (1 if position >= 0 else 0)  # the query itself is not an answer
    similarities, indices = nearest_neighbours(
        query, memory, asked, config.backend, device, config.faiss_index
    )
    found = [(float(s), int(i)) for s, i in zip(similarities[0], indices[0], strict=True) if i != position]
    found = found[: config.k]
    paths = pq.read_table(embeddings, columns=["path"]).column("path")
    neighbours = [
        Neighbour(rank + 1, table.ids[index], str(paths[index].as_py()), similarity)
        for rank, (similarity, index) in enumerate(found)
    ]
    outputs: dict[str, Path] = {}
    if config.out:
        out = Path(config.out)
        payload: dict[str, Any] = {
            "task": "search",
            "query": config.query,
            "embeddings": embeddings,
            "neighbours": [vars(n) for n in neighbours],
        }
        outputs["json"] = write_json(out / "search.json", payload)
        rows = [[str(n.rank), f"{n.similarity:.4f}", n.id, n.path] for n in neighbours]
        outputs["markdown"] = atomic_write_text(
            out / "search.md",
            f"# Nearest images to `{config.query}`\n\n"
            + markdown_table(["rank", "cosine", "id", "path"], rows),
        )
        outputs["figure"] = _contact_sheet(out / "search.png", query_image, neighbours)
        outputs["config"] = save_config(config, out / "search_config.yaml")
    return SearchResult(config.query, neighbours, outputs)
