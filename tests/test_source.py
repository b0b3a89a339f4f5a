"""The source section of configs: the entry rules, the key check, coverage, the quote and number
checks, and ``trainlab config show --provenance``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from trainlab.cli import app
from trainlab.config import RunConfig, SourceEntry, config_to_yaml, load_config
from trainlab.config._quote_numbers import quote_numbers, value_numbers
from trainlab.config.source import (
    as_entries,
    covering_key,
    leaf_paths,
    summarize,
    uncovered,
)
from trainlab.config.source_checks import number_problems, quote_problems
from trainlab.config.source_listing import list_sources
from trainlab.errors import ConfigError

BASE: dict[str, Any] = {"engine": "numpy", "data": {"dataset": "mnist"}, "model": {"type": "linear"}}
REPORT = [
    "Title of the report",
    "",
    "We train for twenty epochs with a batch size of 256 and a learning rate of",
    "1×10^{-4}, using   an 80/20 split.",
    "In the first baseline the dense layer is used only as an output layer.",
]


def _config(source: dict[str, Any], **sections: Any) -> RunConfig:
    return RunConfig.from_dict({**BASE, **sections, "source": source}, "f.yaml")


def _error(source: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        _config(source)
    return str(info.value)


@pytest.fixture
def seeds(tmp_path: Path) -> Path:
    folder = tmp_path / "seeds"
    folder.mkdir()
    (folder / "002_78a70f.txt").write_text("\n".join(REPORT) + "\n", encoding="utf-8")
    (folder / "003_aaaa.txt").write_text("other report\n", encoding="utf-8")
    return folder


# -- the entry and its keys -----------------------------------------------------------------------
def test_valid_entries_are_kept_and_written_back_without_nulls() -> None:
    source = {
        "optimizer.lr": {"published": "learning rate of 1e-4", "at": "002:3-4"},
        "optimizer.type": {"published": "self.opt = SGD()", "code": "owner/repo:lab1/train.py"},
        "train.epochs": {"reading": "not stated", "tried": "30 epochs: 81.2 %", "note": "see issue"},
    }
    config = _config(source)
    assert config.source["optimizer.lr"].kind == "published"
    assert config.source["optimizer.type"].reference == "code owner/repo:lab1/train.py"
    assert config.source["train.epochs"].kind == "reading"
    text = config_to_yaml(config)
    dumped = yaml.safe_load(text)["source"]
    assert dumped == source  # as written: no null keys for the fields an entry leaves out
    assert RunConfig.from_dict(yaml.safe_load(text)) == config


@pytest.mark.parametrize(("entry", "expected"), [
    ({"published": "q", "reading": "r"}, "exactly one of published"),
    ({"tried": "x"}, "exactly one of published"),
    ({"published": "q"}, "needs at (FILE:LINE"),
    ({"published": "q", "at": "002:1", "code": "o/r:p"}, "not both"),
    ({"reading": "r", "at": "002:1"}, "source.optimizer.lr.at: cites a published quote"),
    ({"reading": "r", "quote": "q"}, "source.optimizer.lr.quote: unknown key of a source entry; did you mean 'note'?"),
    ({"published": "q", "at": "002"}, "source.optimizer.lr.at: must be FILE:LINE"),
    ({"published": "q", "at": "002:5-3"}, "must be FILE:LINE"),
    ({"published": "q", "at": 135}, "write it in quotes"),
    ({"published": "q", "code": "repo-without-owner"}, "must be owner/repo:path"),
    ({"reading": "  "}, "source.optimizer.lr.reading: must not be empty"),
    ("just text", "source.optimizer.lr: must be a mapping"),
])
def test_entry_rules(entry: Any, expected: str) -> None:
    assert expected in _error({"optimizer.lr": entry})


def test_keys_must_be_fields_of_a_run_config() -> None:
    assert "'optimzer.lr': not a field of a run config; did you mean 'optimizer.lr'?" in _error(
        {"optimzer.lr": {"reading": "r"}})
    assert "did you mean 'optimizer.lr'" in _error({"lr": {"reading": "r"}})
    assert "no list indices" in _error({"model.conv[0].filters": {"reading": "r"}})
    assert "f.yaml: source:" in _error({"nonsense": {"reading": "r"}})
    # Through lists, unions and the optimizer that contains itself:
    config = _config({k: {"reading": "r"} for k in
                      ("model.conv.filters", "model.init.scheme", "optimizer.other.lr", "train.early_stopping",
                       "name", "engine")})
    assert len(config.source) == 6


def test_a_child_file_replaces_its_bases_entries_key_by_key(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**BASE, "source": {
        "optimizer.lr": {"published": "lr 0.01", "at": "002:3"}, "engine": {"reading": "fast"}}}))
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\nsource:\n  optimizer.lr: {reading: mine}\n")
    config = load_config(child)
    assert config.source["optimizer.lr"] == SourceEntry(reading="mine")  # whole: no 'at' left from the base
    assert config.source["engine"].reading == "fast"


# -- coverage ---------------------------------------------------------------------------------------
RAW: dict[str, Any] = {
    "base": "x.yaml", "name": "n", "seed": 1, "output": {"dir": "runs"}, "study": {"space": {}},
    "source": {}, "engine": "torch", "data": {"dataset": "cifar10", "val_fraction": 0.2},
    "model": {"type": "cnn", "conv": [{"filters": [32, 32]}], "conv_bias": False, "init": "he_normal"},
    "train": {"early_stopping": {}, "epochs": 20, "batch_size": 256},
}


def test_leaf_paths_skip_bookkeeping_keys_and_keep_lists_whole() -> None:
    assert list(leaf_paths(RAW)) == [
        "engine", "data.dataset", "data.val_fraction", "model.type", "model.conv", "model.conv_bias",
        "model.init", "train.early_stopping", "train.epochs", "train.batch_size"]
    assert leaf_paths(RAW)["model.conv"] == [{"filters": [32, 32]}]


def test_uncovered_finds_the_leaves_no_key_covers() -> None:
    source = {k: {"reading": "r"} for k in ("engine", "data", "model.conv", "model.type", "model.init", "train")}
    # model.conv does not cover model.conv_bias: a key covers at a dot boundary only.
    assert uncovered(RAW, source) == ["model.conv_bias"]
    assert uncovered(RAW, {}) == list(leaf_paths(RAW))
    assert covering_key("model.conv[1].filters", ["model", "model.conv", "model.conv.filters"]) == "model.conv.filters"
    assert covering_key("model.conv_bias", ["model.conv"]) is None


def test_summarize_counts_entries() -> None:
    source = {"engine": {"reading": "r"}, "data": {"published": "q", "at": "002:1"}, "model": {"reading": "s"}}
    assert summarize(RAW, source) == {"published": 1, "reading": 2, "reading_keys": ["engine", "model"],
                                      "uncovered": ["train.early_stopping", "train.epochs", "train.batch_size"]}


# -- quotes -----------------------------------------------------------------------------------------
def test_quotes_are_found_at_their_line_after_whitespace_normalisation(seeds: Path) -> None:
    source = {
        "model.fc": {"published": "In the first baseline the dense layer is used only as an output layer",
                     "at": "002:5"},
        "optimizer.lr": {"published": "a learning rate of 1×10^{-4}, using an 80/20", "at": "002:3-4"},
        "data.dataset": {"published": "Title of   the\treport", "at": "002_78a70f.txt:1"},
        "optimizer.type": {"published": "anything", "code": "o/r:p"},  # no offline check
        "train.epochs": {"reading": "why"},
    }
    assert quote_problems(source, seeds) == []


def test_a_quote_at_the_wrong_line_names_what_is_there_and_where_the_quote_is(seeds: Path) -> None:
    problems = quote_problems({"model.fc": {"published": "the dense layer is used only", "at": "002:3"}}, seeds)
    assert len(problems) == 1
    assert problems[0].startswith("source.model.fc: the quote is not at 002_78a70f.txt:3")
    assert "We train for twenty epochs" in problems[0] and "it is at 002_78a70f.txt:5" in problems[0]


def test_quote_files_must_resolve_and_lines_exist(seeds: Path) -> None:
    problems = quote_problems({
        "a.b": {"published": "q", "at": "00:1"},      # two files start with 00
        "c.d": {"published": "q", "at": "009:1"},     # none does
        "e.f": {"published": "q", "at": "003:2-9"},   # past the end
        "g.h": {"published": "an empty line", "at": "002:2"},
    }, seeds)
    assert "source.a.b: at 00:1: '00' starts 2 files" in problems[0]
    assert "source.c.d: at 009:1: no file '009'" in problems[1]
    assert "source.e.f: at 003:2-9: 003_aaaa.txt has only 1 lines" in problems[2]
    assert "(an empty line)" in problems[3]


def test_quote_checks_validate_raw_entries() -> None:
    with pytest.raises(ConfigError, match=r"^f\.yaml: source\.x\.y: needs exactly one"):
        as_entries({"x.y": {"tried": "t"}}, "f.yaml")
    assert isinstance(as_entries({"x.y": {"reading": "r"}})["x.y"], SourceEntry)


# -- numbers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "numbers"), [
    ("batch size of 256 and dropout 0.2", [256, 0.2]),
    ("lr 1e-4 then 1.5e-3", [1e-4, 1.5e-3]),
    ("1×10^{-4}", [1e-4]),
    ("1x10^-4", [1e-4]),
    ("$1 \\times 10^{-3}$", [1e-3]),
    ("between 10^{-5} and 10^{-1}", [1e-5, 1e-1]),
    ("an 80/20 split", [80, 20, 0.8, 0.2]),
    ("5 % and 0.01%", [5, 0.05, 0.01, 1e-4]),
    ("twenty epochs, patience three", [20, 3]),
    ("a hundred units", [100]),
    ("10,000 images", [10000, 10, 0]),
    ("45k/5k", [45, 45000, 5, 5000]),
    ("3×3 kernels", [3]),
    ("L2 on conv2d of VGG16", []),
    ("self.learning_rate = learning_rate", []),
])
def test_quote_numbers(text: str, numbers: list[float]) -> None:
    assert quote_numbers(text) == pytest.approx(numbers, rel=1e-9)


def test_value_numbers_skip_booleans_and_count_list_lengths() -> None:
    assert list(value_numbers({"a": True, "b": None, "c": "cifar10", "d": [32, 32], "e": -0.5})) == [10, 2, 32, 32, 0.5]


def test_numbers_in_a_published_quote_must_be_held_by_the_field() -> None:
    raw = {**BASE, "optimizer": {"type": "sgd", "lr": 1.0e-4}, "data": {"dataset": "mnist", "val_fraction": 0.2},
           "train": {"epochs": 20, "batch_size": 100, "early_stopping": {"patience": 5}}}
    good = {
        "optimizer.lr": {"published": "a learning rate of 1×10^{-4}", "at": "002:3"},
        "optimizer": {"published": "sgd with lr 0.0001", "at": "002:3"},  # a subtree holds its leaves
        "data.val_fraction": {"published": "an 80/20 split", "at": "002:4"},
        "train.epochs": {"published": "for twenty epochs", "at": "002:3"},
        "optimizer.type": {"published": "as in Baseline-2", "at": "002:3"},  # a name holds no number: unchecked
        "optimizer.momentum": {"reading": "99 is not checked in a reading"},
    }
    assert number_problems(raw, good) == []
    bad = {
        "train.batch_size": {"published": "with a batch size of 256", "at": "002:3"},
        "train.early_stopping": {"published": "patience of three", "code": "o/r:p"},
        "regularization.l2": {"published": "L2 of 1e-4", "at": "002:3"},  # not set: its default 0.0
        "train.reduce_on_plateau": {"published": "factor 0.5", "at": "002:3"},  # null holds nothing
    }
    problems = number_problems(raw, bad)
    assert [p.split(":")[0] for p in problems] == [f"source.{k}" for k in bad]
    assert "states 256, but train.batch_size is 100" in problems[0]
    assert "(code o/r:p) states 3" in problems[1]
    assert "states 0.0001, but regularization.l2 is 0.0" in problems[2]


def test_booleans_are_not_numbers() -> None:
    raw = {**BASE, "train": {"shuffle": True, "batch_size": 50}}
    problems = number_problems(raw, {"train": {"published": "1 pass, shuffled", "at": "002:1"}})
    assert problems and "states 1" in problems[0]


# -- config show --provenance -----------------------------------------------------------------------
def _files(tmp_path: Path) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({
        **BASE, "optimizer": {"type": "sgd", "lr": 0.01}, "train": {"epochs": 20},
        "source": {"optimizer.lr": {"published": "In the first baseline the dense layer", "at": "002:5"},
                   "train.epochs": {"reading": "the report gives no run length <b>"}}}))
    run = tmp_path / "run.yaml"
    run.write_text("base: base.yaml\nname: r\ntrain: {batch_size: 64}\n")
    return run


def test_list_sources_gives_each_field_its_origin(tmp_path: Path) -> None:
    run = _files(tmp_path)
    listing = list_sources(run, ["train.shuffle=false"])
    rows = {row.path: row for row in listing.rows}
    assert rows["optimizer.lr"].origin() == 'published 002:5 "In the first baseline the dense layer"'
    assert rows["train.epochs"].origin() == "reading: the report gives no run length <b>"
    assert rows["train.batch_size"].origin() == f"set in {run} (no source entry)"
    assert rows["optimizer.type"].origin() == f"set in {tmp_path / 'base.yaml'} (no source entry)"
    assert rows["train.shuffle"].origin() == "set by --set train.shuffle=false"
    assert rows["loss.type"].origin() == "default"
    assert "output.dir" not in rows and not any(p.startswith("source") for p in rows)
    counts = listing.counts()
    assert counts["published"] == 1 and counts["reading"] == 1
    # engine, data.dataset, model.type, optimizer.type, train.batch_size and train.shuffle (name and
    # seed are not settings: they are not listed):
    assert counts["set"] == 6 and "name" not in rows and "seed" not in rows
    assert listing.summary() == f"1 published, 1 reading, 6 set without source, {counts['default']} default"


def test_config_show_provenance(tmp_path: Path, seeds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    run = _files(tmp_path)
    result = CliRunner().invoke(app, ["config", "show", str(run), "--provenance"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert 'published 002:5 "In the first baseline the dense layer"' in out
    assert "reading: the report gives no run length <b>" in out
    assert f"set in {run} (no source entry)" in out and "default" in out
    assert "1 published, 1 reading, 5 set without source," in out

    result = CliRunner().invoke(app, ["config", "show", str(run), "--provenance", "--check-quotes", str(seeds)])
    assert result.exit_code == 0, result.output
    assert f"all 1 quotes found in {seeds}" in result.output

    result = CliRunner().invoke(app, ["config", "show", str(run), "--check-quotes", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "not a folder" in result.output

    (seeds / "002_78a70f.txt").write_text("the report changed\n" * 9, encoding="utf-8")
    result = CliRunner().invoke(app, ["config", "show", str(run), "--provenance", "--check-quotes", str(seeds)])
    assert result.exit_code == 2
    assert "1 of 1 quotes are not where their at: says" in result.output
    assert "source.optimizer.lr: the quote is not at 002_78a70f.txt:5" in result.output


def test_config_show_provenance_of_a_study_file_and_a_bad_one(tmp_path: Path) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({**BASE, "source": {"engine": {"reading": "numpy is enough"}},
                                     "study": {"objective": "test_accuracy", "space": {"optimizer.lr": [0.1, 0.01]}}}))
    result = CliRunner().invoke(app, ["config", "show", str(study), "--provenance"])
    assert result.exit_code == 0, result.output
    assert "reading: numpy is enough" in result.output
    study.write_text(yaml.safe_dump({**BASE, "source": {"engin": {"reading": "r"}}}))
    with pytest.raises(ConfigError, match="did you mean 'engine'"):
        list_sources(study)


def test_a_source_that_is_not_a_mapping_is_a_config_error(tmp_path: Path) -> None:
    from trainlab.config import load_config
    from trainlab.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text("data: {dataset: mnist}\nmodel: {type: linear}\nsource: [1]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="source: must be a mapping"):
        load_config(path)


def test_a_child_entry_replaces_its_base_entry_whole(tmp_path: Path) -> None:
    from trainlab.config import load_config_dict

    (tmp_path / "base.yaml").write_text(
        "data: {dataset: mnist}\nmodel: {type: linear}\n"
        "source:\n  model.type: {published: 'a linear classifier', at: '004:1'}\n", encoding="utf-8")
    (tmp_path / "child.yaml").write_text(
        "base: base.yaml\nsource:\n  model.type: {reading: ours}\n", encoding="utf-8")
    assert load_config_dict(tmp_path / "child.yaml")["source"]["model.type"] == {"reading": "ours"}
