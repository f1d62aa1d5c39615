"""`memos-desktop bench export`: export and import throughput and peak memory at several sizes.

For each size, a real encrypted vault is filled with generated note-like cubes (about 600
characters, a title, tags and a source; one version each; no embedder: vectors are a derived
index rebuilt by the embedder after import and are not part of the bundle). Export and import each
run in a fresh child process, so `ru_maxrss` is the peak memory of that phase alone; a child that
only opens the vault is the baseline. The first export also tags every version in the op log (a
one-time cost), so the second export is the steady state. MB/s counts bundle bytes; the
baseline in the same run is age decryption alone (pyrage), the ceiling set by the crypto layer.
Each phase also reports its CPU seconds (all threads): on a shared machine wall time is inflated
by other work, CPU time much less.
"""

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PASSPHRASE = "bench passphrase"
_WORDS = [
    "meeting",
    "project",
    "garden",
    "recipe",
    "travel",
    "budget",
    "doctor",
    "family",
    "book",
    "music",
    "invoice",
    "school",
    "train",
    "weekend",
    "coffee",
    "library",
    "password",
    "river",
    "mountain",
    "planning",
    "notes",
    "friend",
    "birthday",
    "report",
    "idea",
]


def _fill(data_dir: Path, n: int, seed: int = 7) -> None:
    from memos_desktop.vault import Vault

    rng = random.Random(seed)
    with Vault.create(data_dir, PASSPHRASE) as vault:
        for start in range(0, n, 5000):
            batch = []
            for i in range(start, min(n, start + 5000)):
                words = " ".join(rng.choice(_WORDS) for _ in range(90))
                batch.append(
                    {
                        "content": f"Note {i}: {words}.",
                        "title": f"notes/{i % 97}.md § {rng.choice(_WORDS)}",
                        "tags": rng.sample(_WORDS, 2),
                        "source": {"path": f"notes/{i % 97}.md", "lines": [i % 400, i % 400 + 12]},
                    }
                )
            vault.add_many(batch)


_CHILD = """
import json, os, sys, threading, time
from pathlib import Path
from memos_desktop.vault import Vault

def rss_mib():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

peak, done = [0.0], threading.Event()
def sample():
    while not done.wait(0.01):
        peak[0] = max(peak[0], rss_mib())

phase, data_dir, bundle, recipient = sys.argv[1:5]
with Vault.open(Path(data_dir), {passphrase!r}) as vault:
    from memos_desktop.dumper import export, importer
    before = peak[0] = rss_mib()
    threading.Thread(target=sample, daemon=True).start()
    started, cpu = time.perf_counter(), time.process_time()
    if phase == "export":
        result = export.export_bundle(vault, Path(bundle), recipients=[recipient])
    else:
        result = importer.import_bundle(vault, Path(bundle))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    done.set()
peak_mib = max(peak[0], rss_mib())
print(json.dumps({{"seconds": seconds, "cpu_seconds": cpu, "rss_before_mib": before, "rss_peak_mib": peak_mib,
                  "result": result}}))
"""


def _child(phase: str, data_dir: Path, bundle: Path, recipient: str = "") -> dict:
    code = _CHILD.format(passphrase=PASSPHRASE)
    out = subprocess.run(
        [sys.executable, "-c", code, phase, str(data_dir), str(bundle), recipient],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def _age_only(bundle: Path, identity: str) -> float:
    """Seconds to only decrypt the bundle (pyrage, into a null sink): the crypto layer's share."""
    import io

    from memos_desktop.dumper.crypto import decrypt_stream

    class _Null(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data) -> int:
            return len(data)

    started = time.perf_counter()
    with open(bundle, "rb") as fh:
        decrypt_stream(fh, _Null(), [identity])
    return time.perf_counter() - started


def _one_size(root: Path, n: int) -> dict:
    src, dst, bundle = root / f"src-{n}", root / f"dst-{n}", root / f"bundle-{n}.age"
    started = time.perf_counter()
    _fill(src, n)
    fill_seconds = time.perf_counter() - started
    from memos_desktop.dumper.crypto import add_peer, device_keys
    from memos_desktop.vault import Vault

    with Vault.open(src, PASSPHRASE) as source:
        card = device_keys(source).card()
    with Vault.create(dst, PASSPHRASE) as vault:
        keys = device_keys(vault)
        add_peer(vault, "source", card)  # paired: only a trusted signer's bundle is imported
    first = _child("export", src, bundle, keys.recipient)
    steady = _child("export", src, bundle, keys.recipient)
    age_seconds = _age_only(bundle, keys.age_identity)
    imported = _child("import", dst, bundle)
    size_mb = steady["result"]["bytes"] / 1e6
    return {
        "cubes": n,
        "bundle_MB": round(size_mb, 1),
        "1st_export_s": round(first["seconds"], 2),
        "export_s": round(steady["seconds"], 2),
        "export_MB/s": round(size_mb / steady["seconds"], 1),
        "export_cpu_s": round(steady["cpu_seconds"], 2),
        "import_s": round(imported["seconds"], 2),
        "import_MB/s": round(size_mb / imported["seconds"], 1),
        "import_cpu_s": round(imported["cpu_seconds"], 2),
        "import_cubes/s": round(n / imported["seconds"]),
        "age_only_MB/s": round(size_mb / age_seconds, 1),
        "export_peak_MiB": round(steady["rss_peak_mib"] - steady["rss_before_mib"], 1),
        "import_peak_MiB": round(imported["rss_peak_mib"] - imported["rss_before_mib"], 1),
        "fill_s": round(fill_seconds, 1),
    }


def run(sizes: list[int]) -> dict:
    """Measure export/import of vaults of `sizes` cubes: per-size results and a metric table."""
    with tempfile.TemporaryDirectory(prefix="memos-bench-export-") as tmp:
        results = [_one_size(Path(tmp), n) for n in sizes]
    table = [
        {"metric": key, **{f"{r['cubes']:,} cubes": r[key] for r in results}} for key in results[0] if key != "cubes"
    ]
    return {
        "sizes": results,
        "rows": table,
        "target_mb_s": 50,
        "note": "encrypted vaults, no embedder (vectors are rebuilt locally after import), one version per cube",
    }
