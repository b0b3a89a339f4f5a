"""Dotted field paths of a config model, for the keys of a ``source:`` section.

A source key names a field without list indices (``model.conv.filters`` covers the
``filters`` of every conv block), so these walks cross lists and unions of sections by type,
not by value.
"""

from __future__ import annotations

import difflib
import functools
import re
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel


def _models_in(tp: Any) -> Iterator[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        yield tp
        return
    for arg in get_args(tp):
        yield from _models_in(arg)


def _has_mapping(tp: Any) -> bool:
    if get_origin(tp) in (dict, Mapping):
        return True
    return get_origin(tp) in (Union, types.UnionType, list) and any(_has_mapping(a) for a in get_args(tp))


def is_field_path(root: type[BaseModel], path: str) -> bool:
    """Whether ``path`` (dotted, no list indices) names a field under ``root``.

    A list of sections is crossed without an index (``model.conv.filters``), a union
    (``data.limit`` as a number or a mapping) through every member that is a model.
    """
    models: list[type[BaseModel]] = [root]
    for part in path.split("."):
        annotations = [m.model_fields[part].annotation for m in models if part in m.model_fields]
        if not annotations:
            return False
        if any(_has_mapping(a) for a in annotations):
            return True  # free-form keys below a mapping field
        models = [m for a in annotations for m in _models_in(a)]
    return True


@functools.cache
def field_paths(root: type[BaseModel]) -> tuple[str, ...]:
    """Every dotted field path under ``root`` (a model that contains itself is entered once)."""
    out: list[str] = []

    def walk(model: type[BaseModel], prefix: str, seen: frozenset[type[BaseModel]]) -> None:
        for name, info in model.model_fields.items():
            out.append(prefix + name)
            for sub in _models_in(info.annotation):
                if sub not in seen:
                    walk(sub, f"{prefix}{name}.", seen | {sub})

    walk(root, "", frozenset({root}))
    return tuple(dict.fromkeys(out))


def key_problems(keys: Iterable[str], root: type[BaseModel]) -> list[str]:
    """What is wrong with each source key that is not a field path of ``root`` (one line each)."""
    problems: list[str] = []
    paths = [p for p in field_paths(root) if p.split(".")[0] != "source"]
    for key in keys:
        if "[" in key or "]" in key:
            bare = re.sub(r"\[\d*\]", "", key)
            problems.append(f"'{key}': no list indices in source keys; '{bare}' covers every item")
        elif key == "source" or key.startswith("source."):
            problems.append(f"'{key}': the source section does not describe itself")
        elif not is_field_path(root, key):
            problems.append(f"'{key}': not a field of a run config{_suggest(key, paths)}")
    return problems


def _suggest(key: str, paths: list[str]) -> str:
    close = difflib.get_close_matches(key, paths, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    last = key.rsplit(".", 1)[-1]
    elsewhere = [p for p in paths if p.rsplit(".", 1)[-1] == last]
    shown = " or ".join(f"'{p}'" for p in elsewhere[:3])
    return f"; did you mean {shown}?" if elsewhere else ""


__all__ = ["field_paths", "is_field_path", "key_problems"]
