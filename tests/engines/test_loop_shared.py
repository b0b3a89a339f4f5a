"""What the shared loop owns for both engines: the run length, and the one resume check, which
also guards a checkpoint from before the resume record for callers that bypass api.run."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

import trainlab.api as tl
from tests.data.synthdata import idx_bytes, write_idx
from tests.helpers import InterruptAt, write_config
from trainlab.callbacks import CallbackList, TrainState
from trainlab.config import RunConfig, TrainConfig
from trainlab.data import prepare_data
from trainlab.engines.base import FitContext, get_engine
from trainlab.engines.resume import verify_resume
from trainlab.engines.run_length import RunLength, plan_length
from trainlab.errors import ConfigError, DataError, RunDirError
from trainlab.runs import open_run_dir


@pytest.mark.parametrize(
    ("train", "n", "expected"),
    [
        ({"batch_size": 32, "epochs": 3}, 100, RunLength(32, 3, 9, 3)),
        ({"batch_size": 500}, 100, RunLength(100, 1, 10, 1)),  # the batch is capped at the split
        ({"batch_size": "full", "steps": 7, "eval_every": 2}, 60, RunLength(60, 1, 7, 2)),
        ({"batch_size": 10, "steps": 25}, 95, RunLength(10, 9, 25, 9)),  # steps win over epochs
    ],
)
def test_plan_length(train: dict[str, object], n: int, expected: RunLength) -> None:
    assert plan_length(TrainConfig(**train), n) == expected


def test_an_empty_training_split_is_refused() -> None:
    with pytest.raises(ConfigError, match="training split is empty"):
        plan_length(TrainConfig(), 0)


@pytest.fixture
def interrupted(tmp_path: Path) -> tuple[Path, Path]:
    """(run, dataset): a numpy run on a tiny IDX dataset, stopped at step 6 after its checkpoint."""
    dataset = write_idx(tmp_path / "mnist", n_train=200, n_test=40)
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs", engine="numpy",
                       data={"dataset": str(dataset), "normalize": "channel", "val_fraction": 0.1},
                       model={"type": "mlp", "hidden": [8]},
                       train={"epochs": 2, "batch_size": 20, "eval_every": 3})
    with pytest.raises(KeyboardInterrupt):
        tl.run(cfg, run_id="cut", progress=False, echo=False, callbacks=[InterruptAt(6)])
    return cfg.parent / "runs" / "t" / "cut", dataset


def _saved_config(run: Path) -> RunConfig:
    return RunConfig.from_dict({k: v for k, v in open_run_dir(run).read_config().items() if k != "provenance"})


def test_verify_resume_reads_the_checkpoint_itself_and_names_a_missing_one(interrupted: tuple[Path, Path]) -> None:
    run, dataset = interrupted
    config = _saved_config(run)
    fingerprint = prepare_data(str(dataset), seed=0, **config.data.prepare_kwargs()).fingerprint
    verify_resume(open_run_dir(run), config, fingerprint)  # the same config and data: accepted
    with pytest.raises(DataError, match="then, elsewhere now"):
        verify_resume(open_run_dir(run), config, "elsewhere")
    (run / "checkpoint.npz").unlink()
    with pytest.raises(RunDirError, match="holds no checkpoint"):
        verify_resume(open_run_dir(run), config, fingerprint)


def test_the_engine_guards_a_checkpoint_without_the_record_by_the_provenance(
    interrupted: tuple[Path, Path],
) -> None:
    """A checkpoint of an older version records no data fingerprint: fitting it directly (no
    api.run) is refused on other data, as api.run refuses it, by config.yaml's provenance."""
    run, dataset = interrupted
    with np.load(run / "checkpoint.npz") as saved:
        arrays = {k: saved[k] for k in saved.files}
    meta = json.loads(str(arrays["meta"]))
    for key in ("config", "config_sha256", "data_fingerprint"):
        meta.pop(key)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(run / "checkpoint.npz", **arrays)
    labels = (np.arange(200) % 10)[::-1].astype(np.uint8)  # other labels: another fingerprint
    (dataset / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    config = _saved_config(run)
    data = prepare_data(str(dataset), seed=0, **config.data.prepare_kwargs())
    run_dir = open_run_dir(run)
    context = FitContext(run_dir=run_dir, callbacks=CallbackList(tl.build_callbacks(config, run_dir)),
                         state=TrainState(), resume=True, progress=False, log=lambda _m: None)
    with pytest.raises(DataError, match="data fingerprint"):
        get_engine("numpy").fit(config, data, context)
