"""Verified resume: a checkpoint records its config and data, and a resume under another
config (config.yaml edited by hand) or on other data is refused before anything is written."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import trainlab.api as tl
from tests.data.synthdata import idx_bytes, write_idx
from tests.helpers import InterruptAt, timeless, write_config
from trainlab.callbacks import CallbackList, TrainState
from trainlab.config import RunConfig
from trainlab.engines.base import FitContext, get_engine
from trainlab.errors import ConfigError, DataError, RunDirError
from trainlab.runs import open_run_dir

ENGINES = ["numpy", "torch"]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A tiny MNIST-like folder of IDX files (no real data needed)."""
    return write_idx(tmp_path / "mnist", n_train=200, n_test=40)


def _config(tmp_path: Path, dataset: Path, engine: str, **train: object) -> Path:
    return write_config(tmp_path / "c.yaml", tmp_path / "runs", engine=engine,
                        data={"dataset": str(dataset), "normalize": "channel", "val_fraction": 0.1},
                        model={"type": "mlp", "hidden": [8]},
                        train={"epochs": 2, "batch_size": 20, "eval_every": 3, **train})


def _interrupted(cfg: Path, step: int = 6) -> Path:
    """A run stopped by a KeyboardInterrupt at the evaluation of ``step`` (after its checkpoint)."""
    with pytest.raises(KeyboardInterrupt):
        tl.run(cfg, run_id="cut", progress=False, echo=False, callbacks=[InterruptAt(step)])
    return cfg.parent / "runs" / "t" / "cut"


def _files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


def _change_data(dataset: Path) -> None:
    """Other training labels: the data's fingerprint changes."""
    labels = (np.arange(200) % 10)[::-1].astype(np.uint8)
    (dataset / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))


def _edit_config(run: Path, section: str, key: str, value: object) -> None:
    config = yaml.safe_load((run / "config.yaml").read_text())
    config[section][key] = value
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("engine", ENGINES)
def test_hand_edited_config_is_refused_naming_the_fields(tmp_path: Path, dataset: Path, engine: str) -> None:
    run = _interrupted(_config(tmp_path, dataset, engine))
    _edit_config(run, "optimizer", "lr", 0.2)
    before = _files(run)
    with pytest.raises(ConfigError, match=r"optimizer\.lr: 0\.1 -> 0\.2.*config\.yaml edited"):
        tl.run(resume=run, progress=False, echo=False)
    assert _files(run) == before  # refused before anything was written: the run is as it was


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.usefixtures("one_torch_thread")
def test_changed_data_is_refused_naming_both_fingerprints(tmp_path: Path, dataset: Path, engine: str) -> None:
    run = _interrupted(_config(tmp_path, dataset, engine))
    recorded = tl.open_run(run).config["provenance"]["data"]["fingerprint"]
    _change_data(dataset)
    before = _files(run)
    with pytest.raises(DataError, match=rf"data fingerprint {recorded} then, (\w+) now") as caught:
        tl.run(resume=run, progress=False, echo=False)
    assert recorded not in str(caught.value).split("then,")[1]
    assert _files(run) == before


def test_extending_a_run_is_refused(tmp_path: Path, dataset: Path) -> None:
    run = tl.run(_config(tmp_path, dataset, "numpy"), run_id="r", progress=False, echo=False).path
    _edit_config(run, "train", "epochs", 4)
    with pytest.raises(ConfigError, match=r"train\.epochs: 2 -> 4"):
        tl.run(resume=run, progress=False, echo=False)


def test_resume_without_a_checkpoint_is_refused_before_anything_is_written(tmp_path: Path, dataset: Path) -> None:
    run = _interrupted(_config(tmp_path, dataset, "numpy"))
    (run / "checkpoint.npz").unlink()
    before = _files(run)
    with pytest.raises(RunDirError, match="holds no checkpoint"):
        tl.run(resume=run, progress=False, echo=False)
    assert _files(run) == before and json.loads(before["summary.json"])["status"] == "interrupted"


def test_checkpoint_records_the_config_and_data_and_an_unchanged_resume_is_exact(
    tmp_path: Path, dataset: Path
) -> None:
    from trainlab.engines.resume import config_sha256, resolved_config

    cfg = _config(tmp_path, dataset, "numpy")
    reference = tl.run(cfg, run_id="whole", progress=False, echo=False)
    run = _interrupted(cfg)
    with np.load(run / "checkpoint.npz") as saved:
        meta = json.loads(str(saved["meta"]))
    config = RunConfig.from_dict({k: v for k, v in tl.open_run(run).config.items() if k != "provenance"})
    assert meta["config"] == resolved_config(config) and "source" not in meta["config"]
    assert meta["config_sha256"] == config_sha256(resolved_config(config))
    assert meta["data_fingerprint"] == tl.open_run(run).config["provenance"]["data"]["fingerprint"]
    resumed = tl.run(resume=run, progress=False, echo=False)
    assert timeless(resumed.metrics) == timeless(reference.metrics)


def test_a_checkpoint_from_before_the_record_resumes_and_provenance_still_guards_the_data(
    tmp_path: Path, dataset: Path
) -> None:
    run = _interrupted(_config(tmp_path, dataset, "numpy"))
    with np.load(run / "checkpoint.npz") as saved:
        arrays = {k: saved[k] for k in saved.files}
    meta = json.loads(str(arrays["meta"]))
    for key in ("config", "config_sha256", "data_fingerprint", "stop_reason", "interval"):
        meta.pop(key)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(run / "checkpoint.npz", **arrays)
    _change_data(dataset)
    with pytest.raises(DataError, match="data fingerprint"):
        tl.run(resume=run, progress=False, echo=False)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("engine", ENGINES)
def test_the_engine_checks_too_when_it_loads_a_checkpoint(tmp_path: Path, dataset: Path, engine: str) -> None:
    """Callers of Engine.fit that bypass api.run (studies' executors, tests) get the same refusals."""
    from trainlab.data import prepare_data

    run = _interrupted(_config(tmp_path, dataset, engine))
    saved = {k: v for k, v in open_run_dir(run).read_config().items() if k != "provenance"}
    config = RunConfig.from_dict(saved)
    data = prepare_data(str(dataset), seed=0, **config.data.prepare_kwargs())

    def fit(config: RunConfig, data: object) -> None:
        run_dir = open_run_dir(run)
        context = FitContext(run_dir=run_dir, callbacks=CallbackList(tl.build_callbacks(config, run_dir)),
                             state=TrainState(), resume=True, progress=False, log=lambda _m: None)
        get_engine(engine).fit(config, data, context)  # type: ignore[arg-type]

    with pytest.raises(ConfigError, match=r"train\.batch_size: 20 -> 10"):
        fit(RunConfig.from_dict({**saved, "train": {**saved["train"], "batch_size": 10}}), data)
    with pytest.raises(DataError, match=r"data fingerprint .* then, elsewhere now"):
        fit(config, dataclasses.replace(data, fingerprint="elsewhere"))
