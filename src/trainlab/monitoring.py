"""Warnings from training monitors, shared by both engines.

Engines compute the monitor values (per-layer norms, dead-ReLU fractions) their own way;
this module turns them into one clearly worded warning per kind of problem.
"""

from __future__ import annotations

import math
from collections.abc import Callable

# Thresholds of the warnings: the gradient bounds apply to ``grad_norm_0``, the Frobenius norm
# of the first layer's weight gradient on the monitored batch; MOSTLY_DEAD is the fraction of a
# layer's ReLU units (conv channels) that fired for no example of that batch.
VANISHING_GRAD = 1e-7
EXPLODING_GRAD = 1e4
MOSTLY_DEAD = 0.9


class MonitorWarnings:
    """Turns monitor values into one clearly worded warning per kind of problem."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.given: set[str] = set()

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self.given:
            self.given.add(kind)
            self.log(f"warning: {message}")

    def check(self, step: int, values: dict[str, float]) -> None:
        """Warn (once per kind) about vanishing or exploding gradients and dead ReLUs."""
        grad = values.get("grad_norm_0")
        if grad is not None and grad < VANISHING_GRAD:
            self._warn(
                "vanishing",
                f"gradients vanish at step {step}: the first layer's gradient norm is {grad:.2e}; "
                "try batch_norm, a larger init scale, or another activation",
            )
        if grad is not None and (grad > EXPLODING_GRAD or not math.isfinite(grad)):
            self._warn(
                "exploding",
                f"gradients explode at step {step}: the first layer's gradient norm is {grad:.2e}; "
                "try a lower learning rate or train.grad_clip_norm",
            )
        for key, value in values.items():
            if key.startswith("dead_relu_") and value > MOSTLY_DEAD:
                self._warn(
                    "dead",
                    f"{value:.0%} of the ReLUs of layer {key.rsplit('_', 1)[-1]} are dead at step "
                    f"{step}: try a lower learning rate, leaky_relu, or he_normal init",
                )


__all__ = ["EXPLODING_GRAD", "MOSTLY_DEAD", "VANISHING_GRAD", "MonitorWarnings"]
