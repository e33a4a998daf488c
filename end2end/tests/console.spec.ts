import { expect, test, type Page } from "@playwright/test";
import path from "node:path";

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

test("apps page hydrates and talks to the server", async ({ page }) => {
  const errors = trackPageErrors(page);
  const response = await page.goto("/");
  expect(response?.status()).toBe(200);

  await expect(page.getByRole("link", { name: "Slipway" })).toBeVisible();
  await expect(page.getByRole("heading", { level: 1, name: "Apps" })).toBeVisible();
  await expect(page.getByText("No apps yet. Deploy the example app:")).toBeVisible();
  await expect(page.getByTestId("server-version")).toHaveText(/^\d+\.\d+\.\d+/);
  await expect(page.getByTestId("server-started")).toHaveText(/GMT$/);

  await waitForHydration(page);

  // The button works only in the hydrated page; its click refetches the server fn.
  const count = page.getByTestId("refresh-count");
  await expect(count).toHaveText("Not refreshed yet");
  const serverFn = page.waitForResponse(
    (res) => res.url().includes("/api/get_server_info") && res.request().method() === "POST",
  );
  await page.getByRole("button", { name: "Refresh" }).click();
  await expect(count).toHaveText("Refreshed 1 time");
  const res = await serverFn;
  expect(res.status()).toBe(200);
  expect(await res.json()).toMatchObject({ version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
  await expect(page.getByTestId("server-version")).toHaveText(/^\d+\.\d+\.\d+/);

  await page.screenshot({ path: path.join(outputDir, "apps.png"), fullPage: true });
  expect(errors).toEqual([]);
});

test("releases page and client-side navigation", async ({ page }) => {
  const errors = trackPageErrors(page);
  const response = await page.goto("/apps/nope/releases");
  expect(response?.status()).toBe(200);
  await expect(page.getByRole("heading", { level: 1 })).toHaveText("Releases of nope");
  await expect(page.getByText("No releases for nope yet.")).toBeVisible();

  await waitForHydration(page);
  await page.getByRole("navigation", { name: "Breadcrumb" }).getByRole("link", { name: "Apps" }).click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByRole("heading", { level: 1, name: "Apps" })).toBeVisible();
  expect(errors).toEqual([]);
});

test("unknown pages answer 404 with the Console's page", async ({ page }) => {
  const response = await page.goto("/no/such/page");
  expect(response?.status()).toBe(404);
  await expect(page.getByRole("heading", { level: 1, name: "Page not found" })).toBeVisible();
});

test.describe("on a 375px wide screen", () => {
  test.use({ viewport: { width: 375, height: 740 } });

  test("nothing overflows horizontally", async ({ page }) => {
    await page.goto("/");
    await waitForHydration(page);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    await page.screenshot({ path: path.join(outputDir, "apps-375.png"), fullPage: true });
  });
});

test.describe("without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("the apps page is fully rendered by the server", async ({ page }) => {
    const response = await page.goto("/");
    expect(response?.status()).toBe(200);
    await expect(page.getByRole("heading", { level: 1, name: "Apps" })).toBeVisible();
    await expect(page.getByText("No apps yet. Deploy the example app:")).toBeVisible();
    await expect(page.getByTestId("server-version")).toHaveText(/^\d+\.\d+\.\d+/);
    await expect(page.locator("main")).toHaveAttribute("data-hydrated", "false");
  });
});
