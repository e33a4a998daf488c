import { expect, test, type Page } from "@playwright/test";
import path from "node:path";
import { ADMIN_STATE } from "../auth";

// One server serves every test (global-setup.ts), and tests run in this order: the empty
// Console first, then the example app is deployed and promoted.

const outputDir = path.join(__dirname, "..", "output");

/** Fails the test on any uncaught exception in the page (a wasm panic, a hydration error). */
function trackPageErrors(page: Page): Error[] {
  const errors: Error[] = [];
  page.on("pageerror", (error) => errors.push(error));
  return errors;
}

/** Leptos sets data-hydrated="true" on <main> from an effect, which only runs after hydration. */
async function waitForHydration(page: Page) {
  await expect(page.locator('main[data-hydrated="true"]')).toBeAttached({ timeout: 20_000 });
}

/** The release IDs on the Releases page, newest first (once the table is there). */
async function releaseIds(page: Page): Promise<string[]> {
  await expect(page.locator("tr[data-release]").first()).toBeVisible();
  return page.locator("tr[data-release]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-release") ?? ""));
}

/** Opens the release's Promote confirmation, checks what it says will change, and confirms. */
async function promote(page: Page, release: string, change: string | RegExp) {
  const row = page.locator(`tr[data-release="${release}"]`);
  await row.locator("summary").click();
  await expect(row.locator(".confirm-body")).toContainText(change);
  await row.getByRole("button", { name: `Promote ${release}` }).click();
}

/** Reloads the Releases page until `release` shows `status` (bounded by the expect timeout). */
async function waitForStatus(page: Page, app: string, release: string, status: string) {
  await expect
    .poll(
      async () => {
        await page.goto(`/apps/${app}/releases`);
        return (await page.locator(`tr[data-release="${release}"] .status`).textContent())?.trim();
      },
      { timeout: 60_000, intervals: [200, 500, 1000] },
    )
    .toBe(status);
}

test("an empty Console tells a newcomer what to do, without JavaScript too", async ({ browser }) => {
  const context = await browser.newContext({ javaScriptEnabled: false, storageState: ADMIN_STATE });
  const page = await context.newPage();
  const response = await page.goto("/");
  expect(response?.status()).toBe(200);
  await expect(page.getByRole("heading", { level: 1, name: "Apps" })).toBeVisible();
  await expect(page.getByRole("heading", { name: "No apps yet" })).toBeVisible();
  await expect(page.getByRole("button", { name: "Deploy the example app" })).toBeVisible();
  await expect(page.getByTestId("server-version")).toHaveText(/^\d+\.\d+\.\d+/);
  await expect(page.locator("main")).toHaveAttribute("data-hydrated", "false");
  await context.close();
});

test("unknown pages and apps answer 404 with a readable page", async ({ page }) => {
  let response = await page.goto("/no/such/page");
  expect(response?.status()).toBe(404);
  await expect(page.getByRole("heading", { level: 1, name: "Page not found" })).toBeVisible();
  response = await page.goto("/apps/nope/releases");
  expect(response?.status()).toBe(404);
  await expect(page.getByRole("alert")).toContainText("app nope was not found");
});

test("deploy the example app in one click and watch it become active", async ({ page }) => {
  const errors = trackPageErrors(page);
  await page.goto("/");
  await waitForHydration(page);
  await page.getByRole("button", { name: "Deploy the example app" }).click();
  await expect(page.getByRole("status")).toContainText("Deploying hello");
  // The hydrated page refetched the apps: the table replaces the empty state.
  await expect(page.getByTestId("apps").getByRole("link", { name: "hello" })).toBeVisible();
  await page.screenshot({ path: path.join(outputDir, "apps.png"), fullPage: true });

  await page.getByTestId("apps").getByRole("link", { name: "hello" }).click();
  await expect(page.getByRole("heading", { level: 1 })).toHaveText("Releases of hello");
  const [first] = await releaseIds(page);
  expect(first).toMatch(/^R[A-Z]{10}$/);
  await waitForStatus(page, "hello", first, "active");
  await expect(page.locator(`tr[data-release="${first}"]`)).toContainText("the example app");
  expect(errors).toEqual([]);
});

