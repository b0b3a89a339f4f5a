"""Study files and search spaces: parsing, the grid, random draws, linked settings, narrowing, errors."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.studies.conftest import TINY_RUN, write_study
from trainlab.errors import ConfigError
from trainlab.studies import grid_points, load_study, narrow, parse_space, random_points
from trainlab.studies.space import Param, overrides_for


def test_every_kind_parses() -> None:
    params = parse_space({
        "optimizer.lr": {"loguniform": [1e-5, 1e-1]},
        "model.dropout": {"uniform": [0.0, 0.5]},
        "train.batch_size": [32, 64],
        "optimizer.type": {"choice": ["sgd", "adam"]},
        "model.hidden": {"grid": [[50], [100, 100]]},
        "train.epochs": {"int": [1, 9, 4]},
        "bn": {"linked": {"before": {"model.batch_norm": True, "model.bn_position": "before"},
                          "none": {"model.batch_norm": False}}},
    }, "f.yaml: study.space")
    kinds = {p.name: p.kind for p in params}
    assert kinds == {"optimizer.lr": "loguniform", "model.dropout": "uniform", "train.batch_size": "grid",
                     "optimizer.type": "choice", "model.hidden": "grid", "train.epochs": "int", "bn": "linked"}
    by_name = {p.name: p for p in params}
    assert by_name["train.epochs"].choices() == [1, 5, 9]
    assert by_name["model.hidden"].choices() == ["[50]", "[100, 100]"]  # stored as JSON text
    assert by_name["model.hidden"].overrides("[100, 100]") == {"model.hidden": [100, 100]}
    assert by_name["bn"].overrides("before") == {"model.batch_norm": True, "model.bn_position": "before"}
    assert by_name["optimizer.lr"].distribution().log


def test_grid_covers_the_product_exactly_once() -> None:
    params = parse_space({"optimizer.lr": [0.01, 0.1, 1.0], "train.batch_size": [32, 64],
                          "bn": {"linked": {"on": {"model.batch_norm": True}, "off": {"model.batch_norm": False}}}},
                         "s")
    points = grid_points(params)
    assert len(points) == 3 * 2 * 2
    assert len({tuple(sorted(p.items())) for p in points}) == 12
    assert {p["optimizer.lr"] for p in points} == {0.01, 0.1, 1.0}
    assert points[0] == {"optimizer.lr": 0.01, "train.batch_size": 32, "bn": "on"}


def test_random_draws_are_reproducible_and_in_range() -> None:
    params = parse_space({"optimizer.lr": {"loguniform": [1e-5, 1e-1]}, "train.batch_size": [32, 64, 128],
                          "model.dropout": {"uniform": [0.1, 0.2]}}, "s")
    first, again, other = (random_points(params, 40, seed) for seed in (3, 3, 4))
    assert first == again and first != other
    lrs = [p["optimizer.lr"] for p in first]
    assert all(1e-5 <= v <= 1e-1 for v in lrs)
    assert min(lrs) < 1e-3 < max(lrs)  # both sides drawn; the log-uniform shape is checked below
    assert all(0.1 <= p["model.dropout"] <= 0.2 for p in first)
    assert {p["train.batch_size"] for p in first} == {32, 64, 128}


def test_loguniform_draws_are_uniform_in_log_space() -> None:
    """log10 of a draw from loguniform [1e-5, 1e-1] is uniform on [-5, -1]: the median is
    near -3 (the geometric mean 1e-3), half the draws fall below 1e-3 and each decade gets a
    quarter. A uniform draw on [1e-5, 1e-1] has its median near 0.05 (log10 -1.3) and puts
    about 1 % below 1e-3 and 0.01 % in the lowest decade, far outside these bounds."""
    params = parse_space({"optimizer.lr": {"loguniform": [1e-5, 1e-1]}}, "s")
    n = 2000
    logs = np.log10([p["optimizer.lr"] for p in random_points(params, n, seed=5)])
    assert ((logs >= -5) & (logs <= -1)).all()
    # the sample median of n uniform draws on a width-4 range has sd 4 / (2 sqrt(n)) ~ 0.045
    assert abs(np.median(logs) + 3) < 0.25
    # the fraction below the geometric mean has sd 0.5 / sqrt(n) ~ 0.011
    assert abs(np.mean(logs < -3) - 0.5) < 0.05
    per_decade = np.histogram(logs, bins=[-5, -4, -3, -2, -1])[0] / n  # sd ~ 0.01 each
    np.testing.assert_allclose(per_decade, 0.25, atol=0.05)


def test_linked_setting_sets_several_fields() -> None:
    (bn,) = parse_space({"bn": {"linked": {
        "before": {"model.batch_norm": True, "model.bn_position": "before"},
        "after": {"model.batch_norm": True, "model.bn_position": "after"}}}}, "s")
    assert bn.choices() == ["before", "after"]
    assert overrides_for([bn], {"bn": "after"}) == {"model.batch_norm": True, "model.bn_position": "after"}


def test_narrowing_around_the_best() -> None:
    lr = Param("optimizer.lr", "loguniform", low=1e-5, high=1e-1)
    opt = Param("optimizer.type", "choice", values=("sgd", "adam", "rmsprop", "nadam"))
    epochs = Param("train.epochs", "int", low=1, high=20, step=1)
    best = [{"optimizer.lr": 1e-3, "optimizer.type": "nadam", "train.epochs": 8},
            {"optimizer.lr": 4e-3, "optimizer.type": "sgd", "train.epochs": 10},
            {"optimizer.lr": 2e-3, "optimizer.type": "sgd", "train.epochs": 9}]
    tight = {p.name: p for p in narrow([lr, opt, epochs], best, margin=0.0)}
    assert math.isclose(tight["optimizer.lr"].low, 1e-3) and math.isclose(tight["optimizer.lr"].high, 4e-3)
    assert tight["optimizer.lr"].kind == "loguniform"
    assert tight["optimizer.type"].values == ("sgd", "nadam")  # original order kept
    assert (tight["train.epochs"].low, tight["train.epochs"].high) == (8, 10)
    wide = {p.name: p for p in narrow([lr, opt, epochs], best, margin=0.5)}
    # the span 1e-3..4e-3 is a factor 4 in log space; half of it on each side is a factor 2
    assert math.isclose(wide["optimizer.lr"].low, 5e-4) and math.isclose(wide["optimizer.lr"].high, 8e-3)
    assert (wide["train.epochs"].low, wide["train.epochs"].high) == (7, 11)
    edge = narrow([lr], [{"optimizer.lr": 0.09}, {"optimizer.lr": 0.1}], margin=1.0)[0]
    assert edge.high == 1e-1 and edge.low < 0.09  # clipped to the old range
    single = narrow([lr], [{"optimizer.lr": 1e-3}], margin=0.0)[0]
    assert single.low < 1e-3 < single.high  # a zero span widens by a tenth of the old range


# -- study files ------------------------------------------------------------------------


def _load(tmp_path: Path, study: dict[str, Any], **run: Any) -> Any:
    return load_study(write_study(tmp_path / "s.yaml", study, tmp_path / "runs", **run))


def test_study_file_defaults(tmp_path: Path) -> None:
    study = _load(tmp_path, {"space": {"optimizer.lr": [0.01, 0.1]}})
    assert study.name == "tiny" and study.dir == tmp_path / "runs" / "tiny"
    assert study.metric == "best_val_accuracy" and study.direction == "maximize"
    assert [s.sampler for s in study.stages] == ["grid"]
    loss = _load(tmp_path, {"objective": "test_loss", "n_trials": 4,
                            "space": {"optimizer.lr": {"loguniform": [1e-3, 1]}}})
    assert loss.direction == "minimize" and loss.stages[0].sampler == "tpe"


def test_a_test_objective_needs_the_test_split(tmp_path: Path) -> None:
    """train.final_test_eval: false keeps the test split out of every trial, so no trial
    could report a test metric: the study is refused before it starts."""
    held_out = {**TINY_RUN["train"], "final_test_eval": False}
    with pytest.raises(ConfigError, match=r"study\.objective: test_loss is measured on the test split"):
        _load(tmp_path, {"objective": "test_loss", "space": {"optimizer.lr": [0.01, 0.1]}}, train=held_out)
    assert _load(tmp_path, {"space": {"optimizer.lr": [0.01, 0.1]}}, train=held_out).metric == "best_val_accuracy"


def test_study_file_with_base(tmp_path: Path) -> None:
    write_study(tmp_path / "run.yaml", {}, tmp_path / "runs")
    data = yaml.safe_load((tmp_path / "run.yaml").read_text())
    data.pop("study")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "base": "run.yaml", "name": "based", "study": {"space": {"model.hidden": [[8], [16]]}}}))
    study = load_study(tmp_path / "s.yaml")
    assert study.name == "based" and study.base.data.dataset == "mnist"


@pytest.mark.parametrize(("study", "message"), [
    ({"space": {"optimizer.lrr": [0.1]}}, r"study\.space\['optimizer\.lrr'\]: optimizer\.lrr: 'lrr' in optimizer: unknown field; did you mean 'lr'\?"),
    ({"space": {"model.hidden.width": [1]}}, r"model\.hidden is a value, it has no field 'width'"),
    ({"space": {"optimizer.lr": [0.1, -1.0]}}, r"setting optimizer\.lr=-1\.0.*optimizer\.lr: must be greater than 0"),
    ({"space": {"optimizer.lr": {"loguniform": [0, 1]}}}, r"loguniform needs a low bound above 0"),
    ({"space": {"optimizer.lr": {"uniform": [1, 0.5]}}}, r"uniform needs low < high"),
    ({"space": {"optimizer.lr": {"between": [1, 2]}}}, r"one key, one of grid, choice, uniform"),
    ({"space": {"optimizer.lr": {"choice": []}}}, r"choice needs a non-empty list"),
    ({"space": {"optimizer.lr": [0.1, 0.1]}}, r"lists a value twice: 0\.1"),
    ({"space": {"bn": {"linked": {"on": {"model.batchnorm": True}}}}}, r"did you mean 'batch_norm'"),
    ({"sampler": "grid", "space": {"optimizer.lr": {"loguniform": [1e-3, 1]}}}, r"sampler grid needs discrete ranges; 'optimizer\.lr'"),
    ({"sampler": "tpe", "space": {"optimizer.lr": [0.1]}}, r"sampler tpe needs n_trials"),
    ({"space": {}}, r"study\.space: empty"),
    ({"spaces": {"optimizer.lr": [0.1]}}, r"study\.spaces: unknown field; did you mean 'space'\?"),
    ({"objective": "test_acc", "space": {"optimizer.lr": [0.1]}}, r"did you mean 'test_accuracy'\?"),
    ({"stages": [{"name": "a", "narrow": {"top": 2}}], "space": {"optimizer.lr": [0.1]}}, r"first stage has no previous"),
    ({"repeats": 0, "space": {"optimizer.lr": [0.1]}}, r"study\.repeats: must be greater than or equal to 1"),
    ({"space": {"optimizer.momentum": [0.9]}}, r"momentum.*not used by optimizer type 'sgd'"),
])
def test_bad_study_files_name_the_field(tmp_path: Path, study: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        _load(tmp_path, study)
    assert "s.yaml" in str(info.value)


def test_missing_study_section_and_bad_run_section(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"data": {"dataset": "mnist"}, "model": {"type": "mlp"}}))
    with pytest.raises(ConfigError, match="needs a study: section"):
        load_study(path)
    with pytest.raises(ConfigError, match=r"model\.hiden: unknown field; did you mean 'hidden'"):
        _load(tmp_path, {"space": {"optimizer.lr": [0.1]}}, model={"type": "mlp", "hiden": [3]})
