"""The bad inputs of issue 25, each expecting its clean error (one ``error:`` line, the exit
code of src/trainlab/errors.py, no traceback) and nothing lost or half-written.

Folders that must not be writable are made read-only by a read-only bind mount in a mount
namespace of the child's own where this user may mount (root ignores file permissions), else
by ``chmod 0o500``.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml
from faults_check import differences, result_of
from faults_env import Case, Workspace, write_digits
from faults_runs import Reference
from PIL import Image

# Bind the folder over itself read-only, in the child's own mount namespace, then run the command.
_READ_ONLY = 'mount --bind "$FAULTS_RO" "$FAULTS_RO" && mount -o remount,bind,ro "$FAULTS_RO" || exit 97; exec "$@"'


class Inputs:
    """The bad-input faults against the workspace ``ws``, whose runs the references trained.

    Args:
        ws: the workspace.
        ref: the numpy reference (a finished run to damage copies of).
        interrupted: a run of ``ref``'s config stopped half-way (to resume copies of).
        mountable: whether read-only bind mounts are available (else chmod).
    """

    def __init__(self, ws: Workspace, ref: Reference, interrupted: Path, mountable: bool) -> None:
        self.ws, self.ref, self.interrupted, self.mountable = ws, ref, interrupted, mountable
        self.finished = ws.runs / ref.name / "reference"
        self.images = ws.root / "predict-images"
        self.images.mkdir(exist_ok=True)
        rng = np.random.default_rng(1)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(self.images / f"{i}.png")

    def _read_only(self, folder: Path, env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]] | None:
        """The prefix and environment that run a command with ``folder`` read-only; None where
        that cannot be done (root, which ignores permissions, without a mount namespace)."""
        env = {**(env or self.ws.env), "FAULTS_RO": str(folder)}
        if self.mountable:
            return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _READ_ONLY, "sh"], env
        if os.geteuid() == 0:
            print(f"skip {folder.name}: root without a mount namespace cannot make a folder read-only",
                  file=sys.stderr)
            return None
        folder.chmod(0o500)
        return [], env

    # -- run ids ------------------------------------------------------------------------------
    def run_id(self, fault: str, run_id: str, overwrite: bool) -> Case:
        case = Case(fault, f"run --run-id {run_id}{' --overwrite' if overwrite else ''}")
        victim = self.ws.root / "victim"
        victim.mkdir(exist_ok=True)
        (victim / "keep.txt").write_text("not a run\n")
        before = result_of(self.finished)
        args = ["run", str(self.ref.config), "--run-id", run_id, "--no-progress"] + (["--overwrite"] if overwrite else [])
        ok = case.refused(case.child(self.ws.trainlab(args)), 2, "--run-id")
        if (self.ws.root / "x").exists() or (self.ws.runs / "x").exists():
            ok = case.fail("a folder was made outside runs/<name>/")
        if not (victim / "keep.txt").exists() or differences(result_of(self.finished), before):
            case.lost += 1
            ok = case.fail("a run or a file was deleted")
        case.survived = ok
        return case

    # -- resume after a change ---------------------------------------------------------------
    def edited_config(self, fault: str) -> Case:
        """config.yaml's lr edited by hand: refused naming the field; restored, it resumes exactly."""
        case = Case(fault, "optimizer.lr edited in config.yaml, then run --resume")
        run = self.ws.copy_run(self.interrupted, "edited")
        original = (run / "config.yaml").read_text(encoding="utf-8")
        config = yaml.safe_load(original)
        config["optimizer"]["lr"] = config["optimizer"]["lr"] * 10
        (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        ok = case.refused(case.child(self.ws.trainlab(["run", "--resume", str(run), "--no-progress"])), 2,
                          "optimizer.lr")
        ok = case.files(run) and ok
        (run / "config.yaml").write_text(original, encoding="utf-8")
        resumed = case.child(self.ws.trainlab(["run", "--resume", str(run), "--no-progress"]))
        found = differences(result_of(run), self.ref.result)
        if resumed.rc != 0 or found:
            case.lost += 1
            ok = case.fail(f"restored, the resume gave exit {resumed.rc}: {'; '.join(found)}")
        case.survived = ok
        return case

    def changed_data(self, fault: str) -> Case:
        """The data replaced under an interrupted run: the resume is refused with both fingerprints."""
        case = Case(fault, "training images replaced, then run --resume")
        data = write_digits(self.ws.root / "data-changed" / "mnist")
        config = self.ws.config("changed", data={"dataset": str(data)})
        stop = case.child(self.ws.trainlab(["run", str(config), "--run-id", "r", "--no-progress"], ("TERM", "step", 100, 0.0)))
        run = self.ws.runs / "changed" / "r"
        write_digits(data, seed=1)  # other images under the same names
        ok = stop.rc == 130 or case.fail(f"the run to resume did not stop: exit {stop.rc}")
        before = json.loads((run / "summary.json").read_text())
        ok = case.refused(case.child(self.ws.trainlab(["run", "--resume", str(run), "--no-progress"])), 3,
                          "fingerprint") and ok
        if json.loads((run / "summary.json").read_text()) != before:
            ok = case.fail("the refused resume changed summary.json")
        case.survived = case.files(run) and ok
        return case

    # -- damaged checkpoints -----------------------------------------------------------------
    def damaged_checkpoint(self, fault: str, damage: str, command: str) -> Case:
        case = Case(fault, f"{damage} checkpoint.npz, then {command}")
        source = self.interrupted if command == "resume" else self.finished
        run = self.ws.copy_run(source, f"{damage}-{command}")
        DAMAGE[damage](run / "checkpoint.npz")
        out = self.ws.root / f"{run.name}.csv"
        args = {"evaluate": ["evaluate", str(run)],
                "predict": ["predict", str(run), "--images", str(self.images), "--out", str(out)],
                "resume": ["run", "--resume", str(run), "--no-progress"]}[command]
        ok = case.refused(case.child(self.ws.trainlab(args)), 4, "checkpoint.npz")
        if out.exists():
            ok = case.fail(f"{out.name} was written from a damaged checkpoint")
        if differences(result_of(run), result_of(source)):
            case.lost += 1
            ok = case.fail("the run's results changed")
        case.survived = case.files(run, skip=("checkpoint.npz",)) and ok
        return case

    # -- images and the cache ----------------------------------------------------------------
    def image_folder(self) -> Path:
        """A tiny image folder (two classes of 16x16 PNGs, a test folder of labelled ones)."""
        root = self.ws.root / "pictures"
        if not root.exists():
            rng = np.random.default_rng(2)
            for split, count in (("train", 10), ("test", 3)):
                for label in ("cat", "dog"):
                    (root / split / label).mkdir(parents=True)
                    for i in range(count):
                        pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                        Image.fromarray(pixels).save(root / split / label / f"{i}.png")
        return root

    def bomb(self, fault: str, skip: bool) -> Case:
        """A 69-byte PNG whose header claims 100,000 x 100,000 pixels."""
        case = Case(fault, f"a PNG claiming 10^10 pixels{', skip_corrupt' if skip else ''}")
        folder = self.ws.root / f"bombed-{skip}"
        shutil.copytree(self.image_folder(), folder)
        (folder / "train" / "cat" / "bomb.png").write_bytes(png_header(100_000, 100_000))
        config = self.ws.config(f"bomb-{skip}", data={"dataset": str(folder), "skip_corrupt": skip, "val_fraction": 0.2},
                                train={"epochs": 1, "batch_size": 4})
        outcome = case.child(self.ws.trainlab(["run", str(config), "--run-id", "r", "--no-progress"]))
        if skip:
            ok = outcome.rc == 0 or case.fail(f"exit {outcome.rc}: {outcome.output.strip()[-200:]}")
            ok = case.files(self.ws.runs / config.stem / "r") and ok
        else:
            ok = case.refused(outcome, 3, "bomb.png")
            ok = (not (self.ws.runs / config.stem / "r").exists() or case.fail("a refused start left its run directory")) and ok
        case.survived = ok
        return case

    def read_only_cache(self, fault: str) -> Case | None:
        case = Case(fault, "an image-folder .tar.gz with $TRAINLAB_CACHE read-only")
        archive = self.ws.root / "pictures.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(self.image_folder(), arcname="pictures")
        cache = self.ws.root / "read-only-cache"
        cache.mkdir()
        config = self.ws.config("archive", data={"dataset": str(archive)}, train={"epochs": 1, "batch_size": 4})
        read_only = self._read_only(cache, {**self.ws.env, "TRAINLAB_CACHE": str(cache)})
        if read_only is None:
            return None
        args = ["run", str(config), "--run-id", "r", "--no-progress"]
        outcome = case.child(self.ws.trainlab(args, prefix=read_only[0], env=read_only[1]))
        case.survived = case.refused(outcome, 3, str(cache)) and not (self.ws.runs / "archive" / "r").exists()
        cache.chmod(0o700)
        return case

    def unwritable(self, fault: str, command: str) -> Case | None:
        case = Case(fault, f"{command} into a read-only folder")
        folder = self.ws.root / f"read-only-{command}"
        if command == "report":
            shutil.copytree(self.finished, folder)
            args = ["report", str(folder)]
        else:
            folder.mkdir()
            study = self.ws.config("ro-study", train={"epochs": 1})
            config = yaml.safe_load(study.read_text())
            config["study"] = {"objective": "best_val_accuracy", "space": {"optimizer.lr": [0.001, 0.002]}}
            study.write_text(yaml.safe_dump(config))
            args = {"study": ["study", str(study), "-q", "--dir", str(folder / "s")],
                    "predict": ["predict", str(self.finished), "--images", str(self.images), "--out",
                                str(folder / "p.csv")]}[command]
        read_only = self._read_only(folder)
        if read_only is None:
            return None
        outcome = case.child(self.ws.trainlab(args, prefix=read_only[0], env=read_only[1]))
        cause = "Read-only file system" if self.mountable else "Permission denied"
        case.survived = case.refused(outcome, 6, str(folder), cause)
        folder.chmod(0o700)
        return case

    # -- config numbers ----------------------------------------------------------------------
    def config_value(self, fault: str, command: str, section: str, key: str, value: object, part: str) -> Case:
        case = Case(fault, f"{section}.{key}: {value!r} on {command}")
        config = self.ws.config(f"bad-{key}-{command}", **{section: {key: value}})
        args = ["validate", str(config)] if command == "validate" else ["run", str(config), "--no-progress"]
        outcome = case.child(self.ws.trainlab(args))
        if command == "validate":  # validate lists each file: "invalid FILE: reason", exit 2
            ok = outcome.rc == 2 and "invalid" in outcome.output and part in outcome.output
            ok = ok or case.fail(f"exit {outcome.rc}: {outcome.output.strip()[-200:]}")
        else:
            ok = case.refused(outcome, 2, part)
        left = self.ws.runs / config.stem
        case.survived = ok and (not left.exists() or not any(left.iterdir()) or case.fail("a run directory was left"))
        return case


def png_header(width: int, height: int) -> bytes:
    """A PNG that is all header: its IHDR claims ``width`` x ``height`` grey pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _flip(path: Path) -> None:
    """64 bytes flipped in the middle of the first weight matrix, which every command reads
    (evaluate and predict read the weights alone): its CRC no longer matches."""
    with zipfile.ZipFile(path) as archive:
        member = next(m for m in archive.infolist() if m.filename.startswith("model/"))
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[member.header_offset + 26: member.header_offset + 30])
    middle = member.header_offset + 30 + name_length + extra_length + member.file_size // 2
    data[middle: middle + 64] = bytes(b ^ 0xFF for b in data[middle: middle + 64])
    path.write_bytes(bytes(data))


def _reshape(path: Path) -> None:
    """A valid .npz whose first weight matrix has lost a row."""
    with np.load(path, allow_pickle=False) as saved:
        arrays = {key: saved[key] for key in saved.files}
    key = next(k for k in sorted(arrays) if k.startswith("model/") and arrays[k].ndim == 2)
    arrays[key] = arrays[key][:-1]
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _pickled(path: Path) -> None:
    """A weight replaced by an array of Python objects (unpickled on load if it were allowed)."""
    with np.load(path, allow_pickle=False) as saved:
        arrays: dict[str, np.ndarray] = {key: saved[key] for key in saved.files}
    key = next(k for k in sorted(arrays) if k.startswith("model/"))
    arrays[key] = np.array([{"evil": "object"}], dtype=object)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


DAMAGE: dict[str, Callable[[Path], None]] = {"truncated": _truncate, "tampered": _flip, "wrong-shape": _reshape,
                                             "pickled": _pickled}
