"""trainlab export: a run's model as TorchScript or ONNX that takes raw pixels (the normaliser
folded in) and gives the run's own predictions; NumPy-engine models through an equivalent
torch module; clean errors for a bad format, a missing checkpoint and missing ONNX packages."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import trainlab.api as tl
from trainlab.cli import main
from trainlab.config import RunConfig
from trainlab.data import prepare_data
from trainlab.engines.numpy.model import build_mlp
from trainlab.engines.torch.layers import Scale
from trainlab.errors import ConfigError, RunDirError, TrainlabError
from trainlab.export import export_run, numpy_network, sidecar_path
from trainlab.run_files import RunDir

from .helpers import write_config

LIMIT = {"train": 500, "val": 200, "test": 200}
# name: engine, dataset, model, normalize, extra train options
RUNS: dict[str, tuple[str, str, dict[str, Any], str, dict[str, Any]]] = {
    # A CNN with batch norm, evaluated with an EMA of its weights and selective flip TTA (after
    # one epoch on 500 images the top probabilities are 0.11-0.25, so 0.14 splits the test
    # images; test_selective_tta_takes_the_views_for_some_images_only checks it): all in the export.
    "torch-cnn": ("torch", "cifar10", {"type": "cnn", "conv": [{"filters": 8}], "fc": [16], "batch_norm": True},
                  "channel", {"ema": {"decay": 0.9}, "tta": True, "tta_below": 0.14}),
    # Per-position statistics (feature), batch norm before the activation, dropout.
    "numpy-mlp": ("numpy", "mnist", {"type": "mlp", "hidden": [32, 16], "batch_norm": True, "dropout": 0.2},
                  "feature", {}),
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread_per_module: None) -> None:
    """Every test here (and the module's fixtures) trains with one torch thread."""


@pytest.fixture(scope="module")
def trained(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny real run of each kind, one epoch."""
    out = tmp_path_factory.mktemp("export")
    runs = {}
    for name, (engine, dataset, model, normalize, train) in RUNS.items():
        cfg = write_config(out / f"{name}.yaml", out / "runs", engine=engine, model=model,
                           data={"dataset": dataset, "limit": LIMIT, "normalize": normalize},
                           optimizer={"type": "adam", "lr": 2e-3}, train={"epochs": 1, "batch_size": 50, **train})
        runs[name] = tl.run(cfg, run_id=name, data_dir=real_data, progress=False, echo=False).path
    return runs


def raw_test_pixels(run: Path, real_data: Path) -> np.ndarray:
    """The run's test split as raw pixels (N, C, H, W) float32 in 0..255: the same split (seed,
    limits), with normalisation none."""
    saved = tl.open_run(run).config
    saved.pop(tl.PROVENANCE_KEY)
    config = RunConfig.from_dict(saved)
    kwargs = {**config.data.prepare_kwargs(), "normalize": "none"}
    data = prepare_data(config.data.dataset, data_dir=real_data, seed=config.seed, **kwargs)
    assert data.x_test is not None
    return data.x_test


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def run_probabilities(run: Path) -> np.ndarray:
    with np.load(run / "predictions.npz") as saved:
        return saved["probabilities"]


@pytest.mark.parametrize("name", list(RUNS))
def test_torchscript_export_gives_the_runs_predictions_from_raw_pixels(
        trained: dict[str, Path], real_data: Path, tmp_path: Path, name: str) -> None:
    path = export_run(trained[name], "torchscript", tmp_path / "model.pt")
    pixels = raw_test_pixels(trained[name], real_data)  # (N, C, H, W)
    module = torch.jit.load(str(path))
    with torch.no_grad():
        logits = module(torch.from_numpy(pixels)).numpy()  # (N, K)
        as_uint8 = module(torch.from_numpy(pixels[:5].astype(np.uint8))).numpy()
        # the same 5 images as float pixels: a batch of another size may take another GEMM
        # blocking (thread count, batch size) and so round differently by ~1e-6
        as_float = module(torch.from_numpy(pixels[:5])).numpy()
    assert logits.dtype == np.float32 and logits.shape == (LIMIT["test"], 10)
    np.testing.assert_allclose(softmax(logits), run_probabilities(trained[name]), rtol=0, atol=1e-5)
    np.testing.assert_allclose(as_uint8, as_float, rtol=0, atol=1e-6)  # uint8 pixels work as well
    np.testing.assert_allclose(as_float, logits[:5], rtol=0, atol=1e-5)

    sidecar = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    assert sidecar["input"]["shape"][1:] == list(pixels.shape[1:]) and sidecar["input"]["range"] == [0, 255]
    spec = RunDir(trained[name]).read_model()
    assert spec is not None and sidecar["class_names"] == spec.class_names and len(spec.class_names) == 10
    assert sidecar["output"]["name"] == "logits"
    assert sidecar["check"]["passed"] is True and sidecar["check"]["images"] == 8
    assert sidecar["tta"] == ("flip" if name == "torch-cnn" else "none")
    assert sidecar["tta_below"] == (0.14 if name == "torch-cnn" else None)
    assert sidecar["weights"].startswith("ema" if name == "torch-cnn" else "final")


def test_selective_tta_takes_the_views_for_some_images_only(
        trained: dict[str, Path], real_data: Path, tmp_path: Path) -> None:
    """The torch CNN's threshold leaves some test images with their plain logits and gives the
    others the views' mean, so the torchscript test above compares a real mix."""
    pixels = torch.from_numpy(raw_test_pixels(trained["torch-cnn"], real_data))
    with torch.no_grad():
        plain = torch.jit.load(str(export_run(trained["torch-cnn"], "torchscript", tmp_path / "plain.pt",
                                              tta="none")))(pixels)
        selective = torch.jit.load(str(export_run(trained["torch-cnn"], "torchscript", tmp_path / "sel.pt")))(pixels)
    sure = torch.softmax(plain, dim=1).amax(dim=1) >= 0.14
    assert 0 < int(sure.sum()) < len(sure)
    torch.testing.assert_close(selective[sure], plain[sure])  # the confident ones: plain logits
    assert not torch.allclose(selective[~sure], plain[~sure], atol=1e-4)  # the others: the views' mean


@pytest.mark.parametrize("name", list(RUNS))
def test_onnx_export_runs_in_onnxruntime_with_any_batch_size(
        trained: dict[str, Path], real_data: Path, name: str) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    path = export_run(trained[name], "onnx")  # the default: in the run directory
    assert path == trained[name] / "model.onnx" and sidecar_path(path).exists()
    pixels = raw_test_pixels(trained[name], real_data)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    assert given.name == "pixels" and given.type == "tensor(float)"
    logits = np.concatenate([session.run(None, {"pixels": pixels[:1]})[0],
                             session.run(None, {"pixels": pixels[1:]})[0]])
    np.testing.assert_allclose(softmax(logits), run_probabilities(trained[name]), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("activation", "bn_position", "activate_output", "dtype"), [
    ("relu", "before", False, np.float32),
    ("leaky_relu", "after", True, np.float32),
    ("elu", "before", True, np.float64),
    ("sigmoid", "after", False, np.float32),
    ("tanh", "before", False, np.float64),
    ("linear", "after", False, np.float32),
])
def test_the_torch_module_of_a_numpy_model_computes_its_eval_forward(
        activation: str, bn_position: str, activate_output: bool, dtype: type) -> None:
    rng = np.random.default_rng(1)
    model = build_mlp(12, 4, [6, 5], activation=activation, batch_norm=True, bn_position=bn_position,
                      dropout=[0.3, 0.1], rng=rng, dtype=dtype, leaky_slope=0.2, bn_eps=1e-3,
                      activate_output=activate_output, bias_init=0.1)
    for array in model.parameters().values():  # trained-looking values, not the initial ones
        array[...] = rng.normal(size=array.shape)
    for key, array in model.buffers().items():
        array[...] = rng.uniform(0.5, 2.0, size=array.shape) if key.endswith("var") else rng.normal(size=array.shape)
    x = rng.normal(size=(7, 3, 2, 2)).astype(dtype)  # (N, C, H, W), flattened by both
    expected = model.forward(x.copy(), False)
    with torch.no_grad():
        got = numpy_network(model)(torch.from_numpy(x)).numpy()
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 1e-12)


