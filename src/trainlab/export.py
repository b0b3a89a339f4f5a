"""Export a trained run's model to TorchScript or ONNX, with its normalisation folded in.

The exported model takes **raw pixels**: float32 ``(N, C, H, W)`` with values in [0, 255]
(an image decoded as training decoded it, HWC uint8, transposed to CHW and cast; the
TorchScript module takes uint8 tensors as well). Inside it: the run's normaliser (the same
float32 operations as :func:`trainlab.data.normalize.apply_normalizer`), the trained
network in eval mode with the weights evaluations used (the EMA with ``train.ema``), and
the run's test-time augmentation views (``train.tta``, or as asked; for the images
``train.tta_below`` selects, when the run sets it). It returns **logits**
``(N, K)`` float32, not probabilities: softmax over axis 1 gives the probabilities that
``predictions.npz`` holds. Logits are what deployment code usually wants (argmax,
calibration, its own softmax) and keep the export one plain graph.

NumPy-engine runs (linear classifiers and MLPs) are exported through an equivalent torch
module built layer by layer from the NumPy weights (:func:`numpy_network`).

Beside the export, ``<file>.json`` describes it (class names, input shape and range, what
the output is, the weights and TTA used) and records a check: the export, read back from
its bytes, against the run's own loader on a few random images, before anything is written.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainlab import __version__
from trainlab.data.normalize import apply_normalizer, normalizer_affine
from trainlab.engines.numpy import layers as np_layers
from trainlab.engines.numpy.model import Sequential
from trainlab.engines.torch.tta import tta_logits, tta_mode
from trainlab.errors import ConfigError, TrainlabError
from trainlab.io import atomic_write_bytes, atomic_write_json
from trainlab.predict import TrainedRun, open_trained_run
from trainlab.run_files import PREDICTIONS_FILE, REPORT_FILE, REPORT_IMAGES_FILE, START_FILES

FORMATS = ("torchscript", "onnx")
#: Default file name of each format, in the run directory.
DEFAULT_NAMES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"
#: Random images the export is checked on against the run's own loader.
CHECK_IMAGES = 8
#: Largest |logit difference| of the check, relative to the largest |logit| (at least 1), that passes.
CHECK_TOLERANCE = 1e-4
# Files of the run directory an export must never replace.
_RUN_FILES = START_FILES | {PREDICTIONS_FILE, REPORT_IMAGES_FILE, REPORT_FILE}
_EXTRA_HINT = "pip install 'trainlab[export]'"


class PixelModel(nn.Module):
    """Raw pixels (N, C, H, W) in [0, 255] -> logits (N, K) float32.

    Args:
        network: the trained network in eval mode; it takes normalised images of ``dtype``.
        normalizer: the run's :func:`~trainlab.data.normalize.fit_normalizer` dict.
        channels: image channels.
        dtype: the network's parameter dtype (float64 models get float64 inputs, as in training).
        tta: a :data:`~trainlab.engines.torch.tta.TTA_MODES` name: the views averaged.
        tta_below: the run's ``train.tta_below`` (selective TTA: only images whose plain top
            probability is below it take the views' mean), or None for every image. The export
            computes every view of every image and picks per image (one static graph), so it
            gives the run's selective logits without the run's savings.
    """

    def __init__(self, network: nn.Module, normalizer: dict[str, Any], channels: int, dtype: torch.dtype,
                 tta: str, tta_below: float | None = None) -> None:
        super().__init__()
        self.network = network
        affine = normalizer_affine(normalizer, channels)
        # Rounded to float32 first, as apply_normalizer does, so the normalised images equal the
        # arrays the run was trained and evaluated on bit for bit.
        self.register_buffer("shift", _float32(affine.shift))
        self.register_buffer("factor", _float32(affine.factor))
        self.compute_dtype = dtype
        self.tta = tta
        self.tta_below = tta_below

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (N, C, H, W) -> logits (N, K) float32."""
        x = pixels.to(torch.float32)
        if self.shift is not None:
            x = x - self.shift
        if self.factor is not None:
            x = x * self.factor
        x = x.to(self.compute_dtype)
        if self.tta == "none":
            return self.network(x).float()  # (N, K)
        return tta_logits(self.network, x, self.tta, self.tta_below, static_shapes=True)


