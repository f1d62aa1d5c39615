"""MemLoader: live ingestion of local notes folders into plaintext MemCubes.

`parsers` (formats → sections), `chunking` (sections → chunks), `scan` (walk + ignore rules),
`status` (per-file state), `ingest` (`Loader`: reconcile files with cubes), `watcher` (`Watcher`:
watchdog events → `Loader` in a worker thread), `config` (watched folders and rules).
"""
