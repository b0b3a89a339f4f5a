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
