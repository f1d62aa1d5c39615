"""One TUI session with a generated MLX model, run as its own process by tests/test_tui_mlx.py
(`python -m tests.tui_mlx_session HOME MODE`); the process's exit code is what the test checks.

MODE `turn`: unlock, load the model, one chat turn, then load the model again and quit at once.
MODE `loading`: ask for the model three more times while it loads, and quit while MLX is busy.
After the app has exited it prints, as JSON, every thread that ran the MLX backend (its name,
whether it is a daemon and still alive), so the test can check where MLX ran as well as how the
process ended."""

import asyncio
import functools
import json
import sys
import threading
import time
from pathlib import Path

from memos_desktop.runtime.mlx_backend import MLXBackend
from memos_desktop.runtime.models import add_model
from memos_desktop.runtime.testmodels import tiny_mlx
from memos_desktop.tui.app import MemosApp
from memos_desktop.tui.screens.chat import ChatScreen
from memos_desktop.tui.widgets.transcript import Bubble
from memos_desktop.vault import Vault
from tests.support import PASSPHRASE, FakeEmbedder

MLX_THREADS: dict[int, threading.Thread] = {}


def record_thread(method):
    @functools.wraps(method)
    def recorded(*args, **kwargs):
        MLX_THREADS[threading.get_ident()] = threading.current_thread()
        return method(*args, **kwargs)

    return recorded


for name in ("__init__", "prefill", "generate_tokens", "save_state", "load_state", "close"):
    setattr(MLXBackend, name, record_thread(getattr(MLXBackend, name)))


async def until(pilot, condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("the app did not get there in time")
        await pilot.pause(0.01)


def answered(app) -> bool:
    return not app.screen.busy and "saved" in str(app.screen.query(Bubble).last().border_subtitle)


async def session(home: Path, mode: str) -> None:
    from memos_desktop.tui.messages import ModelStatus

    app = MemosApp(home, embedder=FakeEmbedder())
    # Every model status the app received: a fast load can report "loading" and "model: ..." in
    # one burst, before a poll of app.model_status would ever see the first.
    statuses: list[str] = []

    def hook(message) -> None:
        if isinstance(message, ModelStatus):
            statuses.append(message.text)

    async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
        if mode == "loading":
            await until(pilot, lambda: any(s.startswith("loading") for s in statuses))
            for _ in range(3):
                app.load_default_model()
            await pilot.press("ctrl+q")
            return
        await until(pilot, lambda: isinstance(app.screen, ChatScreen) and app.llm is not None)
        await pilot.press(*"hello there", "enter")
        await until(pilot, lambda: answered(app))
        print("answered:", bool(app.screen.query(Bubble).last().text), flush=True)
        app.load_default_model()
        await pilot.press("ctrl+q")


def main() -> None:
    home, mode = Path(sys.argv[1]), sys.argv[2]
    if not Vault.exists(home):
        with Vault.create(home, PASSPHRASE) as vault:
            add_model(vault, tiny_mlx(seed=0), name="tiny-mlx", n_ctx=2048, check_ram=False, verify=False)
    asyncio.run(session(home, mode))
    threads = [{"name": t.name, "daemon": t.daemon, "alive": t.is_alive()} for t in MLX_THREADS.values()]
    print(json.dumps({"mlx_threads": threads}), flush=True)


if __name__ == "__main__":
    main()
