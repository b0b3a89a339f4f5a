"""The ``augment`` section: batched training-time augmentation (torch engine only)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ._base import StrictModel, field_error, name_or

Fraction = Annotated[float, Field(gt=0.0, le=1.0)]
#: Fields that only say how another transform works (not augmentations by themselves).
MODIFIERS = ("crop_padding_mode", "fill_mode", "zoom_axes")


class ColorJitterConfig(StrictModel):
    """Random colour changes, each drawn uniformly in [1 - x, 1 + x] (hue: [-x, x])."""

    brightness: float = Field(0.0, ge=0.0, description="Brightness jitter strength.")
    contrast: float = Field(0.0, ge=0.0, description="Contrast jitter strength.")
    saturation: float = Field(0.0, ge=0.0, description="Saturation jitter strength.")
    hue: float = Field(
        0.0, ge=0.0, le=0.5, description="Hue jitter, in fractions of a turn (at most 0.5)."
    )


class LowResConfig(StrictModel):
    """Train the first epochs on smaller images (progressive resizing, in one step)."""

    size: int = Field(
        ge=4, description="Side of the training images in the low-resolution epochs (smaller than the images)."
    )
    epochs: int = Field(ge=1, description="How many epochs from the start (0-based epochs 0..epochs-1) use it.")
    mode: Literal["crop", "resize"] = Field(
        "crop",
        description="crop: a random size x size window of each image, at the pixel scale of the full image; "
        "resize: the whole image shrunk to size x size (bilinear, antialiased).",
    )


class AugmentConfig(StrictModel):
    """Training-time augmentation, applied to whole batches; every field defaults to off."""

    hflip: name_or(Literal["alternating"], bool) = Field(  # type: ignore[valid-type]
        False,
        description="true: random horizontal flip (p = 0.5); alternating (torch): each image is flipped at "
        "random in epoch 0, then exactly when it was not in the epoch before (airbench's alternating flip).",
    )
    crop_padding: int = Field(
        0, ge=0, description="Pad by this many pixels, then crop back at a random offset."
    )
    crop_padding_mode: Literal["zeros", "reflect"] = Field(
        "zeros",
        description="What crop_padding pads with: zeros (the mean colour once normalised) or reflect "
        "(the mirrored border, as airbench).",
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
    zoom_axes: Literal["same", "independent"] = Field(
        "same",
        description="same: one zoom factor for both axes (the aspect ratio kept); independent: the height's "
        "and the width's factors drawn apart, as Keras' ImageDataGenerator(zoom_range=...) and RandomZoom do.",
    )
    random_resized_crop: tuple[Fraction, Fraction] | None = Field(
        None, description="[min_scale, max_scale]: crop this fraction of the area, resize back."
    )
    fill_mode: Literal["zeros", "nearest", "reflect"] = Field(
        "zeros",
        description="What translate, rotate, zoom and random_resized_crop fill the area they uncover with: "
        "zeros (the mean colour once normalised), nearest (the nearest edge pixel, the default of Keras' "
        "ImageDataGenerator) or reflect (the image mirrored about its edge, the default of Keras' "
        "RandomTranslation, RandomRotation and RandomZoom layers).",
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
    low_res: LowResConfig | None = Field(
        None,
        description="Low-resolution warm-up (torch): in the first low_res.epochs epochs every training batch is "
        "size x size, taken after flip and pad-crop and before the affine, colour, cutout and mixing "
        "transforms (cutout keeps its configured size); crop takes a random window per image, resize "
        "shrinks the whole image. A step then costs about (size / side)^2 of a full one. Evaluation, TTA "
        "and later epochs are full size. The model must take any input size: cnn with model.global_pool "
        "max or avg, resnet, fast_cifar, or a custom model (its own responsibility); linear and mlp cannot.",
    )

    @model_validator(mode="after")
    def _check(self) -> AugmentConfig:
        crop = self.random_resized_crop
        if crop is not None and crop[0] > crop[1]:
            raise field_error("random_resized_crop", "min_scale must be <= max_scale", list(crop))
        if self.crop_padding_mode != "zeros" and not self.crop_padding:
            raise field_error("crop_padding_mode", "needs crop_padding > 0", self.crop_padding_mode)
        if self.fill_mode != "zeros" and not self.resamples():
            raise field_error("fill_mode", "needs translate, rotate, zoom or random_resized_crop", self.fill_mode)
        if self.zoom_axes != "same" and not self.zoom:
            raise field_error("zoom_axes", "needs zoom > 0", self.zoom_axes)
        return self

    def resamples(self) -> bool:
        """Whether a geometric transform that resamples the image (and so fills) is on."""
        return bool(self.translate or self.rotate or self.zoom or self.random_resized_crop is not None)

    def active(self) -> list[str]:
        """Names of the augmentations that are on (fields that differ from their default).

        ``crop_padding_mode``, ``fill_mode`` and ``zoom_axes`` only modify other transforms, so
        they are not listed by themselves.
        """
        return [
            name
            for name, info in type(self).model_fields.items()
            if name not in MODIFIERS and getattr(self, name) != info.default
        ]
