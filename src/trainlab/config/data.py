"""The ``data`` section: which dataset, how it is split, scaled and cropped."""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ._base import PositiveInt, StrictModel, field_error, scalar_or

#: Dataset names trainlab knows how to find and download; anything else must be a path.
KNOWN_DATASETS = ("cifar10", "mnist", "fashion-mnist", "cats-vs-dogs")
#: Pillow's own decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``): width x height.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")  # what trainlab.data.loader extracts


class LimitConfig(StrictModel):
    """Caps on the number of examples per split (for quick runs and tests)."""

    train: PositiveInt | None = Field(None, description="Use at most this many training examples.")
    val: PositiveInt | None = Field(None, description="Use at most this many validation examples.")
    test: PositiveInt | None = Field(None, description="Use at most this many test examples.")


class DataConfig(StrictModel):
    """Dataset, split and preprocessing.

    The validation split is carved out of the official training split (stratified by
    class, or its last rows with ``val_split: tail``); the official test split is kept for
    the final evaluation.
    """

    dataset: str = Field(
        description="cifar10, mnist, fashion-mnist, cats-vs-dogs, or a path to an image folder "
        "(train/<class>/*.jpg) or an archive (.tar.gz); a relative path needs a '/', e.g. ./pets."
    )
    data_dir: str | None = Field(
        None,
        description="Folder holding the datasets; default $TRAINLAB_DATA, else ~/.cache/trainlab/data.",
    )
    val_fraction: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="Fraction of the training split held out for validation (0 = none).",
    )
    val_size: PositiveInt | None = Field(
        None,
        description="Number of validation examples; overrides val_fraction (e.g. 5000 for 45k/5k).",
    )
    val_split: Literal["stratified", "tail"] = Field(
        "stratified",
        description="How validation rows are held out: stratified (a seeded, class-stratified random "
        "choice) or tail (the last rows of the training set in stored order, as Keras's validation_split).",
    )
    limit: scalar_or(PositiveInt, LimitConfig) | None = Field(  # type: ignore[valid-type]
        None,
        description="Cap examples: an int caps the training split only; {train, val, test} caps each.",
    )
    normalize: Literal["none", "scale", "channel", "pixel", "feature", "center", "fixed"] = Field(
        "channel",
        description="none: raw 0..255; scale: pixels mapped to [0, scale]; channel: per-channel mean/std "
        "of the training split; pixel: subtract the per-pixel mean of the training split (raw 0..255 "
        "units, no division); feature: standardise each pixel-channel position by its own training-split "
        "mean and std (a position with std 0 is only centred); center: pixels mapped to [0, scale], then "
        "the training-split mean subtracted without dividing by a std (center_by says which mean); fixed: "
        "(pixels / 255 - mean) / std with the given per-channel constants (torchvision's Normalize, e.g. "
        "ImageNet's). Statistics come from the training split (see stats_from); the run saves them "
        "(model.json), and predict and export apply the saved ones.",
    )
    mean: list[float] | None = Field(
        None,
        description="normalize: fixed: one mean per channel on the [0, 1] scale (ImageNet: [0.485, 0.456, 0.406]).",
    )
    std: list[float] | None = Field(
        None,
        description="normalize: fixed: one std per channel on the [0, 1] scale (ImageNet: [0.229, 0.224, 0.225]).",
    )
    stats_from: Literal["train", "train+val"] = Field(
        "train",
        description="Rows the normalisation statistics come from: train (the training split) or "
        "train+val (the training set before the validation hold-out, as some published code computes "
        "its mean image; the validation images then take part in the statistics).",
    )
    scale: float = Field(
        1.0,
        gt=0.0,
        description="Upper end of the pixel range for normalize: scale and center (e.g. 100).",
    )
    center_by: Literal["channel", "pixel"] = Field(
        "channel",
        description="normalize: center: subtract one mean per channel (channel) or the mean image (pixel).",
    )
    resize: scalar_or(PositiveInt, tuple[PositiveInt, PositiveInt]) | None = Field(  # type: ignore[valid-type]
        None,
        description="Resize images to size x size, or to [height, width]; null keeps the native size.",
    )
    skip_corrupt: bool = Field(
        False,
        description="Skip unreadable images in an image folder (counted and reported) instead of failing.",
    )
    max_image_pixels: PositiveInt = Field(
        DEFAULT_MAX_IMAGE_PIXELS,
        description="Largest image (width x height) an image folder may hold; a file claiming more is "
        "refused before it is decoded (a decompression bomb), or skipped with skip_corrupt. The "
        "default is Pillow's limit.",
    )

    @field_validator("dataset")
    @classmethod
    def _known_or_path(cls, value: str) -> str:
        if value.lower() in KNOWN_DATASETS:
            return value.lower()
        if value.lower().endswith(".zip"):
            raise ValueError("zip archives are not read: extract it and give the folder, or repack it as "
                             ".tar.gz (tar czf images.tar.gz -C FOLDER .)")
        if (
            "/" in value
            or "\\" in value
            or value.startswith("~")
            or value.lower().endswith(_ARCHIVE_SUFFIXES)
        ):
            return value
        close = difflib.get_close_matches(value.lower(), KNOWN_DATASETS, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ValueError(
            f"unknown dataset; {hint}(known: {', '.join(KNOWN_DATASETS)}; "
            "or a path with a '/' to an image folder or archive, e.g. ./my-images)"
        )

    @model_validator(mode="after")
    def _check_normalize_options(self) -> DataConfig:
        if self.center_by != "channel" and self.normalize != "center":
            raise field_error(
                "center_by", f"only used by normalize: center, not '{self.normalize}'", self.center_by
            )
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and self.normalize != "fixed":
                raise field_error(name, f"only used by normalize: fixed, not '{self.normalize}'", value)
            if value is None and self.normalize == "fixed":
                raise field_error(name, "normalize: fixed needs a mean and a std per channel, on the [0, 1] scale")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != len(self.std):
                raise field_error("std", f"has {len(self.std)} values for {len(self.mean)} means", self.std)
            if min(self.std) <= 0:
                raise field_error("std", "every std must be > 0", self.std)
        return self

    def prepare_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``trainlab.data.prepare_data`` this section means (all but
        ``dataset``, ``data_dir`` and the seed, which the caller passes)."""
        return {
            "val_fraction": self.val_fraction,
            "val_size": self.val_size,
            "val_split": self.val_split,
            "limit": self.limits().model_dump(),
            "normalize": self.normalize,
            "scale": self.scale,
            "center_by": self.center_by,
            "stats_from": self.stats_from,
            "mean": self.mean,
            "std": self.std,
            "resize": self.resize,
            "skip_corrupt": self.skip_corrupt,
            "max_image_pixels": self.max_image_pixels,
        }

    @property
    def has_validation(self) -> bool:
        """Whether a validation split is held out."""
        return bool(self.val_size) or self.val_fraction > 0

    def limits(self) -> LimitConfig:
        """The caps per split, an int ``limit`` read as a cap on train only."""
        if self.limit is None:
            return LimitConfig()
        if isinstance(self.limit, int):
            return LimitConfig(train=self.limit)
        return self.limit
