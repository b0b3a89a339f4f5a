"""What the time-to-accuracy benchmark needs on a lent GPU machine, and its runs brought back.

``bench/gpu_time_to_accuracy.sh`` runs ``bench_time_to_accuracy.py --device cuda`` on the device
machine (see its header for the two device calls). That machine starts bare and offline, with
its own Python (PyTorch with CUDA, NumPy, Pillow; no pydantic), and a call carries at most
64 MiB of the repository, while CIFAR-10's pixels alone are 184 MB. So:

- ``pack`` (here, once): the six CIFAR-10 batches as lossless WebP mosaics (about 17 MB each
  against 31 MB raw), in two parts that each fit a call: ``part1`` holds data_batch_1-3,
  ``batches.meta`` and the wheels of the packages the GPU's Python lacks (pydantic and what it
  needs, at the versions installed here); ``part2`` data_batch_4-5 and test_batch. Both hold
  the manifest: each file's sha256, each batch's image count and the sha256 of its decoded
  pixels and labels. The folder is added to ``.git/info/exclude`` (only what git ignores can be
  carried).
- ``verify`` (there): that a part's files arrived whole.
- ``unpack`` (there): decodes every batch, checks it against the manifest and writes the
  ``cifar-10-batches-py`` folder trainlab's reader reads; a missing part is named, with why.
- ``merge`` (here, after): adds the runs of the trials file the device sent back to another
  (``bench/tta-trials.json``), so that ``bench_time_to_accuracy.py --render-from ... --write-docs``
  shows the GPU's table beside the CPU's.

Usage: python bench/gpu_time_to_accuracy.py pack [--data-dir DIR] [--out .gpu-tta] [--no-wheels] [--python 3.12]
       python bench/gpu_time_to_accuracy.py verify --pack .gpu-tta --part part1
       python bench/gpu_time_to_accuracy.py unpack --pack .gpu-tta --dest DIR
       python bench/gpu_time_to_accuracy.py merge RETURNED.json [--into bench/tta-trials.json]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FORMAT = 1
#: Which part carries which batch (each part about 52 MB of WebP, under a call's 64 MiB with the repository).
PARTS = {"part1": ("data_batch_1", "data_batch_2", "data_batch_3"),
         "part2": ("data_batch_4", "data_batch_5", "test_batch")}
META_PART = "part1"
#: What trainlab imports that the GPU image's Python lacks (device README: KINDS.md's package list);
#: typing-extensions travels too, as pydantic may need a newer one than the image has.
GPU_MISSING = ("pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions")
GPU_PYTHON = "3.12"
COLUMNS, SIDE = 100, 32  # tiles per mosaic row (3200 px wide; WebP allows 16383 px a side), tile size
CALL_LIMIT = 64 * 2**20


# -- the mosaic codec ---------------------------------------------------------------------------
def to_mosaic(data: np.ndarray) -> np.ndarray:
    """CIFAR rows (N, 3072), channel-major, as one RGB image of 32x32 tiles, 100 a row (unused tiles black)."""
    n = len(data)
    rows = -(-n // COLUMNS)
    if rows * SIDE > 16383:
        raise ValueError(f"{n} images make a mosaic taller than WebP allows; split the batch")
    tiles = np.zeros((rows * COLUMNS, SIDE, SIDE, 3), np.uint8)
    tiles[:n] = data.reshape(n, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    return tiles.reshape(rows, COLUMNS, SIDE, SIDE, 3).transpose(0, 2, 1, 3, 4).reshape(rows * SIDE, COLUMNS * SIDE, 3)


def from_mosaic(pixels: np.ndarray, n: int) -> np.ndarray:
    """The inverse of :func:`to_mosaic`: the first ``n`` tiles as CIFAR rows (n, 3072) uint8."""
    rows = pixels.shape[0] // SIDE
    tiles = pixels.reshape(rows, SIDE, COLUMNS, SIDE, 3).transpose(0, 2, 1, 3, 4).reshape(-1, SIDE, SIDE, 3)
    return np.ascontiguousarray(tiles[:n].transpose(0, 3, 1, 2).reshape(n, 3 * SIDE * SIDE))


def encode(data: np.ndarray) -> bytes:
    """Lossless WebP of :func:`to_mosaic` (method 1: within 2 % of the smallest, 4x faster to write)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(to_mosaic(data)).save(buffer, "WEBP", lossless=True, quality=50, method=1)
    return buffer.getvalue()


def decode(blob: bytes, n: int) -> np.ndarray:
    """CIFAR rows (n, 3072) from :func:`encode`'s bytes."""
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as image:
        return from_mosaic(np.asarray(image.convert("RGB")), n)


