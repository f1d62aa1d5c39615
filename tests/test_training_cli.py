"""`memos-desktop train` and `memos-desktop adapters ...` driven as a user drives them (subprocesses)."""

import json

import pytest

from memos_desktop.runtime import testmodels as tm
from tests.training_support import fact_texts


@pytest.fixture(autouse=True)
def keyword_only(monkeypatch):
    """These tests are about adapters; the vault need not embed (the subprocesses inherit this)."""
    monkeypatch.setenv("MEMOS_EMBEDDER", "none")


def _remember(cli, texts, tag="people"):
    assert cli("init").returncode == 0
    for text in texts:
        assert cli("remember", "--tag", tag, text).returncode == 0


@pytest.mark.slow
def test_train_then_list_disable_enable_and_remove_an_adapter(cli):
    _remember(cli, fact_texts(5))
    args = ["train", "--from-tag", "people", "--model", str(tm.tiny_mlx()), "--gguf", str(tm.tiny_gguf())]
    trained = cli(*args, "--iters", "30", "--rank", "4", "--json", timeout=600)
    assert trained.returncode == 0, trained.stderr
    result = json.loads(trained.stdout)
    adapter_id = result["adapter"]["id"]
    assert result["evaluation"]["passed"] and result["adapter"]["meta"]["enabled"]

    listed = json.loads(cli("adapters", "list", "--json").stdout)
    assert [(a["id"], a["name"], a["enabled"], a["facts"]) for a in listed] == [(adapter_id, "tag:people", True, 5)]

    assert cli("adapters", "disable", adapter_id).returncode == 0
    assert not json.loads(cli("adapters", "list", "--json").stdout)[0]["enabled"]
    assert cli("adapters", "enable", adapter_id).returncode == 0
    assert json.loads(cli("adapters", "list", "--json").stdout)[0]["enabled"]

    removed = cli("adapters", "rm", adapter_id)
    assert removed.returncode == 0 and "facts are still in the vault" in removed.stdout
    assert json.loads(cli("adapters", "list", "--json").stdout) == []


def test_train_with_too_few_facts_is_a_one_line_error(cli):
    _remember(cli, fact_texts(2))
    done = cli("train", "--from-tag", "people", "--model", str(tm.tiny_mlx()))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: Only 2 fact(s) selected; distilling needs at least 3 (select more facts, or keep these as "
        "plaintext memory)."
    ]


def test_enabling_an_unknown_adapter_is_a_one_line_error(cli):
    assert cli("init").returncode == 0
    done = cli("adapters", "enable", "01NOSUCHADAPTER")
    assert done.returncode == 1 and done.stderr.strip() == "Error: No memory with id 01NOSUCHADAPTER."


@pytest.mark.slow
def test_chat_answers_with_the_enabled_adapter_and_without_it_once_disabled(cli):
    _remember(cli, fact_texts(5))
    args = ["train", "--from-tag", "people", "--model", str(tm.tiny_mlx()), "--gguf", str(tm.tiny_gguf())]
    trained = cli(*args, "--iters", "30", "--rank", "4", "--json", timeout=600)
    assert trained.returncode == 0, trained.stderr
    adapter_id = json.loads(trained.stdout)["adapter"]["id"]
    assert cli("model", "add", str(tm.tiny_gguf()), "--force").returncode == 0

    ask = (
        "chat",
        "-m",
        "Do you remember anything about dentist Alvarez Street?",
        "--max-tokens",
        "10",
        "--json",
        "--no-memory",
        "--temperature",
        "0",
    )
    tuned = cli(*ask)
    assert tuned.returncode == 0, tuned.stderr
    assert cli("adapters", "disable", adapter_id).returncode == 0
    plain = cli(*ask)
    assert plain.returncode == 0, plain.stderr
    assert json.loads(tuned.stdout)["answer"] != json.loads(plain.stdout)["answer"]
    assert json.loads(plain.stdout)["restored_tokens"] == 0  # the tuned prefix state was not reused


@pytest.mark.slow
def test_ctrl_c_stops_training_resumably_and_resume_finishes_it(cli):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.support import REPO

    _remember(cli, fact_texts(4))
    args = ["train", "--from-tag", "people", "--model", str(tm.tiny_mlx()), "--iters", "120", "--rank", "4"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "memos_desktop", *args], stderr=subprocess.PIPE, env=env)
    seen = b""
    deadline = time.time() + 300
    while b"iteration 20/" not in seen and time.time() < deadline and proc.poll() is None:
        seen += os.read(proc.stderr.fileno(), 4096)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "Error: Training stopped at iteration" in err.decode() and "resume" in err.decode()

    resumed = cli(*args, "--resume", "--json", timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["adapter"]["meta"]["metrics"]["iterations"] < 120  # it did not start over


def test_min_age_never_means_no_minimum_and_a_missing_model_is_a_one_line_error(cli):
    _remember(cli, fact_texts(3))
    done = cli("train", "--from-tag", "people", "--min-age", "never")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Error: No MLX model directory chosen; pass it once with --model and it is remembered."
    )
