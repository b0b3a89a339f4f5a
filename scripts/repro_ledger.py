"""The ledger of finished reproduction runs: docs/reproductions.json.

Run directories live under ``runs/`` and are not committed, so a table written from them
alone would lose every row trained in an earlier session. Each finished (row, seed) run is
therefore also recorded here, keyed by the hash of the config it ran (see
``repro_manifest.config_hash``): a result counts only while its row's config is unchanged, so
editing a config's reading makes its old results stale instead of silently reused.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Entry:
    """One finished run as the table needs it.

    Attributes:
        row: the manifest row id.
        seed: the run's seed.
        config_hash: the hash of the row's config (bases merged) and overrides it ran.
        status: the run's final status (completed, stopped_early or failed).
        value: the row's metric in percent; None when the run diverged.
        seconds: wall time of the run (training time for a resumed run).
        epochs: epochs trained, or None.
        machine: the CPU it ran on.
        date: ISO date the run finished.
    """

    row: str
    seed: int
    config_hash: str
    status: str
    value: float | None
    seconds: float
    epochs: float | None
    machine: str
    date: str


class Ledger:
    """The entries of one ledger file, read once and written back atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[tuple[str, int, str], Entry] = {}
        if path.exists():
            for item in json.loads(path.read_text(encoding="utf-8"))["runs"]:
                entry = Entry(**item)
                self.entries[(entry.row, entry.seed, entry.config_hash)] = entry

    def get(self, row: str, seed: int, config_hash: str) -> Entry | None:
        """The recorded run of ``row`` and ``seed`` under this config, if any."""
        return self.entries.get((row, seed, config_hash))

    def record(self, entry: Entry) -> None:
        """Add or replace the entry of its (row, seed, config hash)."""
        self.entries[(entry.row, entry.seed, entry.config_hash)] = entry

    def save(self) -> None:
        """Write the ledger (sorted, one run per line) via a temporary file and a rename.

        Entries another process recorded since this one read the file are kept (ours win on
        the same key), so a table rebuilt while a training process runs loses nothing.
        """
        on_disk = Ledger(self.path).entries if self.path.exists() else {}
        self.entries = {**on_disk, **self.entries}
        runs: list[dict[str, Any]] = [
            asdict(e) for _, e in sorted(self.entries.items(), key=lambda item: (item[0][0], item[0][1], item[0][2]))
        ]
        body = ",\n".join("    " + json.dumps(r, sort_keys=True) for r in runs)
        text = '{\n  "runs": [\n' + body + "\n  ]\n}\n"
        tmp = self.path.with_suffix(f".json.{os.getpid()}.tmp")  # per process: copies may save at once
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.path)
