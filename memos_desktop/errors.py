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
