"""``model.factory`` of a custom model: its two spellings, checked and anchored without importing it.

A factory names an importable callable, as an entry point does:

- ``package.module:function`` (a module on ``sys.path``; ``function`` may be dotted,
  ``module:Class.build``), or
- ``path/to/file.py:function`` (a Python file, imported on its own).

A relative file path in a config file is relative to that file: :func:`anchor_factory`
makes it absolute when the file is read, so the resolved config (and a run's
``config.yaml``) names the same file from any working directory. A config built in Python
(a dict) keeps its path as given, relative to the working directory.

The engine imports and calls the factory (``engines/torch/custom.py``); config only
checks the shape of the string, so ``trainlab validate`` needs no torch for it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ._base import field_error

if TYPE_CHECKING:
    from .model import ModelConfig

_IDENTIFIERS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
FACTORY_FORMS = "'package.module:function' or 'path/to/file.py:function'"


class FactorySpec(NamedTuple):
    """A parsed ``model.factory``.

    Attributes:
        target: the module's dotted name, or the file's path.
        attribute: the dotted attribute path of the callable inside it.
        is_file: whether ``target`` is a file path (it ends in ``.py``).
    """

    target: str
    attribute: str
    is_file: bool


def parse_factory(spec: str) -> FactorySpec:
    """Split ``spec`` at its last ``:`` into the module (or ``.py`` file) and the callable.

    Raises:
        ValueError: the string has not the ``module:function`` or ``file.py:function`` shape
            (the message says which part is wrong).
    """
    target, sep, attribute = spec.rpartition(":")
    target, attribute = target.strip(), attribute.strip()
    if not sep or not target or not attribute:
        raise ValueError(f"must be {FACTORY_FORMS}")
    if not _IDENTIFIERS.match(attribute):
        raise ValueError(f"{attribute!r} after the ':' is not a (dotted) Python name; the form is {FACTORY_FORMS}")
    is_file = target.endswith(".py")
    if not is_file and not _IDENTIFIERS.match(target):
        raise ValueError(
            f"{target!r} is neither a dotted module name nor a path ending in .py; the form is {FACTORY_FORMS}"
        )
    return FactorySpec(target, attribute, is_file)


#: Settings of the built-in layers, with their defaults: a custom model refuses other values.
BUILT_IN_LAYER_DEFAULTS: dict[str, Any] = {
    "activation": "relu", "leaky_slope": 0.01, "batch_norm": False, "bn_position": "before",
    "bn_momentum": 0.1, "bn_eps": 1e-5, "bn_weight": True, "dropout": 0.0,
}  # fmt: skip


def check_custom_model(model: ModelConfig) -> None:
    """Refuse a custom model without a well-formed factory, or with a setting of the built-in
    layers (activation, batch norm, dropout): the factory builds its own layers and never sees them.

    Raises:
        PydanticCustomError: a field error naming ``factory`` or the setting.
    """
    if model.factory is None:
        raise field_error(
            "factory", "type 'custom' needs a factory, e.g. 'my_models.py:small_cnn' (see model.options)"
        )
    try:
        parse_factory(model.factory)
    except ValueError as error:
        raise field_error("factory", str(error), model.factory) from None
    for name, default in BUILT_IN_LAYER_DEFAULTS.items():
        value = getattr(model, name)
        if value != default:
            raise field_error(
                name,
                "not used by model type 'custom' (the factory builds its own layers); "
                "pass it to the factory through model.options",
                value,
            )


def anchor_factory(spec: str, base_dir: Path) -> str:
    """``spec`` with a relative ``.py`` path made absolute against ``base_dir``; any other
    spec (a module form, an absolute path, a malformed string left for validation) unchanged."""
    try:
        parsed = parse_factory(spec)
    except ValueError:
        return spec
    path = Path(parsed.target).expanduser()
    if not parsed.is_file or path.is_absolute():
        return spec
    return f"{(base_dir / path).resolve()}:{parsed.attribute}"


def anchor_model_factory(data: dict[str, Any], config_file: Path) -> None:
    """Anchor ``data["model"]["factory"]`` (a config file's raw mapping) at ``config_file``'s folder."""
    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("factory"), str):
        model["factory"] = anchor_factory(model["factory"], config_file.parent)


__all__ = [
    "BUILT_IN_LAYER_DEFAULTS",
    "FACTORY_FORMS",
    "FactorySpec",
    "anchor_factory",
    "anchor_model_factory",
    "check_custom_model",
    "parse_factory",
]