test("promote an older release and watch it become active", async ({ page }) => {
  const errors = trackPageErrors(page);
  // A second release of the app, made through the same server function the button calls.
  const res = await page.request.post("/api/deploy_example", {
    headers: { accept: "application/json", "content-type": "application/x-www-form-urlencoded" },
    data: "",
  });
  expect(res.status()).toBe(200);
  await page.goto("/apps/hello/releases");
  const [newest, older] = await releaseIds(page);
  await waitForStatus(page, "hello", newest, "active");
  // Active, but its promotion runs until the old processes are gone; another waits for that.
  await waitForNoRollout(page, "hello");
  await waitForHydration(page);

  await expect(page.locator(`tr[data-release="${newest}"] summary`)).toHaveCount(0);
  await promote(page, older, /build B[A-Z]{10} → B[A-Z]{10}/);
  await expect(page.getByTestId("promote-result")).toContainText(/Promotion P[A-Z]{10} started/);
  await waitForStatus(page, "hello", older, "active");
  await expect(page.locator(`tr[data-release="${newest}"] .status`)).toHaveText("");
  await page.screenshot({ path: path.join(outputDir, "releases.png"), fullPage: true });
  expect(errors).toEqual([]);
});

test("the Promote form works without JavaScript", async ({ browser }) => {
  const context = await browser.newContext({ javaScriptEnabled: false, storageState: ADMIN_STATE });
  const page = await context.newPage();
  await waitForNoRollout(page, "hello");
  await page.goto("/apps/hello/releases");
  const ids = await releaseIds(page);
  const active = await page.locator("tr[data-release] .status-active").count();
  expect(active).toBe(1);
  // Promote whichever release is not active.
  const target = (
    await Promise.all(
      ids.map(async (id) => ((await page.locator(`tr[data-release="${id}"] .status`).textContent())?.trim() === "active" ? null : id)),
    )
  ).find((id) => id !== null) as string;
  await promote(page, target, /build B[A-Z]{10} → B[A-Z]{10}/);
  // A plain form post, redirected back to the Releases page.
  await expect(page).toHaveURL(/\/apps\/hello\/releases/);
  await waitForStatus(page, "hello", target, "active");
  await context.close();
});

test("a promote whose processes fail health rolls back live, in every open tab, and says why", async ({ page, context }) => {
  const errors = trackPageErrors(page);
  // A release of the example whose /health answers 500 (made through the JSON API).
  const res = await page.request.post("/api/v1/apps/hello/env", { data: { set: { EXAMPLE_FAIL_HEALTH: "1" } } });
  expect(res.status()).toBe(201);
  const bad: string = (await res.json()).release.id;

  await page.goto("/apps/hello/releases");
  await waitForHydration(page);
  const other = await context.newPage();
  await other.goto("/apps/hello/releases");
  await waitForHydration(other);

  await promote(page, bad, "add:EXAMPLE_FAIL_HEALTH");
  // No reload from here on: the pages follow the engine's events.
  for (const p of [page, other]) {
    await expect(p.getByTestId("rollout")).toHaveAttribute("data-state", "running", { timeout: 10_000 });
    await expect(p.getByTestId("rollout")).toContainText("started process web.1");
  }
  await page.screenshot({ path: path.join(outputDir, "releases-promoting.png"), fullPage: true });
  for (const p of [page, other]) {
    await expect(p.getByTestId("rollout")).toHaveAttribute("data-state", "rolled-back", { timeout: 40_000 });
    await expect(p.getByTestId("rollout-reason")).toContainText("was not healthy within its grace of 10 s: /health answered 500");
    await expect(p.getByTestId("failed-output")).toContainText("GET /health");
    await expect(p.locator(`tr[data-release="${bad}"] .status`)).toContainText("rolled back: web.");
  }
  await page.screenshot({ path: path.join(outputDir, "releases-rolled-back.png"), fullPage: true });
  expect(errors).toEqual([]);
});

