"""Property tests: any sequence of edits, forgets, restores and rollbacks keeps the vault's
version, visibility and index invariants."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memos_desktop.errors import MemosError, NotFound
from memos_desktop.vault import Vault
from tests.support import PASSPHRASE, FakeEmbedder

WORDS = st.sampled_from(["apple", "river", "violin", "orbit", "maple", "quartz", "lantern"])
TEXT = st.lists(WORDS, min_size=1, max_size=4).map(" ".join)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("edit"), TEXT),
        st.tuples(st.just("forget"), st.none()),
        st.tuples(st.just("restore"), st.none()),
        st.tuples(st.just("rollback"), st.integers(1, 12)),
        st.tuples(st.just("tags"), st.lists(WORDS, max_size=3)),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=TEXT, ops=OPS)
def test_every_change_is_a_new_consecutive_version(tmp_path_factory, first, ops):
    home = tmp_path_factory.mktemp("v")
    with Vault.create(home, PASSPHRASE, embedder=FakeEmbedder()) as v:
        cube = v.add(first)
        expected_state, expected_content = "active", first
        for op, arg in ops:
            try:
                if op == "edit":
                    v.edit(cube.id, content=arg)
                    expected_content = arg
                elif op == "tags":
                    v.edit(cube.id, tags=arg)
                elif op == "forget":
                    v.forget(cube.id)
                    expected_state = "deleted"
                elif op == "restore":
                    v.restore(cube.id)
                    expected_state = "active"
                elif op == "rollback":
                    snap = v.version(cube.id, arg)
                    v.rollback(cube.id, arg)
                    expected_content = snap["content"]
                    expected_state = snap["state"]
            except (NotFound, MemosError):
                continue
        history = v.history(cube.id)
        current = v.get(cube.id, include_inactive=True, touch=False)
        # versions are 1..n with each parent the previous one
        assert [h["version"] for h in history] == list(range(1, len(history) + 1))
        assert all(h["parent_version"] == h["version"] - 1 for h in history[1:])
        assert current.version == len(history)
        # the last snapshot is the current row
        unversioned = ("access_count", "last_accessed_at")
        last = {k: v for k, v in history[-1]["snapshot"].items() if k not in unversioned}
        now = {k: v for k, v in current.to_dict().items() if k not in unversioned}
        assert json.dumps(last, sort_keys=True) == json.dumps(now, sort_keys=True)
        assert current.state == expected_state and current.content == expected_content
        # indexes hold exactly the active cube
        rowid = v._rowid(cube.id)
        in_fts = rowid in {r for r, _ in v.fts(current.content, 50)}
        in_vec = v.conn.execute("SELECT count(*) FROM cube_vec WHERE rowid = ?", (rowid,)).fetchone()[0]
        assert in_fts == (current.state == "active")
        assert in_vec == (1 if current.state == "active" else 0)
        assert v.verify_audit() == len(history)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cubes=st.lists(
        st.tuples(st.sampled_from(["alice", "bob", "carol"]), st.booleans(), st.booleans()),
        min_size=1,
        max_size=8,
    ),
    viewer=st.sampled_from(["alice", "bob", "carol"]),
)
def test_a_profile_sees_exactly_its_own_and_shared_live_cubes(tmp_path_factory, cubes, viewer):
    home = tmp_path_factory.mktemp("acl")
    with Vault.create(home, PASSPHRASE, embedder=FakeEmbedder()) as v:
        made = []
        for owner, shared, expired in cubes:
            c = v.add(
                "lantern note",
                profile=owner,
                visibility="shared" if shared else "private",
                expires_at=1.0 if expired else None,
            )
            made.append((c, owner, shared, expired))
        expected = {c.id for c, owner, shared, expired in made if (owner == viewer or shared) and not expired}
        assert {c.id for c in v.cubes(profile=viewer)} == expected
        rowids = [v._rowid(c.id) for c, *_ in made]
        assert {c.id for c in v.get_many(rowids, profile=viewer).values()} == expected
        for c, *_ in made:
            try:
                v.get(c.id, profile=viewer)
                assert c.id in expected
            except NotFound:
                assert c.id not in expected
