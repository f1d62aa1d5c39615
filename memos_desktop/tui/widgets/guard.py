"""`guarded`: the wrapper every TUI worker body wears, so no error ever reaches the user as a traceback."""

import functools
from collections.abc import Callable

from memos_desktop.errors import MemosError


def guarded(method: Callable) -> Callable:
    """Run a worker body (on its thread); a MemosError becomes its one-line message, any other
    exception one line naming it, both shown as an error notification. The app keeps running."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except MemosError as exc:
            message = str(exc)
        except Exception as exc:
            message = f"Unexpected error ({type(exc).__name__}: {exc}); the app keeps running."
        self.app.call_from_thread(self.app.notify, message, severity="error", timeout=8)
        return None

    return wrapper