test("release detail: the difference from the active release, its promotions, and Rollback to it", async ({ page }) => {
  const errors = trackPageErrors(page);
  await page.goto("/apps/hello/releases");
  const rows = page.locator("tr[data-release]");
  const statuses = await rows.evaluateAll((trs) =>
    trs.map((tr) => [tr.getAttribute("data-release") ?? "", tr.querySelector(".status")?.textContent?.trim() ?? ""]),
  );
  const failed = statuses.find(([, status]) => status.startsWith("rolled back"))?.[0] as string;
  const healthy = statuses.find(([, status]) => status === "")?.[0] as string;
  expect(failed).toBeTruthy();
  expect(healthy).toBeTruthy();

  // The release that rolled back: what differs, and why its promotion failed.
  await page.getByRole("link", { name: failed }).click();
  await expect(page.getByRole("heading", { level: 1 })).toHaveText(`Release ${failed}`);
  await expect(page.getByTestId("diff")).toContainText("add:EXAMPLE_FAIL_HEALTH");
  await expect(page.getByTestId("env")).toContainText("EXAMPLE_FAIL_HEALTH=****");
  await expect(page.locator('details.promotion[data-state="rolled-back"]')).toHaveCount(1);
  await page.locator('details.promotion[data-state="rolled-back"] summary').click();
  await expect(page.getByTestId("promotions")).toContainText("/health answered 500");

  // Rollback to a healthy older release: a new release like it, promoted.
  await page.goto(`/apps/hello/releases/${healthy}`);
  await waitForHydration(page);
  await page.getByRole("button", { name: "Rollback to this release" }).click();
  await expect(page.getByTestId("rollback-result")).toContainText("from this release and started promoting it");
  await page.screenshot({ path: path.join(outputDir, "release-detail.png"), fullPage: true });
  await page.goto("/apps/hello/releases");
  const [newest] = await releaseIds(page);
  await expect(page.locator(`tr[data-release="${newest}"]`)).toContainText(`rollback to ${healthy}`);
  await waitForStatus(page, "hello", newest, "active");

  // The Builds tab lists the builds with the releases they made.
  await page.getByRole("link", { name: "Builds", exact: true }).click();
  await expect(page.getByRole("heading", { level: 1 })).toHaveText("Builds of hello");
  await expect(page.locator("tr[data-build]")).toHaveCount(2);
  await expect(page.getByTestId("builds")).toContainText("the example app");
  expect(errors).toEqual([]);
});

/** Waits until the app has no rollout running (the newest promotion has ended). */
async function waitForNoRollout(page: Page, app: string) {
  await expect
    .poll(
      async () => {
        const res = await page.request.get(`/api/v1/apps/${app}/promotions?limit=1`);
        const body = await res.json();
        const items = Array.isArray(body) ? body : body.promotions ?? body.items ?? [];
        return items.length === 0 ? "none" : items[0].state;
      },
      { timeout: 60_000, intervals: [200, 500, 1000] },
    )
    .not.toBe("running");
}

/** The release ID in the editor's result notice. */
async function createdRelease(page: Page): Promise<string> {
  const text = (await page.getByTestId("env-result").textContent()) ?? "";
  const id = /Created (R[A-Z]{10})/.exec(text)?.[1];
  expect(id, text).toBeTruthy();
  return id as string;
}

/** The value field of the variable `key` (or of the empty row, for `null`). */
function valueField(page: Page, key: string | null) {
  return key === null
    ? page.locator('tr[data-key=""]').last().getByRole("textbox").nth(1)
    : page.getByRole("textbox", { name: `Value of ${key}`, exact: true });
}

