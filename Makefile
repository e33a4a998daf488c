# Slipway: `make run` builds and starts the Console; `make test` runs every check.
# Works in a fresh clone (scripts/bootstrap.sh installs missing tools) and with or without
# CARGO_TARGET_DIR set.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := run

# wasm-opt must be binaryen 132 from node_modules (Debian's emits a wasm that never hydrates),
# so node_modules/.bin comes first; cargo-leptos and wasm-bindgen live in ~/.cargo/bin.
export PATH := $(CURDIR)/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)

# Where cargo puts binaries; cargo-leptos writes the site to target/site in either case.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CARGO_BUILD_TARGET_DIR),$(CURDIR)/target)
SERVER_BIN := $(abspath $(TARGET_DIR))/release/slipway-server
SITE_ROOT := $(CURDIR)/target/site
# The API fuzzer (schemathesis, pinned) in a Python venv of its own under the build directory;
# server/tests/openapi_fuzz.rs runs the `st` named by SLIPWAY_SCHEMATHESIS, and is skipped without it.
FUZZ_VENV := $(abspath $(TARGET_DIR))/schemathesis-venv

# Passed to slipway-server by `make run` (override on the command line or in the environment).
SLIPWAY_LISTEN ?= 127.0.0.1:3000
SLIPWAY_ROUTER_LISTEN ?= 127.0.0.1:8080
SLIPWAY_DATA_DIR ?= ./data
SLIPWAY_DATABASE_URL ?=

# What cargo-leptos would set when it runs the server itself.
LEPTOS_ENV_VARS := LEPTOS_OUTPUT_NAME=slipway LEPTOS_SITE_ROOT=$(SITE_ROOT) \
	LEPTOS_SITE_PKG_DIR=pkg LEPTOS_ENV=PROD

.PHONY: deps test-deps fuzz-deps build run test e2e bench fmt lint clippy unit

deps:
	scripts/bootstrap.sh build

test-deps:
	SLIPWAY_FUZZ_VENV='$(FUZZ_VENV)' scripts/bootstrap.sh test

fuzz-deps:
	SLIPWAY_FUZZ_VENV='$(FUZZ_VENV)' scripts/bootstrap.sh fuzzer

build: deps
	cargo leptos build --release --split

run: build
	env $(LEPTOS_ENV_VARS) \
		SLIPWAY_LISTEN='$(SLIPWAY_LISTEN)' \
		SLIPWAY_ROUTER_LISTEN='$(SLIPWAY_ROUTER_LISTEN)' \
		SLIPWAY_DATA_DIR='$(SLIPWAY_DATA_DIR)' \
		$(if $(SLIPWAY_DATABASE_URL),SLIPWAY_DATABASE_URL='$(SLIPWAY_DATABASE_URL)') \
		'$(SERVER_BIN)'

fmt:
	cargo fmt --all

# `ssr` and `hydrate` must never be unified in one cargo invocation: lint them separately.
clippy:
	cargo clippy -p types -p auth -p engine -p server -p cli -p app --features app/ssr --all-targets -- -D warnings
	cargo clippy -p app --features hydrate --all-targets -- -D warnings
	cargo clippy -p frontend --target wasm32-unknown-unknown -- -D warnings

lint: clippy
	cargo fmt --all -- --check

unit: fuzz-deps
	SLIPWAY_SCHEMATHESIS='$(FUZZ_VENV)/bin/st' \
		cargo test -p types -p auth -p engine -p server -p cli -p app --features app/ssr

test: test-deps
	cargo fmt --all -- --check
	$(MAKE) --no-print-directory clippy
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory e2e

# Browser tests against the release build (end2end/global-setup.ts starts the server).
e2e: build
	cd end2end && SLIPWAY_SERVER_BIN='$(SERVER_BIN)' LEPTOS_SITE_ROOT='$(SITE_ROOT)' \
		npx --no-install playwright test

# Speed and size, recorded in docs/benchmarks.md: the engine, the Console's SSR against bare
# axum (wrk), the wasm + JS size, and time to interactive in Chromium.
bench: build
	scripts/bootstrap.sh bench
	cargo bench -p engine --bench engine
	cargo bench -p server --bench console
	scripts/wasm-size.sh
	cd end2end && SLIPWAY_SERVER_BIN='$(SERVER_BIN)' LEPTOS_SITE_ROOT='$(SITE_ROOT)' \
		npx --no-install playwright test -c bench.config.ts
