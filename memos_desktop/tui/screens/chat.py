"""The chat screen: the transcript, the message box, and the memories/sources the answer used.

A message goes to the app's model thread, which runs the one turn pipeline (`Assistant.turn`,
which takes the vault lock for each vault step itself) and reports back by messages: the memories
in the prompt and those left out, each token, the stored exchange, then MemReader's result; a
/command or a turn without a model needs no model and runs in a worker. Escape stops the answer;
a stopped or failed answer is marked and never stored.
The message box stays live all along: what is typed meanwhile stays in it, and Enter during an
answer keeps it there instead of sending it.
"""

import threading
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from memos_desktop.errors import MemosError
from memos_desktop.tui.state import AppState, app_state
from memos_desktop.tui.widgets.chat_input import ChatInput
from memos_desktop.tui.widgets.citations import CitationsPanel
from memos_desktop.tui.widgets.transcript import Bubble, Transcript

if TYPE_CHECKING:
    from memos_desktop.operation.turn import Assistant, Citation, Conversation, LeftOut, TurnResult


# The messages name the answer's bubble `reply`: a Message's own `bubble` says whether it bubbles up.


class Token(Message):
    def __init__(self, reply: Bubble, piece: str) -> None:
        self.reply = reply
        self.piece = piece
        super().__init__()


class Cited(Message):
    def __init__(self, citations: "list[Citation]", left_out: "Sequence[LeftOut]" = ()) -> None:
        self.citations = citations
        self.left_out = list(left_out)
        super().__init__()


class Finished(Message):
    """The answer is stored (`reading`: MemReader still runs) or the whole turn is done."""

    def __init__(self, reply: Bubble, result: "TurnResult", text: str | None, reading: bool = False) -> None:
        self.reply = reply
        self.result = result
        self.text = text
        self.reading = reading
        super().__init__()


class Stopped(Message):
    def __init__(self, reply: Bubble, why: str) -> None:
        self.reply = reply
        self.why = why
        super().__init__()


