"""Does a run config mean on trainlab's torch engine what it means in Keras? Step for step.

Usage: python bench/keras_parity.py CONFIG [--set KEY=VALUE ...] [--steps S] [--batch-size B]
                                    [--eval-images E] [--adam-epsilon keras|torch]
                                    [--data-dir DIR] [--threshold T] [--json PATH]

Seed C's configs were written from a report that trained in Keras; a row that misses its
published figure by more than seed noise could be a reading of the report, or trainlab's
engine doing something Keras does not. This separates the two: it builds the config's
net in Keras 3 (its torch backend, ``bench/_keras_peer.py``) and on the torch engine,
copies the engine's initial weights into the Keras net (conv kernels HWIO, the first dense
kernel's rows reordered from NCHW to NHWC flattening, batch norm's scale, shift and moving
statistics), then trains both on the same batches of real images in float64, Keras'
``train_on_batch`` against the engine's own ``train_step``. It reports:

- the first step's training loss (data loss plus the kernels' L1/L2 penalty) and its
  gradient with respect to every weight, from the same weights on the same batch; these,
  with the copied weights themselves, decide the exit status;
- each later step's loss and every weight (relative difference of norms): Adam moves
  each weight by about lr in its first steps whatever its gradient's size, so rounding
  differences grow from step to step, and these columns show how fast;
- at the end, eval-mode loss and accuracy on ``--eval-images`` further images: Keras'
  ``evaluate`` (which adds the penalty) against the engine's evaluated loss plus its penalty.

Dropout is switched off (the two frameworks draw different masks); everything else is the
config's (batch norm momentum and epsilon, the optimizer and its epsilon, the penalty; the
initialisation is replaced by the copy). Biases ahead of a batch norm are left out of the
comparisons: the norm subtracts them again, so their gradient is rounding noise. One
difference is known: where Adam adds epsilon. Keras adds it to sqrt(v), PyTorch to
sqrt(v / (1 - beta2^t)); ``--adam-epsilon torch`` sets Keras' epsilon before each step so
that it sits where PyTorch's does, which takes that difference out of the later columns.

Needs keras (the ``dev`` and ``bench`` extras; ``make setup`` installs it); exit status 2
without it.
Exit status 0 when the copied weights, the first step's loss and its gradients differ by at
most ``--threshold`` (relative, default 1e-4; Keras rounds some batch-norm arithmetic to
float32 even in a float64 model, about 1e-6 here), else 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _keras_peer import build_keras_model, import_keras, keras_available, keras_optimizer
from bench_torch import TrainlabSide
from torch import nn

from trainlab.config import RunConfig, load_config, with_overrides
from trainlab.data import PreparedData, prepare_data
from trainlab.parity import augmentation_off

# Layers whose weights the copy carries over, in the order both builders create them.
TORCH_LAYERS = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)
KERAS_LAYERS = ("Conv2D", "Dense", "BatchNormalization")
#: (torch layer, Keras layer, the (H, W, C) its rows are reordered by, or None), in order.
Pairs = list[tuple[nn.Module, Any, "tuple[int, int, int] | None"]]


def crosscheck_config(config: RunConfig) -> RunConfig:
    """``config`` as the cross-check trains it: no dropout, float64, no augmentation or early
    stopping, no TTA; the optimizer, penalty and batch norm settings untouched."""
    overrides: dict[str, Any] = {
        "model.dropout": 0.0, "model.fc_dropout": 0.0, "model.dtype": "float64",
        "train.precision": "fp32", "train.compile": False, "train.tta": False,
        "train.early_stopping": None, "train.reduce_on_plateau": None, "data.val_fraction": 0.0,
    }
    return with_overrides(config, {**overrides, **augmentation_off(config)}, source="keras parity")


def real_images(config: RunConfig, train: int, evaluated: int, data_dir: str | None) -> PreparedData:
    """The first ``train`` training images as the train split and the next ``evaluated`` as
    the val split, normalised as the config says, float64."""
    d = config.data
    options = {**d.prepare_kwargs(), "val_fraction": 0.0, "val_size": None, "limit": {"train": train + evaluated}}
    data = prepare_data(d.dataset, data_dir=data_dir or d.data_dir, seed=config.seed, dtype=np.float64, **options)
    if len(data.y_train) < train + evaluated:
        raise SystemExit(f"needs {train + evaluated} training images; {d.dataset} has {len(data.y_train)}")
    x, y = data.x_train, data.y_train
    return PreparedData(x[:train], y[:train], x[train:], y[train:], None, None, None, data.class_names,
                        data.input_shape, data.num_classes, data.normalizer, data.fingerprint, data.source)


def _keras_layers(model: Any) -> list[Any]:
    return [layer for layer in model.layers if type(layer).__name__ in KERAS_LAYERS]


def _flatten_shape(model: Any) -> tuple[int, int, int] | None:
    """(H, W, C) of the Keras net's Flatten input; None for a net without one before a dense layer."""
    for layer in model.layers:
        if type(layer).__name__ == "Flatten":
            shape = tuple(int(s) for s in layer.input.shape[1:])
            return shape if len(shape) == 3 else None  # type: ignore[return-value]
    return None