test("edit the environment: add, change and remove, preview, Apply Changes", async ({ page }) => {
  const errors = trackPageErrors(page);
  await waitForNoRollout(page, "hello");
  // Known variables to start from (a release that is not promoted: the editor says so).
  const res = await page.request.post("/api/v1/apps/hello/env", {
    data: { set: { BAR: "1", BAZ: "z", KEEP: "keep-me" } },
  });
  expect(res.status()).toBe(201);
  await page.goto("/apps/hello/env");
  await waitForHydration(page);
  await expect(page.getByTestId("not-active")).toContainText("not the active one");
  // Values are masked until revealed, one at a time.
  await expect(valueField(page, "KEEP")).toHaveValue("");
  await page.locator('tr[data-key="KEEP"]').getByRole("button", { name: "Reveal" }).click();
  await expect(valueField(page, "KEEP")).toHaveValue("keep-me");
  await expect(valueField(page, "BAR")).toHaveValue("");

  // add FOO, change BAR, remove BAZ
  const blank = page.locator('tr[data-key=""]').last();
  await blank.getByRole("textbox").first().fill("FOO");
  await blank.getByRole("textbox").nth(1).fill("foo value");
  await valueField(page, "BAR").fill("2");
  await page.getByRole("checkbox", { name: "Remove BAZ" }).check();

  await page.getByRole("button", { name: "Preview changes" }).click();
  const preview = page.getByTestId("env-preview");
  await expect(preview.getByTestId("env-description")).toHaveText("env add:FOO change:BAR remove:BAZ");
  await expect(preview.locator("li")).toHaveText(["add FOO", "change BAR", "remove BAZ"]);
  await page.screenshot({ path: path.join(outputDir, "env-preview.png"), fullPage: true });

  await page.getByRole("button", { name: "Apply Changes" }).click();
  await expect(page.getByTestId("env-result")).toContainText("(env add:FOO change:BAR remove:BAZ) and started promotion");
  const release = await createdRelease(page);
  // The rollout shows live under the editor, and the editor starts over from the new release.
  await expect(page.getByTestId("rollout")).toContainText(release);
  await expect(page.locator('tr[data-key="FOO"]')).toBeVisible();
  await expect(page.locator('tr[data-key="BAZ"]')).toHaveCount(0);

  await waitForStatus(page, "hello", release, "active");
  const [top] = await releaseIds(page);
  expect(top).toBe(release);
  await expect(page.locator(`tr[data-release="${release}"]`)).toContainText("env add:FOO change:BAR remove:BAZ");
  const env = await (await page.request.get("/api/v1/apps/hello/env?reveal=true")).json();
  expect(env.env.FOO).toBe("foo value");
  expect(env.env.BAR).toBe("2");
  expect(env.env.KEEP).toBe("keep-me");
  expect(env.env.BAZ).toBeUndefined();
  expect(errors).toEqual([]);
});

test("bad variables are refused next to their fields, and nothing is written", async ({ page }) => {
  const errors = trackPageErrors(page);
  await waitForNoRollout(page, "hello");
  await page.goto("/apps/hello/releases");
  const before = await releaseIds(page);
  await page.goto("/apps/hello/env");
  await waitForHydration(page);
  await page.locator('tr[data-key=""]').last().getByRole("textbox").first().fill("1BAD");
  await page.getByRole("button", { name: "Add variable" }).click();
  await page.locator('tr[data-key=""]').last().getByRole("textbox").first().fill("FOO");
  await page.locator("#env-paste").evaluate((el) => ((el as HTMLElement).closest("details") as HTMLDetailsElement).open = true);
  await page.locator("#env-paste").fill("GOOD=1\nnot a pair\n");
  await page.getByRole("button", { name: "Apply Changes" }).click();
  await expect(page.getByTestId("env-result")).toContainText("Nothing was changed");
  const badKey = page.locator('tr[data-key=""]').first().getByRole("textbox").first();
  await expect(badKey).toHaveAttribute("aria-invalid", "true");
  await expect(page.locator('tr[data-key=""]').first().locator(".field-error").first()).toContainText("must start with a letter or underscore");
  await expect(page.locator('tr[data-key=""]').last().locator(".field-error").first()).toContainText("duplicate key FOO");
  await expect(page.locator("#env-paste-error")).toHaveText("line 2: expected KEY=VALUE");
  await page.screenshot({ path: path.join(outputDir, "env-errors.png"), fullPage: true });
  await page.goto("/apps/hello/releases");
  expect(await releaseIds(page)).toEqual(before);
  expect(errors).toEqual([]);
});

