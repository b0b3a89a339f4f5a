"""The whole run file: :class:`RunConfig` and the checks that span sections."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from trainlab.errors import ConfigError
from trainlab.names import MAX_NAME_LENGTH, NAME_PATTERN, name_problem

from ._base import StrictModel, field_error
from ._messages import validation_error_to_config_error
from .augment import AugmentConfig
from .data import DataConfig
from .engine_support import NUMPY_MODELS, NUMPY_OPTIMIZERS
from .model import ModelConfig
from .optim import LossConfig, OptimizerConfig, RegularizationConfig, ScheduleConfig
from .source import SourceEntry, key_problems
from .train import TrainConfig

DEFAULT_EPOCHS = 10


def _check_name(value: str) -> str:
    problem = name_problem(value)
    if problem is not None:
        raise field_error("", problem, value)
    return value


#: A name that becomes a folder (run name, run id, study and stage names): see :mod:`trainlab.names`.
SafeName = Annotated[
    str,
    AfterValidator(_check_name),
    Field(json_schema_extra={"pattern": NAME_PATTERN, "maxLength": MAX_NAME_LENGTH}),
]


def _boolean_too(schema: dict[str, Any]) -> None:
    """A section that also takes ``true``/``false`` says so in the JSON schema (editors check it)."""
    schema["anyOf"].append({"type": "boolean"})


class MlflowConfig(StrictModel):
    """Where a run is logged in MLflow (``output.mlflow``; needs the trackers extra)."""

    tracking_uri: str | None = Field(
        None,
        min_length=1,
        description="MLflow tracking URI: a server (http://host:5000) or a database "
        "(sqlite:///path/mlflow.db); null = the SQLite file mlflow.db in output.dir, which the "
        "runs of one project share.",
    )
    experiment: str | None = Field(
        None,
        min_length=1,
        description="MLflow experiment the run is logged under; null = the run name (for a "
        "study's trials: the study's name).",
    )


class OutputConfig(StrictModel):
    """Where and what a run writes."""

    dir: str = Field("runs", description="Folder that holds the run directories.")
    run_id: SafeName | None = Field(
        None,
        description="Name of the run directory (letters, digits, . _ -); null = generated "
        "(start time, seed and a random suffix).",
    )
    save_checkpoint: bool = Field(True, description="Write checkpoints (needed to resume).")
    save_predictions: bool = Field(
        True,
        description="Write test-set probabilities and labels before and after training "
        "(predictions_initial.npz, predictions.npz); of the validation set when the test set "
        "is unlabelled or missing, or held out of the run (train.final_test_eval: false).",
    )
    report: bool = Field(
        True, description="Write figures/ and report.html when the run ends (a few seconds)."
    )
    tensorboard: bool = Field(
        False,
        description="Write TensorBoard event files to <run dir>/tensorboard/: loss and accuracy "
        "of each split and the learning rate at each evaluation. Needs the trackers extra "
        "(pip install 'trainlab[trackers]').",
    )
    mlflow: MlflowConfig | None = Field(
        None,
        description="Log the run to MLflow: the config as params, metrics at each evaluation, "
        "the summary, and the report as an artifact (a study's trials as child runs of one "
        "study run). true = the defaults; null = off. Needs the trackers extra.",
        json_schema_extra=_boolean_too,
    )

    @model_validator(mode="before")
    @classmethod
    def _mlflow_shorthand(cls, data: Any) -> Any:
        """``mlflow: true`` means the defaults and ``false`` means off (read before the
        strict check that refuses booleans where a section is expected)."""
        if isinstance(data, dict) and isinstance(data.get("mlflow"), bool):
            data = {**data, "mlflow": {} if data["mlflow"] else None}
        return data


class RunConfig(StrictModel):
    """One training run: everything needed to reproduce it, in one file."""

    name: SafeName = Field("run", description="Name of the run (letters, digits, . _ -).")
    seed: int = Field(
        0,
        ge=0,
        lt=2**32,
        description="Seed of every random choice (init, split, shuffle, dropout).",
    )
    engine: Literal["numpy", "torch"] = Field(
        "torch",
        description="numpy: from-scratch engine (linear/mlp); torch: PyTorch for every model.",
    )
    data: DataConfig = Field(description="Dataset, split and preprocessing.")
    model: ModelConfig = Field(description="Architecture.")
    loss: LossConfig = Field(default_factory=LossConfig, description="Training loss.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="Update rule.")
    schedule: ScheduleConfig = Field(
        default_factory=ScheduleConfig, description="Learning-rate schedule."
    )
    regularization: RegularizationConfig = Field(
        default_factory=RegularizationConfig,
        description="L1/L2 penalties added to the loss, and a shrink of the weights at every step.",
    )
    train: TrainConfig = Field(
        default_factory=TrainConfig, description="Run length, batching, callbacks."
    )
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig, description="Augmentation (torch only)."
    )
    output: OutputConfig = Field(
        default_factory=OutputConfig, description="Where and what the run writes."
    )
    source: dict[str, SourceEntry] = Field(
        default_factory=dict,
        description="Where each setting comes from: a dotted field path (covering every field below "
        "it) -> published (a verbatim quote, with at: FILE:LINE of a source report or code: "
        "owner/repo:path) or reading (our choice and why, with what else was tried). "
        "See docs/provenance.md.",
    )

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> RunConfig:
        """Validate a plain dict (a parsed file with ``base`` resolved).

        Raises:
            ConfigError: one line per problem, each naming ``source``, the field path, the
                value and what is allowed.
        """
        return _validate(data, source)

    @field_validator("source")
    @classmethod
    def _check_source_keys(cls, source: dict[str, SourceEntry]) -> dict[str, SourceEntry]:
        problems = key_problems(source, cls)
        if problems:
            raise field_error("", "; ".join(problems))
        return source

    @model_validator(mode="after")
    def _check_across_sections(self) -> RunConfig:
        self._fill_length()
        self._check_monitors()
        if self.train.reduce_on_plateau is not None and self.schedule.type != "constant":
            raise field_error(
                "train.reduce_on_plateau",
                f"cannot be combined with schedule type '{self.schedule.type}'; use schedule.type: constant",
            )
        if self.engine == "numpy":
            self._check_numpy()
        return self

    def _fill_length(self) -> None:
        length = self.schedule.cycle_length()
        train = self.train
        if length is None:
            if train.epochs is None and train.steps is None:
                train.epochs = DEFAULT_EPOCHS
            return
        unit = "steps" if self.schedule.per == "step" else "epochs"
        other = "epochs" if unit == "steps" else "steps"
        if getattr(train, other) is not None:
            raise field_error(
                f"train.{other}",
                f"schedule.cycles sets the run length ({length} {unit}); remove train.{other}",
                getattr(train, other),
            )
        given = getattr(train, unit)
        if given is not None and given != length:
            raise field_error(
                f"train.{unit}",
                f"schedule.cycles = {self.schedule.cycles} with step_size {self.schedule.step_size} "
                f"means {length} {unit}; remove train.{unit} or make it {length}",
                given,
            )
        setattr(train, unit, length)

    def _check_monitors(self) -> None:
        for name in ("early_stopping", "reduce_on_plateau"):
            callback = getattr(self.train, name)
            if callback is None:
                continue
            split = callback.monitor.split("_")[0]
            if split == "test" and not self.train.eval_on_test:
                raise field_error(
                    f"train.{name}.monitor", "needs train.eval_on_test: true", callback.monitor
                )
            if split == "val" and not self.data.has_validation:
                raise field_error(
                    f"train.{name}.monitor",
                    "there is no validation split (data.val_fraction is 0); set data.val_fraction or data.val_size",
                    callback.monitor,
                )

    def _check_numpy(self) -> None:
        model = self.model
        if model.type == "cnn":
            raise field_error(
                "model.type", "engine 'numpy' has no conv layers: use engine: torch", model.type
            )
        if model.type not in NUMPY_MODELS:
            raise field_error(
                "model.type",
                f"engine 'numpy' builds only {' and '.join(NUMPY_MODELS)} models: use engine: torch",
                model.type,
            )
        if model.activation in ("gelu", "silu"):
            raise field_error(
                "model.activation", f"engine 'numpy' has no {model.activation}: use engine: torch", model.activation
            )
        if self.optimizer.type not in NUMPY_OPTIMIZERS:
            raise field_error(
                "optimizer.type",
                f"engine 'numpy' has only {', '.join(NUMPY_OPTIMIZERS)}: use engine: torch",
                self.optimizer.type,
            )
        torch_only = {"device": "auto", "precision": "fp32", "compile": False, "tta": False,
                      "ema": None, "lookahead": None}
        for name, default in torch_only.items():
            value = getattr(self.train, name)
            if value != default:
                raise field_error(
                    f"train.{name}",
                    f"engine 'numpy' has no {name} option (it runs on the CPU, in model.dtype): "
                    "remove it or use engine: torch",
                    value,
                )
        for name, default in {"bn_weight": True, "head_bias": True, "head_scale": 1.0}.items():
            value = getattr(model, name)
            if value != default:
                raise field_error(f"model.{name}", "engine 'numpy' has no such option: use engine: torch", value)
        if self.optimizer.bias_lr_scale != 1.0:
            raise field_error("optimizer.bias_lr_scale", "engine 'numpy' has no such option: use engine: torch",
                              self.optimizer.bias_lr_scale)
        active = self.augment.active()
        if active:
            raise field_error(
                f"augment.{active[0]}",
                "engine 'numpy' does not augment: remove the augment section or use engine: torch",
                getattr(self.augment, active[0]),
            )


def _validate(data: Any, source: str, origins: dict[str, str] | None = None) -> RunConfig:
    """Validate ``data`` as a RunConfig; a failure becomes a ConfigError naming ``source``."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: a run config must be a mapping of sections (got {type(data).__name__})"
        )
    if "base" in data:
        raise ConfigError(
            f"{source}: base: is resolved when a file is loaded (load_config); a dict here must not have it"
        )
    try:
        return RunConfig.model_validate(data)
    except ValidationError as error:
        raise validation_error_to_config_error(error, source, RunConfig, origins) from None
