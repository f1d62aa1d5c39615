"""Chat with an MLX model in the TUI exits cleanly, and the model thread it relies on.

MLX frees its per-thread state (its compile cache holds Python objects) when a thread ends; a
thread that had used MLX and ended during interpreter shutdown aborted the whole process
("terminate called without an active exception", exit 134). The TUI now runs every model call on
one long-lived thread that is idle before exit. Each session is a fresh process (the abort
happens at exit), run several times because the abort was a race; see tests/tui_mlx_session.py.
"""

import json
import subprocess
import sys
import threading

import pytest

from memos_desktop.tui.model_thread import ModelThread
from tests.support import REPO

RUNS = {"turn": 2, "loading": 4}  # before the model thread: 4 of 24 such runs aborted


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["turn", "loading"])
def test_an_mlx_chat_session_in_the_tui_exits_cleanly_every_time(mode, tmp_path):
    for i in range(RUNS[mode]):
        run = subprocess.run(
            [sys.executable, "-m", "tests.tui_mlx_session", str(tmp_path / f"home-{i}"), mode],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, f"run {i + 1}: exit {run.returncode}: {run.stderr[-1500:]}"
        if mode == "turn":
            assert "answered: True" in run.stdout
        threads = json.loads(run.stdout.strip().splitlines()[-1])["mlx_threads"]
        # MLX ran on one thread only, the model thread, which outlives the app and never ends
        assert threads == [{"name": "memos-model", "daemon": True, "alive": True}]


def test_the_model_thread_runs_jobs_in_order_on_one_thread_and_reports_idle():
    worker = ModelThread()
    release = threading.Event()
    seen = []

    def job(n: int) -> int:
        if n == 0:
            release.wait(10)
        seen.append((n, threading.get_ident()))
        return n * 10

    futures = [worker.submit(job, n) for n in range(3)]
    assert worker.busy() and not worker.wait_idle(timeout=0.05)
    release.set()
    assert worker.wait_idle(timeout=10)
    assert [f.result() for f in futures] == [0, 10, 20]
    assert [n for n, _ in seen] == [0, 1, 2] and len({ident for _, ident in seen}) == 1
    assert seen[0][1] != threading.get_ident()


def test_a_failing_job_reaches_its_future_and_the_thread_goes_on():
    worker = ModelThread()

    def broken() -> None:
        raise ValueError("no such model")

    failed = worker.submit(broken)
    after = worker.submit(lambda: "still here")
    with pytest.raises(ValueError, match="no such model"):
        failed.result(timeout=10)
    assert after.result(timeout=10) == "still here"
