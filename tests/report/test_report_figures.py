"""Each figure from known inputs: drawn, saved as PNG and SVG, with the expected panels; and
the HTML blocks escape what they are given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainlab import diagnostics as dg
from trainlab.report import figures as figs
from trainlab.report import grids
from trainlab.report.html import Section, figure, fmt, note, render_report, table, text
from trainlab.report.images import sample_per_class

NAMES = ["cat", "dog", "bird"]


def _metrics() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for step in (10, 20, 30, 40):
        rows.append({"epoch": step // 20, "step": step, "split": "train", "loss": 1 / step, "accuracy": step / 50,
                     "lr": 0.1 / step, "weight_norm_0": 1.0 + step, "grad_norm_0": 1 / step, "dead_relu_0": 0.1,
                     "weight_norm_1": 2.0, "grad_norm_1": 0.5, "logit_norm": 3.0})
        rows.append({"epoch": step // 20, "step": step, "split": "val", "loss": 2 / step, "accuracy": step / 60,
                     "lr": 0.1 / step})
    return rows


def _images(n: int, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, 8, 8, channels), dtype=np.uint8)


def test_save_figure_writes_png_and_svg(tmp_path: Path) -> None:
    saved = figs.save_figure(figs.learning_curves(_metrics(), early_stop_step=20, steps_per_epoch=20),
                             tmp_path / "figures", "curves", "caption")
    assert saved.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" == saved.png_bytes[:8]
    svg = saved.svg.read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "loss" in svg  # text stays text (svg.fonttype none)
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["curves.png", "curves.svg"]


def test_same_figure_saves_byte_identical_files(tmp_path: Path) -> None:
    first, again = (figs.save_figure(figs.learning_curves(_metrics(), early_stop_step=20), tmp_path / name, "curves")
                    for name in ("first", "again"))
    svg = first.svg.read_bytes()
    assert b"clip-path=" in svg  # ids that matplotlib draws at random unless svg.hashsalt is set
    assert svg == again.svg.read_bytes()
    assert first.png_bytes == again.png_bytes


def test_learning_curves_panels_and_early_stopping_mark() -> None:
    fig = figs.learning_curves(_metrics(), early_stop_step=20)
    loss, accuracy, lr = fig.axes
    assert [a.get_title() for a in fig.axes] == ["loss", "accuracy", "learning rate"]
    assert len(loss.lines) == 3  # train, val, the early-stopping line
    assert [t.get_text() for t in loss.get_legend().get_texts()] == ["train", "val", "best (early stopping)"]
    assert lr.get_yscale() == "linear"  # 0.1/10 .. 0.1/40 spans less than 20x
    assert accuracy.get_ylim() == (0.0, 1.0)


def test_confusion_matrices_figure() -> None:
    cm = np.array([[2, 1, 0], [0, 2, 0], [1, 1, 2]])
    fig = figs.confusion_matrices(cm, NAMES, "after")
    counts_ax, rates_ax = fig.axes[:2]
    assert np.array_equal(counts_ax.images[0].get_array(), cm)
    assert {t.get_text() for t in counts_ax.texts} >= {"2", "1", "0"}
    assert "0.50" in {t.get_text() for t in rates_ax.texts}
    assert [t.get_text() for t in counts_ax.get_xticklabels()] == NAMES


def test_reliability_and_class_scores() -> None:
    probabilities = np.tile([0.99, 0.01], (100, 1))
    cal = dg.calibration(probabilities, np.array([0, 1] * 50))
    fig = figs.reliability_diagram(cal)
    assert "ECE 0.490" in fig.axes[0].get_title()
    scores = dg.per_class_scores(np.array([[2, 1, 0], [0, 2, 0], [1, 1, 2]]), NAMES)
    assert len(figs.class_scores(scores).axes[0].patches) == 9


def test_layer_norms_panels() -> None:
    fig = figs.layer_norms(_metrics())
    assert fig is not None
    titles = [a.get_title() for a in fig.axes if a.get_visible()]
    assert titles == ["weight norm", "gradient norm", "dead ReLU fraction", "logit norm (per example)"]
    assert len(fig.axes[0].lines) == 2  # two layers
    assert figs.layer_norms([{"step": 1, "split": "train", "loss": 1.0}]) is None
    assert figs.monitor_columns(_metrics())["weight_norm"] == ["weight_norm_0", "weight_norm_1"]


def test_class_counts_figure() -> None:
    counts = {"train": np.array([5, 3, 2]), "val": np.array([1, 1, 1]), "test": None}
    fig = figs.class_counts(counts, NAMES)
    assert len(fig.axes[0].patches) == 6
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["train (10)", "val (3)"]


def test_weight_templates_grid_one_image_per_class() -> None:
    templates = dg.weight_templates(np.random.default_rng(0).normal(size=(3 * 8 * 8, 3)), (3, 8, 8))
    fig = grids.weight_templates_grid(templates, NAMES, "templates")
    shown = [a for a in fig.axes if a.images]
    assert len(shown) == 3
    assert [a.get_title() for a in shown] == NAMES
    assert shown[0].images[0].get_array().shape == (8, 8, 3)


def test_top_losses_grid_titles() -> None:
    items = dg.top_losses(np.array([[0.1, 0.9, 0.0], [0.2, 0.2, 0.6]]), np.array([0, 1]))
    fig = grids.top_losses_grid([_images(1)[0], _images(1, 1)[0]], items, NAMES)
    shown = [a for a in fig.axes if a.images]
    assert len(shown) == 2
    assert shown[0].get_title().startswith("true cat\npred dog (90%)")


def test_sample_grid_and_mosaic() -> None:
    x = _images(12)
    y = np.array([0, 1, 2] * 4)
    assert grids.mosaic([x[:4], x[4:6]], pad=2).shape == (8 * 2 + 2, 8 * 4 + 3 * 2, 3)
    # a row of smaller images (low-resolution training crops) sits centred in full-size cells
    mixed = grids.mosaic([x[:2], x[2:4, 2:6, 2:6]], pad=2)
    assert mixed.shape == (8 * 2 + 2, 8 * 2 + 2, 3)
    assert np.array_equal(mixed[10 + 2 : 10 + 6, 2:6], x[2, 2:6, 2:6])
    assert (mixed[10:12, :8] == 255).all()  # the cell's border around the small image is filled
    fig = grids.sample_grid(x, y, NAMES, "samples")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES
    chosen_x, chosen_y = sample_per_class(x, y, np.arange(12), 3, per_class=2, seed=0)
    assert chosen_x.shape == (6, 8, 8, 3) and np.bincount(chosen_y).tolist() == [2, 2, 2]
    grey = grids.sample_grid(_images(3, 1), np.array([0, 1, 2]), NAMES, "grey")
    assert grey.axes[0].images[0].get_cmap().name == "gray"


def test_augmentation_preview_rows() -> None:
    pytest.importorskip("torch")
    from trainlab.report.images import augmentation_preview

    x = _images(4)
    rows = augmentation_preview(x, np.arange(4) % 3, {"hflip": True, "cutout": 4}, {"kind": "scale", "scale": 1.0}, 3)
    assert [name for name, _ in rows] == ["original", "hflip", "cutout", "all"]
    assert all(images.shape == x.shape and images.dtype == np.uint8 for _, images in rows)
    assert np.array_equal(rows[0][1], x)
    assert (rows[2][1] == 0).any()  # cutout blanks a square (0 in the scale space is black)
    assert augmentation_preview(x, np.arange(4), {}, {"kind": "none"}, 3) == [("original", x)]
    assert len(grids.augmentation_grid(rows).axes[0].get_yticklabels()) == 4



def test_augmentation_preview_keeps_the_runs_fill_for_each_transform_alone() -> None:
    pytest.importorskip("torch")
    from trainlab.report.images import augmentation_preview

    x = np.full((6, 8, 8, 3), 200, dtype=np.uint8)  # no black pixel: only a zero fill makes one
    scale = {"kind": "scale", "scale": 1.0}
    rows = dict(augmentation_preview(x, np.arange(6) % 3, {"translate": 0.25, "hflip": True,
                                                           "fill_mode": "reflect"}, scale, 3))
    assert list(rows) == ["original", "hflip", "translate", "all"]
    assert (rows["translate"] == 200).all() and (rows["all"] == 200).all()  # reflected, not blanked
    zero_filled = dict(augmentation_preview(x, np.arange(6) % 3, {"translate": 0.25, "hflip": True}, scale, 3))
    assert (zero_filled["translate"] == 0).any()  # the check above can fail

def test_first_layer_templates_of_both_engines() -> None:
    rng = np.random.default_rng(0)
    numpy_w = {"0.W": rng.normal(size=(3 * 4 * 4, 5)), "0.b": np.zeros(5)}
    templates, what = dg.first_layer_templates(numpy_w, "numpy", (3, 4, 4))
    assert templates.shape == (5, 4, 4, 3) and "0.W" in what
    torch_w = {"1.weight": rng.normal(size=(5, 48)), "1.bias": np.zeros(5)}
    assert dg.first_layer_templates(torch_w, "torch", None)[0].shape == (5, 4, 4, 3)  # shape guessed
    conv = {"0.weight": rng.normal(size=(8, 3, 3, 3))}
    templates, what = dg.first_layer_templates(conv, "torch", (3, 32, 32))
    assert templates.shape == (8, 3, 3, 3) and "conv" in what
    assert dg.first_layer_templates({"0.weight": rng.normal(size=(8, 16, 3, 3))}, "torch", None) is None


def test_html_escapes_and_embeds(tmp_path: Path) -> None:
    saved = figs.save_figure(figs.learning_curves(_metrics()), tmp_path, "c<x>", "a <b>caption</b>")
    section = Section("s1", "Title & <more>").add(
        text("<script>alert(1)</script>"), note("n & m", "error"),
        table(["name", "value"], [["<i>x</i>", 1.5], ["y", 2]]), figure(saved), None,
    )
    page = render_report("<title>", [section], subtitle="sub")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;title&gt;" in page and "Title &amp; &lt;more&gt;" in page
    assert "&lt;i&gt;x&lt;/i&gt;" in page and 'td class="num"' in page
    assert 'src="data:image/png;base64,' in page and "a &lt;b&gt;caption&lt;/b&gt;" in page
    assert 'href="#s1"' in page and '<section id="s1">' in page
    assert fmt(1234567) == "1,234,567" and fmt(0.123456) == "0.1235" and fmt(None) == "–"
    assert fmt(float("nan")) == "nan" and fmt(1e-5) == "1.00e-05"


# -- issue 27: report details ---------------------------------------------------------------


def test_constant_learning_rate_is_stated_not_drawn() -> None:
    rows = [{**row, "lr": 0.01} for row in _metrics()]
    assert figs.constant_lr(rows) == 0.01 and figs.constant_lr(_metrics()) is None
    fig = figs.learning_curves(rows)
    assert [a.get_title() for a in fig.axes] == ["loss", "accuracy"]
    assert fig.get_suptitle() == "learning rate 0.01 (constant)"
    unlogged = [{k: v for k, v in row.items() if k != "lr"} for row in _metrics()]
    assert figs.constant_lr(unlogged) is None  # no lr column: no panel and no claim about it
    assert [a.get_title() for a in figs.learning_curves(unlogged).axes] == ["loss", "accuracy"]
    assert figs.learning_curves(unlogged).get_suptitle() == ""


def _sparse_calibration() -> dg.Calibration:
    """1000 examples: 600 over-confident at 0.7, 390 under-confident at 0.5, and 2 examples at
    0.97 that are both wrong (a gap of 0.97 from a bin of 2)."""
    rng = np.random.default_rng(0)
    top = np.concatenate([np.full(600, 0.7), np.full(398, 0.5), np.full(2, 0.97)])
    probabilities = np.stack([top, 1 - top], axis=1)  # (N, 2): class 0 predicted
    correct = np.concatenate([rng.random(600) < 0.55, rng.random(398) < 0.8, [False, False]])
    return dg.calibration(probabilities, np.where(correct, 0, 1), bins=10)


def test_reliability_max_gap_leaves_out_sparse_bins() -> None:
    cal = _sparse_calibration()
    assert cal.max_gap == pytest.approx(0.97)  # the raw max: the bin of 2 examples
    assert figs.min_bin_count(1000) == 10 and figs.min_bin_count(5000) == 50
    supported = cal.counts >= 10
    expected = float(np.max(np.abs(cal.accuracy - cal.confidence)[supported]))
    assert figs.supported_max_gap(cal) == pytest.approx(expected) and expected < 0.5
    title = figs.reliability_diagram(cal).axes[0].get_title()
    assert f"max gap {expected:.3f} (bins of ≥ 10 examples)" in title and "0.970" not in title
    assert "at least 10 examples" in figs.max_gap_rule(cal)


def test_reliability_gap_shading_matches_its_legend() -> None:
    ax = figs.reliability_diagram(_sparse_calibration()).axes[0]
    legend = dict(zip([t.get_text() for t in ax.get_legend().get_texts()], ax.get_legend().legend_handles,
                      strict=True))
    assert {"gap: over-confident", "gap: under-confident", "bin of < 10 examples"} <= set(legend)
    for container in ax.containers:
        handle = legend[container.get_label()]
        for patch in container.patches:  # every bar looks like its legend entry, and nothing is see-through
            assert patch.get_alpha() in (None, 1.0)
            assert patch.get_facecolor() == handle.get_facecolor()
            assert patch.get_hatch() == handle.get_hatch()
            assert patch.get_hatchcolor() == handle.get_hatchcolor()
    over = next(c for c in ax.containers if c.get_label() == "gap: over-confident")
    assert len(over.patches) == 1  # the 0.97 bin has no shaded gap: it is too small to trust


def test_small_conv_kernels_are_drawn_as_signed_weights() -> None:
    from trainlab.report import kernels

    rng = np.random.default_rng(0)
    conv3 = {"0.weight": rng.normal(size=(40, 3, 3, 3)), "0.bias": np.zeros(40)}
    name, array = kernels.small_first_conv(conv3)
    assert name == "0.weight" and array.shape == (40, 3, 3, 3)
    assert kernels.small_first_conv({"0.weight": rng.normal(size=(8, 3, 5, 5))}) is None  # templates suit 5x5
    assert kernels.small_first_conv({"0.W": rng.normal(size=(48, 5))}) is None  # a dense first layer
    assert kernels.small_first_conv({"0.weight": rng.normal(size=(8, 16, 3, 3))}) is None
    conv3["0.weight"][7] *= 100  # the strongest filter comes first
    fig = kernels.kernel_grid(name, conv3["0.weight"])
    shown = [a for a in fig.axes if a.images]
    assert len(shown) == kernels.MAX_FILTERS_SHOWN
    assert shown[0].get_title().startswith("7\n")
    image = shown[0].images[0]
    assert image.get_array().shape == (3 * 4 - 1, 3)  # R, G, B one under another
    low, high = image.get_clim()
    assert low == -high  # one symmetric scale: the sign of a weight is its colour
    assert all(a.images[0].get_clim() == (low, high) for a in shown)
    caption = kernels.kernel_caption(name, conv3["0.weight"])
    assert "filters of the first conv layer" in caption and "the 32 of 40" in caption
