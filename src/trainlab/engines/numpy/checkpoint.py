"""Checkpoints of the NumPy engine: one ``checkpoint.npz``, written atomically, read safely.

The file holds plain arrays (``model/<key>`` weights and buffers, ``optim/<slot>:<key>``
optimizer state, ``best<i>/<key>`` a callback's best weights, ``permutation``) and
``meta``, a JSON string of everything else: step, generators, callback state, the running
sums of the current evaluation interval, and the record that verifies a resume
(:mod:`trainlab.engines.resume`). It is read with ``allow_pickle=False``: a file holding
pickled objects is refused, never unpickled.

Every way the file can be unusable (missing, not an ``.npz``, truncated, a damaged member,
no or malformed ``meta``, arrays that do not fit the run's model) ends in a
:class:`~trainlab.errors.RunDirError` naming the file and what is wrong, on resume as on
evaluate, predict and report, as for the torch engine's ``checkpoint.pt``.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainlab.engines.numpy.layers import Dropout
from trainlab.engines.resume import checkpoint_fits
from trainlab.errors import RunDirError
from trainlab.io import atomic_save_npz

if TYPE_CHECKING:
    from trainlab.engines.numpy.engine import NumpyTraining
    from trainlab.engines.numpy.model import Sequential

ZIP_MAGIC = b"PK\x03\x04"
# What numpy and zipfile raise on a damaged archive (a bad CRC, a torn member, a bad header).
_UNREADABLE = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error)


def load_arrays(path: Path, select: Callable[[str], bool] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays of ``path`` (those whose key ``select`` accepts; default all) and its ``meta``.

    Raises:
        RunDirError: the file is missing, is not an ``.npz``, is truncated or damaged, holds
            pickled objects, or has no readable ``meta``.
    """
    if not path.exists():
        raise RunDirError(f"cannot resume: {path} does not exist")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(ZIP_MAGIC))
    except OSError as exc:
        raise RunDirError(f"cannot read the checkpoint {path}: {exc.strerror or exc}") from None
    if magic != ZIP_MAGIC:
        raise RunDirError(f"{path} is not a trainlab numpy checkpoint (not an .npz archive: empty, "
                          "truncated at its start, or another kind of file)")
    try:
        with np.load(path, allow_pickle=False) as saved:
            keys = [k for k in saved.files if k != "meta" and (select is None or select(k))]
            if "meta" not in saved.files:
                raise RunDirError(f"{path} is not a trainlab numpy checkpoint (it has no meta entry)")
            raw_meta = saved["meta"]
            arrays = {k: saved[k] for k in keys}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise RunDirError(
                f"refused to load {path}: it holds pickled objects, not plain arrays, so it was not "
                "written by trainlab or was tampered with"
            ) from None
        raise RunDirError(f"cannot read the checkpoint {path}: it is truncated or damaged ({exc})") from None
    except _UNREADABLE as exc:
        raise RunDirError(
            f"cannot read the checkpoint {path}: it is truncated or damaged ({type(exc).__name__}: {exc})"
        ) from None
    try:
        meta = json.loads(str(raw_meta)) if raw_meta.ndim == 0 else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise RunDirError(f"{path} is not a trainlab numpy checkpoint (its meta entry is not a JSON object)")
    return arrays, meta


def load_meta(path: Path) -> dict[str, Any]:
    """Only the ``meta`` of ``path`` (the arrays stay on disk); errors as :func:`load_arrays`."""
    return load_arrays(path, select=lambda _key: False)[1]


def load_weights(path: Path, model: Sequential) -> None:
    """Put the checkpoint's weights into ``model`` (built from the run's config).

    Raises:
        RunDirError: the file is unreadable (see :func:`load_arrays`) or its weights do not
            fit ``model``.
    """
    arrays = load_model_arrays(path)
    with checkpoint_fits(path):
        model.load_state_arrays(arrays)


def _dropout_layers(model: Sequential) -> list[Dropout]:
    return [layer for layer in model.layers if isinstance(layer, Dropout)]


def save_training(training: NumpyTraining) -> None:
    """Write everything a bit-for-bit resume of ``training`` needs to its checkpoint, atomically."""
    arrays = {f"{MODEL_PREFIX}{k}": v for k, v in training.model.state_arrays().items()}
    meta: dict[str, Any] = {
        **training.loop_state(),
        "init_rng": training.init_rng.bit_generator.state,
        "data_rng": training.data_rng.bit_generator.state,
        "dropout_rngs": [layer.rng.bit_generator.state for layer in _dropout_layers(training.model)],
        "optimizer_scalars": {},
        # An interrupt checkpoints between evaluations: the interval's sums make its train row.
        "interval": {"loss": training.interval_loss, "accuracy": training.interval_accuracy,
                     "steps": training.interval_steps},
    }
    for key, value in training.optimizer.state_dict().items():
        if isinstance(value, np.ndarray):
            arrays[f"optim/{key}"] = value
        else:
            meta["optimizer_scalars"][key] = value
    for i, best in training.best_weights().items():
        arrays.update({f"best{i}/{k}": v for k, v in best.items()})
    arrays["permutation"] = training.permutation
    arrays["meta"] = np.array(json.dumps(meta))
    atomic_save_npz(training.checkpoint_path, arrays)


