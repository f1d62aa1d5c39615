"""Shared fixtures: an isolated data dir per test, a fast KDF, a deterministic fake embedder.
Plain helpers live in `tests/support.py`; tests import them from there, never from this module.

The fake embedder is for tests of the code *above* embeddings (vault, search, loader, CLI);
tests of the embedders themselves use the real model.
"""

import pytest

from tests.support import PASSPHRASE, FakeEmbedder, ScriptedLLM, run_cli


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Each test gets its own data dir and passphrase; Argon2id uses little memory in tests."""
    home = tmp_path / "memos-home"
    monkeypatch.setenv("MEMOS_HOME", str(home))
    monkeypatch.setenv("MEMOS_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("MEMOS_ARGON2_MEMORY_KIB", "8192")
    return home


@pytest.fixture
def fake_embedder():
    return FakeEmbedder()


@pytest.fixture
def vault(isolated_home, fake_embedder):
    from memos_desktop.vault import Vault

    v = Vault.create(isolated_home, PASSPHRASE, embedder=fake_embedder)
    yield v
    v.close()


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def scripted_llm():
    return ScriptedLLM
