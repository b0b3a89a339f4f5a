"""A study's storage in optuna-dashboard (the optional ``dashboard`` extra).

``trainlab dashboard STUDY_DIR`` serves optuna-dashboard's web app on the storage the study
runs on (its journal file, or the database given with ``--storage``). optuna-dashboard's own
``run_server`` blocks with no way to stop it from another thread; the app is served here by
the standard library's ``wsgiref`` instead (the server ``run_server`` uses too), so that a
caller (a test) can choose port 0, learn the real port, and shut the server down.

Before serving, every trainlab study in the storage gets its objective's name
(:func:`~trainlab.studies.optuna_adapter.label_objective`), so that a study planned before
trainlab named objectives is not shown as "Objective 0".
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna

from trainlab.errors import ConfigError

from .optuna_adapter import label_objective
from .results import STUDY_ATTR
from .storage import StorageHandle

#: How to install optuna-dashboard.
DASHBOARD_EXTRA = "pip install 'trainlab[dashboard]'"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def label_objectives(handle: StorageHandle) -> int:
    """Name the objective of each trainlab study in the storage not yet named after its metric;
    how many were named.

    The name is the study's ``metric`` attribute (the objective's summary.json key).
    """
    count = 0
    for frozen in handle.storage.get_all_studies():
        metric = frozen.user_attrs.get("metric")
        if frozen.user_attrs.get(STUDY_ATTR) is None or not isinstance(metric, str):
            continue  # not a trainlab study, or a stage still being planned
        study = optuna.load_study(study_name=frozen.study_name, storage=handle.storage)
        count += label_objective(study, metric)
    return count


def dashboard_app(handle: StorageHandle) -> Callable[..., Any]:
    """optuna-dashboard's WSGI application on the storage, after naming the objectives.

    Raises:
        ConfigError: optuna-dashboard is not installed (the message says how to install it).
    """
    try:
        dashboard = importlib.import_module("optuna_dashboard")
    except ImportError:
        raise ConfigError(f"trainlab dashboard needs the optuna-dashboard package: {DASHBOARD_EXTRA}") from None
    label_objectives(handle)
    return dashboard.wsgi(handle.storage)  # type: ignore[no-any-return]


class _QuietHandler(WSGIRequestHandler):
    """A request handler that does not print a line per request (the app polls every few seconds)."""

    def log_message(self, format: str, *args: Any) -> None:
        """Drop the request's log line."""


def make_dashboard_server(handle: StorageHandle, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> WSGIServer:
    """A server of optuna-dashboard on the storage, bound but not yet serving.

    Call ``serve_forever()`` on it (it blocks), and ``shutdown()`` from another thread and
    then ``server_close()`` to stop it. ``port`` 0 takes a free port: ``server_port`` says which.

    Raises:
        ConfigError: optuna-dashboard is not installed, or the address cannot be bound.
    """
    app = dashboard_app(handle)
    try:
        return make_server(host, port, app, handler_class=_QuietHandler)
    except OSError as error:  # port in use, unknown host
        raise ConfigError(f"dashboard: cannot listen on {host}:{port}: {error.strerror or error}; "
                          "choose another --port or --host") from None


def dashboard_url(server: WSGIServer) -> str:
    """The address a browser opens for a server of :func:`make_dashboard_server`."""
    host = server.server_address[0]
    shown = f"[{host}]" if ":" in str(host) else str(host)
    return f"http://{shown}:{server.server_port}/dashboard"


def serve_dashboard(handle: StorageHandle, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                    on_ready: Callable[[str], None] | None = None) -> None:
    """Serve optuna-dashboard on the storage in the foreground until Ctrl-C.

    Args:
        handle: the study's storage (:func:`~trainlab.studies.storage.open_storage`).
        host: the address to listen on; the default serves this machine only.
        port: the port; 0 takes a free one.
        on_ready: called with the dashboard's URL once the server listens.

    Raises:
        ConfigError: optuna-dashboard is not installed, or the address cannot be bound.
    """
    server = make_dashboard_server(handle, host, port)
    # Requests are served on a thread of their own and this one only waits: Ctrl-C raises
    # KeyboardInterrupt in this thread. Were it raised while a request is being answered (the
    # web app polls every few seconds), wsgiref's handler would catch it as the request's
    # error, print a traceback and serve on.
    failed: list[BaseException] = []

    def serve() -> None:
        try:
            server.serve_forever()
        except BaseException as error:  # handed to the waiting thread, which raises it
            failed.append(error)

    thread = threading.Thread(target=serve, name="trainlab-dashboard", daemon=True)
    thread.start()
    try:
        if on_ready is not None:
            on_ready(dashboard_url(server))
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        pass  # Ctrl-C is the way to stop it
    finally:
        server.shutdown()  # lets a request being answered finish, then ends serve_forever
        thread.join()
        server.server_close()
    if failed:
        raise failed[0]


__all__ = ["DASHBOARD_EXTRA", "dashboard_app", "dashboard_url", "label_objectives", "make_dashboard_server",
           "serve_dashboard"]
