"""YAML in and out: a safe loader that reads 1e-3 as a float and refuses duplicate keys."""

from __future__ import annotations

import re
from typing import Any

import yaml

from trainlab.errors import ConfigError

# YAML 1.1 (PyYAML) reads 1e-3 as a string; YAML 1.2 and every user read it as a float.
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)


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


def yaml_load(text: str, source: str) -> Any:
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


class _Dumper(yaml.SafeDumper):
    """Block style for mappings, ``[1, 2]`` for lists of plain values."""

    def represent_list(self, data: list[Any]) -> yaml.SequenceNode:
        flat = all(not isinstance(v, dict | list) for v in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_Dumper.add_representer(list, _Dumper.represent_list)


def yaml_dump(data: Any) -> str:
    """Block-style YAML, keys in the given order."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
