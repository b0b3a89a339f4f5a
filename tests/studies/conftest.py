"""Fixtures of the study tests: a throwaway PostgreSQL server, and tiny study files.

The server is Debian's ``postgresql`` package (``.ci/run`` installs it): ``initdb`` into a
temporary folder owned by the unprivileged ``postgres`` user (initdb refuses root),
listening only on 127.0.0.1 on a free port, stopped and removed after the session.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

TINY_RUN: dict[str, Any] = {
    "name": "tiny",
    "seed": 0,
    "engine": "numpy",
    "data": {"dataset": "mnist", "limit": {"train": 500, "val": 200, "test": 200}, "normalize": "scale"},
    "model": {"type": "mlp", "hidden": [16]},
    "optimizer": {"type": "sgd", "lr": 0.1},
    "train": {"epochs": 2, "batch_size": 50},
    "output": {"save_predictions": False},
}


def write_study(path: Path, study: dict[str, Any], output_dir: Path, **run: Any) -> Path:
    """A study file: the tiny MNIST run (sections replaced by ``run``) plus ``study``."""
    data = {**TINY_RUN, **run, "study": study}
    data["output"] = {**TINY_RUN["output"], **run.get("output", {}), "dir": str(output_dir)}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(args: list[str], as_root: bool) -> list[str]:
    if not as_root:
        return args
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in args)]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A running PostgreSQL server; yields its base URL (``postgresql+psycopg://postgres@...:PORT``)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql; .ci/run does it)")
    bindir = Path(found[-1]).parent
    as_root = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="trainlab-pg-"))
    data, sockets = root / "data", root / "sock"
    data.mkdir()
    sockets.mkdir()
    if as_root:
        user = pwd.getpwnam("postgres")
        for path in (root, data, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
            path.chmod(0o700)
    port = _free_port()
    run = lambda args: subprocess.run(_as_postgres(args, as_root), check=True, capture_output=True, timeout=120)  # noqa: E731
    run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
         "--locale=C.UTF-8"])
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off"
    run([str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "-o", options, "start"])
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "stop", "-m", "fast"], as_root),
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's server."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server.replace("+psycopg", "") + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"
