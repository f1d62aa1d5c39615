"""MemScheduler: which memories a chat turn loads, in which tier, and when memories move tiers.

For each turn it splits the context budget between the *prefix* (pinned and hot memories, in a
stable order so the runtime can serve that token prefix from activation memory) and the *prompt*
(retrieved memories as plaintext, best first), dropping what does not fit. It records every
placement, every use, every promotion to / demotion from the hot tier, and proposals to distil a
stable, often-used memory set into parameter memory, in the vault's `schedule_log` table, so each
decision can be inspected later. It never edits a cube's content and never generates text.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from memos_desktop.vault import MemCube, Vault, schedule

PREFIX_SHARE = 0.4  # at most this share of the memory budget goes to the cached prefix
PROMOTE_USES = 3  # uses within WINDOW that make a memory hot
WINDOW = 14 * 86400  # seconds of usage history that count
DEMOTE_IDLE = 14 * 86400  # a hot memory unused this long goes back to the plaintext tier
STABLE_FOR = 7 * 86400  # a memory unchanged this long is stable enough to distil
DISTILL_MIN_CUBES = 3
DISTILL_USES = 20  # total uses of the stable hot set within WINDOW before proposing distillation


def estimate_tokens(text: str) -> int:
    """A model-free token estimate (about four characters per token) for when no model is loaded."""
    return max(1, (len(text) + 3) // 4)


def memory_line(cube: MemCube) -> str:
    """How one memory appears in a prompt (also what its token cost is measured on)."""
    title = f"{cube.title}: " if cube.title else ""
    return f"{title}{cube.content}"


@dataclass
class Placement:
    cube: MemCube
    tier: str  # "prefix", "prompt" or "dropped"
    reason: str
    tokens: int
    score: float | None = None


@dataclass
class Plan:
    """The scheduler's answer for one turn: prefix memories, prompt memories, what was dropped."""

    turn_id: str
    budget: int
    prefix: list[Placement] = field(default_factory=list)
    prompt: list[Placement] = field(default_factory=list)
    dropped: list[Placement] = field(default_factory=list)

    @property
    def used(self) -> list[MemCube]:
        """Memories in context, in citation order: prefix first, then prompt."""
        return [p.cube for p in self.prefix + self.prompt]

    @property
    def tokens(self) -> int:
        return sum(p.tokens for p in self.prefix + self.prompt)