def test_export_errors_are_clean(trained: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = trained["numpy-mlp"]
    with pytest.raises(ConfigError, match="torchscript, onnx"):
        export_run(run, "tflite")
    with pytest.raises(ConfigError, match=r"checkpoint\.npz"):
        export_run(run, "torchscript", run / "checkpoint.npz")  # never over the run's own files
    with pytest.raises(ConfigError, match="unknown TTA mode 'mirror'"):
        export_run(run, "torchscript", tmp_path / "m.pt", tta="mirror")
    bare = tmp_path / "bare"
    shutil.copytree(run, bare)
    (bare / "checkpoint.npz").unlink()
    with pytest.raises(RunDirError, match="no checkpoint"):
        export_run(bare, "torchscript")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if the export extra were not installed
    with pytest.raises(TrainlabError, match=r"pip install 'trainlab\[export\]'"):
        export_run(run, "onnx", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_cli_export(trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deploy" / "net.pt"
    assert main(["export", str(trained["numpy-mlp"]), "--format", "torchscript", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "logits" in printed
    assert out.exists() and sidecar_path(out).exists()
    assert main(["export", str(trained["numpy-mlp"]), "--format", "tflite"]) == 2
    assert "torchscript, onnx" in capsys.readouterr().err


def test_an_export_that_does_not_reproduce_the_run_is_refused(
        trained: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check runs the export's bytes against the run's own loader before anything is written."""
    import trainlab.export

    faithful = trainlab.export.numpy_network
    monkeypatch.setattr(trainlab.export, "numpy_network", lambda model: torch.nn.Sequential(faithful(model),
                                                                                           Scale(1.01)))
    with pytest.raises(TrainlabError, match="nothing was written"):
        export_run(trained["numpy-mlp"], "torchscript", tmp_path / "wrong.pt")
    assert not any(tmp_path.iterdir())