def _float32(value: np.ndarray | float | None) -> torch.Tensor | None:
    return None if value is None else torch.from_numpy(np.asarray(value, dtype=np.float32))


def numpy_network(model: Sequential) -> nn.Sequential:
    """The torch equivalent of a NumPy-engine model in eval mode (same dtype, same weights).

    Linear weights (D, M) become ``nn.Linear`` weights (M, D); batch norm keeps its running
    statistics and eps (eval mode uses nothing else); dropout is the identity at eval and is
    left out; activations keep their slope (leaky_relu) and alpha (elu). The input is flattened
    first, as the NumPy Linear flattens (N, C, H, W) in C order.

    Raises:
        TrainlabError: a layer this function does not know.
    """
    modules: list[nn.Module] = [nn.Flatten()]
    for layer in model.layers:
        module = _torch_layer(layer)
        if module is not None:
            modules.append(module)
    dtype = next(iter(model.parameters().values())).dtype
    return nn.Sequential(*modules).to(torch.float64 if dtype == np.float64 else torch.float32).eval()


def _torch_layer(layer: np_layers.Layer) -> nn.Module | None:
    """The torch module computing ``layer``'s eval-mode forward; None for dropout (the identity)."""
    params = {name: torch.from_numpy(np.array(value)) for name, value in layer.params.items()}
    if isinstance(layer, np_layers.Linear):
        linear = nn.Linear(layer.in_dim, layer.out_dim, bias="b" in params, dtype=params["W"].dtype)
        with torch.no_grad():
            linear.weight.copy_(params["W"].T)  # (M, D)
            if linear.bias is not None:
                linear.bias.copy_(params["b"])  # (M,)
        return linear
    if isinstance(layer, np_layers.BatchNorm):
        norm = nn.BatchNorm1d(len(params["gamma"]), eps=layer.eps, dtype=params["gamma"].dtype)
        with torch.no_grad():
            norm.weight.copy_(params["gamma"])
            norm.bias.copy_(params["beta"])
            norm.running_mean.copy_(torch.from_numpy(np.array(layer.buffers["running_mean"])))
            norm.running_var.copy_(torch.from_numpy(np.array(layer.buffers["running_var"])))
        return norm
    simple: dict[type, nn.Module] = {np_layers.ReLU: nn.ReLU(), np_layers.Sigmoid: nn.Sigmoid(),
                                     np_layers.Tanh: nn.Tanh()}
    if type(layer) in simple:
        return simple[type(layer)]
    if isinstance(layer, np_layers.LeakyReLU):
        return nn.LeakyReLU(layer.slope)
    if isinstance(layer, np_layers.ELU):
        return nn.ELU(layer.alpha)
    if isinstance(layer, np_layers.Dropout):
        return None
    raise TrainlabError(f"cannot export a NumPy model with a {type(layer).__name__} layer: "
                        "export knows Linear, BatchNorm, Dropout and the activations")


def _network(run: TrainedRun) -> nn.Module:
    """The run's trained network in eval mode, as its engine's loader loaded it (on the CPU:
    :func:`export_run` opens the run there); a NumPy network as its torch equivalent."""
    if run.config.engine == "torch":
        # The loader keeps conv nets channels_last (faster on the CPU); an export is plain NCHW.
        return run.loader.model.to(memory_format=torch.contiguous_format).eval()
    return numpy_network(run.loader.model)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' own chatter: torch deprecates TorchScript (the issue asks for it all
    the same: it still loads everywhere libtorch runs), and the ONNX exporter logs every
    torchvision operator it skips; our check below says whether the export is right."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            yield
    finally:
        logger.setLevel(level)


