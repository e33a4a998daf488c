import { expect, test, type Browser } from "@playwright/test";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { ADMIN_STATE } from "../auth";

// Time from navigation to interactive for the Releases tab in Debian's Chromium: the moment
// the last island has hydrated (`main[data-hydrated="true"]`, set by the HydrationMark island,
// which islands hydrate after all the others), measured in the page with a MutationObserver
// against the navigation's start (performance.now()).

const RUNS = 15;
const PAGE = "/apps/hello/releases";

type Sample = { domContentLoaded: number; load: number; interactive: number };

async function measure(browser: Browser, warm: boolean): Promise<Sample> {
  const context = await browser.newContext({ storageState: ADMIN_STATE });
  const page = await context.newPage();
  await page.addInitScript(() => {
    const w = window as unknown as { __interactiveAt?: number };
    new MutationObserver((_, observer) => {
      const main = document.querySelector("main");
      if (main?.getAttribute("data-hydrated") === "true") {
        w.__interactiveAt = performance.now();
        observer.disconnect();
      }
    }).observe(document, { attributes: true, subtree: true, attributeFilter: ["data-hydrated"] });
  });
  if (warm) {
    // Once to fill the HTTP cache (wasm, JS, CSS), then the measured navigation.
    await page.goto(PAGE);
    await expect(page.locator('main[data-hydrated="true"]')).toBeAttached({ timeout: 30_000 });
  }
  await page.goto(PAGE);
  await expect(page.locator('main[data-hydrated="true"]')).toBeAttached({ timeout: 30_000 });
  const sample = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming;
    return {
      domContentLoaded: nav.domContentLoadedEventEnd,
      load: nav.loadEventEnd,
      interactive: (window as unknown as { __interactiveAt: number }).__interactiveAt,
    };
  });
  await context.close();
  return sample;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.round((sorted.length - 1) * p)];
}

test("Releases tab: navigation to interactive", async ({ browser, request }) => {
  // The example app with a few releases, as a user would have it.
  const deploy = await request.post("/api/deploy_example", {
    headers: { accept: "application/json", "content-type": "application/x-www-form-urlencoded" },
    data: "",
  });
  expect(deploy.status()).toBe(200);
  for (let i = 0; i < 20; i++) {
    const res = await request.post("/api/v1/apps/hello/env", { data: { set: { COUNTER: String(i) } } });
    expect(res.status()).toBe(201);
  }

  const rows: string[] = [];
  const results: Record<string, Sample[]> = {};
  for (const warm of [false, true]) {
    const samples: Sample[] = [];
    for (let i = 0; i < RUNS; i++) samples.push(await measure(browser, warm));
    const name = warm ? "warm cache" : "cold cache";
    results[name] = samples;
    const f = (k: keyof Sample, p: number) => `${percentile(samples.map((s) => s[k]), p).toFixed(0)} ms`;
    rows.push(`| ${name} | ${f("domContentLoaded", 0.5)} | ${f("load", 0.5)} | ${f("interactive", 0.5)} | ${f("interactive", 0.9)} |`);
  }
  const table = [
    `## Console: time to interactive, ${PAGE} (${RUNS} runs each)`,
    "",
    "Command: `make bench` → `npx playwright test -c bench.config.ts` (`end2end/bench/tti.spec.ts`), headless Debian Chromium, server on loopback.",
    "",
    "| navigation | DOMContentLoaded p50 | load p50 | interactive p50 | interactive p90 |",
    "| --- | --- | --- | --- | --- |",
    ...rows,
  ].join("\n");
  console.log(`\n${table}\n`);
  writeFileSync(path.join(__dirname, "..", "output", "tti.md"), `${table}\n`);
  writeFileSync(path.join(__dirname, "..", "output", "tti.json"), JSON.stringify(results, null, 2));
});
