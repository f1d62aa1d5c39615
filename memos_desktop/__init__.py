"""memos-desktop: a local-first personal assistant with a real memory (MemOS on one machine)."""

__version__ = "0.1.0"
