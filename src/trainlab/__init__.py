"""trainlab: train, tune and explain image classifiers from one YAML file.

The notebook API is :mod:`trainlab.api`; its main functions are also reachable here, imported
on first use (so ``import trainlab`` stays light)::

    import trainlab as tl
    run = tl.run("configs/examples/mnist-mlp-numpy.yaml", overrides=["train.epochs=1"])
    model = tl.load(run.path)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# The names of trainlab.api offered at the package level.
_API_NAMES = ("fit", "load", "load_config", "open_run", "run", "run_study", "write_report")


def __getattr__(name: str) -> Any:
    if name in _API_NAMES:
        from trainlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'trainlab' has no attribute {name!r}")


__all__ = ["__version__", *_API_NAMES]
