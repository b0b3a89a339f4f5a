"""``model.type: custom``: the config, the factory's errors, the build, the size, and real runs.

The factories live in ``tests/custom_models.py`` (``tests.custom_models:<name>``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

import trainlab.api as tl
from tests.data.synthdata import write_idx
from tests.helpers import InterruptAt, timeless, write_config
from trainlab.config import RunConfig, load_config, with_overrides
from trainlab.custom_model import config_for_module, module_factory
from trainlab.engines.model_size import model_size
from trainlab.engines.resume import checkpoint_step
from trainlab.engines.torch.custom import load_factory
from trainlab.engines.torch.models import build_model, count_params
from trainlab.engines.torch.monitors import layer_monitors
from trainlab.errors import ConfigError

SHAPE = (1, 28, 28)
CNN = "tests.custom_models:small_cnn"


def custom(factory: str = CNN, engine: str = "torch", **model: Any) -> RunConfig:
    """A torch config of a custom model (the data section is not read)."""
    return RunConfig.from_dict({"engine": engine, "data": {"dataset": "mnist"},
                                "model": {"type": "custom", "factory": factory, **model}})


# -- the config ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("model", "message"), [
    ({}, "model.factory: type 'custom' needs a factory"),
    ({"factory": "small_cnn"}, "model.factory: must be 'package.module:function'"),
    ({"factory": "my models:f"}, "is neither a dotted module name nor a path ending in .py"),
    ({"factory": "models.py:2f"}, "after the ':' is not a (dotted) Python name"),
    ({"factory": CNN, "hidden": [8]}, "model.hidden: not used by model type 'custom'"),
    ({"factory": CNN, "batch_norm": True}, "model.batch_norm: not used by model type 'custom'"),
    ({"factory": CNN, "dropout": 0.5}, "pass it to the factory through model.options"),
    ({"factory": CNN, "activation": "tanh"}, "model.activation: not used by model type 'custom'"),
    ({"factory": CNN, "width": 8}, "model.width: not used by model type 'custom'"),
])
def test_a_custom_model_needs_a_factory_and_refuses_built_in_layer_settings(model: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        RunConfig.from_dict({"engine": "torch", "data": {"dataset": "mnist"}, "model": {"type": "custom", **model}})
    assert message in str(error.value)


def test_factory_and_options_belong_to_custom_models_and_numpy_refuses_them() -> None:
    for extra, field in (({"factory": CNN}, "model.factory"), ({"options": {"width": 4}}, "model.options")):
        with pytest.raises(ConfigError, match=re.escape(f"{field}: not used by model type 'mlp'; use type: custom")):
            RunConfig.from_dict({"data": {"dataset": "mnist"}, "model": {"type": "mlp", "hidden": [8], **extra}})
    with pytest.raises(ConfigError, match=re.escape("model.type: engine 'numpy' builds only linear and mlp models: use engine: torch")):
        custom(engine="numpy")


def test_a_file_path_is_relative_to_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "project"
    (folder / "nets").mkdir(parents=True)
    (folder / "nets" / "mine.py").write_text(
        "from torch import nn\n\n"
        "def build(input_shape, num_classes, hidden=5):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], hidden),\n"
        "                         nn.ReLU(), nn.Linear(hidden, num_classes))\n"
    )
    write_config(folder / "run.yaml", tmp_path / "runs", engine="torch",
                 model={"type": "custom", "factory": "nets/mine.py:build", "options": {"hidden": 6}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(folder / "run.yaml")
    assert cfg.model.factory == f"{(folder / 'nets' / 'mine.py').resolve()}:build"
    assert count_params(build_model(cfg.model, SHAPE, 10)) == 784 * 6 + 6 + 6 * 10 + 10
    # The run's config.yaml holds the absolute path: it loads back equal from any folder.
    assert RunConfig.from_dict(cfg.model_dump(mode="json")) == cfg


def test_options_reach_the_factory_through_set_and_study_overrides() -> None:
    cfg = custom(options={"width": 8})
    wider = with_overrides(cfg, ["model.options.width=16"])
    assert wider.model.options == {"width": 16}
    narrow, wide = (count_params(build_model(c.model, SHAPE, 10)) for c in (cfg, wider))
    assert (narrow, wide) == (80 + 1168 + 7850, 160 + 4640 + 15690)
    # A study's sampled setting is a mapping of dotted keys; model.options starts empty too.
    sampled = with_overrides(custom(), {"model.options.width": 4})
    assert count_params(build_model(sampled.model, SHAPE, 10)) == 40 + 296 + 3930


# -- the factory's errors ------------------------------------------------------------------------
@pytest.mark.parametrize(("factory", "options", "message"), [
    ("tests.no_such_models:f", {}, "model.factory 'tests.no_such_models:f': cannot import 'tests.no_such_models': "
                                   "No module named 'tests.no_such_models'"),
    ("tests.custom_models:nope", {}, "'tests.custom_models' has no attribute 'nope'"),
    ("tests.custom_models:NOT_CALLABLE", {}, "model.factory 'tests.custom_models:NOT_CALLABLE' is a int, not a function"),
    ("tests.custom_models:returns_int", {}, "model.factory 'tests.custom_models:returns_int' returned int, "
                                            "not a torch.nn.Module"),
    ("tests.custom_models:wrong_classes", {}, "the model maps a batch of shape (2, 1, 28, 28) to (2, 11); "
                                              "it must give (2, 10)"),
    ("tests.custom_models:wrong_input", {}, "the model's forward fails on a batch of shape (2, 1, 28, 28): "
                                            "RuntimeError: mat1 and mat2 shapes cannot be multiplied"),
    ("tests.custom_models:no_parameters", {}, "built a Sequential without trainable parameters"),
    ("tests.custom_models:fails", {}, "model.factory 'tests.custom_models:fails' failed: RuntimeError: out of ideas"),
    (CNN, {"widht": 4}, "failed: TypeError: small_cnn() got an unexpected keyword argument 'widht'"),
    ("missing/models.py:build", {}, "model.factory 'missing/models.py:build': no file"),
])
def test_a_wrong_factory_gets_a_clean_error_naming_it(factory: str, options: dict, message: str) -> None:
    cfg = custom(factory, options=options)
    with pytest.raises(ConfigError) as error:
        build_model(cfg.model, SHAPE, 10)
    assert message in str(error.value)
    # The memory estimate (run and validate call it first) reports the same problem.
    with pytest.raises(ConfigError) as again:
        model_size(cfg.model, SHAPE, 10)
    assert message in str(again.value)


def test_a_file_that_fails_to_import_names_the_error(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import no_such_package_here\n")
    with pytest.raises(ConfigError, match=re.escape("broken.py failed: ModuleNotFoundError: No module named 'no_such_package_here'")):
        load_factory(f"{tmp_path / 'broken.py'}:build")


# -- building and counting -----------------------------------------------------------------------
def test_the_build_is_seeded_leaves_the_global_rng_and_init_applies_only_when_set() -> None:
    cfg = custom()
    state = torch.get_rng_state()
    a, b, c = (build_model(cfg.model, SHAPE, 10, seed=s) for s in (3, 3, 4))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a[0].weight, c[0].weight)
    torch.manual_seed(3)  # the factory's own init, under the run's seed: model.init left unset changes nothing
    from tests.custom_models import small_cnn

    assert torch.equal(small_cnn(SHAPE, 10)[0].weight, a[0].weight)
    zeroed = build_model(custom(init={"scheme": "zero", "bias": 0.5}).model, SHAPE, 10, seed=3)
    assert float(zeroed[0].weight.detach().abs().sum()) == 0.0 and float(zeroed[7].bias.detach().min()) == 0.5
    assert build_model(custom(dtype="float64").model, SHAPE, 10)[0].weight.dtype == torch.float64


@pytest.mark.parametrize("factory", [CNN, "tests.custom_models:nested", "tests.custom_models:needs_real_tensors"])
def test_the_size_of_a_custom_model_is_measured_on_the_module(factory: str) -> None:
    cfg = custom(factory)
    state = torch.get_rng_state()
    size = model_size(cfg.model, SHAPE, 10)
    assert torch.equal(torch.get_rng_state(), state)
    model = build_model(cfg.model, SHAPE, 10)
    assert size.params == count_params(model)
    assert size.frozen == sum(b.numel() for b in model.buffers())
    assert size.values > size.widest >= 784
    if factory == CNN:  # input, conv, relu, pool, conv, relu, pool, flatten, linear
        assert size.values == 784 + 8 * 784 * 2 + 8 * 196 + 16 * 196 * 2 + 16 * 49 * 2 + 10


def test_monitors_and_the_summary_cope_with_a_module_tree() -> None:
    model = build_model(custom("tests.custom_models:nested").model, SHAPE, 10)
    x = torch.randn(16, *SHAPE)
    buffers = [b.clone() for b in model.buffers()]
    values = layer_monitors(model, x, lambda logits: logits.square().mean())
    # head, conv, proj: registration order; the conv's ReLU module is watched, the functional one not
    assert {k for k in values if k.startswith("weight_norm_")} == {"weight_norm_0", "weight_norm_1", "weight_norm_2"}
    assert [k for k in values if k.startswith("dead_relu_")] == ["dead_relu_1"]
    assert all(values[f"grad_norm_{k}"] > 0 for k in range(3))
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers(), strict=True))


# -- real runs -----------------------------------------------------------------------------------
def _mnist(tmp_path: Path, **model: Any) -> Path:
    return write_config(tmp_path / "c.yaml", tmp_path / "runs", engine="torch",
                        data={"dataset": "mnist", "limit": {"train": 600, "val": 200, "test": 200},
                              "normalize": "scale"},
                        model={"type": "custom", "factory": CNN, **model},
                        optimizer={"type": "adam", "lr": 3e-3}, train={"epochs": 1, "batch_size": 20},
                        output={"dir": str(tmp_path / "runs"), "report": True})


def test_a_custom_cnn_learns_mnist_and_its_run_has_a_summary_and_a_report(
    tmp_path: Path, real_data: Path, one_torch_thread: None
) -> None:
    run = tl.run(_mnist(tmp_path), data_dir=real_data, progress=False, echo=False)
    # 30 steps on 600 images: 0.75 measured; chance is 0.1, a model that does not train stays there.
    assert run.summary["best_val_accuracy"] > 0.5
    summary = (run.path / "model_summary.txt").read_text()
    assert "0 (Conv2d)" in summary and "7 (Linear)" in summary and "Total params: 9,098" in summary
    assert (run.path / "report.html").stat().st_size > 0


def _tiny(tmp_path: Path, **model: Any) -> Path:
    """A torch run on a tiny synthetic MNIST: 9 steps per epoch, evaluations every 4 steps."""
    dataset = write_idx(tmp_path / "mnist", n_train=200, n_test=40)
    return write_config(tmp_path / "c.yaml", tmp_path / "runs", engine="torch",
                        data={"dataset": str(dataset), "normalize": "scale", "val_fraction": 0.1},
                        model={"type": "custom", "factory": CNN, "options": {"width": 4}, **model},
                        optimizer={"type": "adam", "lr": 1e-3},
                        train={"epochs": 2, "batch_size": 20, "eval_every": 4, "checkpoint_every": 1})


def test_a_resumed_custom_run_equals_an_uninterrupted_one(tmp_path: Path, one_torch_thread: None) -> None:
    cfg = _tiny(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        tl.run(cfg, run_id="cut", progress=False, echo=False, callbacks=[InterruptAt(12)])
    cut = tmp_path / "runs" / "t" / "cut"
    assert checkpoint_step(cut, "torch") == 8
    whole = tl.run(cfg, run_id="whole", progress=False, echo=False)
    resumed = tl.run(resume=cut, progress=False, echo=False)
    assert resumed.summary["steps"] == 18
    assert timeless(resumed.metrics) == timeless(whole.metrics)


def test_a_module_object_trains_resumes_in_process_and_gets_its_weights_back(
    tmp_path: Path, one_torch_thread: None
) -> None:
    from tests.custom_models import small_cnn

    torch.manual_seed(1)
    net = small_cnn(SHAPE, 10, width=4)
    before = [p.detach().clone() for p in net.parameters()]
    cfg = config_for_module(net, _tiny(tmp_path), name="mine")
    assert cfg.model.factory == "trainlab.custom_model:registered.mine"
    with pytest.raises(KeyboardInterrupt):
        tl.run(cfg, run_id="cut", progress=False, echo=False, callbacks=[InterruptAt(12)])
    # The run trained a copy; registering the same object again keeps its name.
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert module_factory(net) == "trainlab.custom_model:registered.mine"
    whole = tl.run(cfg, run_id="whole", progress=False, echo=False)
    resumed = tl.run(resume=tmp_path / "runs" / "t" / "cut", progress=False, echo=False)
    assert timeless(resumed.metrics) == timeless(whole.metrics)
    net.load_state_dict(tl.load(whole.path).module.state_dict())
    assert not torch.equal(before[0], net[0].weight)
    assert whole.config["model"]["factory"] == "trainlab.custom_model:registered.mine"


def test_a_module_registered_in_another_process_cannot_be_rebuilt(tmp_path: Path) -> None:
    cfg = custom("trainlab.custom_model:registered.gone_elsewhere")
    with pytest.raises(ConfigError, match=re.escape("a new process cannot rebuild it. Put its class in a file")):
        build_model(cfg.model, SHAPE, 10)
    with pytest.raises(ConfigError, match=re.escape("a module registered with fit() takes no options")):
        build_model(custom(module_factory(nn.Linear(784, 10)), options={"width": 3}).model, SHAPE, 10)


def test_the_example_config_validates_and_its_factory_builds() -> None:
    example = Path(__file__).parents[3] / "configs" / "examples" / "custom-model.yaml"
    cfg = load_config(example)
    assert yaml.safe_load(example.read_text())["model"]["factory"] == "custom_models.py:small_cnn"
    assert count_params(build_model(cfg.model, SHAPE, 10)) == 160 + 4640 + 330


def test_a_study_searches_a_factory_option(tmp_path: Path) -> None:
    from trainlab.studies.spec import load_study, trial_config

    path = write_config(tmp_path / "study.yaml", tmp_path / "runs", engine="torch",
                        model={"type": "custom", "factory": CNN},
                        study={"objective": "best_val_accuracy", "space": {"model.options.width": [4, 8]}})
    study = load_study(path)  # builds the config of every grid point: each must validate
    stage = study.stages[0]
    counts = [count_params(build_model(trial_config(study, stage, {"model.options.width": w}, "t").model, SHAPE, 10))
              for w in (4, 8)]
    assert counts == [40 + 296 + 3930, 80 + 1168 + 7850]
