"""MemStore over MCP: the server other local agents use to search, read and write the vault."""