def _keras_kind(module: nn.Module) -> str:
    # isinstance: trainlab's convs subclass nn.Conv2d (engines.torch.convgrad.Conv2d).
    if isinstance(module, nn.Conv2d):
        return "Conv2D"
    return "Dense" if isinstance(module, nn.Linear) else "BatchNormalization"


def layer_pairs(torch_model: nn.Module, keras_model: Any) -> Pairs:
    """(torch layer, Keras layer, flatten) in order: ``flatten`` is the (H, W, C) that the first
    dense layer's rows are reordered by (torch flattens (C, H, W), Keras (H, W, C)), else None.

    Raises:
        SystemExit: the two nets' layers do not pair up (a model option the Keras mirror lacks).
    """
    torch_layers = [m for m in torch_model.modules() if isinstance(m, TORCH_LAYERS)]
    keras_layers = _keras_layers(keras_model)
    kinds = [_keras_kind(m) for m in torch_layers], [type(k).__name__ for k in keras_layers]
    if kinds[0] != kinds[1]:
        raise SystemExit(f"the nets do not pair up: torch {kinds[0]}, keras {kinds[1]}")
    pairs: Pairs = []
    flatten = _flatten_shape(keras_model)
    for module, layer in zip(torch_layers, keras_layers, strict=True):
        pairs.append((module, layer, flatten if isinstance(module, nn.Linear) else None))
        flatten = None if isinstance(module, nn.Linear) else flatten
    return pairs


def copy_weights(pairs: Pairs) -> None:
    """Set each Keras layer's weights to its torch layer's."""
    for module, layer, flatten in pairs:
        layer.set_weights(as_keras(module, flatten))


def as_keras(module: nn.Module, flatten: tuple[int, int, int] | None, grads: bool = False) -> list[np.ndarray]:
    """A torch layer's tensors in Keras' layout and ``get_weights`` order; ``grads``: their
    gradients instead, for the trainable ones (batch norm's moving statistics left out)."""

    def value(t: torch.Tensor) -> np.ndarray:
        return (t.grad if grads else t).detach().numpy().copy()

    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if grads:
            return [value(t) for t in (module.weight, module.bias) if t is not None and t.requires_grad]
        gamma = module.weight if module.weight is not None else torch.ones_like(module.running_mean)
        beta = module.bias if module.bias is not None else torch.zeros_like(module.running_mean)
        return [value(t) for t in (gamma, beta, module.running_mean, module.running_var)]
    kernel = value(module.weight)
    if isinstance(module, nn.Conv2d):
        kernel = kernel.transpose(2, 3, 1, 0)  # (O, I, kh, kw) -> (kh, kw, I, O)
    else:
        if flatten is not None:
            h, w, c = flatten
            kernel = kernel.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(kernel.shape[0], -1)
        kernel = kernel.T  # (out, in) -> (in, out)
    tensors = [kernel] + ([value(module.bias)] if module.bias is not None else [])
    return [np.ascontiguousarray(t) for t in tensors]


