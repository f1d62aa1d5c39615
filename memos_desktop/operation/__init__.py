"""The operation layer: what the assistant does with memory, used alike by the CLI, the TUI and MCP.

`session` opens the vault, embedder and model once; `turn` is the one chat-turn pipeline; `search`
ranks (MemOperator); `reader` turns what the user says into memory operations (MemReader);
`scheduler` decides what to load in which tier (MemScheduler); `doctor` checks the install.
Nothing here draws a screen or prints; nothing here runs SQL (that is `vault/`'s job).
"""
