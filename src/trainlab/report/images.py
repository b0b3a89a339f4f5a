"""The images of a run's dataset as the model saw them: its splits, samples per class, the
test images behind ``predictions.npz``, and an augmentation preview.

Images are read as uint8 (N, H, W, C) from the dataset cache (memory-mapped), and the
split indices are computed the way :func:`trainlab.data.prepare_data` computes them, from
the run's seed and limits, so no split is ever normalised to floats just to be shown.

A run report reads its images from the run directory (:mod:`.samples`); the dataset is
read again only for a run saved before that file existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainlab.data import RawDataset, load_dataset
from trainlab.data.prepare import split_indices as prepare_split_indices


@dataclass
class RunData:
    """A run's dataset and the indices of its splits into ``raw``'s arrays."""

    raw: RawDataset
    train_idx: np.ndarray  # indices into raw.x_train
    val_idx: np.ndarray  # indices into raw.x_train
    test_idx: np.ndarray | None  # indices into raw.x_test

    @property
    def class_names(self) -> list[str]:
        """The dataset's class names."""
        return list(self.raw.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image, the layout the models flatten."""
        _, h, w, c = self.raw.x_train.shape
        return (int(c), int(h), int(w))

    def counts(self) -> dict[str, np.ndarray | None]:
        """Examples per class (K,) of each split (None for an unlabelled or missing test split)."""
        k = len(self.raw.class_names)
        y = self.raw.y_train
        test = None
        if self.test_idx is not None and self.raw.y_test is not None:
            test = np.bincount(self.raw.y_test[self.test_idx], minlength=k)
        return {
            "train": np.bincount(y[self.train_idx], minlength=k),
            "val": np.bincount(y[self.val_idx], minlength=k),
            "test": test,
        }

    def test_labels(self) -> np.ndarray | None:
        """Labels of the test split in the order of ``predictions.npz`` (None if unlabelled)."""
        if self.raw.y_test is None or self.test_idx is None:
            return None
        return np.asarray(self.raw.y_test[self.test_idx])

    def test_image(self, index: int) -> np.ndarray:
        """One test image (H, W, C) by its row in ``predictions.npz``."""
        assert self.raw.x_test is not None and self.test_idx is not None
        return np.asarray(self.raw.x_test[self.test_idx[index]])

    def train_samples(self, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``per_class`` training images of every class (n, H, W, C) and their labels."""
        return sample_per_class(self.raw.x_train, self.raw.y_train, self.train_idx,
                                len(self.raw.class_names), per_class, seed)


def sample_per_class(
    x: np.ndarray, y: np.ndarray, pool: np.ndarray, num_classes: int, per_class: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded choice of up to ``per_class`` rows of each class from the indices ``pool``."""
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for k in range(num_classes):
        rows = pool[y[pool] == k]
        if len(rows):
            chosen.append(np.sort(rng.choice(rows, size=min(per_class, len(rows)), replace=False)))
    index = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    return np.asarray(x[index]), np.asarray(y[index])


def split_indices(raw: RawDataset, data_cfg: Mapping[str, Any], seed: int) -> RunData:
    """The splits of ``raw`` that ``prepare_data`` makes for a run's ``data`` section and seed."""
    train_idx, val_idx, test_idx = prepare_split_indices(
        raw,
        val_fraction=float(data_cfg.get("val_fraction", 0.1)),
        val_size=data_cfg.get("val_size"),
        limit=data_cfg.get("limit"),
        seed=seed,
        val_split=str(data_cfg.get("val_split", "stratified")),
    )
    return RunData(raw, train_idx, val_idx, test_idx)


def load_run_data(config: Mapping[str, Any]) -> RunData:
    """Load the dataset of a run's resolved config (a dict) and its split indices.

    Raises:
        DataError: the dataset cannot be found or read.
    """
    data_cfg = dict(config.get("data") or {})
    limit = data_cfg.get("max_image_pixels")  # the run's own, so the report reads the images the run did
    raw = load_dataset(str(data_cfg.get("dataset")), data_cfg.get("data_dir"),
                       resize=data_cfg.get("resize"), skip_corrupt=bool(data_cfg.get("skip_corrupt")),
                       **({"max_image_pixels": int(limit)} if limit is not None else {}))
    return split_indices(raw, data_cfg, int(config.get("seed", 0)))


def augmentation_preview(
    images: np.ndarray,
    labels: np.ndarray,
    augment: Mapping[str, Any],
    normalizer: Mapping[str, Any],
    num_classes: int,
    seed: int = 0,
) -> list[tuple[str, np.ndarray]]:
    """The same images through each augmentation the config turns on, alone, then (when more
    than one is on) all together.

    Uses the torch engine's batched augmentation, in the run's normalised space (so cutout
    fills with the mean colour as in training), and maps the result back to pixels.

    Args:
        images: (n, H, W, C) uint8.
        labels: (n,) class indices (mixup and cutmix mix images of the batch).
        augment: the config's ``augment`` section (a dict).
        normalizer: from :func:`trainlab.data.normalize.fit_normalizer`.
        num_classes: K.
        seed: seed of the augmentation generators.

    Returns:
        ``[("original", images), (name, augmented images), ..., ("all", ...)]``, uint8;
        ``all`` only when more than one augmentation is on, ``original`` alone when none is.
    """
    import torch

    from trainlab.config import AugmentConfig
    from trainlab.config.augment import MODIFIERS
    from trainlab.data.normalize import apply_normalizer
    from trainlab.engines.torch.augment import BatchAugment
    from trainlab.engines.torch.pixels import PixelSpace

    cfg = AugmentConfig.model_validate(dict(augment))
    rows: list[tuple[str, np.ndarray]] = [("original", np.asarray(images))]
    active = cfg.active()
    if not active or len(images) == 0:
        return rows
    channels = int(images.shape[-1])
    pixels = PixelSpace(dict(normalizer), channels)
    x = torch.from_numpy(apply_normalizer(np.asarray(images), dict(normalizer)))  # (n, C, H, W)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    # each transform alone keeps the run's modifiers (a reflect fill previews as it trains)
    modifiers = {name: getattr(cfg, name) for name in MODIFIERS}
    defaults = AugmentConfig()
    settings = [(name, defaults.model_copy(update={name: getattr(cfg, name), **modifiers})) for name in active]
    if len(active) > 1:
        settings.append(("all", cfg))
    for name, one in settings:
        augmented, _ = BatchAugment(one, num_classes, pixels, "cpu", seed=seed)(x.clone(), y)
        raw = pixels.to_raw(augmented).clamp(0, 255).round().to(torch.uint8)  # (n, C, H, W)
        rows.append((name, raw.permute(0, 2, 3, 1).numpy()))
    return rows


__all__ = ["RunData", "augmentation_preview", "load_run_data", "sample_per_class", "split_indices"]
