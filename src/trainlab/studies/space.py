"""Search spaces: parameters over config fields, the grid, random draws, and narrowing.

A parameter is named by the dotted path of the config field it sets (``optimizer.lr``),
or, for linked settings, by a free label whose choices each set several fields together.
Optuna stores only scalars, so a choice whose value is a list or a mapping (``hidden:
[100, 100]``) is stored as its JSON text and mapped back here.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Union, get_args, get_origin

import numpy as np
import optuna
from pydantic import BaseModel

from trainlab.config import RunConfig, unknown_key_message
from trainlab.errors import ConfigError

Kind = Literal["grid", "choice", "uniform", "loguniform", "int", "linked"]
KINDS: tuple[str, ...] = ("grid", "choice", "uniform", "loguniform", "int", "linked")
DISCRETE: tuple[str, ...] = ("grid", "choice", "int", "linked")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\d+\])*(\.[A-Za-z_][A-Za-z0-9_]*(\[\d+\])*)*$")
_LABEL = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
Scalar = bool | int | float | str | None


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def stored(value: Any) -> Scalar:
    """How Optuna stores a choice: scalars as they are, lists and mappings as JSON text."""
    return value if _is_scalar(value) else json.dumps(value, separators=(", ", ": "))


@dataclass(frozen=True)
class Param:
    """One dimension of a search space.

    Attributes:
        name: the dotted config path it sets, or the label of a linked setting.
        kind: grid, choice, uniform, loguniform, int or linked.
        values: grid/choice: the values; linked: the labels.
        links: linked only: label -> {dotted path: value}.
        low, high: uniform/loguniform/int bounds (inclusive).
        step: int only: the spacing of the values.
    """

    name: str
    kind: Kind
    values: tuple[Any, ...] = ()
    links: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    low: float = 0.0
    high: float = 0.0
    step: int = 1

    @property
    def discrete(self) -> bool:
        """Whether the grid sampler can enumerate it."""
        return self.kind in DISCRETE

    @property
    def log(self) -> bool:
        return self.kind == "loguniform"

    def choices(self) -> list[Scalar]:
        """What Optuna stores for each value of a discrete parameter."""
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, self.step))
        if self.kind == "linked":
            return list(self.values)
        return [stored(v) for v in self.values]

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """The Optuna distribution of this parameter."""
        if self.kind in ("uniform", "loguniform"):
            return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)
        if self.kind == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), step=self.step)
        return optuna.distributions.CategoricalDistribution(self.choices())

    def suggest(self, trial: optuna.Trial) -> Scalar:
        """Ask Optuna for this parameter's value in ``trial`` (fixed when enqueued)."""
        if self.kind in ("uniform", "loguniform"):
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=self.step)
        return trial.suggest_categorical(self.name, self.choices())

    def overrides(self, value: Scalar) -> dict[str, Any]:
        """The config fields (dotted path -> value) that a stored value sets."""
        if self.kind == "linked":
            return dict(self.links[str(value)])
        if self.kind in ("grid", "choice"):
            for raw in self.values:
                if stored(raw) == value:
                    return {self.name: raw}
            raise KeyError(f"{self.name}: {value!r} is not one of its choices")
        if self.kind == "int":
            return {self.name: int(value)}  # type: ignore[arg-type]
        return {self.name: float(value)}  # type: ignore[arg-type]

    def draw(self, rng: np.random.Generator) -> Scalar:
        """One value drawn uniformly (log-uniformly for loguniform)."""
        if self.kind == "uniform":
            return float(rng.uniform(self.low, self.high))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        options = self.choices()
        return options[int(rng.integers(len(options)))]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form, kept in the storage so every worker sees the same space."""
        return {"name": self.name, "kind": self.kind, "values": list(self.values),
                "links": {k: dict(v) for k, v in self.links.items()},
                "low": self.low, "high": self.high, "step": self.step}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Param:
        """Inverse of :meth:`to_dict`."""
        return cls(name=data["name"], kind=data["kind"], values=tuple(data["values"]),
                   links=data["links"], low=data["low"], high=data["high"], step=data["step"])

    def describe(self) -> str:
        """A short text such as ``loguniform 1e-05..0.1`` or ``choice of 4: 16, 32, 64, 128``."""
        if self.kind in ("uniform", "loguniform", "int"):
            return f"{self.kind} {self.low:g}..{self.high:g}"
        return f"{self.kind} of {len(self.values)}: {', '.join(map(str, self.choices()))}"


# -- parsing ----------------------------------------------------------------------------


def parse_space(raw: Any, where: str) -> list[Param]:
    """Parse a ``space:`` mapping into parameters (paths checked against the run config).

    ``where`` names the place in messages, e.g. ``study.yaml: study.space``.

    Raises:
        ConfigError: a malformed entry or a path that is not a config field.
    """
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping of config paths to ranges (got {type(raw).__name__})")
    return [parse_param(str(key), value, f"{where}[{key!r}]") for key, value in raw.items()]


def parse_param(name: str, raw: Any, where: str) -> Param:
    """One space entry: ``[...]`` (a grid), or a mapping with one of the kinds as key."""
    if isinstance(raw, list):
        raw = {"grid": raw}
    if not isinstance(raw, Mapping) or len(raw) != 1 or next(iter(raw)) not in KINDS:
        raise ConfigError(
            f"{where}: expected a list of values or a mapping with one key, one of "
            f"{', '.join(KINDS)} (e.g. {{loguniform: [1e-5, 1e-1]}}); got {raw!r}"
        )
    kind, spec = next(iter(raw.items()))
    if kind == "linked":
        return _parse_linked(name, spec, where)
    check_path(name, where)
    if kind in ("grid", "choice"):
        if not isinstance(spec, list) or not spec:
            raise ConfigError(f"{where}: {kind} needs a non-empty list of values (got {spec!r})")
        labels = [stored(v) for v in spec]
        duplicates = sorted({str(v) for v in labels if labels.count(v) > 1})
        if duplicates:
            raise ConfigError(f"{where}: {kind} lists a value twice: {', '.join(duplicates)}")
        return Param(name, kind, values=tuple(spec))
    if kind == "int":
        return _parse_int(name, spec, where)
    low, high = _bounds(spec, where, kind)
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}: loguniform needs a low bound above 0 (got {low!r})")
    return Param(name, kind, low=float(low), high=float(high))


def _bounds(spec: Any, where: str, kind: str) -> tuple[float, float]:
    if (
        not isinstance(spec, list)
        or len(spec) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in spec)
    ):
        raise ConfigError(f"{where}: {kind} needs [low, high], two numbers (got {spec!r})")
    low, high = spec
    if not low < high:
        raise ConfigError(f"{where}: {kind} needs low < high (got [{low}, {high}])")
    return low, high


def _parse_int(name: str, spec: Any, where: str) -> Param:
    step = 1
    if isinstance(spec, list) and len(spec) == 3:
        *spec, step = spec
    low, high = _bounds(spec, where, "int")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high, step)) or step < 1:
        raise ConfigError(f"{where}: int needs [low, high] or [low, high, step], whole numbers, step >= 1")
    return Param(name, "int", low=low, high=high, step=step)


def _parse_linked(name: str, spec: Any, where: str) -> Param:
    if not _LABEL.match(name):
        raise ConfigError(f"{where}: a linked setting's name must be a plain label (got {name!r})")
    if not isinstance(spec, Mapping) or not spec:
        raise ConfigError(
            f"{where}: linked needs a mapping of labels to field settings, e.g. "
            "{before: {model.batch_norm: true, model.bn_position: before}}"
        )
    links: dict[str, dict[str, Any]] = {}
    for label, fields in spec.items():
        if not isinstance(fields, Mapping) or not fields:
            raise ConfigError(f"{where}.{label}: needs a mapping of config paths to values (got {fields!r})")
        for path in fields:
            check_path(str(path), f"{where}.{label}")
        links[str(label)] = {str(k): v for k, v in fields.items()}
    return Param(name, "linked", values=tuple(links), links=links)


# -- config paths -----------------------------------------------------------------------


def _split(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in path.split("."):
        name, *indexes = re.split(r"\[(\d+)\]", piece)
        parts.append(name)
        parts += [int(i) for i in indexes if i]
    return parts


def annotation_members(tp: Any) -> Iterator[Any]:
    """The alternatives of an annotation (Annotated, Optional and unions unwrapped)."""
    origin = get_origin(tp)
    if origin is typing.Annotated:
        yield from annotation_members(get_args(tp)[0])
    elif origin in (Union, types.UnionType):
        for arg in get_args(tp):
            yield from annotation_members(arg)
    else:
        yield tp


def check_path(path: str, where: str) -> None:
    """Fail unless ``path`` names a field of the run config (list items as ``[i]``).

    Raises:
        ConfigError: naming the path, the unknown part, and the closest field names.
    """
    if not _PATH.match(path):
        raise ConfigError(f"{where}: {path!r} is not a config path; write dotted field names, e.g. optimizer.lr")
    if path == "base" or path.startswith("base."):
        raise ConfigError(f"{where}: base cannot be searched over")
    tp: Any = RunConfig
    done: list[str] = []
    for part in _split(path):
        members = list(annotation_members(tp))
        if isinstance(part, int):
            lists = [m for m in members if get_origin(m) is list]
            if not lists:
                raise ConfigError(f"{where}: {path}: {'.'.join(done)} is not a list, [{part}] does not apply")
            tp = get_args(lists[0])[0]
            continue
        if any(get_origin(m) is dict and get_args(m)[1] is Any for m in members):  # model.options: free keys
            return
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        owner = next((m for m in models if part in m.model_fields), None)
        if owner is None:
            prefix = ".".join(done) or "the run config"
            if not models:
                raise ConfigError(f"{where}: {path}: {prefix} is a value, it has no field {part!r}")
            message = unknown_key_message(part, models[0], RunConfig)
            raise ConfigError(f"{where}: {path}: {part!r} in {prefix}: {message}")
        tp = owner.model_fields[part].annotation
        done.append(part)


# -- plans ------------------------------------------------------------------------------


def grid_points(params: Sequence[Param]) -> list[dict[str, Scalar]]:
    """Every combination of the parameters' choices, once, first parameter slowest."""
    names = [p.name for p in params]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(p.choices() for p in params))]


