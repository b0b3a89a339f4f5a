"""Turn pydantic's ValidationError into one ConfigError a user can act on.

One line per problem: ``<file>: <dotted.path[i]>: <what is wrong> (got <value>)``, with a
"did you mean" for unknown keys and misspelt choices.
"""

from __future__ import annotations

import difflib
import functools
import re
import types
import typing
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from trainlab.errors import ConfigError

from ._base import FIELD_ERROR

MAX_PROBLEMS = 10
_NO_VALUE = object()
Loc = Sequence[str | int]


def format_path(parts: Loc) -> str:
    """``("model", "conv", 1, "filters")`` -> ``model.conv[1].filters``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def validation_error_to_config_error(
    error: ValidationError,
    source: str,
    root: type[BaseModel],
    origins: dict[str, str] | None = None,
) -> ConfigError:
    """One ConfigError listing every problem of ``error`` (at most MAX_PROBLEMS, then a
    "... and N more" line).

    ``origins`` maps a dotted path to where its value came from (a base file, a --set);
    a problem is attributed to the longest matching path, else to ``source``.
    """
    lines: list[str] = []
    for err in error.errors(include_url=False):
        path, message = _describe(err, root)
        line = f"{_origin(path, source, origins or {})}: {format_path(path)}: {message}"
        if line not in lines:
            lines.append(line)
    extra = len(lines) - MAX_PROBLEMS
    if extra > 0:
        lines = [*lines[:MAX_PROBLEMS], f"... and {extra} more problem(s)"]
    return ConfigError("\n".join(lines))


def unknown_key_message(key: str, owner: type[BaseModel], root: type[BaseModel]) -> str:
    """``unknown field; did you mean 'epochs'? (allowed: ...)`` for ``key`` inside ``owner``."""
    allowed = list(owner.model_fields)
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    if close:
        hint = f"; did you mean '{close[0]}'?"
    else:
        elsewhere = [p for name, p in _field_index(root) if name == key]
        hint = f"; it belongs in {' or '.join(elsewhere)}" if elsewhere else ""
    return f"unknown field{hint} (allowed: {', '.join(allowed)})"


def _describe(err: Any, root: type[BaseModel]) -> tuple[list[str | int], str]:
    """The clean path of one pydantic error and a message for it."""
    parts, owner, alternative = _walk(root, err["loc"])
    kind = err["type"]
    value = err.get("input", _NO_VALUE)
    if kind == FIELD_ERROR:
        ctx = err["ctx"]
        parts += _split_dotted(ctx["field"])
        value = ctx.get("value")
        value = _NO_VALUE if value is None else value
        message = ctx["message"]
    elif kind == "extra_forbidden" and owner is not None:
        message = unknown_key_message(str(parts[-1]), owner, root)
    elif kind == "missing":
        message = "required field is missing"
        info = _field_info(owner, parts[-1]) if parts else None
        if info is not None and info.description:
            message += f" ({info.description})"
        value = _NO_VALUE
    elif kind == "literal_error":
        expected = err["ctx"]["expected"]
        choices = re.findall(r"'([^']*)'", expected)
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        message = f"{hint}must be one of {expected}"
    else:
        message = _reword(err["msg"])
    if alternative:
        message += f", or {alternative}"
    if value is not _NO_VALUE and kind != "extra_forbidden":
        message += f" (got {_short(value)})"
    return parts, message


def _kind_of(tp: Any) -> str:
    """How a message names what else a union accepts."""
    tp = _unwrap(tp)
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (list, tuple):
        return "a list"
    if _is_model(tp):
        return "a mapping"
    if tp is bool:
        return "true or false"
    return "a number" if tp in (int, float) else "another type"


def _reword(msg: str) -> str:
    msg = msg.removeprefix("Value error, ")
    msg = re.sub(r"a valid dictionary or instance of \w+", "a mapping", msg)
    msg = re.sub(r"a valid dictionary", "a mapping", msg)
    return msg.replace("Input should be", "must be")


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _short(value: Any) -> str:
    text = "null" if value is None else repr(_plain(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _split_dotted(field: str) -> list[str | int]:
    """``conv[1].filters`` -> ["conv", 1, "filters"]."""
    out: list[str | int] = []
    for piece in field.split("."):
        name, *indexes = re.split(r"\[(\d+)\]", piece)
        if name:
            out.append(name)
        out += [int(i) for i in indexes if i]
    return out


def _origin(parts: list[str | int], source: str, origins: dict[str, str]) -> str:
    for n in range(len(parts), 0, -1):
        where = origins.get(format_path(parts[:n]))
        if where is not None:
            return f"{source} ({where})" if where.startswith("--set") else where
    return source


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _union_member(tp: Any, tag: Any) -> Any:
    """The member of a union that pydantic's location ``tag`` names (a Tag or a class name)."""
    for member in get_args(tp):
        if get_origin(member) is Annotated:
            if any(getattr(meta, "tag", None) == tag for meta in get_args(member)[1:]):
                return _unwrap(member)
        elif _is_model(member) and member.__name__ == tag:
            return member
    return None


def _walk(root: type[BaseModel], loc: Loc) -> tuple[list[str | int], type[BaseModel] | None, str]:
    """Walk a pydantic location through the model tree.

    Returns the clean path (union tags dropped), the model owning its last key, and what
    else the innermost union there accepts ("" when no union was crossed).
    """
    parts: list[str | int] = []
    tp: Any = root
    owner: type[BaseModel] | None = None
    alternative = ""
    for item in loc:
        tp = _unwrap(tp)
        if get_origin(tp) not in (Union, types.UnionType):
            alternative = ""  # the error lies inside the chosen member, not at the union
        if _is_model(tp):
            owner = tp
            parts.append(item)
            info = tp.model_fields.get(item) if isinstance(item, str) else None
            tp = info.annotation if info is not None else None
        elif get_origin(tp) in (Union, types.UnionType):
            others = [
                m
                for m in get_args(tp)
                if m is not type(None) and _unwrap(m) is not _union_member(tp, item)
            ]
            alternative = " or ".join(_kind_of(m) for m in others)
            tp = _union_member(tp, item)  # a tag, not part of the user's path
        elif get_origin(tp) in (list, tuple) and isinstance(item, int):
            parts.append(item)
            args = get_args(tp)
            tp = args[0] if get_origin(tp) is list else (args[item] if item < len(args) else None)
        else:
            parts.append(item)
            tp = None
    return parts, owner, alternative


def _field_info(owner: type[BaseModel] | None, name: Any) -> FieldInfo | None:
    return owner.model_fields.get(name) if owner is not None and isinstance(name, str) else None


@functools.cache
def _field_index(root: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    """(field name, dotted path) of every field in the tree of ``root``."""
    return tuple(_iter_fields(root, ""))


def _iter_fields(
    model: type[BaseModel], prefix: str, seen: frozenset[type[BaseModel]] = frozenset()
) -> Iterator[tuple[str, str]]:
    # ``seen`` stops a model that contains itself (optimizer.other) from recursing forever.
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        yield name, path
        for sub in _models_in(info.annotation):
            if sub in seen or sub is model:
                continue
            yield from _iter_fields(
                sub, f"{path}[i]." if _is_list_of(info.annotation) else f"{path}.", seen | {model}
            )


def _models_in(tp: Any) -> Iterator[type[BaseModel]]:
    if _is_model(tp):
        yield tp
        return
    for arg in typing.get_args(tp):
        yield from _models_in(arg)


def _is_list_of(tp: Any) -> bool:
    return get_origin(_unwrap(tp)) is list
