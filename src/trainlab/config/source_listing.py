"""Every resolved field of a config file with where its value comes from.

``trainlab config show FILE --provenance`` prints this: each leaf of the resolved config is
**published** or a **reading** (a ``source:`` entry covers it), **set** in a file or by
``--set`` without a source entry, or left at its **default**.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ._messages import format_path
from .loading import _resolve
from .overrides import _key_parts, _parse_override, apply_overrides
from .run import RunConfig, _validate
from .source import SourceEntry, covering_key

Kind = Literal["published", "reading", "set", "default"]
KINDS: tuple[Kind, ...] = ("published", "reading", "set", "default")
#: Top-level keys of a resolved config that are not settings: the run's identity (name, and
#: seed: a reproduction row runs several), where it writes (output), the section this listing
#: explains (source), and the versions and data fingerprint a run directory adds (provenance).
LEFT_OUT = ("name", "seed", "output", "source", "provenance")


@dataclass(frozen=True)
class FieldSource:
    """One resolved field and where its value comes from.

    ``key`` is the source key covering the field (None without one); ``where`` is the file
    or ``--set`` that set it (None: a default).
    """

    path: str
    value: Any
    kind: Kind
    key: str | None = None
    entry: SourceEntry | None = None
    where: str | None = None

    def origin(self, limit: int = 0) -> str:
        """``published 002:15 "quote"``, ``reading: why``, ``set in FILE (no source entry)``,
        ``set by --set KEY=VALUE`` or ``default``.

        Args:
            limit: cut the quote or the reading to this many characters. Default 0: whole.
        """
        entry = self.entry
        if self.kind == "published" and entry is not None:
            return f'published {entry.reference} "{_cut(entry.text, limit)}"'
        if self.kind == "reading" and entry is not None:
            return f"reading: {_cut(entry.text, limit)}"
        if self.kind == "set" and self.where is not None:
            if self.where.startswith("--set"):
                return f"set by {self.where}" + (f" (over its source entry {self.key})" if self.key else "")
            return f"set in {self.where} (no source entry)"
        return "default"


@dataclass
class SourceListing:
    """The resolved config of a file and the origin of each of its fields."""

    config: RunConfig
    rows: list[FieldSource]

    def counts(self) -> dict[Kind, int]:
        """How many fields are of each kind (published, reading, set, default)."""
        return {kind: sum(row.kind == kind for row in self.rows) for kind in KINDS}

    def summary(self) -> str:
        """``12 published, 8 reading, 3 set without source, 40 default``."""
        n = self.counts()
        return (f"{n['published']} published, {n['reading']} reading, {n['set']} set without source, "
                f"{n['default']} default")


def list_sources(path: str | Path, overrides: list[str] | None = None) -> SourceListing:
    """The resolved config of a run file (or of a study file's base run) with each field's origin.

    Args:
        path: a run file, a study file (its ``study:`` section is left out) or a run
            directory's ``config.yaml`` (its ``provenance:`` section is left out).
        overrides: ``key.path=value`` strings applied as ``trainlab run --set`` would. Default None.

    Raises:
        ConfigError: the file does not load or validate (naming the file and field).
    """
    origins: dict[str, str] = {}
    data = _resolve(Path(path), [], origins)
    for key in ("study", "provenance"):
        data.pop(key, None)
    data = apply_overrides(data, [_parse_override(t) for t in overrides or []], str(path), origins)
    config = _validate(data, str(path), origins)
    resolved = config.model_dump(mode="json")
    rows: list[FieldSource] = []
    for field, value in _leaves({k: v for k, v in resolved.items() if k not in LEFT_OUT}, ()):
        where = _set_where(field, data, origins)
        key = covering_key(field, config.source)
        entry = config.source.get(key) if key is not None else None
        if where is not None and where.startswith("--set"):
            kind: Kind = "set"  # the override replaced whatever the source entry explains
        elif entry is not None:
            kind = entry.kind
        else:
            kind = "set" if where is not None else "default"
        rows.append(FieldSource(field, value, kind, key, entry, where))
    return SourceListing(config, rows)


def _leaves(node: Any, prefix: tuple[str | int, ...]) -> list[tuple[str, Any]]:
    """``(path, value)`` of every leaf; lists of sections are entered item by item (``model.conv[0]``)."""
    if isinstance(node, dict) and node:
        return [leaf for key, value in node.items() for leaf in _leaves(value, (*prefix, key))]
    if isinstance(node, list) and node and all(isinstance(item, dict) for item in node):
        return [leaf for index, item in enumerate(node) for leaf in _leaves(item, (*prefix, index))]
    return [(format_path(prefix), node)]


def _set_where(field: str, data: dict[str, Any], origins: dict[str, str]) -> str | None:
    """The file (or ``--set``) that set ``field``, or None when it is a default.

    A field is set when its own path was written, or when an enclosing path was written as
    a value rather than a section (a list sets its items: ``conv: [...]`` sets
    ``model.conv[0].filters``). An enclosing *section* only sets the keys written in it.
    """
    parts = _key_parts(field)
    for n in range(len(parts), 0, -1):
        where = origins.get(format_path(parts[:n]))
        if where is None:
            continue
        if n == len(parts) or not isinstance(_get(data, parts[:n]), dict):
            return where
        return None
    return None


def _get(data: Any, parts: list[str | int]) -> Any:
    for part in parts:
        if isinstance(part, int):
            data = data[part] if isinstance(data, list) and part < len(data) else None
        else:
            data = data.get(part) if isinstance(data, dict) else None
    return data


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if not limit or len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["KINDS", "LEFT_OUT", "FieldSource", "SourceListing", "list_sources"]
