"""`bench lang`: keyword search in Japanese, Chinese, German and Russian, hit@5 per language.

Reads the check set `assets/langset.json` (Debian's translated man pages, built by
`bench/langset.py`: 25 notes and 25 hand-written queries per language), stores every note in one
plain vault and asks each query, in the same run:

- ours: `operation.search` by keyword alone (the main word index and the script index fused);
- fts5: the same search without the script index (today's `unicode61` word index alone);
- trigram: an FTS5 `trigram` index over the same notes, each query word of 3+ characters OR'ed
  (the alternative to bigrams the script index was chosen against; shorter words cannot match);
- dense: the embedder's nearest notes alone (default all-MiniLM-L6-v2; `--no-dense` skips it).

A query hits when its note is among the first 5 results.
"""

import json
import re
import tempfile
import unicodedata
from pathlib import Path
from typing import cast

CHECK_SET = Path(__file__).resolve().parent.parent / "assets" / "langset.json"
K = 5


def run(path: Path = CHECK_SET, dense: bool = True) -> dict:
    from memos_desktop.operation.search import Weights, search
    from memos_desktop.vault import Vault

    data = json.loads(Path(path).read_text(encoding="utf-8"))["languages"]
    from memos_desktop.embed import Embedder
    from memos_desktop.embed.minilm import MiniLM

    embedder = cast(Embedder, MiniLM()) if dense else None  # its model_id is a read-only property
    rows, per_query = [], []
    with tempfile.TemporaryDirectory() as tmp:
        vault = Vault.open_plain(Path(tmp) / "lang.db", embedder=embedder)
        try:
            notes = [n for lang in data.values() for n in lang["notes"]]
            cubes = vault.add_many([{"content": n["text"]} for n in notes], embed=dense)
            note_at = {vault._rowid(c.id): n["id"] for n, c in zip(notes, cubes, strict=True)}
            note_of = {c.id: n["id"] for n, c in zip(notes, cubes, strict=True)}
            trigram = _trigram_index(notes)
            plain = Weights(script=0.0)
            for lang, entry in data.items():
                hits = {"ours": 0, "fts5": 0, "trigram": 0, "dense": 0}
                for pair in entry["queries"]:
                    q, want = pair["query"], pair["note"]
                    found = {
                        "ours": [note_of[h.cube.id] for h in search(vault, q, K, use_vectors=False, record=False)],
                        "fts5": [
                            note_of[h.cube.id]
                            for h in search(vault, q, K, use_vectors=False, record=False, weights=plain)
                        ],
                        "trigram": _trigram_search(trigram, q),
                    }
                    if embedder is not None:
                        found["dense"] = [note_at[r] for r, _ in vault.knn(embedder.embed([q])[0], K)]
                    for name, got in found.items():
                        hits[name] += want in got
                    outcome = {name: want in got for name, got in found.items()}
                    per_query.append({"language": lang, "query": q, "note": want, **outcome})
                count = len(entry["queries"])
                rows.append(
                    {
                        "language": lang,
                        "notes": len(entry["notes"]),
                        "queries": count,
                        "ours": hits["ours"] / count,
                        "fts5": hits["fts5"] / count,
                        "trigram": hits["trigram"] / count,
                        "dense": hits["dense"] / count if dense else None,
                    }
                )
        finally:
            vault.close()
    sources = {lang: {"source": e["source"], "licence": e["licence"]} for lang, e in data.items()}
    model = embedder.model_id if embedder is not None else None
    return {"k": K, "rows": rows, "queries": per_query, "sources": sources, "dense_model": model}


def _trigram_index(notes: list[dict]):
    import apsw

    conn = apsw.Connection(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(text, tokenize = 'trigram remove_diacritics 1')")
    conn.executemany("INSERT INTO t (text, rowid) VALUES (?, ?)", [(n["text"], i) for i, n in enumerate(notes)])
    return conn, [n["id"] for n in notes]


def _trigram_search(index, query: str) -> list[str]:
    conn, ids = index
    words = [w for w in re.findall(r"\w+", unicodedata.normalize("NFKC", query).casefold()) if len(w) >= 3]
    if not words:
        return []
    match = " OR ".join(f'"{w}"' for w in words)
    rows = conn.execute("SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT ?", (match, K)).fetchall()
    return [ids[r] for (r,) in rows]
