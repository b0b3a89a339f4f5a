"""The fast recipes of configs/fast/ and their building blocks: whitening, weight averages,
Muon, alternating flips, multi-view TTA, and an exact resume with all of their state."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trainlab.api as tl
from tests.helpers import CrashAtEvaluation, fit_torch, timeless
from trainlab.config import AugmentConfig, RunConfig, WeightAverageConfig, load_config
from trainlab.engines.torch import TorchEngine
from trainlab.engines.torch.augment import BatchAugment
from trainlab.engines.torch.averaging import WeightAverage
from trainlab.engines.torch.inference import TrainedModel
from trainlab.engines.torch.layers import (
    Whiten,
    drop_whiten_bias_grads,
    init_whitening,
    patch_covariance,
    whitening_filters,
)
from trainlab.engines.torch.models import build_model, count_params
from trainlab.engines.torch.muon import Muon, newton_schulz
from trainlab.engines.torch.pixels import PixelSpace
from trainlab.engines.torch.runtime import train_options
from trainlab.engines.torch.tta import shift_reflect, tta_logits, tta_views
from trainlab.errors import ConfigError
from trainlab.run_files import read_metrics_csv

FAST = Path(__file__).resolve().parents[3] / "configs" / "fast"
RECIPES = sorted(p.stem for p in FAST.glob("*.yaml"))
# The nesterov recipes' lr is per image of a summed loss over batches of 1024: at the tiny runs'
# batches of 64 each step is 16x smaller, and 8 steps leave the test accuracy at chance. 8x
# theirs (start and end of the schedule too) learns in 8 steps.
NESTEROV_LR_X8 = ["optimizer.lr=0.01171875", "schedule.start_lr=0.00234375", "schedule.min_lr=0.00082031"]
TINY = {  # a few steps on a small subset: the recipe's every part runs, quickly
    "cifar10-94": ["train.steps=8", "schedule.warmup_steps=2", "train.lookahead.start_epoch=0",
                   "train.lookahead.every=2", "model.whiten.bias_epochs=1", *NESTEROV_LR_X8],
    "cifar10-94-muon": ["train.steps=8", "model.whiten.bias_epochs=1"],
    "cifar10-94-muon-lowres": ["train.epochs=null", "train.steps=8", "model.whiten.bias_epochs=1"],
    "cifar10-90": ["train.steps=8", "schedule.warmup_steps=2", "train.lookahead.start_epoch=0",
                   "train.lookahead.every=2", "model.whiten.bias_epochs=1", *NESTEROV_LR_X8],
    "mnist-99": ["train.epochs=2", "schedule.warmup_steps=2"],
}
# Above chance (0.1) on 1,000 test images (a binomial sd of about 1 point at chance): over seeds
# 0-3 the tiny runs reached 0.207 to 0.351 (the lowest: cifar10-90), the same runs at lr 1e-12
# (untrained; seeds 0-1) 0.084 to 0.104.
TINY_TEST_ACCURACY = 0.15


def test_every_recipe_has_a_tiny_version() -> None:
    assert RECIPES and set(RECIPES) == set(TINY)


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_validates_states_its_target_and_trains(recipe: str, real_data: Path, tmp_path: Path) -> None:
    path = FAST / f"{recipe}.yaml"
    first = path.read_text().splitlines()[0]
    assert first.startswith("# Fast ") and "docs/performance.md" in path.read_text()[:600]
    config = load_config(path)
    TorchEngine().check_config(config)
    assert config.engine == "torch" and config.train.precision == "bf16"
    overrides = ["data.limit={train: 256, test: 1000}", "train.batch_size=64", "model.whiten.images=256",
                 f"output.dir={tmp_path}", "output.report=false", *TINY[recipe]]
    run = tl.run(path, overrides=overrides, run_id="tiny", data_dir=real_data, progress=False, echo=False)
    assert run.summary["status"] == "completed" and run.summary["steps"] == 8
    train = [r for r in run.metrics if r["split"] == "train"]
    assert len(train) == 2 and all(math.isfinite(r["loss"]) for r in train)
    assert train[1]["loss"] < train[0]["loss"], "the training loss did not go down"
    assert run.summary["test_accuracy"] >= TINY_TEST_ACCURACY, "the test accuracy is at chance"
    # No extra pass over the training split at the end of a fast recipe (issue 28).
    assert config.train.final_train_eval is False and "final_train_loss" not in run.summary


# -- whitening ---------------------------------------------------------------------------------
def _correlated_images(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth random images (neighbouring pixels and channels correlated), (n, 3, 10, 10)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 1, 12, 12, generator=g)
    smooth = F.avg_pool2d(base, 3, stride=1)  # (n, 1, 10, 10)
    return torch.cat([smooth, 0.5 * smooth + 0.1 * torch.randn(n, 1, 10, 10, generator=g),
                      torch.randn(n, 1, 10, 10, generator=g)], 1)


def test_whitening_filters_whiten_the_patches() -> None:
    images = _correlated_images()
    filters = whitening_filters(images, 2, eps=1e-9)  # (24, 3, 2, 2): +v and -v
    assert filters.shape == (24, 3, 2, 2)
    torch.testing.assert_close(filters[12:], -filters[:12])
    out = F.conv2d(images.double(), filters[:12].double())  # (n, 12, 9, 9)
    coords = out.permute(0, 2, 3, 1).reshape(-1, 12)
    cov = torch.cov(coords.T)
    torch.testing.assert_close(cov, torch.eye(12, dtype=torch.float64), atol=2e-3, rtol=0)
    mean, full = patch_covariance(images, 2)
    assert mean.shape == (12,) and full.shape == (12, 12)


def test_whitening_layer_is_frozen_and_set_from_the_data(fit_synthetic, base_config, synthetic_data) -> None:
    cfg = base_config(model={"type": "cnn", "conv": [{"filters": 4}], "whiten": {"kernel": 2, "images": 40},
                             "batch_norm": True},
                      train={"epochs": 2, "batch_size": 16})
    data = synthetic_data(shape=(3, 8, 8))
    config = RunConfig.from_dict(cfg)
    model = build_model(config.model, (3, 8, 8), 3)
    whiten = model[0]
    assert isinstance(whiten, Whiten) and not whiten.weight.requires_grad
    assert count_params(model) == sum(p.numel() for p in model.parameters()) - whiten.weight.numel()
    _, run_path = fit_synthetic(cfg, data=data)
    saved = torch.load(run_path / "checkpoint.pt", weights_only=True)["model"]["0.weight"]
    expected = whitening_filters(torch.from_numpy(data.x_train[:40]), 2, 5e-4)
    torch.testing.assert_close(saved, expected)  # set from the first 40 images, then never trained


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_frozen_whitening_bias_is_skipped_and_leaves_the_other_gradients_exact(precision: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Whiten(3, 2), nn.GELU(), nn.Conv2d(24, 4, 3, padding=1, bias=False), nn.Flatten(),
                          nn.Linear(4 * 7 * 7, 3))
    x = _correlated_images(8)[:, :, :8, :8]  # (8, 3, 8, 8)
    init_whitening(model, x, 5e-4)
    with torch.no_grad():
        model[0].bias.normal_()
    whiten, trained = model[0], [model[2].weight, model[4].weight, model[4].bias]

    def gradients() -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(x).float().square().sum()
        loss.backward()
        return [p.grad.clone() for p in trained]

    before = gradients()
    assert whiten.bias.grad is not None and not whiten.bias_frozen
    drop_whiten_bias_grads(model)
    assert whiten.bias.grad is None and whiten.bias_frozen
    assert whiten.bias.requires_grad and count_params(model) == sum(p.numel() for p in trained) + 24
    assert not whiten(x).requires_grad  # nothing before the next conv is in the backward any more
    after = gradients()
    assert whiten.bias.grad is None
    for a, b in zip(before, after, strict=True):
        assert torch.equal(a, b)


# -- weight averages -------------------------------------------------------------------------------
def _scalar_model(value: float) -> nn.Linear:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(value)
    return model


def test_ema_update_math_and_swap() -> None:
    model = _scalar_model(1.0)
    ema = WeightAverage(model, WeightAverageConfig(decay=0.5, every=2), "ema")
    ema.after_step(1, 10, 5)  # not a multiple of every: nothing yet
    assert ema.average is None
    ema.after_step(2, 10, 5)  # the first update copies
    assert float(ema.average["weight"]) == 1.0
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.after_step(4, 10, 5)  # 0.5 * 1 + 0.5 * 3
    assert float(ema.average["weight"]) == 2.0 and float(model.weight.detach()) == 3.0  # ema leaves the weights
    with ema.swapped_in():
        assert float(model.weight.detach()) == 2.0
    assert float(model.weight.detach()) == 3.0


def test_lookahead_copies_back_and_ramps_its_decay() -> None:
    model = _scalar_model(0.0)
    cfg = WeightAverageConfig(decay=0.8, every=1, ramp_power=2.0, start_epoch=1)
    look = WeightAverage(model, cfg, "lookahead")
    look.after_step(5, 20, 5)  # epoch 0: before start_epoch
    assert look.average is None
    look.after_step(6, 20, 5)  # epoch 1: the first update copies
    with torch.no_grad():
        model.weight.fill_(1.0)
    look.after_step(10, 20, 5)
    d = 0.8 * (10 / 20) ** 2  # 0.2
    assert look.decay_at(10, 20) == pytest.approx(d)
    assert float(model.weight.detach()) == pytest.approx((1 - d) * 1.0)  # the weights are the average now
    assert float(look.average["weight"]) == pytest.approx(1 - d)


# -- Muon ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(32, 96), (96, 32)])
def test_newton_schulz_is_close_to_orthogonal(shape: tuple[int, int]) -> None:
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    out = newton_schulz(g, steps=5)
    assert out.shape == g.shape and out.dtype == g.dtype
    singular = torch.linalg.svdvals(out.double())
    assert float(singular.min()) > 0.6 and float(singular.max()) < 1.3  # every direction about the same size
    u, _, vh = torch.linalg.svd(g.double(), full_matrices=False)
    polar = u @ vh  # the exact orthogonal polar factor
    cosine = float((out.double() * polar).sum() / (out.double().norm() * polar.norm()))
    assert cosine > 0.97


@pytest.mark.parametrize(("normalize_weights", "weight_decay"), [(False, 0.0), (True, 0.1)])
def test_muon_step_is_an_orthogonalised_momentum_step(normalize_weights: bool, weight_decay: float) -> None:
    """Two Nesterov steps against the module docstring's update, by hand: buf = mu * buf + G,
    U = G + mu * buf, W -= lr * NS(U); with ``normalize_weights`` W is first rescaled to norm
    sqrt(out), with ``weight_decay`` then shrunk by 1 - lr * wd. Two steps and mu = 0.5 tell
    the Nesterov update from the plain one (buf) and from no momentum (G)."""
    g = torch.Generator().manual_seed(1)
    w = nn.Parameter(torch.randn(8, 4, 3, 3, generator=g))
    grads = [torch.randn(8, 4, 3, 3, generator=g) for _ in range(2)]
    lr, mu = 0.1, 0.5  # mu * buf is exact in float32: Newton-Schulz gets the optimizer's very bits
    opt = Muon([w], lr=lr, momentum=mu, nesterov=True, ns_steps=5, weight_decay=weight_decay,
               normalize_weights=normalize_weights)
    expected, buf = w.detach().clone(), torch.zeros_like(w)
    for grad in grads:
        buf = mu * buf + grad
        update = grad + mu * buf
        if normalize_weights:
            expected = expected * (math.sqrt(8) / expected.norm())
        expected = expected * (1 - lr * weight_decay)
        expected = expected - lr * newton_schulz(update.reshape(8, -1), 5).reshape(w.shape)
        w.grad = grad.clone()
        opt.step()
        torch.testing.assert_close(opt.state[w]["momentum_buffer"], buf, atol=1e-6, rtol=0)
        torch.testing.assert_close(w.detach(), expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="1-D"):
        Muon([nn.Parameter(torch.zeros(3))])


# -- alternating flip and reflect crops ------------------------------------------------------
def test_alternating_flip_flips_exactly_the_complement_next_epoch() -> None:
    n = 40
    aug = BatchAugment(AugmentConfig(hflip="alternating"), 3, PixelSpace(None, 1), "cpu", seed=0, num_examples=n)
    x = torch.arange(n * 4, dtype=torch.float32).reshape(n, 1, 1, 4)  # every row differs from its mirror
    index = torch.randperm(n, generator=torch.Generator().manual_seed(2))
    masks = []
    for epoch in range(3):
        out, _ = aug(x[index], torch.zeros(n, dtype=torch.int64), index, epoch)
        flipped = (out == x[index].flip(3)).all(3).flatten()
        assert torch.equal(flipped | (out == x[index]).all(3).flatten(), torch.ones(n, dtype=torch.bool))
        masks.append(flipped)
    assert torch.equal(masks[1], ~masks[0]) and torch.equal(masks[2], masks[0])
    assert 0 < int(masks[0].sum()) < n  # drawn at random per image


def test_reflect_crop_takes_the_mirrored_border() -> None:
    x = torch.arange(36, dtype=torch.float32).reshape(1, 1, 6, 6).repeat(64, 1, 1, 1)
    aug = BatchAugment(AugmentConfig(crop_padding=2, crop_padding_mode="reflect"), 3, PixelSpace(None, 1), "cpu")
    out, _ = aug(x, torch.zeros(64, dtype=torch.int64))
    padded = F.pad(x[:1], (2, 2, 2, 2), mode="reflect")[0, 0]  # (10, 10)
    crops = {tuple(padded[i : i + 6, j : j + 6].flatten().tolist()) for i in range(5) for j in range(5)}
    assert all(tuple(o.flatten().tolist()) in crops for o in out)
    assert len({tuple(o.flatten().tolist()) for o in out}) > 5  # random offsets


# -- multi-view TTA ----------------------------------------------------------------------------------
def _moved(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x (B, C, H, W) moved down by dy and right by dx (|d| <= 1) by an index gather:
    out[i, j] = x[i - dy, j - dx], an index off the edge mirrored back without repeating it
    (-1 -> 1, H -> H - 2), as reflect padding fills the border."""

    def source(n: int, d: int) -> torch.Tensor:
        index = torch.arange(n) - d
        return torch.where(index < 0, -index, torch.where(index > n - 1, 2 * (n - 1) - index, index))

    return x.index_select(2, source(x.shape[2], dy)).index_select(3, source(x.shape[3], dx))


