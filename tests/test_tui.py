"""The TUI driven like a person drives it (Textual Pilot) over a real encrypted vault, plus one
snapshot per screen. Snapshots use a fixed data dir, fixed ids and times, UTC and a fixed size."""

import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from memos_desktop.errors import MemosError
from memos_desktop.tui.app import MemosApp
from memos_desktop.tui.screens.chat import ChatScreen
from memos_desktop.tui.widgets.citations import CitationsPanel
from memos_desktop.tui.widgets.transcript import Bubble
from memos_desktop.vault import Vault
from tests.support import PASSPHRASE, FakeEmbedder

SIZE = (120, 36)
flow = pytest.mark.anyio
FIXED_TIME = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC


# A long answer that is not a degenerate loop (the turn pipeline stops those early).
LONG = " ".join(f"the quick brown fox {i} jumps over the lazy dog" for i in range(50))


async def until(pilot, condition, timeout: float = 60.0) -> None:
    """Let the app run until `condition()` holds (workers finish, messages arrive)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the app did not get there in time"
        await pilot.pause(0.05)


async def unlocked(pilot) -> None:
    await until(pilot, lambda: isinstance(pilot.app.screen, ChatScreen))
    await pilot.pause()


def make_vault(home: Path, fixed: bool = False) -> Vault:
    vault = Vault.create(home, PASSPHRASE, embedder=FakeEmbedder())
    vault.add(
        "I prefer window seats on long flights",
        title="Travel",
        tags=["memory", "preference"],
        id="01JTRAVEL00000000000000000",
        pinned=True,
    )
    vault.add("My sister Ana lives in Lyon", tags=["memory", "fact"], id="01JSISTER00000000000000000")
    vault.add(
        "Flights: book the 9:40 train to the airport",
        title="trip.md §Flights",
        tags=["notes"],
        source={"path": "notes/trip.md", "heading": "Flights", "lines": [12, 20]},
        id="01JNOTES000000000000000000",
    )
    if fixed:
        vault.conn.execute("UPDATE cubes SET created_at = ?, updated_at = ?", (FIXED_TIME, FIXED_TIME))
        vault.conn.execute("UPDATE cube_versions SET at = ?", (FIXED_TIME,))
    return vault


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def home(isolated_home):
    make_vault(isolated_home).close()
    return isolated_home


# The snapshot tests share one fixed data dir: under pytest-xdist they run on one worker, in turn.
same_snapshot_dir = pytest.mark.xdist_group("memos-tui-snapshot")


@pytest.fixture
def snapshot_home(monkeypatch):
    """A fixed data dir (paths appear on screen), UTC times, a vault with fixed ids and times.
    Tests using it are marked `same_snapshot_dir`; a lock file also keeps other test runs on this
    machine out of the directory while a snapshot test uses it."""
    import fcntl

    home = Path(tempfile.gettempdir()) / "memos-tui-snapshot"
    with (home.parent / "memos-tui-snapshot.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        shutil.rmtree(home, ignore_errors=True)
        # the models screen's catalogue shows fit labels: measured against a fixed 8 of 16 GiB free
        monkeypatch.setattr("memos_desktop.runtime.models.memory_bytes", lambda: (16 * 1024**3, 8 * 1024**3))
        monkeypatch.setenv("TZ", "UTC")
        time.tzset()
        make_vault(home, fixed=True).close()
        yield home
        shutil.rmtree(home, ignore_errors=True)
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.fixture(scope="module")
def tiny_model():
    from memos_desktop.runtime.testmodels import tiny_gguf

    return tiny_gguf(seed=0)


def register(home: Path, model: Path) -> None:
    from memos_desktop.runtime.models import add_model

    with Vault.open(home, PASSPHRASE) as vault:
        add_model(vault, model, name="tiny", n_ctx=2048, check_ram=False)


# ----- flows -------------------------------------------------------------------------------
@flow
async def test_unlock_screen_asks_for_the_passphrase_and_a_wrong_one_is_one_line(home, monkeypatch):
    monkeypatch.delenv("MEMOS_PASSPHRASE")
    app = MemosApp(home, embedder=FakeEmbedder())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.click("#passphrase")
        await pilot.press(*"wrong passphrase", "enter")
        status = app.screen.query_one("#unlock-status")
        await until(
            pilot, lambda: "passphrase" in str(status.render()).lower() and "Unlocking" not in str(status.render())
        )
        with pytest.raises(MemosError):
            app.session  # still locked  # noqa: B018
        await pilot.click("#passphrase")
        await pilot.press(*PASSPHRASE, "enter")
        await unlocked(pilot)
        assert app.session.vault.device_id


@flow
async def test_first_run_creates_the_vault_after_the_passphrase_is_repeated(isolated_home, monkeypatch):
    monkeypatch.delenv("MEMOS_PASSPHRASE")
    app = MemosApp(isolated_home, embedder=FakeEmbedder())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.click("#passphrase")
        await pilot.press(*"s3cret horse", "enter", *"s3cret horse", "enter")
        await unlocked(pilot)
    assert (isolated_home / "vault.key").exists()


@flow
async def test_first_run_warns_about_a_very_weak_passphrase_and_needs_enter_again(isolated_home, monkeypatch):
    monkeypatch.delenv("MEMOS_PASSPHRASE")
    app = MemosApp(isolated_home, embedder=FakeEmbedder())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.click("#passphrase")
        await pilot.press(*"s3cret", "enter", *"s3cret", "enter")
        await pilot.pause()
        assert "very weak" in str(app.screen.query_one("#unlock-status").render())
        assert not (isolated_home / "vault.key").exists()
        await pilot.press("enter")
        await unlocked(pilot)
    assert (isolated_home / "vault.key").exists()


@flow
async def test_a_message_streams_an_answer_from_a_generated_model_with_its_citations(home, tiny_model):
    from memos_desktop.tui.screens.chat import Finished, Token

    register(home, tiny_model)
    app = MemosApp(home, embedder=FakeEmbedder())
    seen = []  # every Token and Finished message, in order, as the screen receives them
    async with app.run_test(
        size=SIZE, message_hook=lambda m: isinstance(m, (Token, Finished)) and seen.append(m)
    ) as pilot:
        await unlocked(pilot)
        await until(pilot, lambda: app.llm is not None)
        await pilot.press(*"Where does my sister Ana live?", "enter")
        screen = app.screen
        await until(pilot, lambda: any(isinstance(m, Finished) for m in seen))
        await until(pilot, lambda: not screen.busy)
        bubbles = list(screen.query(Bubble))
        answer = bubbles[-1]
        assert [b.role for b in bubbles[-2:]] == ["user", "assistant"]
        assert answer.text and "saved" in str(answer.border_subtitle)
        pieces = [m.piece for m in seen if isinstance(m, Token)]
        assert len(pieces) > 1 and "".join(pieces) == answer.text  # it arrived in pieces, streamed
        panel = [str(s.render()) for s in screen.query_one(CitationsPanel).query(".citation")]
        assert panel[0].startswith("[1]") and "01JTRAVEL00000000000000000" in panel[0]
        assert any("01JSISTER00000000000000000" in p and "notes" not in p for p in panel)
    with Vault.open(home, PASSPHRASE) as vault:
        turns = vault.cubes(tag="chat")
    assert sorted(c.source["role"] for c in turns) == ["assistant", "user"]
    assert next(c for c in turns if c.source["role"] == "assistant").content == answer.text


@flow
async def test_forgetting_a_memory_from_the_memories_screen_tombstones_it(home):
    app = MemosApp(home, embedder=FakeEmbedder())
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        await pilot.press("f3")
        table = app.screen.query_one("#memory-table")
        await until(pilot, lambda: table.row_count == 3)
        row = table.get_row_index("01JSISTER00000000000000000")
        table.move_cursor(row=row)
        table.focus()
        await pilot.press("d")
        await until(pilot, lambda: table.row_count == 2)
        assert "01JSISTER00000000000000000" not in app.screen.cubes
        with app.session.access() as vault:
            assert vault.get("01JSISTER00000000000000000", include_inactive=True).state == "deleted"


@flow
async def test_a_memorys_links_are_listed_and_followed_to_the_memories_sharing_them(isolated_home):
    vault = make_vault(isolated_home)
    photos = vault.add("Ana sent the photos from Lyon", id="01JPHOTOS00000000000000000")
    vault.close()
    app = MemosApp(isolated_home, embedder=FakeEmbedder())
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        await pilot.press("f3")
        table = app.screen.query_one("#memory-table")
        await until(pilot, lambda: table.row_count == 4)
        table.move_cursor(row=table.get_row_index(photos.id))
        links = app.screen.query_one("#link-table")
        await until(pilot, lambda: links.row_count > 0)
        rows = [links.get_row_at(i) for i in range(links.row_count)]
        assert ["entity", "lyon", "1"] in [[str(c) for c in r] for r in rows]
        links.move_cursor(row=[str(r[1]) for r in rows].index("lyon"))
        await pilot.press("l", "enter")
        await until(pilot, lambda: table.row_count == 2)
        assert set(app.screen.cubes) == {photos.id, "01JSISTER00000000000000000"}
        await pilot.press("escape")
        await until(pilot, lambda: table.row_count == 4)


@flow
async def test_a_vault_without_links_is_linked_in_the_background(isolated_home):
    vault = make_vault(isolated_home)
    for cube in vault.cubes():
        vault._underive(vault._rowid(cube.id))
    vault.close()
    app = MemosApp(isolated_home, embedder=FakeEmbedder())
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        await pilot.press("f3")
        progress = app.screen.query_one("#link-progress")
        await until(pilot, lambda: "Linked 3 memories" in str(progress.render()))
        with app.session.access() as vault:
            assert vault.derive_pending() == 0


@flow
async def test_adding_a_watched_folder_indexes_its_notes(home, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "garden.md").write_text("# Garden\n\nThe tomatoes need water every evening.\n")
    app = MemosApp(home, embedder=FakeEmbedder())
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        await pilot.press("f4", "a")
        await pilot.press(*str(notes), "enter")
        roots = app.screen.query_one("#roots-table")
        await until(pilot, lambda: roots.row_count == 1)

        def indexed() -> bool:
            with app.session.access() as vault:
                return bool(vault.cubes(source_path=str(notes / "garden.md")))

        await until(pilot, indexed)
        files = app.screen.query_one("#source-table")
        app.screen.action_reload()
        await until(pilot, lambda: files.row_count == 1)


# ----- snapshots, one per screen ------------------------------------------------------------
@same_snapshot_dir
def test_snapshot_unlock(snap_compare, snapshot_home, monkeypatch):
    monkeypatch.delenv("MEMOS_PASSPHRASE")
    assert snap_compare(MemosApp(snapshot_home, embedder=FakeEmbedder()), terminal_size=SIZE)


@same_snapshot_dir
def test_snapshot_chat_after_a_pin_command(snap_compare, snapshot_home):
    async def run_before(pilot) -> None:
        await unlocked(pilot)
        await pilot.press(*"/pin 01JSISTER", "enter")
        await until(pilot, lambda: not pilot.app.screen.busy and len(pilot.app.screen.query(Bubble)) == 3)

    assert snap_compare(MemosApp(snapshot_home, embedder=FakeEmbedder()), terminal_size=SIZE, run_before=run_before)


@same_snapshot_dir
@pytest.mark.parametrize(
    "key, ready",
    [
        ("f3", "#version-table"),
        ("f4", "#source-table"),
        ("f5", "#model-table"),
        ("f6", "#vault-facts"),
        ("f1", "#help-box"),
    ],
)
def test_snapshot_screen(snap_compare, snapshot_home, key, ready):
    async def run_before(pilot) -> None:
        await unlocked(pilot)
        await pilot.press(key)
        await until(pilot, lambda: bool(pilot.app.screen.query(ready)))
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.5)

    assert snap_compare(MemosApp(snapshot_home, embedder=FakeEmbedder()), terminal_size=SIZE, run_before=run_before)


# ----- bad input: the UI stays responsive and keeps nothing half-written ---------------------
def without_activation(home: Path) -> Path:
    """The scripted model has no KV cache to save: switch activation memory off for it."""
    with Vault.open(home, PASSPHRASE) as vault:
        vault.set_setting("assistant", {"activation": False})
    return home


def chat_turns(home: Path) -> list:
    with Vault.open(home, PASSPHRASE) as vault:
        return vault.cubes(tag="chat")


@flow
async def test_an_empty_message_is_not_sent(home, scripted_llm):
    app = MemosApp(without_activation(home), embedder=FakeEmbedder(), llm=scripted_llm(answers=["never"]))
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        before = len(app.screen.query(Bubble))
        await pilot.press("space", "space", "enter")
        await pilot.pause(0.5)
        assert len(app.screen.query(Bubble)) == before and not app.screen.busy


@flow
async def test_a_100_kb_paste_with_control_characters_is_answered_while_the_ui_stays_responsive(home, scripted_llm):
    from textual import events

    from memos_desktop.tui.widgets.chat_input import ChatInput

    paste = "".join(f"line {i}\x1b[31m: {'y' * 90}\x07\n" for i in range(1000))
    app = MemosApp(
        without_activation(home), embedder=FakeEmbedder(), llm=scripted_llm(answers=["Got it, a long one."], delay=0.1)
    )
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        chat = app.screen
        app.post_message(events.Paste(paste))  # as the terminal delivers it: to the focused input
        await until(pilot, lambda: len(chat.query_one(ChatInput).text) == len(paste))
        await pilot.press("enter")
        await until(pilot, lambda: chat.busy)
        await pilot.press("f3")  # another screen works while the answer streams
        await until(pilot, lambda: app.current_mode == "memories" and app.screen.query_one("#memory-table").row_count)
        await pilot.press("f2")
        await until(pilot, lambda: not chat.busy)
        assert list(chat.query(Bubble))[-1].text == "Got it, a long one."
    user = next(c for c in chat_turns(home) if c.source["role"] == "user")
    assert len(user.content) > 95_000 and "\x1b" not in user.content and "\x07" not in user.content


class HeldEmbedder(FakeEmbedder):
    """The fake embedder, held once `holding` is set until the test sets `release`: /remember stays
    busy for exactly as long as the test needs, however slow the machine (no timed sleep)."""

    def __init__(self):
        self.holding = False
        self.release = threading.Event()

    def embed(self, texts):
        if self.holding:
            assert self.release.wait(120), "the test never released the embedder"
        return super().embed(texts)


@flow
async def test_keys_typed_while_a_command_runs_stay_in_the_box_and_send_afterwards(home):
    from memos_desktop.tui.widgets.chat_input import ChatInput

    embedder = HeldEmbedder()
    app = MemosApp(home, embedder=embedder)
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        chat = app.screen
        box = chat.query_one(ChatInput)
        embedder.holding = True  # /remember waits in the embedder until the keys are typed
        await pilot.press(*"/remember my bike is blue", "enter")
        await until(pilot, lambda: chat.busy)
        await pilot.press(*"where is Ana?", "enter", *" now")  # Enter while busy keeps the text
        assert chat.busy, "the command ended before the keys were typed; the test proves nothing"
        assert box.text == "where is Ana? now"
        embedder.release.set()
        await until(pilot, lambda: not chat.busy)
        assert any("Remembered" in b.text for b in chat.query(Bubble))
        assert box.text == "where is Ana? now"
        await pilot.press("enter")
        await until(pilot, lambda: any(b.role == "user" and b.text == "where is Ana? now" for b in chat.query(Bubble)))
        assert box.text == ""


@flow
async def test_keys_typed_while_an_answer_streams_stay_in_the_box(home, scripted_llm):
    from memos_desktop.tui.widgets.chat_input import ChatInput

    llm = scripted_llm(answers=[LONG, "second"], delay=0.05)
    app = MemosApp(without_activation(home), embedder=FakeEmbedder(), llm=llm)
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        chat = app.screen
        box = chat.query_one(ChatInput)
        await pilot.press(*"first", "enter")
        await until(pilot, lambda: llm.generating)
        await pilot.press(*"next question", "enter")
        assert llm.generating and box.text == "next question"
        await pilot.press("escape")
        await until(pilot, lambda: not chat.busy)
        await pilot.press("enter")
        await until(pilot, lambda: list(chat.query(Bubble))[-1].text == "second" and not chat.busy)
        assert [b.text for b in chat.query(Bubble) if b.role == "user"] == ["first", "next question"]


@flow
async def test_a_model_crash_mid_stream_is_one_line_and_nothing_is_kept(home, scripted_llm):
    app = MemosApp(
        without_activation(home),
        embedder=FakeEmbedder(),
        llm=scripted_llm(answers=["this breaks halfway"], crash_after=6),
    )
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        await pilot.press(*"hello", "enter")
        chat = app.screen
        answer = list(chat.query(Bubble))[-1]
        await until(pilot, lambda: answer.has_class("failed"))
        assert not chat.busy
        assert str(answer.border_subtitle).startswith("error: The model stopped while answering")
        await pilot.press(*"/remember the app still works", "enter")
        await until(pilot, lambda: "Remembered" in list(chat.query(Bubble))[-1].text)
    assert chat_turns(home) == []


@flow
async def test_escape_stops_the_answer_and_nothing_is_kept(home, scripted_llm):
    app = MemosApp(without_activation(home), embedder=FakeEmbedder(), llm=scripted_llm(answers=[LONG], delay=0.01))
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        await pilot.press(*"tell me everything", "enter")
        chat = app.screen
        await until(pilot, lambda: len(list(chat.query(Bubble))[-1].text) > 20)
        await pilot.press("escape")
        await until(pilot, lambda: not chat.busy)
        answer = list(chat.query(Bubble))[-1]
        assert "not kept" in str(answer.border_subtitle)
        assert len(answer.text) < len(LONG)
    assert chat_turns(home) == []


@flow
async def test_adding_a_model_on_the_models_screen_makes_it_the_default_and_loads_it(home, tiny_model):
    app = MemosApp(home, embedder=FakeEmbedder())
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        assert app.llm is None
        await pilot.press("f5", "a")
        await pilot.press(*str(tiny_model), "enter")
        table = app.screen.query_one("#model-table")
        await until(pilot, lambda: app.llm is not None and table.row_count == 1)
        assert str(table.get_row_at(0)[0]) == "★"
        assert app.model_status == f"model: {tiny_model.stem}"


@flow
async def test_models_screen_labels_the_starter_and_shows_catalogue_pulls_that_fit(home, tiny_model):
    from memos_desktop.runtime.models import add_model

    with Vault.open(home, PASSPHRASE) as vault:
        add_model(vault, tiny_model, name="smollm2-135m-starter", check_ram=False, extra={"starter": True})
    app = MemosApp(home, embedder=FakeEmbedder())
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        await pilot.press("f5")
        table, catalogue = app.screen.query_one("#model-table"), app.screen.query_one("#catalogue-table")
        await until(pilot, lambda: table.row_count == 1 and catalogue.row_count >= 9)
        assert "tiny demo model" in str(table.get_row_at(0)[1])
        rows = [catalogue.get_row_at(i) for i in range(catalogue.row_count)]
        assert "memos-desktop model pull qwen2.5-0.5b" in [str(r[4]) for r in rows]
        assert {str(r[2]) for r in rows} <= {"fits", "tight", "too big"}
        status = str(app.screen.query_one("#model-status").render())
        assert "tiny demo model" in status
        assert any(str(r[2]) == "fits" for r in rows) == ("memos-desktop model pull" in status)


@flow
async def test_a_pull_shows_progress_and_escape_stops_it(home, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: the hub client retries
    app = MemosApp(home, embedder=FakeEmbedder())
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        await pilot.press("f5", "l")
        await pilot.press(*"someone/model model.gguf", "enter")
        models = app.screen
        await until(pilot, lambda: models.pulling is not None and models.pulling.poll() is None)
        process = models.pulling
        assert models.query_one("#pull-progress").display
        await pilot.press("escape")
        await until(pilot, lambda: models.pulling is None)
        assert process.poll() is not None
        assert not models.query_one("#pull-progress").display
        await pilot.press("f2", *"/remember still responsive", "enter")
        await until(pilot, lambda: "Remembered" in list(app.screen.query(Bubble))[-1].text)


@flow
async def test_quitting_mid_answer_stops_it_before_the_model_is_closed(home, scripted_llm):
    llm = scripted_llm(answers=[LONG], delay=0.01)
    app = MemosApp(without_activation(home), embedder=FakeEmbedder(), llm=llm)
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        await pilot.press(*"tell me everything", "enter")
        await until(pilot, lambda: llm.generating)
        await pilot.press("ctrl+q")
    assert llm.closed_while_generating is False
    assert chat_turns(home) == []


@flow
async def test_switching_an_adapter_on_reloads_the_model_with_it(home, tiny_model):
    from memos_desktop.runtime.base import file_digest
    from memos_desktop.runtime.testmodels import tiny_lora_gguf, tiny_lora_mlx, tiny_mlx
    from memos_desktop.training.adapters import GGUF_FILE, Adapters

    register(home, tiny_model)
    mlx_dir = tiny_lora_mlx()
    files = {name: (mlx_dir / name).read_bytes() for name in ("adapter_config.json", "adapters.safetensors")}
    files[GGUF_FILE] = tiny_lora_gguf().read_bytes()
    base = {
        "mlx": {"digest": file_digest(tiny_mlx()), "name": "tiny-mlx"},
        "gguf": {"digest": file_digest(tiny_model), "name": tiny_model.name},
    }
    with Vault.open(home, PASSPHRASE) as vault:
        cube = Adapters(vault).save(name="facts", files=files, meta={"base": base}, content="8 facts", sources=[])
    app = MemosApp(home, embedder=FakeEmbedder())
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        await until(pilot, lambda: app.llm is not None)
        assert app.llm.adapters == ()
        first = app.llm
        await pilot.press("f5")
        table = app.screen.query_one("#adapter-table")
        await until(pilot, lambda: table.row_count == 1)
        table.focus()
        await pilot.press("o")
        await until(pilot, lambda: app.llm is not first and app.llm is not None)
        assert len(app.llm.adapters) == 1
        await until(pilot, lambda: str(table.get_row_at(0)[0]) == "on")
    with Vault.open(home, PASSPHRASE) as vault:
        assert vault.get(cube.id).meta["enabled"] is True


@flow
async def test_without_embeddings_the_app_says_search_is_keyword_only(home, monkeypatch):
    monkeypatch.setenv("MEMOS_EMBEDDER", "none")
    app = MemosApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        assert app.session.vault.embedder is None
        assert any("keyword-only" in n.message for n in app._notifications)
        await pilot.press(*"Where does my sister live?", "enter")
        await until(pilot, lambda: not app.screen.busy and len(app.screen.query(Bubble)) == 3)
        panel = " ".join(str(s.render()) for s in app.screen.query_one(CitationsPanel).query(".citation"))
        assert "01JSISTER00000000000000000" in panel  # memory search still works, with FTS alone


def highlighted_command(palette) -> str:
    """The text of the command palette's highlighted hit ("" while it has none)."""
    from textual.command import CommandList

    hits = palette.query_one(CommandList)
    return "" if hits.highlighted is None else str(hits.get_option_at_index(hits.highlighted).prompt)


