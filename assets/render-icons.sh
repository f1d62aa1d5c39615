#!/usr/bin/env bash
# Renders the app icon's PNG sizes from icons/memos-desktop.svg (needs rsvg-convert: Debian's
# librsvg2-bin, Homebrew's librsvg). The PNGs are committed; run this after editing the SVG.
set -euo pipefail
cd "$(dirname "$0")/icons"
for size in 16 24 32 48 64 128 256 512; do
    mkdir -p "${size}x${size}"
    rsvg-convert --width "$size" --height "$size" --output "${size}x${size}/memos-desktop.png" memos-desktop.svg
done
