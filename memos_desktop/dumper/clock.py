"""Hybrid logical clock (HLC) stamps for the op log: sortable strings, unique per device.

A stamp is `<ms:013d>-<counter:010d>-<device>`: physical milliseconds, a logical counter that
orders events within one millisecond or after a clock that ran behind, and the device id that
makes it unique. Plain string comparison orders stamps. This module only computes stamps; the
caller persists the clock state.
"""

from dataclasses import dataclass


def stamp(ms: int, counter: int, device: str) -> str:
    return f"{ms:013d}-{counter:010d}-{device}"


def parse(text: str) -> tuple[int, int, str]:
    """(ms, counter, device) of a stamp; ValueError when it is not one."""
    ms, counter, device = text.split("-", 2)
    if len(ms) != 13 or len(counter) != 10 or not device:
        raise ValueError(f"not a clock stamp: {text!r}")
    return int(ms), int(counter), device


@dataclass
class HybridClock:
    """The clock of one device: `tick` for a local event, `observe` for a received one."""

    device: str
    ms: int = 0
    counter: int = 0

    def tick(self, physical_ms: int) -> str:
        """A stamp later than every stamp this clock has issued or observed."""
        if physical_ms > self.ms:
            self.ms, self.counter = physical_ms, 0
        else:
            self.counter += 1
        return stamp(self.ms, self.counter, self.device)

    def observe(self, text: str) -> None:
        """Move past a received stamp, so later local events sort after it."""
        ms, counter, _ = parse(text)
        if (ms, counter) > (self.ms, self.counter):
            self.ms, self.counter = ms, counter
