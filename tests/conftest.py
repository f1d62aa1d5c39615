"""Shared fixtures: an isolated data dir per test, a fast KDF, a deterministic fake embedder.

The fake embedder is for tests of the code *above* embeddings (vault, search, loader, CLI);
tests of the embedders themselves use the real model.
"""

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Each test gets its own data dir and passphrase; Argon2id uses little memory in tests."""
    home = tmp_path / "memos-home"
    monkeypatch.setenv("MEMOS_HOME", str(home))
    monkeypatch.setenv("MEMOS_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("MEMOS_ARGON2_MEMORY_KIB", "8192")
    return home


class FakeEmbedder:
    """Deterministic bag-of-words hashing embedder (64 dims): same words → close vectors."""

    model_id = "test/fake-hash-64"
    dim = 64

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = int(hashlib.blake2b(word.encode(), digest_size=8).hexdigest(), 16)
                out[i, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
            norm = np.linalg.norm(out[i])
            if norm:
                out[i] /= norm
        return out


@pytest.fixture
def fake_embedder():
    return FakeEmbedder()


@pytest.fixture
def vault(isolated_home, fake_embedder):
    from memos_desktop.vault import Vault

    v = Vault.create(isolated_home, PASSPHRASE, embedder=fake_embedder)
    yield v
    v.close()


def run_cli(*args: str, input: str | None = None, env: dict | None = None, timeout: float = 120):
    """Run `memos-desktop ARGS` as a user would: a real process, this checkout's code."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "memos_desktop", *args],
        input=input,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli
