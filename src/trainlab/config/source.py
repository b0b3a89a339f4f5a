"""The ``source:`` section of a run or study file: where the value of each setting comes from.

Each key is a dotted field path (``optimizer.lr``; ``model.conv`` covers every field below
it) and each entry says either **published** (a verbatim quote of a source report, with
``at: FILE:LINE`` in the reports' folder, or a line of the authors' code with
``code: owner/repo:path``) or **reading** (our choice where the report is silent: why,
and in ``tried`` what else was tried with its measured effect). See docs/provenance.md.

The model (:class:`SourceEntry`) and the key check run with every config validation; the
other checks (:func:`uncovered` here, ``quote_problems`` and ``number_problems`` in
:mod:`.source_checks`) read files or ask for full coverage, so they run on demand:
``trainlab config show --provenance --check-quotes DIR`` runs ``quote_problems``, and
tests/test_seed_provenance.py runs all three on every shipped config.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from trainlab.errors import ConfigError

from ._base import StrictModel, field_error
from ._field_paths import field_paths, is_field_path, key_problems
from ._messages import validation_error_to_config_error

#: Top-level keys that are not settings a source entry must explain.
SKIPPED_KEYS = ("name", "seed", "base", "source", "output", "study")
ENTRY_KEYS = ("published", "reading", "at", "code", "tried", "note")
_AT = re.compile(r"^(?P<file>[^\s:]+):(?P<start>\d+)(?:-(?P<end>\d+))?$")
_CODE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+:\S+$")
MISSING = object()  # value_at's answer for a key the config does not hold


@dataclass(frozen=True)
class At:
    """A parsed ``at``: a file name (or unique prefix) and a 1-based, inclusive line range."""

    file: str
    start: int
    end: int

    @property
    def lines(self) -> str:
        """``15`` or ``15-16``."""
        return str(self.start) if self.start == self.end else f"{self.start}-{self.end}"


class SourceEntry(StrictModel):
    """Where one setting's value comes from: a published quote, or our reading."""

    published: str | None = Field(
        None, description="A short verbatim quote of a source report (with at) or of the authors' code "
        "(with code)."
    )
    reading: str | None = Field(
        None, description="Our choice where the report is silent, and why."
    )
    at: str | None = Field(
        None, description="FILE:LINE or FILE:LINE-LINE of the quote; FILE is a file name in the reports' "
        "folder or its unique prefix (002 -> 002_78a70f767620b206.txt)."
    )
    code: str | None = Field(
        None, description="owner/repo:path of the authors' code the quote is from."
    )
    tried: str | None = Field(None, description="What else was tried, and its measured effect.")
    note: str | None = Field(None, description="Anything else worth knowing about this setting.")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # pydantic's own message ("extra inputs are not permitted") names no alternative.
        if isinstance(data, dict):
            if isinstance(data.get("at"), int | float):
                # YAML 1.1 reads an unquoted 1:15 as a base-60 number (75).
                raise field_error("at", 'write it in quotes, e.g. at: "002:15" (YAML reads an unquoted '
                                  "FILE:LINE of digits as a number)", data["at"])
            for key in data:
                if key not in ENTRY_KEYS:
                    close = difflib.get_close_matches(str(key), ENTRY_KEYS, n=1, cutoff=0.5)
                    hint = f"did you mean '{close[0]}'? " if close else ""
                    raise field_error(
                        str(key), f"unknown key of a source entry; {hint}(allowed: {', '.join(ENTRY_KEYS)})"
                    )
        return data

    @model_validator(mode="after")
    def _check_rules(self) -> SourceEntry:
        for name in ENTRY_KEYS:
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise field_error(name, "must not be empty; remove the key or write the text")
        if (self.published is None) == (self.reading is None):
            raise field_error("", "needs exactly one of published (a quote) or reading (our choice)")
        if self.reading is not None and (self.at is not None or self.code is not None):
            raise field_error(
                "at" if self.at is not None else "code",
                "cites a published quote; a reading has none (put a reference in its text or note)",
            )
        if self.published is not None:
            if (self.at is None) == (self.code is None):
                which = "not both" if self.at is not None else "to say where the quote is"
                raise field_error(
                    "", "a published entry needs at (FILE:LINE of a report) or code (owner/repo:path "
                    f"of the authors' code), {which}",
                )
            if self.at is not None:
                match = _AT.match(self.at)
                if match is None or int(match["start"]) < 1 or int(match["end"] or match["start"]) < int(
                        match["start"]):
                    raise field_error("at", "must be FILE:LINE or FILE:LINE-LINE, e.g. 002:15 or 002:15-16",
                                      self.at)
            if self.code is not None and not _CODE.match(self.code):
                raise field_error("code", "must be owner/repo:path, e.g. danakianfar/deep_learning:lab1/"
                                  "train_mlp_numpy.py", self.code)
        return self

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A resolved config.yaml shows each entry as it was written, without null keys.
        return {k: v for k, v in handler(self).items() if v is not None}

    @property
    def kind(self) -> Literal["published", "reading"]:
        """``published`` or ``reading``."""
        return "published" if self.published is not None else "reading"

    @property
    def text(self) -> str:
        """The quote, or the reading's why."""
        return self.published if self.published is not None else str(self.reading)

    @property
    def reference(self) -> str:
        """``FILE:LINE`` or ``code owner/repo:path`` of a published entry; "" for a reading."""
        if self.at is not None:
            return self.at
        return f"code {self.code}" if self.code is not None else ""

    def location(self) -> At | None:
        """The parsed ``at``, or None (a code quote or a reading)."""
        match = _AT.match(self.at or "")
        if match is None:
            return None
        start = int(match["start"])
        return At(match["file"], start, int(match["end"] or start))


