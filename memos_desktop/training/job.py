"""A distillation run as a background job: a worker thread with progress and cancellation.

Owns only the thread and its hand-over: the latest `Progress`, a cancel event the training loop
checks between steps (the run then saves a checkpoint and can be resumed), and the outcome or
the error, re-raised in the caller's thread by `wait`. The interfaces (CLI, TUI) use it so the
thread that shows progress never blocks on training.
"""

import threading
from collections.abc import Callable

from memos_desktop.training.distill import Outcome
from memos_desktop.training.trainer import Progress


class TrainingJob:
    """Runs `work(progress=..., cancel=...)` (e.g. a partial of `distill`) in a daemon thread."""

    def __init__(self, work: Callable[..., Outcome], on_progress: Callable[[Progress], None] | None = None):
        self.progress: Progress | None = None
        self._cancel = threading.Event()
        self._work = work
        self._on_progress = on_progress
        self._outcome: Outcome | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memos-training", daemon=True)

    def start(self) -> "TrainingJob":
        self._thread.start()
        return self

    def _report(self, progress: Progress) -> None:
        self.progress = progress
        if self._on_progress is not None:
            self._on_progress(progress)

    def _run(self) -> None:
        try:
            self._outcome = self._work(progress=self._report, cancel=self._cancel)
        except BaseException as exc:  # handed to the waiting thread, which re-raises it
            self._error = exc
        finally:
            self._done.set()

    def cancel(self) -> None:
        """Ask the run to stop after the current step (it saves a checkpoint first)."""
        self._cancel.set()

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def wait(self, timeout: float | None = None) -> Outcome | None:
        """The outcome once the run ended (None while it is still running); its error re-raised.

        Waits on an event rather than joining the thread: a join interrupted by Ctrl-C is not
        reliable afterwards, and the CLI waits again after cancelling.
        """
        if not self._done.wait(timeout):
            return None
        if self._error is not None:
            raise self._error
        return self._outcome
