"""The model registry: which language models this vault knows, which is the default, and pulls.

Owns the `models` and `default_model` settings of the vault (name → path, runtime, architecture,
context, size, load settings), inspection of a GGUF file or MLX directory without loading it, the
RAM fit check, and `pull` from the Hugging Face hub (resumable, with a progress bar; `HF_ENDPOINT`
points it at a mirror). Registering never copies or deletes model files.
"""

import json
import os
import time
from pathlib import Path

from memos_desktop.errors import ModelError, NotFound
from memos_desktop.runtime import LoadSettings, runtime_for

MODELS_KEY = "models"
DEFAULT_KEY = "default_model"
DEFAULT_CTX = 4096
RAM_OVERHEAD = 512 * 1024**2
NO_MODEL = (
    "No language model is configured. Add one with `memos-desktop model add PATH` (a GGUF file "
    "or an MLX model directory) or download one with `memos-desktop model pull REPO [FILE]`."
)


def inspect_model(path: Path) -> dict:
    """Runtime, architecture, trained context and size of a model, read without loading it."""
    path = Path(path).expanduser().resolve()
    runtime = runtime_for(path)
    if runtime == "llama.cpp":
        from memos_desktop.runtime.llama_backend import gguf_info

        info = gguf_info(path)
        if info["type"] == "adapter":
            raise ModelError(f"{path.name} is a LoRA adapter, not a model.")
        return {
            "path": str(path),
            "runtime": runtime,
            "arch": info["arch"],
            "context_length": info["context_length"],
            "size_bytes": info["size_bytes"],
        }
    config_file = path / "config.json"
    try:
        config = json.loads(config_file.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path} is not an MLX model directory (it needs a config.json).") from None
    except (OSError, ValueError):
        raise ModelError(f"The config.json in {path} is not valid JSON.") from None
    return {
        "path": str(path),
        "runtime": runtime,
        "arch": str(config.get("model_type", "unknown")),
        "context_length": int(config.get("max_position_embeddings") or 0),
        "size_bytes": sum(p.stat().st_size for p in path.rglob("*") if p.is_file()),
    }


