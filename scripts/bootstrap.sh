#!/usr/bin/env bash
# Installs what building and testing Slipway needs, when it is missing. Idempotent.
#   scripts/bootstrap.sh build   - Rust target, cargo-leptos, wasm-bindgen-cli, wasm-opt (npm binaryen)
#   scripts/bootstrap.sh test    - the above, plus Playwright and Debian's chromium
#   scripts/bootstrap.sh bench   - the above, plus wrk
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LEPTOS_VERSION=0.3.10
WASM_BINDGEN_VERSION=0.2.129
what=${1:-build}
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"

say() { printf '==> %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if [ $apt_updated -eq 0 ]; then $sudo apt-get update -qq; apt_updated=1; fi
  say "installing ${missing[*]} from Debian"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

rustup target list --installed | grep -qx wasm32-unknown-unknown || {
  say "adding the wasm32-unknown-unknown target"; rustup target add wasm32-unknown-unknown; }

if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
  say "installing cargo-leptos $CARGO_LEPTOS_VERSION (once; takes a while)"
  cargo install --locked cargo-leptos --version "$CARGO_LEPTOS_VERSION" --features no_downloads
fi
if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  cargo install --locked wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi
# npm packages pinned in package.json/package-lock.json: binaryen (wasm-opt), @playwright/test.
if [ ! -x node_modules/.bin/wasm-opt ] || [ ! -d node_modules/@playwright/test ]; then
  say "installing npm packages (binaryen, playwright)"
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ "$what" = test ] || [ "$what" = bench ]; then
  [ -x /usr/bin/chromium ] || apt_install chromium
fi
if [ "$what" = bench ]; then
  command -v wrk >/dev/null || apt_install wrk
fi
say "toolchain ready"
