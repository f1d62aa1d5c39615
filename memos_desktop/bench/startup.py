"""Benchmark `startup`: from process start to the TUI's first frame, against `python -c pass`.

Three real processes started the same way in the same run, alternating: `python -c pass` (the
interpreter's floor), a one-label Textual app (the framework's floor) and `memos-desktop`. The two
apps run on a pseudo-terminal of a fixed size; a first frame is the moment the screen's text
arrives on that terminal, then the app gets Ctrl+Q. Reports medians, p95 and ratios, and (on
Linux) the CPU time each app had used by its first frame, all its threads counted: on a shared,
loaded machine wall time mostly measures the other processes, CPU time the app.
"""

import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memos_desktop.bench import median, percentile

MARKER = b"Welcome"  # the first-run unlock screen's first word
COLUMNS, ROWS = 120, 36
REPO = Path(__file__).resolve().parents[2]


def _env(home: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MEMOS_PASSPHRASE"}
    path = [str(REPO), env.get("PYTHONPATH", "")]
    return {**env, "MEMOS_HOME": home, "TERM": "xterm-256color", "PYTHONPATH": os.pathsep.join(p for p in path if p)}


def _cpu_seconds(pid: int) -> float | None:
    """CPU time used so far by every thread of process `pid` (Linux /proc), else None."""
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        return None
    total = 0
    for task in tasks.iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that just ended
    return total / 1e9


def _python_pass(env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return time.perf_counter() - t0


TEXTUAL_FLOOR = """
from textual.app import App
from textual.widgets import Label

class Hello(App):
    BINDINGS = [("ctrl+q", "quit")]

    def compose(self):
        yield Label("Welcome")

Hello().run()
"""


def _first_frame(argv: list[str], env: dict, timeout: float = 30.0) -> tuple[float, float | None]:
    """(seconds from spawning `argv` on a pty to the first frame's text (MARKER) on it, CPU
    seconds the process had used by then, or None where that cannot be read)."""
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    seen = b""
    elapsed = None
    try:
        while elapsed is None:
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"no first frame within {timeout:.0f} s; the TUI printed: {seen[-400:]!r}")
            ready, _, _ = select.select([master], [], [], 0.02)
            if ready:
                try:
                    seen += os.read(master, 1 << 16)
                except OSError:
                    raise RuntimeError(f"the TUI exited before its first frame: {seen[-400:]!r}") from None
                if MARKER in seen:
                    elapsed = time.perf_counter() - t0
                    cpu = _cpu_seconds(proc.pid)
        os.write(master, b"\x11")  # Ctrl+Q
        _drain(master, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return elapsed, cpu


def _drain(master: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Read the terminal until the process exits (a full pty would block its exit)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                os.read(master, 1 << 16)
            except OSError:
                break


def run(repeats: int = 7) -> dict:
    """Start both `repeats` times, alternating, each TUI start on a fresh data dir (first run)."""
    tui, floor, bare = [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as home:
            env = _env(home)
            bare.append(_python_pass(env))
            floor.append(_first_frame([sys.executable, "-c", TEXTUAL_FLOOR], env))
            tui.append(_first_frame([sys.executable, "-m", "memos_desktop"], env))
    walls = {
        "python_pass_s": bare,
        "textual_floor_s": [wall for wall, _ in floor],
        "first_frame_s": [wall for wall, _ in tui],
    }
    stats: dict[str, dict[str, float] | None] = {
        name: {"median": median(values), "p95": percentile(values, 95)} for name, values in walls.items()
    }
    for name, runs in (("textual_floor_cpu_s", floor), ("first_frame_cpu_s", tui)):
        cpu = [c for _, c in runs if c is not None]
        stats[name] = {"median": median(cpu), "p95": percentile(cpu, 95)} if cpu else None
    first, python, textual = (median(walls[name]) for name in ("first_frame_s", "python_pass_s", "textual_floor_s"))
    return {
        "repeats": repeats,
        **stats,
        "over_python_s": first - python,
        "over_textual_floor_s": first - textual,
        "ratio_to_python": first / python,
        "ratio_to_textual_floor": first / textual,
        "target_first_frame_s": 0.5,
        "load_average": os.getloadavg(),
    }


def rows(result: dict) -> list[dict]:
    names = {
        "python_pass_s": "python -c pass",
        "textual_floor_s": "one-label Textual app (first frame)",
        "first_frame_s": "memos-desktop (first frame)",
    }
    cpu = {"textual_floor_s": "textual_floor_cpu_s", "first_frame_s": "first_frame_cpu_s"}
    return [
        {
            "process": label,
            "median_s": result[key]["median"],
            "p95_s": result[key]["p95"],
            "x python": result[key]["median"] / result["python_pass_s"]["median"],
            "cpu_median_s": (result.get(cpu.get(key, "")) or {}).get("median"),
        }
        for key, label in names.items()
    ]
