import { expect, test, type Browser } from "@playwright/test";
import path from "node:path";
import { ADMIN_PASSWORD } from "../auth";

// Files run in name order on one server: this one after console.spec.ts (it still makes sure
// the example app exists, so that it also runs on its own).

const outputDir = path.join(__dirname, "..", "output");

/** A fresh browser context that is signed in as nobody. */
async function stranger(browser: Browser) {
  return browser.newContext({ storageState: { cookies: [], origins: [] } });
}

test("sign in, promote, and find your name on the release and in the audit log", async ({ browser, request }) => {
  // The example app with two releases (as admin, through the API).
  const apps = await (await request.get("/api/v1/apps")).json();
  if (!apps.apps.some((a: { app: { name: string } }) => a.app.name === "hello")) {
    const res = await request.post("/api/deploy_example", {
      headers: { accept: "application/json", "content-type": "application/x-www-form-urlencoded" },
      data: "",
    });
    expect(res.status()).toBe(200);
  }
  await expect
    .poll(async () => (await (await request.get("/api/v1/apps/hello/promotions?limit=1")).json()).promotions[0]?.state, { timeout: 60_000 })
    .not.toBe("running");
  const created = await request.post("/api/v1/apps/hello/env", { data: { set: { SIGNED_IN_CHANGE: "1" } } });
  expect(created.status()).toBe(201);
  const release: string = (await created.json()).release.id;

  // Someone who is not signed in is sent to sign in, and back where they were going.
  const context = await stranger(browser);
  const page = await context.newPage();
  await page.goto("/apps/hello/releases");
  await expect(page).toHaveURL(/\/login\?next=%2Fapps%2Fhello%2Freleases/);
  await page.getByLabel("User name").fill("admin");
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toContainText("wrong user name or password");
  await page.getByLabel("User name").fill("admin");
  await page.getByLabel("Password").fill(ADMIN_PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/apps\/hello\/releases$/);
  await expect(page.getByTestId("whoami")).toContainText("admin");

  // Promote: the release says who created and who promoted it.
  await expect(page.locator('main[data-hydrated="true"]')).toBeAttached({ timeout: 20_000 });
  const row = page.locator(`tr[data-release="${release}"]`);
  await row.locator("summary").click();
  await row.getByRole("button", { name: `Promote ${release}` }).click();
  await expect(page.getByTestId("promote-result")).toContainText("started");
  await expect(row).toContainText("promoted by admin", { timeout: 60_000 });
  await expect(row).toContainText("created by admin");

  // The audit log has it, with the app and the release.
  await page.goto("/audit?app=hello&action=release.promote");
  const entry = page.locator("tr[data-seq]", { hasText: release }).first();
  await expect(entry).toContainText("admin");
  await expect(entry).toContainText("release.promote");
  await page.screenshot({ path: path.join(outputDir, "audit.png"), fullPage: true });

  // Signing out ends the session.
  await page.goto("/");
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/login/);
  await page.goto("/apps/hello/releases");
  await expect(page).toHaveURL(/\/login/);
  await context.close();
});

test("a viewer sees no Promote button and a forged promote is refused", async ({ browser, request }) => {
  const created = await request.post("/api/v1/users", { data: { name: "vera", password: "vera-password", role: "viewer" } });
  expect([201, 409]).toContain(created.status());
  const context = await stranger(browser);
  const page = await context.newPage();
  await page.goto("/login");
  await page.getByLabel("User name").fill("vera");
  await page.getByLabel("Password").fill("vera-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByTestId("whoami")).toContainText("vera");

  await page.goto("/apps/hello/releases");
  await expect(page.locator("tr[data-release]").first()).toBeVisible();
  await expect(page.getByRole("button", { name: /^Promote/ })).toHaveCount(0);
  await expect(page.locator("details.confirm")).toHaveCount(0);
  const target = (await page.locator("tr[data-release]").last().getAttribute("data-release")) as string;
  await page.goto("/apps/hello/env");
  await expect(page.getByText("needs the deployer role")).toBeVisible();
  await expect(page.getByRole("button", { name: "Apply Changes" })).toHaveCount(0);

  // The same request the Promote form would send, forged with the viewer's session.
  const forged = await page.request.post("/api/promote_release", {
    headers: { accept: "application/json", "content-type": "application/x-www-form-urlencoded" },
    data: `app=hello&release=${target}`,
  });
  expect(forged.status()).toBe(403);
  expect(await forged.text()).toContain("deployer");
  // And a cross-origin form post, even by an admin, is refused.
  const crossOrigin = await request.post("/api/deploy_example", {
    headers: { origin: "http://evil.example", accept: "application/json", "content-type": "application/x-www-form-urlencoded" },
    data: "",
  });
  expect(crossOrigin.status()).toBe(403);
  await page.screenshot({ path: path.join(outputDir, "viewer.png"), fullPage: true });
  await context.close();
});
