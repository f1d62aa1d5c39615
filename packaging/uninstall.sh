#!/usr/bin/env bash
# Removes what packaging/install.sh installed: the app's environment (venv, uv tool or pipx), the
# `memos-desktop` command, the launcher, icon and metainfo. Your vault, models and adapters stay
# unless you ask for --purge and confirm it by typing a sentence.
#
#   bash packaging/uninstall.sh [--purge] [--yes-delete-my-data]
#
#   --purge               also delete the vault (every memory), downloaded models and the cache
#   --yes-delete-my-data  confirm --purge without the typed confirmation (for scripts)
set -euo pipefail

say() { printf 'memos-desktop uninstall: %s\n' "$*"; }
die() {
    printf 'memos-desktop uninstall: %s\n' "$*" >&2
    exit 1
}

purge=0 confirmed=0
for arg in "$@"; do
    case "$arg" in
        --purge) purge=1 ;;
        --yes-delete-my-data) confirmed=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $arg (see --help)" ;;
    esac
done

os="$(uname -s)"
case "$os" in
    Darwin) data_root="$HOME/Library/Application Support" cache_root="$HOME/Library/Caches" ;;
    *) data_root="${XDG_DATA_HOME:-$HOME/.local/share}" cache_root="${XDG_CACHE_HOME:-$HOME/.cache}" ;;
esac
app="$data_root/memos-desktop"
bin="${MEMOS_BIN_DIR:-$HOME/.local/bin}"
share="${XDG_DATA_HOME:-$HOME/.local/share}"
# The vault is wherever the app looks for it: $MEMOS_HOME, else the platform's data dir.
data="${MEMOS_HOME:-$app}"
cache="${MEMOS_CACHE:-$cache_root/memos-desktop}"

# Confirm before removing anything, so a refused purge leaves everything as it was.
if [ "$purge" = 1 ] && [ "$confirmed" = 0 ]; then
    if [ ! -t 0 ]; then
        die "--purge deletes your vault; not run from a terminal, it needs --yes-delete-my-data as well. Nothing was removed."
    fi
    printf 'This deletes every memory in %s and the cache in %s, forever.\n' "$data" "$cache"
    printf 'Type "delete my memories" to go on: '
    read -r answer || answer=""
    [ "$answer" = "delete my memories" ] || die "not confirmed; nothing was removed."
fi

# uv and pipx remove the command from the dir install.sh linked it into.
export UV_TOOL_BIN_DIR="$bin" PIPX_BIN_DIR="$bin"
removed=0
if command -v uv >/dev/null 2>&1 && uv tool list 2>/dev/null | grep -q '^memos-desktop '; then
    uv tool uninstall memos-desktop >/dev/null && removed=1 && say "removed the uv tool memos-desktop."
fi
if command -v pipx >/dev/null 2>&1 && pipx list --short 2>/dev/null | grep -q '^memos-desktop '; then
    pipx uninstall memos-desktop >/dev/null && removed=1 && say "removed the pipx app memos-desktop."
fi
if [ -e "$app/venv" ] || [ -L "$app/venv" ] || [ -d "$app/venvs" ]; then
    rm -rf "$app/venv" "$app/venvs"
    removed=1
    say "removed the environment in $app."
fi
rm -f "$app/install-failed.log"
# The command on PATH is ours when it is a link (into our venv, uv's or pipx's environment).
if [ -L "$bin/memos-desktop" ]; then
    rm -f "$bin/memos-desktop"
    removed=1
elif [ -e "$bin/memos-desktop" ]; then
    say "left $bin/memos-desktop: it was not installed by install.sh (pip uninstall memos-desktop removes it)."
fi

desktop_files=("$share/applications/memos-desktop.desktop" "$share/metainfo/io.github.memos_desktop.MemosDesktop.metainfo.xml")
for icon in "$share"/icons/hicolor/*/apps/memos-desktop.png "$share"/icons/hicolor/*/apps/memos-desktop.svg; do
    desktop_files+=("$icon")
done
for f in "${desktop_files[@]}"; do
    if [ -e "$f" ]; then rm -f "$f" && removed=1; fi
done
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$share/applications" 2>/dev/null || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$share/icons/hicolor" 2>/dev/null || true
if [ "$removed" = 1 ]; then
    say "memos-desktop is uninstalled."
else
    say "memos-desktop was not installed for $(id -un)."
fi

if [ "$purge" = 1 ]; then
    rm -rf "$data" "$cache" "$app"
    say "deleted the vault, models and cache ($data, $cache)."
elif [ -e "$data" ]; then
    say "your vault and models are kept in $data (uninstall.sh --purge deletes them)."
fi