def sha256(data: bytes | np.ndarray) -> str:
    """sha256 of bytes, or of an array's C-ordered bytes."""
    return hashlib.sha256(data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes()).hexdigest()


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (a cut-off call leaves no half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# -- pack (here) --------------------------------------------------------------------------------
def read_batch(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One ``cifar-10-batches-py`` batch through trainlab's safe unpickler: data (N, 3072) uint8, labels (N,) int64."""
    from trainlab.data.cifar import safe_unpickle

    obj = safe_unpickle((folder / name).read_bytes(), str(folder / name))
    data = obj[b"data"] if b"data" in obj else obj["data"]
    labels = obj[b"labels"] if b"labels" in obj else obj["labels"]
    return np.ascontiguousarray(data, dtype=np.uint8), np.asarray(labels, dtype=np.int64)


def download_wheels(dest: Path, python: str) -> list[str]:
    """The wheels of :data:`GPU_MISSING` at the versions installed here, for the GPU's Python ``python``."""
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in GPU_MISSING]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python, "--implementation", "cp", "--dest", str(dest)]
    for n in (28, 27, 17):
        command += ["--platform", f"manylinux_2_{n}_x86_64"]
    command += ["--platform", "manylinux2014_x86_64", "--platform", "manylinux1_x86_64", *pins]
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(command, check=True)
    return sorted(p.name for p in dest.glob("*.whl"))


def ensure_ignored(path: Path) -> str:
    """Make git ignore ``path`` (through ``.git/info/exclude``) when it is inside this checkout; say what was done."""
    try:
        relative = path.resolve().relative_to(ROOT)
    except ValueError:
        return f"{path} is outside the checkout: it cannot be carried to the device from there"
    check = subprocess.run(["git", "check-ignore", "-q", str(relative)], cwd=ROOT)
    if check.returncode == 0:
        return f"{relative} is ignored by git (it can be carried)"
    exclude = Path(subprocess.run(["git", "rev-parse", "--git-path", "info/exclude"], cwd=ROOT, check=True,
                                  capture_output=True, text=True).stdout.strip())
    exclude = exclude if exclude.is_absolute() else ROOT / exclude
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with exclude.open("a", encoding="utf-8") as handle:
        handle.write(f"/{relative.as_posix()}/\n")
    return f"added /{relative.as_posix()}/ to {exclude} (only what git ignores can be carried)"


def pack(data_dir: Path, out: Path, wheels: bool, python: str = GPU_PYTHON) -> dict[str, Any]:
    """Write the two parts under ``out`` from ``data_dir/cifar-10-batches-py``; return the manifest."""
    folder = data_dir / "cifar-10-batches-py"
    manifest: dict[str, Any] = {"format": FORMAT, "batches": {}, "files": {}, "wheels": [], "python": python}
    for part, names in PARTS.items():
        for name in names:
            data, labels = read_batch(folder, name)
            blob = encode(data)
            if not np.array_equal(decode(blob, len(data)), data):  # the codec must be lossless here
                raise SystemExit(f"{name}: the WebP round trip changed pixels; Pillow's WebP is not lossless here")
            label_bytes = labels.astype(np.uint8).tobytes()
            for file, content in ((f"{name}.webp", blob), (f"{name}.labels", label_bytes)):
                _write(out / part / file, content)
                manifest["files"][f"{part}/{file}"] = sha256(content)
            manifest["batches"][name] = {"part": part, "count": len(data), "data_sha256": sha256(data),
                                         "labels_sha256": sha256(labels)}
            print(f"{name}: {len(data)} images, {len(blob) / 1e6:.1f} MB ({part})", flush=True)
    meta = (folder / "batches.meta").read_bytes()
    _write(out / META_PART / "batches.meta", meta)
    manifest["files"][f"{META_PART}/batches.meta"] = sha256(meta)
    if wheels:
        for name in download_wheels(out / META_PART / "wheels", python):
            manifest["files"][f"{META_PART}/wheels/{name}"] = sha256((out / META_PART / "wheels" / name).read_bytes())
            manifest["wheels"].append(f"{META_PART}/wheels/{name}")
    text = json.dumps(manifest, indent=1) + "\n"
    for part in PARTS:
        _write(out / part / "manifest.json", text.encode())
    return manifest


def part_bytes(out: Path, part: str) -> int:
    """The bytes a part adds to a device call."""
    return sum(p.stat().st_size for p in (out / part).rglob("*") if p.is_file())


# -- verify and unpack (there) ------------------------------------------------------------------
def load_manifest(pack_dir: Path) -> dict[str, Any]:
    """The manifest of whichever part arrived.

    Raises:
        SystemExit: neither part is there.
    """
    for part in PARTS:
        path = pack_dir / part / "manifest.json"
        if path.exists():
            return dict(json.loads(path.read_text(encoding="utf-8")))
    raise SystemExit(f"{pack_dir}: no part of the data arrived; carry {pack_dir}/part1 in the first call "
                     f"and {pack_dir}/part2 in the second (bench/gpu_time_to_accuracy.sh)")


def missing_files(pack_dir: Path, manifest: dict[str, Any], part: str | None = None) -> list[str]:
    """The manifest's files (of ``part``, else all) that are absent or differ from their sha256."""
    bad = []
    for name, digest in manifest["files"].items():
        if part is not None and not name.startswith(f"{part}/"):
            continue
        path = pack_dir / name
        if not path.exists():
            bad.append(f"{name} (absent)")
        elif sha256(path.read_bytes()) != digest:
            bad.append(f"{name} (damaged)")
    return bad


