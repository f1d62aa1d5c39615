"""Conflicts: cubes whose concurrent edits on several devices left a conflict version current.

Lists them with the competing versions a person chose between (nested conflict versions give
their parents) and resolves one by making the chosen version current again, as a new version on
top, written to the audit log. Reads the op log through `vault/sync_log.py`; runs no SQL.
"""

from memos_desktop.errors import MemosError, NotFound
from memos_desktop.vault import MemCube, Vault, sync_log
from memos_desktop.vault.sync_log import CONFLICT_DEVICE


def conflicts(vault: Vault) -> list[dict]:
    """Cubes whose current version is an unresolved conflict, with the competing versions."""
    out = []
    for cube_id, title, version, parents in sync_log.open_conflicts(vault):
        heads = [_describe(vault, vid) for vid in _competing(vault, parents)]
        out.append({"id": cube_id, "title": title, "version": version, "heads": heads})
    return out


def _competing(vault: Vault, vids: list[str]) -> list[str]:
    """The user's versions behind a conflict (nested conflict versions give their parents)."""
    out: list[str] = []
    todo = list(vids)
    while todo:
        vid = todo.pop(0)
        device, parents = sync_log.event_origin(vault, vid)
        if device == CONFLICT_DEVICE:
            todo += parents
        elif vid not in out:
            out.append(vid)
    return out


def _describe(vault: Vault, vid: str) -> dict:
    version, stamp, device, op, snap = sync_log.event_version(vault, vid)
    return {
        "version": version,
        "vid": vid,
        "device": device,
        "op": op,
        "hlc": stamp,
        "state": snap["state"],
        "title": snap["title"],
        "content": snap["content"],
    }


def resolve(vault: Vault, cube_id: str, keep_version: int, actor: str = "user") -> MemCube:
    """Close a conflict by making one competing version current (a new version on top)."""
    for conflict in conflicts(vault):
        if conflict["id"] == cube_id:
            choices = [h["version"] for h in conflict["heads"]]
            if keep_version not in choices:
                raise MemosError(
                    f"Version {keep_version} is not one of the conflicting versions of {cube_id} "
                    f"({', '.join(map(str, choices))})."
                )
            owner = sync_log.owner_of(vault, cube_id)
            cube = vault.rollback(cube_id, keep_version, profile=owner, actor=actor)
            vault.audit("resolve-conflict", cube_id, actor, {"kept": keep_version, "version": cube.version})
            return cube
    raise NotFound(f"Memory {cube_id} has no open conflict.")
