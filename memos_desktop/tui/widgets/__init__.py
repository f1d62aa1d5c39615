"""Reusable widgets of the TUI (chat input with history, transcript bubbles, citations panel)."""
