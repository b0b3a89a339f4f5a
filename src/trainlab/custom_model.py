"""Train a torch module built in Python: module instances registered as ``model.factory``.

A config names its model by a factory string, so that ``config.yaml`` says what was used.
A module object has no such name: :func:`module_factory` keeps a copy of it in this
process's registry and returns the factory that builds it,
``trainlab.custom_model:registered.<name>``. Each build returns a fresh copy of the module
as it was registered, so two runs of one config start from the same weights, and a resume
in the same process rebuilds the model its checkpoint fits.

A fresh process has no registry: resuming or loading such a run there fails with a message
that says so (write the module's class in a file and use ``model.factory:
'my_models.py:build'`` for runs that outlive the process).

:func:`config_for_module` turns a config (``engine: torch``) into one that trains a module;
:func:`trainlab.api.fit` runs it and copies the trained weights back into the module::

    done = trainlab.api.fit(net, "configs/examples/cifar10-cnn-torch.yaml")
"""

from __future__ import annotations

import copy
import re
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.config import RunConfig, load_config_dict
from trainlab.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

#: The factory string of the module registered under ``name`` is ``REGISTRY + "." + name``.
REGISTRY = "trainlab.custom_model:registered"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_snapshots: dict[str, nn.Module] = {}
_names: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()


def module_factory(module: nn.Module, name: str | None = None) -> str:
    """Register a copy of ``module`` and return the ``model.factory`` string that builds it.

    Args:
        module: the model; its forward must map (N, C, H, W) images to (N, K) logits.
        name: the registry name (a Python identifier); default the module's class name and a
            number, the same for every registration of one module object.

    Registering the same name again replaces its copy (a module registered again after more
    training starts its next run from the trained weights).

    Raises:
        ConfigError: ``module`` is not an ``nn.Module``, ``name`` is not an identifier, or the
            module cannot be copied.
    """
    from torch import nn  # torch only once a module is registered: config tools stay light

    if not isinstance(module, nn.Module):
        raise ConfigError(f"fit: expected a torch.nn.Module, got {type(module).__name__}")
    if name is None:
        name = _names.get(module)
        if name is None:
            base = re.sub(r"\W", "_", type(module).__name__)
            name = f"{base}_{len(_snapshots) + 1}"
            while name in _snapshots:
                name += "_"
    elif not _NAME.match(name):
        raise ConfigError(f"fit: name {name!r} must be a Python identifier (letters, digits, _)")
    try:
        snapshot = copy.deepcopy(module)
    except Exception as exc:
        raise ConfigError(f"fit: the {type(module).__name__} cannot be copied: {type(exc).__name__}: {exc}") from exc
    _snapshots[name] = snapshot
    _names[module] = name
    return f"{REGISTRY}.{name}"


class _Registered:
    """``registered.<name>``: the factory of the module registered under ``name``."""

    def __getattr__(self, name: str) -> Callable[..., nn.Module]:
        if name.startswith("__"):  # copy, pickle and inspect probe dunders: not registry names
            raise AttributeError(name)
        snapshot = _snapshots.get(name)
        if snapshot is None:
            raise ConfigError(
                f"model.factory '{REGISTRY}.{name}': no module is registered under {name!r} in this process. "
                "A module passed to fit() lives only in the Python process that trained it: a new process "
                "cannot rebuild it. Put its class in a file and set model.factory: 'my_models.py:build' "
                "(a function of input_shape and num_classes) to resume or load the run elsewhere"
            )

        def build(input_shape: tuple[int, int, int], num_classes: int, **options: Any) -> nn.Module:
            if options:
                raise ConfigError(
                    f"model.options: a module registered with fit() takes no options (got {sorted(options)}); "
                    "use a factory function to vary the model"
                )
            return copy.deepcopy(snapshot)

        return build


#: The registry as a module attribute, so ``trainlab.custom_model:registered.<name>`` resolves.
registered = _Registered()


def config_for_module(
    module: nn.Module, config: RunConfig | str | Path | Mapping[str, Any], name: str | None = None
) -> RunConfig:
    """``config`` with its model section replaced by ``module`` (registered by :func:`module_factory`).

    The new section keeps the old one's ``dtype``, and its ``init`` when it was a custom
    model's already (a built-in model's init is not meant for this module); other fields of
    the old section are dropped, and the model section may be missing altogether.

    Args:
        module: the model to train.
        config: a validated config, a YAML path (its ``base`` chain resolved, its model
            section not validated), or a mapping of sections.
        name: the registry name; see :func:`module_factory`.

    Raises:
        ConfigError: the file cannot be read, or the config is invalid with the module's model.
    """
    if isinstance(config, RunConfig):
        data, source = config.model_dump(mode="json"), "<config>"
    elif isinstance(config, str | Path):
        data, source = load_config_dict(config), str(config)
    else:
        data, source = copy.deepcopy(dict(config)), "<dict>"
    old = data.get("model") or {}
    model: dict[str, Any] = {"type": "custom", "factory": module_factory(module, name)}
    if "dtype" in old:
        model["dtype"] = old["dtype"]
    if old.get("type") == "custom" and "init" in old:
        model["init"] = old["init"]
    data["model"] = model
    return RunConfig.from_dict(data, source=source)


__all__ = ["REGISTRY", "config_for_module", "module_factory", "registered"]