def _torchscript_bytes(module: PixelModel, example: torch.Tensor) -> bytes:
    # Traced, not scripted: TTA views are Python callables, and tracing records plain tensor ops.
    with _quiet():
        traced = torch.jit.trace(module, example, check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def _onnx_bytes(module: PixelModel, example: torch.Tensor) -> bytes:
    """The ONNX model as one file's bytes (weights inside), with a dynamic batch dimension."""
    try:
        import onnx  # noqa: F401  (the exporter needs both; fail here with the hint)
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise TrainlabError(f"ONNX export needs the optional packages onnx and onnxscript ({exc.name} is "
                            f"not installed): {_EXTRA_HINT}") from None
    with _quiet():
        program = torch.onnx.export(module, (example,), None, dynamo=True, verbose=False, external_data=False,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes={"pixels": {0: torch.export.Dim("batch")}})
    if program is None:  # only a legacy (dynamo=False) export writes straight to a file
        raise TrainlabError("torch.onnx.export returned no program")
    return bytes(program.model_proto.SerializeToString())


def _run_export(data: bytes, format_: str, pixels: np.ndarray) -> np.ndarray | None:
    """Logits of an export's bytes on pixels (N, C, H, W) float32; None when nothing here runs ONNX."""
    if format_ == "torchscript":
        with _quiet(), torch.no_grad():
            loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
            return loaded(torch.from_numpy(pixels)).numpy()
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {INPUT_NAME: pixels})[0])


def _check(data: bytes, format_: str, run: TrainedRun, tta: str) -> dict[str, Any]:
    """Compare the export with the run's own loader on :data:`CHECK_IMAGES` random images.

    Raises:
        TrainlabError: a run evaluated without autocast (NumPy engine, or ``train.precision``
            fp32) whose export differs by more than :data:`CHECK_TOLERANCE` times the largest
            |logit| (at least 1); other runs only record the difference.
    """
    channels, height, width = run.spec.input_shape
    images = np.random.default_rng(0).integers(0, 256, (CHECK_IMAGES, height, width, channels),
                                               dtype=np.uint8)  # (n, H, W, C)
    got = _run_export(data, format_, images.transpose(0, 3, 1, 2).astype(np.float32))  # (n, K)
    if got is None:
        return {"images": CHECK_IMAGES, "passed": None,
                "note": f"onnxruntime is not installed, so the export was not run: {_EXTRA_HINT}"}
    # The NumPy loader reads any true value as its one view, the mirror image: pass False for none.
    expected = run.logits(apply_normalizer(images, run.spec.normalizer), False if tta == "none" else tta)  # (n, K)
    difference = float(np.abs(got.astype(np.float64) - expected).max())
    scale = max(1.0, float(np.abs(expected).max()))
    exact = run.config.engine == "numpy" or run.config.train.precision == "fp32"
    passed = difference <= CHECK_TOLERANCE * scale
    if exact and not passed:
        raise TrainlabError(f"the {format_} export of {run.path} gives logits up to {difference:.3g} away from the "
                            f"run's own on {CHECK_IMAGES} random images (largest logit {scale:.3g}); nothing was "
                            "written. This is a bug in trainlab's export: please report it with the run's config.yaml")
    check: dict[str, Any] = {"images": CHECK_IMAGES, "max_abs_logit_difference": difference, "passed": passed}
    if not exact:
        check["note"] = (f"the run evaluates with {run.config.train.precision} autocast, the export in "
                         f"{'float64' if run.config.model.dtype == 'float64' else 'float32'}: logits differ "
                         "by that precision's rounding")
    return check


def _target(run_path: Path, format_: str, out: str | Path | None) -> Path:
    """The export's path: ``out``, a file in ``out`` when it is a folder, else the run directory's
    default name. Refuses to replace one of the run's own files."""
    target = run_path / DEFAULT_NAMES[format_] if out is None else Path(out)
    if target.is_dir():
        target = target / DEFAULT_NAMES[format_]
    for path in (target, sidecar_path(target)):
        if path.name in _RUN_FILES and path.parent.resolve() == run_path.resolve():
            raise ConfigError(f"--out {target} would replace the run's own {path.name}; choose another name "
                              f"(default {DEFAULT_NAMES[format_]})")
    return target


def sidecar_path(export: str | Path) -> Path:
    """The JSON that describes an export: its file name plus ``.json``."""
    path = Path(export)
    return path.with_name(path.name + ".json")


