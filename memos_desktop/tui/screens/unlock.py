"""The unlock screen: the passphrase for an existing vault, or creating one on first run.

With MEMOS_PASSPHRASE set it unlocks at once without asking. Argon2id runs in a worker thread,
so the screen stays responsive; a wrong passphrase is one line under the field. It is the first
frame the app draws, so it stays small: no header, footer or button (Enter submits; a Button's
styles alone cost about 15 ms of CSS parsing before the first frame).
"""

import os

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Input, Label, Static

from memos_desktop.errors import MemosError
from memos_desktop.tui.state import app_state


class UnlockScreen(Screen):
    """Asks for the passphrase (twice when creating the vault) and opens the vault in a worker."""

    opening = False  # a worker is opening the vault: Enter again does nothing
    weak_confirmed = ""  # a very weak new passphrase the user kept by pressing Enter again

    def compose(self) -> ComposeResult:
        from memos_desktop import paths

        data_dir = app_state(self).data_dir
        self.create = not ((data_dir / paths.VAULT_HEADER).exists() or (data_dir / paths.VAULT_DB).exists())
        with Vertical(id="unlock-box"):
            if self.create:
                yield Static("Welcome to memos. Choose a passphrase for your new encrypted vault.", id="unlock-intro")
            else:
                yield Static("Your vault is locked.", id="unlock-intro")
            yield Label(str(app_state(self).data_dir), id="unlock-path")
            yield Input(placeholder="Passphrase", password=True, id="passphrase")
            if self.create:
                yield Input(placeholder="Repeat the passphrase", password=True, id="confirm")
            yield Static("", id="unlock-status")
            yield Static(
                ("Enter creates the vault" if self.create else "Enter unlocks") + " · Ctrl+Q quits.", classes="muted"
            )

    def on_mount(self) -> None:
        env = os.environ.get("MEMOS_PASSPHRASE")
        if env:
            self.start(env)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "passphrase" and self.create:
            self.query_one("#confirm", Input).focus()
            return
        self.submit()

    def submit(self) -> None:
        if self.opening:
            return
        passphrase = self.query_one("#passphrase", Input).value
        if not passphrase:
            self.status("Type your passphrase first.")
            return
        if self.create and passphrase != self.query_one("#confirm", Input).value:
            self.status("The two passphrases differ.")
            return
        if self.create and passphrase != self.weak_confirmed:
            from memos_desktop.vault.strength import weakness

            reason = weakness(passphrase)
            if reason:
                self.weak_confirmed = passphrase
                self.status(f"This passphrase is very weak ({reason}). Press Enter again to use it anyway.")
                return
        self.start(passphrase)

    def status(self, text: str) -> None:
        self.query_one("#unlock-status", Static).update(text)

    def start(self, passphrase: str) -> None:
        self.status("Creating your vault…" if self.create else "Unlocking…")
        self.opening = True
        self.open(passphrase)

    @work(thread=True, exclusive=True, group="unlock")
    def open(self, passphrase: str) -> None:
        try:
            session = app_state(self).open_vault(passphrase, self.create)
        except MemosError as exc:
            self.app.call_from_thread(self.failed, str(exc))
            return
        except Exception as exc:  # never a traceback on the unlock screen
            self.app.call_from_thread(self.failed, f"The vault could not be opened: {exc!r}")
            return
        self.app.call_from_thread(app_state(self).unlocked, session)

    def failed(self, message: str) -> None:
        self.status(message)
        self.opening = False
        field = self.query_one("#passphrase", Input)
        field.value = ""
        field.focus()
