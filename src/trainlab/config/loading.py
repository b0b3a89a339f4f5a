"""Reading run files: YAML, ``base:`` chains, ``--set`` overrides; and writing them back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trainlab.errors import ConfigError

from ._messages import format_path
from ._yaml import yaml_dump, yaml_load
from .model_factory import anchor_model_factory
from .overrides import _parse_override, _record_origins, apply_overrides, deep_merge, with_overrides
from .run import RunConfig, _validate

#: The section of a run directory's config.yaml that records how the run came about (when, with
#: which versions, on which data, extensions). It is not config: loading a run's config.yaml
#: (to rerun it) leaves it out, and the new run records its own.
PROVENANCE_KEY = "provenance"


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        hint = (f"; to continue that run give --resume {path}, to run it again {path / 'config.yaml'}"
                if (path / "config.yaml").is_file() else "")
        raise ConfigError(f"{path}: a folder, not a config file{hint}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file: {error}") from None
    data = yaml_load(text, str(path))
    if data is None:
        raise ConfigError(
            f"{path}: config file is empty; it needs at least data: and model: sections"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a config file must be a mapping of sections (key: value), not a {type(data).__name__}"
        )
    return data


def _resolve(path: Path, chain: list[Path], origins: dict[str, str]) -> dict[str, Any]:
    """The mapping in ``path`` with its ``base`` chain merged under it."""
    resolved = [p.resolve() for p in chain]
    if path.resolve() in resolved:
        cycle = " -> ".join(str(p) for p in [*chain[resolved.index(path.resolve()) :], path])
        raise ConfigError(f"{chain[0]}: base files form a cycle: {cycle}")
    data = _read_mapping(path)
    anchor_model_factory(data, path)  # a model.factory file path is relative to this file
    if not isinstance(data.get("source") or {}, dict):
        raise ConfigError(
            f"{path}: source: must be a mapping of field paths to entries, not a "
            f"{type(data['source']).__name__} (see docs/provenance.md)"
        )
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
        merged = _merge_with_sources(merged, _resolve(base_path, [*chain, path], origins))
    _record_origins(data, str(path), origins)
    return _merge_with_sources(merged, data)


def _merge_with_sources(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``deep_merge`` of two config mappings, except that a ``source:`` entry is replaced whole.

    A child file that sources a field again (a reading where its base quoted the report, or
    another quote) means its own entry, not a blend of the two.
    """
    sources = {**(base.get("source") or {}), **(child.get("source") or {})}
    merged = deep_merge({k: v for k, v in base.items() if k != "source"},
                        {k: v for k, v in child.items() if k != "source"})
    if sources:
        merged["source"] = sources
    return merged


def load_config_dict(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file with its ``base`` chain merged in, not validated.

    For files that hold more than a run (a study's base run plus its search space).

    Raises:
        ConfigError: unreadable file, YAML syntax error, missing base, base cycle.
    """
    return _resolve(Path(path), [], {})


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a run file, resolve its ``base`` chain, apply ``--set`` overrides, validate.

    A run directory's ``config.yaml`` is a run file too: its ``provenance`` section
    (:data:`PROVENANCE_KEY`) is left out, so ``trainlab run runs/NAME/ID/config.yaml`` reruns it.

    Raises:
        ConfigError: naming the file (or the override), the field path and the bad value.
    """
    origins: dict[str, str] = {}
    data = _resolve(Path(path), [], origins)
    data.pop(PROVENANCE_KEY, None)
    data = apply_overrides(
        data, [_parse_override(text) for text in overrides or []], str(path), origins
    )
    return _validate(data, str(path), origins)


def resolve_config(config: RunConfig | str | Path | Mapping[str, Any], overrides: Sequence[str] | None) -> RunConfig:
    """The validated config of ``config`` (a RunConfig, a run file's path, or a mapping of
    sections, whose ``provenance`` is left out) with ``--set`` ``overrides`` applied.

    Raises:
        ConfigError: the file, the sections or an override is invalid, or ``config`` is none
            of those kinds.
    """
    if isinstance(config, str | Path):
        return load_config(config, list(overrides or []))
    if isinstance(config, Mapping):
        sections = {k: v for k, v in config.items() if k != PROVENANCE_KEY}
        config = RunConfig.from_dict(sections, source="<dict>")
    elif not isinstance(config, RunConfig):
        raise ConfigError(f"config: expected a RunConfig, a YAML path or a dict, got {type(config).__name__}")
    return with_overrides(config, list(overrides), source="--set") if overrides else config


def config_to_yaml(cfg: RunConfig) -> str:
    """The fully resolved config as YAML (every default written out; loads back equal)."""
    return yaml_dump(cfg.model_dump(mode="json"))


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
