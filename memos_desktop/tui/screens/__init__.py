"""The TUI's screens, one class per module: unlock, chat, memories, sources, models, settings, help."""
