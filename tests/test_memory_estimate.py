"""The memory estimate: counted from the config, checked at validate and before a run starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import trainlab.api as tl
import trainlab.engines.memory as memory
from tests.data.synthdata import write_image_folder
from trainlab.config import RunConfig, deep_merge
from trainlab.data import dataset_shape
from trainlab.engines.memory import available_memory, check_memory, estimate_memory, format_bytes
from trainlab.engines.model_size import model_size
from trainlab.errors import ConfigError

HUGE = {"engine": "numpy", "data": {"dataset": "mnist", "normalize": "scale"},
        "model": {"type": "mlp", "hidden": [99999999999]}}


def config(model: dict[str, Any] | None = None, **sections: Any) -> RunConfig:
    """A CIFAR-10 run of ``model`` (default an mlp with one hidden layer of 100) with ``sections``."""
    base = {"engine": "torch", "data": {"dataset": "cifar10"}, "model": model or {"type": "mlp", "hidden": [100]}}
    return RunConfig.from_dict(deep_merge(base, sections), source="t.yaml")


# --- the model is counted as the builders build it ---------------------------------------

MODELS: dict[str, dict[str, Any]] = {
    "linear": {"type": "linear"},
    "mlp-bn-dropout": {"type": "mlp", "hidden": [64, 32], "batch_norm": True, "dropout": [0.1, 0.2],
                       "bn_weight": False, "activate_output": True},
    "mlp-no-head-bias": {"type": "mlp", "hidden": [10], "head_bias": False, "head_scale": 0.5},
    "cnn": {"type": "cnn", "conv": [{"filters": [8, 16], "kernel": 3}, {"filters": 32, "kernel": 5, "stride": 2,
            "padding": "valid", "pool": "avg", "pool_size": 3, "pool_stride": 2}], "fc": [64, 32],
            "batch_norm": True, "fc_batch_norm": False, "conv_bias": False},
    "cnn-whiten-pool-first": {"type": "cnn", "whiten": {"kernel": 2}, "global_pool": "max",
                              "conv": [{"filters": [16, 16], "pool_position": "after_first_conv"},
                                       {"filters": 8, "padding": 1, "pool": None}], "batch_norm": True},
    "fast_cifar": {"type": "fast_cifar", "width": 16},
    "resnet9": {"type": "resnet", "depth": 9, "width": 8},
    "resnet18": {"type": "resnet", "depth": 18, "width": 8, "dropout": 0.1},
    "resnet34": {"type": "resnet", "depth": 34, "width": 4},
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)], ids=["cifar", "mnist"])
def test_parameter_count_matches_the_built_torch_model(name: str, shape: tuple[int, int, int]) -> None:
    torch = pytest.importorskip("torch")
    from trainlab.engines.torch.models import build_model, count_params

    m = config(model=MODELS[name]).model
    with torch.device("meta"):  # shapes only: nothing is allocated
        model = build_model(m, shape, 10)
    counted = model_size(m, shape, 10)
    assert counted.params == count_params(model)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    frozen += sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
    assert counted.frozen == frozen


def test_the_numpy_mlp_is_counted_as_built() -> None:
    import numpy as np

    from trainlab.engines.numpy.engine import build_model

    cfg = config({"type": "mlp", "hidden": [20, 10], "batch_norm": True}, engine="numpy")
    net = build_model(cfg, 3072, 10, np.random.default_rng(0))
    assert sum(p.size for p in net.parameters().values()) == model_size(cfg.model, (3, 32, 32), 10, "numpy").params


def test_eval_chunks_are_the_engines() -> None:
    from trainlab.engines.numpy import engine as numpy_engine

    assert memory.EVAL_CHUNK["numpy"] == numpy_engine.EVAL_CHUNK
    pytest.importorskip("torch")
    from trainlab.engines.torch import engine as torch_engine

    assert memory.EVAL_CHUNK["torch"] == torch_engine.EVAL_CHUNK


# --- the parts ---------------------------------------------------------------------------


def test_parts_follow_the_config() -> None:
    base = estimate_memory(config())
    assert base is not None and base.param_count == 3072 * 100 + 100 + 100 * 10 + 10 == 308_310
    # sgd keeps weights and gradients: two float32 copies
    assert base.parameters == base.param_count * 2 * 4
    adam = estimate_memory(config(optimizer={"type": "adam"}))
    assert adam.parameters == base.param_count * 4 * 4
    double = estimate_memory(config({"type": "mlp", "hidden": [100], "dtype": "float64"}))
    assert double.parameters == 2 * base.parameters
    # the decoded dataset: 60,000 uint8 images, float32 and uint8 copies of the 45k/5k/10k splits
    assert base.dataset == 60_000 * 3072 + 60_000 * 3072 * 5
    resized = estimate_memory(config(data={"resize": 64}))
    assert resized.dataset == 4 * base.dataset and resized.data.image == (64, 64, 3)
    limited = estimate_memory(config(data={"limit": {"train": 1000, "val": 100, "test": 100}}))
    assert limited.dataset == 60_000 * 3072 + 1200 * 3072 * 5
    bigger_batch = estimate_memory(config(train={"batch_size": 4096}))
    assert bigger_batch.activations > base.activations and bigger_batch.batch_size == 4096
    full = estimate_memory(config(train={"batch_size": "full"}))
    assert full.batch_size == 45_000


def test_activation_bytes_follow_the_documented_formula() -> None:
    """Training keeps every layer output and its gradient: batch x values x 2 x bytes; an
    evaluation chunk (torch: its widest output, twice; numpy: every output) when larger."""
    mlp = {"type": "mlp", "hidden": [100, 50], "dropout": 0.5}
    # per example: the input, then Linear, ReLU and Dropout outputs of each hidden layer, the logits
    values = 3072 + (100 + 100 + 100) + (50 + 50 + 50) + 10
    assert values == 3532
    big = estimate_memory(config(mlp, train={"batch_size": 4096}))
    assert big.activations == 4096 * values * 2 * 4 == 115_736_576
    bf16 = estimate_memory(config(mlp, train={"batch_size": 4096, "precision": "bf16"}))
    assert bf16.activations * 2 == big.activations  # 16-bit outputs under autocast: half
    # batch 32 (903 KiB) is below the evaluation chunk: 1024 rows of the widest output, the input
    small = estimate_memory(config(mlp))
    assert small.activations == 1024 * 3072 * 2 * 4 == 25_165_824
    assert estimate_memory(config(mlp, train={"precision": "bf16"})).activations * 2 == small.activations
    # the NumPy engine keeps every layer's cache in evaluation too: 4096 rows of all values
    assert estimate_memory(config(mlp, engine="numpy")).activations == 4096 * values * 4 == 57_868_288


def test_a_gpu_run_counts_only_its_dataset_against_the_host() -> None:
    gpu = estimate_memory(config(train={"device": "cuda"}))
    assert gpu is not None and gpu.host == gpu.dataset < gpu.total


def test_image_folder_sized_from_its_files_without_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_image_folder(tmp_path / "pets", per_class=6, size=(20, 12), n_test=5)

    def no_decoding(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the estimate decoded an image")

    monkeypatch.setattr("trainlab.data.imagefolder.decode_image", no_decoding)
    shape = dataset_shape(str(root))
    assert shape is not None
    assert (shape.train, shape.test, shape.image, shape.classes) == (12, 5, (12, 20, 3), 2)
    assert dataset_shape(str(root), resize=8).image == (8, 8, 3)
    import tarfile

    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="pets")
    shape = dataset_shape(str(archive))
    assert shape is not None and (shape.train, shape.test, shape.image, shape.classes) == (12, 5, (12, 20, 3), 2)
    assert dataset_shape(str(tmp_path / "missing")) is None


def test_format_bytes() -> None:
    assert format_bytes(512) == "512 B" and format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 2**40) == "3.0 TiB" and format_bytes(2**70).endswith("PiB")


# --- the check -------------------------------------------------------------------------


def test_available_memory_is_read() -> None:
    available = available_memory()
    assert available is not None and available > 0


def test_refused_with_the_estimate_its_parts_and_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config()
    monkeypatch.setattr(memory, "available_memory", lambda: 1 << 40)
    assert check_memory(cfg) is not None
    monkeypatch.setattr(memory, "available_memory", lambda: 2**20)
    with pytest.raises(ConfigError) as err:
        check_memory(cfg)
    message = str(err.value)
    estimate = estimate_memory(cfg)
    assert f"needs about {format_bytes(estimate.total)}" in message and "1.0 MiB" in message
    for part in ("parameters", "activations", "dataset", "batch 32", "308,310 weights"):
        assert part in message
    monkeypatch.setenv("TRAINLAB_MEMORY_CHECK", "off")
    assert check_memory(cfg) is None


def test_huge_model_refused_at_validate(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(yaml.safe_dump(HUGE), encoding="utf-8")
    (_, error), = tl.validate_files([path])
    assert error is not None and error.startswith("memory: this run needs about")
    assert "78,399,999,999,216" not in error and "parameters" in error and "use a smaller model" in error


def test_huge_study_base_refused_at_validate(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**HUGE, "study": {"sampler": "grid", "space": {"optimizer.lr": [0.1, 0.01]}}}),
                    encoding="utf-8")
    (_, error), = tl.validate_files([path])
    assert error is not None and "memory:" in error


def test_huge_resize_refused_before_the_run_touches_the_disk(tmp_path: Path) -> None:
    """The data folder is empty: without the check the run would fail on missing data instead."""
    cfg = deep_merge(HUGE, {"model": {"hidden": [10]}, "data": {"resize": 100_000},
                            "output": {"dir": str(tmp_path / "runs")}})
    with pytest.raises(ConfigError, match=r"memory: .* dataset .*70,000 images of 100000x100000x1"):
        tl.run(RunConfig.from_dict(cfg), data_dir=tmp_path / "data", progress=False, echo=False)
    assert not (tmp_path / "runs").exists()


def test_huge_hidden_refused_by_run(tmp_path: Path) -> None:
    cfg = deep_merge(HUGE, {"output": {"dir": str(tmp_path / "runs")}})
    with pytest.raises(ConfigError, match="use a smaller model"):
        tl.run(RunConfig.from_dict(cfg), data_dir=tmp_path / "data", progress=False, echo=False)
    assert not (tmp_path / "runs").exists()
