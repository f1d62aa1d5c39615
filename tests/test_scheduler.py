"""MemScheduler on a real encrypted vault: placement within budget, recorded decisions, tiers."""

import pytest

from memos_desktop.operation import scheduler as sched
from memos_desktop.operation.scheduler import MemScheduler


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def test_pinned_memories_go_to_the_prefix_in_a_stable_order(vault):
    b = vault.add("I am vegetarian", pinned=True, id="01B00000000000000000000000")
    a = vault.add("My name is Ada", pinned=True, id="01A00000000000000000000000")
    other = vault.add("The sky is blue")
    plan = MemScheduler(vault).plan([(other, 1.0)], budget=1000, turn_id="t1")
    assert [p.cube.id for p in plan.prefix] == [a.id, b.id]
    assert [p.cube.id for p in plan.prompt] == [other.id]
    assert plan.used[:2] == [a, b]


def test_retrieved_memories_fill_the_prompt_until_the_budget_and_the_rest_is_dropped(vault):
    cubes = [vault.add(f"memory number {i} " + "word " * 20) for i in range(5)]
    cost = sched.estimate_tokens(sched.memory_line(cubes[0]))
    plan = MemScheduler(vault).plan([(c, 1.0 - i / 10) for i, c in enumerate(cubes)], budget=2 * cost, turn_id="t")
    assert [p.cube.id for p in plan.prompt] == [cubes[0].id, cubes[1].id]
    assert [p.cube.id for p in plan.dropped] == [c.id for c in cubes[2:]]
    assert plan.tokens <= 2 * cost


def test_pinned_memories_beyond_the_prefix_share_are_dropped_with_a_reason(vault):
    for i in range(4):
        vault.add(f"pinned fact {i} " + "detail " * 30, pinned=True)
    plan = MemScheduler(vault).plan([], budget=200, turn_id="t")
    assert plan.prefix and plan.dropped
    assert sum(p.tokens for p in plan.prefix) <= 200 * sched.PREFIX_SHARE
    assert all("prefix budget full" in p.reason for p in plan.dropped)


def test_every_placement_is_recorded_and_inspectable_by_turn(vault):
    pinned = vault.add("I live in Lyon", pinned=True)
    hit = vault.add("My cat is called Tom")
    s = MemScheduler(vault)
    s.plan([(hit, 0.9)], budget=1000, turn_id="conv:1")
    decisions = {(d["cube_id"], d["decision"], d["reason"]) for d in s.decisions(turn_id="conv:1")}
    assert decisions == {(pinned.id, "prefix", "pinned"), (hit.id, "prompt", "retrieved")}


def test_another_profiles_private_pinned_memory_is_never_scheduled(vault):
    vault.add("Bob's secret", pinned=True, profile="bob")
    mine = vault.add("Alice's fact", pinned=True)
    plan = MemScheduler(vault).plan([], budget=1000, turn_id="t")
    assert [p.cube.id for p in plan.prefix] == [mine.id]


def test_a_memory_used_often_is_promoted_to_hot_and_then_served_from_the_prefix(vault, clock):
    cube = vault.add("I prefer window seats")
    s = MemScheduler(vault, clock=clock)
    promoted = []
    for turn in range(sched.PROMOTE_USES):
        plan = s.plan([(cube, 1.0)], budget=1000, turn_id=f"t{turn}")
        assert [p.cube.id for p in plan.prompt] == [cube.id]
        promoted = s.record_use(plan)
    assert promoted == [cube.id]
    assert vault.get(cube.id, touch=False).access_count == sched.PROMOTE_USES
    plan = s.plan([(cube, 1.0)], budget=1000, turn_id="after")
    assert [(p.cube.id, p.reason) for p in plan.prefix] == [(cube.id, "hot")]
    assert s.decisions(cube_id=cube.id)[-1]["decision"] == "prefix"


def test_a_hot_memory_left_unused_is_demoted(vault, clock):
    cube = vault.add("I prefer aisle seats")
    s = MemScheduler(vault, clock=clock)
    for turn in range(sched.PROMOTE_USES):
        s.record_use(s.plan([(cube, 1.0)], budget=1000, turn_id=f"t{turn}"))
    clock.now += sched.DEMOTE_IDLE + 1
    assert s.maintain()["demoted"] == [cube.id]
    assert s.plan([], budget=1000, turn_id="later").prefix == []
    assert [d["decision"] for d in s.decisions(cube_id=cube.id)][-1] == "demote"


def test_a_forgotten_hot_memory_is_demoted(vault, clock):
    cube = vault.add("I drive a red car")
    s = MemScheduler(vault, clock=clock)
    for turn in range(sched.PROMOTE_USES):
        s.record_use(s.plan([(cube, 1.0)], budget=1000, turn_id=f"t{turn}"))
    vault.forget(cube.id)
    assert s.maintain()["demoted"] == [cube.id]


def test_a_stable_often_used_hot_set_yields_one_distillation_proposal(vault, clock):
    cubes = [vault.add(f"stable fact {i}", pinned=True) for i in range(sched.DISTILL_MIN_CUBES)]
    s = MemScheduler(vault, clock=clock)
    clock.now = max(c.updated_at for c in cubes) + 1
    for turn in range(sched.DISTILL_USES // len(cubes) + 1):
        s.record_use(s.plan([], budget=1000, turn_id=f"t{turn}"))
    assert s.maintain()["proposal"] is None  # used often, but not yet stable for long enough
    clock.now += sched.STABLE_FOR
    proposal = s.maintain()["proposal"]
    assert proposal["cubes"] == sorted(c.id for c in cubes)
    assert proposal["uses"] >= sched.DISTILL_USES
    assert s.maintain()["proposal"] is None
    assert len(s.proposals()) == 1


def test_is_hot_says_which_tier_a_memory_is_in(vault, clock):
    cube = vault.add("I cycle to work")
    s = MemScheduler(vault, clock=clock)
    assert not s.is_hot(cube.id)
    for turn in range(sched.PROMOTE_USES):
        s.record_use(s.plan([(cube, 1.0)], budget=1000, turn_id=f"t{turn}"))
    assert s.is_hot(cube.id)