def _expected_views(x: torch.Tensor, mode: str) -> list[tuple[torch.Tensor, float]]:
    """The (view, weight) pairs of the tta module docstring, the image itself first (the
    plain view that selective TTA reuses)."""
    mirror = x.flip(3)
    down_right, up_left = _moved(x, 1, 1), _moved(x, -1, -1)
    return {
        "none": [(x, 1.0)],
        "flip": [(x, 0.5), (mirror, 0.5)],
        "translate": [(x, 0.5), (down_right, 0.25), (up_left, 0.25)],
        "flip_translate": [(x, 0.25), (mirror, 0.25), (down_right, 0.125), (down_right.flip(3), 0.125),
                           (up_left, 0.125), (up_left.flip(3), 0.125)],
    }[mode]


def test_tta_views_weights_and_shifts() -> None:
    # a 3 x 3 image by hand: moved down-right, row 0 and column 0 mirror rows and columns 1
    grid = torch.arange(9.0).reshape(1, 1, 3, 3)
    assert _moved(grid, 1, 1)[0, 0].tolist() == [[4, 3, 4], [1, 0, 1], [4, 3, 4]]
    assert _moved(grid, -1, -1)[0, 0].tolist() == [[4, 5, 4], [7, 8, 7], [4, 5, 4]]
    x = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(3))  # not square: H and W kept apart
    for dy, dx in ((1, 1), (-1, -1), (1, -1), (0, 1), (-1, 0)):
        assert torch.equal(shift_reflect(x, dy, dx), _moved(x, dy, dx)), (dy, dx)
    for mode in ("none", "flip", "translate", "flip_translate"):
        views, expected = tta_views(x, mode), _expected_views(x, mode)
        assert [w for _, w in views] == [w for _, w in expected], mode
        for k, ((view, _), (want, _)) in enumerate(zip(views, expected, strict=True)):
            assert torch.equal(view, want), (mode, k)