def _why_missing(missing: list[str]) -> str:
    parts = sorted({m.split("/", 1)[0] for m in missing})
    hint = ""
    if "part1" in parts:
        hint = ("; part1 travels in the first device call and stays on the machine only while it is warm "
                "(about 30 s after each call): make the second call at once after the first, or carry "
                "both again")
    return f"missing or damaged: {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}{hint}"


def verify(pack_dir: Path, part: str) -> None:
    """Raise SystemExit unless every file of ``part`` arrived whole."""
    manifest = load_manifest(pack_dir)
    missing = missing_files(pack_dir, manifest, part)
    if missing:
        raise SystemExit(f"{pack_dir}/{part}: {_why_missing(missing)}")
    print(f"{pack_dir}/{part}: every file arrived whole")


def unpack(pack_dir: Path, dest: Path) -> Path:
    """Decode every batch into ``dest/cifar-10-batches-py`` (pickles as trainlab's reader reads them),
    each checked against the manifest; return that folder.

    Raises:
        SystemExit: a part's file is missing or damaged, or a decoded batch differs from the manifest.
    """
    manifest = load_manifest(pack_dir)
    missing = missing_files(pack_dir, manifest)
    if missing:
        raise SystemExit(f"{pack_dir}: {_why_missing(missing)}")
    folder = dest / "cifar-10-batches-py"
    for name, entry in manifest["batches"].items():
        part = entry["part"]
        data = decode((pack_dir / part / f"{name}.webp").read_bytes(), int(entry["count"]))
        labels = np.frombuffer((pack_dir / part / f"{name}.labels").read_bytes(), np.uint8).astype(np.int64)
        if sha256(data) != entry["data_sha256"] or sha256(labels) != entry["labels_sha256"]:
            raise SystemExit(f"{name}: decoded pixels or labels differ from what was packed")
        batch = {b"batch_label": f"{name} (from bench/gpu_time_to_accuracy.py)".encode(),
                 b"labels": labels.tolist(), b"data": data}
        _write(folder / name, pickle.dumps(batch, protocol=2))
    _write(folder / "batches.meta", (pack_dir / META_PART / "batches.meta").read_bytes())
    print(f"unpacked {len(manifest['batches'])} batches into {folder}")
    return folder


# -- merge (here, after) ------------------------------------------------------------------------
def merge(source: Path, into: Path) -> int:
    """Add ``source``'s runs (replacing runs in the same slot) and commands to ``into``; return how many."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _tta_protocol import TrialStore

    incoming = TrialStore.load(source)
    store = TrialStore.load(into) if into.exists() else TrialStore(incoming.quick)
    if store.quick != incoming.quick:
        raise SystemExit(f"{source} and {into}: one holds --quick runs, the other full-size ones")
    for run in incoming.runs:
        store.add(run)
    for command in incoming.commands:
        store.note_request(incoming.recipes, command)
    store.save(into)
    return len(incoming.runs)


def main() -> None:
    """Parse the subcommand and run it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="here: the data and wheels in two parts, each under a call's 64 MiB")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("TRAINLAB_DATA", "~/.cache/trainlab/data")))
    p.add_argument("--out", type=Path, default=ROOT / ".gpu-tta")
    p.add_argument("--no-wheels", action="store_true", help="skip the wheels (a machine that has pydantic)")
    p.add_argument("--python", default=GPU_PYTHON, help=f"the GPU's Python version (default {GPU_PYTHON})")
    v = sub.add_parser("verify", help="there: a part's files arrived whole")
    v.add_argument("--pack", type=Path, default=ROOT / ".gpu-tta")
    v.add_argument("--part", choices=list(PARTS), required=True)
    u = sub.add_parser("unpack", help="there: cifar-10-batches-py from both parts")
    u.add_argument("--pack", type=Path, default=ROOT / ".gpu-tta")
    u.add_argument("--dest", type=Path, required=True)
    m = sub.add_parser("merge", help="here: a returned trials file's runs into another")
    m.add_argument("source", type=Path)
    m.add_argument("--into", type=Path, default=ROOT / "bench" / "tta-trials.json")
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.data_dir.expanduser(), args.out, not args.no_wheels, args.python)
        print(ensure_ignored(args.out))
        for part in PARTS:
            size = part_bytes(args.out, part)
            print(f"{part}: {size / 2**20:.1f} MiB{' (over a call limit with the repository!)' if size > CALL_LIMIT - 6 * 2**20 else ''}")
        rel = args.out.resolve().relative_to(ROOT) if args.out.resolve().is_relative_to(ROOT) else args.out
        print(f"device call 1: carry ['{rel}/part1'], command 'bash bench/gpu_time_to_accuracy.sh check'\n"
              f"device call 2, at once after it: carry ['{rel}/part2'], timeout_s 600, "
              "command 'bash bench/gpu_time_to_accuracy.sh run'")
    elif args.command == "verify":
        verify(args.pack, args.part)
    elif args.command == "unpack":
        unpack(args.pack, args.dest)
    else:
        print(f"merged {merge(args.source, args.into)} run(s) from {args.source} into {args.into}")


if __name__ == "__main__":
    main()