def _check_fit(path: Path, arrays: dict[str, np.ndarray], params: dict[str, np.ndarray], n: int) -> None:
    """Refuse optimizer slots and a permutation that do not fit the model and the data (they
    would fail steps later, or silently train on other examples)."""
    for key, value in arrays.items():
        if key.startswith("optim/") and ":" in key:
            target = params.get(key.split(":", 1)[1])
            if target is None or value.shape != target.shape:
                raise RunDirError(f"{path} does not fit the run it is in (optimizer state {key!r} has "
                                  f"shape {value.shape}, for no parameter of that shape); it was tampered "
                                  "with, or comes from another run")
    permutation = arrays.get("permutation")
    if permutation is None or permutation.shape != (n,) or permutation.dtype.kind not in "iu" \
            or not np.array_equal(np.sort(permutation), np.arange(n)):
        raise RunDirError(f"{path} does not fit the run it is in (its permutation is not one of the "
                          f"{n} training examples); it was tampered with, or comes from another run")


def _best_weights(arrays: dict[str, np.ndarray]) -> dict[int, dict[str, np.ndarray]]:
    """The ``best<i>/<key>`` entries as ``{i: {key: array}}``; a malformed index raises ValueError."""
    best: dict[int, dict[str, np.ndarray]] = {}
    for name, value in arrays.items():
        if name.startswith("best"):
            index, key = name.removeprefix("best").split("/", 1)
            best.setdefault(int(index), {})[key] = value
    return best


def load_training(training: NumpyTraining) -> dict[str, Any]:
    """Restore :func:`save_training`'s checkpoint into ``training``; returns its ``meta``.

    Raises:
        RunDirError: the checkpoint is unreadable or does not fit the run.
        ConfigError, DataError: it was written with another config or other data
            (:meth:`~trainlab.engines.loop.TrainingLoop.verify_checkpoint`).
    """
    path = training.checkpoint_path
    arrays, meta = load_arrays(path)
    training.verify_checkpoint(meta, path)
    _check_fit(path, arrays, training.model.parameters(), len(training.y_train))
    with checkpoint_fits(path):
        training.model.load_state_arrays(model_arrays(arrays))
        optim_state: dict[str, Any] = dict(meta["optimizer_scalars"])
        optim_state.update({k.removeprefix("optim/"): v for k, v in arrays.items() if k.startswith("optim/")})
        training.optimizer.load_state_dict(optim_state)
        training.permutation = arrays["permutation"]
        training.init_rng.bit_generator.state = meta["init_rng"]
        training.data_rng.bit_generator.state = meta["data_rng"]
        for layer, rng_state in zip(_dropout_layers(training.model), meta["dropout_rngs"], strict=True):
            layer.rng.bit_generator.state = rng_state
        training.restore_loop_state(meta, _best_weights(arrays))
        interval = meta.get("interval") or {}  # absent from checkpoints of older versions
        training.interval_loss = float(interval.get("loss", 0.0))
        training.interval_accuracy = float(interval.get("accuracy", 0.0))
        training.interval_steps = int(interval.get("steps", 0))
    return meta


MODEL_PREFIX = "model/"  # the checkpoint keys of the model's weights and buffers


def model_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's weights and buffers among a checkpoint's ``arrays``, keyed as
    :meth:`~trainlab.engines.numpy.model.Sequential.state_arrays` keys them (``0.W``, ...):
    the one reader of the ``model/`` entries (resume, predict, evaluate, reports)."""
    return {key.removeprefix(MODEL_PREFIX): value for key, value in arrays.items() if key.startswith(MODEL_PREFIX)}


def load_model_arrays(path: Path) -> dict[str, np.ndarray]:
    """:func:`model_arrays` of the checkpoint ``path``, read without its other arrays.

    Raises:
        RunDirError: the file is unreadable (see :func:`load_arrays`).
    """
    arrays, _ = load_arrays(path, select=lambda key: key.startswith(MODEL_PREFIX))
    return model_arrays(arrays)


__all__ = ["MODEL_PREFIX", "load_arrays", "load_meta", "load_model_arrays", "load_training", "load_weights",
           "model_arrays", "save_training"]
