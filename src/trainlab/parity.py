"""Engine parity: one linear or MLP config, trained a few steps on both engines in float64, compared.

The same config must mean the same thing on the NumPy engine (hand-written backward
passes, hand-written update rules) and on the torch engine (autograd, ``torch.optim``).
:func:`run_parity` builds the config's linear classifier or MLP on both, copies the NumPy
initial weights into the torch model, and runs each engine's own training step (its
loss, penalties, clipping, optimizer and schedule code, not a re-implementation) on the
same batches. Per step it records both losses, learning rates and the largest relative
gradient difference; at the end the largest relative difference of every parameter.

A relative difference of two arrays is ``max|a - b| / max(max|a|, max|b|)`` (0 when both
are 0): a scale-free figure that stays meaningful for parameters close to zero.

Known differences between the engines, settled here:

- The NumPy engine's Linear in front of batch norm (``bn_position: before``) has no bias
  (batch norm's beta replaces it); the torch engine keeps it (Keras' parameter counts).
  In training mode that bias cannot change any output (batch norm subtracts the batch
  mean) and its gradient is rounding noise, which an adaptive optimizer (Adam, Adagrad)
  would turn into steps of about ``lr * noise / eps``; so parity holds it at 0 (frozen)
  and reports it separately.
- Batch norm's running variance: the NumPy engine averages the biased batch variance,
  PyTorch the unbiased one (``n / (n - 1)`` larger). Parity runs in training mode, where
  neither is used; the running variance is compared after undoing that factor.
- L2: the config means ``l2 * sum(W**2)`` (Keras) on both engines; each engine's own
  penalty code is run, so parity checks that they mean the same.
- Momentum and Nesterov: both engines update ``v = mu * v - lr * g; p += v`` (the config's
  documented form); PyTorch's own SGD agrees with it only at a constant learning rate.
- Dropout and augmentation are turned off (their random draws differ by design).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.config import RunConfig, with_overrides
from trainlab.errors import ConfigError

DEFAULT_THRESHOLD = 1e-6


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """``max|a - b| / max(max|a|, max|b|)``; 0.0 when both arrays are all zeros."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)))
    diff = float(np.abs(a - b).max(initial=0.0))
    return diff / scale if scale > 0 else diff


def parity_config(config: RunConfig, steps: int) -> RunConfig:
    """The NumPy-engine copy of ``config`` that parity trains: float64, ``train.steps`` set
    to ``steps`` (kept as it is when ``schedule.cycles`` is set, so a cyclical schedule keeps
    the run's period), dropout, augmentation and the torch-only run options off.

    Raises:
        ConfigError: the model, activation or optimizer exists on one engine only.
    """
    m = config.model
    if m.type not in ("linear", "mlp"):
        raise ConfigError(f"model.type: parity compares linear and mlp models (both engines have them), "
                          f"not {m.type!r}")
    overrides: dict[str, Any] = {
        "engine": "numpy",
        "model.dtype": "float64",
        "model.dropout": 0.0,
        "train.device": "auto",
        "train.precision": "fp32",
        "train.compile": False,
        "train.tta": False,
        "train.early_stopping": None,
        "train.reduce_on_plateau": None,
    }
    overrides.update(augmentation_off(config))
    if config.schedule.cycles is None:
        overrides["train.steps"] = int(steps)
    return with_overrides(config, overrides, source="parity")


def augmentation_off(config: RunConfig) -> dict[str, Any]:
    """Overrides that set every active ``augment`` field of ``config`` back to its default (off)."""
    return {f"augment.{name}": type(config.augment).model_fields[name].default for name in config.augment.active()}


def _random_batches(config: RunConfig, n: int, input_shape: tuple[int, int, int] | None,
                    num_classes: int | None, seed: int) -> tuple[np.ndarray, np.ndarray, int, str]:
    """Standard-normal inputs (N, C, H, W) and uniform labels, shaped like the config's dataset."""
    from trainlab.data.imagefolder import target_size
    from trainlab.data.registry import SPECS

    spec = SPECS.get(config.data.dataset)
    if input_shape is None:
        h, w, c = spec.image_shape if spec is not None and all(spec.image_shape) else (8, 8, 3)
        h, w = target_size(config.data.resize) or (h, w)
        input_shape = (c, h, w)
    if num_classes is None:
        num_classes = len(spec.class_names) if spec is not None and spec.class_names else 10
    rng = np.random.default_rng([seed, 7])
    x = rng.standard_normal((n, *input_shape))  # (N, C, H, W) float64
    y = rng.integers(0, num_classes, size=n).astype(np.int64)
    return x, y, num_classes, f"random normal, {n} x {'x'.join(map(str, input_shape))}"


