#!/usr/bin/env bash
# Prints the size of what the browser downloads to make the Console interactive (the release
# build's wasm and JS glue), raw and gzipped (-9), as a Markdown table. Run after `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."
pkg=target/site/pkg
total_raw=0
total_gz=0
echo "## Console: wasm + JS size"
echo
echo "Command: \`make bench\` → \`scripts/wasm-size.sh\` (after \`cargo leptos build --release\`)."
echo
echo "| file | raw | gzip -9 |"
echo "| --- | --- | --- |"
for f in "$pkg/slipway.wasm" "$pkg/slipway.js"; do
  [ -f "$f" ] || { echo "$f is missing: run make build first" >&2; exit 1; }
  raw=$(wc -c < "$f")
  gz=$(gzip -9 -c "$f" | wc -c)
  total_raw=$((total_raw + raw))
  total_gz=$((total_gz + gz))
  printf '| %s | %d KB | %d KB |\n' "$(basename "$f")" $((raw / 1024)) $((gz / 1024))
done
verdict="❌"
[ "$total_gz" -le $((150 * 1024)) ] && verdict="✅"
printf '| **every page** | %d KB | **%d KB** (goal ≤ 150 KB %s) |\n' $((total_raw / 1024)) $((total_gz / 1024)) "$verdict"
# Lazily loaded chunks (cargo leptos build --split): only the pages that use them fetch them.
lazy_raw=0
lazy_gz=0
for f in "$pkg"/split_*.wasm "$pkg"/__wasm_split*.js; do
  [ -f "$f" ] || continue
  raw=$(wc -c < "$f")
  gz=$(gzip -9 -c "$f" | wc -c)
  lazy_raw=$((lazy_raw + raw))
  lazy_gz=$((lazy_gz + gz))
  printf '| %s (lazy) | %d KB | %d KB |\n' "$(basename "$f" | sed 's/_[0-9]\{6,\}//')" $((raw / 1024)) $((gz / 1024))
done
if [ "$lazy_gz" -gt 0 ]; then
  printf '| **the Environment editor page** (every page + lazy) | %d KB | **%d KB** |\n' $(((total_raw + lazy_raw) / 1024)) $(((total_gz + lazy_gz) / 1024))
fi
