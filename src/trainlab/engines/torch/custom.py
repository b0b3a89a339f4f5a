"""``model.type: custom``: import the user's factory, build its module, check what it returns.

The factory (``model.factory``, see :mod:`trainlab.config.model_factory`) is called as
``factory(input_shape=(C, H, W), num_classes=K, **model.options)``. What it returns must be
an ``nn.Module`` with trainable parameters whose forward maps a batch ``(N, C, H, W)`` to
``(N, K)`` logits: a forward pass of two zero images in eval mode checks it when the model
is built (and materialises lazy layers), so a wrong model fails with a message naming the
shapes before any data is read. Every failure (import, call, check) is a
:class:`~trainlab.errors.ConfigError` naming the factory.

:func:`build_custom` is one of the builders of :func:`~trainlab.engines.torch.models.build_model`,
which runs it under the run's forked and seeded RNG (deterministic), then applies
``model.init`` and the dtype. :func:`custom_model_size` counts a custom model for the memory
estimate, built on the meta device when its code allows (no memory, no time) and on the CPU
otherwise.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainlab.config.model_factory import parse_factory
from trainlab.engines.model_size import ModelSize
from trainlab.errors import ConfigError

if TYPE_CHECKING:
    from trainlab.config import ModelConfig

#: Modules imported from ``.py`` files, by (resolved path, modification time): a file is run
#: once per version, so its classes stay the same objects across builds.
_FILE_MODULES: dict[tuple[str, int], Any] = {}
CHECK_BATCH = 2  # images in the forward pass that checks the output shape


def _import_file(path_text: str, spec: str) -> Any:
    """The module of the Python file ``path_text`` (relative to the working directory when not absolute)."""
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(
            f"model.factory {spec!r}: no file {path} (a relative path in a config file is relative to that "
            "file; in a config built in Python, to the working directory)"
        )
    key = (str(path), path.stat().st_mtime_ns)
    if key in _FILE_MODULES:
        return _FILE_MODULES[key]
    # A unique name per file and version, registered before it runs: dataclasses and pickling
    # look a class's module up in sys.modules.
    name = f"trainlab_factory_{path.stem}_{hashlib.sha1(repr(key).encode()).hexdigest()[:10]}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"model.factory {spec!r}: {path} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"model.factory {spec!r}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
    _FILE_MODULES[key] = module
    return module


def load_factory(spec: str) -> Callable[..., Any]:
    """The callable that ``spec`` (``module:function`` or ``file.py:function``) names.

    Raises:
        ConfigError: the string is malformed, the module or file cannot be imported, it has
            no such attribute, or the attribute is not callable.
    """
    try:
        parsed = parse_factory(spec)
    except ValueError as exc:
        raise ConfigError(f"model.factory: {exc} (got {spec!r})") from None
    if parsed.is_file:
        owner = _import_file(parsed.target, spec)
    else:
        try:
            owner = importlib.import_module(parsed.target)
        except ImportError as exc:
            raise ConfigError(
                f"model.factory {spec!r}: cannot import {parsed.target!r}: {exc} (a module must be installed "
                "or on PYTHONPATH; for a file next to the config, write 'my_models.py:function')"
            ) from exc
        except Exception as exc:  # the module's own code failed: say where, keep the traceback chained
            raise ConfigError(
                f"model.factory {spec!r}: importing {parsed.target!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
    found: Any = owner
    for part in parsed.attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ConfigError(
                f"model.factory {spec!r}: {parsed.target!r} has no attribute {parsed.attribute!r}"
            ) from None
    if not callable(found):
        raise ConfigError(
            f"model.factory {spec!r} is a {type(found).__name__}, not a function (or class) that builds the model"
        )
    return found  # type: ignore[no-any-return]


def _shape(shape: tuple[int, ...] | torch.Size) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def build_custom(m: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Call ``m.factory`` and check its module on a batch of zeros (see the module docstring).

    Random draws come from torch's global generator, which :func:`build_model` has forked
    and seeded. The module is built on the current default device (the meta device when
    :func:`custom_model_size` counts it).

    Raises:
        ConfigError: naming the factory: it cannot be loaded, fails, returns no module, a module
            without trainable parameters, or one whose output is not ``(N, num_classes)``.
    """
    spec = str(m.factory)
    factory = load_factory(spec)
    try:
        model = factory(input_shape=tuple(input_shape), num_classes=num_classes, **m.options)
    except ConfigError:
        raise
    except Exception as exc:  # the user's code: its message (a bad option name...) is the useful part
        raise ConfigError(f"model.factory {spec!r} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model.factory {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    check_output(model, spec, input_shape, num_classes)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"model.factory {spec!r} built a {type(model).__name__} without trainable parameters")
    return model


def check_output(model: nn.Module, spec: str, input_shape: tuple[int, int, int], num_classes: int) -> None:
    """Run a batch of zeros through ``model`` in eval mode (no running statistics move) and
    require ``(N, num_classes)`` logits.

    Raises:
        ConfigError: the forward pass fails or gives another shape or type.
    """
    first = next(iter(model.parameters()), None)
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    device = first.device if first is not None else None
    x = torch.zeros((CHECK_BATCH, *input_shape), dtype=dtype, device=device)  # (N, C, H, W)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:
        raise ConfigError(
            f"model.factory {spec!r}: the model's forward fails on a batch of shape {_shape(x.shape)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise ConfigError(
            f"model.factory {spec!r}: the model's forward returns {type(out).__name__}, not a tensor of logits"
        )
    if tuple(out.shape) != (CHECK_BATCH, num_classes):
        raise ConfigError(
            f"model.factory {spec!r}: the model maps a batch of shape {_shape(x.shape)} to {_shape(out.shape)}; "
            f"it must give {_shape((CHECK_BATCH, num_classes))}: one logit per class (num_classes={num_classes})"
        )


def output_tensors(output: Any) -> list[torch.Tensor]:
    """The tensors of a module's output (a tensor, or a tuple/list/dict holding some)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, list | tuple):
        return [t for item in output for t in output_tensors(item)]
    if isinstance(output, dict):
        return [t for item in output.values() for t in output_tensors(item)]
    return []


def measure(model: nn.Module, input_shape: tuple[int, int, int]) -> ModelSize:
    """Parameters, other state, and the values every leaf module outputs for one example
    (from a forward pass of one zero image, in eval mode, on the model's device)."""
    size = ModelSize()
    size.params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    size.frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    size.frozen += sum(b.numel() for b in model.buffers())
    size.output(input_shape[0] * input_shape[1] * input_shape[2])

    def record(_module: nn.Module, _inputs: object, output: Any) -> None:
        for tensor in output_tensors(output):
            size.output(tensor.numel())  # a batch of one: the values per example

    leaves = [module for module in model.modules() if not any(True for _ in module.children())]
    handles = [leaf.register_forward_hook(record) for leaf in leaves]
    first = next(iter(model.parameters()))
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), dtype=first.dtype, device=first.device))
    finally:
        for handle in handles:
            handle.remove()
    return size


def custom_model_size(m: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> ModelSize:
    """Count the custom model of ``m`` (see :class:`ModelSize`) without moving any random stream.

    Built on the meta device first (shapes only: nothing is allocated, even for a model too
    large for this machine); a module whose code needs real tensors (``.item()``, a module
    prebuilt on the CPU) is built on the CPU instead.

    Raises:
        ConfigError: the factory cannot be loaded or builds a wrong model (see :func:`build_custom`).
    """
    load_factory(str(m.factory))  # an import error is reported as such, not as a meta-device failure
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            with torch.device("meta"):
                model = build_custom(m, input_shape, num_classes)
            return measure(model, input_shape)
        except Exception:  # the CPU build below reports a real error with its message
            pass
        return measure(build_custom(m, input_shape, num_classes), input_shape)


__all__ = ["build_custom", "check_output", "custom_model_size", "load_factory", "measure", "output_tensors"]
