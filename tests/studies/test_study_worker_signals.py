"""How a worker process takes a stop (its coordinator died, or SIGTERM): a trial in progress is
interrupted as by Ctrl-C, otherwise the worker stops at its next look between trials.

Each case runs in a fresh interpreter: the stop is process-wide state, as in a real worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

CASES = {
    # SIGTERM between trials: nothing is interrupted, the next look between trials stops it.
    "between trials": """
        os.kill(os.getpid(), signal.SIGTERM)
        assert workers.stop_requested()
        try:
            workers.check_stop()
        except workers.WorkerStopped:
            print("stopped at the next look")
    """,
    # SIGTERM in a trial: a KeyboardInterrupt inside it, as Ctrl-C would raise (the run's own
    # SIGINT handler, when it has one, gets the chance to stop at a step with a checkpoint).
    "in a trial": """
        try:
            with workers.abandonable():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
                print("the trial ran on")
        except KeyboardInterrupt:
            print("interrupted in the trial")
    """,
    # A hangup while the coordinator lives (a terminal closed under nohup) changes nothing.
    "hangup, parent alive": """
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(0.1)
        assert not workers.stop_requested()
        with workers.abandonable():
            print("still working")
    """,
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_stopped_worker(case: str) -> None:
    code = "import os, signal, time\nfrom trainlab.studies import workers\nworkers.follow_parent(os.getppid())\n"
    code += textwrap.dedent(CASES[case])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    expected = {"between trials": "stopped at the next look", "in a trial": "interrupted in the trial",
                "hangup, parent alive": "still working"}[case]
    assert proc.returncode == 0 and proc.stdout.strip() == expected, proc.stdout + proc.stderr


def test_a_worker_whose_parent_is_already_gone_stops_at_once() -> None:
    code = "import os\nfrom trainlab.studies import workers\nworkers.follow_parent(os.getppid() + 1_000_000)\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "WorkerStopped" in proc.stderr
