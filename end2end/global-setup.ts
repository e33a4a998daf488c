// Starts the real release server (target/release/slipway-server) on a free port with a fresh
// data dir, waits (bounded) for /healthz, and returns the teardown that stops it.
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

import { ADMIN_PASSWORD, ADMIN_STATE } from "./auth";

const repoRoot = path.resolve(__dirname, "..");
const outputDir = path.join(__dirname, "output");
const STARTUP_TIMEOUT_MS = 30_000;
const SHUTDOWN_TIMEOUT_MS = 10_000;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address();
      if (address === null || typeof address === "string") {
        srv.close();
        reject(new Error("could not get a free port"));
        return;
      }
      srv.close(() => resolve(address.port));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
}

async function waitForHealthz(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  let lastError = "";
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`slipway-server exited early (${child.exitCode ?? child.signalCode}); see end2end/output/server.log`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      if (res.ok && (await res.text()) === "ok") return;
      lastError = `HTTP ${res.status}`;
    } catch (e) {
      lastError = String(e);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`slipway-server not healthy after ${STARTUP_TIMEOUT_MS} ms: ${lastError}`);
}

/** Signs in as admin the way the Console's form does and saves the session for the tests. */
async function signIn(baseURL: string): Promise<void> {
  const res = await fetch(`${baseURL}/api/login`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
    body: new URLSearchParams({ username: "admin", password: ADMIN_PASSWORD, next: "/" }).toString(),
  });
  const cookie = res.headers.getSetCookie().find((c) => c.startsWith("slipway_session="));
  if (!res.ok || !cookie) throw new Error(`signing in as admin failed: HTTP ${res.status}`);
  const value = cookie.split(";")[0].slice("slipway_session=".length);
  mkdirSync(path.dirname(ADMIN_STATE), { recursive: true });
  writeFileSync(
    ADMIN_STATE,
    JSON.stringify({
      cookies: [
        { name: "slipway_session", value, domain: "127.0.0.1", path: "/", expires: -1, httpOnly: true, secure: false, sameSite: "Strict" },
      ],
      origins: [],
    }),
  );
}

export default async function globalSetup(): Promise<() => Promise<void>> {
  const bin =
    process.env.SLIPWAY_SERVER_BIN ??
    path.join(process.env.CARGO_TARGET_DIR ?? path.join(repoRoot, "target"), "release", "slipway-server");
  const siteRoot = process.env.LEPTOS_SITE_ROOT ?? path.join(repoRoot, "target", "site");
  if (!existsSync(bin)) throw new Error(`${bin} not found: run \`make build\` first`);
  if (!existsSync(path.join(siteRoot, "pkg"))) throw new Error(`${siteRoot}/pkg not found: run \`make build\` first`);

  mkdirSync(outputDir, { recursive: true });
  const dataDir = mkdtempSync(path.join(tmpdir(), "slipway-e2e-"));
  const port = await freePort();
  const baseURL = `http://127.0.0.1:${port}`;
  const log = createWriteStream(path.join(outputDir, "server.log"));

  // Hermetic: no SLIPWAY_* from the caller's environment; everything is passed as flags.
  const env: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith("SLIPWAY_")),
  );
  Object.assign(env, {
    LEPTOS_OUTPUT_NAME: "slipway",
    LEPTOS_SITE_ROOT: siteRoot,
    LEPTOS_SITE_PKG_DIR: "pkg",
    LEPTOS_ENV: "PROD",
    RUST_LOG: process.env.RUST_LOG ?? "info",
  });
  // The first admin's password (the server creates `admin` with it on its empty database).
  Object.assign(env, { SLIPWAY_ADMIN_PASSWORD: ADMIN_PASSWORD });
  const args = [
    "--listen", `127.0.0.1:${port}`,
    "--router-listen", "127.0.0.1:0",
    "--data-dir", dataDir,
    "--examples-dir", path.join(repoRoot, "examples"),
  ];
  const child = spawn(bin, args, { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), SHUTDOWN_TIMEOUT_MS);
      await exited(child);
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };

  try {
    await waitForHealthz(`${baseURL}/healthz`, child);
  } catch (e) {
    await stop();
    throw e;
  }
  process.env.SLIPWAY_E2E_BASE_URL = baseURL;
  await signIn(baseURL);
  return stop;
}