class ChatScreen(Screen):
    CSS_PATH = "chat.tcss"

    BINDINGS = [
        Binding("escape", "stop", "Stop answer"),
        Binding("ctrl+n", "new_conversation", "New chat"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.conversation: Conversation  # started on mount
        self.welcome: Bubble | None = None
        self.cancel = threading.Event()
        self.busy = False
        self.idle = threading.Event()  # set whenever no answer is being generated
        self.idle.set()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="chat-body"):
            with Vertical(id="chat-main"):
                yield Transcript(id="transcript")
                yield ChatInput(id="message")
            with Vertical(id="chat-side"):
                yield Static("Memories used", classes="panel-title")
                yield CitationsPanel(id="citations")
        yield Footer()

    def on_mount(self) -> None:
        app_state(self).chat_screen = self
        self.new_conversation()

    def new_conversation(self) -> None:
        self.conversation = app_state(self).assistant.new_conversation()
        transcript = self.query_one(Transcript)
        transcript.clear_messages()
        self.welcome = transcript.add("system", self.welcome_text())
        self.query_one(CitationsPanel).show([])
        self.query_one(ChatInput).focus()

    def welcome_text(self) -> str:
        hello = "Ask me anything. I remember what you tell me and cite my sources. F1 for help."
        return f"{hello}\n({app_state(self).model_sentence()})"

    def refresh_welcome(self) -> None:
        """Say which model answers now (it may have finished loading after the welcome was shown)."""
        if self.welcome is not None and self.welcome.is_attached:
            self.welcome.set_text(self.welcome_text())

    def resume(self, conversation_id: str) -> None:
        try:
            with app_state(self).session.access():
                conversation = app_state(self).assistant.resume(conversation_id)
        except MemosError as exc:
            self.notify(str(exc), severity="error")
            return
        self.conversation = conversation
        transcript = self.query_one(Transcript)
        transcript.clear_messages()
        for turn in conversation.turns:
            transcript.add(turn["role"], turn["content"])
        self.query_one(CitationsPanel).show([])

    def action_new_conversation(self) -> None:
        if not self.busy:
            self.new_conversation()

    def action_stop(self) -> None:
        if self.busy:
            self.cancel.set()

    def stop_and_wait(self, timeout: float = 30.0) -> None:
        """Stop a running answer and wait until the model is no longer in use (before it closes)."""
        self.cancel.set()
        self.idle.wait(timeout)

    def on_chat_input_submitted(self, event: ChatInput.Submitted) -> None:
        transcript = self.query_one(Transcript)
        transcript.add("user", event.text)
        bubble = transcript.add("assistant", "")
        bubble.add_class("streaming")
        self.set_busy(True)
        self.cancel = threading.Event()
        self.idle.clear()
        assistant = app_state(self).assistant
        if assistant.llm is None or assistant.reader.is_command(event.text):
            self.run_worker(partial(self.answer, event.text, bubble), thread=True, group="chat")
        else:
            app_state(self).model_thread.submit(self.answer, event.text, bubble)

    def set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.query_one(ChatInput).holding = busy

    def on_token(self, message: Token) -> None:
        message.reply.append(message.piece)
        self.query_one(Transcript).scroll_end(animate=False)

    def answer(self, text: str, bubble: Bubble) -> None:
        """One turn off the UI thread: prepare → stream → commit, reporting back by messages."""
        app, cancel = app_state(self), self.cancel
        assistant = app.assistant
        try:
            self._answer(app, assistant, cancel, text, bubble)
        finally:
            self.idle.set()

    def _answer(
        self, app: AppState, assistant: "Assistant", cancel: threading.Event, text: str, bubble: Bubble
    ) -> None:
        """Reports only by posting messages (never waits for the UI thread, which may be waiting
        for this answer to stop before it closes the model)."""
        try:
            result = assistant.turn(
                self.conversation,
                text,
                on_token=lambda piece: self.post_message(Token(bubble, piece)),
                cancel=cancel,
                on_plan=lambda prepared: self.post_message(Cited(prepared.citations, prepared.left_out)),
                on_stored=lambda stored: self.post_message(Finished(bubble, stored, None, reading=assistant.extract)),
            )
            if result.cancelled:
                self.post_message(Stopped(bubble, "stopped — this answer was not kept"))
            elif result.stored:
                self.post_message(Finished(bubble, result, None))
            else:
                self.post_message(Finished(bubble, result, result.answer))
        except MemosError as exc:
            self.post_message(Stopped(bubble, f"error: {exc} — nothing was kept"))
        except Exception as exc:  # a bug must still reach the user as one line, not a traceback
            self.post_message(Stopped(bubble, f"unexpected error: {exc!r} — nothing was kept"))

    def on_cited(self, message: Cited) -> None:
        self.query_one(CitationsPanel).show(message.citations, left_out=message.left_out)

    def on_finished(self, message: Finished) -> None:
        bubble, result, text = message.reply, message.result, message.text
        self.set_busy(message.reading)  # MemReader still uses the model
        bubble.remove_class("streaming")
        if text is not None:
            bubble.set_text(text)
        notes = []
        if result.stored:
            notes.append(f"saved · turn {result.turn}")
        if result.extraction is not None and result.extraction.error:
            notes.append(f"no memories extracted ({result.extraction.error})")
        if result.stop_reason in ("length", "loop"):
            notes.append(
                "cut off (longest answer reached)" if result.stop_reason == "length" else "cut off (it repeated itself)"
            )
        if result.ops:
            notes.append(", ".join(f"{op.op.lower()}" for op in result.ops))
        if message.reading:
            notes.append("remembering… (Escape skips)")
        bubble.note(" · ".join(notes))
        self.query_one(CitationsPanel).show(
            result.citations, [op for op in result.ops if op.op != "NOOP"], left_out=result.left_out
        )

    def on_stopped(self, message: Stopped) -> None:
        bubble, why = message.reply, message.why
        self.set_busy(False)
        bubble.remove_class("streaming")
        bubble.add_class("failed")
        bubble.note(why)
