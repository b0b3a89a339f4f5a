"""Reading run files: YAML, ``base:`` chains, ``--set`` overrides; and writing them back."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from trainlab.errors import ConfigError

from ._messages import format_path
from .run import RunConfig, _validate

# YAML 1.1 (PyYAML) reads 1e-3 as a string; YAML 1.2 and every user read it as a float.
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\d+\])*(\.[A-Za-z_][A-Za-z0-9_]*(\[\d+\])*)*$")


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads 1e-3 as a float and refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _yaml_load(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        line = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = error.problem or error.context or "invalid YAML"
        context = ""
        if error.context and error.context_mark is not None and error.problem:
            cm = error.context_mark
            context = f"; {error.context} started at line {cm.line + 1}, column {cm.column + 1}"
        raise ConfigError(f"{source}{where}: YAML syntax error{line}: {problem}{context}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: YAML syntax error: {error}") from None


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file: {error}") from None
    data = _yaml_load(text, str(path))
    if data is None:
        raise ConfigError(
            f"{path}: config file is empty; it needs at least data: and model: sections"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a config file must be a mapping of sections (key: value), not a {type(data).__name__}"
        )
    return data


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


def _resolve(path: Path, chain: list[Path], origins: dict[str, str]) -> dict[str, Any]:
    """The mapping in ``path`` with its ``base`` chain merged under it."""
    resolved = [p.resolve() for p in chain]
    if path.resolve() in resolved:
        cycle = " -> ".join(str(p) for p in [*chain[resolved.index(path.resolve()) :], path])
        raise ConfigError(f"{chain[0]}: base files form a cycle: {cycle}")
    data = _read_mapping(path)
    bases = data.pop("base", None)
    if bases is None:
        _record_origins(data, str(path), origins)
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"{path}: base: must be a file path or a list of paths (got {bases!r})")
    merged: dict[str, Any] = {}
    for name in bases:
        base_path = path.parent / name
        if not base_path.is_file():
            raise ConfigError(
                f"{path}: base: file not found: {base_path} (paths are relative to {path.parent})"
            )
        merged = deep_merge(merged, _resolve(base_path, [*chain, path], origins))
    _record_origins(data, str(path), origins)
    return deep_merge(merged, data)


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
    value = _yaml_load(raw, f"--set {text!r}")
    parts: list[str | int] = []
    for piece in key.split("."):
        name, *indexes = re.split(r"\[(\d+)\]", piece)
        parts.append(name)
        parts += [int(i) for i in indexes if i]
    return parts, value


def _set_path(tree: dict[Any, Any], parts: list[str | int], value: Any) -> None:
    node = tree
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a run file, resolve its ``base`` chain, apply ``--set`` overrides, validate.

    Raises:
        ConfigError: naming the file (or the override), the field path and the bad value.
    """
    path = Path(path)
    origins: dict[str, str] = {}
    data: dict[str, Any] = _resolve(path, [], origins)
    for text in overrides or []:
        parts, value = _parse_override(text)
        patch: dict[Any, Any] = {}
        _set_path(patch, parts, value)
        try:
            data = deep_merge(data, patch)
        except IndexError as error:
            raise ConfigError(
                f"{path} (--set {text}): {format_path(parts)}: index {error} is out of range for the list"
            ) from None
        origins[format_path(parts)] = f"--set {text}"
        _record_origins(value, f"--set {text}", origins, tuple(parts))
    return _validate(data, str(path), origins)


class _Dumper(yaml.SafeDumper):
    """Block style for mappings, ``[1, 2]`` for lists of plain values."""

    def represent_list(self, data: list[Any]) -> yaml.SequenceNode:
        flat = all(not isinstance(v, dict | list) for v in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_Dumper.add_representer(list, _Dumper.represent_list)


def config_to_yaml(cfg: RunConfig) -> str:
    """The fully resolved config as YAML (every default written out; loads back equal)."""
    return yaml.dump(
        cfg.model_dump(mode="json"), Dumper=_Dumper, sort_keys=False, default_flow_style=False
    )


def config_diff(
    a: RunConfig, b: RunConfig, ignore: tuple[str, ...] = ()
) -> list[tuple[str, object, object]]:
    """Fields that differ between two configs: ``(dotted.path, value in a, value in b)``.

    Lists of mappings of equal length (conv blocks) are compared item by item; other lists
    as a whole. Paths equal to or under an entry of ``ignore`` are left out.
    """
    out: list[tuple[str, object, object]] = []
    _diff(a.model_dump(mode="json"), b.model_dump(mode="json"), (), out)
    return [
        d for d in out if not any(d[0] == p or d[0].startswith((p + ".", p + "[")) for p in ignore)
    ]


def _diff(x: Any, y: Any, prefix: tuple[Any, ...], out: list[tuple[str, object, object]]) -> None:
    if isinstance(x, dict) and isinstance(y, dict):
        for key in [*x, *(k for k in y if k not in x)]:
            _diff(x.get(key), y.get(key), (*prefix, key), out)
    elif (
        isinstance(x, list)
        and isinstance(y, list)
        and len(x) == len(y)
        and any(isinstance(v, dict) for v in x + y)
    ):
        for index, (u, v) in enumerate(zip(x, y, strict=True)):
            _diff(u, v, (*prefix, index), out)
    elif x != y:
        out.append((format_path(prefix), x, y))


def config_schema() -> dict[str, Any]:
    """JSON Schema of a run file (for editor completion and checking), ``base`` included."""
    schema = RunConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "trainlab run config"
    schema["properties"] = {
        "base": {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            "description": "Config file(s) this one extends, relative to this file; mappings merge, "
            "lists and values replace.",
        },
        **schema["properties"],
    }
    return schema
