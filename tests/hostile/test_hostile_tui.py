"""Every screen shows hostile data (memories, tags, file names with markup and control characters,
a data dir named like markup, model output) as inert text: no crash, no markup interpreted, and no
character that acts on the terminal in what is drawn (checked on the rendered screen)."""

import time

import pytest
from hostile_strings import CORPUS, FILE_NAMES, unsafe_in

from memos_desktop.tui.app import MemosApp
from memos_desktop.tui.screens.chat import ChatScreen
from memos_desktop.vault import Vault
from tests.support import PASSPHRASE, FakeEmbedder, ScriptedLLM

SIZE = (160, 50)


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def until(pilot, condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the app did not get there in time"
        await pilot.pause(0.05)


@pytest.fixture
def hostile_home(tmp_path):
    """A vault in a folder named like markup, full of hostile memories and hostile note files."""
    from memos_desktop.loader.config import add_root
    from memos_desktop.loader.ingest import Loader

    home = tmp_path / "home [bold]x[/] \x1b[31m"
    with Vault.create(home, PASSPHRASE, embedder=FakeEmbedder()) as vault:
        vault.set_setting("assistant", {"activation": False})  # the scripted model has no KV cache
        for i, text in enumerate(CORPUS):
            vault.add(f"heron {text}", title=text[:40], tags=[text[:20]], source={"path": f"/notes/{text}.md"})
            if i == 0:
                vault.add(f"pinned heron {text}", title=text, pinned=True)
        notes = tmp_path / "notes"
        (notes / "drafts[").mkdir(parents=True)
        (notes / "drafts[" / "]notes.md").write_text(f"# {CORPUS[8]}\n\nheron drafts {CORPUS[0]}\n")
        for name, text in zip(FILE_NAMES, CORPUS, strict=False):
            (notes / name).write_text(f"# {text}\n\nheron note {text}\n")
        (notes / "\x1b]52;c;eA==\x07broken.pdf").write_bytes(b"%PDF-1.4 broken \x1b[2J")
        add_root(vault, notes)
        Loader(vault).scan()
    return home


def _assert_inert(app, where: str) -> str:
    drawn = app.export_screenshot()
    assert not unsafe_in(drawn), (where, sorted(set(unsafe_in(drawn))))
    return drawn


@pytest.mark.slow
@pytest.mark.anyio
async def test_every_screen_draws_hostile_data_inertly(hostile_home):
    answer = "Here: " + " ".join(CORPUS)
    llm = ScriptedLLM(answers=[answer])
    app = MemosApp(hostile_home, embedder=FakeEmbedder(), llm=llm)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ChatScreen))
        _assert_inert(app, "chat, empty")
        await pilot.pause()
        await pilot.press(*"what about the heron", "enter")
        await until(pilot, lambda: not app.screen.busy and llm.prompts)
        await pilot.pause(0.3)
        drawn = _assert_inert(app, "chat transcript and citations")
        assert "[bold]" in drawn.replace("&#160;", " ")  # shown literally, not as bold
        for mode in ("memories", "sources", "models", "settings", "chat"):
            app.switch_mode(mode)
            await pilot.pause(0.5)
            await until(pilot, lambda: not [w for w in app.workers if w.is_running and w.group != "maintain"])
            await pilot.pause(0.2)
            _assert_inert(app, mode)
            if mode == "memories":
                for _ in range(len(CORPUS)):
                    await pilot.press("down")
                    await pilot.pause(0.05)
                    _assert_inert(app, "memory detail")
        app.notify(f"Problem with {CORPUS[0]} {CORPUS[8]}")
        await pilot.pause(0.2)
        _assert_inert(app, "notification")