class MemScheduler:
    """Plans each turn's memory context and moves memories between tiers based on recorded use."""

    def __init__(
        self,
        vault: Vault,
        count_tokens: Callable[[str], int] = estimate_tokens,
        profile: str = "default",
        clock: Callable[[], float] = time.time,
    ):
        self.vault = vault
        self.count_tokens = count_tokens
        self.profile = profile
        self.clock = clock

    # ----- planning -------------------------------------------------------------------------
    def resident(self) -> list[tuple[MemCube, str]]:
        """Pinned and hot memories visible to the profile, stably ordered (pinned first, by id)."""
        rows = schedule.resident_rows(self.vault)
        cubes = self.vault.get_many([r[0] for r in rows], profile=self.profile)
        out = [(cubes[rowid], "pinned" if pinned else "hot") for rowid, pinned in rows if rowid in cubes]
        return sorted(out, key=lambda item: (item[1] != "pinned", item[0].id))

    def plan(self, hits: Sequence[tuple[MemCube, float]], budget: int, turn_id: str) -> Plan:
        """Place resident memories in the prefix and `hits` (best first) in the prompt, within
        `budget` tokens; record every decision."""
        plan = Plan(turn_id=turn_id, budget=budget)
        prefix_budget = int(budget * PREFIX_SHARE)
        spent = 0
        placed: set[str] = set()
        for cube, why in self.resident():
            cost = self.count_tokens(memory_line(cube))
            if spent + cost <= prefix_budget:
                plan.prefix.append(Placement(cube, "prefix", why, cost))
                spent += cost
            else:
                plan.dropped.append(Placement(cube, "dropped", f"{why}, prefix budget full", cost))
            placed.add(cube.id)
        for cube, score in hits:
            if cube.id in placed:
                continue
            placed.add(cube.id)
            cost = self.count_tokens(memory_line(cube))
            if spent + cost <= budget:
                plan.prompt.append(Placement(cube, "prompt", "retrieved", cost, score))
                spent += cost
            else:
                plan.dropped.append(Placement(cube, "dropped", "over budget", cost, score))
        self._log(
            [
                (turn_id, p.cube.id, p.tier, p.reason, {"tokens": p.tokens, "score": p.score})
                for p in plan.prefix + plan.prompt + plan.dropped
            ]
        )
        return plan

    # ----- usage, promotion, demotion, distillation ------------------------------------------
    def record_use(self, plan: Plan, cited: Sequence[str] = ()) -> list[str]:
        """Count the memories of a completed turn as used; promote those used often. Returns the
        ids promoted to the hot tier by this call."""
        used = [c.id for c in plan.used]
        if not used:
            return []
        self.vault.touch(used)
        cited_set = set(cited)
        self._log([(plan.turn_id, cid, "use", "cited" if cid in cited_set else "in context", {}) for cid in used])
        promoted = []
        since = self.clock() - WINDOW
        hot = self._hot()
        for cid in used:
            if cid in hot:
                continue
            uses = self.uses(cid, since)
            if uses >= PROMOTE_USES:
                self._set_tier(cid, "hot", f"used {uses} times in {WINDOW // 86400} days")
                promoted.append(cid)
        return promoted

    def uses(self, cube_id: str, since: float = 0.0) -> int:
        return schedule.uses(self.vault, cube_id, since)

    def maintain(self) -> dict[str, Any]:
        """Demote hot memories that went idle or inactive; propose distilling a stable hot set.
        Returns {"demoted": [...], "proposal": {...} or None}."""
        now = self.clock()
        demoted = []
        for cid in sorted(self._hot()):
            alive = self.vault.is_visible(cid, profile=self.profile)
            last = schedule.last_use(self.vault, cid)
            if not alive:
                self._set_tier(cid, None, "no longer active")
                demoted.append(cid)
            elif last is None or now - last > DEMOTE_IDLE:
                self._set_tier(cid, None, f"unused for {DEMOTE_IDLE // 86400} days")
                demoted.append(cid)
        return {"demoted": demoted, "proposal": self._propose_distillation(now)}

    def _propose_distillation(self, now: float) -> dict[str, Any] | None:
        stable = [cube for cube, _why in self.resident() if now - cube.updated_at >= STABLE_FOR]
        if len(stable) < DISTILL_MIN_CUBES:
            return None
        ids = sorted(c.id for c in stable)
        uses = sum(self.uses(cid, now - WINDOW) for cid in ids)
        if uses < DISTILL_USES:
            return None
        if any(p["cubes"] == ids for p in self.proposals()):
            return None
        detail = {"cubes": ids, "uses": uses, "versions": {c.id: c.version for c in stable}}
        self._log(
            [
                (
                    None,
                    None,
                    "propose_distill",
                    f"{len(ids)} stable memories used {uses} times",
                    detail,
                )
            ]
        )
        return detail

    def proposals(self) -> list[dict[str, Any]]:
        """Distillation proposals (newest last): which cubes, how often used, at which versions."""
        return schedule.proposals(self.vault)

    def decisions(
        self, turn_id: str | None = None, cube_id: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """The recorded decisions, oldest first, for one turn, one memory, or the latest overall."""
        return schedule.decisions(self.vault, turn_id, cube_id, limit)

    def is_hot(self, cube_id: str) -> bool:
        """Whether the memory is in the hot tier (served from the cached prefix)."""
        return schedule.is_hot(self.vault, cube_id)

    def _hot(self) -> set[str]:
        return schedule.hot_ids(self.vault)

    def _set_tier(self, cube_id: str, tier: str | None, reason: str) -> None:
        entry: schedule.Entry = (None, cube_id, "promote" if tier else "demote", reason, {})
        schedule.set_tier(self.vault, cube_id, tier, self.clock(), entry)

    def _log(self, entries: list[schedule.Entry]) -> None:
        schedule.log(self.vault, self.clock(), entries)