@flow
async def test_a_conversation_is_resumed_from_the_command_palette(home, scripted_llm):
    first = MemosApp(without_activation(home), embedder=FakeEmbedder(), llm=scripted_llm(answers=["Lyon, I think."]))
    async with first.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        await pilot.press(*"Where does Ana live?", "enter")
        await until(pilot, lambda: "saved" in str(list(first.screen.query(Bubble))[-1].border_subtitle))
    app = MemosApp(home, embedder=FakeEmbedder(), llm=scripted_llm())
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"Resume: Where does Ana")
        palette = app.screen  # its search runs in a worker: wait for the hit, not for a fixed time
        await until(pilot, lambda: "Resume: Where does Ana live?" in highlighted_command(palette))
        await pilot.press("enter")
        await until(pilot, lambda: len(app.screen.query(Bubble)) == 2)
        assert [(b.role, b.text) for b in app.screen.query(Bubble)] == [
            ("user", "Where does Ana live?"),
            ("assistant", "Lyon, I think."),
        ]


@flow
async def test_the_welcome_and_header_name_the_loaded_model_and_label_the_starter_a_tiny_demo(home, tiny_model):
    from memos_desktop.runtime.models import add_model

    app = MemosApp(home, embedder=FakeEmbedder())
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        await until(pilot, lambda: app.model_status.startswith("no model"))
        assert "No model is loaded" in app.screen.query(Bubble).first().text
    with Vault.open(home, PASSPHRASE) as vault:
        add_model(vault, tiny_model, name="smollm2-135m-starter", n_ctx=2048, check_ram=False)
    app = MemosApp(home, embedder=FakeEmbedder())
    async with app.run_test(size=SIZE) as pilot:
        await unlocked(pilot)
        await until(pilot, lambda: app.llm is not None)
        await pilot.pause()
        welcome = app.screen.query(Bubble).first().text
        assert "Answering with smollm2-135m-starter (tiny demo model)" in welcome
        assert "No model" not in welcome
        assert app.sub_title == "model: smollm2-135m-starter (tiny demo model)"


def test_the_memories_screen_shows_a_notes_file_name_not_the_start_of_its_path():
    from memos_desktop.tui.screens.memories import origin
    from memos_desktop.vault import MemCube

    deep = MemCube(id="x", content="c", source={"path": "/home/ada/Documents/notes/2026/travel/lyon-trip.md"})
    assert origin(deep) == "lyon-trip.md"
    assert origin(MemCube(id="y", content="c", source={"conversation": "c1", "turn_id": 1})) == "chat"
