"""trainlab evaluate and predict: reproduce a run's test accuracy, write a submission CSV,
and fail clearly on an unreadable image, a size unlike training's, or a foreign checkpoint."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

import trainlab.api as tl
from trainlab.cli import main
from trainlab.data.normalize import apply_normalizer
from trainlab.errors import CorruptDataError, DataError, RunDirError
from trainlab.predict import evaluate_run, open_trained_run, predict_arrays, predict_folder

CLASSES = ("cat", "dog")
SIZE = 8


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread_per_module: None) -> None:
    """Every test here (and the module's fixtures) trains with one torch thread."""


def image(label: int, rng: np.random.Generator, size: int = SIZE) -> Image.Image:
    """A noisy image whose colour gives away its class (reddish cats, bluish dogs)."""
    base = np.array([200, 60, 60] if label == 0 else [60, 60, 200], dtype=np.float64)
    pixels = np.clip(base + rng.normal(0, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def folder_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/<class>/ (40 each) and a labelled test/<class>/ (10 each) of 8x8 PNGs."""
    root = tmp_path_factory.mktemp("pets")
    rng = np.random.default_rng(0)
    for split, count in (("train", 40), ("test", 10)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                image(label, rng).save(folder / f"{i}.png")
    return root


def train(root: Path, out: Path, run_id: str, **sections: Any) -> Path:
    cfg: dict[str, Any] = {
        "name": "pets", "seed": 0, "engine": "torch",
        "data": {"dataset": str(root), "val_fraction": 0.1},
        "model": {"type": "mlp", "hidden": [16]},
        "optimizer": {"type": "adam", "lr": 0.01},
        "train": {"epochs": 3, "batch_size": 16},
        "output": {"dir": str(out)},
    }
    cfg.update(sections)
    path = out / f"{run_id}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return tl.run(path, run_id=run_id, progress=False, echo=False).path


@pytest.fixture(scope="module")
def runs(folder_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A torch MLP, a torch CNN (channels_last, bf16) and a NumPy MLP, trained on the folder."""
    out = tmp_path_factory.mktemp("runs")
    return {
        "mlp": train(folder_dataset, out, "mlp"),
        "cnn": train(folder_dataset, out, "cnn", model={"type": "cnn", "conv": [{"filters": 4}], "fc": [8]},
                     train={"epochs": 2, "batch_size": 16, "precision": "bf16"}),
        "numpy": train(folder_dataset, out, "numpy", engine="numpy", optimizer={"type": "sgd", "lr": 0.05}),
        "resize": train(folder_dataset, out, "resize", data={"dataset": str(folder_dataset), "resize": SIZE}),
    }


def new_images(folder: Path, names: list[str], size: int = SIZE) -> list[int]:
    """Write unlabelled images called ``names``; returns their true classes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    labels = [i % 2 for i in range(len(names))]
    for name, label in zip(names, labels, strict=True):
        image(label, rng, size).save(folder / name)
    return labels


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def csv_probabilities(rows: list[dict[str, str]]) -> np.ndarray:
    """The ``prob_<class>`` columns of a submission as (N, K) floats."""
    return np.array([[float(row[f"prob_{name}"]) for name in CLASSES] for row in rows])


def pixels_of(files: list[Path]) -> np.ndarray:
    """The files decoded by Pillow alone: uint8 (N, H, W, 3)."""
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])


def softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64) - z.max(axis=1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def mirror_tta_by_hand(run_dir: Path, files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Softmax of the mean logits of each image and its horizontal mirror, and of the image
    alone, from the loaded torch network on the run's normalised pixels, in the run's
    precision and memory layout (as the run's final evaluation computed them)."""
    import torch

    from trainlab.engines.torch.runtime import autocast

    trained = open_trained_run(run_dir)
    loader = trained.loader
    x = torch.from_numpy(apply_normalizer(pixels_of(files), trained.spec.normalizer))  # (N, C, H, W)
    with torch.no_grad(), autocast(loader.device, loader.precision):
        plain, mirrored = (loader.model(view.to(loader.device).contiguous(memory_format=torch.channels_last))
                           .float().cpu().numpy() for view in (x, x.flip(3)))  # (N, K) each
    return softmax((plain + mirrored) / 2), softmax(plain)


# -- evaluate ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mlp", "cnn", "numpy"])
def test_evaluate_reproduces_the_runs_test_accuracy(runs: dict[str, Path], kind: str) -> None:
    result = evaluate_run(runs[kind])
    summary = tl.open_run(runs[kind]).summary
    assert result["examples"] == 20 and result["tta"] is False
    assert result["test_accuracy"] == summary["test_accuracy"]
    assert result["test_loss"] == pytest.approx(summary["test_loss"], rel=1e-5)
    assert result["matches_summary"] is True and result["data_fingerprint_matches"] is True


def test_evaluate_command_with_tta(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(runs["cnn"]), "--tta", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"tta": true' in out and '"matches_summary": null' in out
    # The mirror views must change the logits: a loss equal to the plain one means tta was ignored.
    plain, mirrored = evaluate_run(runs["cnn"], tta=False), evaluate_run(runs["cnn"], tta=True)
    assert plain["tta"] is False and mirrored["tta"] is True
    assert mirrored["test_loss"] != pytest.approx(plain["test_loss"], rel=1e-4)
    assert json.loads(out)["test_loss"] == pytest.approx(mirrored["test_loss"], rel=1e-6)  # --tta reached it
    assert main(["evaluate", str(runs["mlp"])]) == 0
    assert "test accuracy" in capsys.readouterr().out


# -- predict -------------------------------------------------------------------------------------
def test_predict_writes_one_row_per_image_with_ids_from_file_names(runs: dict[str, Path], tmp_path: Path) -> None:
    names = ["10.png", "2.png", "1.jpg", "kitten.bmp", "3.PNG", "20.png", "7.gif"]
    labels = new_images(tmp_path / "unlabelled", names)
    (tmp_path / "unlabelled" / "notes.txt").write_text("not an image, not listed")
    out = tmp_path / "sub" / "submission.csv"
    assert main(["predict", str(runs["mlp"]), "--images", str(tmp_path / "unlabelled"), "--out", str(out)]) == 0
    rows = read_csv(out)
    assert list(rows[0]) == ["id", "label"]
    assert [r["id"] for r in rows] == ["1", "2", "3", "7", "10", "20", "kitten"]  # natural order
    truth = dict(zip((Path(n).stem for n in names), labels, strict=True))
    correct = sum(int(r["label"]) == truth[r["id"]] for r in rows)
    assert correct >= 6  # the colours give the classes away


def test_predict_probabilities_and_label_names(runs: dict[str, Path], tmp_path: Path) -> None:
    files = [tmp_path / "imgs" / f"{i}.png" for i in range(5)]
    new_images(tmp_path / "imgs", [f.name for f in files])
    result = predict_folder(runs["cnn"], tmp_path / "imgs", tmp_path / "p.csv", probabilities=True,
                            label_names=True, tta=True)
    assert result["rows"] == 5 and result["columns"] == ["id", "label", "prob_cat", "prob_dog"]
    rows = read_csv(tmp_path / "p.csv")
    for row in rows:
        p = np.array([float(row["prob_cat"]), float(row["prob_dog"])])
        assert p.sum() == pytest.approx(1.0, abs=1e-5)
        assert row["label"] == CLASSES[int(p.argmax())]
    # tta=True is the "flip" mode: the image and its mirror, half each, averaged as logits.
    expected, plain = mirror_tta_by_hand(runs["cnn"], files)
    assert [r["id"] for r in rows] == [f.stem for f in files]
    np.testing.assert_allclose(csv_probabilities(rows), expected, atol=2e-6)  # the CSV keeps 6 decimals
    assert np.abs(plain - expected).max() > 1e-4  # without the mirror the check above would fail


def test_predict_with_the_numpy_engine(runs: dict[str, Path], tmp_path: Path) -> None:
    files = [tmp_path / "imgs" / name for name in ("a.png", "b.png", "c.png", "d.png")]
    truth = new_images(tmp_path / "imgs", [f.name for f in files])
    result = predict_folder(runs["numpy"], tmp_path / "imgs", tmp_path / "n.csv", probabilities=True)
    rows = read_csv(tmp_path / "n.csv")
    assert result["rows"] == 4 and [r["id"] for r in rows] == ["a", "b", "c", "d"]
    # The network by hand: the run's normaliser, then the NumPy model's forward pass in eval mode.
    trained = open_trained_run(runs["numpy"])
    x = apply_normalizer(pixels_of(files), trained.spec.normalizer, trained.loader.dtype)  # (N, C, H, W)
    expected = softmax(trained.loader.model.forward(x.reshape(len(x), -1), False))
    np.testing.assert_allclose(csv_probabilities(rows), expected, atol=2e-6)
    assert [int(r["label"]) for r in rows] == expected.argmax(1).tolist() == truth  # colours: easy


def test_a_run_that_resizes_accepts_other_sizes(runs: dict[str, Path], tmp_path: Path) -> None:
    files = [tmp_path / "big" / name for name in ("a.png", "b.png", "c.png", "d.png")]
    truth = new_images(tmp_path / "big", [f.name for f in files], size=20)
    result = predict_folder(runs["resize"], tmp_path / "big", tmp_path / "r.csv", probabilities=True)
    rows = read_csv(tmp_path / "r.csv")
    assert result["rows"] == 4 and [r["id"] for r in rows] == ["a", "b", "c", "d"]
    # data.resize resizes bilinearly (imagefolder.decode_image): the same pixels resized by hand.
    manual = np.stack([np.asarray(Image.open(f).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR))
                       for f in files])  # (N, 8, 8, 3)
    labels, probs = predict_arrays(open_trained_run(runs["resize"]), manual)
    np.testing.assert_allclose(csv_probabilities(rows), probs, atol=2e-6)
    assert [int(r["label"]) for r in rows] == labels.tolist() == truth


# -- clear errors --------------------------------------------------------------------------------
def test_unreadable_image_is_named(runs: dict[str, Path], tmp_path: Path) -> None:
    new_images(tmp_path / "imgs", ["1.png", "2.png"])
    (tmp_path / "imgs" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(CorruptDataError, match=r"3\.png: corrupt or unreadable image"):
        predict_folder(runs["mlp"], tmp_path / "imgs", tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_image_of_another_size_is_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    new_images(tmp_path / "imgs", ["1.png"])
    new_images(tmp_path / "imgs", ["2.png"], size=12)
    with pytest.raises(DataError, match=r"2\.png: image is 12x12 .* trained on 8x8 images .* data\.resize"):
        predict_folder(runs["mlp"], tmp_path / "imgs", tmp_path / "x.csv")
    # The CLI turns it into a message and the data error's exit code.
    assert main(["predict", str(runs["mlp"]), "--images", str(tmp_path / "imgs"), "--out",
                 str(tmp_path / "x.csv")]) == DataError.exit_code


def test_empty_folder_is_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        predict_folder(runs["mlp"], tmp_path / "empty", tmp_path / "x.csv")


@pytest.mark.parametrize("kind", ["mlp", "cnn", "numpy"])
def test_checkpoint_from_an_incompatible_config_is_refused(runs: dict[str, Path], tmp_path: Path,
                                                           kind: str) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(runs[kind], copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    if kind == "cnn":
        config["model"]["conv"][0]["filters"] = 6
    else:
        config["model"]["hidden"] = [20]
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(RunDirError, match=r"does not fit the model .* another model or dataset config"):
        evaluate_run(copy)
    new_images(tmp_path / "imgs", ["1.png"])
    assert main(["predict", str(copy), "--images", str(tmp_path / "imgs"), "--out",
                 str(tmp_path / "x.csv")]) == RunDirError.exit_code


def test_run_without_checkpoint_is_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(runs["mlp"], copy)
    (copy / "checkpoint.pt").unlink()
    with pytest.raises(RunDirError, match=r"no checkpoint\.pt"):
        evaluate_run(copy)


# -- real images ---------------------------------------------------------------------------------
def test_predicting_mnist_pngs_gives_the_runs_own_test_predictions(real_data: Path, tmp_path: Path) -> None:
    """Test images written as PNG files and predicted from the folder get the labels that the
    run itself predicted for them (predictions.npz)."""
    from trainlab.data import load_dataset

    cfg = {"name": "mnist", "seed": 0, "engine": "torch",
           "data": {"dataset": "mnist", "limit": {"train": 2000, "test": 200}},
           "model": {"type": "mlp", "hidden": [32]}, "optimizer": {"type": "adam", "lr": 2e-3},
           "train": {"epochs": 1, "batch_size": 50}, "output": {"dir": str(tmp_path / "runs")}}
    path = tmp_path / "mnist.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tl.run(path, run_id="r", data_dir=real_data, progress=False, echo=False)
    assert evaluate_run(run.path, data_dir=real_data)["test_accuracy"] == run.summary["test_accuracy"]
    # The run's test split is a stratified subset: find its images by their labels' order.
    from trainlab.data.splits import stratified_subset

    raw = load_dataset("mnist", real_data)
    index = stratified_subset(raw.y_test, 200, 0)[:30]
    folder = tmp_path / "pngs"
    folder.mkdir()
    for k, i in enumerate(index):
        Image.fromarray(raw.x_test[i][..., 0]).save(folder / f"{k + 1}.png")
    result = predict_folder(run.path, folder, tmp_path / "mnist.csv", data_dir=real_data)
    assert result["rows"] == 30
    with np.load(run.path / "predictions.npz") as saved:
        expected = saved["probabilities"][:30].argmax(1)
        assert (saved["labels"][:30] == raw.y_test[index]).all()  # the same images, in the same order
    rows = read_csv(tmp_path / "mnist.csv")
    assert [r["id"] for r in rows] == [str(k) for k in range(1, 31)]
    assert [int(r["label"]) for r in rows] == expected.tolist()


@pytest.mark.slow
def test_cats_vs_dogs_submission_has_every_test_image(real_data: Path, tmp_path: Path) -> None:
    """The 4,999 unlabelled Cats vs Dogs test images: one row each, ids from the file names."""
    import tarfile

    archive = real_data / "cats-vs-dogs" / "cats-vs-dogs.tar.gz"
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "cvd", members=[m for m in tar.getmembers() if m.name.startswith("test/")],
                       filter="data")
    cfg = {"name": "cvd", "seed": 0, "engine": "torch",
           "data": {"dataset": "cats-vs-dogs", "resize": 32, "limit": {"train": 400, "val": 100}},
           "model": {"type": "cnn", "conv": [{"filters": 8}, {"filters": 16}], "fc": [16]},
           "train": {"epochs": 1, "batch_size": 50}, "output": {"dir": str(tmp_path / "runs")}}
    path = tmp_path / "cvd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tl.run(path, run_id="r", data_dir=real_data, progress=False, echo=False)
    out = tmp_path / "submission.csv"
    result = predict_folder(run.path, tmp_path / "cvd" / "test", out, probabilities=True, data_dir=real_data)
    rows = read_csv(out)
    files = {p.stem for p in (tmp_path / "cvd" / "test").iterdir()}
    assert result["rows"] == len(rows) == len(files) == 4999
    assert {r["id"] for r in rows} == files


@pytest.mark.parametrize("channels", [3, 1])
def test_predict_refuses_images_over_the_runs_pixel_limit(tmp_path: Path, channels: int) -> None:
    from PIL import Image

    from trainlab.data.imagefolder import ImageTooLargeError
    from trainlab.predict import read_images

    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(path)
    assert read_images([path], (channels, 16, 16), None).shape == (1, 16, 16, channels)
    with pytest.raises(ImageTooLargeError, match=r"big\.png.*16x16"):
        read_images([path], (channels, 16, 16), None, max_pixels=100)


# -- issue 27: --resize, --skip-corrupt, nested folders, probability columns, evaluate on val -----
def test_resize_option_equals_a_manual_bilinear_resize(runs: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from trainlab.predict import open_trained_run, predict_arrays, predict_paths

    new_images(tmp_path / "imgs", ["1.png", "2.png"], size=20)
    new_images(tmp_path / "imgs", ["3.png"], size=12)
    new_images(tmp_path / "imgs", ["4.png"])  # already 8x8: kept as it is
    files = sorted((tmp_path / "imgs").iterdir())
    trained = open_trained_run(runs["mlp"])
    manual = np.stack([np.asarray(Image.open(f).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR))
                       for f in files])  # (N, H, W, C)
    labels, probs = predict_arrays(trained, manual)
    result = predict_paths(trained, files, resize=True)
    assert result.kept == files and result.skipped == []
    np.testing.assert_array_equal(result.probabilities, probs)
    np.testing.assert_array_equal(result.labels, labels)
    # Without --resize the CLI refuses, naming the option.
    assert main(["predict", str(runs["mlp"]), "--images", str(tmp_path / "imgs"), "--out",
                 str(tmp_path / "x.csv")]) == DataError.exit_code
    assert "--resize" in capsys.readouterr().err
    assert main(["predict", str(runs["mlp"]), "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "r.csv"),
                 "--resize", "--label-names"]) == 0
    assert [r["label"] for r in read_csv(tmp_path / "r.csv")] == [CLASSES[k] for k in labels]


def test_predict_arrays_takes_uint8_or_float_pixels_in_nhwc(runs: dict[str, Path]) -> None:
    from trainlab.predict import open_trained_run, predict_arrays

    trained = open_trained_run(runs["numpy"])
    pixels = np.stack([np.asarray(image(k, np.random.default_rng(k))) for k in (0, 1, 0)])  # (3, 8, 8, 3)
    labels, probs = predict_arrays(trained, pixels)
    assert labels.shape == (3,) and probs.shape == (3, 2) and labels.dtype == np.int64
    as_float = predict_arrays(trained, pixels.astype(np.float64))
    np.testing.assert_array_equal(as_float[1], probs)
    with pytest.raises(DataError, match=r"\(N, 8, 8, 3\).*transpose"):
        predict_arrays(trained, pixels.transpose(0, 3, 1, 2))  # (N, C, H, W)
    empty_labels, empty_probs = predict_arrays(trained, pixels[:0])
    assert empty_labels.shape == (0,) and empty_probs.shape == (0, 2)


def test_skip_corrupt_leaves_bad_files_out_and_lists_them(runs: dict[str, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    new_images(folder, ["1.png", "2.png", "5.png"])
    (folder / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    good = (folder / "1.png").read_bytes()
    (folder / "sub").mkdir()
    (folder / "sub" / "4.png").write_bytes(good[: len(good) // 2])  # truncated
    out = tmp_path / "out.csv"
    args = ["predict", str(runs["cnn"]), "--images", str(folder), "--out", str(out), "--probabilities"]
    # Without the flag: a clean error naming the file and the flag, and no CSV.
    assert main(args) == CorruptDataError.exit_code
    err = capsys.readouterr().err
    assert "3.png: corrupt or unreadable image" in err and "--skip-corrupt" in err and not out.exists()
    assert main([*args, "--skip-corrupt", "--tta"]) == 0
    captured = capsys.readouterr()
    assert "wrote 3 rows" in captured.out
    assert "skipped 2" in captured.err and "3.png" in captured.err and "4.png" in captured.err
    rows = read_csv(out)
    assert [r["id"] for r in rows] == ["1", "2", "5"] and list(rows[0]) == ["id", "label", "prob_cat", "prob_dog"]
    listed = (tmp_path / "out.csv.skipped.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in listed] == [str(folder / "3.png"), str(folder / "sub" / "4.png")]
    assert all("corrupt or unreadable image" in line.split("\t")[1] for line in listed)
    # The Python API returns them too; a later prediction with nothing to skip removes the stale list.
    result = predict_folder(runs["cnn"], folder, out, skip_corrupt=True)
    assert [p for p, _ in result["skipped"]] == [str(folder / "3.png"), str(folder / "sub" / "4.png")]
    (folder / "3.png").unlink()
    (folder / "sub" / "4.png").unlink()
    assert predict_folder(runs["cnn"], folder, out, skip_corrupt=True)["skipped_file"] is None
    assert not (tmp_path / "out.csv.skipped.txt").exists()


def test_skip_corrupt_also_skips_files_over_the_pixel_limit(runs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(runs["mlp"], copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["data"]["max_image_pixels"] = 100  # 8x8 images pass, 20x20 ones do not
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    new_images(tmp_path / "imgs", ["a.png"])
    new_images(tmp_path / "imgs", ["b.png"], size=20)
    from trainlab.data.imagefolder import ImageTooLargeError

    with pytest.raises(ImageTooLargeError, match=r"b\.png: image is 20x20.*--skip-corrupt"):
        predict_folder(copy, tmp_path / "imgs", tmp_path / "x.csv", resize=True)
    result = predict_folder(copy, tmp_path / "imgs", tmp_path / "x.csv", resize=True, skip_corrupt=True)
    assert result["rows"] == 1 and len(result["skipped"]) == 1
    assert result["skipped"][0][0].endswith("b.png") and "400 pixels" in result["skipped"][0][1]
    # Nothing readable at all is an error, not an empty submission.
    (tmp_path / "imgs" / "a.png").unlink()
    with pytest.raises(DataError, match="none of its 1 image files could be read"):
        predict_folder(copy, tmp_path / "imgs", tmp_path / "x.csv", resize=True, skip_corrupt=True)


def test_nested_folders_give_relative_path_ids(runs: dict[str, Path], tmp_path: Path) -> None:
    from trainlab.predict import open_trained_run, predict_paths
    from trainlab.predict_files import list_images

    folder = tmp_path / "imgs"
    new_images(folder / "b", ["1.png", "10.png", "2.png"])
    new_images(folder / "a", ["1.png"])
    new_images(folder, ["2.png"])
    new_images(folder / ".cache", ["9.png"])  # hidden folder and file: not listed
    new_images(folder / "a", [".thumb.png"])
    assert [p.relative_to(folder).as_posix() for p in list_images(folder)] == [
        "2.png", "a/1.png", "b/1.png", "b/2.png", "b/10.png"]
    result = predict_folder(runs["mlp"], folder, tmp_path / "n.csv")
    rows = read_csv(tmp_path / "n.csv")
    assert result["rows"] == 5 and [r["id"] for r in rows] == ["2", "a/1", "b/1", "b/2", "b/10"]
    expected = predict_paths(open_trained_run(runs["mlp"]), [folder / "a" / "1.png", folder / "b" / "1.png"])
    assert [int(rows[1]["label"]), int(rows[2]["label"])] == expected.labels.tolist()
    new_images(folder / "a", ["1.jpg"])  # a/1 twice: the ids would clash
    with pytest.raises(DataError, match="same id 'a/1'"):
        predict_folder(runs["mlp"], folder, tmp_path / "n.csv")


# Class names a CSV must quote (a comma, a double quote) or keep as they are (spaces).
ODD_CLASSES = ("big \"dog\"", "tabby, cat")


@pytest.fixture(scope="module")
def unlabelled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run on an image folder whose test/ is unlabelled (Kaggle style), with odd class names."""
    root = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(2)
    for label, name in enumerate(ODD_CLASSES):
        (root / "train" / name).mkdir(parents=True)
        for i in range(30):
            image(label, rng).save(root / "train" / name / f"{i}.png")
    (root / "test").mkdir()
    for i in range(6):
        image(i % 2, rng).save(root / "test" / f"{i}.png")
    return train(root, tmp_path_factory.mktemp("odd-runs"), "odd", data={"dataset": str(root), "val_fraction": 0.2})


def test_probability_columns_with_label_names_and_odd_class_names(unlabelled_run: Path, tmp_path: Path) -> None:
    new_images(tmp_path / "imgs", ["1.png", "2.png", "3.png", "4.png"])
    (tmp_path / "imgs" / "5.png").write_bytes(b"not an image")
    result = predict_folder(unlabelled_run, tmp_path / "imgs", tmp_path / "p.csv", probabilities=True,
                            label_names=True, tta=True, skip_corrupt=True)
    columns = ["id", "label", *(f"prob_{name}" for name in ODD_CLASSES)]
    assert result["columns"] == columns and result["rows"] == 4 and len(result["skipped"]) == 1
    text = (tmp_path / "p.csv").read_text()
    assert text.splitlines()[0] == 'id,label,"prob_big ""dog""","prob_tabby, cat"'
    rows = read_csv(tmp_path / "p.csv")
    assert all(list(row) == columns for row in rows)
    for row in rows:
        p = np.array([float(row[c]) for c in columns[2:]])
        assert p.sum() == pytest.approx(1.0, abs=1e-5) and row["label"] == ODD_CLASSES[int(p.argmax())]


def test_evaluate_without_a_labelled_test_split_reports_on_val(unlabelled_run: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    result = evaluate_run(unlabelled_run)
    summary = tl.open_run(unlabelled_run).summary
    assert result["split"] == "val" and result["examples"] == 12
    assert result["val_accuracy"] == result["accuracy"] == summary["final_val_accuracy"]
    assert result["val_loss"] == pytest.approx(summary["final_val_loss"], rel=1e-5)
    assert result["matches_summary"] is True and "test_accuracy" not in result
    assert main(["evaluate", str(unlabelled_run)]) == 0
    out = capsys.readouterr().out
    assert "12 val images" in out and "val accuracy" in out and "(no labelled test split)" in out
    # No validation split either: a clean error.
    copy = tmp_path / "copy"
    shutil.copytree(unlabelled_run, copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["data"]["val_fraction"] = 0.0
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(DataError, match="no labelled test split and the run has no validation split"):
        evaluate_run(copy)
    assert main(["evaluate", str(copy)]) == DataError.exit_code
