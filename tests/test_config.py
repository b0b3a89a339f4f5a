"""Tests of the config language: every seed-study row fits, every mistake is named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from trainlab.config import (
    RunConfig,
    config_diff,
    config_schema,
    config_to_yaml,
    deep_merge,
    load_config,
    load_config_dict,
    parse_overrides,
    with_overrides,
)
from trainlab.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "configs" / "examples"
MINIMAL: dict[str, Any] = {
    "data": {"dataset": "cifar10"},
    "model": {"type": "mlp", "hidden": [100]},
}


def build(**sections: Any) -> RunConfig:
    """A RunConfig from MINIMAL with ``sections`` merged on top."""
    return RunConfig.from_dict(deep_merge(MINIMAL, sections), source="test.yaml")


def error_of(**sections: Any) -> str:
    with pytest.raises(ConfigError) as info:
        build(**sections)
    return str(info.value)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# --- every seed-study row is expressible -------------------------------------------------

SEED_ROWS: dict[str, dict[str, Any]] = {
    "A1 numpy mlp": {
        "engine": "numpy",
        "data": {"dataset": "cifar10"},
        "model": {
            "type": "mlp",
            "hidden": [100],
            "activation": "relu",
            "init": {"scheme": "normal", "sigma": 0.01},
        },
        "loss": {"type": "cross_entropy"},
        "optimizer": {"type": "sgd", "lr": 2e-3},
        "train": {"steps": 1500, "batch_size": 200},
    },
    "A grid best + moving-window early stop": {
        "engine": "numpy",
        "data": {"dataset": "cifar10"},
        "model": {
            "type": "mlp",
            "hidden": [500, 500],
            "activation": "elu",
            "dropout": 0.6,
            "init": {"scheme": "uniform", "scale": 1e-3},
        },
        "regularization": {"l2": 3e-5},
        "optimizer": {"type": "adam", "lr": 3e-4},
        "train": {
            "steps": 6000,
            "batch_size": 256,
            "eval_every": 50,
            "eval_on_test": True,
            "early_stopping": {
                "monitor": "test_accuracy",
                "window": 10,
                "threshold": 1e-4,
                "start_after": 500,
                "patience": 0,
            },
        },
    },
    "A CNN": {
        "data": {"dataset": "cifar10"},
        "model": {
            "type": "cnn",
            "conv": [{"filters": 32}, {"filters": 64}],
            "fc": [256],
            "dropout": 0.6,
            "fc_dropout": 0.6,
        },
        "optimizer": {"type": "adam", "lr": 1e-4},
        "train": {"batch_size": 256, "grad_clip_value": 1.0},
    },
    "B MLP": {
        "data": {"dataset": "mnist"},
        "model": {"type": "mlp", "hidden": [512, 512], "init": {"scheme": "glorot_uniform"}},
        "optimizer": {"type": "sgd", "lr": 0.01},
        "train": {"epochs": 60, "batch_size": 100},
    },
    "B CNN 18-36-72-72": {
        "data": {"dataset": "mnist"},
        "model": {
            "type": "cnn",
            "conv": [{"filters": 18}, {"filters": 36}, {"filters": [72, 72]}],
            "fc": [750],
        },
        "train": {"epochs": 10},
    },
    "B cats-vs-dogs VGG": {
        "data": {"dataset": "cats-vs-dogs", "resize": 64, "val_fraction": 0.2},
        "model": {
            "type": "cnn",
            "conv": [{"filters": [64, 64]}, {"filters": [128, 128]}, {"filters": [256, 256, 256]}],
            "fc": [4096, 4096],
            "fc_dropout": 0.5,
        },
        "optimizer": {"type": "momentum", "lr": 0.01, "momentum": 0.9, "weight_decay": 1.5e-3},
        "train": {"reduce_on_plateau": {"monitor": "val_loss", "factor": 0.1, "patience": 3}},
        "augment": {
            "rotate": 10,
            "hflip": True,
            "random_resized_crop": [0.8, 1.0],
            "color_jitter": {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.05},
            "grayscale": 0.2,
        },
    },
    "C VGG rising dropout, BN before, L2, Adam": {
        "data": {"dataset": "cifar10", "val_fraction": 0.2, "normalize": "scale"},
        "model": {
            "type": "cnn",
            "batch_norm": True,
            "bn_position": "before",
            "init": {"scheme": "he_uniform"},
            "conv": [{"filters": [32, 32]}, {"filters": [64, 64]}, {"filters": [128, 128]}],
            "dropout": [0.2, 0.5, 0.7],
        },
        "regularization": {"l2": 1e-4},
        "optimizer": {"type": "adam", "lr": 1e-3},
        "train": {
            "epochs": 50,
            "batch_size": 256,
            "early_stopping": {"monitor": "val_loss", "patience": 3},
        },
        "augment": {"translate": 0.1, "hflip": True, "zoom": 0.1, "mixup": 0.2, "cutout": 8},
    },
    "D cyclical, lambda 0.0035": {
        "engine": "numpy",
        "data": {"dataset": "cifar10", "val_size": 5000},
        "model": {"type": "mlp", "hidden": [50, 50], "batch_norm": True},
        "regularization": {"l2": 0.0035},
        "schedule": {
            "type": "cyclical",
            "min_lr": 1e-5,
            "max_lr": 1e-1,
            "step_size": 900,
            "cycles": 3,
        },
        "train": {"batch_size": 100},
    },
    "E linear squared loss": {
        "engine": "numpy",
        "data": {"dataset": "cifar10", "val_size": 5000, "normalize": "scale", "scale": 100},
        "model": {"type": "linear"},
        "loss": {"type": "squared"},
        "regularization": {"l2": 1e-6},
        "optimizer": {"type": "sgd", "lr": 0.017},
        "schedule": {"type": "exponential", "gamma": 0.95},
    },
    "E full batch 200 sigmoid": {
        "engine": "numpy",
        "data": {"dataset": "cifar10", "val_size": 5000},
        "model": {"type": "mlp", "hidden": [200], "activation": "sigmoid"},
        "loss": {"type": "squared"},
        "train": {"batch_size": "full", "epochs": 300},
    },
    "E Keras CNN": {
        "data": {"dataset": "cifar10", "val_size": 5000},
        "model": {
            "type": "cnn",
            "conv": [{"filters": 32}, {"filters": 64}, {"filters": 64}],
            "fc": [64],
            "fc_activation": "sigmoid",
        },
        "optimizer": {"type": "momentum", "lr": 0.015, "momentum": 0.5},
        "train": {"batch_size": 50, "epochs": 300},
    },
}


@pytest.mark.parametrize("row", SEED_ROWS)
def test_seed_rows_validate(row: str) -> None:
    cfg = RunConfig.from_dict(SEED_ROWS[row], source=row)
    assert RunConfig.from_dict(cfg.model_dump(mode="json")) == cfg


def test_seed_row_values_are_kept() -> None:
    d = RunConfig.from_dict(SEED_ROWS["D cyclical, lambda 0.0035"])
    assert d.regularization.l2 == 0.0035
    assert d.schedule.per == "step" and d.train.steps == 2 * 900 * 3 and d.train.epochs is None
    e = RunConfig.from_dict(SEED_ROWS["E full batch 200 sigmoid"])
    assert e.train.batch_size == "full"
    lin = RunConfig.from_dict(SEED_ROWS["E linear squared loss"])
    assert lin.data.scale == 100 and lin.data.val_size == 5000 and lin.loss.type == "squared"
    c = RunConfig.from_dict(SEED_ROWS["C VGG rising dropout, BN before, L2, Adam"])
    assert c.model.layer_dropouts() == [0.2, 0.5, 0.7]
    assert [b.filter_list() for b in c.model.conv] == [[32, 32], [64, 64], [128, 128]]
    assert c.train.early_stopping is not None and c.train.early_stopping.mode == "min"
    a = RunConfig.from_dict(SEED_ROWS["A grid best + moving-window early stop"])
    assert a.train.early_stopping is not None and a.train.early_stopping.mode == "max"


def test_type_dependent_defaults_are_filled() -> None:
    cfg = build(optimizer={"type": "adam"})
    assert (
        cfg.optimizer.lr == 1e-3
        and cfg.optimizer.betas == (0.9, 0.999)
        and cfg.optimizer.momentum is None
    )
    assert build(optimizer={"type": "nesterov"}).optimizer.momentum == 0.9
    assert build(optimizer={"type": "adamw"}).optimizer.weight_decay == 0.01
    assert build().train.epochs == 10
    assert build(model={"init": {"scheme": "normal"}}).model.init.sigma == 0.01
    assert build(data={"limit": 500}).data.limits().train == 500


# --- errors name the field, the value and what is allowed -------------------------------


def test_unknown_key_suggests_the_close_name() -> None:
    message = error_of(train={"epoch": 3})
    assert "test.yaml: train.epoch: unknown field; did you mean 'epochs'?" in message
    assert "allowed: epochs, steps" in message


def test_unknown_key_points_to_the_right_section() -> None:
    assert "it belongs in optimizer.lr" in error_of(train={"lr": 0.1})
    assert "model.conv[1].filtres: unknown field; did you mean 'filters'?" in error_of(
        model={"type": "cnn", "hidden": [], "conv": [{"filters": 8}, {"filtres": 8}]}
    )


def test_mistyped_values_are_named() -> None:
    message = error_of(train={"epochs": "ten"})
    assert "train.epochs:" in message and "'ten'" in message
    assert "model.hidden:" in error_of(model={"hidden": 100})
    assert "did you mean 'adamax'?" in error_of(optimizer={"type": "adma"})
    assert "model.conv[1].filters[1]:" in error_of(
        model={"type": "cnn", "hidden": [], "conv": [{"filters": 8}, {"filters": [8, "x"]}]}
    )
    assert "data: must be a mapping (got null)" in error_of(data=None)


@pytest.mark.parametrize(
    ("sections", "path", "value"),
    [
        ({"optimizer": {"lr": -0.1}}, "optimizer.lr", "-0.1"),
        ({"data": {"val_fraction": 1.0}}, "data.val_fraction", "1.0"),
        ({"train": {"batch_size": 0}}, "train.batch_size", "0"),
        ({"model": {"dropout": 1.0}}, "model.dropout", "1.0"),
        ({"model": {"hidden": [100, 100], "dropout": [0.5, 1.0]}}, "model.dropout[1]", "1.0"),
        ({"model": {"hidden": [100, 0]}}, "model.hidden[1]", "0"),
        ({"loss": {"label_smoothing": 1}}, "loss.label_smoothing", "1"),
        ({"seed": -1}, "seed", "-1"),
    ],
)
def test_out_of_range_values_name_the_path(sections: dict[str, Any], path: str, value: str) -> None:
    message = error_of(**sections)
    assert f"test.yaml: {path}: " in message
    assert f"(got {value})" in message


def test_several_problems_one_line_each() -> None:
    message = error_of(optimizer={"lr": 0}, train={"epochs": 0, "batch_size": -1})
    lines = message.splitlines()
    assert len(lines) == 3 and all(line.startswith("test.yaml: ") for line in lines)


def test_cross_field_checks() -> None:
    assert "model.dropout: has 2 rates for 1 hidden layers" in error_of(
        model={"dropout": [0.1, 0.2]}
    )
    assert "model.hidden: type 'mlp' needs at least one hidden layer" in error_of(
        model={"hidden": []}
    )
    assert "model.hidden: not used by model type 'linear'" in error_of(model={"type": "linear"})
    assert "model.conv: not used by model type 'mlp'; use type: cnn" in error_of(
        model={"conv": [{"filters": 8}]}
    )
    assert "train.steps: give either epochs (3) or steps" in error_of(
        train={"epochs": 3, "steps": 5}
    )
    assert "optimizer.momentum: not used by optimizer type 'sgd'" in error_of(
        optimizer={"momentum": 0.9}
    )
    assert "schedule.min_lr: must be below max_lr" in error_of(
        schedule={"type": "cyclical", "min_lr": 0.1, "max_lr": 0.01, "step_size": 10}
    )
    assert "schedule.step_size: schedule type 'cyclical' needs step_size" in error_of(
        schedule={"type": "cyclical", "min_lr": 0.001, "max_lr": 0.01}
    )
    assert "train.early_stopping.monitor: needs train.eval_on_test: true" in error_of(
        train={"early_stopping": {"monitor": "test_accuracy"}}
    )
    assert "there is no validation split" in error_of(
        data={"val_fraction": 0}, train={"early_stopping": {}}
    )
    assert "did you mean 'cifar10'?" in error_of(data={"dataset": "cifar-10"})
    assert build(data={"dataset": "./my/pets.tar.gz"}).data.dataset == "./my/pets.tar.gz"
    assert build(data={"dataset": "pets.tgz"}).data.dataset == "pets.tgz"  # an archive name without a '/'
    for zipped in ("pets.zip", "./my/pets.ZIP"):  # validated, not left to fail when the run loads it
        assert "zip archives are not read" in error_of(data={"dataset": zipped})


def test_numpy_engine_refuses_what_it_cannot_do() -> None:
    cnn = {"type": "cnn", "hidden": [], "conv": [{"filters": 8}]}
    message = error_of(engine="numpy", model=cnn)
    assert "model.type: engine 'numpy' has no conv layers: use engine: torch" in message
    message = error_of(engine="numpy", augment={"hflip": True})
    assert "augment.hflip: engine 'numpy' does not augment" in message
    assert "optimizer.type: engine 'numpy'" in error_of(engine="numpy", optimizer={"type": "nadam"})
    assert "model.activation: engine 'numpy' has no gelu" in error_of(
        engine="numpy", model={"activation": "gelu"}
    )
    assert "model.activation: engine 'numpy' has no silu" in error_of(
        engine="numpy", model={"activation": "silu"}
    )
    assert build(engine="numpy", augment={}).engine == "numpy"


def test_base_key_is_refused_by_from_dict() -> None:
    with pytest.raises(ConfigError, match="base: is resolved when a file is loaded"):
        RunConfig.from_dict({**MINIMAL, "base": "x.yaml"})


# --- files: YAML errors, base chains --------------------------------------------------------


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "data:\n  dataset: cifar10\nmodel: [type: mlp\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "line 4" in str(info.value)
    assert "started at line 3" in str(info.value)


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "dup.yaml",
        "data: {dataset: mnist}\nmodel: {type: linear}\ndata: {dataset: cifar10}\n",
    )
    with pytest.raises(ConfigError, match="duplicate key 'data'"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "match"), [("", "empty"), ("# only a comment\n", "empty"), ("- 1\n- 2\n", "mapping")]
)
def test_empty_or_non_mapping_file(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, "x.yaml", text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_errors_in_a_file_name_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "x.yaml",
        "data: {dataset: cifar10}\nmodel: {type: mlp, hidden: [10]}\ntrain: {epoch: 3}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: train.epoch: unknown field; did you mean 'epochs'?")


def test_base_chain_merges(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(
        tmp_path,
        "root.yaml",
        "data: {dataset: cifar10, val_fraction: 0.2}\noptimizer: {type: adam}\n"
        "model: {type: mlp, hidden: [100, 100]}\ntrain: {epochs: 5, early_stopping: {patience: 2}}\n",
    )
    write(
        tmp_path / "sub",
        "mid.yaml",
        "base: ../root.yaml\nmodel: {hidden: [300]}\ntrain: {batch_size: 64}\n",
    )
    top = write(
        tmp_path / "sub",
        "top.yaml",
        "base: mid.yaml\noptimizer: {lr: 1e-4}\ntrain: {early_stopping: null}\n",
    )
    cfg = load_config(top)
    assert cfg.data.val_fraction == 0.2  # from root
    assert cfg.model.hidden == [300]  # lists replace
    assert cfg.optimizer.type == "adam" and cfg.optimizer.lr == 1e-4  # dicts merge
    assert cfg.train.epochs == 5 and cfg.train.batch_size == 64
    assert cfg.train.early_stopping is None  # null replaces


def test_error_from_a_base_names_the_base(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", "data: {dataset: cifar10}\ntrain: {epochs: -1}\n")
    top = write(tmp_path, "top.yaml", "base: base.yaml\nmodel: {type: linear}\n")
    with pytest.raises(ConfigError) as info:
        load_config(top)
    assert str(info.value).startswith(f"{base}: train.epochs:")


def test_base_cycle_names_the_chain(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "base: b.yaml\n")
    write(tmp_path, "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_config(a)
    assert "cycle" in str(info.value)
    assert "a.yaml -> " in str(info.value) and "b.yaml -> " in str(info.value)
    assert str(info.value).rstrip().endswith("a.yaml")


def test_missing_base_is_named(tmp_path: Path) -> None:
    top = write(tmp_path, "top.yaml", "base: gone.yaml\ndata: {dataset: mnist}\n")
    with pytest.raises(ConfigError, match=r"gone\.yaml"):
        load_config(top)


# --- overrides -----------------------------------------------------------------------------


def test_parse_overrides_types() -> None:
    parsed = parse_overrides(
        [
            "train.epochs=3",
            "optimizer.lr=1e-3",
            "model.hidden=[100,100]",
            "train.shuffle=false",
            "train.early_stopping=null",
            "name=exp-1",
            "optimizer.eps=1E-8",
            "regularization.l2=.5",
        ]
    )
    assert parsed["train"] == {"epochs": 3, "shuffle": False, "early_stopping": None}
    assert parsed["optimizer"] == {"lr": 1e-3, "eps": 1e-8}
    assert isinstance(parsed["optimizer"]["lr"], float)
    assert parsed["model"] == {"hidden": [100, 100]}
    assert parsed["name"] == "exp-1" and parsed["regularization"] == {"l2": 0.5}
    assert parse_overrides(["model.conv[1].filters=64"]) == {
        "model": {"conv": {1: {"filters": 64}}}
    }


@pytest.mark.parametrize(
    "bad",
    ["train.epochs", "=3", "train..epochs=3", "train.epochs=", "a b=1", "x=[1,", "base=x.yaml"],
)
def test_bad_override_syntax(bad: str) -> None:
    with pytest.raises(ConfigError, match="--set"):
        parse_overrides([bad])


def test_overrides_apply_after_base(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", "data: {dataset: cifar10}\nmodel: {type: mlp, hidden: [10]}\n")
    top = write(tmp_path, "top.yaml", "base: base.yaml\ntrain: {epochs: 5}\n")
    cfg = load_config(
        top,
        [
            "train.epochs=3",
            "optimizer.lr=1e-3",
            "model.hidden=[100,100]",
            "train.early_stopping.patience=2",
        ],
    )
    assert cfg.train.epochs == 3 and cfg.optimizer.lr == 1e-3 and cfg.model.hidden == [100, 100]
    assert cfg.train.early_stopping is not None and cfg.train.early_stopping.patience == 2


def test_override_into_a_list_item() -> None:
    cfg = load_config(EXAMPLES / "cifar10-cnn-torch.yaml", ["model.conv[1].filters=[96,96]"])
    assert cfg.model.conv[1].filters == [96, 96] and cfg.model.conv[0].filters == [32, 32]
    with pytest.raises(ConfigError, match="out of range"):
        load_config(EXAMPLES / "cifar10-cnn-torch.yaml", ["model.conv[7].filters=8"])


def test_override_errors_mention_set(tmp_path: Path) -> None:
    top = write(tmp_path, "x.yaml", "data: {dataset: cifar10}\nmodel: {type: linear}\n")
    with pytest.raises(ConfigError) as info:
        load_config(top, ["train.epoch=3"])
    message = str(info.value)
    assert "--set train.epoch=3" in message and "did you mean 'epochs'?" in message
    with pytest.raises(
        ConfigError, match=r"--set optimizer.lr=-1.*optimizer.lr: must be greater than 0"
    ):
        load_config(top, ["optimizer.lr=-1"])


# --- schema, round trip, diff, examples -----------------------------------------------------


def test_schema_has_the_sections() -> None:
    schema = config_schema()
    json.dumps(schema)  # plain JSON
    assert schema["type"] == "object" and "$schema" in schema
    for section in (
        "name",
        "seed",
        "engine",
        "base",
        "data",
        "model",
        "loss",
        "optimizer",
        "schedule",
        "regularization",
        "train",
        "augment",
        "output",
    ):
        assert section in schema["properties"]
    assert schema["additionalProperties"] is False
    train = schema["$defs"]["TrainConfig"]
    assert "epochs" in train["properties"] and train["properties"]["epochs"]["description"]


@pytest.mark.parametrize(
    "row", ["B cats-vs-dogs VGG", "D cyclical, lambda 0.0035", "E full batch 200 sigmoid"]
)
def test_round_trip_through_yaml(tmp_path: Path, row: str) -> None:
    cfg = RunConfig.from_dict(SEED_ROWS[row])
    text = config_to_yaml(cfg)
    again = load_config(write(tmp_path, "resolved.yaml", text))
    assert again == cfg
    assert again.model_dump(mode="json") == cfg.model_dump(mode="json")
    assert config_to_yaml(again) == text


def test_config_diff_lists_changed_fields() -> None:
    a = load_config(EXAMPLES / "cifar10-cnn-torch.yaml")
    b = load_config(
        EXAMPLES / "cifar10-cnn-torch.yaml",
        ["optimizer.lr=3e-4", "model.conv[2].filters=[256,256]", "train.early_stopping=null"],
    )
    diff = config_diff(a, b)
    assert ("optimizer.lr", 1e-3, 3e-4) in diff
    assert ("model.conv[2].filters", [128, 128], [256, 256]) in diff
    assert any(path == "train.early_stopping" and new is None for path, _, new in diff)
    assert len(diff) == 3
    assert config_diff(a, a) == []
    assert [p for p, _, _ in config_diff(a, b, ignore=("model", "train"))] == ["optimizer.lr"]


@pytest.mark.parametrize(
    "name", sorted(p.name for p in EXAMPLES.glob("*.yaml"))
)
def test_examples_load(name: str) -> None:
    cfg = load_config(EXAMPLES / name)
    written = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    assert cfg.name == written["name"]  # its own name, not the default


def test_example_with_base_inherits() -> None:
    cfg = load_config(EXAMPLES / "cifar10-baseline.yaml")
    assert cfg.optimizer.type == "adam" and cfg.train.batch_size == 256 and cfg.model.type == "cnn"


def test_load_config_dict_resolves_base_without_validating() -> None:
    tree = load_config_dict(EXAMPLES / "cifar10-baseline.yaml")
    assert "base" not in tree and tree["optimizer"]["type"] == "adam"
    assert tree["model"]["conv"] == [{"filters": 32}, {"filters": 32}]


def test_with_overrides_rederives_filled_fields() -> None:
    adam = build(optimizer={"type": "adam"}, train={"early_stopping": {"monitor": "val_loss"}})
    assert adam.optimizer.betas is not None and adam.train.epochs == 10
    cfg = with_overrides(
        adam,
        ["optimizer.type=momentum", "train.steps=500", "train.early_stopping.monitor=val_accuracy"],
    )
    assert cfg.optimizer.betas is None and cfg.optimizer.momentum == 0.9
    assert cfg.train.steps == 500 and cfg.train.epochs is None
    assert cfg.train.early_stopping is not None and cfg.train.early_stopping.mode == "max"
    assert cfg.optimizer.lr == adam.optimizer.lr  # used by every type: kept
    study = with_overrides(adam, {"optimizer.lr": 3e-4, "model.hidden": [50, 50]})
    assert study.optimizer.lr == 3e-4 and study.model.hidden == [50, 50]
    assert with_overrides(adam, []) is adam


def test_with_overrides_changes_the_optimizer_from_and_to_muon() -> None:
    """Every field filled per optimizer type (muon's too) is reset when the type changes."""
    muon = build(optimizer={"type": "muon"})
    assert muon.optimizer.ns_steps == 5 and muon.optimizer.other is not None
    sgd = with_overrides(muon, ["optimizer.type=sgd"])
    assert (sgd.optimizer.momentum, sgd.optimizer.nesterov_momentum, sgd.optimizer.ns_steps,
            sgd.optimizer.normalize_weights, sgd.optimizer.other) == (None, None, None, None, None)
    assert with_overrides(sgd, ["optimizer.type=muon"]).optimizer == muon.optimizer


def test_with_overrides_resets_derived_fields_to_their_model_defaults() -> None:
    """A monitor's mode goes back to its default ``auto`` and is derived again."""
    cfg = build(train={"early_stopping": {"monitor": "val_accuracy"}}, data={"normalize": "pixel"})
    assert cfg.train.early_stopping is not None and cfg.train.early_stopping.mode == "max"
    changed = with_overrides(cfg, ["train.early_stopping.monitor=val_loss", "data.normalize=channel"])
    assert changed.train.early_stopping is not None and changed.train.early_stopping.mode == "min"
    assert changed.data.center_by == build().data.center_by


def test_with_overrides_errors_name_the_override() -> None:
    with pytest.raises(ConfigError) as info:
        with_overrides(build(), ["train.epoch=3"], source="runs/x/config.yaml")
    assert str(info.value).startswith(
        "runs/x/config.yaml (--set train.epoch=3): train.epoch: unknown field"
    )
    with pytest.raises(ConfigError, match="malformed key"):
        with_overrides(build(), {"train..epochs": 3})


def test_with_overrides_recomputes_cycle_length() -> None:
    cyc = RunConfig.from_dict(SEED_ROWS["D cyclical, lambda 0.0035"])
    assert with_overrides(cyc, ["schedule.cycles=2"]).train.steps == 2 * 900 * 2
