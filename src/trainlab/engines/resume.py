"""Verified resume: a checkpoint names the config and the data it was made with.

Both engines put :func:`resume_record` into their checkpoint's metadata:

- ``config``: the resolved config without ``source`` (that section documents where
  settings come from; editing it changes nothing that runs, as for
  :func:`trainlab.config.config_diff` when a resume compares configs);
- ``config_sha256``: the hash of that config (:func:`config_sha256`);
- ``data_fingerprint``: :attr:`trainlab.data.PreparedData.fingerprint`.

A resume is refused when the config it would continue under hashes differently from the
recorded one (:func:`check_config`, a ConfigError listing the fields, old -> new) or when the
data's fingerprint changed (:func:`check_data`, a DataError with both fingerprints), so a
run directory never describes one run while holding the results of another. Extending a
run (``--epochs N`` on a resume) is the one change allowed: the run's provenance records it.

:func:`trainlab.api.run` checks the config before the data are read
(:func:`verify_resume_config`, the metadata alone), then config and data once they are
(:func:`verify_resume`), before it writes anything. :func:`verify_resume` is the one check of
config and data: the training loop makes it too, on the checkpoint it loads
(:meth:`trainlab.engines.loop.TrainingLoop.verify_checkpoint`), for callers that bypass
``api.run``. Checkpoints written before the record existed carry none of it and resume
unchecked, except for the data fingerprint that ``config.yaml``'s provenance holds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.config.loading import PROVENANCE_KEY
from trainlab.errors import ConfigError, DataError, RunDirError

if TYPE_CHECKING:
    from trainlab.config import RunConfig
    from trainlab.run_files import RunDir

# The config section a resume ignores (as pipeline._resume_plan does): it documents, never runs.
IGNORED_SECTIONS = ("source",)
# The checkpoint file of each engine, as the engines name it through RunDir.checkpoint_path.
CHECKPOINT_SUFFIX = {"numpy": ".npz", "torch": ".pt"}


def resolved_config(config: RunConfig) -> dict[str, Any]:
    """The config as a plain dict without the sections a resume ignores."""
    resolved = config.model_dump(mode="json")
    for section in IGNORED_SECTIONS:
        resolved.pop(section, None)
    return resolved


def config_sha256(resolved: Mapping[str, Any]) -> str:
    """sha256 (hex) of a canonical JSON rendering of a :func:`resolved_config` dict."""
    blob = json.dumps(resolved, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def resume_record(config: RunConfig, fingerprint: str) -> dict[str, Any]:
    """What a checkpoint's metadata records to verify a later resume (see the module docstring)."""
    resolved = resolved_config(config)
    return {"config": resolved, "config_sha256": config_sha256(resolved), "data_fingerprint": fingerprint}


def _listed_differences(recorded: Any, config: RunConfig) -> str:
    """``path: old -> new; ...`` between a recorded config dict and ``config``."""
    from trainlab.config import RunConfig, config_diff

    if not isinstance(recorded, dict):
        return "the checkpoint holds no readable copy of its config"
    try:  # through the current model, so fields a newer version added take their defaults
        old = RunConfig.from_dict(dict(recorded), source="the checkpoint's config")
    except ConfigError as exc:
        return f"its recorded config no longer validates: {str(exc).splitlines()[0]}"
    differences = config_diff(old, config, ignore=IGNORED_SECTIONS)
    listed = "; ".join(f"{path}: {a!r} -> {b!r}" for path, a, b in differences[:10])
    return listed + (f"; and {len(differences) - 10} more" if len(differences) > 10 else "")


