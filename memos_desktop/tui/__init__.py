"""The Textual TUI (interface layer): screens, widgets and styles; all slow work runs in workers."""