def _real_batches(config: RunConfig, n: int, data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray, int, str]:
    """The first ``n`` training examples of the config's dataset, normalised as it says, in float64."""
    from trainlab.data import prepare_data

    d = config.data
    options = {**d.prepare_kwargs(), "val_fraction": 0.0, "val_size": None, "limit": {"train": n}}
    data = prepare_data(d.dataset, data_dir=data_dir or d.data_dir, seed=config.seed, dtype=np.float64, **options)
    if len(data.y_train) < n:
        raise ConfigError(f"parity needs {n} training examples; {d.dataset} has {len(data.y_train)}")
    return data.x_train[:n], data.y_train[:n], data.num_classes, f"{d.dataset}, first {n} training images"


def _prepared(x: np.ndarray, y: np.ndarray, num_classes: int) -> Any:
    from trainlab.data import PreparedData

    shape = tuple(int(s) for s in x.shape[1:])
    empty = np.zeros((0, *shape), dtype=x.dtype)
    return PreparedData(x, y, empty, np.zeros(0, dtype=np.int64), None, None, None,
                        [str(k) for k in range(num_classes)], shape, num_classes,  # type: ignore[arg-type]
                        {"kind": "none"}, "parity", Path("."))


def _trainings(np_cfg: RunConfig, torch_cfg: RunConfig, data: Any) -> tuple[Any, Any]:
    """Each engine's own training object (its step, penalties, clipping, optimizer, schedule)."""
    from trainlab.callbacks import CallbackList, TrainState
    from trainlab.engines.base import FitContext
    from trainlab.engines.numpy.engine import NumpyTraining
    from trainlab.engines.torch.engine import TorchTraining
    from trainlab.engines.torch.runtime import TrainOptions
    from trainlab.run_files import RunDir

    # Nothing is written: the run directory only names where a checkpoint would go.
    run_dir = RunDir(Path(tempfile.gettempdir()) / "trainlab-parity")

    def context() -> FitContext:
        return FitContext(run_dir=run_dir, callbacks=CallbackList([]), state=TrainState(), progress=False,
                          log=lambda _message: None)

    numpy_training = NumpyTraining(np_cfg, data, context())
    torch_training = TorchTraining(torch_cfg, data, context(), TrainOptions(device="cpu"))
    return numpy_training, torch_training


def _pair_layers(np_model: Any, torch_model: Any) -> list[tuple[int, Any, Any]]:
    """(NumPy layer index, NumPy layer, torch module) for every Linear and BatchNorm, in order."""
    from torch import nn

    from trainlab.engines.numpy.layers import BatchNorm, Linear

    np_layers = [(i, layer) for i, layer in enumerate(np_model.layers) if isinstance(layer, Linear | BatchNorm)]
    torch_layers = [m for m in torch_model.modules() if isinstance(m, nn.Linear | nn.BatchNorm1d)]
    kinds = [type(layer).__name__ for _, layer in np_layers]
    torch_kinds = ["Linear" if isinstance(m, nn.Linear) else "BatchNorm" for m in torch_layers]
    if kinds != torch_kinds:
        raise ConfigError(f"the engines built different models: numpy {kinds}, torch {torch_kinds}")
    return [(i, layer, module) for (i, layer), module in zip(np_layers, torch_layers, strict=True)]


def _copy_weights(pairs: list[tuple[int, Any, Any]], torch_names: dict[int, str]) -> list[dict[str, Any]]:
    """Copy NumPy parameters and buffers into the torch modules; returns the name map.

    Each entry: ``numpy`` key, ``torch`` name, and ``transpose`` (Linear weights are
    (D, M) in NumPy, (M, D) in torch). Torch-only biases are zeroed, frozen and listed
    with ``numpy`` None.
    """
    import torch

    entries: list[dict[str, Any]] = []
    with torch.no_grad():
        for index, layer, module in pairs:
            prefix = torch_names[id(module)]
            if "W" in layer.params:
                module.weight.copy_(torch.from_numpy(layer.params["W"].T))
                entries.append({"numpy": f"{index}.W", "torch": f"{prefix}.weight", "transpose": True})
                if "b" in layer.params:
                    module.bias.copy_(torch.from_numpy(layer.params["b"]))
                    entries.append({"numpy": f"{index}.b", "torch": f"{prefix}.bias", "transpose": False})
                elif module.bias is not None:
                    # No NumPy counterpart: held at 0 (no gradient, so no optimizer moves
                    # it on rounding noise), which makes the two models the same function.
                    module.bias.zero_()
                    module.bias.requires_grad_(False)
                    entries.append({"numpy": None, "torch": f"{prefix}.bias", "transpose": False})
            else:
                for np_name, t_name in (("gamma", "weight"), ("beta", "bias")):
                    getattr(module, t_name).copy_(torch.from_numpy(layer.params[np_name]))
                    entries.append({"numpy": f"{index}.{np_name}", "torch": f"{prefix}.{t_name}",
                                    "transpose": False})
                module.running_mean.copy_(torch.from_numpy(layer.buffers["running_mean"]))
                module.running_var.copy_(torch.from_numpy(layer.buffers["running_var"]))
    return entries


