"""The settable fields of a config dataclass, with the docstrings the command line shows as help.

A field's help is the docstring written under it (``batch_size: int = 32`` then ``\"\"\"Images per
step.\"\"\"``) or, failing that, its entry in the class docstring's Google-style ``Attributes:`` section.
Python keeps neither per field at run time, so both are read from the class's source and docstring.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import re
import textwrap
from dataclasses import dataclass
from typing import Any, get_type_hints

_ENTRY = re.compile(r"(\w+)(?:\s*\([^)]*\))?\s*:\s*(.*)")


@dataclass(frozen=True)
class Leaf:
    """One settable field of a config: its dotted key, type, default and docstring."""

    key: str
    annotation: Any
    default: Any
    doc: str


def _attribute_docs(docstring: str | None) -> dict[str, str]:
    """The ``name: text`` entries of a Google-style ``Attributes:`` section, continuation lines joined."""
    if not docstring:
        return {}
    lines = inspect.cleandoc(docstring).splitlines()
    docs: dict[str, str] = {}
    inside, entry_indent, name = False, -1, ""
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if not inside:
            inside = line.strip() == "Attributes:"
            continue
        if not line.strip():
            continue
        if indent == 0:  # the next section (or prose) ends the list
            break
        if entry_indent < 0:
            entry_indent = indent
        match = _ENTRY.fullmatch(line.strip())
        if indent == entry_indent and match:
            name = match.group(1)
            docs[name] = match.group(2)
        elif name and indent > entry_indent:
            docs[name] += " " + line.strip()
    return {key: " ".join(text.split()) for key, text in docs.items()}


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstrings of a dataclass's fields: under the field, else in the ``Attributes:`` section.

    Base classes contribute theirs first. A class whose source cannot be read gives only its
    ``Attributes:`` entries.
    """
    docs: dict[str, str] = {}
    for base in reversed(cls.__mro__[1:]):
        if dataclasses.is_dataclass(base):
            docs.update(field_docs(base))
    docs.update(_attribute_docs(cls.__dict__.get("__doc__")))
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return docs
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for statement, following in zip(body, [*body[1:], None], strict=True):
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = " ".join(following.value.value.split())
    return docs


def _default(item: dataclasses.Field[Any]) -> Any:
    if item.default is not dataclasses.MISSING:
        return item.default
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return dataclasses.MISSING


def is_config(annotation: Any) -> bool:
    """Whether a field's type is itself a config dataclass (a section of dotted keys)."""
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def leaves(cls: type, prefix: str = "") -> list[Leaf]:
    """Every non-dataclass field of ``cls``, nested sections flattened to dotted keys, in field order."""
    hints = get_type_hints(cls)
    docs = field_docs(cls)
    found: list[Leaf] = []
    for item in dataclasses.fields(cls):
        annotation = hints[item.name]
        if is_config(annotation):
            found.extend(leaves(annotation, f"{prefix}{item.name}."))
        else:
            found.append(Leaf(prefix + item.name, annotation, _default(item), docs.get(item.name, "")))
    return found
