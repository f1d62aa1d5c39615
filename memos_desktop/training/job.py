"""A distillation run in the foreground: progress, and Ctrl-C as a resumable stop.

Owns how an interface runs `distill`: on the calling (main) thread, with SIGINT turned into the
cancel event the training loop checks between steps (the run then saves a checkpoint and raises
a TrainingError saying it can be resumed); a second Ctrl-C stops at once. It must never move the
MLX work to a helper thread: MLX keeps native state per thread (its compile cache holds Python
objects) and frees it when that thread ends, which needs the GIL. A helper thread that ends
while the interpreter shuts down is stopped inside that C++ destructor and the whole process
aborts ("terminate called without an active exception", exit -6) after the run succeeded. On the
main thread, MLX's own exit handler releases that state while the interpreter is still alive.
"""

import signal
import threading
from collections.abc import Callable

from memos_desktop.training.distill import Outcome
from memos_desktop.training.trainer import Progress


def run_in_foreground(
    work: Callable[..., Outcome],
    on_progress: Callable[[Progress], None] | None = None,
    on_interrupt: Callable[[], None] | None = None,
) -> Outcome:
    """Run `work(progress=..., cancel=...)` (e.g. a partial of `distill`) on this, the main thread.

    The first SIGINT sets the cancel event and calls `on_interrupt`; the previous SIGINT handler
    is back in place from then on, so a second Ctrl-C interrupts immediately.
    """
    cancel = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def interrupted(signum, frame) -> None:
        signal.signal(signal.SIGINT, previous)
        cancel.set()
        if on_interrupt is not None:
            on_interrupt()

    signal.signal(signal.SIGINT, interrupted)
    try:
        return work(progress=on_progress, cancel=cancel)
    finally:
        signal.signal(signal.SIGINT, previous)
