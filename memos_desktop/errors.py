"""The one exception family of memos-desktop.

Every error a user can cause or meet is a `MemosError` whose message is one sentence written for
that user; the CLI and the TUI show the message and never a traceback.
"""


class MemosError(Exception):
    """Base of every error shown to a user."""


class VaultError(MemosError):
    """The vault cannot be opened, read or written."""


class WrongPassphrase(VaultError):
    """The passphrase does not unlock the vault."""


class CorruptVault(VaultError):
    """The vault's files are damaged or were tampered with."""


class NotFound(MemosError):
    """A cube, model, source or other named thing does not exist (or is not visible)."""


class EmbedderError(MemosError):
    """The embedding model is missing or failed."""


class ModelError(MemosError):
    """A language model cannot be loaded or run."""


class BundleError(MemosError):
    """An export bundle or sync change-set is unreadable, tampered with or unsupported."""


class IngestError(MemosError):
    """A notes file cannot be ingested."""


class TrainingError(MemosError):
    """A LoRA training run or adapter is unusable."""


def from_storage(exc: BaseException) -> MemosError | None:
    """The user-facing error for a low-level storage exception (apsw), or None if it is not one.

    A damaged page can surface in any query, not only when the vault opens, so the interface
    layers pass unexpected exceptions through this before showing them.
    """
    if type(exc).__module__ != "apsw":
        return None
    name = type(exc).__name__
    damaged_vector = name == "SQLError" and "blob read error" in str(exc)  # sqlite-vec over a damaged page
    if name in ("CorruptError", "NotADBError") or damaged_vector:
        return CorruptVault(
            "The vault database is damaged or was tampered with; restore it from a backup or an export."
        )
    if name == "FullError":
        return VaultError("The disk is full; the last change was not saved.")
    if name in ("BusyError", "LockedError"):
        return VaultError("The vault is busy in another process; try again in a moment.")
    if name in ("ReadOnlyError", "PermissionsError", "CantOpenError", "IOError"):
        return VaultError(f"The vault files cannot be read or written ({exc}).")
    return None