# Long for the docstring of its arguments and result; the body is: configs, batches, the steps, the rows.
def run_parity(
    config: RunConfig,
    *,
    steps: int = 5,
    batch_size: int = 16,
    data: str = "random",
    data_dir: str | Path | None = None,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    """Train ``config``'s linear or MLP model for ``steps`` steps on both engines from the same weights.

    Args:
        config: a run config with a linear or mlp model (either engine).
        steps: optimizer steps. Default 5.
        batch_size: examples per step; step ``i`` uses examples ``i*B .. (i+1)*B - 1``. Default 16.
        data: ``"random"`` (standard-normal inputs shaped like the dataset) or ``"real"``
            (the dataset's first training images, normalised as configured). Default "random".
        data_dir: where ``data="real"`` reads the dataset. Default None.
        input_shape: (C, H, W) of random inputs; default the dataset's shape.
        num_classes: classes of random labels; default the dataset's.
        threshold: largest relative difference that passes. Default 1e-6.

    Returns:
        A dict: ``rows`` (one per step: lr and loss of each engine, their differences, the
        largest relative gradient difference), ``params`` (one per parameter: names, shape,
        relative and absolute difference), ``buffers``, ``torch_only``, the
        maxima ``max_loss_rel_diff``, ``max_grad_rel_diff``, ``max_param_rel_diff``,
        ``max_buffer_rel_diff`` and ``max_rel_diff`` (the largest of those four), and
        ``passed`` (``max_rel_diff <= threshold``).

    Raises:
        ConfigError: a model, activation or optimizer that one engine does not have.
    """
    import torch

    if steps < 1 or batch_size < 2:
        raise ConfigError("parity needs steps >= 1 and batch_size >= 2 (batch norm needs two examples)")
    np_cfg = parity_config(config, steps)
    torch_cfg = with_overrides(np_cfg, {"engine": "torch"}, source="parity")
    x, y, classes, described = _batches(np_cfg, data, steps * batch_size, input_shape, num_classes, data_dir)
    threads = torch.get_num_threads()
    try:
        numpy_training, torch_training = _trainings(np_cfg, torch_cfg, _prepared(x, y, classes))
        np_model, t_model = numpy_training.model, torch_training.model
        torch_names = {id(module): name for name, module in t_model.named_modules()}
        entries = _copy_weights(_pair_layers(np_model, t_model), torch_names)
        t_params = dict(t_model.named_parameters())
        rows = [_train_step(numpy_training, torch_training, entries, t_params, step, batch_size)
                for step in range(steps)]
    finally:
        torch.set_num_threads(threads)  # the torch engine sets its own thread count
    params, torch_only = _param_rows(entries, np_model.parameters(), t_params)
    buffers = _buffer_rows(np_model, t_model, steps, batch_size)
    maxima = _maxima(rows, params, buffers)
    return {
        "config": config.name,
        **_settings(np_cfg, x, classes),
        "data": described,
        "steps": steps,
        "batch_size": batch_size,
        "dtype": "float64",
        "rows": rows,
        "params": params,
        "buffers": buffers,
        "torch_only": torch_only,
        **maxima,
        "threshold": threshold,
        "passed": bool(maxima["max_rel_diff"] <= threshold),
    }


def _batches(config: RunConfig, data: str, n: int, input_shape: tuple[int, int, int] | None,
             num_classes: int | None, data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray, int, str]:
    """The ``n`` examples of ``data`` ("random" or "real"), the number of classes, and a description."""
    if data == "random":
        return _random_batches(config, n, input_shape, num_classes, config.seed)
    if data == "real":
        return _real_batches(config, n, data_dir)
    raise ConfigError(f"parity data {data!r}: choose random or real")


def _train_step(numpy_training: Any, torch_training: Any, entries: list[dict[str, Any]],
                t_params: dict[str, Any], step: int, batch_size: int) -> dict[str, Any]:
    """Step ``step`` (0-based) of both engines on the same batch: each lr and loss, their
    differences, and the largest relative difference of the parameters' gradients."""
    import torch

    index = np.arange(step * batch_size, (step + 1) * batch_size)
    lr_numpy = numpy_training.learning_rate(step)
    lr_torch = torch_training.learning_rate(step)
    loss_numpy, _ = numpy_training.train_step(numpy_training.x_train[index], numpy_training.y_train[index],
                                              lr_numpy)
    loss_torch = float(torch_training.train_step(torch.from_numpy(index), lr_torch))
    grads = numpy_training.model.gradients()
    grad_diff = max(
        rel_diff(_as_numpy(grads[e["numpy"]], e["transpose"]), t_params[e["torch"]].grad.numpy())
        for e in entries if e["numpy"] is not None
    )
    numpy_training.state.step = torch_training.state.step = step + 1
    return {
        "step": step + 1, "lr_numpy": lr_numpy, "lr_torch": lr_torch,
        "loss_numpy": loss_numpy, "loss_torch": loss_torch,
        "loss_abs_diff": abs(loss_numpy - loss_torch),
        "loss_rel_diff": abs(loss_numpy - loss_torch) / max(abs(loss_numpy), abs(loss_torch), 1e-300),
        "grad_rel_diff": grad_diff,
    }


def _param_rows(entries: list[dict[str, Any]], np_params: dict[str, np.ndarray],
                t_params: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each parameter's difference between the engines, and the torch-only biases held at 0."""
    params, torch_only = [], []
    for e in entries:
        t_value = t_params[e["torch"]].detach().numpy()
        if e["numpy"] is None:
            torch_only.append({"torch": e["torch"], "shape": list(t_value.shape),
                               "max_abs": float(np.abs(t_value).max(initial=0.0)),
                               "note": "bias in front of batch norm, held at 0: no effect in training mode"})
            continue
        value = _as_numpy(np_params[e["numpy"]], e["transpose"])
        params.append({"numpy": e["numpy"], "torch": e["torch"], "shape": list(value.shape),
                       "rel_diff": rel_diff(value, t_value), "abs_diff": float(np.abs(value - t_value).max())})
    return params, torch_only


def _maxima(rows: list[dict[str, Any]], params: list[dict[str, Any]],
            buffers: list[dict[str, Any]]) -> dict[str, float]:
    """The largest relative difference of the losses, gradients, parameters, buffers, and of all."""
    max_loss = max(r["loss_rel_diff"] for r in rows)
    max_grad = max(r["grad_rel_diff"] for r in rows)
    max_param = max((p["rel_diff"] for p in params), default=0.0)
    max_buffer = max((b["rel_diff"] for b in buffers), default=0.0)
    return {
        "max_loss_rel_diff": max_loss,
        "max_grad_rel_diff": max_grad,
        "max_param_rel_diff": max_param,
        "max_buffer_rel_diff": max_buffer,
        "max_rel_diff": max(max_loss, max_grad, max_param, max_buffer),
    }


def _settings(np_cfg: RunConfig, x: np.ndarray, classes: int) -> dict[str, Any]:
    """What was compared: the model's layout, the optimizer, schedule, penalties and clipping."""
    m = np_cfg.model
    layout = "-".join(str(v) for v in [int(np.prod(x.shape[1:])), *(m.hidden if m.type == "mlp" else []), classes])
    return {
        "model": f"{m.type} {layout}, {m.activation}"
                 + (f", batch norm {m.bn_position} the activation" if m.batch_norm else ""),
        "optimizer": np_cfg.optimizer.type,
        "schedule": np_cfg.schedule.type,
        "regularization": {"l1": np_cfg.regularization.l1, "l2": np_cfg.regularization.l2,
                           "shrink": np_cfg.regularization.shrink, "apply_to": np_cfg.regularization.apply_to},
        "clipping": {"value": np_cfg.train.grad_clip_value, "norm": np_cfg.train.grad_clip_norm},
    }


def _as_numpy(value: np.ndarray, transpose: bool) -> np.ndarray:
    return value.T if transpose else value


def _buffer_rows(np_model: Any, t_model: Any, steps: int, batch_size: int) -> list[dict[str, Any]]:
    """Running mean compared as is; running variance after undoing PyTorch's n/(n-1)."""
    from torch import nn

    from trainlab.engines.numpy.layers import BatchNorm

    np_norms = [(i, layer) for i, layer in enumerate(np_model.layers) if isinstance(layer, BatchNorm)]
    t_norms = [(name, m) for name, m in t_model.named_modules() if isinstance(m, nn.BatchNorm1d)]
    rows = []
    for (i, layer), (name, module) in zip(np_norms, t_norms, strict=True):
        decay = layer.momentum**steps  # weight left on the initial running variance (1); 1 - bn_momentum
        mean_t = module.running_mean.numpy()
        var_t = decay + (module.running_var.numpy() - decay) * (batch_size - 1) / batch_size
        rows.append({"numpy": f"{i}.running_mean", "torch": f"{name}.running_mean",
                     "rel_diff": rel_diff(layer.buffers["running_mean"], mean_t)})
        rows.append({"numpy": f"{i}.running_var", "torch": f"{name}.running_var x (n-1)/n",
                     "rel_diff": rel_diff(layer.buffers["running_var"], var_t)})
    return rows


__all__ = ["DEFAULT_THRESHOLD", "augmentation_off", "parity_config", "rel_diff", "run_parity"]
