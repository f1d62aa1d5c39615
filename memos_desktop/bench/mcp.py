"""`bench mcp`: search_memories round trips through the real MCP server, over stdio and HTTP, and add_memory throughput.

Builds an encrypted vault of `n` synthetic memories (bench/search.py's topic texts) whose vectors are
synthetic too but stored under the real embedder's model id, so the server (a subprocess, as an agent
starts it) embeds each query with the real all-MiniLM-L6-v2 and searches a full-size vector index
without re-embedding 100k texts first. The same queries run in the bench process straight through
`operation.search` on the same vault: the difference is what MCP (JSON-RPC, transport, schema
validation, access counts and the audit entry) adds. Transports run one after the other (a write
from another process, such as the other server's audit entry, makes a vault reload its coarse
vector index); each server's CPU time per call (from /proc, Linux) is reported beside wall-clock,
being the figure a loaded machine barely moves. Queries return k=10.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memos_desktop.bench import percentile

PASSPHRASE = "bench-mcp"
K = 10


def run(n: int = 100_000, queries: int = 200, adds: int = 200, embedder: str | None = None) -> dict:
    """Round-trip percentiles per transport and add_memory/s; `embedder="none"` for keyword-only."""
    import anyio

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="memos-bench-mcp-") as tmp:
        home = Path(tmp) / "vault"
        texts, model = _build(home, n, queries + 10, embedder)
        env = {**os.environ, "MEMOS_HOME": str(home), "MEMOS_PASSPHRASE": PASSPHRASE}
        env.pop("MEMOS_EMBEDDER", None)
        if model is None:
            env["MEMOS_EMBEDDER"] = "none"
        in_process = _in_process(home, texts, model is not None)
        result = anyio.run(_over_mcp, home, env, texts, adds)
    result.update(
        n=n,
        queries=queries,
        k=K,
        embedder=model or "none (keyword search only)",
        in_process=in_process,
        seconds=round(time.perf_counter() - started, 1),
    )
    return result


def _build(home: Path, n: int, count: int, embedder: str | None) -> tuple[list[str], str | None]:
    import numpy as np

    from memos_desktop.bench.search import SyntheticEmbedder
    from memos_desktop.vault import Vault

    synthetic = SyntheticEmbedder()
    model = None
    if embedder != "none":
        from memos_desktop.embed.config import status_for

        real = status_for(embedder)[0]
        model = real.model_id if real is not None and real.dim == synthetic.dim else None
    stand_in = _StandIn(synthetic, model) if model else None
    rng = np.random.default_rng(1)
    vault = Vault.create(home, PASSPHRASE, embedder=stand_in)
    try:
        stored = 0
        while stored < n:
            batch = min(2000, n - stored)
            items = [dict(content=t) for t in synthetic.texts(rng, batch, 12)]
            vault.add_many(items, actor="bench", embed=stand_in is not None)
            stored += batch
    finally:
        vault.close()
    return synthetic.texts(rng, count, 3, common=0), model


class _StandIn:
    """Synthetic vectors filed under the real embedder's id (the server then embeds queries for real)."""

    def __init__(self, synthetic, model_id: str) -> None:
        self.embed = synthetic.embed
        self.dim = synthetic.dim
        self.model_id = model_id


def _in_process(home: Path, texts: list[str], vectors: bool) -> dict:
    from memos_desktop.operation.search import search
    from memos_desktop.operation.session import Session

    session = Session.open(home, PASSPHRASE, embedder=vectors)
    try:
        for q in texts[:10]:
            search(session.vault, q, k=K, record=False)
        wall = []
        c0 = time.process_time()
        for q in texts[10:]:
            w0 = time.perf_counter()
            search(session.vault, q, k=K, record=False)
            wall.append((time.perf_counter() - w0) * 1000)
        cpu = (time.process_time() - c0) * 1000
    finally:
        session.close()
    return _summary(wall, cpu)