def memory_bytes() -> tuple[int, int]:
    """(total, available) physical memory in bytes; available falls back to total."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = page * os.sysconf("SC_PHYS_PAGES")
    try:
        available = page * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError):
        available = total
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    return total, available


def ram_check(size_bytes: int) -> str | None:
    """None when a model of this size fits in memory, else a sentence saying why it does not."""
    total, available = memory_bytes()
    need = size_bytes + RAM_OVERHEAD
    gib = 1024**3
    if need > total:
        return (
            f"This model needs about {need / gib:.1f} GiB of memory but this machine has "
            f"{total / gib:.1f} GiB; choose a smaller or more quantized model."
        )
    if need > available:
        return (
            f"This model needs about {need / gib:.1f} GiB of memory but only {available / gib:.1f} "
            "GiB is free right now; close other programs first."
        )
    return None


def registry(vault) -> dict[str, dict]:
    return dict(vault.get_setting(MODELS_KEY, {}) or {})


def add_model(
    vault,
    path: Path,
    name: str | None = None,
    n_ctx: int | None = None,
    threads: int | None = None,
    check_ram: bool = True,
    verify: bool = True,
) -> dict:
    """Register a model after checking it fits in memory and really loads; return its entry."""
    info = inspect_model(path)
    name = name or Path(info["path"]).name.removesuffix(".gguf")
    models = registry(vault)
    if name in models:
        raise ModelError(f"A model named {name!r} is already registered; remove it first or pick another name.")
    if check_ram and (problem := ram_check(info["size_bytes"])):
        raise ModelError(problem)
    trained = info["context_length"] or DEFAULT_CTX
    entry = {**info, "n_ctx": n_ctx or min(trained, DEFAULT_CTX), "threads": threads, "added_at": time.time()}
    if verify:
        from memos_desktop.runtime import load_backend

        backend = load_backend(Path(info["path"]), LoadSettings(n_ctx=min(entry["n_ctx"], 512), threads=threads))
        try:
            backend.count_tokens(backend.chat_prompt([{"role": "user", "content": "hello"}]))
        finally:
            backend.close()
    models[name] = entry
    vault.set_setting(MODELS_KEY, models)
    if not vault.get_setting(DEFAULT_KEY):
        vault.set_setting(DEFAULT_KEY, name)
    return {"name": name, **entry}


def list_models(vault) -> list[dict]:
    """Registered models, with whether each is the default and whether its files still exist."""
    default = vault.get_setting(DEFAULT_KEY)
    return [
        {"name": name, **entry, "default": name == default, "present": Path(entry["path"]).exists()}
        for name, entry in sorted(registry(vault).items())
    ]


def get_model(vault, name: str | None = None) -> dict:
    """The entry of `name`, or of the default model; ModelError saying how to add one if none."""
    models = registry(vault)
    if name is None:
        name = vault.get_setting(DEFAULT_KEY)
        if not name or name not in models:
            raise ModelError(NO_MODEL)
    if name not in models:
        raise NotFound(f"No model named {name!r}; `memos-desktop model list` shows the registered ones.")
    return {"name": name, **models[name]}


def remove_model(vault, name: str) -> None:
    """Forget a registered model (its files stay where they are)."""
    models = registry(vault)
    if name not in models:
        raise NotFound(f"No model named {name!r}; `memos-desktop model list` shows the registered ones.")
    del models[name]
    vault.set_setting(MODELS_KEY, models)
    if vault.get_setting(DEFAULT_KEY) == name:
        vault.set_setting(DEFAULT_KEY, next(iter(sorted(models)), None))


def set_default(vault, name: str) -> None:
    get_model(vault, name)
    vault.set_setting(DEFAULT_KEY, name)


def load_model(vault, name: str | None = None, n_ctx: int | None = None):
    """Load the named (or default) model with its registered settings; returns an LLMBackend."""
    from memos_desktop.runtime import load_backend

    entry = get_model(vault, name)
    if not Path(entry["path"]).exists():
        raise ModelError(f"The files of model {entry['name']!r} are gone from {entry['path']}.")
    return load_backend(Path(entry["path"]), LoadSettings(n_ctx=n_ctx or entry["n_ctx"], threads=entry.get("threads")))


MLX_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.tiktoken", "*.txt", "*.jinja"]


def pull(repo: str, filename: str | None, dest_root: Path, revision: str | None = None) -> Path:
    """Download a GGUF file (`filename`) or a whole MLX repo from the hub into `dest_root/REPO`.

    Interrupted downloads resume where they stopped on the next call.
    """
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    dest = Path(dest_root) / repo.replace("/", "--")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if filename:
            return Path(hf_hub_download(repo, filename, revision=revision, local_dir=dest))
        return Path(snapshot_download(repo, revision=revision, local_dir=dest, allow_patterns=MLX_PATTERNS))
    except HFValidationError:
        raise ModelError(f"{repo!r} is not a valid hub repository name (expected OWNER/NAME).") from None
    except RepositoryNotFoundError:
        raise ModelError(f"The hub has no repository {repo!r} (or it needs a login).") from None
    except RevisionNotFoundError:
        raise ModelError(f"The repository {repo!r} has no revision {revision!r}.") from None
    except RemoteEntryNotFoundError:
        raise ModelError(f"The repository {repo!r} has no file {filename!r}.") from None
    except LocalEntryNotFoundError:
        raise ModelError("The model hub cannot be reached; check the network and try again.") from None
    except (HfHubHTTPError, OSError) as exc:
        raise ModelError(f"Downloading from {repo!r} failed ({exc}); run the same command again to resume.") from None
    except Exception as exc:  # the hub's HTTP client (requests, httpx or httpx2 by version) raises its own types
        raise ModelError(f"Downloading from {repo!r} failed ({exc}); run the same command again to resume.") from None