def norm_diff(a: np.ndarray, b: np.ndarray) -> float:
    """``||a - b|| / max(||a||, ||b||)`` (0.0 for two zero arrays).

    Not the largest entry's difference: Adam's first steps move every weight by about lr
    whatever its gradient's size, so one weight whose gradient is float-rounding noise moves
    the two sides 2 * lr apart, and a max measure would report only that weight."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)))
    return float(np.linalg.norm(a - b)) / scale if scale > 0 else 0.0


def _compared(pairs: Pairs) -> list[int]:
    """How many of each pair's tensors to compare: all, but a bias right ahead of a batch norm
    (the norm subtracts it again, so its gradient is rounding noise that Adam scales up on
    both sides alike, and it does not change the function)."""
    counts = []
    for i, (module, _, _) in enumerate(pairs):
        ahead = i + 1 < len(pairs) and isinstance(pairs[i + 1][0], (nn.BatchNorm1d, nn.BatchNorm2d))
        dead_bias = isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None and ahead
        counts.append(1 if dead_bias else 4)
    return counts


def weight_diff(pairs: Pairs) -> float:
    """Largest :func:`norm_diff` over the pairs' weights (torch's mapped into Keras' layout)."""
    worst = 0.0
    for (module, layer, flatten), count in zip(pairs, _compared(pairs), strict=True):
        compared = list(zip(as_keras(module, flatten), layer.get_weights(), strict=True))[:count]
        worst = max([worst, *(norm_diff(a, np.asarray(b)) for a, b in compared)])
    return worst


def keras_gradients(model: Any, x: np.ndarray, y: np.ndarray) -> list[list[np.ndarray]]:
    """Gradients of Keras' training loss (cross-entropy plus the model's regularization
    losses) on one batch: per layer of :func:`_keras_layers`, its trainable weights' in
    ``get_weights`` order. The weights, moving statistics included, are left as they were."""
    saved = model.get_weights()
    logits = model(torch.from_numpy(x), training=True)
    loss = model.loss(torch.from_numpy(y), logits) + sum(model.losses)  # the compiled loss: its dtype
    layers = _keras_layers(model)
    grads = iter(torch.autograd.grad(loss, [v.value for layer in layers for v in layer.trainable_weights]))
    model.set_weights(saved)  # the training-mode call moved batch norm's moving statistics
    return [[next(grads).numpy() for _ in layer.trainable_weights] for layer in layers]


def gradient_diff(pairs: Pairs, theirs: list[list[np.ndarray]]) -> float:
    """Largest :func:`norm_diff` between the torch layers' ``.grad`` and Keras' gradients."""
    worst = 0.0
    for (module, _, flatten), grads, count in zip(pairs, theirs, _compared(pairs), strict=True):
        compared = list(zip(as_keras(module, flatten, grads=True), grads, strict=True))[:count]
        worst = max([worst, *(norm_diff(a, b) for a, b in compared)])
    return worst


