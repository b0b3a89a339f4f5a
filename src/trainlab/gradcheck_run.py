"""A numerical gradient check of a NumPy-engine config on a small real batch (``trainlab gradcheck``).

The check, its verdict against a threshold, and where its result is written. Re-exported by
:mod:`trainlab.api` as ``gradcheck`` and ``write_gradcheck``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.config import RunConfig, resolve_config, with_overrides
from trainlab.engines.base import get_engine
from trainlab.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

#: The largest relative error of a passing check: float64 differences of a correct backward
#: pass land near 1e-8 and below; a wrong one is off by far more than this.
DEFAULT_THRESHOLD = 1e-6


def _checked_config(config: RunConfig | str | Path, overrides: Sequence[str] | None, layer: int | None,
                    n_values: Sequence[int] | None) -> RunConfig:
    """The config to check, in float64; refuses a torch config and an N sweep without ``layer``."""
    cfg = with_overrides(resolve_config(config, overrides), {"model.dtype": "float64"}, source="gradcheck")
    if cfg.engine != "numpy":
        raise ConfigError(f"gradcheck checks the numpy engine's backward passes; {cfg.engine!r} uses autograd")
    if n_values and layer is None:
        raise ConfigError("the N sweep differentiates one layer's weights: give --layer (e.g. --layer 2)")
    get_engine("numpy").check_config(cfg)
    return cfg


def _first_batch(
    cfg: RunConfig, batch_size: int, data_dir: str | Path | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """The first ``batch_size`` training images (float64, normalised as configured, flattened to
    (N, D)), their labels, and the number of classes."""
    import numpy as np

    from trainlab.data import prepare_data

    options = {**cfg.data.prepare_kwargs(), "val_fraction": 0.0, "val_size": None,
               "limit": {"train": max(batch_size, 100), "test": 100}}
    data = prepare_data(cfg.data.dataset, data_dir=data_dir or cfg.data.data_dir, seed=cfg.seed, dtype=np.float64,
                        **options)
    x = data.x_train[:batch_size].reshape(batch_size, -1)  # (N, D)
    y = data.y_train[:batch_size]
    return x, y, data.num_classes


def _check_options(batch_size: int, entries: int | None, eps: float, eps_values: Sequence[float] | None,
                   threshold: float) -> None:
    """A clear ConfigError for a check that cannot run or cannot fail as asked."""
    import math

    if batch_size < 1:
        raise ConfigError(f"--batch-size: at least 1 example (got {batch_size})")
    if entries is not None and entries < 0:
        raise ConfigError(f"--entries: 0 (every entry) or more (got {entries})")
    for step in (eps, *(eps_values or ())):
        if not (math.isfinite(step) and step > 0):
            raise ConfigError(f"--eps: a finite step above 0 (got {step})")
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ConfigError(f"--threshold: a finite relative error of 0 or more (got {threshold})")


# Long for the docstring of its ten arguments and its result; the body is: config, batch, model, checks.
def gradcheck(
    config: RunConfig | str | Path,
    *,
    overrides: Sequence[str] | None = None,
    batch_size: int = 8,
    entries: int | None = 100,
    eps: float = 1e-5,
    eps_values: Sequence[float] | None = None,
    data_dir: str | Path | None = None,
    layer: int | None = None,
    n_values: Sequence[int] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    """Numerical gradient check of a NumPy-engine config's model on a small real batch.

    The model is built as the config says, in float64, and every parameter (W, b, gamma,
    beta) is compared with centred finite differences, including the config's L1/L2
    penalties. Dropout masks are frozen during the check.

    Args:
        config: a config or its path (``engine: numpy``).
        overrides: ``"a.b=value"`` strings. Default None.
        batch_size: examples in the batch. Default 8.
        entries: entries checked per parameter, a seeded sample; None checks all. Default 100.
        eps: the finite-difference step. Default 1e-5.
        eps_values: also report the largest error for each of these steps. Default None.
        data_dir: where datasets are read from. Default None.
        layer: check only the weights of this affine layer (1 = input to first hidden), its
            first ``entries`` weights rather than a sample (seed B's check). Default None.
        n_values: also difference those weights with eps = 1/N for each N (seed B's sweep;
            ``engines.numpy.gradcheck.n_grid()``); needs ``layer``. Default None.
        threshold: the largest relative error (``max_rel_error``) that passes. Default 1e-6.

    Returns:
        ``{"config": name, "eps": eps, "rows": [...], "max_rel_error": float, "eps_sweep": [...],
        "layer": int or None, "layer_key": its parameter key ("2.W") or None, "n_sweep": [...],
        "threshold": threshold, "passed": max_rel_error <= threshold}``; each row has
        ``name``, ``shape``, ``entries``, ``max_rel_error`` and ``max_abs_error``; each
        ``n_sweep`` row ``n``, ``eps``, ``max_abs_diff``, ``max_rel_error`` and ``zeros``.

    Raises:
        ConfigError: a batch under 1 example, negative ``entries``, a step that is not a
            finite number above 0, a negative or non-finite threshold, or a config the check
            cannot run on (not the numpy engine; an N sweep without ``layer``).
    """
    import numpy as np

    from trainlab.engines.numpy.engine import build_model, make_loss
    from trainlab.engines.numpy.gradcheck import eps_sweep, linear_weight_key, n_sweep
    from trainlab.engines.numpy.gradcheck import gradcheck as check

    _check_options(batch_size, entries, eps, eps_values, threshold)
    cfg = _checked_config(config, overrides, layer, n_values)
    x, y, num_classes = _first_batch(cfg, batch_size, data_dir)
    model = build_model(cfg, x.shape[1], num_classes, np.random.default_rng([cfg.seed, 0]))
    reg = cfg.regularization
    options: dict[str, Any] = {"loss": make_loss(cfg), "l2": reg.l2, "l1": reg.l1,
                               "apply_to": reg.apply_to, "num_entries": entries, "seed": cfg.seed}
    key = None
    if layer is not None:
        try:
            key = linear_weight_key(model, layer)
        except IndexError as exc:
            raise ConfigError(f"--layer: {exc}") from None
        options.update(keys=[key], first=True)
    rows = check(model, x, y, eps=eps, **options)
    sweep = eps_sweep(model, x, y, list(eps_values), **options) if eps_values else []
    swept = []
    if n_values and key is not None:
        swept = n_sweep(model, x, y, list(n_values), key=key, num_entries=entries, loss=options["loss"],
                        l2=reg.l2, l1=reg.l1, apply_to=reg.apply_to)
    worst = max(row.max_rel_error for row in rows)
    return {
        "config": cfg.name,
        "eps": eps,
        "rows": [row._asdict() for row in rows],
        "max_rel_error": worst,
        "eps_sweep": [{"eps": e, "max_rel_error": r, "max_abs_error": a} for e, r, a in sweep],
        "layer": layer,
        "layer_key": key,
        "n_sweep": [row._asdict() for row in swept],
        "threshold": threshold,
        "passed": worst <= threshold,
    }


def write_gradcheck(result: dict[str, Any], *, out: str | Path | None = None,
                    run_dir: str | Path | None = None) -> dict[str, Path]:
    """Write a :func:`gradcheck` result where it was asked for; the files written, by kind.

    Args:
        result: what :func:`gradcheck` returned.
        out: a folder for ``gradcheck.json`` and, when the result has an N sweep, its table
            (``n_sweep.csv``) and figure (``n_sweep.png``/``.svg``: max |grad - approx| against
            N and eps, log-log). Default None.
        run_dir: a run directory: ``gradcheck.json`` goes in it, and its report shows it.
            Default None.

    Returns:
        ``{"saved": run_dir's gradcheck.json, "json": out's gradcheck.json, "csv", "png",
        "svg": the sweep's files}``, each key present only when that file was written.

    Raises:
        RunDirError: ``run_dir`` is not a run directory.
    """
    from trainlab.io import atomic_write_json
    from trainlab.run_files import GRADCHECK_FILE  # the name the run report reads
    from trainlab.runs import open_run_dir

    written: dict[str, Path] = {}
    if run_dir is not None:
        written["saved"] = open_run_dir(run_dir).path / GRADCHECK_FILE
        atomic_write_json(written["saved"], result)
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        written["json"] = folder / GRADCHECK_FILE
        atomic_write_json(written["json"], result)
        if result["n_sweep"]:
            # matplotlib is imported only when there is a figure to draw
            from trainlab.report.gradcheck_sweep import write_n_sweep

            title = (f"{result['config']}: first {result['rows'][0]['entries']} weights of layer "
                     f"{result['layer']} ({result['layer_key']})")
            written.update(write_n_sweep(result["n_sweep"], folder, title))
    return written


__all__ = ["DEFAULT_THRESHOLD", "gradcheck", "write_gradcheck"]
