#!/usr/bin/env bash
# Installs what building and testing Slipway needs, when it is missing. Idempotent.
#   scripts/bootstrap.sh build   - Rust target, cargo-leptos, wasm-bindgen-cli, wasm-opt (npm binaryen)
#   scripts/bootstrap.sh test    - the above, plus Playwright, Debian's chromium and the API fuzzer
#   scripts/bootstrap.sh bench   - the above, plus wrk
#   scripts/bootstrap.sh fuzzer  - only the API fuzzer: schemathesis, pinned in
#                                  scripts/schemathesis-requirements.txt, in a Python virtual
#                                  environment at $SLIPWAY_FUZZ_VENV (default: the build
#                                  directory's schemathesis-venv, as the Makefile computes it)
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LEPTOS_VERSION=0.3.10
WASM_BINDGEN_VERSION=0.2.129
what=${1:-build}
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"

say() { printf '==> %s\n' "$*" >&2; }

# Where cargo builds (as the Makefile computes it); the fuzzer's venv lives under it.
TARGET_DIR=${CARGO_TARGET_DIR:-${CARGO_BUILD_TARGET_DIR:-$PWD/target}}
FUZZ_VENV=${SLIPWAY_FUZZ_VENV:-$TARGET_DIR/schemathesis-venv}
FUZZ_REQUIREMENTS=scripts/schemathesis-requirements.txt

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

# schemathesis and every package it pulls in, at the pinned versions. The venv keeps a copy of
# the list it was made from: an unchanged list means nothing to do.
install_fuzzer() {
  if [ -x "$FUZZ_VENV/bin/st" ] && cmp -s "$FUZZ_REQUIREMENTS" "$FUZZ_VENV/installed-requirements.txt"; then
    return 0
  fi
  command -v python3 >/dev/null || apt_install python3 python3-venv
  say "installing schemathesis ($(grep '^schemathesis==' "$FUZZ_REQUIREMENTS")) into $FUZZ_VENV"
  rm -rf "$FUZZ_VENV"
  python3 -m venv "$FUZZ_VENV"
  "$FUZZ_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$FUZZ_REQUIREMENTS"
  "$FUZZ_VENV/bin/pip" check >/dev/null
  cp "$FUZZ_REQUIREMENTS" "$FUZZ_VENV/installed-requirements.txt"
}

if [ "$what" = fuzzer ]; then
  install_fuzzer
  say "fuzzer ready: $FUZZ_VENV/bin/st"
  exit 0
fi

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
  install_fuzzer
fi
if [ "$what" = bench ]; then
  command -v wrk >/dev/null || apt_install wrk
fi
say "toolchain ready"
