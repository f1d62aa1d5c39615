"""Shared fixtures: an isolated data dir per test, a fast KDF, a deterministic fake embedder.

The fake embedder is for tests of the code *above* embeddings (vault, search, loader, CLI);
tests of the embedders themselves use the real model.
"""

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
PASSPHRASE = "correct horse battery staple"


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


class ScriptedLLM:
    """A stand-in language model for tests of the code *above* the runtimes (reader, assistant).

    Tokens are characters. Chat answers come from `answers` in turn, `delay` seconds per token;
    memory extractions come from `extractions`, a dict {text in the exchange: JSON the model
    "writes"}, continued from wherever the guided output stands. `crash_after=n` raises mid-stream
    after n answer characters. Tests of the runtimes and of guided JSON use the real generated models.
    """

    runtime = "scripted"
    n_ctx = 4096
    path = Path("scripted.gguf")

    def __init__(self, answers=(), extractions=None, crash_after=None, crash_extraction=False, delay=0.0):
        self.answers = list(answers)
        self.delay = delay
        self.generating = False
        self.closed_while_generating = None
        self.extractions = extractions or {}
        self.crash_after = crash_after
        self.crash_extraction = crash_extraction
        self.prompts = []

    def chat_prompt(self, messages, add_generation_prompt=True):
        text = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages)
        return text + ("<|assistant|>\n" if add_generation_prompt else "")

    def tokenize(self, text):
        return [ord(ch) for ch in text]

    def detokenize(self, tokens):
        return "".join(chr(t) for t in tokens)

    def count_tokens(self, text):
        return len(text)

    def generate_tokens(self, tokens, sampling, cancel=None):
        text = self.detokenize(tokens)
        head, _, partial = text.rpartition("<|assistant|>\n")
        if "durable facts" in head:
            if self.crash_extraction:
                raise RuntimeError("scripted crash during extraction")
            exchange = head.rpartition("<|user|>\n")[2]
            target = next((j for key, j in self.extractions.items() if key in exchange), '{"memories": []}')
            rest = target[len(partial) :] if target.startswith(partial) else ""
            yield from (ord(ch) for ch in rest[: sampling.max_tokens])
            return
        self.prompts.append(text)
        answer = self.answers.pop(0) if self.answers else "I have no scripted answer."
        self.generating = True
        try:
            for i, ch in enumerate(answer[: sampling.max_tokens]):
                if self.crash_after is not None and i >= self.crash_after:
                    raise RuntimeError("scripted crash mid-stream")
                if cancel is not None and cancel.is_set():
                    return
                if self.delay:
                    time.sleep(self.delay)
                yield ord(ch)
        finally:
            self.generating = False

    def close(self):
        self.closed_while_generating = self.generating


@pytest.fixture
def scripted_llm():
    return ScriptedLLM