def random_points(params: Sequence[Param], n: int, seed: int) -> list[dict[str, Scalar]]:
    """``n`` independent draws, the same for the same seed whatever the number of workers."""
    rng = np.random.default_rng(seed)
    return [{p.name: p.draw(rng) for p in params} for _ in range(n)]


def overrides_for(params: Sequence[Param], values: Mapping[str, Scalar]) -> dict[str, Any]:
    """The config fields a point of the space sets (dotted path -> value)."""
    out: dict[str, Any] = {}
    for param in params:
        if param.name in values:
            out.update(param.overrides(values[param.name]))
    return out


def narrow(params: Sequence[Param], best: Sequence[Mapping[str, Scalar]], margin: float) -> list[Param]:
    """The space shrunk around the best settings of a previous stage.

    Numeric ranges become the span of the best values, widened by ``margin`` times that
    span on each side (in log space for loguniform; when all best values are equal, a range
    a tenth as wide as the old one around them) and clipped to the old range. Grid, choice
    and linked parameters keep only the values that the best settings used, in their
    original order.
    """
    out: list[Param] = []
    for param in params:
        seen = [b[param.name] for b in best if param.name in b]
        if not seen:
            out.append(param)
        elif param.kind in ("grid", "choice", "linked"):
            keep = [v for v, s in zip(param.values, param.choices(), strict=True) if s in seen]
            links = {k: v for k, v in param.links.items() if k in keep}
            out.append(replace(param, values=tuple(keep), links=links))
        else:
            out.append(_narrow_range(param, [float(v) for v in seen], margin))  # type: ignore[arg-type]
    return out


def _narrow_range(param: Param, seen: list[float], margin: float) -> Param:
    to, back = (math.log, math.exp) if param.log else (float, float)
    low, high = to(param.low), to(param.high)
    lo, hi = to(min(seen)), to(max(seen))
    pad = margin * (hi - lo) if hi > lo else (high - low) / 20  # one best value: a tenth of the range
    lo, hi = max(low, lo - pad), min(high, hi + pad)
    if param.kind == "int":
        first = int(param.low) + math.floor((lo - param.low) / param.step) * param.step
        last = int(param.low) + math.ceil((hi - param.low) / param.step) * param.step
        return replace(param, low=max(int(param.low), first), high=min(int(param.high), last))
    new_low, new_high = max(param.low, back(lo)), min(param.high, back(hi))  # exp(log(x)) != x
    if new_high <= new_low:  # the old range was hit at its edge; keep a sliver
        new_high = min(param.high, new_low * (1 + 1e-6) if param.log else new_low + 1e-12)
    return replace(param, low=new_low, high=new_high)
