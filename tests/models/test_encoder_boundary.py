"""Nothing outside ``raddino.models`` reaches into a transformers backbone.

import-linter (``make lint``) forbids ``transformers.models`` imports outside ``raddino.models``; it cannot
see ``from transformers import Dinov2Model`` (the lazy top-level package) or a module path written as an
attribute chain, which this test catches.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import raddino

PACKAGE = Path(raddino.__file__).resolve().parent
FAMILY_CLASS = re.compile(r"^(Dinov2|DINOv3|Dinov3)")
# Attribute chains that are transformers' module layout, not the encoder's contract.
INTERNAL_PATHS = re.compile(
    r"\.encoder\.layer\b|backbone\.backbone|\.embeddings\.(patch_embeddings|mask_token|cls_token|"
    r"position_embeddings|register_tokens)|\.layer_scale[12]\b"
)


def _outside_models() -> list[Path]:
    return [
        path for path in sorted(PACKAGE.rglob("*.py")) if "models" not in path.relative_to(PACKAGE).parts[:1]
    ]


def test_only_models_imports_transformers_model_code():
    offences = []
    for path in _outside_models():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("transformers"):
                if (node.module or "").startswith("transformers.models"):
                    offences.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {node.module}")
                for alias in node.names:
                    if FAMILY_CLASS.match(alias.name):
                        offences.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("transformers.models"):
                        offences.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {alias.name}")
    assert not offences, offences


def test_no_module_path_of_a_backbone_is_named_outside_models():
    offences = []
    for path in _outside_models():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if INTERNAL_PATHS.search(line):
                offences.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not offences, offences
    assert len(_outside_models()) > 50  # the scan saw the package