def run(config: RunConfig, steps: int, batch_size: int, eval_images: int,
        data_dir: str | None, adam_epsilon: str = "keras") -> dict[str, Any]:
    """Train ``config`` (as :func:`crosscheck_config` makes it) on both sides; the per-step rows.

    ``adam_epsilon="torch"`` sets Keras Adam's epsilon before each step to the config's
    eps * sqrt(1 - beta2^t), which is PyTorch's placement written in Keras' form; "keras"
    leaves Keras' own."""
    keras = import_keras()
    cfg = crosscheck_config(with_overrides(config, {"train.batch_size": batch_size}, source="keras parity"))
    data = real_images(cfg, steps * batch_size, eval_images, data_dir)
    torch.manual_seed(cfg.seed)
    training = TrainlabSide(cfg, data).training  # the torch engine's own training object: float64, no autocast
    floatx = keras.config.floatx()
    keras.config.set_floatx("float64")  # global: the Input, the layers' variables and compute, the losses
    keras.mixed_precision.set_dtype_policy("float64")
    try:
        channels, height, width = data.input_shape
        model = build_keras_model(keras, cfg, (height, width, channels), data.num_classes)
        model.compile(optimizer=keras_optimizer(keras, cfg), jit_compile=False, metrics=["accuracy"],
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    finally:
        keras.config.set_floatx(floatx)
        keras.mixed_precision.set_dtype_policy(floatx)
    pairs = layer_pairs(training.model, model)
    copy_weights(pairs)
    start = weight_diff(pairs)
    x_nhwc = np.ascontiguousarray(data.x_train.transpose(0, 2, 3, 1))
    first_grads = keras_gradients(model, x_nhwc[:batch_size], data.y_train[:batch_size])
    rows = []
    for step in range(steps):
        index = np.arange(step * batch_size, (step + 1) * batch_size)
        lr = training.learning_rate(step)
        ours = float(training.train_step(torch.from_numpy(index), lr))
        training.state.step = step + 1
        if step == 0:
            grad_diff = gradient_diff(pairs, first_grads)
        model.optimizer.learning_rate.assign(lr)
        if adam_epsilon == "torch" and cfg.optimizer.type == "adam":
            beta2 = float(model.optimizer.beta_2)
            model.optimizer.epsilon = float(cfg.optimizer.eps or 1e-8) * (1.0 - beta2 ** (step + 1)) ** 0.5
        theirs = float(model.train_on_batch(x_nhwc[index], data.y_train[index], return_dict=True)["loss"])
        rows.append({"step": step + 1, "lr": lr, "loss_trainlab": ours, "loss_keras": theirs,
                     "loss_rel_diff": abs(ours - theirs) / max(abs(ours), abs(theirs), 1e-300),
                     "weight_rel_diff": weight_diff(pairs)})
    data_loss, accuracy = training.evaluate_split("val")
    penalty = training.penalty_value()
    evaluated = model.evaluate(np.ascontiguousarray(data.x_val.transpose(0, 2, 3, 1)), data.y_val,
                               batch_size=batch_size, verbose=0, return_dict=True)
    return {
        "config": config.name, "optimizer": cfg.optimizer.type, "adam_epsilon": adam_epsilon,
        "steps": steps, "batch_size": batch_size, "eval_images": eval_images,
        "layers": [f"{type(m).__name__}/{type(k).__name__}" for m, k, _ in pairs],
        "initial_weight_rel_diff": start, "first_step_grad_rel_diff": grad_diff, "rows": rows,
        "eval": {"loss_trainlab": data_loss + penalty, "penalty_trainlab": penalty,
                 "loss_keras": float(evaluated["loss"]), "accuracy_trainlab": accuracy,
                 "accuracy_keras": float(evaluated["accuracy"])},
    }


def first_step_diff(result: dict[str, Any]) -> float:
    """What decides the check: the largest relative difference of the copied weights, the
    first step's loss, and its gradients (both sides from the same weights and batch)."""
    return max(result["initial_weight_rel_diff"], result["rows"][0]["loss_rel_diff"],
               result["first_step_grad_rel_diff"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="a run config (YAML) with an mlp or cnn model")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (repeatable)")
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps on each side (default 5)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    parser.add_argument("--eval-images", type=int, default=256,
                        help="images after the training ones, evaluated at the end (default 256)")
    parser.add_argument("--data-dir", help="dataset root (default the config's data.data_dir, then $TRAINLAB_DATA)")
    parser.add_argument("--threshold", type=float, default=1e-4,
                        help="largest relative difference of the first step that passes (default 1e-4)")
    parser.add_argument("--adam-epsilon", choices=("keras", "torch"), default="keras",
                        help="where Keras' Adam adds epsilon: its own place (default), or PyTorch's, "
                             "which takes that one known difference out of the comparison")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the result as JSON to PATH")
    args = parser.parse_args(argv)
    if not keras_available():
        print("keras is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    if args.steps < 1 or args.batch_size < 2 or args.eval_images < 1:
        parser.error("--steps >= 1, --batch-size >= 2 and --eval-images >= 1")
    result = run(load_config(args.config, args.overrides), args.steps, args.batch_size, args.eval_images,
                 args.data_dir, args.adam_epsilon)
    result["first_step_rel_diff"] = largest = first_step_diff(result)
    result["passed"] = largest <= args.threshold
    epsilon = f", Adam's epsilon where {args.adam_epsilon} puts it" if result["optimizer"] == "adam" else ""
    print(f"{result['config']}: {len(result['layers'])} layers paired, {args.steps} steps of {args.batch_size}, "
          f"float64{epsilon}")
    print(f"first step: gradients differ by {result['first_step_grad_rel_diff']:.2e} (relative, norms)")
    print(f"{'step':>4} {'lr':>10} {'loss trainlab':>14} {'loss keras':>12} {'loss rel':>10} {'weights rel':>12}")
    for r in result["rows"]:
        print(f"{r['step']:>4} {r['lr']:>10.4g} {r['loss_trainlab']:>14.6f} {r['loss_keras']:>12.6f} "
              f"{r['loss_rel_diff']:>10.2e} {r['weight_rel_diff']:>12.2e}")
    e = result["eval"]
    print(f"eval on {args.eval_images} images: loss {e['loss_trainlab']:.6f} (penalty {e['penalty_trainlab']:.6f}) "
          f"vs keras {e['loss_keras']:.6f}; accuracy {e['accuracy_trainlab']:.4f} vs {e['accuracy_keras']:.4f}")
    print(f"first step (weights, loss, gradients): largest relative difference {largest:.2e}: "
          f"{'passed' if result['passed'] else 'FAILED'} (threshold {args.threshold:g})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
