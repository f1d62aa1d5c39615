"""ModelThread: the one long-lived thread on which the TUI runs all model work.

MLX keeps native state per thread (its compile cache holds Python objects) and frees it when
that thread ends, which needs the GIL. A thread that used MLX and ends while the interpreter
shuts down (a pooled worker thread joined at exit, or a load still running when the user quits)
is stopped inside that C++ destructor and the whole process aborts ("terminate called without an
active exception"). The CLI runs models on its main thread (see training/job.py); the TUI's main
thread draws, so it queues every load, answer, extraction and close to this one daemon thread,
which never ends: before exit the app waits until the thread is idle (`wait_idle`), and the idle
thread then goes with the process, its per-thread state never freed and so never a crash. Jobs
run one at a time, in order, which also keeps a llama.cpp context from serving two calls at once.
A job must never wait for the thread that waits for it to be idle: it posts messages instead.
"""

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future


class ModelThread:
    """A queue of jobs run in order on one daemon thread, started on the first job."""

    def __init__(self, name: str = "memos-model") -> None:
        self.name = name
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        """Queue `fn(*args, **kwargs)`; the future holds its result or its exception."""
        future: Future = Future()
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._pending += 1
        self._jobs.put((future, fn, args, kwargs))
        return future

    def on_thread(self) -> bool:
        """Whether the caller is running on this model thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def busy(self) -> bool:
        with self._changed:
            return self._pending > 0

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every queued job has finished; False if `timeout` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        while True:
            future, fn, args, kwargs = self._jobs.get()
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args, **kwargs))
                    except BaseException as exc:  # the future carries it to whoever waits
                        future.set_exception(exc)
            finally:
                del future, fn, args, kwargs
                with self._changed:
                    self._pending -= 1
                    self._changed.notify_all()