async def _over_mcp(home: Path, env: dict, texts: list[str], adds: int) -> dict:
    import httpx2
    from mcp import Client, StdioServerParameters
    from mcp.client.streamable_http import streamable_http_client

    from memos_desktop.operation.memstore import add_client
    from memos_desktop.vault import Vault

    with Vault.open(home, PASSPHRASE) as vault:
        token = add_client(vault, "bench", "default")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "memos_desktop", "mcp", "--http", "--port", str(port)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(port, server)
        before = set(_children())
        stdio = Client(StdioServerParameters(command=sys.executable, args=["-m", "memos_desktop", "mcp"], env=env))
        headers = {"Authorization": f"Bearer {token}"}
        http = Client(
            streamable_http_client(
                f"http://127.0.0.1:{port}/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=60)
            )
        )
        async with stdio, http:
            stdio_pid = next(iter(set(_children()) - before - {server.pid}), None)
            clients = {"stdio": (stdio, stdio_pid), "http": (http, server.pid)}
            for client, _ in clients.values():
                for q in texts[:10]:
                    await client.call_tool("search_memories", {"query": q, "k": K})
            searches = {}
            for name, (client, pid) in clients.items():
                # One transport after the other: each search writes (access counts, audit entry), and
                # a write from another process makes a server reload its whole coarse vector index.
                wall = []
                c0 = _cpu_ms(pid)
                for q in texts[10:]:
                    w0 = time.perf_counter()
                    result = await client.call_tool("search_memories", {"query": q, "k": K})
                    wall.append((time.perf_counter() - w0) * 1000)
                    if result.is_error:
                        raise RuntimeError(str(getattr(result.content[0], "text", result.content[0])))
                searches[name] = _summary(wall, _cpu_ms(pid) - c0)
            writes = {}
            for name, (client, pid) in clients.items():
                c0, w0 = _cpu_ms(pid), time.perf_counter()
                for i in range(adds):
                    await client.call_tool(
                        "add_memory", {"text": f"bench note {i} over {name}: " + texts[i % len(texts)]}
                    )
                seconds = time.perf_counter() - w0
                writes[name] = {
                    "adds_per_s": round(adds / seconds, 1),
                    "server_cpu_ms_per_add": round((_cpu_ms(pid) - c0) / adds, 2),
                }
    finally:
        server.terminate()
        server.wait(timeout=20)
    return {"search": searches, "add_memory": writes}


def _summary(wall: list[float], cpu_ms: float) -> dict:
    """Wall-clock percentiles, and the searcher's mean CPU time a query (/proc counts CPU in 10 ms
    ticks, too coarse for one call: the total over every call is divided instead)."""
    return {
        "p50_ms": round(percentile(wall, 50), 2),
        "p95_ms": round(percentile(wall, 95), 2),
        "cpu_ms_per_query": round(cpu_ms / len(wall), 2) if wall and cpu_ms else None,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the MCP server exited before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the MCP server did not start listening")


def _children() -> list[int]:
    """Pids of this process's children (Linux /proc; empty elsewhere)."""
    me = os.getpid()
    out = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            out.append(int(entry.parent.name))
    return out


def _cpu_ms(pid: int | None) -> float:
    """User + system CPU time of `pid` in ms (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def rows(result: dict) -> list[dict]:
    """One row per path: search wall-clock and CPU per query, add_memory calls/s and CPU per add."""

    def row(path: str, search: dict, adds: dict) -> dict:
        return {
            "path": path,
            "p50 ms": search["p50_ms"],
            "p95 ms": search["p95_ms"],
            "cpu ms/query": search["cpu_ms_per_query"],
            "adds/s": adds.get("adds_per_s"),
            "cpu ms/add": adds.get("server_cpu_ms_per_add"),
        }

    out = [row("in process (no MCP)", result["in_process"], {})]
    for name in ("stdio", "http"):
        out.append(row(f"MCP over {name}", result["search"][name], result["add_memory"][name]))
    return out
