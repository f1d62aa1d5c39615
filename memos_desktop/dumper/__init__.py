"""MemDumper: encrypted bundles (export/import) and folder sync between a person's devices.

`format` frames a bundle (manifest, JSON-lines records, signed trailer), `crypto` holds the
device keys and the age layer, `clock` the hybrid logical clock, `events` the op log that merges
versions from several devices, `export`/`importer` move bundles in and out, `sync` shares a folder.
Derived indexes (FTS, vectors) are never carried: they are rebuilt locally.
"""
