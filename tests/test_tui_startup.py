"""What the TUI's first frame costs: `memos-desktop` with no arguments draws the unlock screen
without importing the vault, the database, numpy, the runtimes, the loader, click or the other
screens, and with only the shared stylesheet parsed. Checked through the real entry point in a
fresh process (modules the test process already imported would hide a regression); no timing."""

import json
import os
import subprocess
import sys

import pytest

from tests.support import REPO

FIRST_FRAME = """
import asyncio, json, sys
from textual.app import App

def headless(self, *args, **kwargs):
    async def first_frame():
        async with self.run_test(size=(120, 36)) as pilot:
            await pilot.pause()
            print(json.dumps({
                "screen": type(self.screen).__name__,
                "modules": sorted(sys.modules),
                "css": sorted(str(path) for path, _ in self.stylesheet.source),
                "selectors": sorted({name for rule in self.stylesheet.rules for name in rule.selector_names}),
            }))
    asyncio.run(first_frame())

App.run = headless
sys.argv = ["memos-desktop"]
from memos_desktop.entry import main
main()
"""

NOT_BEFORE_THE_FIRST_FRAME = [
    "apsw",
    "numpy",
    "click",
    "argon2",
    "cryptography",
    "llama_cpp",
    "mlx",
    "memos_desktop.cli",
    "memos_desktop.vault",
    "memos_desktop.runtime",
    "memos_desktop.embed",
    "memos_desktop.loader",
    "memos_desktop.operation.turn",
    "memos_desktop.operation.reader",
    "memos_desktop.operation.scheduler",
    "memos_desktop.training",
    "memos_desktop.tui.screens.chat",
    "memos_desktop.tui.screens.memories",
    "memos_desktop.tui.screens.models",
    "memos_desktop.tui.screens.sources",
    "memos_desktop.tui.screens.settings",
]


@pytest.fixture(scope="module")
def first_frame(tmp_path_factory) -> dict:
    """What a person's first start shows: no passphrase in the environment, no vault yet (an empty
    data dir of its own). One start serves this module's tests: each reads a different part."""
    env = {k: v for k, v in os.environ.items() if k != "MEMOS_PASSPHRASE"}
    env["MEMOS_HOME"] = str(tmp_path_factory.mktemp("first-frame") / "memos-home")
    run = subprocess.run(
        [sys.executable, "-c", FIRST_FRAME], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_first_frame_is_the_unlock_screen_without_heavy_modules(first_frame):
    frame = first_frame
    assert frame["screen"] == "UnlockScreen"
    loaded = [
        name
        for name in frame["modules"]
        if any(name == heavy or name.startswith(heavy + ".") for heavy in NOT_BEFORE_THE_FIRST_FRAME)
    ]
    assert loaded == []


def test_the_first_frame_parses_only_the_shared_stylesheet(first_frame):
    frame = first_frame
    ours = [path for path in frame["css"] if "memos_desktop" in path]
    assert [path.rsplit("/", 2)[-2:] for path in ours] == [["tui", "app.tcss"]]
    other_screens = {"#transcript", ".bubble", "#memory-table", "#source-table", "#model-table", "#settings-box"}
    assert other_screens.isdisjoint(frame["selectors"])  # their styles load with them