test("an edit made stale by another page is refused, with the user's edits kept", async ({ page, context }) => {
  const errors = trackPageErrors(page);
  await waitForNoRollout(page, "hello");
  await page.goto("/apps/hello/env");
  await waitForHydration(page);
  const other = await context.newPage();
  await other.goto("/apps/hello/env");
  await waitForHydration(other);

  // The other page changes the environment first.
  const otherBlank = other.locator('tr[data-key=""]').last();
  await otherBlank.getByRole("textbox").first().fill("FROM_OTHER");
  await otherBlank.getByRole("textbox").nth(1).fill("x");
  await other.getByRole("button", { name: "Apply Changes" }).click();
  await expect(other.getByTestId("env-result")).toContainText("env add:FROM_OTHER");
  const otherRelease = await createdRelease(other);
  await waitForNoRollout(page, "hello");

  // This page's edit was based on the release before: refused, nothing lost.
  const blank = page.locator('tr[data-key=""]').last();
  await blank.getByRole("textbox").first().fill("MINE");
  await blank.getByRole("textbox").nth(1).fill("my value");
  await page.getByRole("button", { name: "Apply Changes" }).click();
  const result = page.getByTestId("env-result");
  await expect(result).toContainText("the environment changed since release");
  await expect(result).toContainText(`newest is ${otherRelease}`);
  await expect(result).toContainText("env add:FROM_OTHER");
  await expect(result).toContainText("Your edits are still below");
  await expect(blank.getByRole("textbox").first()).toHaveValue("MINE");
  await expect(blank.getByRole("textbox").nth(1)).toHaveValue("my value");
  await page.goto("/apps/hello/releases");
  const [top] = await releaseIds(page);
  expect(top).toBe(otherRelease);
  await other.close();
  expect(errors).toEqual([]);
});

test("Apply Changes works without JavaScript", async ({ browser, page }) => {
  await waitForNoRollout(page, "hello");
  const context = await browser.newContext({ javaScriptEnabled: false, storageState: ADMIN_STATE });
  const noJs = await context.newPage();
  await noJs.goto("/apps/hello/env");
  await expect(noJs.getByRole("button", { name: "Preview changes" })).toBeHidden();
  const blank = noJs.locator('tr[data-key=""]').last();
  await blank.getByRole("textbox").first().fill("NO_JS");
  await blank.getByRole("textbox").nth(1).fill("plain form");
  await noJs.getByRole("button", { name: "Apply Changes" }).click();
  // A plain form post, redirected back to the editor, which now shows the new variable.
  await expect(noJs).toHaveURL(/\/apps\/hello\/env/);
  await expect(noJs.locator('tr[data-key="NO_JS"]')).toBeVisible();
  await noJs.goto("/apps/hello/releases");
  await expect(noJs.locator("tr[data-release]").first()).toContainText("env add:NO_JS");
  await context.close();
  await waitForNoRollout(page, "hello");
});

test.describe("on a 375px wide screen", () => {
  test.use({ viewport: { width: 375, height: 740 } });

  test("nothing overflows horizontally", async ({ page }) => {
    for (const url of ["/", "/apps/hello/releases", "/apps/hello/env", "/apps/hello/builds"]) {
      await page.goto(url);
      await waitForHydration(page);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      expect(overflow, url).toBeLessThanOrEqual(0);
    }
    await page.screenshot({ path: path.join(outputDir, "releases-375.png"), fullPage: true });
  });

  test("every release's created, description and Promote are on screen, labelled", async ({ page }) => {
    await page.goto("/apps/hello/releases");
    await waitForHydration(page);
    const rows = page.locator("tr[data-release]");
    expect(await rows.count()).toBeGreaterThan(1);
    const promotable = page.locator("tr[data-release]:has(summary)").first();
    for (const cell of [
      promotable.locator('td[data-label="Created"]'),
      promotable.locator('td[data-label="Description"]'),
      promotable.locator("summary"),
    ]) {
      await expect(cell).toBeVisible();
      const box = await cell.boundingBox();
      expect(box, "laid out").not.toBeNull();
      expect(box!.x).toBeGreaterThanOrEqual(0);
      expect(box!.x + box!.width).toBeLessThanOrEqual(375);
    }
    // Each line says what it is (the column headers are not shown at this width).
    const label = await promotable
      .locator('td[data-label="Description"]')
      .evaluate((td) => getComputedStyle(td, "::before").content);
    expect(label).toBe('"Description"');
    // Opening Promote fits too.
    await promotable.locator("summary").click();
    const body = await promotable.locator(".confirm-body").boundingBox();
    expect(body!.x + body!.width).toBeLessThanOrEqual(375);
    await page.screenshot({ path: path.join(outputDir, "releases-375-rows.png"), fullPage: true });
  });
});
