"""Helpers shared by the MemDumper tests: second vaults and hand-crafted (signed) bundles."""

import io
from pathlib import Path

from memos_desktop.dumper import crypto
from memos_desktop.dumper.format import FORMAT, VERSION, BundleSource
from memos_desktop.vault import Vault

PASSPHRASE = "correct horse battery staple"


def new_vault(path: Path, embedder=None) -> Vault:
    return Vault.create(path, PASSPHRASE, embedder=embedder)


def state(vault: Vault) -> dict:
    """Everything that must agree between devices: versions by global id, current rows, links."""
    conn = vault.conn
    events = {
        vid: (cube_id, op, hlc, device, parents, _strip(snapshot))
        for vid, cube_id, op, hlc, device, parents, snapshot in conn.execute(
            "SELECT e.vid, e.cube_id, v.op, e.hlc, e.device, e.parents, v.snapshot"
            " FROM sync_events e"
            " JOIN cube_versions v ON v.cube_id = e.cube_id AND v.version = e.version"
        )
    }
    current = {
        cube_id: (title, content, tags, state, owner, payload_ref)
        for cube_id, title, content, tags, state, owner, payload_ref in conn.execute(
            "SELECT id, title, content, tags, state, owner, payload_ref FROM cubes"
        )
    }
    links = set(conn.execute("SELECT src, dst, rel FROM links").fetchall())
    return {"events": events, "current": current, "links": links}


def _strip(snapshot: str) -> str:
    import json

    snap = json.loads(snapshot)
    snap.pop("version")
    return json.dumps(snap, sort_keys=True)


def craft_bundle(
    keys: crypto.DeviceKeys,
    path: Path,
    records: list[dict],
    recipients: list[str],
    **manifest_fields,
) -> Path:
    """A validly signed and encrypted bundle holding exactly `records` (to test the importer)."""
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "kind": "export",
        "bundle_id": "01CRAFTED00000000000000000",
        "created_at": 0.0,
        "device": keys.device,
        "signing_key": keys.verify_key,
        **manifest_fields,
    }
    out = io.BytesIO()
    crypto.encrypt_stream(BundleSource(manifest, iter(records), keys.sign), out, recipients)
    path.write_bytes(out.getvalue())
    return path
