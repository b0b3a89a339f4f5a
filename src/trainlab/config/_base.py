"""Shared pieces of the config models: the strict base class and field-scoped errors."""

from __future__ import annotations

import functools
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

#: Error type the message formatter recognises: ``ctx["field"]`` extends the error's path.
FIELD_ERROR = "trainlab_field"

# linear: no activation at all (a Keras Conv2D or Dense without activation=, as seed E's CNN).
Activation = Literal["relu", "leaky_relu", "elu", "sigmoid", "tanh", "gelu", "silu", "linear"]
Monitor = Literal[
    "val_loss", "val_accuracy", "train_loss", "train_accuracy", "test_loss", "test_accuracy"
]
PositiveInt = Annotated[int, Field(gt=0)]
Probability = Annotated[float, Field(ge=0.0, lt=1.0)]


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, never silently dropped.

    Numbers are strict too, in every section: a float field refuses infinities and NaN
    (``lr: .inf``), and a field that takes no boolean refuses ``true``/``false`` where
    pydantic would read them as 1 and 0 (``epochs: true``).
    """

    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, bool | list | tuple) or info.field_name is None:
            return value
        if _admits_bool(cls, info.field_name):
            return value
        if isinstance(value, bool):
            raise field_error("", "must be a number, not true/false", value)
        for index, item in enumerate(value):
            if isinstance(item, bool):
                raise field_error(f"[{index}]", "must be a number, not true/false", item)
        return value


def field_error(field: str, message: str, value: Any = None) -> PydanticCustomError:
    """An error about ``field`` (dotted, relative to the model raising it) for a validator.

    The formatter in ``_messages`` appends ``field`` to the error's location, so that a
    check made in a model validator still names e.g. ``model.dropout``.
    """
    return PydanticCustomError(
        FIELD_ERROR, "{message}", {"field": field, "message": message, "value": value}
    )


@functools.cache
def _admits_bool(model: type[BaseModel], name: str) -> bool:
    """Whether field ``name`` of ``model`` takes a boolean anywhere in its type."""
    return _type_admits_bool(model.model_fields[name].annotation)


def _type_admits_bool(tp: Any) -> bool:
    if tp is bool or tp is Any or tp is object:
        return True
    origin = get_origin(tp)
    if origin is Literal:
        return any(isinstance(arg, bool) for arg in get_args(tp))
    if origin is Annotated:
        return _type_admits_bool(get_args(tp)[0])
    if origin in (Union, types.UnionType, list, tuple, dict):
        return any(_type_admits_bool(arg) for arg in get_args(tp))
    return False  # a number, a string, a nested model: none of them is a boolean


def _shape(value: Any) -> str:
    """Tag for :func:`scalar_or` unions: mappings, lists and models go to the structured member.

    Models count too because serialising a validated config asks the same question.
    """
    return "many" if isinstance(value, dict | list | tuple | BaseModel) else "one"


def scalar_or(scalar: Any, structured: Any) -> Any:
    """``scalar | structured`` validated by the input's shape, so errors come from one member.

    A plain union reports a failure against every member ("should be a valid integer",
    "should be a valid list"); this picks the member from the input and reports only its
    errors.
    """
    return Annotated[
        Annotated[scalar, Tag("one")] | Annotated[structured, Tag("many")],
        Discriminator(_shape),
    ]


def _kind(value: Any) -> str:
    return "name" if isinstance(value, str) else "number"


def name_or(names: Any, number: Any) -> Any:
    """``Literal[...] | number`` validated by the input's type (a string is a name)."""
    return Annotated[
        Annotated[names, Tag("name")] | Annotated[number, Tag("number")],
        Discriminator(_kind),
    ]


#: Parts of a metric name that mark lower as better: losses and times.
LOWER_IS_BETTER = ("loss", "seconds", "elapsed")


def resolve_mode(monitor: str, mode: str = "auto") -> Literal["min", "max"]:
    """Whether lower (``min``) or higher (``max``) values of ``monitor`` are better.

    ``min`` and ``max`` are kept; ``auto`` is ``min`` for losses and times (a name that
    contains ``loss``, ``seconds`` or ``elapsed``: ``val_loss``, ``train_seconds``) and
    ``max`` for everything else (``val_accuracy``, ``images_per_second``). The one rule for
    early stopping, reduce-on-plateau, pruners and a study's objective direction.

    Raises:
        ValueError: ``mode`` is not ``min``, ``max`` or ``auto``.
    """
    if mode in ("min", "max"):
        return mode  # type: ignore[return-value]
    if mode != "auto":
        raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
    return "min" if any(part in monitor for part in LOWER_IS_BETTER) else "max"
