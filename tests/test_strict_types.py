"""Strict numbers in every config section: no boolean read as 1 or 0, no infinity, no NaN.

The walk below visits every field of every section of a run file (nested models and lists
of models included) and tries the bad value on each field that takes a number.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic import BaseModel

from trainlab.config import RunConfig, deep_merge, load_config
from trainlab.errors import ConfigError
from trainlab.studies.space import annotation_members

ROOT = Path(__file__).resolve().parents[1]
MINIMAL: dict[str, Any] = {"data": {"dataset": "cifar10"}, "model": {"type": "mlp", "hidden": [100]}}


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _takes_bool(tp: Any) -> bool:
    for member in annotation_members(tp):
        if member is bool or (get_origin(member) is Literal and any(isinstance(a, bool) for a in get_args(member))):
            return True
        if get_origin(member) in (list, tuple) and any(_takes_bool(a) for a in get_args(member)):
            return True
    return False


def _number_shapes(tp: Any) -> set[tuple[str, type]]:
    """How a field holds numbers: ("scalar", int|float) and/or ("list", int|float)."""
    shapes: set[tuple[str, type]] = set()
    for member in annotation_members(tp):
        if member in (int, float):
            shapes.add(("scalar", member))
        elif get_origin(member) in (list, tuple):
            for arg in get_args(member):
                shapes |= {("list", kind) for form, kind in _number_shapes(arg) if form == "scalar"}
    return shapes


def _number_fields(model: type[BaseModel], prefix: tuple[str | int, ...] = (),
                   seen: frozenset[type] = frozenset()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """(path, annotation) of every field that takes a number, anywhere below ``model``."""
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        if _number_shapes(info.annotation):
            yield path, info.annotation
        for member in annotation_members(info.annotation):
            inner = [member]
            as_list = get_origin(member) is list
            if as_list:
                inner = [m for arg in get_args(member) for m in annotation_members(arg)]
            for sub in inner:
                if _is_model(sub) and sub not in seen:
                    sub_prefix = (*path, 0) if as_list else path
                    yield from _number_fields(sub, sub_prefix, seen | {model})


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _with_value(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """MINIMAL with ``value`` put at ``path`` (lists of models get one element)."""
    node: Any = value
    for part in reversed(path):
        node = [node] if isinstance(part, int) else {part: node}
    return deep_merge(MINIMAL, node)


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict(data, source="t.yaml")
    return str(info.value)


NUMBER_FIELDS = list(_number_fields(RunConfig))
BOOL_CASES = [(p, tp) for p, tp in NUMBER_FIELDS if not _takes_bool(tp)]
FLOAT_CASES = [(p, tp) for p, tp in NUMBER_FIELDS if any(kind is float for _, kind in _number_shapes(tp))]


def test_the_walk_finds_the_numeric_fields() -> None:
    names = {_dotted(p) for p, _ in NUMBER_FIELDS}
    for expected in ("seed", "train.epochs", "optimizer.lr", "optimizer.betas", "model.hidden",
                     "model.conv[0].kernel", "model.init.sigma", "optimizer.other.lr",
                     "train.early_stopping.min_delta", "augment.color_jitter.hue", "data.limit.train"):
        assert expected in names
    assert len(BOOL_CASES) > 80 and len(FLOAT_CASES) > 50


@pytest.mark.parametrize(("path", "annotation"), BOOL_CASES, ids=[_dotted(p) for p, _ in BOOL_CASES])
def test_a_boolean_is_not_a_number(path: tuple[str | int, ...], annotation: Any) -> None:
    scalar = any(form == "scalar" for form, _ in _number_shapes(annotation))
    value, where = (True, _dotted(path)) if scalar else ([True], f"{_dotted(path)}[0]")
    assert f"t.yaml: {where}: must be a number, not true/false" in _error(_with_value(path, value))


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan], ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize(("path", "annotation"), FLOAT_CASES, ids=[_dotted(p) for p, _ in FLOAT_CASES])
def test_floats_are_finite(path: tuple[str | int, ...], annotation: Any, bad: float) -> None:
    shapes = _number_shapes(annotation)
    scalar = ("scalar", float) in shapes
    value, where = (bad, _dotted(path)) if scalar else ([bad, bad], f"{_dotted(path)}[0]")
    assert f"t.yaml: {where}: must be a finite number" in _error(_with_value(path, value))


def test_the_issue_cases_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("data: {dataset: cifar10}\nmodel: {type: mlp, hidden: [10]}\n"
                    "train: {epochs: true}\noptimizer: {lr: .inf}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "train.epochs: must be a number, not true/false" in message
    assert "optimizer.lr: must be a finite number (got inf)" in message


def test_booleans_stay_where_they_belong() -> None:
    cfg = RunConfig.from_dict(
        deep_merge(MINIMAL, {"engine": "torch", "train": {"tta": True, "shuffle": False, "epochs": 2},
                             "augment": {"hflip": True}, "model": {"batch_norm": True},
                             "optimizer": {"lr": 1}}),
        source="t.yaml",
    )
    assert cfg.train.tta is True and cfg.augment.hflip is True and cfg.model.batch_norm is True
    assert cfg.train.epochs == 2 and cfg.optimizer.lr == 1.0  # an int is still a fine float


def test_every_ready_config_still_validates() -> None:
    """Every complete run file under configs/ (bases, study and tuning files are checked elsewhere)."""
    checked = 0
    for path in sorted(ROOT.glob("configs/**/*.yaml")):
        if "bases" in path.parts or "tuning" in path.parts or path.name in ("reproductions.yaml", "study-outcomes.yaml"):
            continue
        text = path.read_text(encoding="utf-8")
        if "\nstudy:" in text or text.startswith("study:"):
            continue
        load_config(path)
        checked += 1
    assert checked > 20


@pytest.mark.parametrize(("study", "message"), [
    ({"n_trials": True}, r"study\.n_trials: must be a number, not true/false"),
    ({"n_trials": 3, "alpha": math.inf}, r"study\.alpha: must be a finite number"),
])
def test_study_files_are_as_strict(tmp_path: Path, study: dict[str, Any], message: str) -> None:
    import yaml

    from trainlab.studies.spec import load_study

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "engine": "numpy", "data": {"dataset": "mnist"},
                                    "model": {"type": "linear"},
                                    "study": {**study, "space": {"optimizer.lr": [0.1, 0.2]}}}))
    with pytest.raises(ConfigError, match=message):
        load_study(path)