Source = Mapping[str, SourceEntry | Mapping[str, Any]]


def as_entries(source: Source | None, where: str = "<config>") -> dict[str, SourceEntry]:
    """A ``source:`` mapping as validated entries (a raw file's dicts are validated here).

    Args:
        source: the section: validated entries, or the mappings of a raw file.
        where: names the config in error messages. Default ``<config>``.

    Raises:
        ConfigError: an entry breaks the rules; the message names ``source.KEY``.
    """
    if source is None:
        return {}
    if not isinstance(source, Mapping):
        raise ConfigError(f"{where}: source: must be a mapping of field paths to entries "
                          f"(got {type(source).__name__})")
    validated = {str(key): value for key, value in source.items() if isinstance(value, SourceEntry)}
    if len(validated) == len(source):
        return validated
    try:
        return _Section.model_validate({"source": dict(source)}).source
    except ValidationError as error:
        raise validation_error_to_config_error(error, where, _Section) from None


class _Section(StrictModel):
    """A ``source:`` section alone, so that its errors are worded like a whole config's."""

    source: dict[str, SourceEntry]


# -- coverage ---------------------------------------------------------------------------------
def leaf_paths(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted paths of the leaves a raw (base-merged, unvalidated) config sets, with their values.

    The keys ``name``, ``seed``, ``base``, ``source``, ``output`` and ``study`` are left
    out. A list is one leaf, and so is an empty mapping (``early_stopping: {}`` turns a
    callback on with its defaults).
    """
    out: dict[str, Any] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, Mapping) and value:
                walk(value, path + ".")
            else:
                out[path] = value

    walk({k: v for k, v in raw.items() if k not in SKIPPED_KEYS}, "")
    return out


def covering_key(path: str, keys: Iterable[str]) -> str | None:
    """The longest key equal to ``path`` or a prefix of it at a dot boundary, or None.

    List indices in ``path`` are ignored: ``model.conv[1].filters`` is covered by
    ``model.conv`` and by ``model.conv.filters``.
    """
    bare = re.sub(r"\[\d+\]", "", path)
    best: str | None = None
    for key in keys:
        if (bare == key or bare.startswith(key + ".")) and (best is None or len(key) > len(best)):
            best = key
    return best


def uncovered(raw: Mapping[str, Any], source: Source | None) -> list[str]:
    """The leaves ``raw`` sets (see :func:`leaf_paths`) that no source key covers, in file order."""
    keys = list(as_entries(source))
    return [path for path in leaf_paths(raw) if covering_key(path, keys) is None]


def summarize(raw: Mapping[str, Any], source: Source | None) -> dict[str, Any]:
    """Counts for a reproduction table: published and reading entries, reading keys, uncovered leaves."""
    entries = as_entries(source)
    return {
        "published": sum(e.kind == "published" for e in entries.values()),
        "reading": sum(e.kind == "reading" for e in entries.values()),
        "reading_keys": [k for k, e in entries.items() if e.kind == "reading"],
        "uncovered": uncovered(raw, entries),
    }


# -- values ----------------------------------------------------------------------------------
def value_at(raw: Mapping[str, Any], key: str, default: Any = MISSING) -> Any:
    """The subtree under a dotted ``key``; through a list, the items' values as a list.

    Args:
        raw: a config as plain data (raw or resolved).
        key: a dotted field path without list indices.
        default: returned when ``raw`` does not hold ``key``. Default: a private sentinel
            (for this module's checks).
    """
    node: Any = raw
    for part in key.split("."):
        if isinstance(node, list):
            node = [item[part] for item in node if isinstance(item, Mapping) and part in item]
            if not node:
                return default
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return default
    return node


__all__ = [
    "ENTRY_KEYS",
    "MISSING",
    "SKIPPED_KEYS",
    "At",
    "SourceEntry",
    "as_entries",
    "covering_key",
    "field_paths",
    "is_field_path",
    "key_problems",
    "leaf_paths",
    "summarize",
    "uncovered",
    "value_at",
]