def export_run(run_dir: str | Path, format: str, out: str | Path | None = None, *,
               tta: bool | str | None = None, data_dir: str | Path | None = None) -> Path:
    """Export a trained run's model to TorchScript or ONNX (see the module docstring for its contract).

    Args:
        run_dir: a trained run directory (with its checkpoint).
        format: ``torchscript`` or ``onnx`` (ONNX needs the ``export`` extra).
        out: the file to write, or a folder to write the default name into. Default None:
            ``RUN_DIR/model.torchscript.pt`` or ``RUN_DIR/model.onnx``.
        tta: views averaged inside the export (a ``train.tta`` value); default the run's
            ``train.tta``, so the export gives the run's predictions. The run's
            ``train.tta_below`` applies to them, as in the run's own evaluation.
        data_dir: a run without ``model.json`` (from an older trainlab) only: where its dataset is
            read from for the normaliser, input shape and class names. Default None.

    Returns:
        The export's path; ``sidecar_path(path)`` holds its description and check.

    Raises:
        ConfigError: an unknown format or TTA mode, a TTA mode other than none or flip for a NumPy-engine
            run, or an ``out`` that would replace one of the run's files.
        RunDirError: not a run directory, or no checkpoint (see :func:`~trainlab.predict.open_trained_run`).
        TrainlabError: the ONNX packages are missing, or the export does not reproduce the run.
    """
    if format not in FORMATS:
        raise ConfigError(f"--format {format!r} is not one of {', '.join(FORMATS)}")
    run = open_trained_run(run_dir, data_dir=data_dir, device="cpu")
    target = _target(run.path, format, out)
    try:
        mode = tta_mode(run.config.train.tta if tta is None else tta)
    except ValueError as error:
        raise ConfigError(f"tta: {error}") from None
    if run.config.engine == "numpy" and mode not in ("none", "flip"):
        raise ConfigError(f"tta {mode!r}: a NumPy-engine model averages with the mirror image only (flip)")
    spec = run.spec
    dtype = torch.float64 if run.config.model.dtype == "float64" else torch.float32
    module = PixelModel(_network(run), spec.normalizer, spec.input_shape[0], dtype, mode, _tta_below(run, mode)).eval()
    # Batch 2 as the example: torch.export specialises a dimension of size 1.
    example = torch.full((2, *spec.input_shape), 128.0)
    with torch.no_grad():
        data = _torchscript_bytes(module, example) if format == "torchscript" else _onnx_bytes(module, example)
    check = _check(data, format, run, mode)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, data)
    atomic_write_json(sidecar_path(target), _description(run, format, target, mode, check))
    return target


def _tta_below(run: TrainedRun, mode: str) -> float | None:
    """The selective-TTA threshold the run's own loader applies to ``mode``'s views: the torch
    engine's ``train.tta_below`` (the NumPy engine has none)."""
    return run.config.train.tta_below if run.config.engine == "torch" and mode != "none" else None


def _description(run: TrainedRun, format_: str, target: Path, tta: str, check: dict[str, Any]) -> dict[str, Any]:
    """The sidecar: what the export takes and gives, and where it comes from."""
    config, spec = run.config, run.spec
    channels, height, width = spec.input_shape
    resize = config.data.resize
    return {
        "format": format_,
        "file": target.name,
        "run": str(run.path),
        "engine": config.engine,
        "model": config.model.type,
        "input": {
            "name": INPUT_NAME, "shape": ["N", channels, height, width], "layout": "NCHW", "dtype": "float32",
            "range": [0, 255],
            "pixels": f"raw {'RGB' if channels == 3 else 'grayscale' if channels == 1 else f'{channels}-channel'} "
                      "pixel values, as the dataset reader decodes them"
                      + (f", resized to {width}x{height} as training resized them" if resize else ""),
            "normalization": f"inside the model ({spec.normalizer.get('kind', 'none')}): do not normalise",
        },
        "output": {"name": OUTPUT_NAME, "shape": ["N", spec.num_classes], "dtype": "float32",
                   "meaning": "logits; softmax over axis 1 gives the class probabilities"},
        "class_names": list(spec.class_names),
        "weights": "ema (the weight average the run evaluated with)" if config.train.ema is not None else "final",
        "tta": tta,
        "tta_below": _tta_below(run, tta),
        "compute_dtype": config.model.dtype,
        "check": check,
        "versions": {"trainlab": __version__, "torch": torch.__version__},
    }


__all__ = ["CHECK_IMAGES", "DEFAULT_NAMES", "FORMATS", "PixelModel", "export_run", "numpy_network", "sidecar_path"]