def test_tta_logits_are_deterministic_and_weighted() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5))
    x = torch.randn(6, 3, 8, 8)
    with torch.no_grad():
        first = tta_logits(net, x, "flip_translate")
        assert first.shape == (6, 5) and torch.equal(first, tta_logits(net, x, "flip_translate"))
        for mode in ("flip_translate", "translate"):
            expected = sum(w * net(v) for v, w in _expected_views(x, mode))
            torch.testing.assert_close(tta_logits(net, x, mode), expected)
        torch.testing.assert_close(tta_logits(net, x, True), (net(x) + net(x.flip(3))) / 2)


def test_selective_tta_views_only_the_unsure_images() -> None:
    """train.tta_below: images whose plain top probability is below it get every view (as
    without it); the others keep their plain logits, and the extra views see only the unsure."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5))
    x = torch.randn(16, 3, 8, 8) * 3
    seen: list[int] = []

    def forward(v: torch.Tensor) -> torch.Tensor:
        seen.append(len(v))
        return net(v)

    with torch.no_grad():
        plain, full = net(x), tta_logits(net, x, "flip_translate")
        confidence = torch.softmax(plain, dim=1).amax(dim=1)
        below = float(confidence.median())  # about half the images are unsure
        unsure = confidence < below
        assert 0 < int(unsure.sum()) < len(x)
        selective = tta_logits(forward, x, "flip_translate", below=below)
        torch.testing.assert_close(selective[unsure], full[unsure])
        assert torch.equal(selective[~unsure], plain[~unsure].float())
        assert seen == [16] + [int(unsure.sum())] * 5  # the plain pass, then five views of the unsure
        seen.clear()  # the export's form: every view of every image, then a per-image pick
        torch.testing.assert_close(tta_logits(forward, x, "flip_translate", below=below, static_shapes=True), selective)
        assert seen == [16] * 6
        seen.clear()
        assert torch.equal(tta_logits(forward, x, "flip", below=0.01), plain.float()) and seen == [16]  # all sure
        torch.testing.assert_close(tta_logits(net, x, "flip", below=1.0), tta_logits(net, x, "flip"))


def test_tta_below_needs_tta_and_the_torch_engine() -> None:
    with pytest.raises(ConfigError, match=r"needs train\.tta"):
        RunConfig.from_dict({"engine": "torch", "data": {"dataset": "cifar10"}, "model": {"type": "linear"},
                             "train": {"tta_below": 0.5}})
    with pytest.raises(ConfigError, match="no tta option"):  # the numpy engine has no TTA at all
        RunConfig.from_dict({"engine": "numpy", "data": {"dataset": "cifar10"},
                             "model": {"type": "mlp", "hidden": [4]}, "train": {"tta": True, "tta_below": 0.5}})
    cfg = RunConfig.from_dict({"engine": "torch", "data": {"dataset": "cifar10"}, "model": {"type": "linear"},
                               "train": {"tta": "flip_translate", "tta_below": 0.9}})
    assert train_options(cfg).tta_below == 0.9


# -- exact resume with every new piece of state -----------------------------------------------------
@pytest.mark.parametrize("average", ["ema", "lookahead"])
def test_resume_with_averages_muon_and_alternating_flips_is_exact(average: str, base_config, synthetic_data,
                                                                   tmp_path: Path) -> None:
    cfg = base_config(
        model={"type": "cnn", "conv": [{"filters": [4, 4], "pool_position": "after_first_conv"}],
               "whiten": {"kernel": 2, "images": 32, "bias_epochs": 1}, "batch_norm": True, "bn_weight": False,
               "conv_bias": False, "global_pool": "max", "head_bias": False, "head_scale": 0.5,
               "activation": "gelu"},
        optimizer={"type": "muon", "lr": 0.05, "other": {"type": "nesterov", "lr": 0.01, "bias_lr_scale": 4}},
        loss={"label_smoothing": 0.2},
        augment={"hflip": "alternating", "crop_padding": 1, "crop_padding_mode": "reflect"},
        train={"epochs": 3, "batch_size": 16, "eval_every": 3, "checkpoint_every": 1, "tta": "flip_translate",
               average: {"decay": 0.7, "every": 2, "ramp_power": 1, "start_epoch": 0}},
    )
    data = synthetic_data(shape=(3, 8, 8))
    whole = fit_torch(cfg, data, tmp_path, "whole")
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit_torch(cfg, data, tmp_path, "crashed", extra=[CrashAtEvaluation(at=3)])  # mid-epoch 2; checkpoint at step 6
    resumed = fit_torch(cfg, data, tmp_path, "crashed", resume=True)
    rows_whole, _ = read_metrics_csv(whole / "metrics.csv")
    rows_resumed, _ = read_metrics_csv(resumed / "metrics.csv")
    assert timeless(rows_resumed) == timeless(rows_whole)
    a = torch.load(whole / "checkpoint.pt", weights_only=True)
    b = torch.load(resumed / "checkpoint.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["average"]["mode"] == average
    for key, value in a["average"]["average"].items():
        assert torch.equal(value, b["average"]["average"][key]), key
    assert torch.equal(a["augment"]["flip_base"], b["augment"]["flip_base"])
    with np.load(whole / "predictions.npz") as p, np.load(resumed / "predictions.npz") as q:
        np.testing.assert_array_equal(p["probabilities"], q["probabilities"])
        # `trainlab evaluate` / predict rebuild the model the run evaluated: the EMA, the same views
        trained = TrainedModel(RunConfig.from_dict(cfg), whole / "checkpoint.pt", (3, 8, 8), 3, device="cpu")
        probabilities = torch.softmax(trained.logits(data.x_test, "flip_translate"), 1).numpy()
        np.testing.assert_allclose(probabilities, p["probabilities"], rtol=1e-5, atol=1e-6)
