"""The ``augment`` section: batched training-time augmentation (torch engine only)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from ._base import StrictModel, field_error

Fraction = Annotated[float, Field(gt=0.0, le=1.0)]


class ColorJitterConfig(StrictModel):
    """Random colour changes, each drawn uniformly in [1 - x, 1 + x] (hue: [-x, x])."""

    brightness: float = Field(0.0, ge=0.0, description="Brightness jitter strength.")
    contrast: float = Field(0.0, ge=0.0, description="Contrast jitter strength.")
    saturation: float = Field(0.0, ge=0.0, description="Saturation jitter strength.")
    hue: float = Field(
        0.0, ge=0.0, le=0.5, description="Hue jitter, in fractions of a turn (at most 0.5)."
    )


class AugmentConfig(StrictModel):
    """Training-time augmentation, applied to whole batches; every field defaults to off."""

    hflip: bool = Field(False, description="Random horizontal flip (p = 0.5).")
    crop_padding: int = Field(
        0, ge=0, description="Pad by this many pixels, then crop back at a random offset."
    )
    translate: float = Field(
        0.0, ge=0.0, lt=1.0, description="Random shift of up to this fraction of the size."
    )
    rotate: float = Field(
        0.0, ge=0.0, le=180.0, description="Random rotation of up to this many degrees."
    )
    zoom: float = Field(
        0.0, ge=0.0, lt=1.0, description="Random zoom in/out by up to this fraction."
    )
    random_resized_crop: tuple[Fraction, Fraction] | None = Field(
        None, description="[min_scale, max_scale]: crop this fraction of the area, resize back."
    )
    color_jitter: ColorJitterConfig | None = Field(
        None, description="Random brightness/contrast/saturation/hue."
    )
    grayscale: float = Field(
        0.0, ge=0.0, le=1.0, description="Probability of turning an image gray."
    )
    cutout: int = Field(0, ge=0, description="Side of a random square blanked out (0 = off).")
    mixup: float = Field(0.0, ge=0.0, description="Mixup Beta(alpha, alpha) parameter (0 = off).")
    cutmix: float = Field(0.0, ge=0.0, description="CutMix Beta(alpha, alpha) parameter (0 = off).")

    @model_validator(mode="after")
    def _check(self) -> AugmentConfig:
        crop = self.random_resized_crop
        if crop is not None and crop[0] > crop[1]:
            raise field_error("random_resized_crop", "min_scale must be <= max_scale", list(crop))
        return self

    def active(self) -> list[str]:
        """Names of the augmentations that are on (fields that differ from their default)."""
        return [
            name
            for name, info in type(self).model_fields.items()
            if getattr(self, name) != info.default
        ]
