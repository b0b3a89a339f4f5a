"""The notebook API on real data: tl.load a run and predict (arrays, files, a folder), its
metrics as a DataFrame, the report's figures, evaluate, export; tl.fit a module of your own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import trainlab as tl
from tests.helpers import write_config
from trainlab.data import load_dataset
from trainlab.errors import DataError

pytestmark = pytest.mark.usefixtures("real_data")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nb")
    return tl.run(write_config(root / "c.yaml", root / "runs", train={"epochs": 1, "batch_size": 50}),
                  run_id="r", progress=False, echo=False).path


def test_load_predicts_arrays_files_and_folders_alike(trained: Path, tmp_path: Path) -> None:
    model = tl.load(trained)
    assert model.class_names == [str(k) for k in range(10)] and model.input_shape == (1, 28, 28)
    assert "numpy mlp, 10 classes, test accuracy" in repr(model)
    images = load_dataset("mnist").x_test[:12]  # (12, 28, 28, 1) uint8
    from_arrays = model.predict(images)
    assert from_arrays.probabilities.shape == (12, 10) and from_arrays.ids == list(range(12))
    np.testing.assert_allclose(from_arrays.probabilities.sum(1), 1.0, rtol=1e-5)
    assert (from_arrays.labels == model.predict(images.astype(np.float32)).labels).all()
    assert model.predict(images[0]).labels[0] == from_arrays.labels[0]  # one (H, W, C) image
    folder = tmp_path / "digits"
    (folder / "more").mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image[..., 0]).save(folder / ("more" if i % 2 else ".") / f"{i:02d}.png")
    from_folder = model.predict(folder)
    order = [int(Path(p).stem) for p in from_folder.ids]
    assert sorted(order) == list(range(12))
    np.testing.assert_array_equal(from_folder.labels, from_arrays.labels[order])
    files = model.predict([folder / "00.png", folder / "more" / "01.png"])
    np.testing.assert_array_equal(files.labels, from_arrays.labels[:2])
    frame = from_arrays.to_frame()
    assert list(frame.columns[:3]) == ["id", "label", "name"] and frame.shape == (12, 13)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        model.predict(tmp_path / "empty")


def test_module_metrics_figures_evaluate_and_export(trained: Path, tmp_path: Path) -> None:
    import pandas as pd
    from matplotlib.figure import Figure

    from trainlab.engines.numpy.model import Sequential

    model = tl.load(trained)
    assert isinstance(model.module, Sequential)
    metrics = model.metrics
    assert isinstance(metrics, pd.DataFrame) and set(metrics["split"]) >= {"train", "val"}
    assert metrics["accuracy"].dtype.kind == "f"
    assert isinstance(model.plot_curves(), Figure) and isinstance(model.plot_confusion(), Figure)
    result = model.evaluate()
    assert result["split"] == "test" and result["matches_summary"] is True
    exported = model.export("torchscript", tmp_path / "m.pt")
    assert exported.is_file()


def test_fit_trains_your_own_module(tmp_path: Path) -> None:
    from torch import nn

    torch_config = {"name": "mine", "seed": 0, "engine": "torch",
                    "data": {"dataset": "mnist", "limit": {"train": 600, "val": 200, "test": 200}, "normalize": "scale"},
                    "optimizer": {"type": "adam", "lr": 0.003},
                    "train": {"epochs": 2, "batch_size": 50},
                    "output": {"dir": str(tmp_path / "runs"), "report": False}}
    module = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    before = module[1].weight.detach().clone()
    run = tl.fit(module, torch_config, run_id="r", progress=False, echo=False)
    assert run.summary["final_val_accuracy"] > 0.6  # chance is 0.1
    assert not np.allclose(module[1].weight.detach().numpy(), before.numpy())  # trained weights came back
    loaded = tl.load(run.path)
    assert loaded.config.model.type == "custom"


def test_evaluate_computes_on_the_device_the_model_was_loaded_to(trained: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import trainlab.trained as trained_module

    seen: list[object] = []
    monkeypatch.setattr(trained_module, "evaluate_run", lambda *args, **kwargs: seen.append(kwargs["device"]))
    model = tl.load(trained)
    model.evaluate()  # a NumPy run: no device
    model._trained.loader.device = torch.device("cpu")  # as tl.load(run, device="cpu") leaves a torch run
    model.evaluate()
    assert seen == [None, "cpu"]
