"""The config language of trainlab: pydantic models of a run file, and how files are read.

A run file is YAML with the sections of :class:`RunConfig`; ``base: other.yaml`` extends
another file and ``--set a.b=value`` overrides one field. Every error names the file, the
field path, the bad value and what is allowed.
"""

from __future__ import annotations

from ._base import resolve_mode
from ._messages import unknown_key_message, validation_error_to_config_error
from .augment import AugmentConfig, ColorJitterConfig
from .data import KNOWN_DATASETS, DataConfig, LimitConfig
from .loading import (
    PROVENANCE_KEY,
    config_diff,
    config_schema,
    config_to_yaml,
    load_config,
    load_config_dict,
    resolve_config,
)
from .model import ConvBlockConfig, InitConfig, ModelConfig, WhitenConfig
from .optim import LossConfig, OptimizerConfig, RegularizationConfig, ScheduleConfig
from .overrides import deep_merge, parse_overrides, with_overrides
from .run import NUMPY_MODELS, NUMPY_OPTIMIZERS, OutputConfig, RunConfig
from .source import SourceEntry
from .train import EarlyStoppingConfig, ReduceOnPlateauConfig, TrainConfig, WeightAverageConfig

__all__ = [
    "KNOWN_DATASETS",
    "NUMPY_MODELS",
    "NUMPY_OPTIMIZERS",
    "PROVENANCE_KEY",
    "AugmentConfig",
    "ColorJitterConfig",
    "ConvBlockConfig",
    "DataConfig",
    "EarlyStoppingConfig",
    "InitConfig",
    "LimitConfig",
    "LossConfig",
    "ModelConfig",
    "OptimizerConfig",
    "OutputConfig",
    "ReduceOnPlateauConfig",
    "RegularizationConfig",
    "RunConfig",
    "ScheduleConfig",
    "SourceEntry",
    "TrainConfig",
    "WeightAverageConfig",
    "WhitenConfig",
    "config_diff",
    "config_schema",
    "config_to_yaml",
    "deep_merge",
    "load_config",
    "load_config_dict",
    "parse_overrides",
    "resolve_config",
    "resolve_mode",
    "unknown_key_message",
    "validation_error_to_config_error",
    "with_overrides",
]