def _extended(recorded: Any, config: RunConfig, extensions: Sequence[Mapping[str, Any]]) -> bool:
    """True when ``config`` is the recorded config made longer by one of the run's extensions
    (``trainlab run --resume RUN --epochs N``, recorded in its provenance)."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("train"), dict):
        return False
    epochs = recorded["train"].get("epochs")
    if not any(e.get("from_epochs") == epochs and e.get("to_epochs") == config.train.epochs for e in extensions):
        return False
    longer = {**recorded, "train": {**recorded["train"], "epochs": config.train.epochs}}
    return config_sha256(longer) == config_sha256(resolved_config(config))


def check_config(meta: Mapping[str, Any], config: RunConfig, checkpoint: Path,
                 extensions: Sequence[Mapping[str, Any]] = ()) -> None:
    """Refuse to resume ``checkpoint`` under a config other than the one it was written with.

    ``extensions`` (the run's provenance records them) allow one difference: ``train.epochs``
    made longer by an extension, so a run extended and then interrupted before its next
    checkpoint resumes.

    Raises:
        ConfigError: the config's hash differs from the recorded one in a field; the message
            lists the fields with their old and new values.
    """
    recorded_hash = meta.get("config_sha256")
    if recorded_hash is None:  # written before checkpoints recorded their config
        return
    if config_sha256(resolved_config(config)) == recorded_hash:
        return
    if extensions and _extended(meta.get("config"), config, extensions):
        return
    listed = _listed_differences(meta.get("config"), config)
    if not listed:  # the same settings, hashed differently by another trainlab version
        return
    raise ConfigError(
        f"cannot resume {checkpoint.parent}: {checkpoint.name} was written with another config "
        f"than the one to resume with ({listed}); was {checkpoint.parent / 'config.yaml'} edited? "
        "Restore it and resume, or start a new run (a run is extended with --resume RUN --epochs N)"
    )


def check_data(meta: Mapping[str, Any], fingerprint: str, checkpoint: Path,
               provenance_fingerprint: str | None = None) -> None:
    """Refuse to resume ``checkpoint`` on data other than the data it was trained on.

    Args:
        meta: the checkpoint's metadata.
        fingerprint: the fingerprint of the data prepared for the resume.
        checkpoint: the checkpoint file (for the message).
        provenance_fingerprint: ``config.yaml``'s recorded fingerprint, used when the
            checkpoint records none (it predates the record). Default None.

    Raises:
        DataError: the fingerprints differ; the message gives both.
    """
    recorded = meta.get("data_fingerprint") or provenance_fingerprint
    if recorded is None or recorded == fingerprint:
        return
    raise DataError(
        f"cannot resume {checkpoint.parent}: its data changed since {checkpoint.name} was written "
        f"(data fingerprint {recorded} then, {fingerprint} now: the decoded images, labels, classes "
        "or test split differ, so a source file was added, removed or edited); resume with the "
        "data it was trained on, or start a new run"
    )


def find_checkpoint(run_path: Path, engine: str) -> Path | None:
    """``engine``'s checkpoint in ``run_path``, else another engine's (config.yaml was edited to
    another engine: the resume check then names that change), else None."""
    suffixes = [CHECKPOINT_SUFFIX.get(engine, ".npz"), *CHECKPOINT_SUFFIX.values()]
    return next((run_path / f"checkpoint{s}" for s in suffixes if (run_path / f"checkpoint{s}").exists()), None)


def read_checkpoint_meta(path: Path) -> dict[str, Any]:
    """The metadata of a checkpoint (``.npz`` or ``.pt``), its arrays left on disk.

    Raises:
        RunDirError: the checkpoint is missing, unreadable, refused or not a trainlab checkpoint.
    """
    if path.suffix == CHECKPOINT_SUFFIX["torch"]:
        from trainlab.engines.torch.checkpoint import load_meta as load_torch_meta

        return load_torch_meta(path)
    from trainlab.engines.numpy.checkpoint import load_meta as load_numpy_meta

    return load_numpy_meta(path)


def checkpoint_step(run_path: Path, engine: str) -> int | None:
    """The step the checkpoint in ``run_path`` holds; None when it has none or cannot be read."""
    path = find_checkpoint(run_path, engine)
    try:
        return None if path is None else int(read_checkpoint_meta(path)["step"])
    except (RunDirError, KeyError, TypeError, ValueError):
        return None


def verify_resume_config(run_path: Path, config: RunConfig,
                         extensions: Sequence[Mapping[str, Any]] = ()) -> None:
    """Before a resume reads any data: ``run_path`` has a checkpoint, written with ``config``
    (or with a config that one of ``extensions`` made longer, see :func:`check_config`).

    Raises:
        RunDirError: there is no checkpoint, or it cannot be read.
        ConfigError: it was written with another config (see :func:`check_config`).
    """
    path = find_checkpoint(run_path, config.engine)
    if path is None:
        raise RunDirError(
            f"cannot resume {run_path}: it holds no checkpoint (the run stopped before its first "
            "one, or ran with output.save_checkpoint: false); start it again with --overwrite"
        )
    check_config(read_checkpoint_meta(path), config, path, extensions)


def recorded_extensions(provenance: Any) -> list[Mapping[str, Any]]:
    """The extensions a ``config.yaml`` provenance section records (none when it has none)."""
    extensions = provenance.get("extensions") if isinstance(provenance, dict) else None
    return [e for e in extensions if isinstance(e, dict)] if isinstance(extensions, list) else []


def _provenance(run_dir: RunDir) -> Any:
    """``config.yaml``'s provenance section (None without a config.yaml: a run directory made
    without api.run, as tests and tools make)."""
    return run_dir.read_config().get(PROVENANCE_KEY) if run_dir.config_path.exists() else None


def _provenance_fingerprint(provenance: Any) -> str | None:
    """The data fingerprint a provenance section recorded when the run started (None without one)."""
    data = provenance.get("data") if isinstance(provenance, dict) else None
    recorded = data.get("fingerprint") if isinstance(data, dict) else None
    return recorded if isinstance(recorded, str) else None


def verify_resume(run_dir: RunDir, config: RunConfig, fingerprint: str,
                  checkpoint: tuple[Path, Mapping[str, Any]] | None = None) -> None:
    """Refuse to resume ``run_dir`` under another config or on other data than its checkpoint's.

    The one check of a resume once the data are prepared: :func:`trainlab.api.run` makes it
    before it writes anything, so a refused resume leaves the run as it was, and the training
    loop makes it on the checkpoint it loads
    (:meth:`~trainlab.engines.loop.TrainingLoop.verify_checkpoint`), so callers of
    ``Engine.fit`` that bypass ``api.run`` are refused alike.

    Args:
        run_dir: the run to resume.
        config: the config it would continue under.
        fingerprint: the fingerprint of the data prepared for it.
        checkpoint: the checkpoint's path and metadata when they are already read; default:
            ``run_dir``'s checkpoint, its metadata alone.

    Raises:
        RunDirError: the run has no checkpoint, or it cannot be read.
        ConfigError: the checkpoint was written with another config (see :func:`check_config`).
        DataError: it was written on other data (see :func:`check_data`); a checkpoint that
            records no fingerprint (older versions) is compared with ``config.yaml``'s provenance.
    """
    if checkpoint is None:
        path = find_checkpoint(run_dir.path, config.engine)
        if path is None:
            raise RunDirError(f"cannot resume {run_dir.path}: it holds no checkpoint")
        checkpoint = (path, read_checkpoint_meta(path))
    path, meta = checkpoint
    provenance = _provenance(run_dir)  # read once: the extensions and the recorded fingerprint
    check_config(meta, config, path, recorded_extensions(provenance))
    check_data(meta, fingerprint, path, _provenance_fingerprint(provenance))


@contextlib.contextmanager
def checkpoint_fits(path: Path) -> Iterator[None]:
    """Within it, what restoring a checkpoint raises when its contents do not fit the run
    (a missing entry, a wrong shape or type) becomes a RunDirError naming the file."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        what = f"missing entry {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise RunDirError(
            f"{path} does not fit the run it is in ({what.splitlines()[0]}); it was tampered with, "
            "or comes from another run: resume from an intact checkpoint, or start a new run"
        ) from None


__all__ = [
    "CHECKPOINT_SUFFIX",
    "check_config",
    "check_data",
    "checkpoint_fits",
    "checkpoint_step",
    "config_sha256",
    "find_checkpoint",
    "read_checkpoint_meta",
    "resolved_config",
    "resume_record",
    "verify_resume",
    "verify_resume_config",
]
