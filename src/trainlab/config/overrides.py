"""``--set key.path=value`` overrides: parsing, and applying them to a file tree or a config."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from trainlab.errors import ConfigError

from ._messages import format_path
from ._yaml import yaml_load
from .optim import OPTIMIZER_TYPE_FIELDS, SCHEDULE_TYPE_FIELDS

if TYPE_CHECKING:
    from .run import RunConfig

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\d+\])*(\.[A-Za-z_][A-Za-z0-9_]*(\[\d+\])*)*$")


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Parse ``key.path=value`` strings into one nested dict.

    Values are YAML (``3`` -> int, ``1e-3`` -> float, ``[100,100]`` -> list, ``null`` ->
    None, ``true`` -> bool). ``model.conv[1].filters=64`` sets one item of a list (an int key).
    Later overrides win.

    Raises:
        ConfigError: an override without ``=``, with a malformed key, an empty or invalid value.
    """
    result: dict[str, Any] = {}
    for text in overrides:
        _set_path(result, *_parse_override(text))
    return result


def _parse_override(text: str) -> tuple[list[str | int], Any]:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected key.path=value, e.g. train.epochs=3")
    if not _KEY.match(key):
        raise ConfigError(
            f"--set {text!r}: malformed key {key!r}; use dotted field names with optional [index], "
            "e.g. model.conv[1].filters=64"
        )
    if key == "base" or key.startswith("base."):
        raise ConfigError(f"--set {text!r}: base cannot be overridden; edit the file's base: line")
    if not raw.strip():
        raise ConfigError(f"--set {text!r}: empty value; write null to unset a field")
    return _key_parts(key), yaml_load(raw, f"--set {text!r}")


def _key_parts(key: str) -> list[str | int]:
    """``model.conv[1].filters`` -> ["model", "conv", 1, "filters"]."""
    parts: list[str | int] = []
    for piece in key.split("."):
        name, *indexes = re.split(r"\[(\d+)\]", piece)
        parts.append(name)
        parts += [int(i) for i in indexes if i]
    return parts


def _set_path(tree: dict[Any, Any], parts: list[str | int], value: Any) -> None:
    node = tree
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def deep_merge(base: Any, override: Any) -> Any:
    """``override`` on top of ``base``: mappings merge key by key, anything else replaces.

    A mapping with int keys applied to a list updates those list items (``--set a[1].b=2``).
    """
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if (
        isinstance(base, list)
        and isinstance(override, dict)
        and all(isinstance(k, int) for k in override)
    ):
        merged_list = list(base)
        for index, value in override.items():
            if not 0 <= index < len(base):
                raise IndexError(index)
            merged_list[index] = deep_merge(base[index], value)
        return merged_list
    return copy.deepcopy(override)


def _record_origins(
    data: Any, where: str, origins: dict[str, str], prefix: tuple[Any, ...] = ()
) -> None:
    """Note ``where`` as the origin of every key path in ``data``."""
    if isinstance(data, dict):
        for key, value in data.items():
            path = (*prefix, key)
            origins[format_path(path)] = where
            _record_origins(value, where, origins, path)


Override = tuple[list[str | int], Any]


def apply_overrides(
    data: dict[str, Any], overrides: Sequence[Override], source: str, origins: dict[str, str]
) -> dict[str, Any]:
    """Merge parsed overrides into a config tree, in order, noting each one in ``origins``."""
    for parts, value in overrides:
        label = f"--set {format_path(parts)}={_show(value)}"
        patch: dict[Any, Any] = {}
        _set_path(patch, parts, value)
        try:
            data = deep_merge(data, patch)
        except IndexError as error:
            raise ConfigError(
                f"{source} ({label}): {format_path(parts)}: index {error} is out of range for the list"
            ) from None
        origins[format_path(parts)] = label
        _record_origins(value, label, origins, tuple(parts))
    return data


def _show(value: Any) -> str:
    """An override value as the user would have typed it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value).replace("'", "")


# Fields that validation derives from another field, and so hold a value the user may never
# have written: when an override changes the key, these are reset to their model's default
# (unless also overridden) so that they are derived again for the new value instead of
# clashing with it.
_DERIVED: dict[str, tuple[str, ...]] = {
    "optimizer.type": tuple(f"optimizer.{f}" for f in OPTIMIZER_TYPE_FIELDS),
    "schedule.type": tuple(f"schedule.{f}" for f in ("per", *SCHEDULE_TYPE_FIELDS)),
    "model.type": ("model.depth", "model.width"),
    "data.normalize": ("data.center_by",),
    "model.init.scheme": ("model.init.sigma", "model.init.scale", "model.init.value"),
    "train.epochs": ("train.steps",),
    "train.steps": ("train.epochs",),
    "train.early_stopping.monitor": ("train.early_stopping.mode",),
    "train.reduce_on_plateau.monitor": ("train.reduce_on_plateau.mode",),
}


def with_overrides(
    cfg: RunConfig, overrides: Sequence[str] | Mapping[str, Any], source: str = "<config>"
) -> RunConfig:
    """A resolved config with overrides applied, validated again.

    ``overrides`` are ``key.path=value`` strings, or a mapping of dotted keys to values
    (e.g. a study's sampled parameters). Unlike merging into ``cfg.model_dump()``, changing
    a field from which validation derived others (``optimizer.type``, ``schedule.type``,
    ``train.steps``, an early-stopping ``monitor``...) re-derives them: ``optimizer.type=sgd``
    on an Adam config drops Adam's betas instead of failing on them.

    Raises:
        ConfigError: a malformed override, or a config that is invalid after applying it.
    """
    from .run import _validate  # run imports nothing from here; this keeps it that way

    if isinstance(overrides, Mapping):
        parsed = [(_checked_key(key), value) for key, value in overrides.items()]
    else:
        parsed = [_parse_override(text) for text in overrides]
    if not parsed:
        return cfg
    touched = set()
    for parts, value in parsed:
        touched.add(format_path(parts))
        leaves: dict[str, str] = {}
        _record_origins(value, "", leaves, tuple(parts))
        touched |= set(leaves)
    data = cfg.model_dump(mode="json")
    derived = {target for key in touched for target in _DERIVED.get(key, ())}
    if cfg.schedule.cycles is not None and any(k.startswith("schedule") for k in touched):
        derived |= {"train.steps", "train.epochs"}  # the run length came from the cycles
    for target in sorted(derived - touched):
        *parents, leaf = target.split(".")
        node: Any = data
        model: Any = cfg
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
            model = getattr(model, name, None)
        if isinstance(node, dict) and leaf in node:
            node[leaf] = _field_default(model, leaf)
    origins: dict[str, str] = {}
    return _validate(apply_overrides(data, parsed, source, origins), source, origins)


def _field_default(model: Any, name: str) -> Any:
    """The default of field ``name`` of the config model ``model`` (a section of the config)."""
    field = type(model).model_fields[name]
    return field.get_default(call_default_factory=True)


def _checked_key(key: str) -> list[str | int]:
    if not isinstance(key, str) or not _KEY.match(key):
        raise ConfigError(
            f"override {key!r}: malformed key; use dotted field names, e.g. optimizer.lr"
        )
    if key == "base" or key.startswith("base."):
        raise ConfigError(f"override {key!r}: base cannot be overridden")
    return _key_parts(key)
