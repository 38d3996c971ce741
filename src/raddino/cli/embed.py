"""``raddino embed``: CLS / patch embeddings of a folder or manifest, resumable, per-file errors recorded."""

from __future__ import annotations

from raddino.cli.app import app
from raddino.cli.generate import ConfigCommand, register_deferred


def _spec() -> ConfigCommand:
    from raddino.features.embed import EmbedConfig, embed
    from raddino.features.store import EmbeddingStoreError
    from raddino.io.lock import LockError
    from raddino.io.manifest import ManifestError

    def check(settings: EmbedConfig) -> None:
        if not settings.model:
            raise ValueError(
                "no model given: pass --model (a folder, a .safetensors/.pth file, preset:NAME or a hub id)"
            )

    return ConfigCommand(
        "embed",
        EmbedConfig,
        embed,
        arguments=("input",),
        rename={"num_workers": "workers", "layers": "layer", "columns": "column"},
        short={"model": "-m", "out": "-o"},
        aliases={"--num-workers": "num_workers"},
        errors=(ManifestError, EmbeddingStoreError, ValueError, OSError),
        error_codes={LockError: 3},
        check=check,
    )


register_deferred(
    app, "embed", _spec, help="Embed every image with an encoder; rerun the same command to resume."
)
