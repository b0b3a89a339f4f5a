"""Run the seed studies listed in configs/study-outcomes.yaml, one after another.

Each study runs with the exact command its manifest entry records (the command docs/studies.md
quotes), so the page can be regenerated from what this script leaves in runs/::

    .venv/bin/python scripts/run_seed_studies.py                     # every study, in order
    .venv/bin/python scripts/run_seed_studies.py --only c-init d-lambda   # dirs starting so
    .venv/bin/python scripts/study_outcomes.py                      # then write the page

A study interrupted part way resumes from its storage when run again (trainlab study picks up
the trials it already has). The script goes on to the next study after a failure and exits
non-zero if any failed.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def study_commands(manifest: Path, only: list[str] | None) -> list[tuple[str, list[str]]]:
    """(study dir, argv) per manifest entry, in manifest order, filtered by dir-name prefixes."""
    entries = yaml.safe_load(manifest.read_text(encoding="utf-8"))["studies"]
    chosen: list[tuple[str, list[str]]] = []
    for entry in entries:
        name = Path(entry["dir"]).name
        if only and not any(name.startswith(prefix) for prefix in only):
            continue
        argv = shlex.split(" ".join(str(entry["command"]).split()))
        if not argv or argv[0] != "trainlab":
            raise SystemExit(f"{manifest}: {entry['dir']}: the command must start with 'trainlab': {argv}")
        chosen.append((name, argv))
    return chosen


def main(argv: list[str] | None = None) -> int:
    """Run the chosen studies; the exit status is 1 when any of them failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=ROOT / "configs" / "study-outcomes.yaml")
    parser.add_argument("--only", nargs="+", metavar="PREFIX", help="only studies whose directory starts so")
    parser.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    args = parser.parse_args(argv)
    commands = study_commands(args.manifest, args.only)
    if not commands:
        raise SystemExit("no study matches --only " + " ".join(args.only or []))
    trainlab = str(Path(sys.executable).with_name("trainlab"))
    failed: list[str] = []
    for name, command in commands:
        print(f"== {name}: {shlex.join(command)}", flush=True)
        if args.dry_run:
            continue
        started = time.monotonic()
        status = subprocess.call([trainlab, *command[1:]], cwd=ROOT)
        print(f"== {name}: exit {status} after {time.monotonic() - started:.0f} s", flush=True)
        if status != 0:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
